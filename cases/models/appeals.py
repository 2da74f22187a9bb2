"""Appeals (DSA Art. 20 internal complaints): a user asks for a decision against them to be reviewed again.

An appeal names the decision through the enforcement row (or the statement of reasons) the platform
received. It waits in the `appeals` review queue (its SLA is that queue's) until a reviewer who took no
part in the decision claims it and upholds or overturns it. It is not a Case: the account usually has
its original case closed and may have another one open, and an appeal is judged on a different question.
"""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from cases.models.decisions import Decision
from cases.models.enforcement import Enforcement
from cases.models.review import ReviewQueue
from cases.models.statements import StatementOfReasons

APPEAL_OUTCOME = "appeal_outcome"  # the enforcement action that tells the platform what became of an appeal


class AppealStatus(models.TextChoices):
    RECEIVED = "received", "Waiting for review"
    UPHELD = "upheld", "Upheld: the decision stands"
    OVERTURNED = "overturned", "Overturned: the decision was reversed"


class Appeal(models.Model):
    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="appeals")
    enforcement = models.ForeignKey(Enforcement, on_delete=models.PROTECT, related_name="appeals",
                                    help_text="The enforcement row the platform named")
    statement_of_reasons = models.ForeignKey(StatementOfReasons, on_delete=models.PROTECT, null=True, blank=True,
                                             related_name="appeals")
    queue = models.ForeignKey(ReviewQueue, on_delete=models.PROTECT, related_name="appeals")
    appellant = models.CharField(max_length=255, help_text="External id of the account that appealed")
    text = models.TextField(help_text="The user's statement")
    attachment = models.TextField(blank=True, help_text="Anything the user added, as text")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the statement and attachment: a retry "
                                                            "sends the same")
    received_via = models.CharField(max_length=100, blank=True, help_text="The API token it came with")
    received_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=AppealStatus, default=AppealStatus.RECEIVED)
    assigned_to = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="claimed_appeals")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="appeals_decided")
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why it was upheld or overturned (internal)")
    outcome = models.JSONField(default=dict, blank=True, help_text="What the overturn reversed, kept, removed")

    class Meta:
        ordering = ["received_at", "pk"]
        constraints = [
            # One appeal of a decision per account: a retry returns it, a second appeal is refused.
            models.UniqueConstraint(fields=["decision", "appellant"], name="one_appeal_per_decision_and_account"),
        ]
        indexes = [
            models.Index(fields=["queue", "received_at"], name="appeal_open_idx", condition=Q(status="received")),
            models.Index(fields=["appellant", "received_at"], name="appeal_appellant_idx"),
            models.Index(fields=["received_at"], name="appeal_received_idx"),
            models.Index(fields=["decided_at"], name="appeal_decided_idx"),
        ]

    def __str__(self):
        return f"appeal {self.pk} of decision {self.decision_id} ({self.status})"

    @property
    def open(self):
        return self.status == AppealStatus.RECEIVED

    @property
    def due_at(self):
        return self.received_at + timedelta(minutes=self.queue.sla_minutes)

    def notices(self):
        """The outcome notice rows sent to the platform."""
        return Enforcement.objects.filter(decision=self.decision_id, action=APPEAL_OUTCOME, target=self.appellant)
