"""User reports: a user of the platform reports an account, group or item."""

from django.conf import settings
from django.db import models

from detection.models.items import Item
from detection.models.subjects import Account, Group


class UserReport(models.Model):
    reporter = models.CharField(max_length=255, help_text="Reporter's account id on the platform")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, null=True, blank=True, related_name="reports")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, null=True, blank=True, related_name="reports")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, null=True, blank=True, related_name="reports")
    reason = models.CharField(max_length=64)
    comment = models.TextField(blank=True)
    external_id = models.CharField(max_length=255, blank=True)
    triaged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "cases_userreport"  # the table keeps the name it had in the cases app
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["reporter", "created_at"], name="userreport_reporter_idx")]

    def __str__(self):
        return f"report by {self.reporter}: {self.reason}"


class Reporter(models.Model):
    """A user who reports, by the platform's id for them: how their earlier reports turned out, and
    whether a senior has muted them or named them a trusted flagger. Intake weighs a new report by it."""

    external_id = models.CharField(max_length=255, unique=True)
    reports = models.PositiveIntegerField(default=0, help_text="Reports whose case has been decided")
    upheld = models.PositiveIntegerField(default=0, help_text="Of those, decided with an enforcing policy")
    dismissed = models.PositiveIntegerField(default=0, help_text="Of those, dismissed")
    standing_at = models.DateTimeField(null=True, blank=True, help_text="When the counts were last worked out")
    muted_at = models.DateTimeField(null=True, blank=True)
    muted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                 related_name="+")
    mute_reason = models.CharField(max_length=500, blank=True)
    trusted_at = models.DateTimeField(null=True, blank=True, help_text="A trusted flagger since")
    trusted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")

    class Meta:
        ordering = ["external_id"]

    def __str__(self):
        return f"reporter {self.external_id}"
