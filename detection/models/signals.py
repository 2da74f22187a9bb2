"""Signals: what detection found, each with a score and an explanation."""

from django.db import models
from django.db.models import Q

from detection.models.items import Item
from detection.models.subjects import Account, Group


class SignalKind(models.TextChoices):
    HASH_MATCH = "hash_match", "Known-material hash match"
    CLASSIFIER = "classifier", "Classifier"
    TEXT = "text", "Text surface"
    BEHAVIOUR = "behaviour", "Behaviour"
    USER_REPORT = "user_report", "User report"
    INVESTIGATION = "investigation", "Linked by an investigator"


class Signal(models.Model):
    """One finding by one detector, with the evidence a reviewer needs to judge it."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, null=True, blank=True, related_name="signals")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, null=True, blank=True, related_name="signals")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, null=True, blank=True, related_name="signals")
    kind = models.CharField(max_length=32, choices=SignalKind)
    detector = models.CharField(max_length=64, help_text="e.g. pdq, md5, phash, user_report")
    label = models.CharField(max_length=128)
    score = models.FloatField(help_text="Confidence 0..1")
    severity = models.PositiveSmallIntegerField(default=50, help_text="0..100")
    explanation = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=255, help_text="Same finding twice gives one signal")
    case = models.ForeignKey("cases.Case", on_delete=models.SET_NULL, null=True, blank=True, related_name="signals")
    triaged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "cases_signal"  # the table keeps the name it had in the cases app
        ordering = ["-severity", "-score"]
        constraints = [models.UniqueConstraint(fields=["dedupe_key"], name="unique_signal_dedupe_key")]
        indexes = [
            models.Index(fields=["created_at"], name="signal_untriaged_idx", condition=Q(triaged_at__isnull=True)),
            models.Index(fields=["created_at"], name="signal_created_idx"),
            models.Index(fields=["account", "created_at", "id"], name="signal_account_time_idx"),
            models.Index(fields=["group", "created_at", "id"], name="signal_group_time_idx"),
        ]

    def __str__(self):
        return f"{self.detector}: {self.label} ({self.score:.2f})"

    @property
    def priority(self):
        return round(self.severity * self.score)
