"""Automation rules: conditions over a signal and its subject that apply a policy, route or rank.

A rule is versioned like a policy: its conditions and effect live on `RuleVersion` rows, and each
automated decision names the version that took it. Every evaluation that matched is kept as a
`RuleFiring` (shadow or live), which is what backtests compare, breakers count and rollbacks undo.
"""

from django.conf import settings
from django.db import models


class RuleMode(models.TextChoices):
    OFF = "off", "Off"
    SHADOW = "shadow", "Shadow (records what it would do)"
    ON = "on", "On (acts)"


class RuleEffect(models.TextChoices):
    APPLY_POLICY = "apply_policy", "Apply a policy"
    ROUTE = "route", "Route to a queue"
    PRIORITY = "priority", "Set the priority"


class Rule(models.Model):
    code = models.SlugField(unique=True)
    title = models.CharField(max_length=160)
    description = models.TextField(blank=True, help_text="Why the rule exists and what evidence makes it safe")
    mode = models.CharField(max_length=8, choices=RuleMode, default=RuleMode.OFF)
    version = models.PositiveIntegerField(default=0, editable=False)
    position = models.PositiveSmallIntegerField(default=0, help_text="Rules are tried in this order")
    qa_percent = models.PositiveSmallIntegerField(
        default=2, help_text="Share of its automated decisions sent to blind human QA")
    qa_percent_new = models.PositiveSmallIntegerField(
        default=20, help_text="The share while the rule (or its latest version) is new")
    new_days = models.PositiveSmallIntegerField(default=14, help_text="How long a version counts as new")
    breaker_per_hour = models.PositiveIntegerField(
        default=0, help_text="Trip when it acts more than this in an hour (0: from its usual rate)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "code"]
        permissions = [("manage_rules", "Can create, enable and roll back automation rules")]

    def __str__(self):
        return self.title


class RuleVersion(models.Model):
    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    conditions = models.JSONField(default=list, help_text='[{"field": ..., "op": ..., "value": ...}], all must hold')
    effect = models.CharField(max_length=16, choices=RuleEffect)
    policy = models.ForeignKey("cases.Policy", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    queue = models.ForeignKey("cases.ReviewQueue", on_delete=models.PROTECT, null=True, blank=True,
                              related_name="+")
    priority = models.PositiveSmallIntegerField(null=True, blank=True)
    mode = models.CharField(max_length=8, choices=RuleMode)
    note = models.TextField(blank=True, help_text="What changed and why")
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["rule", "-version"]
        constraints = [models.UniqueConstraint(fields=["rule", "version"], name="one_row_per_rule_version")]

    def __str__(self):
        return f"{self.rule.code} v{self.version}"


class FiringOutcome(models.TextChoices):
    SHADOW = "shadow", "Shadow: would have acted"
    DECIDED = "decided", "Decided"
    ROUTED = "routed", "Routed"
    PRIORITISED = "prioritised", "Priority set"
    HELD_BACK = "held_back", "Matched, left to people (guardrail)"
    BREAKER = "breaker", "Matched, left to people (circuit breaker open)"
    ROLLED_BACK = "rolled_back", "Rolled back"


class RuleFiring(models.Model):
    """One case a rule version matched, and what came of it."""

    rule_version = models.ForeignKey(RuleVersion, on_delete=models.PROTECT, related_name="firings")
    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="firings")
    case = models.ForeignKey("cases.Case", on_delete=models.PROTECT, related_name="rule_firings")
    signal = models.ForeignKey("detection.Signal", on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="+", help_text="The signal that met the conditions")
    bank = models.ForeignKey("detection.Bank", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    bank_hash = models.ForeignKey("detection.BankHash", on_delete=models.SET_NULL, null=True, blank=True,
                                  related_name="+")
    outcome = models.CharField(max_length=12, choices=FiringOutcome)
    why = models.CharField(max_length=255, blank=True)
    decision = models.ForeignKey("cases.Decision", on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="rule_firings")
    created_at = models.DateTimeField(auto_now_add=True)
    rolled_back_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A case is acted on by one version of a rule once, however often triage runs.
            models.UniqueConstraint(fields=["rule_version", "case"], name="one_firing_per_rule_version_case"),
        ]
        indexes = [
            models.Index(fields=["rule", "created_at"], name="rulefiring_rule_idx"),
            models.Index(fields=["bank", "created_at"], name="rulefiring_bank_idx"),
            models.Index(fields=["bank_hash", "created_at"], name="rulefiring_entry_idx"),
        ]

    def __str__(self):
        return f"{self.rule_version} on case {self.case_id}: {self.outcome}"


class BreakerScope(models.TextChoices):
    RULE = "rule", "Rule"
    BANK = "bank", "Bank"
    ENTRY = "entry", "Bank entry"


class Breaker(models.Model):
    """A circuit breaker that tripped: automation over its scope stops until a senior resumes it."""

    scope = models.CharField(max_length=8, choices=BreakerScope)
    object_id = models.PositiveBigIntegerField()
    label = models.CharField(max_length=255)
    reason = models.TextField()
    counts = models.JSONField(default=dict, blank=True, help_text="The rate that tripped it and the usual rate")
    tripped_at = models.DateTimeField(auto_now_add=True)
    resumed_at = models.DateTimeField(null=True, blank=True)
    resumed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    resume_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-tripped_at"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "object_id"], condition=models.Q(resumed_at__isnull=True),
                                    name="one_open_breaker_per_scope_object"),
        ]

    def __str__(self):
        return f"breaker on {self.scope} {self.object_id}"

    @property
    def open(self):
        return self.resumed_at is None
