"""Accounts and groups: the subjects the platform tells us about."""

from django.db import models


class SubjectStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    BANNED = "banned", "Banned"


class Subject(models.Model):
    """What accounts and groups share: the platform's id, its behaviour facts, enforcement and analysis."""

    external_id = models.CharField(max_length=255, unique=True)
    facts = models.JSONField(default=dict, blank=True, help_text="Behaviour facts sent by the platform")
    status = models.CharField(max_length=16, choices=SubjectStatus, default=SubjectStatus.ACTIVE)
    banned_at = models.DateTimeField(null=True, blank=True, db_index=True)
    analysed_at = models.DateTimeField(null=True, blank=True,
                                       help_text="Text surfaces and risk last scored (pending while null or stale)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["external_id"]


class Account(Subject):
    screen_name = models.CharField(max_length=255, blank=True)
    display_name = models.CharField(max_length=255, blank=True)
    bio = models.TextField(blank=True)
    email = models.CharField(max_length=320, blank=True)
    phone = models.CharField(max_length=64, blank=True)
    age_band = models.CharField(max_length=16, blank=True, help_text="e.g. 13-15, 16-17, 18+")
    registered_at = models.DateTimeField(null=True, blank=True)

    class Meta(Subject.Meta):
        db_table = "cases_account"  # the table keeps the name it had in the cases app

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
        db_table = "cases_accountlink"  # the table keeps the name it had in the cases app
        constraints = [models.UniqueConstraint(fields=["account", "kind", "value"], name="unique_account_link")]
        indexes = [models.Index(fields=["kind", "value"], name="account_link_lookup_idx")]

    def __str__(self):
        return f"{self.account} {self.kind} {self.value[:12]}"


class Group(Subject):
    name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    member_count = models.PositiveIntegerField(default=0)
    members = models.ManyToManyField(Account, through="Membership", related_name="groups")

    class Meta(Subject.Meta):
        db_table = "cases_group"  # the table keeps the name it had in the cases app

    def __str__(self):
        return f"group {self.external_id}" + (f" ({self.name})" if self.name else "")


class Membership(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE)
    group = models.ForeignKey(Group, on_delete=models.CASCADE)
    role = models.CharField(max_length=32, blank=True)
    joined_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "cases_membership"  # the table keeps the name it had in the cases app
        constraints = [models.UniqueConstraint(fields=["account", "group"], name="unique_membership")]

    def __str__(self):
        return f"{self.account} in {self.group}"
