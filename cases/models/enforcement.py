"""Platforms and the enforcement outbox: bans and removals to deliver."""

import secrets

import requests
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from cases.models.decisions import Decision
from reviewconsole import outbound


def generate_secret():
    return secrets.token_urlsafe(32)


class Platform(models.Model):
    """A platform the console enforces on: where its signed webhooks go, and the key that signs them."""

    name = models.SlugField(unique=True)
    webhook_url = models.URLField(blank=True, help_text="Empty: the platform pulls /api/v1/enforcements")
    signing_secret = models.CharField(max_length=128, default=generate_secret)
    enabled = models.BooleanField(default=True)

    def __str__(self):
        return self.name

    def clean(self):
        """Refuse a webhook URL the worker may not call (see reviewconsole.outbound): checked again at delivery."""
        super().clean()
        if self.webhook_url:
            try:
                outbound.check_url(self.webhook_url)
            except requests.RequestException as exc:
                raise ValidationError({"webhook_url": (
                    f"The console will not send webhooks to this URL: {exc}. Use a public http(s) address "
                    "without a user name or password.")}) from None


class EnforcementStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up retrying)"
    CANCELLED = "cancelled", "Cancelled: decision undone"


class Enforcement(models.Model):
    """Outbox row: what a platform must be told to do. Delivered by `cases.dispatch`."""

    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="enforcements")
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, null=True, blank=True)
    action = models.CharField(max_length=32, help_text="ban_account, ban_group, remove_content, protect_account")
    target = models.CharField(max_length=255, help_text="External id of the account, group or item")
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=EnforcementStatus, default=EnforcementStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmation = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["decision", "action", "target", "platform"],
                                    name="one_enforcement_per_target"),
            models.UniqueConstraint(fields=["decision", "action", "target"], condition=Q(platform__isnull=True),
                                    name="one_pulled_enforcement_per_target"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="enforcement_pending_idx",
                         condition=Q(status="pending")),
            # Deliveries given up, per platform, for monitoring: few rows, never a scan of the outbox.
            models.Index(fields=["platform"], name="enforcement_failed_idx", condition=Q(status="failed")),
        ]

    def __str__(self):
        return f"{self.action} {self.target} ({self.status})"
