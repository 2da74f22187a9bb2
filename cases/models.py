"""Subjects, items, signals, cases, decisions and the audit log: the record of all work."""

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


def generate_secret():
    return secrets.token_urlsafe(32)


class SubjectStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    BANNED = "banned", "Banned"


class Account(models.Model):
    external_id = models.CharField(max_length=255, unique=True)
    screen_name = models.CharField(max_length=255, blank=True)
    display_name = models.CharField(max_length=255, blank=True)
    bio = models.TextField(blank=True)
    email = models.CharField(max_length=320, blank=True)
    phone = models.CharField(max_length=64, blank=True)
    age_band = models.CharField(max_length=16, blank=True, help_text="e.g. 13-15, 16-17, 18+")
    registered_at = models.DateTimeField(null=True, blank=True)
    facts = models.JSONField(default=dict, blank=True, help_text="Behaviour facts sent by the platform")
    status = models.CharField(max_length=16, choices=SubjectStatus, default=SubjectStatus.ACTIVE)
    banned_at = models.DateTimeField(null=True, blank=True, db_index=True)
    analysed_at = models.DateTimeField(null=True, blank=True,
                                       help_text="Text surfaces and risk last scored (pending while null or stale)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["external_id"]

    def __str__(self):
        return f"account {self.external_id}" + (f" ({self.screen_name})" if self.screen_name else "")


class AccountLink(models.Model):
    """A phone or device hash the platform sent for an account: accounts that share one are linked.

    Kept in step with Account.facts at every upsert, so that finding linked accounts is an index
    lookup on any database instead of a scan of every account's JSON.
    """

    class Kind(models.TextChoices):
        PHONE = "phone", "Phone hash"
        DEVICE = "device", "Device hash"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="links")
    kind = models.CharField(max_length=8, choices=Kind)
    value = models.CharField(max_length=128)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "kind", "value"], name="unique_account_link")]
        indexes = [models.Index(fields=["kind", "value"], name="account_link_lookup_idx")]

    def __str__(self):
        return f"{self.account} {self.kind} {self.value[:12]}"


class Group(models.Model):
    external_id = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    member_count = models.PositiveIntegerField(default=0)
    facts = models.JSONField(default=dict, blank=True, help_text="Behaviour facts sent by the platform")
    members = models.ManyToManyField(Account, through="Membership", related_name="groups")
    status = models.CharField(max_length=16, choices=SubjectStatus, default=SubjectStatus.ACTIVE)
    banned_at = models.DateTimeField(null=True, blank=True, db_index=True)
    analysed_at = models.DateTimeField(null=True, blank=True,
                                       help_text="Text surfaces and risk last scored (pending while null or stale)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["external_id"]

    def __str__(self):
        return f"group {self.external_id}" + (f" ({self.name})" if self.name else "")


class Membership(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE)
    group = models.ForeignKey(Group, on_delete=models.CASCADE)
    role = models.CharField(max_length=32, blank=True)
    joined_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "group"], name="unique_membership")]

    def __str__(self):
        return f"{self.account} in {self.group}"


class ItemKind(models.TextChoices):
    IMAGE = "image", "Image"
    VIDEO = "video", "Video"
    TEXT = "text", "Text"


class ItemStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SCANNED = "scanned", "Scanned"
    REJECTED = "rejected", "Rejected"


class EvidenceOnHold(Exception):
    """Evidence under legal hold cannot be deleted or purged until the hold is lifted."""


class ItemQuerySet(models.QuerySet):
    def delete(self):
        held = LegalHold.active().filter(item__in=self).values_list("item_id", flat=True).distinct()
        if held.exists():
            raise EvidenceOnHold(f"items under legal hold: {', '.join(map(str, held[:20]))}")
        return super().delete()


class Item(models.Model):
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="items")
    group = models.ForeignKey(Group, on_delete=models.PROTECT, null=True, blank=True, related_name="items")
    kind = models.CharField(max_length=16, choices=ItemKind, default=ItemKind.IMAGE)
    external_id = models.CharField(max_length=255, blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    declared_type = models.CharField(max_length=127, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    storage_path = models.CharField(max_length=512, blank=True, help_text="Relative to EVIDENCE_ROOT")
    text = models.TextField(blank=True)
    uploaded_at = models.DateTimeField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    md5 = models.CharField(max_length=32, db_index=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    # Filled by the scan.
    detected_format = models.CharField(max_length=16, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    pdq = models.CharField(max_length=64, blank=True)
    pdq_quality = models.PositiveSmallIntegerField(null=True, blank=True)
    phash = models.CharField(max_length=16, blank=True)
    dhash = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=16, choices=ItemStatus, default=ItemStatus.QUEUED)
    reject_reason = models.CharField(max_length=500, blank=True)
    scan_attempts = models.PositiveSmallIntegerField(default=0)
    # A scan claims the item by writing its token and start time; the claim lapses after
    # SCAN_LEASE_SECONDS so that a scan whose worker died is taken up again.
    scan_token = models.CharField(max_length=32, blank=True)
    scan_started_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(default=timezone.now)
    scanned_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    purged_at = models.DateTimeField(null=True, blank=True, help_text="Evidence bytes destroyed")
    verified_at = models.DateTimeField(null=True, blank=True, help_text="Last SHA-256 check of the stored bytes")
    frame_hashes = models.JSONField(default=list, blank=True,
                                    help_text="Video/animation: [{t, pdq, quality}] per sampled frame")
    classified_at = models.DateTimeField(null=True, blank=True, help_text="Classifiers ran (new-content detection)")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ItemQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["enqueued_at"], name="item_pending_idx", condition=Q(status="queued")),
            # For the daily metrics rollup: each day's rows are read by range.
            models.Index(fields=["created_at"], name="item_created_idx"),
            models.Index(fields=["scanned_at"], name="item_scanned_idx"),
        ]

    def __str__(self):
        return f"item {self.pk} ({self.kind}, {self.status})"

    def delete(self, *args, **kwargs):
        if LegalHold.active().filter(item=self).exists():
            raise EvidenceOnHold(f"item {self.pk} is under legal hold")
        return super().delete(*args, **kwargs)

    @property
    def on_hold(self):
        return LegalHold.active().filter(item=self).exists()

    @property
    def is_visual(self):
        return self.kind in (ItemKind.IMAGE, ItemKind.VIDEO) and self.status == ItemStatus.SCANNED


class SignalKind(models.TextChoices):
    HASH_MATCH = "hash_match", "Known-material hash match"
    CLASSIFIER = "classifier", "Classifier"
    TEXT = "text", "Text surface"
    BEHAVIOUR = "behaviour", "Behaviour"
    USER_REPORT = "user_report", "User report"


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
    case = models.ForeignKey("Case", on_delete=models.SET_NULL, null=True, blank=True, related_name="signals")
    triaged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-severity", "-score"]
        constraints = [models.UniqueConstraint(fields=["dedupe_key"], name="unique_signal_dedupe_key")]
        indexes = [
            models.Index(fields=["created_at"], name="signal_untriaged_idx", condition=Q(triaged_at__isnull=True)),
            models.Index(fields=["created_at"], name="signal_created_idx"),
        ]

    def __str__(self):
        return f"{self.detector}: {self.label} ({self.score:.2f})"

    @property
    def priority(self):
        return round(self.severity * self.score)


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


class ViewingPreference(models.Model):
    """How evidence is rendered for a reviewer, per content category. A row without a user is the
    organisation's default; a category of "" applies to every category."""

    class Blur(models.TextChoices):
        STRONG = "strong", "Strong blur"
        LIGHT = "light", "Light blur"
        NONE = "none", "No blur (cleared reviewers, with another filter)"

    class Tone(models.TextChoices):
        GREYSCALE = "greyscale", "Greyscale"
        SEPIA = "sepia", "Sepia"
        COLOUR = "colour", "Colour"

    class Detail(models.TextChoices):
        FULL = "full", "Full detail"
        REDUCED = "reduced", "Reduced detail (illustration-like)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
                             related_name="viewing_preferences")
    category = models.SlugField(blank=True, help_text="A review queue slug, or empty for all categories")
    blur = models.CharField(max_length=8, choices=Blur, default=Blur.STRONG)
    tone = models.CharField(max_length=10, choices=Tone, default=Tone.GREYSCALE)
    detail = models.CharField(max_length=8, choices=Detail, default=Detail.FULL)
    warning_screen = models.BooleanField(default=False,
                                         help_text="Show what the detectors found instead of the image")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "category"], name="one_preference_per_category"),
            models.UniqueConstraint(fields=["category"], condition=Q(user__isnull=True),
                                    name="one_default_per_category"),
        ]

    def __str__(self):
        return f"{self.user or 'organisation'} / {self.category or 'all'}"

    @property
    def signature(self):
        return f"{self.blur}-{self.tone}-{self.detail}"

    def problem_for(self, user):
        """Why this preference may not be used by this user, or None."""
        if self.blur == self.Blur.NONE:
            if user is not None and not user.has_perm("cases.reveal_evidence"):
                return "Only reviewers cleared to reveal evidence may turn blurring off."
            if self.tone == self.Tone.COLOUR and self.detail == self.Detail.FULL and not self.warning_screen:
                return ("Without blur keep another filter (greyscale, sepia or reduced detail); "
                        "reveal shows an item as it is.")
        return None

    @classmethod
    def for_user(cls, user, category=""):
        """The most specific preference: the user's for the category, the user's for all, then the
        organisation's for the category and for all, then the built-in safe default."""
        rows = {(p.user_id, p.category): p for p in cls.objects.filter(
            Q(user=user) | Q(user__isnull=True), category__in={category, ""})}
        for key in ((user.pk, category), (user.pk, ""), (None, category), (None, "")):
            if key in rows:
                return rows[key]
        return cls()


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


class Action(models.TextChoices):
    BAN = "ban", "Ban account"
    REMOVE = "remove", "Remove content"
    ESCALATE = "escalate", "Escalate"
    REPORT = "report", "Report to NCMEC"
    DISMISS = "dismiss", "Dismiss"


class ReasonCode(models.Model):
    """The policy list reviewers pick from; admins edit it."""

    code = models.SlugField(unique=True)
    label = models.CharField(max_length=160)
    actions = models.JSONField(default=list, help_text='Actions it applies to, e.g. ["ban", "report"]')
    active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "code"]

    def __str__(self):
        return self.label


class Decision(models.Model):
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="decisions")
    case_version = models.PositiveIntegerField()
    action = models.CharField(max_length=16, choices=Action)
    reason = models.ForeignKey(ReasonCode, on_delete=models.PROTECT)
    note = models.TextField(blank=True)
    ban_until = models.DateTimeField(null=True, blank=True, help_text="Empty: permanent")
    undone_at = models.DateTimeField(null=True, blank=True, help_text="Undone within the undo window")
    options = models.JSONField(default=dict, blank=True, help_text="members to ban, senior handed to")
    approval = models.CharField(max_length=10, blank=True,
                                choices=[("", "Not needed"), ("pending", "Pending"), ("approved", "Approved"),
                                         ("rejected", "Rejected")])
    second_reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                        related_name="second_reviews")
    second_reviewed_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["case", "case_version"], name="one_decision_per_case_version")
        ]
        indexes = [models.Index(fields=["created_at"], name="decision_created_idx")]

    def __str__(self):
        return f"{self.get_action_display()} on case {self.case_id}"


class QAReview(models.Model):
    """A sampled decision, judged again blind by a senior: the measure of agreement."""

    decision = models.OneToOneField(Decision, on_delete=models.PROTECT, related_name="qa_review")
    sampled_at = models.DateTimeField(auto_now_add=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                 related_name="qa_reviews")
    action = models.CharField(max_length=16, choices=Action, blank=True)
    agrees = models.BooleanField(null=True, blank=True)
    note = models.TextField(blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sampled_at"]
        verbose_name = "QA review"

    def __str__(self):
        return f"QA of decision {self.decision_id}"


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
        ordering = ["-created_at"]

    def __str__(self):
        return f"report by {self.reporter}: {self.reason}"


class Platform(models.Model):
    """A platform the console enforces on: where its signed webhooks go, and the key that signs them."""

    name = models.SlugField(unique=True)
    webhook_url = models.URLField(blank=True, help_text="Empty: the platform pulls /api/v1/enforcements")
    signing_secret = models.CharField(max_length=128, default=generate_secret)
    enabled = models.BooleanField(default=True)

    def __str__(self):
        return self.name


class EnforcementStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up retrying)"
    CANCELLED = "cancelled", "Cancelled: decision undone"


class Enforcement(models.Model):
    """Outbox row: what a platform must be told to do. Delivered by `cases.dispatch`."""

    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="enforcements")
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, null=True, blank=True)
    action = models.CharField(max_length=32, help_text="ban_account, ban_group, remove_content")
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
        ]

    def __str__(self):
        return f"{self.action} {self.target} ({self.status})"


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


class AuditEvent(models.Model):
    """Append-only: who did what to which object, when and from where."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    actor_label = models.CharField(max_length=150, help_text="User name, API token name or 'system'")
    action = models.CharField(max_length=64, db_index=True)
    case = models.ForeignKey(Case, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events")
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only")


class ApiToken(models.Model):
    """A platform's API credential. Only a SHA-256 of the secret is stored."""

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash_key(key):
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def issue(cls, name):
        key = "rc_" + secrets.token_urlsafe(32)
        token = cls.objects.create(name=name, prefix=key[:10], key_hash=cls.hash_key(key))
        return token, key


class DailyMetric(models.Model):
    """One figure for one day (UTC), rolled up from the live tables by `cases.metrics`.

    The dashboard reads these rows only, so it stays fast however many items and cases there
    are; the rollup can be recomputed for any day at any time (it is derived, never the record).
    """

    day = models.DateField()
    metric = models.CharField(max_length=32)
    key = models.CharField(max_length=100, blank=True, help_text="e.g. the bank, queue or action")
    value = models.FloatField()

    class Meta:
        ordering = ["day", "metric", "key"]
        constraints = [models.UniqueConstraint(fields=["day", "metric", "key"], name="one_daily_metric")]
        indexes = [models.Index(fields=["metric", "day"], name="daily_metric_idx")]

    def __str__(self):
        return f"{self.day} {self.metric}[{self.key}] = {self.value:g}"


# Law-enforcement requests -----------------------------------------------------------------------

class Agency(models.Model):
    """A law-enforcement agency whose officers may file legal requests through the portal."""

    name = models.CharField(max_length=200, unique=True)
    jurisdiction = models.CharField(max_length=200, blank=True, help_text="e.g. county, state, country")
    contact_email = models.EmailField(blank=True)
    active = models.BooleanField(default=True, help_text="An inactive agency's officers cannot sign in to the portal")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "agencies"

    def __str__(self):
        return self.name


class AgencyMember(models.Model):
    """Ties a portal user to one agency: they see that agency's requests and nothing else."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agency_member")
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="members")
    badge = models.CharField(max_length=64, blank=True, help_text="Badge or officer number")
    phone = models.CharField(max_length=64, blank=True)

    def __str__(self):
        return f"{self.user} ({self.agency})"


class LegalRequestKind(models.TextChoices):
    EMERGENCY = "emergency", "Emergency disclosure"
    PRESERVATION = "preservation", "Preservation"
    SUBPOENA = "subpoena", "Subpoena"
    COURT_ORDER = "court_order", "Court order"
    SEARCH_WARRANT = "search_warrant", "Search warrant"


class LegalRequestStatus(models.TextChoices):
    SUBMITTED = "submitted", "Submitted"
    VERIFIED = "verified", "Verified, in progress"
    RESPONDED = "responded", "Responded"
    CLOSED = "closed", "Closed"
    REJECTED = "rejected", "Rejected"


class LegalRequest(models.Model):
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="requests")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=LegalRequestKind)
    reference = models.CharField(max_length=100, help_text="The agency's own case or docket number")
    identifiers = models.JSONField(default=list, help_text='[{"type": "account"|"group", "id": "..."}]')
    description = models.TextField()
    due_at = models.DateTimeField()
    status = models.CharField(max_length=12, choices=LegalRequestStatus, default=LegalRequestStatus.SUBMITTED)
    assigned_to = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")
    verified_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_note = models.CharField(max_length=500, blank=True,
                                         help_text="How the request was verified (e.g. call-back to the agency)")
    accounts = models.ManyToManyField(Account, blank=True, related_name="legal_requests")
    groups = models.ManyToManyField(Group, blank=True, related_name="legal_requests")
    cases = models.ManyToManyField(Case, blank=True, related_name="legal_requests")
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("handle_legal_requests", "Can triage and answer law-enforcement requests")]
        indexes = [models.Index(fields=["agency", "-created_at"], name="legal_request_agency_idx")]

    def __str__(self):
        return f"{self.get_kind_display()} {self.reference} ({self.agency})"

    @property
    def is_emergency(self):
        return self.kind == LegalRequestKind.EMERGENCY

    @property
    def is_open(self):
        return self.status not in (LegalRequestStatus.CLOSED, LegalRequestStatus.REJECTED)


class LegalDocument(models.Model):
    """A PDF on a request: the agency's legal process, or an attachment to our response."""

    class Side(models.TextChoices):
        AGENCY = "agency", "From the agency"
        RESPONSE = "response", "Our response"

    request = models.ForeignKey(LegalRequest, on_delete=models.PROTECT, related_name="documents")
    side = models.CharField(max_length=10, choices=Side)
    name = models.CharField(max_length=255)
    storage_path = models.CharField(max_length=512, help_text="Relative to EVIDENCE_ROOT")
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return self.name


class LegalMessage(models.Model):
    """The conversation on a request: the agency's notes and our responses."""

    request = models.ForeignKey(LegalRequest, on_delete=models.PROTECT, related_name="messages")
    side = models.CharField(max_length=10, choices=LegalDocument.Side)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"message on {self.request_id} by {self.author}"
