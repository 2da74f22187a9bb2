"""Enforcement policies: what a decision in each category does, versioned.

A reviewer (or, later, an automation rule) decides by choosing a policy, not a verb. The policy
names a category and its effects; the decision records which version of it applied. Categories
the law makes reportable (apparent child sexual abuse material, enticement: 18 U.S.C. 2258A as
amended by the REPORT Act) always report to NCMEC and preserve the evidence: `save()` forces it
and a database constraint refuses anything else, whoever edits the row.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from cases.models.cybertip import INCIDENT_TYPES


class PolicyCategory(models.TextChoices):
    KNOWN_CSAM = "known_csam", "Known child sexual abuse material"
    NEW_CSAM = "new_csam", "New child sexual abuse material"
    SEXUALISED_MINOR = "sexualised_minor", "Sexualised depiction of a minor"
    GROOMING = "grooming", "Grooming or enticement of a minor"
    SEXTORTION = "sextortion", "Sextortion"
    DISTRIBUTION_GROUP = "distribution_group", "Group organised to share exploitation material"
    MINOR_VICTIM = "minor_victim", "A child as victim (their images, or contact by an adult)"
    ADULT_NUDITY = "adult_nudity", "Adult nudity against platform rules"
    OTHER_VIOLATION = "other_violation", "Other platform-rule violation"
    FALSE_POSITIVE = "false_positive", "False positive"
    BENIGN = "benign", "Benign"
    INSUFFICIENT_EVIDENCE = "insufficient_evidence", "Not enough evidence"


# Reportable by law: a policy in one of these categories always reports and preserves.
REPORTABLE = frozenset({
    PolicyCategory.KNOWN_CSAM, PolicyCategory.NEW_CSAM, PolicyCategory.SEXUALISED_MINOR, PolicyCategory.GROOMING,
    PolicyCategory.SEXTORTION, PolicyCategory.DISTRIBUTION_GROUP, PolicyCategory.MINOR_VICTIM,
})
# Confirming material no bank knows rests on a person's judgement of the image itself.
NEEDS_VIEW = frozenset({PolicyCategory.NEW_CSAM, PolicyCategory.SEXUALISED_MINOR})

# What a statement of reasons (DSA Art. 17) tells the user about the facts, per category, where the
# policy says nothing itself. Words safe to show an offender: nothing about how the material was found
# (no bank, hash, distance, classifier, score or rule), which would help the next upload evade it.
DEFAULT_USER_FACTS = {
    PolicyCategory.KNOWN_CSAM: "Content shared from this account was identified as child sexual abuse material, "
                               "which is illegal and never allowed on the service.",
    PolicyCategory.NEW_CSAM: "Content shared from this account was reviewed and identified as child sexual abuse "
                             "material, which is illegal and never allowed on the service.",
    PolicyCategory.SEXUALISED_MINOR: "Content shared from this account depicts a minor in a sexualised way, which "
                                     "is illegal and never allowed on the service.",
    PolicyCategory.GROOMING: "This account was used to seek sexual contact with a minor or to entice a minor into "
                             "sexual activity, which is illegal and never allowed on the service.",
    PolicyCategory.SEXTORTION: "This account was used to threaten to share sexual images of a person unless they "
                               "paid or sent more images, which is illegal and never allowed on the service.",
    PolicyCategory.DISTRIBUTION_GROUP: "This group was used to share child sexual abuse material, which is illegal "
                                       "and never allowed on the service.",
    PolicyCategory.MINOR_VICTIM: "This content was removed to protect the safety of a young person.",
    PolicyCategory.ADULT_NUDITY: "The content shows adult nudity, which the service's rules do not allow here.",
    PolicyCategory.OTHER_VIOLATION: "The content or account breaks the service's rules.",
}
CSAM_LAW = "18 U.S.C. 2256, 2258A; Directive 2011/93/EU (Art. 5)"
ENTICEMENT_LAW = "18 U.S.C. 2422(b), 2258A; Directive 2011/93/EU (Art. 6)"
DEFAULT_TERMS_GROUND = {
    PolicyCategory.ADULT_NUDITY: "Terms of service: nudity and sexual content",
    PolicyCategory.OTHER_VIOLATION: "Terms of service",
}


class BanScope(models.TextChoices):
    NONE = "none", "No ban"
    SUBJECT = "subject", "Ban the account or group"
    SUBJECT_AND_MEMBERS = "members", "Ban the group and the members the reviewer selects"


class RemoveScope(models.TextChoices):
    NONE = "none", "Remove nothing"
    FLAGGED = "flagged", "Remove the items flagged in the case"


class BankEffect(models.TextChoices):
    NONE = "none", "No bank change"
    LOCAL = "local", "Add the media to the local bank of confirmed material"


EFFECT_FIELDS = ("category", "ban", "remove", "report", "hold", "bank", "notify_user", "protect", "incident_type",
                 "view_before_filing")


class Policy(models.Model):
    code = models.SlugField(unique=True, help_text="Stable name; also the reason code recorded on decisions")
    title = models.CharField(max_length=160)
    category = models.CharField(max_length=32, choices=PolicyCategory)
    description = models.TextField(blank=True, help_text="What reviewers should know before choosing it")
    ban = models.CharField(max_length=16, choices=BanScope, default=BanScope.NONE)
    remove = models.CharField(max_length=16, choices=RemoveScope, default=RemoveScope.NONE)
    report = models.BooleanField(default=False, help_text="File a CyberTipline report (always, when reportable)")
    hold = models.BooleanField(default=False, help_text="Place legal holds on the evidence (always, when reportable)")
    bank = models.CharField(max_length=16, choices=BankEffect, default=BankEffect.NONE)
    notify_user = models.BooleanField(default=False, help_text="Ask the platform to tell the user why")
    protect = models.BooleanField(default=False, help_text="Ask the platform to protect the account (a child "
                                                           "victim): limit contact from strangers, offer support")
    view_before_filing = models.BooleanField(
        default=False, help_text="A report from an automated decision waits until a specialist has viewed the "
                                 "files: without a provider's view, police may need a warrant to open them")
    incident_type = models.CharField(max_length=100, blank=True,
                                     choices=[(t, t) for t in INCIDENT_TYPES],
                                     help_text="CyberTipline incident type of its reports")
    # The statement of reasons each restriction carries (DSA Art. 17) and the Transparency Database gets.
    user_facing_facts = models.TextField(
        blank=True, max_length=2000,
        help_text="The facts relied on, in words the user may read (empty: the category's default). For "
                  "child-exploitation categories, never how it was found: no bank, hash, score or rule")
    show_detection_detail = models.BooleanField(
        default=False, help_text="The statement may say what detection found (signal labels). Never for "
                                 "categories the law makes reportable")
    legal_ground = models.CharField(
        max_length=500, blank=True,
        help_text="The law relied on, for illegal content (reportable categories; a default is filled in)")
    terms_ground = models.CharField(
        max_length=500, blank=True,
        help_text="The clause of the terms of service relied on, for platform-rule categories")
    active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order on the case page; the first ten get keys")
    version = models.PositiveIntegerField(default=1, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "code"]
        verbose_name_plural = "policies"
        constraints = [
            models.CheckConstraint(
                condition=~Q(category__in=sorted(REPORTABLE)) | Q(report=True, hold=True),
                name="reportable_policy_reports_and_preserves",
            ),
            models.CheckConstraint(
                condition=~Q(category__in=sorted(REPORTABLE)) | Q(show_detection_detail=False),
                name="reportable_policy_hides_detection_detail",
            ),
        ]

    def __str__(self):
        return self.title

    def save(self, *args, **kwargs):
        if self.reportable:
            self.report = self.hold = True
            if not self.incident_type:
                self.incident_type = default_incident_type(self.category)
            # What detection found helps the next upload evade it: never in a statement an offender reads.
            self.show_detection_detail = False
            self.legal_ground = self.legal_ground or default_legal_ground(self.category)
        elif not self.terms_ground:
            self.terms_ground = DEFAULT_TERMS_GROUND.get(self.category, "")
        if not self.user_facing_facts:
            self.user_facing_facts = DEFAULT_USER_FACTS.get(self.category, "")
        super().save(*args, **kwargs)

    @property
    def reportable(self):
        return self.category in REPORTABLE

    @property
    def needs_view(self):
        return self.category in NEEDS_VIEW

    @property
    def offends(self):
        """An offender policy: it bans the subject. Never applied to a possible child victim."""
        return self.ban != BanScope.NONE

    @property
    def acts(self):
        return self.report or self.ban != BanScope.NONE or self.remove != RemoveScope.NONE

    @property
    def action(self):
        """The verb recorded on the decision and the case's resolution (metrics count by it)."""
        if self.report:
            return "report"
        if self.ban != BanScope.NONE:
            return "ban"
        if self.remove != RemoveScope.NONE:
            return "remove"
        return "dismiss"

    def effects(self):
        return {name: getattr(self, name) for name in EFFECT_FIELDS}

    def describe(self, subject="account"):
        """The effects in words, for the reviewer's confirmation and the audit row."""
        words = []
        if self.ban == BanScope.SUBJECT:
            words.append(f"bans the {subject}")
        elif self.ban == BanScope.SUBJECT_AND_MEMBERS:
            words.append(f"bans the {subject}" + (" and the members you select" if subject == "group" else ""))
        if self.remove == RemoveScope.FLAGGED:
            words.append("removes the flagged items")
        if self.report:
            words.append("drafts a CyberTipline report")
        if self.hold:
            words.append("places legal holds on the evidence")
        if self.bank == BankEffect.LOCAL:
            words.append("adds the media to the local bank")
        if self.notify_user:
            words.append("asks the platform to tell the user")
        if self.protect:
            words.append(f"asks the platform to protect the {subject}")
        if self.category == PolicyCategory.MINOR_VICTIM:
            words.append("reports the account as the victim, not the offender")
        return ", ".join(words) or "closes the case with no action"


def default_incident_type(category):
    if category in (PolicyCategory.GROOMING, PolicyCategory.SEXTORTION):
        return "Online Enticement of Children for Sexual Acts"
    return INCIDENT_TYPES[0]


def default_legal_ground(category):
    if category in (PolicyCategory.GROOMING, PolicyCategory.SEXTORTION):
        return ENTICEMENT_LAW
    return CSAM_LAW if category in REPORTABLE else ""


class PolicyVersion(models.Model):
    """Every version of a policy's effects, so a decision's `policy_version` can always be read back."""

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    effects = models.JSONField()
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["policy", "-version"]
        constraints = [models.UniqueConstraint(fields=["policy", "version"], name="one_row_per_policy_version")]

    def __str__(self):
        return f"{self.policy} v{self.version}"
