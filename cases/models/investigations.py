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
