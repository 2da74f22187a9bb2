"""Queues, routing rules, cases, notes and who is viewing a case."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from detection.models.signals import SignalKind
from detection.models.subjects import Account, Group


class ReviewQueue(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=255, blank=True)
    senior_only = models.BooleanField(default=False)
    sla_minutes = models.PositiveIntegerField(default=24 * 60, help_text="A case should be decided within this")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self):
        return self.name


class RoutingRule(models.Model):
    """Admins route signals to queues: the first matching rule (by position) decides a case's queue."""

    queue = models.ForeignKey(ReviewQueue, on_delete=models.CASCADE, related_name="rules")
    signal_kind = models.CharField(max_length=32, choices=SignalKind)
    detector = models.CharField(max_length=64, blank=True, help_text="Only this detector (empty: any)")
    min_score = models.FloatField(default=0, help_text="Only signals with at least this confidence")
    min_severity = models.PositiveSmallIntegerField(default=0)
    position = models.PositiveSmallIntegerField(default=0)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self):
        return f"{self.get_signal_kind_display()} -> {self.queue}"

    def matches(self, signal):
        return (signal.kind == self.signal_kind and (not self.detector or signal.detector == self.detector)
                and signal.score >= self.min_score and signal.severity >= self.min_severity)


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLAIMED = "claimed", "Claimed"
    AWAITING_SECOND = "awaiting_second", "Awaiting a second reviewer"
    CLOSED = "closed", "Closed"


class Case(models.Model):
    account = models.ForeignKey(Account, on_delete=models.PROTECT, null=True, blank=True, related_name="cases")
    group = models.ForeignKey(Group, on_delete=models.PROTECT, null=True, blank=True, related_name="cases")
    queue = models.ForeignKey(ReviewQueue, on_delete=models.PROTECT, related_name="cases")
    status = models.CharField(max_length=16, choices=CaseStatus, default=CaseStatus.OPEN)
    priority = models.PositiveSmallIntegerField(default=0, db_index=True)
    base_priority = models.PositiveSmallIntegerField(default=0, help_text="Priority before ageing")
    summary = models.CharField(max_length=255, blank=True)
    possible_minor_victim = models.CharField(
        max_length=255, blank=True,
        help_text="Why the subject may be a child victim (set at triage); offender policies do not apply")
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="claimed_cases"
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Bumped by every state change; a decision names the version it was taken on, so a retried
    # or doubled request finds the decision already made instead of making a second one.
    version = models.PositiveIntegerField(default=0)
    resolution = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-priority", "created_at"]
        permissions = [
            ("review_case", "Can claim and decide cases"),
            ("review_escalated", "Can review escalated cases"),
            ("reveal_evidence", "Can reveal unblurred evidence"),
            ("investigate", "Can search and open account, group and pivot pages"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account"], condition=Q(closed_at__isnull=True, account__isnull=False),
                name="one_open_case_per_account",
            ),
            models.UniqueConstraint(
                fields=["group"], condition=Q(closed_at__isnull=True, group__isnull=False),
                name="one_open_case_per_group",
            ),
            models.CheckConstraint(
                condition=Q(account__isnull=False) | Q(group__isnull=False), name="case_has_subject"
            ),
        ]
        indexes = [
            models.Index(fields=["queue", "-priority", "created_at"], name="case_queue_rank_idx",
                         condition=Q(closed_at__isnull=True)),
            models.Index(fields=["-priority", "created_at"], name="case_rank_idx",
                         condition=Q(closed_at__isnull=True)),
            models.Index(fields=["queue", "status", "created_at"], name="case_queue_age_idx",
                         condition=Q(closed_at__isnull=True)),
            models.Index(fields=["created_at"], name="case_created_idx"),
            models.Index(fields=["closed_at"], name="case_closed_idx"),
        ]

    def __str__(self):
        return f"case {self.pk} on {self.subject}"

    @property
    def subject(self):
        return self.account or self.group


class QueueStats(models.Model):
    """A queue's open-case figures as last counted (cases.selectors.refresh_queue_stats): what the queue
    page shows when there are too many open cases to count on every request."""

    queue = models.OneToOneField(ReviewQueue, on_delete=models.CASCADE, related_name="counted")
    pending = models.PositiveIntegerField(default=0)
    claimed = models.PositiveIntegerField(default=0)
    breaches = models.PositiveIntegerField(default=0)
    oldest = models.DateTimeField(null=True, blank=True)
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "queue stats"

    def __str__(self):
        return f"{self.queue}: {self.pending} pending, {self.claimed} claimed at {self.computed_at:%H:%M:%S}"


class SubjectNote(models.Model):
    """A reviewer's note on an account or a group; it follows the subject into every later case."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, null=True, blank=True, related_name="notes")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, null=True, blank=True, related_name="notes")
    case = models.ForeignKey(Case, on_delete=models.SET_NULL, null=True, blank=True, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(account__isnull=False) | Q(group__isnull=False),
                                              name="note_has_subject")]

    def __str__(self):
        return f"note by {self.author} on {self.account or self.group}"


class CaseView(models.Model):
    """Who has a case open right now (refreshed by the page while it stays open)."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="viewers")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["case", "user"], name="one_view_per_user_and_case")]

    def __str__(self):
        return f"{self.user} viewing case {self.case_id}"
