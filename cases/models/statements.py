"""Statements of reasons (DSA Art. 17): one per restriction a decision imposes, and its submission to
the Commission's DSA Transparency Database (Art. 24(5)).

A decision restricts one or more targets (an account or group banned, an item removed); each gets one
statement, whatever the number of platforms its enforcement rows go to. The statement is a snapshot of
what the user is told: the restriction, the facts in words safe to show them, whether detection and
decision were automated, the ground, and how to seek redress. Its `dsa_*` fields are the outbox of the
Transparency Database submission (`cases.dsa`).
"""

import uuid

from django.db import models
from django.db.models import Q

from cases.models.decisions import Decision
from cases.models.review import Case


class Restriction(models.TextChoices):
    ACCOUNT_SUSPENDED = "account_suspended", "Account suspended"
    ACCOUNT_TERMINATED = "account_terminated", "Account terminated"
    GROUP_SUSPENDED = "group_suspended", "Group suspended"
    GROUP_TERMINATED = "group_terminated", "Group terminated"
    CONTENT_REMOVED = "content_removed", "Content removed"


class Ground(models.TextChoices):
    ILLEGAL_CONTENT = "illegal_content", "Illegal content"
    INCOMPATIBLE_CONTENT = "incompatible_content", "Incompatible with the terms of service"


class Source(models.TextChoices):
    NOTICE = "notice", "A notice from a user of the service"
    OWN_INITIATIVE = "own_initiative", "The provider's own initiative"


class DsaStatus(models.TextChoices):
    PENDING = "pending", "Waiting to be submitted"
    SUBMITTED = "submitted", "Submitted"
    FAILED = "failed", "Refused: needs attention"
    WITHDRAWN = "withdrawn", "Not submitted: the decision was undone"


class StatementOfReasons(models.Model):
    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="statements")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="statements_of_reasons")
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False,
                           help_text="Our identifier of the statement (the Transparency Database's puid)")
    action = models.CharField(max_length=32, help_text="The enforcement action: ban_account, ban_group, "
                                                       "remove_content")
    target = models.CharField(max_length=255, help_text="External id of the account, group or item restricted")
    restriction = models.CharField(max_length=24, choices=Restriction)
    until = models.DateTimeField(null=True, blank=True, help_text="End of a suspension; empty: permanent")
    content_type = models.CharField(max_length=16, help_text="image, video, text, account or group")
    content_date = models.DateTimeField(help_text="When the content was posted or the account created")
    facts = models.TextField(help_text="The facts relied on, in words the user may read")
    automated_detection = models.BooleanField()
    automated_decision = models.BooleanField()
    source = models.CharField(max_length=16, choices=Source)
    ground = models.CharField(max_length=24, choices=Ground)
    legal_ground = models.CharField(max_length=500, blank=True)
    terms_ground = models.CharField(max_length=500, blank=True)
    category = models.CharField(max_length=32, help_text="The policy category it applied")
    policy_code = models.SlugField()
    policy_version = models.PositiveIntegerField(null=True, blank=True)
    redress = models.JSONField(default=dict, help_text="How to appeal, as the statement told it")
    decided_at = models.DateTimeField(help_text="When the decision was taken")
    created_at = models.DateTimeField(auto_now_add=True)
    # The Transparency Database outbox.
    dsa_status = models.CharField(max_length=16, choices=DsaStatus, default=DsaStatus.PENDING)
    dsa_attempts = models.PositiveIntegerField(default=0)
    dsa_next_attempt_at = models.DateTimeField(null=True, blank=True)
    dsa_last_error = models.TextField(blank=True)
    dsa_submitted_at = models.DateTimeField(null=True, blank=True)
    dsa_uuid = models.CharField(max_length=64, blank=True, help_text="The Commission's id for the statement")

    class Meta:
        ordering = ["pk"]
        verbose_name = "statement of reasons"
        verbose_name_plural = "statements of reasons"
        constraints = [
            models.UniqueConstraint(fields=["decision", "action", "target"], name="one_statement_per_restriction"),
        ]
        indexes = [
            models.Index(fields=["dsa_next_attempt_at", "id"], name="statement_dsa_pending_idx",
                         condition=Q(dsa_status="pending")),
            models.Index(fields=["id"], name="statement_dsa_failed_idx", condition=Q(dsa_status="failed")),
        ]

    def __str__(self):
        return f"{self.get_restriction_display()} {self.target} (decision {self.decision_id})"

    @property
    def puid(self):
        """Unique and never reused, letters, digits and hyphens only, as the database requires."""
        return f"sor-{self.uid}"

    @property
    def permanent(self):
        return self.restriction != Restriction.CONTENT_REMOVED and self.until is None

    def as_json(self):
        """What the platform receives with the enforcement, to show the user."""
        return {
            "id": self.puid,
            "restriction": self.restriction,
            "target": self.target,
            "content_type": self.content_type,
            "permanent": self.permanent,
            "until": self.until.isoformat() if self.until else None,
            "facts": self.facts,
            "automated_detection": self.automated_detection,
            "automated_decision": self.automated_decision,
            "source": self.source,
            "ground": self.ground,
            "legal_ground": self.legal_ground,
            "terms_ground": self.terms_ground,
            "redress": self.redress,
            "decided_at": self.decided_at.isoformat(),
        }
