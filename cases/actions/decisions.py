"""Decisions on a claimed case, dual control, the undo window, and what each decision does."""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from cases import routing
from cases.actions import ActionError
from cases.actions.claims import release_all_claims
from cases.actions.preservation import hold_for_decision, hold_for_reports
from cases.actions.qa import sample_for_qa_many
from cases.models import (
    INCIDENT_TYPES,
    Action,
    BankEffect,
    BanScope,
    Case,
    CaseStatus,
    CyberTipFile,
    CyberTipReport,
    Decision,
    Enforcement,
    EnforcementStatus,
    LegalHold,
    LegalRequest,
    LegalRequestStatus,
    Platform,
    Policy,
    ReasonCode,
    RemoveScope,
    SubjectTag,
    TagKind,
)
from cases.selectors import matched_members, open_legal_requests
from cases.statements import create_statements
from detection import banks as hash_banks
from detection import hash_quality, retro
from detection.models import (
    Account,
    BankHash,
    EntryOutcome,
    Group,
    Item,
    ItemKind,
    ItemStatus,
    Signal,
    SignalKind,
    SubjectStatus,
)
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from reviewconsole.audit.recorder import audit, audit_many
from reviewconsole.queueing import enqueue

BAN_DAYS = {None: "permanent", 1: "1 day", 7: "7 days", 30: "30 days", 90: "90 days"}


def decide(user, case_id, *, version, policy=None, action=None, reason_code=None, note="", ban_days=None,
           escalate_to=None, member_ids=None, allow_list=False, ip=None):
    """Take one decision on a case the user has claimed, at the version they saw.

    A decision applies a policy (`policy`, its code); every effect the policy names follows in this
    one transaction. Escalation is routing, not a policy: `action="escalate"` with a reason code.
    For callers that still speak in verbs, `reason_code` names the policy and the verb is ignored:
    confirming known material with "ban" bans, removes, reports and preserves all the same.

    Returns (decision, created). A repeat of the same request (double click, retried POST) returns
    the decision already taken with created=False; anything else that lost the race is refused.
    """
    if action is not None and action not in Action.values:
        raise ActionError("Unknown action.")
    escalating = action == Action.ESCALATE
    if escalating:
        chosen = None
        reason = ReasonCode.objects.filter(code=reason_code, active=True).first()
        if reason is None or Action.ESCALATE not in reason.actions:
            raise ActionError("Choose a reason for the escalation.")
        if not note.strip():
            raise ActionError("An escalation needs a note for the senior reviewer.")
    else:
        chosen = Policy.objects.filter(code=policy or reason_code or "", active=True).first()
        if chosen is None:
            raise ActionError("Choose a policy from the list.")
        if action is not None and action != chosen.action and not (
                chosen.reportable and action in (Action.BAN, Action.REMOVE, Action.REPORT)):
            # A verb from an older caller may be upgraded (known material always reports), never weakened.
            raise ActionError(f"{chosen.title} does not fit “{Action(action).label}”: choose a policy.")
        reason, _ = ReasonCode.objects.get_or_create(code=chosen.code, defaults={"label": chosen.title})
        action = chosen.action
    if ban_days not in BAN_DAYS:
        raise ActionError("Choose a ban duration from the list.")
    senior = None
    if escalate_to is not None:
        senior = get_user_model().objects.filter(pk=escalate_to, is_active=True).first()
        if not escalating or senior is None or not senior.has_perm("cases.review_escalated"):
            raise ActionError("Hand off only to an active senior reviewer.")
    if allow_list and (action != Action.DISMISS or not user.has_perm("detection.change_bank")):
        raise ActionError("Only a senior's dismissal can put items on the allow-list.")
    if member_ids and (chosen is None or chosen.ban != BanScope.SUBJECT_AND_MEMBERS):
        raise ActionError("This policy does not ban members.")
    now = timezone.now()
    with transaction.atomic():
        moved = Case.objects.filter(
            pk=case_id, version=version, status=CaseStatus.CLAIMED, assigned_to=user, closed_at__isnull=True
        ).update(version=F("version") + 1, updated_at=now)
        if not moved:
            return _replayed_decision(user, case_id, reason.code, version), False
        case = Case.objects.select_related("account", "group", "queue").get(pk=case_id)
        guard = guardrail(user, case, chosen) if chosen else None
        decision = Decision.objects.create(
            case=case, case_version=version, action=action, reason=reason, note=note, decided_by=user,
            policy=chosen, policy_version=chosen.version if chosen else None,
            ban_until=now + timedelta(days=ban_days) if ban_days and chosen and chosen.ban != BanScope.NONE else None,
            options={"member_ids": member_ids or [], "hand_off_to": senior.pk if senior else None,
                     "allow_list": bool(allow_list), "effects": chosen.effects() if chosen else {},
                     "second_review_reason": guard or ""},
        )
        if guard or needs_second_reviewer(action, case):
            Decision.objects.filter(pk=decision.pk).update(approval="pending")
            case.status, case.assigned_to, case.lease_expires_at = CaseStatus.AWAITING_SECOND, None, None
            case.save(update_fields=["status", "assigned_to", "lease_expires_at", "updated_at"])
            audit(user, Event.decision(action, "proposed"), case=case, ip=ip, object_type="decision",
                  object_id=decision.pk, details={"reason": reason.code, "note": note, "why": guard or "dual control",
                                                  "policy_version": decision.policy_version})
            decision.refresh_from_db()
            return decision, True
        effects = carry_out(case, decision, now, ip=ip)
        audit(user, Event.decision(action), case=case, ip=ip, object_type="decision", object_id=decision.pk,
              details={"reason": reason.code, "note": note, "policy_version": decision.policy_version, **effects})
    return decision, True


def carry_out(case, decision, now, *, ip=None):
    """Every effect of the decision, inside the caller's transaction: its policy's, or the escalation."""
    return carry_out_many([(case, decision)], now, ip=ip)[0]


def carry_out_many(pairs, now, *, ip=None):
    """carry_out for the decisions of distinct cases, [(case, decision)], inside the caller's transaction.

    The one path of every decision: a person's is a batch of one. Each kind of effect is read and
    written for the whole batch with a statement or a few, and each decision gets exactly the rows it
    would get on its own; where two cases of a batch share an item, the earlier one removes and banks
    it, as when they are decided one after the other. Returns each decision's effects, in order.
    """
    effects = [None] * len(pairs)
    acting = []
    for n, (case, decision) in enumerate(pairs):
        if decision.policy_id is None:
            effects[n] = do_escalate(case, decision, now)
        else:
            acting.append(n)
    if acting:
        batch = _Batch([pairs[n] for n in acting])
        applied = _apply_policies(batch, now)
        for n, done, banked in zip(acting, applied, _bank_decisions(batch, ip=ip), strict=True):
            done.update(banked)
            effects[n] = done
        _record_entry_outcomes(batch)
        batch.save_options()
    sample_for_qa_many([decision for _, decision in pairs])
    return effects


class _Batch:
    """The cases and decisions of one carry_out_many, and what their effects read about the cases (their
    signals and items), read once for all of them."""

    def __init__(self, pairs):
        self.pairs = pairs
        self.changed = {}  # decisions whose options an effect extended, written once at the end
        self._signals = None

    def _load(self):
        self._signals, item_ids = defaultdict(list), set()
        for signal in Signal.objects.filter(case__in=[case.pk for case, _ in self.pairs]).order_by("pk"):
            self._signals[signal.case_id].append(signal)
            if signal.item_id:
                item_ids.add(signal.item_id)
        self._items = Item.objects.in_bulk(item_ids) if item_ids else {}

    def signals(self, case):
        if self._signals is None:
            self._load()
        return self._signals.get(case.pk, [])

    def hash_matches(self, case):
        return [signal for signal in self.signals(case) if signal.kind == SignalKind.HASH_MATCH]

    def items(self, case):
        """The case's items, distinct, in the items' own order (newest first)."""
        self.signals(case)
        found = {self._items[s.item_id] for s in self.signals(case) if s.item_id in self._items}
        return sorted(found, key=lambda item: (item.created_at, item.pk), reverse=True)

    def evidence(self, case):
        """The files of the case a report carries, holds or banks: scanned, not text."""
        return [item for item in self.items(case) if item.status == ItemStatus.SCANNED and item.kind != ItemKind.TEXT]

    def options(self, decision, **more):
        decision.options = {**decision.options, **more}
        self.changed[decision.pk] = decision

    def save_options(self):
        if self.changed:
            Decision.objects.bulk_update(list(self.changed.values()), ["options"])


def apply_policy(case, decision, policy, now):
    """Ban, remove, report, hold as the policy says (as it stood when the decision was taken)."""
    batch = _Batch([(case, decision)])
    effects = _apply_policies(batch, now)[0]
    batch.save_options()
    return effects


def _apply_policies(batch, now):
    """apply_policy for each decision of the batch, each kind of effect written for all at once."""
    rules_of = [decision.options.get("effects") or decision.policy.effects() for _, decision in batch.pairs]
    withheld = _withheld_notifications([case for (case, _), rules in zip(batch.pairs, rules_of, strict=True)
                                        if rules.get("notify_user")])
    outbox = Outbox()
    results, bans, removals, shares, reports, holds, closing = [], [], [], [], [], [], []
    for (case, decision), rules in zip(batch.pairs, rules_of, strict=True):
        policy = decision.policy
        effects = {"policy": policy.code}
        notify = bool(rules.get("notify_user"))
        if notify and withheld.get(case.pk):
            # Telling the user could tip off a suspect: the liaison decides when, not this decision.
            notify = False
            effects["notification_withheld"] = {"legal_requests": withheld[case.pk]}
        banning = rules.get("ban", BanScope.NONE) != BanScope.NONE
        if banning:
            bans.append((case, decision, notify, effects))
        if rules.get("remove", RemoveScope.NONE) != RemoveScope.NONE:
            removals.append((case, decision, notify, effects))
        if rules.get("protect"):
            outbox.add(decision, "protect_account", case.subject.external_id, {"reason": policy.category})
            effects["protected"] = case.subject.external_id
        if case.account_id and banning and (policy.category == "known_csam" or (
                policy.reportable and batch.hash_matches(case))):
            # Whoever else shared the media this account is banned for should be looked at too.
            shares.append((case.account_id, decision.pk, f"banned under “{policy.title}” (case #{case.pk})"))
            effects["shared_media_search"] = True
        if rules.get("report") or policy.reportable:  # reportable by law, whatever the row says
            reports.append((case, decision, rules.get("incident_type") or policy.incident_type, effects))
        elif rules.get("hold"):
            holds.append((case, decision, effects))
        closing.append((case, decision))
        results.append(effects)
    # The outbox rows in the order one decision writes them: bans, removals, then protection.
    protect = outbox.take()
    _ban_many(bans, now, outbox)
    _remove_many(batch, removals, now, outbox)
    outbox.extend(protect)
    outbox.write()
    retro.request_share_outward_many(shares)
    _report_many(batch, reports, now)
    _hold_many(batch, holds, now)
    _close_many(closing, now)
    return results


def _withheld_notifications(cases):
    """{case id: the open legal requests that withhold its notification}, for the cases that would notify."""
    if not cases:
        return {}
    about = Q(cases__in=[c.pk for c in cases])
    accounts, groups = [c.account_id for c in cases if c.account_id], [c.group_id for c in cases if c.group_id]
    if accounts:
        about |= Q(accounts__in=accounts)
    if groups:
        about |= Q(groups__in=groups)
    if not LegalRequest.objects.filter(about).exclude(
            status__in=[LegalRequestStatus.CLOSED, LegalRequestStatus.REJECTED]).exists():
        return {}  # the usual answer, in one statement; otherwise each case asks as one decision does
    found = {}
    for case in cases:
        requests = list(open_legal_requests(case).values_list("pk", flat=True))
        if requests:
            found[case.pk] = requests
    return found


def guardrail(user, case, policy, facts=None):
    """Why this decision must wait for a second reviewer, or None. Raises when it may not be taken.

    - Dismissing or downgrading a known-material match needs someone cleared to see the evidence.
    - Confirming new material needs a person who viewed it: the decider revealed at least one of
      the case's files, or, not being cleared to, the decision waits for a specialist who is.
    """
    facts = facts or guard_facts(user, case)
    offender_policy = policy.offends or (policy.acts and policy.category != "minor_victim")
    if case.possible_minor_victim and offender_policy:
        raise ActionError(f"This account may belong to a child victim ({case.possible_minor_victim}): offender "
                          "policies do not apply. Choose “A child is the victim” or escalate.")
    if offender_policy and TagKind.POSSIBLE_MINOR_VICTIM in facts["tags"]:
        raise ActionError("This subject is tagged “possible minor victim”: offender policies do not apply. Choose "
                          "“A child is the victim” or escalate.")
    if policy.acts and TagKind.SENIOR_ONLY in facts["tags"] and not facts["senior"]:
        return SENIOR_TAG_WAIT
    if not policy.reportable and facts["known_match"] and not facts["cleared"]:
        return ("A known-material match would be dismissed or downgraded by someone not cleared to view "
                "the evidence: a specialist must confirm.")
    if policy.needs_view and facts["has_files"]:
        if not facts["cleared"]:
            return "New material is confirmed only by a person who viewed it: a specialist must review it."
        if not facts["revealed"]:
            raise ActionError("Reveal the evidence before confirming new material: the report tells NCMEC and "
                              "the police whether a person viewed it.")
    return None


SENIOR_TAG_WAIT = "The subject is tagged “do not action without a senior”: a senior must confirm."


def subject_tags(case):
    """The live tags on the case's account or group, as a set of tag names."""
    subject = {"account_id": case.account_id} if case.account_id else {"group_id": case.group_id}
    return set(SubjectTag.objects.filter(**subject, removed_at__isnull=True).values_list("tag", flat=True))


class GuardFacts(dict):
    """What the guardrail asks about the decider and the case, each asked of the database only when the
    guardrail needs it (an automated decision under a reportable policy needs none of them)."""

    def __init__(self, user, case):
        super().__init__()
        self.user, self.case = user, case

    def __bool__(self):
        return True

    def __missing__(self, key):
        user, case = self.user, self.case
        questions = {"cleared": lambda: user.has_perm("cases.reveal_evidence"),
                     "senior": lambda: user.has_perm("cases.review_escalated"),
                     "tags": lambda: subject_tags(case),
                     "known_match": lambda: case.signals.filter(kind=SignalKind.HASH_MATCH).exists(),
                     "has_files": lambda: visual_items(case).exists(),
                     "revealed": lambda: revealed_by(user, case)}
        self[key] = value = questions[key]()
        return value


def guard_facts(user, case):
    return GuardFacts(user, case)


def preview_guardrail(user, case, policy, facts=None):
    """What the case page says before a policy is chosen: ("waits", why), ("refused", why) or (None, "")."""
    try:
        why = guardrail(user, case, policy, facts)
    except ActionError as exc:
        return "refused", str(exc)
    return ("waits", why) if why else (None, "")


def visual_items(case):
    return Item.objects.filter(signals__case=case, status=ItemStatus.SCANNED,
                               kind__in=[ItemKind.IMAGE, ItemKind.VIDEO]).distinct()


def revealed_by(user, case):
    return AuditEvent.objects.filter(actor=user, action=Event.EVIDENCE_REVEALED,
                                     item__in=visual_items(case)).exists()


def needs_second_reviewer(action, case):
    if action in settings.DUAL_CONTROL_ACTIONS:
        return True
    return (action in (Action.BAN, Action.REPORT) and case.group_id is not None
            and case.group.member_count > settings.DUAL_CONTROL_GROUP_MEMBERS)


def second_review(user, decision_id, *, approve, note="", ip=None):
    """The second reviewer of a dual-control decision carries it out, or sends the case back."""
    now = timezone.now()
    with transaction.atomic():
        decision = Decision.objects.select_for_update(of=("self",)).select_related("case", "reason", "policy").filter(
            pk=decision_id).first()
        if decision is None or decision.approval != "pending":
            raise ActionError("There is no decision waiting for a second reviewer here.")
        if decision.decided_by_id == user.pk:
            raise ActionError("A second reviewer must be someone else.")
        guarded = bool(decision.options.get("second_review_reason"))
        if not user.has_perm("cases.review_case") or (
                (decision.action == Action.REPORT or guarded) and not user.has_perm("cases.reveal_evidence")):
            raise ActionError("You may not approve this decision.")
        if approve and decision.policy and decision.policy.acts and not user.has_perm("cases.review_escalated") \
                and TagKind.SENIOR_ONLY in subject_tags(decision.case):
            raise ActionError("The subject is tagged “do not action without a senior”: only a senior may approve.")
        case = Case.objects.select_related("account", "group", "queue").get(pk=decision.case_id)
        if approve and decision.policy and decision.policy.needs_view and visual_items(case).exists() \
                and not revealed_by(user, case):
            raise ActionError("Reveal the evidence before confirming new material.")
        Decision.objects.filter(pk=decision.pk).update(
            approval="approved" if approve else "rejected", second_reviewer=user, second_reviewed_at=now)
        if approve:
            effects = carry_out(case, decision, now, ip=ip)
            audit(user, Event.decision(decision.action), case=case, ip=ip, object_type="decision",
                  object_id=decision.pk, details={"reason": decision.reason.code, "note": note,
                                                  "policy_version": decision.policy_version,
                                                  "second_reviewer_of": decision.decided_by_id, **effects})
        else:
            Case.objects.filter(pk=case.pk).update(status=CaseStatus.OPEN, version=F("version") + 1,
                                                   updated_at=now)
            audit(user, Event.decision(decision.action, "rejected"), case=case, ip=ip, object_type="decision",
                  object_id=decision.pk, details={"note": note})
    decision.refresh_from_db()
    return decision




def _bank_decisions(batch, *, ip=None):
    """What the batch's final decisions add to the banks: one addition per bank (and decider) for all.

    Each decision keeps the entries its own items brought: an entry two cases' items share is the
    earlier case's, as when they are decided one after the other."""
    results = [{} for _ in batch.pairs]
    groups = defaultdict(list)
    for n, (case, decision) in enumerate(batch.pairs):
        if (decision.options.get("effects") or {}).get("bank") == BankEffect.LOCAL:
            name = hash_banks.LOCAL_BANK
        elif decision.action == Action.DISMISS and decision.options.get("allow_list"):
            name = hash_banks.ALLOW_BANK
        else:
            continue
        items = batch.evidence(case)
        if items:
            groups[(name, decision.decided_by_id)].append((n, case, decision, items))
    entries = []
    for (name, _), wanted in groups.items():
        bank = hash_banks.system_bank(name)
        case_of, owner, ordered = {}, {}, []
        for n, case, _, items in wanted:
            for item in items:
                if item.pk not in case_of:
                    case_of[item.pk] = case
                    ordered.append(item)
                for hash_type, value, *_ in hash_banks.item_entries(item):
                    owner.setdefault((hash_type, value), n)
        ids = hash_banks.add_item_hashes(bank, ordered, user=wanted[0][2].decided_by,
                                         label_for=lambda item, case_of=case_of: f"case #{case_of[item.pk].pk} "
                                                                                 f"item #{item.pk}")
        mine = defaultdict(set)
        if ids:
            for pk, hash_type, value in BankHash.objects.filter(pk__in=ids).values_list("pk", "hash_type", "value"):
                mine[owner.get((hash_type, value))].add(pk)
        for n, case, decision, items in wanted:
            own = [pk for pk in ids if pk in mine[n]]
            batch.options(decision, bank_entries=own)
            summary = {"bank": bank.name, "entries_added": len(own), "items": [item.pk for item in items]}
            entries.append((decision.decided_by, Event.BANK_ENTRIES_ADDED,
                            {"case": case, "object_type": "bank", "object_id": bank.pk, "ip": ip,
                             "details": {**summary, "decision": decision.pk}}))
            results[n] = {"banked": summary}
    audit_many(entries)
    return results


def _replayed_decision(user, case_id, reason_code, version):
    earlier = Decision.objects.filter(case_id=case_id, case_version=version).select_related(
        "decided_by", "reason").first()
    if earlier and earlier.reason.code == reason_code and earlier.decided_by_id == user.pk:
        return earlier
    case = Case.objects.filter(pk=case_id).select_related("assigned_to").first()
    if case is None:
        raise ActionError("No such case.")
    if earlier:
        raise ActionError(f"{earlier.decided_by.get_username()} already decided this case: "
                          f"{earlier.get_action_display()}.")
    if case.closed_at:
        raise ActionError("This case is already closed.")
    if case.assigned_to_id != user.pk or case.status != CaseStatus.CLAIMED:
        raise ActionError("Claim the case before deciding it.")
    raise ActionError("The case changed since you opened it; reload to see what is new.")


def _close_many(pairs, now):
    by_action = defaultdict(list)
    for case, decision in pairs:
        by_action[decision.action].append(case)
    for action, cases in by_action.items():
        updated = timezone.now()
        Case.objects.filter(pk__in=[case.pk for case in cases]).update(
            status=CaseStatus.CLOSED, closed_at=now, lease_expires_at=None, resolution=action, updated_at=updated)
        for case in cases:
            case.status, case.closed_at, case.lease_expires_at = CaseStatus.CLOSED, now, None
            case.resolution, case.updated_at = action, updated






class Outbox:
    """The enforcement rows of one or more decisions, written together: the rows they lack with one statement.

    Runs inside the decisions' transaction, which holds the decisions (and their cases) locked: nothing
    else adds their rows meanwhile, so reading those that exist and inserting the rest gives one row
    each, as get_or_create per row did, in three statements for any number of rows.
    """

    def __init__(self):
        self.wanted = []

    def add(self, decision, action, target, payload):
        self.wanted.append((decision, action, target, payload))

    def take(self):
        wanted, self.wanted = self.wanted, []
        return wanted

    def extend(self, wanted):
        self.wanted += wanted

    def write(self):
        if not self.wanted:
            return
        platforms = list(Platform.objects.filter(enabled=True).exclude(webhook_url="")) or [None]
        # A decision's rows together, in the order it asked for them, as when decided on its own.
        self.wanted.sort(key=lambda wanted: wanted[0].pk)
        decisions = {decision.pk: decision for decision, *_ in self.wanted}
        existing = set(Enforcement.objects.filter(decision__in=list(decisions)).values_list(
            "decision_id", "action", "target", "platform_id"))
        rows, seen = [], set()
        for decision, action, target, payload in self.wanted:
            # Nothing leaves before the undo window closes.
            due = decision.created_at + timedelta(seconds=settings.UNDO_SECONDS)
            for platform in platforms:
                key = (decision.pk, action, target, platform.pk if platform else None)
                if key in existing or key in seen:
                    continue
                seen.add(key)
                rows.append(Enforcement(decision=decision, action=action, target=target, platform=platform,
                                        payload=payload, next_attempt_at=due if settings.UNDO_SECONDS else None))
        self.wanted = []
        created = Enforcement.objects.bulk_create(rows)
        # Each restriction's statement of reasons (DSA Art. 17) in the decision's transaction.
        create_statements(created)
        for enforcement in created:
            if enforcement.platform_id is not None:
                enqueue("cases.dispatch.dispatch_enforcement", enforcement.pk, queue="dispatch",
                        delay=settings.UNDO_SECONDS)


def _ban_many(bans, now, outbox):
    """Ban the subjects of these decisions: [(case, decision, notify, effects)]."""
    accounts = [case.account_id for case, *_ in bans if case.account_id]
    groups = [case.group_id for case, *_ in bans if not case.account_id]
    for model, ids in ((Account, accounts), (Group, groups)):
        if ids:
            # The first ban's date stays: a later ban of a banned subject does not move it.
            model.objects.filter(pk__in=ids).update(status=SubjectStatus.BANNED)
            model.objects.filter(pk__in=ids, banned_at__isnull=True).update(banned_at=now)
    for case, decision, notify, effects in bans:
        subject = case.subject
        kind = "ban_account" if case.account_id else "ban_group"
        outbox.add(decision, kind, subject.external_id, {"notify_user": notify})
        effects.update({"banned": subject.external_id,
                        "ban_until": decision.ban_until.isoformat() if decision.ban_until else "permanent"})
        wanted = set(decision.options.get("member_ids") or [])
        if case.group_id and wanted:
            # Bulk action on a group case: only members who shared matched material in it.
            members = [a for a in matched_members(case.group) if a.pk in wanted]
            Account.objects.filter(pk__in=[a.pk for a in members]).update(status=SubjectStatus.BANNED)
            Account.objects.filter(pk__in=[a.pk for a in members], banned_at__isnull=True).update(banned_at=now)
            for member in members:
                outbox.add(decision, "ban_account", member.external_id,
                           {"group": subject.external_id, "notify_user": notify})
            effects["members_banned"] = [a.external_id for a in members]


def _remove_many(batch, removals, now, outbox):
    """Remove the flagged items of these decisions' cases: [(case, decision, notify, effects)]."""
    taken = set()
    for case, decision, notify, effects in removals:
        items = [item for item in batch.items(case) if item.removed_at is None and item.pk not in taken]
        taken.update(item.pk for item in items)
        for item in items:
            outbox.add(decision, "remove_content", item.external_id or f"item:{item.pk}",
                       {"item_id": item.pk, "notify_user": notify})
        effects["removed_items"] = [i.pk for i in items]
    if taken:
        Item.objects.filter(pk__in=sorted(taken)).update(removed_at=now)
        for case, *_ in removals:
            for item in batch.items(case):
                if item.pk in taken:
                    item.removed_at = now


def _report_many(batch, reports, now):
    """The CyberTipline report of each reportable decision, with every file of its case on legal hold:
    [(case, decision, incident_type, effects)].

    A report waits for a senior's approval when CYBERTIP_REQUIRE_APPROVAL is on, or when the decider
    is not cleared to view evidence; then `cases.cybertip.filing` files it. A case without files
    (grooming, enticement) is reported without files.
    """
    if not reports:
        return
    rows = []
    for case, decision, incident_type, _ in reports:
        if decision.rule_version_id:
            # No person viewed the files: the report says so (fileViewedByEsp=false, read from the audit
            # log when it is built). A policy may instead hold it until a specialist has viewed them.
            queued = not settings.CYBERTIP_APPROVE_AUTOMATED and not (decision.options.get("effects") or {}).get(
                "view_before_filing")
        else:
            queued = not settings.CYBERTIP_REQUIRE_APPROVAL and decision.decided_by.has_perm("cases.reveal_evidence")
        rows.append(CyberTipReport(
            case=case, decision=decision, created_by=decision.decided_by, additional_info=case.summary,
            status=CyberTipReport.Status.QUEUED if queued else CyberTipReport.Status.AWAITING_APPROVAL,
            incident_type=incident_type or INCIDENT_TYPES[0]))
    made = CyberTipReport.objects.bulk_create(rows)
    CyberTipFile.objects.bulk_create([CyberTipFile(report=report, item=item) for report, (case, *_)
                                      in zip(made, reports, strict=True) for item in batch.evidence(case)])
    hold_for_reports(made, start=now)  # held from the decision; extended when submitted
    for report, (*_, effects) in zip(made, reports, strict=True):
        if report.status == CyberTipReport.Status.QUEUED:
            enqueue("cases.cybertip.filing.file_report", report.pk, queue="dispatch", delay=settings.UNDO_SECONDS)
        effects["cybertip_report"] = report.pk


def _hold_many(batch, holds, now):
    """Hold the files of these decisions' cases without a report: [(case, decision, effects)]."""
    for case, decision, effects in holds:
        items = batch.evidence(case)
        batch.options(decision, holds=hold_for_decision(decision, items, start=now))
        effects["held_items"] = [item.pk for item in items]


def do_escalate(case, decision, now):
    """To the escalations queue, or straight into a named senior's hands."""
    senior_id = decision.options.get("hand_off_to")
    senior = get_user_model().objects.filter(pk=senior_id).first() if senior_id else None
    case.queue = routing.get_queue(routing.ESCALATIONS)
    case.status = CaseStatus.CLAIMED if senior else CaseStatus.OPEN
    case.assigned_to = senior
    case.lease_expires_at = now + timedelta(seconds=settings.CASE_LEASE_SECONDS) if senior else None
    case.save(update_fields=["queue", "status", "assigned_to", "lease_expires_at", "updated_at"])
    return {"queue": routing.ESCALATIONS, "handed_to": senior.get_username() if senior else None}


def undo(user, decision_id, *, ip=None):
    """Take back one's own decision within UNDO_SECONDS, before anything reached the platform or NCMEC."""
    now = timezone.now()
    with transaction.atomic():
        decision = Decision.objects.select_for_update().select_related("case", "reason").filter(pk=decision_id).first()
        if decision is None or decision.decided_by_id != user.pk:
            raise ActionError("Only your own decision can be undone.")
        if decision.undone_at:
            return decision
        if now > decision.created_at + timedelta(seconds=settings.UNDO_SECONDS):
            raise ActionError("The undo window has closed; the decision is being carried out.")
        if decision.enforcements.filter(status=EnforcementStatus.DELIVERED).exists() or \
                decision.case.cybertip_reports.exclude(ncmec_report_id="").exists():
            raise ActionError("Part of this decision has already been carried out.")
        case = decision.case
        decision.enforcements.update(status=EnforcementStatus.CANCELLED, next_attempt_at=None)
        removed = [e.payload.get("item_id") for e in decision.enforcements.filter(action="remove_content")]
        Item.objects.filter(pk__in=[pk for pk in removed if pk]).update(removed_at=None)
        if decision.enforcements.filter(action__in=["ban_account", "ban_group"]).exists():
            model = Account if case.account_id else Group
            model.objects.filter(pk=case.subject.pk).update(status=SubjectStatus.ACTIVE, banned_at=None)
            members = decision.enforcements.filter(action="ban_account").values_list("target", flat=True)
            Account.objects.filter(external_id__in=list(members)).update(status=SubjectStatus.ACTIVE, banned_at=None)
        LegalHold.objects.filter(pk__in=decision.options.get("holds") or [], lifted_at__isnull=True).update(
            lifted_by=user, lifted_at=now, lift_reason="decision undone")
        for report in CyberTipReport.objects.filter(decision=decision):
            CyberTipReport.objects.filter(pk=report.pk).update(status=CyberTipReport.Status.CANCELLED)
            report.holds.filter(lifted_at__isnull=True).update(lifted_by=user, lifted_at=now,
                                                               lift_reason="decision undone")
        if decision.action == Action.ESCALATE:
            signals = list(case.signals.all())
            case.queue = routing.route_signals(signals)
        case.status, case.assigned_to, case.closed_at, case.resolution = CaseStatus.CLAIMED, user, None, ""
        case.lease_expires_at = now + timedelta(seconds=settings.CASE_LEASE_SECONDS)
        case.version += 1
        case.save()
        Decision.objects.filter(pk=decision.pk).update(undone_at=now)
        unbanked = hash_banks.remove_entries(decision.options.get("bank_entries"))
        hash_quality.forget_outcomes(decision.pk)
        audit(user, Event.CASE_UNDO, case=case, ip=ip, object_type="decision", object_id=decision.pk,
              details={"action": decision.action, "bank_entries_removed": unbanked})
        # The reviewer goes back to this case: the next case the decision opened is given back.
        release_all_claims(user, reason="decision undone", except_case=case.pk, ip=ip)
    decision.refresh_from_db()
    return decision


REVERSALS = {"ban_account": "unban_account", "ban_group": "unban_group", "remove_content": "restore_content",
             "protect_account": "unprotect_account"}


def reverse_decision(user, decision, now, *, why, ip=None, reopen=True):
    """Reverse what a decision did, inside the caller's transaction (a rollback of a rule's decisions,
    an appeal upheld against it).

    Unlike undo, this may come after the platform acted: what was delivered is reversed through the
    same outbox (unban, restore), what was not is cancelled. A report already filed with NCMEC is
    never retracted — the legal duty to report and preserve stands once knowledge was reported —
    and keeps its holds; a report not yet submitted is cancelled. Returns counts for the audit.
    """
    case = Case.objects.select_for_update(of=("self",)).select_related("account", "group").get(pk=decision.case_id)
    result = {"enforcements_cancelled": 0, "reversals_sent": 0, "reports_cancelled": 0, "reports_kept": 0}
    for enforcement in decision.enforcements.all():
        if enforcement.status == EnforcementStatus.DELIVERED:
            reverse = REVERSALS.get(enforcement.action)
            if reverse:
                _enforce_now(decision, reverse, enforcement.target,
                             {**enforcement.payload, "reverses": enforcement.pk, "reason": why})
                result["reversals_sent"] += 1
        elif enforcement.status != EnforcementStatus.CANCELLED:
            Enforcement.objects.filter(pk=enforcement.pk).update(status=EnforcementStatus.CANCELLED,
                                                                 next_attempt_at=None)
            result["enforcements_cancelled"] += 1
    actions = set(decision.enforcements.values_list("action", flat=True))
    if actions & {"ban_account", "ban_group"} and not _standing_bans(case, decision).exists():
        model = Account if case.account_id else Group
        model.objects.filter(pk=case.subject.pk).update(status=SubjectStatus.ACTIVE, banned_at=None)
    members = list(decision.enforcements.filter(action="ban_account").exclude(
        target=case.subject.external_id).values_list("target", flat=True))
    Account.objects.filter(external_id__in=members).update(status=SubjectStatus.ACTIVE, banned_at=None)
    removed = [e.payload.get("item_id") for e in decision.enforcements.filter(action="remove_content")]
    Item.objects.filter(pk__in=[pk for pk in removed if pk]).update(removed_at=None)
    LegalHold.objects.filter(pk__in=decision.options.get("holds") or [], lifted_at__isnull=True).update(
        lifted_by=user, lifted_at=now, lift_reason=why[:255])
    for report in CyberTipReport.objects.filter(decision=decision):
        if report.status in (CyberTipReport.Status.AWAITING_APPROVAL, CyberTipReport.Status.QUEUED) \
                and not report.ncmec_report_id:
            CyberTipReport.objects.filter(pk=report.pk).update(status=CyberTipReport.Status.CANCELLED)
            report.holds.filter(lifted_at__isnull=True).update(lifted_by=user, lifted_at=now, lift_reason=why[:255])
            result["reports_cancelled"] += 1
        elif report.status != CyberTipReport.Status.CANCELLED:
            result["reports_kept"] += 1
    unbanked = hash_banks.remove_entries(decision.options.get("bank_entries"))
    Decision.objects.filter(pk=decision.pk).update(rolled_back_at=now)
    # Back to the queue unless a later decision stands on it, the caller judged it already (an appeal), or
    # the subject has another open case by now (one open case a subject: that one is where it is reviewed).
    subject = {"account": case.account_id} if case.account_id else {"group": case.group_id}
    reopened = (reopen and case.closed_at is not None
                and not case.decisions.filter(created_at__gt=decision.created_at).exists()
                and not Case.objects.filter(**subject, closed_at__isnull=True).exclude(pk=case.pk).exists())
    if reopened:
        case.queue = routing.route_signals(case.signals.all())
        case.status, case.assigned_to, case.closed_at, case.resolution = CaseStatus.OPEN, None, None, ""
        case.lease_expires_at = None
        case.version += 1
        case.save()
    record_entry_outcomes(case, decision, EntryOutcome.OVERTURNED)
    result.update({"bank_entries_removed": unbanked, "reopened": int(reopened)})
    audit(user, Event.CASE_ROLLED_BACK, case=case, ip=ip, object_type="decision", object_id=decision.pk,
          details={"why": why, "rule_version": decision.rule_version_id, **result})
    return result


def _standing_bans(case, decision):
    field = "case__account" if case.account_id else "case__group"
    return Decision.objects.filter(**{field: case.subject}, undone_at__isnull=True, rolled_back_at__isnull=True,
                                   enforcements__action__in=["ban_account", "ban_group"]).exclude(pk=decision.pk)


def _enforce_now(decision, action, target, payload):
    """A reversal goes out at once: there is no undo window for undoing."""
    platforms = list(Platform.objects.filter(enabled=True).exclude(webhook_url="")) or [None]
    for platform in platforms:
        enforcement, created = Enforcement.objects.get_or_create(
            decision=decision, action=action, target=target, platform=platform, defaults={"payload": payload})
        if created and platform is not None:
            enqueue("cases.dispatch.dispatch_enforcement", enforcement.pk, queue="dispatch")


def record_entry_outcomes(case, decision, outcome):
    """What became of the bank entries the case's matches rest on, for the hash-quality loop."""
    hash_quality.record_outcome(case.signals.filter(kind=SignalKind.HASH_MATCH), outcome, decision_id=decision.pk)


def _record_entry_outcomes(batch):
    """record_entry_outcomes for the final decisions of the batch, with one call per kind of outcome."""
    by_outcome = defaultdict(list)
    for case, decision in batch.pairs:
        outcome = entry_outcome(decision)
        if outcome:
            by_outcome[outcome].append((batch.hash_matches(case), decision.pk))
    for outcome, wanted in by_outcome.items():
        hash_quality.record_outcomes(outcome, wanted)


def entry_outcome(decision):
    """The quality-loop outcome a final decision means for its bank entries, or None."""
    if decision.rule_version_id:
        return EntryOutcome.AUTO_ACTIONED
    policy = decision.policy
    if policy is None:
        return None
    if policy.reportable or policy.acts:
        return EntryOutcome.CONFIRMED
    if policy.category in ("false_positive", "benign"):
        return EntryOutcome.DISMISSED
    return None
