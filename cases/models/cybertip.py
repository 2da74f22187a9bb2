"""CyberTipline reports, their files and every exchange with NCMEC."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from cases.models.decisions import Decision
from cases.models.review import Case
from detection.models.items import Item

INCIDENT_TYPES = [
    "Child Pornography (possession, manufacture, and distribution)",
    "Child Sex Trafficking",
    "Child Sex Tourism",
    "Child Sexual Molestation",
    "Misleading Domain Name",
    "Misleading Words or Digital Images on the Internet",
    "Online Enticement of Children for Sexual Acts",
    "Unsolicited Obscene Material Sent to a Child",
]


class CyberTipReport(models.Model):
    """One report to NCMEC's CyberTipline, with every step of its filing stored as it happens."""

    class Status(models.TextChoices):
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting senior approval"
        QUEUED = "queued", "Queued for filing"
        SUBMITTED = "submitted", "Submitted, files uploading"
        FILED = "filed", "Filed"
        FAILED = "failed", "Stopped: needs attention"
        RETRACTED = "retracted", "Retracted"
        CANCELLED = "cancelled", "Cancelled: decision undone"

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="cybertip_reports")
    decision = models.OneToOneField(Decision, on_delete=models.PROTECT, related_name="cybertip_report")
    status = models.CharField(max_length=20, choices=Status, default=Status.AWAITING_APPROVAL)
    incident_type = models.CharField(max_length=100, choices=[(t, t) for t in INCIDENT_TYPES],
                                     default=INCIDENT_TYPES[0])
    annotations = models.JSONField(default=list, blank=True, help_text="reportAnnotations flags")
    escalate_reason = models.CharField(max_length=500, blank=True,
                                       help_text="Only when a child is at immediate risk")
    additional_info = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="approved_cybertip_reports")
    approved_at = models.DateTimeField(null=True, blank=True)
    ncmec_report_id = models.CharField(max_length=64, blank=True)
    xml_sent = models.TextField(blank=True, help_text="The exact report document sent to /submit")
    submitted_at = models.DateTimeField(null=True, blank=True)
    finish_sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    receipt = models.TextField(blank=True, help_text="The /finish response: the legal notification")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "CyberTipline report"
        permissions = [("file_cybertip", "Can approve, retry and retract CyberTipline reports")]
        # Reports not (yet) filed, by status, for monitoring: filed ones are counted by the daily rollups.
        indexes = [models.Index(fields=["status", "created_at"], name="cybertip_unfiled_idx",
                                condition=~Q(status="filed"))]

    def __str__(self):
        return f"CyberTipline report {self.pk} ({self.status}) for case {self.case_id}"


class CyberTipFile(models.Model):
    CLASSIFICATIONS = [("", "None"), ("A1", "A1"), ("A2", "A2"), ("B1", "B1"), ("B2", "B2")]

    report = models.ForeignKey(CyberTipReport, on_delete=models.PROTECT, related_name="files")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="cybertip_files")
    classification = models.CharField(max_length=2, choices=CLASSIFICATIONS, blank=True)
    annotations = models.JSONField(default=list, blank=True, help_text="fileAnnotations flags")
    publicly_available = models.BooleanField(null=True, blank=True)
    ncmec_file_id = models.CharField(max_length=64, blank=True)
    uploaded_md5 = models.CharField(max_length=32, blank=True, help_text="MD5 NCMEC computed on receipt")
    uploaded_at = models.DateTimeField(null=True, blank=True)
    fileinfo_xml = models.TextField(blank=True)
    fileinfo_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["report", "item"], name="one_file_per_item_per_report")]

    def __str__(self):
        return f"item {self.item_id} in CyberTipline report {self.report_id}"


class CyberTipExchange(models.Model):
    """Every request to the CyberTipline and its answer, kept with the report."""

    report = models.ForeignKey(CyberTipReport, on_delete=models.PROTECT, related_name="exchanges")
    step = models.CharField(max_length=16)
    request = models.TextField(help_text="XML sent, or a description of the uploaded bytes")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_code = models.IntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    response = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self):
        return f"{self.step} for report {self.report_id}: {self.response_code}"
