"""User reports: a user of the platform reports an account, group or item."""

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

    def __str__(self):
        return f"report by {self.reporter}: {self.reason}"
