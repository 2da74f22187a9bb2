"""Reason codes, decisions and the blind QA of decisions."""

from django.conf import settings
from django.db import models

from cases.models.review import Case


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
    policy = models.ForeignKey("cases.Policy", on_delete=models.PROTECT, null=True, blank=True,
                               related_name="decisions", help_text="Empty for escalations (routing, not a decision)")
    policy_version = models.PositiveIntegerField(null=True, blank=True)
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
    rule_version = models.ForeignKey("cases.RuleVersion", on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="decisions",
                                     help_text="Taken by this automation rule (decided_by is then the rules' account)")
    rolled_back_at = models.DateTimeField(null=True, blank=True, help_text="Reversed by a rule rollback")
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
