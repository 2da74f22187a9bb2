"""Law-enforcement agencies, their officers and their legal requests."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from cases.models.review import Case
from detection.models.subjects import Account, Group


class Agency(models.Model):
    """A law-enforcement agency whose officers may file legal requests through the portal."""

    name = models.CharField(max_length=200, unique=True)
    jurisdiction = models.CharField(max_length=200, blank=True, help_text="e.g. county, state, country")
    contact_email = models.EmailField(blank=True)
    active = models.BooleanField(default=True, help_text="An inactive agency's officers cannot sign in to the portal")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "agencies"

    def __str__(self):
        return self.name


class AgencyMember(models.Model):
    """Ties a portal user to one agency: they see that agency's requests and nothing else."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agency_member")
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="members")
    badge = models.CharField(max_length=64, blank=True, help_text="Badge or officer number")
    phone = models.CharField(max_length=64, blank=True)

    def __str__(self):
        return f"{self.user} ({self.agency})"


class LegalRequestKind(models.TextChoices):
    EMERGENCY = "emergency", "Emergency disclosure"
    PRESERVATION = "preservation", "Preservation"
    SUBPOENA = "subpoena", "Subpoena"
    COURT_ORDER = "court_order", "Court order"
    SEARCH_WARRANT = "search_warrant", "Search warrant"


class LegalRequestStatus(models.TextChoices):
    SUBMITTED = "submitted", "Submitted"
    VERIFIED = "verified", "Verified, in progress"
    RESPONDED = "responded", "Responded"
    CLOSED = "closed", "Closed"
    REJECTED = "rejected", "Rejected"


class LegalRequest(models.Model):
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="requests")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=LegalRequestKind)
    reference = models.CharField(max_length=100, help_text="The agency's own case or docket number")
    identifiers = models.JSONField(default=list, help_text='[{"type": "account"|"group", "id": "..."}]')
    description = models.TextField()
    due_at = models.DateTimeField()
    status = models.CharField(max_length=12, choices=LegalRequestStatus, default=LegalRequestStatus.SUBMITTED)
    assigned_to = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")
    verified_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_note = models.CharField(max_length=500, blank=True,
                                         help_text="How the request was verified (e.g. call-back to the agency)")
    accounts = models.ManyToManyField(Account, blank=True, related_name="legal_requests")
    groups = models.ManyToManyField(Group, blank=True, related_name="legal_requests")
    cases = models.ManyToManyField(Case, blank=True, related_name="legal_requests")
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("handle_legal_requests", "Can triage and answer law-enforcement requests")]
        indexes = [models.Index(fields=["agency", "-created_at"], name="legal_request_agency_idx")]

    def __str__(self):
        return f"{self.get_kind_display()} {self.reference} ({self.agency})"

    @property
    def is_emergency(self):
        return self.kind == LegalRequestKind.EMERGENCY

    @property
    def is_open(self):
        return self.status not in (LegalRequestStatus.CLOSED, LegalRequestStatus.REJECTED)


class LegalDocument(models.Model):
    """A PDF on a request: the agency's legal process, or an attachment to our response."""

    class Side(models.TextChoices):
        AGENCY = "agency", "From the agency"
        RESPONSE = "response", "Our response"

    request = models.ForeignKey(LegalRequest, on_delete=models.PROTECT, related_name="documents")
    side = models.CharField(max_length=10, choices=Side)
    name = models.CharField(max_length=255)
    storage_path = models.CharField(max_length=512, help_text="Relative to EVIDENCE_ROOT")
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return self.name


class LegalMessage(models.Model):
    """The conversation on a request: the agency's notes and our responses."""

    request = models.ForeignKey(LegalRequest, on_delete=models.PROTECT, related_name="messages")
    side = models.CharField(max_length=10, choices=LegalDocument.Side)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"message on {self.request_id} by {self.author}"
