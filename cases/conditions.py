"""The conditions automation rules are written in: fields of a signal and its subject, and tests on them.

A rule's conditions are a list of {"field", "op", "value"}, all of which must hold for one signal of
the case. Fields are named here, with how to read them, so that the admin form, the validator, the
live engine and the backtest all speak the same small language, and a rule can never test
something the console does not know.
"""

import math
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from cases.models import CyberTipReport, Decision
from detection import hash_quality
from detection.models import Account, Bank, BankHash, EntryStatus, Group, SignalKind


class ConditionError(ValueError):
    """A condition that names an unknown field or operator, or a value of the wrong type."""


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str  # "text", "number", "bool"
    choices: tuple = ()
    help: str = ""


MATCH_KINDS = ("exact", "pdq", "weak", "video", "shared")

FIELDS = {f.name: f for f in (
    Field("signal.kind", "Signal kind", "text", tuple(SignalKind.values)),
    Field("signal.detector", "Detector", "text", help="e.g. hash_match, shared_media, nudity, group_risk"),
    Field("signal.score", "Signal confidence (0..1)", "number"),
    Field("signal.severity", "Signal severity (0..100)", "number"),
    Field("match.kind", "Match basis", "text", MATCH_KINDS,
          "exact: MD5/SHA-256; pdq: PDQ within the threshold; weak: pHash/dHash only; video: frames"),
    Field("match.distance", "Match distance (bits)", "number", help="The smallest distance of the match's hashes"),
    Field("match.orientation", "Matched as shown (not rotated or mirrored)", "bool"),
    Field("bank.name", "Bank", "text"),
    Field("bank.trust", "Bank trust", "text", ("verified", "unverified", "local")),
    Field("bank.kind", "Bank kind", "text", ("known", "local")),
    Field("entry.confirmations", "Bank entry: times confirmed by reviewers", "number"),
    Field("entry.dismissals", "Bank entry: times dismissed by reviewers", "number"),
    Field("classifier.score", "Classifier score (0..1)", "number"),
    Field("classifier.label", "Classifier's top class", "text"),
    Field("risk.score", "Risk score (0..1)", "number"),
    Field("risk.feature", "Risk feature present (name)", "text",
          help="True when the behaviour signal's feature of this name contributed"),
    Field("subject.kind", "Subject kind", "text", ("account", "group")),
    Field("subject.prior_enforcement", "Earlier enforcement decisions on the subject", "number"),
    Field("subject.prior_reports", "Earlier CyberTipline reports on the subject", "number"),
    Field("account.age_days", "Account age (days)", "number"),
    Field("account.age_band", "Account age band", "text", help="As the platform sent it, e.g. 18+"),
    Field("group.member_count", "Group size (members)", "number"),
    Field("case.matched_items", "Items in the case with a known-material match", "number"),
)}

OPS = {
    "eq": ("is", lambda a, b: a == b),
    "ne": ("is not", lambda a, b: a != b),
    "in": ("is one of", lambda a, b: a in b),
    "lt": ("<", lambda a, b: a is not None and a < b),
    "le": ("≤", lambda a, b: a is not None and a <= b),
    "gt": (">", lambda a, b: a is not None and a > b),
    "ge": ("≥", lambda a, b: a is not None and a >= b),
}
NUMBER_OPS = {"eq", "ne", "lt", "le", "gt", "ge"}
TEXT_OPS = {"eq", "ne", "in"}
MAX_CONDITIONS = 20


def validate(conditions):
    """The conditions in canonical form, or ConditionError naming the first bad one."""
    if not isinstance(conditions, list) or not conditions:
        raise ConditionError("A rule needs at least one condition.")
    if len(conditions) > MAX_CONDITIONS:
        raise ConditionError(f"At most {MAX_CONDITIONS} conditions.")
    clean = []
    for number, condition in enumerate(conditions, 1):
        if not isinstance(condition, dict) or set(condition) - {"field", "op", "value"}:
            raise ConditionError(f"Condition {number}: expected field, op and value.")
        field = FIELDS.get(condition.get("field"))
        if field is None:
            raise ConditionError(f"Condition {number}: unknown field {str(condition.get('field'))[:60]!r}.")
        op = condition.get("op")
        allowed = NUMBER_OPS if field.kind == "number" else TEXT_OPS if field.kind == "text" else {"eq", "ne"}
        if op not in allowed:
            raise ConditionError(f"Condition {number}: {field.label} cannot be compared with {str(op)[:20]!r}.")
        clean.append({"field": field.name, "op": op, "value": _value(number, field, op, condition.get("value"))})
    return clean


def _value(number, field, op, value):
    if op == "in":
        values = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or len(values) > 50:
            raise ConditionError(f"Condition {number}: list one to fifty values.")
        return [_one(number, field, v) for v in values]
    return _one(number, field, value)


def _one(number, field, value):
    if field.kind == "number":
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConditionError(f"Condition {number}: {field.label} needs a number.") from None
        if not math.isfinite(value) or abs(value) > 1e12:
            raise ConditionError(f"Condition {number}: {field.label} needs a finite number.")
        return value
    if field.kind == "bool":
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise ConditionError(f"Condition {number}: {field.label} needs true or false.")
        return value
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        raise ConditionError(f"Condition {number}: {field.label} needs a value (at most 100 characters).")
    value = value.strip()
    if field.choices and value not in field.choices:
        raise ConditionError(f"Condition {number}: {field.label} is one of {', '.join(field.choices)}.")
    return value


def describe(conditions):
    """The conditions in words, for pages and the audit row."""
    parts = []
    for c in conditions:
        field = FIELDS.get(c["field"])
        value = ", ".join(map(show, c["value"])) if isinstance(c["value"], list) else show(c["value"])
        parts.append(f"{field.label if field else c['field']} {OPS[c['op']][0]} {value}")
    return " and ".join(parts)


def show(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def holds(conditions, facts):
    """Whether every condition holds for these facts (a dict of field name → value)."""
    for c in conditions:
        if c["field"] == "risk.feature":
            features = set(facts.get("risk.features") or ())
            found = bool(set(c["value"]) & features) if c["op"] == "in" else c["value"] in features
            if found != (c["op"] != "ne"):
                return False
            continue
        value = facts.get(c["field"])
        if value is None and c["op"] != "ne":
            return False  # a fact the signal does not carry never satisfies a test
        if not OPS[c["op"]][1](value, c["value"]):
            return False
    return True


class Facts:
    """Reads the facts of signals and their subjects in bulk: one query per kind of fact, per batch.

    Subject facts are read as they are now (a backtest over last month's signals sees today's account
    age and enforcement record; the backtest page says so).
    """

    def __init__(self, cases):
        self.cases = {case.pk: case for case in cases}
        self.banks = Bank.objects.in_bulk()
        self.entries = {}
        self.signal_entries = {}
        self.prior = {}
        self.reports = {}
        self.matched_items = {}

    def load(self, signals_by_case):
        self.signal_entries = {s.pk: hash_quality.entries_of_signals([s])
                               for signals in signals_by_case.values() for s in signals}
        entry_ids = set().union(*self.signal_entries.values()) if self.signal_entries else set()
        self.entries = {}
        for start in range(0, len(entry_ids), 5000):
            chunk = sorted(entry_ids)[start:start + 5000]
            self.entries.update({row["pk"]: row for row in BankHash.objects.filter(pk__in=chunk).values(
                "pk", "status", "confirm_count", "dismiss_count")})
        accounts = {c.account_id for c in self.cases.values() if c.account_id}
        groups = {c.group_id for c in self.cases.values() if c.group_id}
        acted = Q(undone_at__isnull=True, rolled_back_at__isnull=True) & ~Q(action__in=["dismiss", "escalate"])
        for field, ids in (("case__account_id", accounts), ("case__group_id", groups)):
            if ids:
                rows = Decision.objects.filter(acted, **{f"{field}__in": ids}).values(field).annotate(n=Count("pk"))
                self.prior.update({(field, r[field]): r["n"] for r in rows})
                rows = CyberTipReport.objects.filter(**{f"{field}__in": ids}, status="filed").values(field).annotate(
                    n=Count("pk"))
                self.reports.update({(field, r[field]): r["n"] for r in rows})
        self.accounts = Account.objects.in_bulk(accounts) if accounts else {}
        self.groups = Group.objects.only("pk", "member_count").in_bulk(groups) if groups else {}
        for case_id, signals in signals_by_case.items():
            self.matched_items[case_id] = len({s.item_id for s in signals
                                               if s.kind == SignalKind.HASH_MATCH and s.item_id})

    def of(self, case, signal):
        """Every field's value for this signal of this case (None where it does not apply)."""
        details = signal.details if isinstance(signal.details, dict) else {}
        facts = {"signal.kind": signal.kind, "signal.detector": signal.detector, "signal.score": signal.score,
                 "signal.severity": float(signal.severity), "case.matched_items": float(
                     self.matched_items.get(case.pk, 0))}
        if signal.kind == SignalKind.HASH_MATCH:
            bank = self.banks.get(details.get("bank_id"))
            basis = details.get("basis")
            facts["match.kind"] = "shared" if signal.detector == "shared_media" else basis
            distances = [h.get("distance") for h in details.get("hashes") or [] if isinstance(h, dict)
                         and isinstance(h.get("distance"), int | float)]
            if isinstance(details.get("distance"), int | float):
                distances.append(details["distance"])
            facts["match.distance"] = float(min(distances)) if distances else (0.0 if basis == "exact" else None)
            facts["match.orientation"] = not any(h.get("transform") for h in details.get("hashes") or []
                                                 if isinstance(h, dict))
            if bank is not None:
                facts.update({"bank.name": bank.name, "bank.trust": bank.trust, "bank.kind": bank.kind})
            entry = self.entries.get(details.get("entry_id"))
            if entry:
                facts["entry.confirmations"] = float(entry["confirm_count"])
                facts["entry.dismissals"] = float(entry["dismiss_count"])
            # A match acts only if every entry it rests on still acts: one deconfirmed or
            # quarantined entry among them leaves the signal to people.
            statuses = {self.entries[pk]["status"] for pk in self.signal_entries.get(signal.pk, ())
                        if pk in self.entries}
            facts["entry.status"] = next((st for st in statuses if st != EntryStatus.ACTIVE), EntryStatus.ACTIVE)
        elif signal.kind == SignalKind.CLASSIFIER:
            facts["classifier.score"] = signal.score
            facts["classifier.label"] = details.get("top_class")
        elif signal.kind == SignalKind.BEHAVIOUR:
            facts["risk.score"] = details.get("score") if isinstance(details.get("score"), int | float) else None
            facts["risk.features"] = tuple(f.get("name") for f in details.get("features") or []
                                           if isinstance(f, dict) and (f.get("contribution") or 0) > 0)
        field = "case__account_id" if case.account_id else "case__group_id"
        subject_id = case.account_id or case.group_id
        facts["subject.kind"] = "account" if case.account_id else "group"
        facts["subject.prior_enforcement"] = float(self.prior.get((field, subject_id), 0))
        facts["subject.prior_reports"] = float(self.reports.get((field, subject_id), 0))
        if case.account_id and case.account_id in self.accounts:
            account = self.accounts[case.account_id]
            since = account.registered_at or account.created_at
            facts["account.age_days"] = (timezone.now() - since) / timedelta(days=1) if since else None
            facts["account.age_band"] = account.age_band or None
        if case.group_id and case.group_id in self.groups:
            facts["group.member_count"] = float(self.groups[case.group_id].member_count)
        return facts


def acts_on(facts):
    """Whether automation may act on this signal at all: never on an entry people deconfirmed or
    the breaker quarantined, whatever a rule says (its matches still reach people)."""
    return facts.get("entry.status", EntryStatus.ACTIVE) == EntryStatus.ACTIVE
