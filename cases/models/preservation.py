"""Legal holds on evidence, two-person destruction requests, and integrity alerts about stored bytes."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from cases.models.cybertip import CyberTipReport
from detection.models.items import EvidenceOnHold, Item


class LegalHold(models.Model):
    """Evidence that must be kept: a filed report (1 year from submission by law), a preservation
    request, or a senior's decision. Blocks deletion and purging until it ends or is lifted."""

    class Reason(models.TextChoices):
        CYBERTIP = "cybertip", "CyberTipline report"
        PRESERVATION = "preservation", "Law-enforcement preservation request"
        MANUAL = "manual", "Placed by staff"

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="holds")
    reason = models.CharField(max_length=16, choices=Reason)
    report = models.ForeignKey(CyberTipReport, on_delete=models.PROTECT, null=True, blank=True, related_name="holds")
    legal_request = models.ForeignKey("LegalRequest", on_delete=models.PROTECT, null=True, blank=True,
                                      related_name="holds")
    note = models.CharField(max_length=500, blank=True)
    placed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="+")
    placed_at = models.DateTimeField(default=timezone.now)
    until = models.DateTimeField()
    lifted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="+")
    lifted_at = models.DateTimeField(null=True, blank=True)
    lift_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-placed_at"]

    def __str__(self):
        return f"hold on item {self.item_id} until {self.until:%Y-%m-%d} ({self.get_reason_display()})"

    @classmethod
    def active(cls, now=None):
        return cls.objects.filter(lifted_at__isnull=True, until__gt=now or timezone.now())

    def delete(self, *args, **kwargs):
        raise EvidenceOnHold("holds are lifted with a recorded reason, never deleted")


class DestructionRequest(models.Model):
    """Destroying evidence on a law-enforcement request or legal instruction takes two seniors.

    The first records the request with its legal basis (a verified legal request, or the written
    reference of the instruction) and a reason; a different senior approves it, and only then are the
    holds lifted and the bytes destroyed (cases.actions.preservation). Both need a verified second
    factor. The row stays as the record of who asked, who agreed and why.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a second senior"
        APPROVED = "approved", "Approved: evidence destroyed"
        REJECTED = "rejected", "Rejected"

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="destruction_requests")
    legal_request = models.ForeignKey("LegalRequest", on_delete=models.PROTECT, null=True, blank=True,
                                      related_name="destruction_requests")
    reference = models.CharField(max_length=200, blank=True,
                                 help_text="The law-enforcement request or legal instruction: agency and reference")
    reason = models.TextField()
    status = models.CharField(max_length=10, choices=Status, default=Status.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.UniqueConstraint(fields=["item"], condition=models.Q(status="pending"),
                                    name="one_pending_destruction_per_item"),
            models.CheckConstraint(
                condition=~models.Q(status="approved")
                | (models.Q(decided_by__isnull=False) & ~models.Q(decided_by=models.F("requested_by"))),
                name="destruction_approved_by_a_second_person"),
        ]

    def __str__(self):
        return f"destruction of item {self.item_id} ({self.get_status_display()})"


class IntegrityAlert(models.Model):
    """Stored evidence no longer matches the SHA-256 taken at intake, or has gone missing."""

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="integrity_alerts")
    problem = models.CharField(max_length=255)
    found_sha256 = models.CharField(max_length=64, blank=True)
    detected_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-detected_at"]

    def __str__(self):
        return f"item {self.item_id}: {self.problem}"
