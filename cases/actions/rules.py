"""Automation rules: saved as versions, run over triaged cases, backtested, broken, rolled back.

A rule in mode "on" decides through the same path as a person (`carry_out_many`, of which a person's
`carry_out` is a batch of one): the decision names the rule version, its decider is the console's
automation account, and the audit row says which rule acted. The cases of one run that a rule acts
on are decided together, up to DECIDE_CHUNK in a transaction, each still checked and audited on its
own. Whatever a rule says, it never acts where a person must: a possible child victim, new material
that needs a human view, dual control, a case someone holds, a bank entry people deconfirmed, or a
rule, bank or entry whose circuit breaker is open. Those cases stay with people.
"""

import hashlib
import json
import logging
import time
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from cases import conditions, routing
from cases.actions import ActionError
from cases.actions.decisions import carry_out_many, guard_facts, guardrail, needs_second_reviewer, reverse_decision
from cases.models import (
    Breaker,
    BreakerScope,
    Case,
    CaseStatus,
    Decision,
    FiringOutcome,
    Policy,
    ReasonCode,
    ReviewQueue,
    Rule,
    RuleEffect,
    RuleFiring,
    RuleMode,
    RuleVersion,
    SubjectTag,
)
from detection import hash_quality
from detection.models import Bank, BankHash, EntryStatus, Signal, SignalKind
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from reviewconsole.audit.recorder import audit, audit_many

log = logging.getLogger(__name__)

AUTOMATION_USERNAME = "automation"
BACKTEST_MAX_DAYS = 90
BACKTEST_MAX_CASES = 200_000
BACKTEST_LISTED = 200
BACKTEST_VALID_DAYS = 7


def automation_account():
    """The account automated decisions are recorded under: inactive, no password, no permissions."""
    user, created = get_user_model().objects.get_or_create(
        username=AUTOMATION_USERNAME, defaults={"is_active": False, "first_name": "Automation rules"})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


# --- saving ------------------------------------------------------------------------------------------------

def fingerprint(spec):
    """What a backtest is valid for: the conditions and effect, not the mode or the note."""
    keep = {k: spec.get(k) for k in ("conditions", "effect", "policy", "queue", "priority")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def clean_spec(*, conditions_list, effect, policy_code="", queue_slug="", priority=None):
    """Validate a rule's conditions and effect; returns (spec, policy, queue) or raises ActionError."""
    try:
        clean = conditions.validate(conditions_list)
    except conditions.ConditionError as exc:
        raise ActionError(str(exc)) from None
    policy = queue = None
    if effect == RuleEffect.APPLY_POLICY:
        policy = Policy.objects.filter(code=policy_code, active=True).first()
        if policy is None:
            raise ActionError("Choose the policy the rule applies.")
        if policy.needs_view:
            raise ActionError(f"{policy.title}: new material is confirmed only by a person who viewed it; "
                              "no rule may apply it.")
        if policy.category == "minor_victim":
            raise ActionError("Whether a child is the victim is decided by people, not rules.")
    elif effect == RuleEffect.ROUTE:
        queue = ReviewQueue.objects.filter(slug=queue_slug).first()
        if queue is None:
            raise ActionError("Choose the queue the rule routes to.")
    elif effect == RuleEffect.PRIORITY:
        if not isinstance(priority, int) or not 0 <= priority <= 100:
            raise ActionError("Give a priority from 0 to 100.")
    else:
        raise ActionError("Choose what the rule does.")
    spec = {"conditions": clean, "effect": effect, "policy": policy.code if policy else None,
            "queue": queue.slug if queue else None, "priority": priority if effect == RuleEffect.PRIORITY else None}
    return spec, policy, queue


def save_rule(user, rule, *, conditions_list, effect, policy_code="", queue_slug="", priority=None, mode=RuleMode.OFF,
              note="", ip=None):
    """Create or change a rule. Any change of conditions, effect or mode is a new version; turning a
    rule on needs a backtest of these very conditions in the last week."""
    spec, policy, queue = clean_spec(conditions_list=conditions_list, effect=effect, policy_code=policy_code,
                                     queue_slug=queue_slug, priority=priority)
    if mode not in RuleMode.values:
        raise ActionError("Choose a mode.")
    if not (rule.code or "").strip() or not (rule.title or "").strip():
        raise ActionError("A rule needs a code and a title.")
    if mode == RuleMode.ON and rule.pk and not backtested(rule, spec):
        raise ActionError("Backtest these conditions before turning the rule on (shadow mode records what it "
                          "would do without acting).")
    if mode == RuleMode.ON and not rule.pk:
        raise ActionError("A new rule starts off or in shadow mode; backtest it, then turn it on.")
    with transaction.atomic():
        created = rule.pk is None
        current = None if created else Rule.objects.select_for_update().get(pk=rule.pk).versions.first()
        before = _spec_of(current) if current else None
        changed = created or before != spec or current.mode != mode
        if changed:
            rule.version = (current.version if current else 0) + 1
        rule.mode = mode
        try:
            with transaction.atomic():
                rule.save()
        except IntegrityError:
            raise ActionError("A rule with this code exists already.") from None
        if changed:
            RuleVersion.objects.create(rule=rule, version=rule.version, conditions=spec["conditions"], effect=effect,
                                       policy=policy, queue=queue, priority=spec["priority"], mode=mode, note=note,
                                       changed_by=user if getattr(user, "pk", None) else None)
        audit(user, Event.RULE_CREATED if created else Event.RULE_CHANGED, object_type="rule", object_id=rule.pk,
              ip=ip, details={"code": rule.code, "version": rule.version, "mode": mode, **spec,
                              "in_words": conditions.describe(spec["conditions"]), "note": note,
                              "before": before})
    return rule


def _spec_of(version):
    return {"conditions": version.conditions, "effect": version.effect,
            "policy": version.policy.code if version.policy_id else None,
            "queue": version.queue.slug if version.queue_id else None, "priority": version.priority}


def current_version(rule):
    return rule.versions.select_related("policy", "queue").first()


def backtested(rule, spec):
    since = timezone.now() - timedelta(days=BACKTEST_VALID_DAYS)
    return AuditEvent.objects.filter(action=Event.RULE_BACKTESTED, object_type="rule", object_id=str(rule.pk),
                                     created_at__gte=since, details__fingerprint=fingerprint(spec)).exists()


# --- running ------------------------------------------------------------------------------------------------

def live_versions():
    """The current version of every rule that is not off, in the order rules are tried."""
    rules = Rule.objects.exclude(mode=RuleMode.OFF).order_by("position", "code")
    versions = []
    for rule in rules:
        version = current_version(rule)
        if version is not None and version.mode != RuleMode.OFF:
            version.rule = rule
            versions.append(version)
    return versions


def apply_rules(case_ids):
    """Run the live rules over these cases (open, not held by anyone). Idempotent: a rule version acts
    on a case once. Returns {outcome: count}."""
    versions = live_versions()
    counts = defaultdict(int)
    if not versions or not case_ids:
        return dict(counts)
    cases = list(Case.objects.filter(pk__in=case_ids, status=CaseStatus.OPEN, closed_at__isnull=True)
                 .select_related("account", "group", "queue"))
    if not cases:
        return dict(counts)
    by_case = defaultdict(list)
    for signal in Signal.objects.filter(case__in=cases).order_by("-severity", "-score", "pk"):
        by_case[signal.case_id].append(signal)
    facts = conditions.Facts(cases)
    facts.load(by_case)
    fired = set(RuleFiring.objects.filter(case__in=cases, rule_version__in=versions).values_list(
        "rule_version_id", "case_id"))
    shared = {}  # the automation account and reason codes, read once for the batch
    # Each case tries the live versions in order. A rule's decision ends the case's turn, one held back
    # lets the next rule try, as one case at a time; the decisions of every case that reached one are
    # taken together, and the cases whose decision was not taken go on from the next rule.
    tried = dict.fromkeys((case.pk for case in cases), 0)
    going = cases
    while going:
        due = []
        for case in going:
            position = tried[case.pk]
            while position < len(versions):
                version = versions[position]
                position += 1
                if (version.pk, case.pk) in fired:
                    continue
                hit = first_hit(version, case, by_case.get(case.pk, []), facts)
                if hit is None:
                    continue
                if version.mode == RuleMode.ON and version.effect == RuleEffect.APPLY_POLICY:
                    due.append((version, case, hit[0], _base(version, case, hit[0])))
                    break
                counts[_fire(version, case, *hit, shared=shared)] += 1
            tried[case.pk] = position
        outcomes = _decide_due(due, shared)
        for outcome in outcomes.values():
            counts[outcome] += 1
        going = [case for _, case, _, _ in due if outcomes[case.pk] != FiringOutcome.DECIDED]
    return dict(counts)


def first_hit(version, case, signals, facts):
    """(signal, its facts) of the first signal of the case that meets every condition, or None."""
    for signal in signals:
        these = facts.of(case, signal)
        if conditions.holds(version.conditions, these) and conditions.acts_on(these):
            return signal, these
    return None


def _base(version, case, signal):
    """The fields of the rule's firing on the case: which rule, case, signal, bank and bank entry."""
    details = signal.details if isinstance(signal.details, dict) else {}
    bank_id = details.get("bank_id") if isinstance(details.get("bank_id"), int) else None
    entry_id = details.get("entry_id") if isinstance(details.get("entry_id"), int) else None
    return {"rule_version": version, "rule": version.rule, "case": case, "signal": signal, "bank_id": bank_id,
            "bank_hash_id": entry_id}


def _fire(version, case, signal, facts, shared=None):
    base = _base(version, case, signal)
    if version.mode == RuleMode.SHADOW:
        _record(base, FiringOutcome.SHADOW, "")
        return FiringOutcome.SHADOW
    if version.effect == RuleEffect.ROUTE:
        return _route(base, case, version)
    if version.effect == RuleEffect.PRIORITY:
        return _prioritise(base, case, version)
    outcomes = _decide_due([(version, case, signal, base)], {} if shared is None else shared)
    return outcomes[case.pk]


def _record(base, outcome, why, decision=None):
    """The firing row; False if this version already fired on the case (a concurrent triage)."""
    try:
        with transaction.atomic():
            RuleFiring.objects.create(**base, outcome=outcome, why=why[:255], decision=decision)
    except IntegrityError:
        return False
    return True


def _route(base, case, version):
    with transaction.atomic():
        if not _record(base, FiringOutcome.ROUTED, f"to {version.queue.slug}"):
            return FiringOutcome.ROUTED
        if case.queue.slug != routing.ESCALATIONS:
            Case.objects.filter(pk=case.pk).update(queue=version.queue, updated_at=timezone.now())
        audit(None, Event.RULE_FIRED, case=case, object_type="rule", object_id=version.rule_id,
              actor_label=_actor(version), details={"effect": "route", "queue": version.queue.slug,
                                                   "signal": base["signal"].pk})
    return FiringOutcome.ROUTED


def _prioritise(base, case, version):
    with transaction.atomic():
        if not _record(base, FiringOutcome.PRIORITISED, f"at least {version.priority}"):
            return FiringOutcome.PRIORITISED
        # A floor, not a value: triage re-ranks cases as signals arrive and must not undo the rule.
        Case.objects.filter(pk=case.pk, base_priority__lt=version.priority).update(
            base_priority=version.priority, updated_at=timezone.now())
        Case.objects.filter(pk=case.pk, priority__lt=version.priority).update(priority=version.priority)
        audit(None, Event.RULE_FIRED, case=case, object_type="rule", object_id=version.rule_id,
              actor_label=_actor(version), details={"effect": "priority", "priority": version.priority,
                                                   "signal": base["signal"].pk})
    return FiringOutcome.PRIORITISED


def _actor(version):
    return f"rule {version.rule.code} v{version.version}"[:150]


DECIDE_CHUNK = 100  # decisions a transaction: a lock held a moment, a failure retried case by case


def decide_automatically(version, case, signal, base, shared=None):
    """Apply the rule's policy to an open case through the decision path, or leave it to people.

    `shared`: a dict kept across the decisions of one batch, holding the automation account and the
    reason codes once read."""
    return _decide_chunk([(version, case, signal, base)], {} if shared is None else shared)[case.pk]


def _decide_due(due, shared):
    """Decide the cases a rule will act on, [(version, case, signal, base)], in chunks of up to
    DECIDE_CHUNK a transaction. Before each chunk the circuit breakers are asked, and a breaker's
    rule, bank or entry gets no more decisions in a chunk than pass between two of its counts one
    decision at a time; the rest wait for the next chunk, counted after this one. Returns {case id: outcome}.
    """
    outcomes = {}
    breakers.prepare([(version.rule, base["bank_id"], base["bank_hash_id"]) for version, _, _, base in due])
    while due:
        chunk, later, taken = [], [], defaultdict(int)
        for candidate in due:
            version, case, _, base = candidate
            keys = breakers.keys(version.rule, base["bank_id"], base["bank_hash_id"])
            if len(chunk) >= DECIDE_CHUNK or any(taken[key] >= breakers.room(key, version.rule) for key in keys):
                later.append(candidate)
                continue
            breaker = breakers.open_for(version.rule_id, base["bank_id"], base["bank_hash_id"])
            if breaker is not None:
                _record(base, FiringOutcome.BREAKER, f"circuit breaker open: {breaker.label}")
                outcomes[case.pk] = FiringOutcome.BREAKER
                continue
            chunk.append(candidate)
            for key in keys:
                taken[key] += 1
        decided = _decide_chunk(chunk, shared)
        outcomes.update(decided)
        breakers.acted_many([(version.rule, base["bank_id"], base["bank_hash_id"])
                             for version, case, _, base in chunk if decided[case.pk] == FiringOutcome.DECIDED])
        due = later
    return outcomes


def _decide_chunk(chunk, shared):
    """Decide a chunk in one transaction; if it fails on a conflict (a concurrent decision or firing on
    one of its cases), each case again in a transaction of its own, so that the others still stand."""
    if not chunk:
        return {}
    # The automation account and the reason codes are read (made, the first time) before the chunk's
    # transaction: a chunk rolled back must not take with it rows the retries go on using.
    if "robot" not in shared:
        shared["robot"] = automation_account()
    for version, *_ in chunk:
        policy = version.policy
        if ("reason", policy.code) not in shared:
            shared[("reason", policy.code)], _ = ReasonCode.objects.get_or_create(
                code=policy.code, defaults={"label": policy.title})
    try:
        with transaction.atomic():
            return _decide_together(chunk, shared)
    except IntegrityError as exc:
        if len(chunk) == 1:
            log.warning("rule decision on case %s given up: %s", chunk[0][1].pk, exc)
            return {chunk[0][1].pk: FiringOutcome.HELD_BACK}
        outcomes = {}
        for candidate in chunk:
            outcomes.update(_decide_chunk([candidate], shared))
        return outcomes


def _decide_together(chunk, shared):
    """The decisions of a chunk of cases (`shared` holding the automation account and the reason codes),
    inside the caller's transaction: each case locked and checked as
    one decision checks it, those a person must decide held back (recorded, with the reason), the others
    decided through carry_out_many, each with its firing and its audit row."""
    robot = shared["robot"]
    now = timezone.now()
    # Locked in id order, as any batch locks them: two batches sharing cases wait instead of deadlocking.
    locked = Case.objects.select_for_update(of=("self",)).select_related("account", "group", "queue").filter(
        pk__in=[case.pk for _, case, _, _ in chunk], status=CaseStatus.OPEN, assigned_to__isnull=True,
        closed_at__isnull=True).order_by("pk").in_bulk()
    outcomes, firings, audits, going = {}, [], [], []
    facts = _guard_facts_many(robot, [locked[case.pk] for _, case, _, _ in chunk if case.pk in locked],
                              need_known=any(not version.policy.reportable for version, *_ in chunk))
    for version, case, signal, base in chunk:
        current = locked.get(case.pk)
        if current is None or current.version != case.version:
            firings.append(RuleFiring(**base, outcome=FiringOutcome.HELD_BACK, why="a person has the case"))
            outcomes[case.pk] = FiringOutcome.HELD_BACK
            continue
        why = _held_back_why(robot, current, version.policy, facts[current.pk])
        if why:
            firings.append(RuleFiring(**base, outcome=FiringOutcome.HELD_BACK, why=why[:255]))
            audits.append((None, Event.RULE_FIRED, {
                "case": current, "object_type": "rule", "object_id": version.rule_id, "actor_label": _actor(version),
                "details": {"effect": "held_back", "why": why, "signal": signal.pk}}))
            outcomes[case.pk] = FiringOutcome.HELD_BACK
            continue
        going.append((version, current, signal, base))
    # A firing already there is a concurrent triage's: the case is held back either way.
    RuleFiring.objects.bulk_create(firings, ignore_conflicts=True)
    if going:
        Case.objects.filter(pk__in=[case.pk for _, case, _, _ in going]).update(
            version=F("version") + 1, updated_at=now)
        decisions = []
        for version, case, signal, _ in going:
            policy = version.policy
            reason = shared[("reason", policy.code)]
            decisions.append(Decision(
                case=case, case_version=case.version, action=policy.action, reason=reason, decided_by=robot,
                policy=policy, policy_version=policy.version, rule_version=version,
                note=f"Automated: {version.rule.title} (v{version.version}) — "
                     f"{conditions.describe(version.conditions)}"[:2000],
                options={"member_ids": [], "hand_off_to": None, "allow_list": False, "effects": policy.effects(),
                         "second_review_reason": "", "rule": version.rule.code, "rule_version": version.version,
                         "signal": signal.pk}))
            case.version += 1
        decisions = Decision.objects.bulk_create(decisions)
        # A firing of the version on the case already there (a concurrent triage) fails the chunk: see _decide_chunk.
        RuleFiring.objects.bulk_create([RuleFiring(**base, outcome=FiringOutcome.DECIDED, why=version.policy.code,
                                                   decision=decision)
                                        for (version, _, _, base), decision in zip(going, decisions, strict=True)])
        effects = carry_out_many([(case, decision) for (_, case, _, _), decision
                                  in zip(going, decisions, strict=True)], now)
        for (version, case, signal, _), decision, done in zip(going, decisions, effects, strict=True):
            audits.append((None, Event.decision(decision.action), {
                "case": case, "object_type": "decision", "object_id": decision.pk, "actor_label": _actor(version),
                "details": {"reason": decision.reason.code, "policy_version": decision.policy_version,
                            "rule": version.rule.code, "rule_version": version.version, "signal": signal.pk,
                            "automated": True, **done}}))
            outcomes[case.pk] = FiringOutcome.DECIDED
    audit_many(audits)
    return outcomes


def _guard_facts_many(robot, cases, need_known=False):
    """The guardrail's facts about these cases, {case id: facts}, each kind read once for all: the
    subjects' live tags, and (for a policy that does not report) whether a known-material match is there."""
    tags = defaultdict(set)
    for field in ("account_id", "group_id"):
        ids = [getattr(case, field) for case in cases if getattr(case, field) and (
            field == "account_id" or not case.account_id)]
        if ids:
            for subject, tag in SubjectTag.objects.filter(**{f"{field}__in": ids}, removed_at__isnull=True) \
                    .values_list(field, "tag"):
                tags[(field, subject)].add(tag)
    known = set()
    if need_known and cases:
        known = set(Signal.objects.filter(case__in=[case.pk for case in cases], kind=SignalKind.HASH_MATCH)
                    .values_list("case_id", flat=True).distinct())
    found = {}
    for case in cases:
        facts = guard_facts(robot, case)
        facts["tags"] = set(tags[("account_id", case.account_id)] if case.account_id
                            else tags[("group_id", case.group_id)])
        if need_known:
            facts["known_match"] = case.pk in known
        found[case.pk] = facts
    return found


def _held_back_why(robot, case, policy, facts=None):
    if case.possible_minor_victim:
        return f"possible child victim: {case.possible_minor_victim}"[:255]
    if needs_second_reviewer(policy.action, case):
        return "dual control: two people decide this case"
    try:
        why = guardrail(robot, case, policy, facts=facts or guard_facts(robot, case))
    except ActionError as exc:
        return str(exc)[:255]
    return why or ""


# --- circuit breakers ----------------------------------------------------------------------------------------

class _Breakers:
    """Trips a rule, bank or bank entry that acts far above its usual rate, and says which are open.

    Counting every firing of the last hour on every decision would cost more than the decision at a
    large platform's volume, so each process counts again only after a slice of the limit has passed
    through it or a few seconds went by; the count itself is bounded by the limit.
    """

    CHECK_SECONDS = 5.0
    OPEN_SECONDS = 2.0

    def __init__(self):
        self.since_check = defaultdict(int)
        self.checked_at = {}
        self.usual = {}
        self.open_cache = (0.0, {})

    def reset(self):
        self.__init__()

    def open_for(self, rule_id, bank_id, entry_id):
        now = time.monotonic()
        at, cached = self.open_cache
        if now - at > self.OPEN_SECONDS:
            cached = {(b.scope, b.object_id): b for b in Breaker.objects.filter(resumed_at__isnull=True)}
            self.open_cache = (now, cached)
        for key in ((BreakerScope.RULE, rule_id), (BreakerScope.BANK, bank_id), (BreakerScope.ENTRY, entry_id)):
            if key[1] is not None and key in cached:
                return cached[key]
        return None

    @staticmethod
    def keys(rule, bank_id, entry_id):
        """The (scope, id) a decision counts towards: its rule, and its bank and entry where it has them."""
        return [(scope, object_id) for scope, object_id in ((BreakerScope.RULE, rule.pk), (BreakerScope.BANK, bank_id),
                                                             (BreakerScope.ENTRY, entry_id)) if object_id is not None]

    def acted(self, rule, bank_id, entry_id):
        self.acted_many([(rule, bank_id, entry_id)])

    def acted_many(self, decided):
        """Count these decisions, [(rule, bank_id, entry_id)], and count again where it is due: every
        scope due at once, the entries' with a statement or two for all of them."""
        tally, rules = defaultdict(int), {}
        for rule, bank_id, entry_id in decided:
            for key in self.keys(rule, bank_id, entry_id):
                tally[key] += 1
                rules[key] = rule
        if not tally:
            return
        self.prepare([(rule, None, None) for rule in rules.values()] + [
            (rules[key], key[1] if key[0] == BreakerScope.BANK else None,
             key[1] if key[0] == BreakerScope.ENTRY else None) for key in tally])
        due = defaultdict(list)
        for key, n in tally.items():
            scope, object_id = key
            self.since_check[key] += n
            limit = self.limit(scope, object_id, rules[key])
            if self.since_check[key] >= max(1, limit // 50) or \
                    time.monotonic() - self.checked_at.get(key, 0.0) > self.CHECK_SECONDS:
                self.since_check[key] = 0
                self.checked_at[key] = time.monotonic()
                due[scope].append((object_id, limit))
        for scope, wanted in due.items():
            if len(wanted) == 1:
                self.check(scope, *wanted[0])
            else:
                self.check_many(scope, wanted)

    def room(self, key, rule):
        """How many more decisions the key takes before its count is due, one decision at a time (at least one)."""
        return max(1, max(1, self.limit(key[0], key[1], rule) // 50) - self.since_check[key])

    def prepare(self, decided):
        """Read the usual rates of these decisions' scopes that are not cached, one statement a scope."""
        wanted = defaultdict(set)
        for rule, bank_id, entry_id in decided:
            for key in self.keys(rule, bank_id, entry_id):
                cached = self.usual.get(key)
                if not (cached and time.monotonic() - cached[0] < 600):
                    wanted[key[0]].add(key[1])
        now = timezone.now()
        for scope, ids in wanted.items():
            field = _FIRING_FIELD[scope]
            counts = dict(RuleFiring.objects.filter(
                outcome=FiringOutcome.DECIDED, **{f"{field}__in": sorted(ids)},
                created_at__gte=now - timedelta(days=7), created_at__lt=now - timedelta(hours=1))
                .values_list(field).annotate(n=Count("pk")).order_by())
            for object_id in ids:
                self.usual[(scope, object_id)] = (time.monotonic(), counts.get(object_id, 0) / (7 * 24 - 1))

    def limit(self, scope, object_id, rule=None):
        if scope == BreakerScope.RULE and rule is not None and rule.breaker_per_hour:
            return rule.breaker_per_hour
        floor = {BreakerScope.RULE: settings.BREAKER_RULE_MIN_PER_HOUR,
                 BreakerScope.BANK: settings.BREAKER_BANK_MIN_PER_HOUR,
                 BreakerScope.ENTRY: settings.BREAKER_ENTRY_MIN_PER_HOUR}[scope]
        return max(floor, int(settings.BREAKER_FACTOR * self.usual_rate(scope, object_id)))

    def usual_rate(self, scope, object_id):
        """Automatic decisions per hour over the last week, before the last hour (cached ten minutes)."""
        cached = self.usual.get((scope, object_id))
        if cached and time.monotonic() - cached[0] < 600:
            return cached[1]
        now = timezone.now()
        count = _firings(scope, object_id).filter(created_at__gte=now - timedelta(days=7),
                                                  created_at__lt=now - timedelta(hours=1)).count()
        rate = count / (7 * 24 - 1)
        self.usual[(scope, object_id)] = (time.monotonic(), rate)
        return rate

    def check(self, scope, object_id, limit):
        now = timezone.now()
        start = now - timedelta(hours=1)
        resumed = Breaker.objects.filter(scope=scope, object_id=object_id, resumed_at__gt=start).order_by(
            "-resumed_at").values_list("resumed_at", flat=True).first()
        recent = _firings(scope, object_id).filter(created_at__gte=max(start, resumed or start))
        count = recent[:limit + 1].count()
        if count > limit:
            trip(scope, object_id, count=count, limit=limit, usual=self.usual_rate(scope, object_id))
            self.open_cache = (0.0, {})

    def check_many(self, scope, wanted):
        """check for many ids of one scope, [(object_id, limit)]: the last hour's firings counted with
        one statement; an id resumed within the hour is counted from its resumption, on its own."""
        now = timezone.now()
        start = now - timedelta(hours=1)
        limits = dict(wanted)
        resumed = set(Breaker.objects.filter(scope=scope, object_id__in=list(limits), resumed_at__gt=start)
                      .values_list("object_id", flat=True))
        field = _FIRING_FIELD[scope]
        plain = [object_id for object_id in limits if object_id not in resumed]
        counts = dict(RuleFiring.objects.filter(outcome=FiringOutcome.DECIDED, **{f"{field}__in": plain},
                                                created_at__gte=start)
                      .values_list(field).annotate(n=Count("pk")).order_by()) if plain else {}
        for object_id in sorted(limits):
            if object_id in resumed:
                self.check(scope, object_id, limits[object_id])
            elif counts.get(object_id, 0) > limits[object_id]:
                trip(scope, object_id, count=counts[object_id], limit=limits[object_id],
                     usual=self.usual_rate(scope, object_id))
                self.open_cache = (0.0, {})


_FIRING_FIELD = {BreakerScope.RULE: "rule_id", BreakerScope.BANK: "bank_id", BreakerScope.ENTRY: "bank_hash_id"}


def _firings(scope, object_id):
    return RuleFiring.objects.filter(outcome=FiringOutcome.DECIDED, **{_FIRING_FIELD[scope]: object_id})


breakers = _Breakers()


def trip(scope, object_id, *, count, limit, usual):
    """Open a breaker (once) and alert: automation over its scope stops; its cases go to people."""
    label = _scope_label(scope, object_id)
    reason = (f"{label} acted {count} times in the last hour, above its limit of {limit} "
              f"(usual rate {usual:.1f} an hour)")
    try:
        with transaction.atomic():
            breaker = Breaker.objects.create(scope=scope, object_id=object_id, label=label[:255], reason=reason,
                                             counts={"last_hour": count, "limit": limit, "usual_per_hour": usual})
            if scope == BreakerScope.ENTRY:
                hash_quality.quarantine_entry(object_id, reason, {"last_hour": count, "limit": limit})
            audit(None, Event.BREAKER_TRIPPED, object_type="breaker", object_id=breaker.pk,
                  details={"scope": scope, "object_id": object_id, "label": label, "reason": reason})
    except IntegrityError:
        return None  # already open
    log.error("circuit breaker tripped: %s", reason)
    return breaker


def _scope_label(scope, object_id):
    if scope == BreakerScope.RULE:
        rule = Rule.objects.filter(pk=object_id).first()
        return f"rule {rule.code}" if rule else f"rule #{object_id}"
    if scope == BreakerScope.BANK:
        bank = Bank.objects.filter(pk=object_id).first()
        return f"bank {bank.name}" if bank else f"bank #{object_id}"
    entry = BankHash.objects.filter(pk=object_id).select_related("bank").first()
    return f"entry #{object_id} of bank {entry.bank.name}" if entry else f"entry #{object_id}"


def resume_breaker(user, breaker_id, *, note, ip=None):
    """A senior closes a breaker: automation resumes, counting afresh from now."""
    if not note.strip():
        raise ActionError("Say why it is safe to resume.")
    with transaction.atomic():
        breaker = Breaker.objects.select_for_update().filter(pk=breaker_id).first()
        if breaker is None or breaker.resumed_at:
            raise ActionError("This breaker is not open.")
        breaker.resumed_at, breaker.resumed_by, breaker.resume_note = timezone.now(), user, note[:2000]
        breaker.save(update_fields=["resumed_at", "resumed_by", "resume_note"])
        if breaker.scope == BreakerScope.ENTRY:
            BankHash.objects.filter(pk=breaker.object_id, status=EntryStatus.QUARANTINED).update(
                status=EntryStatus.ACTIVE, status_reason=f"breaker resumed: {note}"[:255],
                status_changed_at=breaker.resumed_at)
        audit(user, Event.BREAKER_RESUMED, object_type="breaker", object_id=breaker.pk, ip=ip,
              details={"scope": breaker.scope, "object_id": breaker.object_id, "label": breaker.label, "note": note})
    breakers.reset()
    return breaker


# --- rollback ---------------------------------------------------------------------------------------------

def rollback_candidates(rule, since, until):
    """The decisions a rollback of `rule` between `since` and `until` would reverse."""
    return (Decision.objects.filter(rule_version__rule=rule, created_at__gte=since, created_at__lt=until,
                                    rolled_back_at__isnull=True, undone_at__isnull=True)
            .select_related("case", "case__account", "case__group", "policy", "rule_version").order_by("created_at"))


def rollback_rule(user, rule, since, until, *, note, ip=None, chunk=200):
    """Reverse every decision the rule took in the window: each in its own transaction, so that a
    rollback cut short keeps what it did and the next run continues. Returns counts."""
    if not note.strip():
        raise ActionError("Say why the rule's decisions are rolled back.")
    if since >= until:
        raise ActionError("The window must start before it ends.")
    totals = defaultdict(int)
    while True:
        ids = list(rollback_candidates(rule, since, until).values_list("pk", flat=True)[:chunk])
        if not ids:
            break
        for pk in ids:
            result = rollback_decision(user, pk, note=note, ip=ip)
            for key, value in result.items():
                totals[key] += value if isinstance(value, int) else 0
            totals["decisions"] += 1
    audit(user, Event.RULE_ROLLED_BACK, object_type="rule", object_id=rule.pk, ip=ip,
          details={"code": rule.code, "since": since.isoformat(), "until": until.isoformat(), "note": note,
                   **totals})
    return dict(totals)


def rollback_decision(user, decision_id, *, note, ip=None):
    """Reverse one automated decision (see decisions.reverse_decision) and mark its firing."""
    now = timezone.now()
    with transaction.atomic():
        decision = Decision.objects.select_for_update(of=("self",)).select_related("case", "rule_version").filter(
            pk=decision_id, rule_version__isnull=False).first()
        if decision is None or decision.rolled_back_at or decision.undone_at:
            return {}
        result = reverse_decision(user, decision, now, why=f"rule decision rolled back: {note}"[:255], ip=ip)
        RuleFiring.objects.filter(decision=decision).update(outcome=FiringOutcome.ROLLED_BACK, rolled_back_at=now)
    return result


# --- backtest ----------------------------------------------------------------------------------------------

def backtest(user, rule, spec, *, days, ip=None):
    """Run conditions over the stored signals of the last `days` days, as if the rule had been on.

    Returns the subjects it would act on, the overlap with what people decided on those cases, what
    people actioned with the same policy that it would miss, and the volume per day.
    """
    if not 1 <= days <= BACKTEST_MAX_DAYS:
        raise ActionError(f"Backtest over 1 to {BACKTEST_MAX_DAYS} days.")
    since = timezone.now() - timedelta(days=days)
    version = RuleVersion(rule=rule, conditions=spec["conditions"], effect=spec["effect"], mode=RuleMode.ON)
    case_ids = list(Signal.objects.filter(created_at__gte=since, case__isnull=False).order_by("case_id")
                    .values_list("case_id", flat=True).distinct()[:BACKTEST_MAX_CASES + 1])
    truncated = len(case_ids) > BACKTEST_MAX_CASES
    case_ids = case_ids[:BACKTEST_MAX_CASES]
    hits, per_day = [], defaultdict(int)
    for start in range(0, len(case_ids), 2000):
        cases = list(Case.objects.filter(pk__in=case_ids[start:start + 2000]).select_related("account", "group"))
        by_case = defaultdict(list)
        for signal in Signal.objects.filter(case__in=cases).order_by("-severity", "-score", "pk"):
            by_case[signal.case_id].append(signal)
        facts = conditions.Facts(cases)
        facts.load(by_case)
        for case in cases:
            hit = first_hit(version, case, by_case.get(case.pk, []), facts)
            if hit:
                hits.append((case, hit[0]))
                per_day[hit[0].created_at.date().isoformat()] += 1
    people = _human_decisions([case.pk for case, _ in hits])
    agree, disagree, undecided = 0, [], 0
    for case, signal in hits:
        human = people.get(case.pk)
        if human is None:
            undecided += 1
        elif spec["effect"] != RuleEffect.APPLY_POLICY or human.policy_id and human.policy.code == spec["policy"]:
            agree += 1
        else:
            disagree.append({"case": case, "human": human, "signal": signal})
    hit_ids = {case.pk for case, _ in hits}
    missed = 0
    if spec["effect"] == RuleEffect.APPLY_POLICY:
        missed = (Decision.objects.filter(case__signals__created_at__gte=since, policy__code=spec["policy"],
                                          rule_version__isnull=True, undone_at__isnull=True)
                  .exclude(case__in=hit_ids).values("case").distinct().count())
    result = {"days": days, "cases_considered": len(case_ids), "truncated": truncated, "would_act": len(hits),
              "subjects": [(case, signal) for case, signal in hits[:BACKTEST_LISTED]],
              "decided_by_people": len(hits) - undecided, "agree": agree, "disagree": disagree[:BACKTEST_LISTED],
              "disagree_count": len(disagree), "undecided": undecided, "missed": missed,
              "per_day": sorted(per_day.items()), "fingerprint": fingerprint(spec)}
    audit(user, Event.RULE_BACKTESTED, object_type="rule", object_id=rule.pk, ip=ip,
          details={"code": rule.code, "fingerprint": result["fingerprint"], "days": days,
                   "in_words": conditions.describe(spec["conditions"]),
                   **{k: result[k] for k in ("cases_considered", "would_act", "agree", "disagree_count",
                                             "undecided", "missed", "truncated")}})
    return result


def _human_decisions(case_ids):
    """The latest standing decision people took on each case (rules' own decisions are not evidence)."""
    found = {}
    for start in range(0, len(case_ids), 2000):
        for decision in (Decision.objects.filter(case__in=case_ids[start:start + 2000], rule_version__isnull=True,
                                                 undone_at__isnull=True)
                         .exclude(Q(action="escalate") | Q(approval__in=["pending", "rejected"]))
                         .select_related("policy").order_by("case_id", "created_at")):
            found[decision.case_id] = decision
    return found

