"""Statements of reasons (DSA Art. 17): built from a restricting enforcement's decision and policy.

Every ban of an account or group and every removal carries one statement per restricted target
(the platforms its enforcement rows go to share it). It is made wherever the restriction is about to
leave the console, and by the cron for any it missed, so that none can be lost:

* `create_statements(rows)`: the statements of these enforcement rows, made for those that lack one,
  idempotently (a unique constraint per decision, action and target; a concurrent maker loses quietly).
  Called by the webhook dispatch and the pull API before they send a row, and meant to be called in the
  decision's transaction once the decision code makes its enforcement rows.
* `create_missing_statements()`: the net, run by the cron and before each Transparency Database
  submission: restricting rows of recent decisions that still lack a statement.

The facts are in words the user may read. For the categories the law makes reportable they never say
how the material was found (no bank, hash, distance, classifier, score or rule): the policy's text, or
its category's default, and whether detection and decision were automated, nothing more.
"""

from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from cases.models import (
    REPORTABLE,
    Decision,
    Enforcement,
    EnforcementStatus,
    Ground,
    Policy,
    Restriction,
    Source,
    StatementOfReasons,
)
from cases.models.policies import DEFAULT_TERMS_GROUND, DEFAULT_USER_FACTS, default_legal_ground
from detection.models import Account, Item, Signal, SignalKind

RESTRICTING = ("ban_account", "ban_group", "remove_content")
AUTOMATED_KINDS = frozenset({SignalKind.HASH_MATCH, SignalKind.CLASSIFIER, SignalKind.TEXT, SignalKind.BEHAVIOUR})
GENERIC_FACTS = "The content or account breaks the service's rules."
# The net looks back this far (decisions older than this had their statements made long ago).
SWEEP_DAYS = 30
SWEEP_BATCH = 500


def key_of(enforcement):
    return enforcement.decision_id, enforcement.action, enforcement.target


def restricts(enforcement):
    return enforcement.action in RESTRICTING and enforcement.status != EnforcementStatus.CANCELLED


def create_statements(enforcements):
    """{(decision id, action, target): statement} for the restricting rows among `enforcements`,
    making those that do not exist yet."""
    wanted = {key_of(e): e for e in enforcements if restricts(e)}
    if not wanted:
        return {}
    decision_ids = {decision_id for decision_id, _, _ in wanted}
    found = _existing(decision_ids)
    missing = [e for key, e in wanted.items() if key not in found]
    if missing:
        StatementOfReasons.objects.bulk_create(_build(missing), ignore_conflicts=True)
        found = _existing(decision_ids)
    return {key: found[key] for key in wanted if key in found}


def statement_for(enforcement):
    """The statement of one enforcement row (made if missing), or None when it restricts nothing."""
    return create_statements([enforcement]).get(key_of(enforcement))


def create_missing_statements(days=SWEEP_DAYS, batch=SWEEP_BATCH):
    """Statements for restricting enforcement rows of the last `days` that lack one. Returns how many."""
    since = timezone.now() - timedelta(days=days)
    lacking = (Enforcement.objects
               .filter(decision__created_at__gte=since, action__in=RESTRICTING)
               .exclude(status=EnforcementStatus.CANCELLED)
               .filter(~Exists(StatementOfReasons.objects.filter(
                   decision=OuterRef("decision"), action=OuterRef("action"), target=OuterRef("target"))))
               .order_by("pk"))
    made, after = 0, 0
    while True:
        rows = list(lacking.filter(pk__gt=after)[:batch])
        if not rows:
            return made
        made += len(create_statements(rows))
        after = rows[-1].pk


def _existing(decision_ids):
    return {(s.decision_id, s.action, s.target): s
            for s in StatementOfReasons.objects.filter(decision_id__in=decision_ids)}


def _build(enforcements):
    decisions = Decision.objects.select_related("policy", "reason", "case__account", "case__group").in_bulk(
        {e.decision_id for e in enforcements})
    # Decisions taken by a verb before policies existed name a reason code that is a policy's code.
    by_code = Policy.objects.in_bulk({d.reason.code for d in decisions.values() if d.policy is None},
                                     field_name="code")
    signals = {}
    for case_id, kind, label in Signal.objects.filter(
            case_id__in={d.case_id for d in decisions.values()}).values_list("case_id", "kind", "label"):
        signals.setdefault(case_id, []).append((kind, label))
    items = Item.objects.in_bulk({e.payload.get("item_id") for e in enforcements
                                  if e.action == "remove_content" and e.payload.get("item_id")})
    members = Account.objects.in_bulk({e.target for e in enforcements if e.action == "ban_account"},
                                      field_name="external_id")
    redress = redress_options()
    rows, seen = [], set()
    for enforcement in enforcements:
        if key_of(enforcement) in seen:
            continue
        seen.add(key_of(enforcement))
        decision = decisions[enforcement.decision_id]
        policy = decision.policy or by_code.get(decision.reason.code)
        found = signals.get(decision.case_id, [])
        restriction, content_type, content_date = _restriction(enforcement, decision, items, members)
        automated_detection = any(kind in AUTOMATED_KINDS for kind, _ in found)
        automated_decision = decision.rule_version_id is not None
        reportable = policy is not None and policy.category in REPORTABLE
        rows.append(StatementOfReasons(
            decision=decision, case_id=decision.case_id, action=enforcement.action, target=enforcement.target,
            restriction=restriction,
            until=decision.ban_until if restriction != Restriction.CONTENT_REMOVED else None,
            content_type=content_type, content_date=content_date,
            facts=facts(policy, found, automated_detection=automated_detection,
                        automated_decision=automated_decision),
            automated_detection=automated_detection, automated_decision=automated_decision,
            source=Source.NOTICE if any(kind == SignalKind.USER_REPORT for kind, _ in found)
            else Source.OWN_INITIATIVE,
            ground=Ground.ILLEGAL_CONTENT if reportable else Ground.INCOMPATIBLE_CONTENT,
            legal_ground=((policy.legal_ground or default_legal_ground(policy.category)) if reportable else ""),
            terms_ground="" if reportable else _terms_ground(policy),
            category=policy.category if policy else "", policy_code=policy.code if policy else decision.reason.code,
            policy_version=decision.policy_version, redress=redress, decided_at=decision.created_at,
        ))
    return rows


def _restriction(enforcement, decision, items, members):
    """(restriction, content type, when the content was posted or the subject created)."""
    timed = decision.ban_until is not None
    if enforcement.action == "remove_content":
        item = items.get(enforcement.payload.get("item_id"))
        posted = (item.uploaded_at or item.enqueued_at) if item else decision.created_at
        return Restriction.CONTENT_REMOVED, item.kind if item else "other", posted
    if enforcement.action == "ban_group":
        group = decision.case.group
        return (Restriction.GROUP_SUSPENDED if timed else Restriction.GROUP_TERMINATED, "group",
                group.created_at if group else decision.created_at)
    account = members.get(enforcement.target) or decision.case.account
    return (Restriction.ACCOUNT_SUSPENDED if timed else Restriction.ACCOUNT_TERMINATED, "account",
            (account.registered_at or account.created_at) if account else decision.created_at)


def _terms_ground(policy):
    if policy is None:
        return "Terms of service"
    return policy.terms_ground or DEFAULT_TERMS_GROUND.get(policy.category) or "Terms of service"


def facts(policy, found, *, automated_detection, automated_decision):
    """The facts relied on, in words safe to show the user (see the module)."""
    category = policy.category if policy else ""
    text = ((policy.user_facing_facts if policy else "") or DEFAULT_USER_FACTS.get(category) or GENERIC_FACTS)
    reported = any(kind == SignalKind.USER_REPORT for kind, _ in found)
    if automated_detection and reported:
        how = "It was found by automated detection and reported by a user of the service"
    elif automated_detection:
        how = "It was found by automated detection"
    elif reported:
        how = "It was reported by a user of the service"
    else:
        how = "It was found by the service's safety team"
    how += (", and the decision was taken automatically under the service's rules." if automated_decision
            else ", and the decision was taken by a member of the safety team.")
    text = f"{text.strip()} {how}"
    if policy is not None and policy.show_detection_detail and category not in REPORTABLE:
        labels = sorted({label for kind, label in found if kind in AUTOMATED_KINDS and label})[:5]
        if labels:
            text += " What was found: " + "; ".join(labels) + "."
    return text


def redress_options():
    """How to seek redress (DSA Art. 17(3)(f)): the internal complaint, out-of-court settlement, the courts."""
    name = settings.DSA_PLATFORM_NAME
    return {
        "instructions": settings.STATEMENT_APPEAL_INSTRUCTIONS,
        "url": settings.STATEMENT_APPEAL_URL,
        "options": [
            {"type": "internal_complaint", "url": settings.STATEMENT_APPEAL_URL,
             "description": f"Ask {name} to review the decision through its complaint system (DSA Art. 20)."},
            {"type": "out_of_court_dispute_settlement", "url": settings.STATEMENT_DISPUTE_SETTLEMENT_URL,
             "description": "Refer the dispute to a certified out-of-court dispute settlement body (DSA Art. 21)."},
            {"type": "judicial_redress", "url": "",
             "description": "Bring the matter before a court under the applicable law."},
        ],
    }
