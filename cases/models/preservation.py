"""Legal holds on evidence and integrity alerts about stored bytes."""

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
