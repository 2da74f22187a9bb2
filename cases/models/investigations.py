"""What investigators add to subjects: tags that follow an account or a group wherever it appears."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from detection.models import Account, Group


class TagKind(models.TextChoices):
    POSSIBLE_MINOR_VICTIM = "possible_minor_victim", "Possible minor victim"
    LEGAL_HOLD = "legal_hold", "Legal hold"
    SENIOR_ONLY = "senior_only", "Do not action without a senior"
    TRUSTED_FLAGGER = "trusted_flagger", "Trusted flagger"


class SubjectTag(models.Model):
    """A tag on an account or a group. Removing it stamps `removed_at`: who set and who removed it stay."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, null=True, blank=True, related_name="tags")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, null=True, blank=True, related_name="tags")
    tag = models.CharField(max_length=32, choices=TagKind)
    note = models.CharField(max_length=500, blank=True, help_text="Why the tag was set")
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    set_at = models.DateTimeField()
    removed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-set_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(account__isnull=False, group__isnull=True)
                                   | Q(account__isnull=True, group__isnull=False), name="tag_has_one_subject"),
            models.UniqueConstraint(fields=["account", "tag"], name="one_live_tag_per_account",
                                    condition=Q(removed_at__isnull=True, account__isnull=False)),
            models.UniqueConstraint(fields=["group", "tag"], name="one_live_tag_per_group",
                                    condition=Q(removed_at__isnull=True, group__isnull=False)),
        ]

    def __str__(self):
        return f"{self.get_tag_display()} on {self.account or self.group}"

    @property
    def subject(self):
        return self.account or self.group


class ClusterOrigin(models.TextChoices):
    ITEM = "item", "Who shared an item"
    GROUP = "group", "A group's members"


class Cluster(models.Model):
    """A cluster case: the accounts and groups an investigator found linked through a pivot (the same or
    similar media, one group), kept together so they can be acted on as one network."""

    title = models.CharField(max_length=200)
    note = models.TextField(blank=True)
    origin = models.CharField(max_length=16, choices=ClusterOrigin)
    origin_item = models.ForeignKey("detection.Item", on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")
    origin_group = models.ForeignKey(Group, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"Cluster #{self.pk}: {self.title}"


class ClusterMember(models.Model):
    """One account or group in a cluster, with the items that link it (its evidence in the cluster)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="members")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    group = models.ForeignKey(Group, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    items = models.JSONField(default=list, blank=True, help_text="Ids of the items that link it to the cluster")
    distance = models.PositiveSmallIntegerField(null=True, blank=True,
                                                help_text="Closest PDQ distance to the cluster's item (0: same file)")

    class Meta:
        ordering = ["distance", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(account__isnull=False, group__isnull=True)
                                   | Q(account__isnull=True, group__isnull=False), name="cluster_member_one_subject"),
            models.UniqueConstraint(fields=["cluster", "account"], name="one_cluster_member_per_account",
                                    condition=Q(account__isnull=False)),
            models.UniqueConstraint(fields=["cluster", "group"], name="one_cluster_member_per_group",
                                    condition=Q(group__isnull=False)),
        ]

    def __str__(self):
        return f"{self.subject} in cluster #{self.cluster_id}"

    @property
    def subject(self):
        return self.account or self.group

    @property
    def kind(self):
        return "account" if self.account_id else "group"


class ClusterActionStatus(models.TextChoices):
    PENDING = "pending", "Waiting for a second reviewer"
    APPROVED = "approved", "Approved: being carried out"
    DONE = "done", "Carried out"
    REJECTED = "rejected", "Rejected"


class ClusterAction(models.Model):
    """A bulk decision on members of a cluster: proposed by one person with the preview they saw,
    carried out only once a different senior approves it, one audited decision per member."""

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="actions")
    policy = models.ForeignKey("cases.Policy", on_delete=models.PROTECT, related_name="+")
    policy_version = models.PositiveIntegerField()
    ban_days = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Empty: permanent")
    members = models.ManyToManyField(ClusterMember, related_name="actions")
    note = models.TextField()
    preview = models.JSONField(default=dict, blank=True, help_text="What the proposer was shown, per member")
    status = models.CharField(max_length=10, choices=ClusterActionStatus, default=ClusterActionStatus.PENDING)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    proposed_at = models.DateTimeField()
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-proposed_at", "-pk"]
        indexes = [models.Index(fields=["reviewed_at"], name="cluster_action_unfinished_idx",
                                condition=Q(status="approved"))]

    def __str__(self):
        return f"Bulk action #{self.pk} on cluster #{self.cluster_id}"


class ClusterOutcome(models.Model):
    """What an approved bulk action did to one member: a decision on its case, or why it was skipped.
    One row per (action, member): the row is the bulk action's idempotency key."""

    action = models.ForeignKey(ClusterAction, on_delete=models.CASCADE, related_name="outcomes")
    member = models.ForeignKey(ClusterMember, on_delete=models.CASCADE, related_name="outcomes")
    case = models.ForeignKey("cases.Case", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    decision = models.ForeignKey("cases.Decision", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    skipped = models.CharField(max_length=300, blank=True, help_text="Why nothing was done to this member")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["action", "member"], name="one_outcome_per_cluster_member")]

    def __str__(self):
        return f"{self.member} under bulk action #{self.action_id}: {self.skipped or 'decided'}"
