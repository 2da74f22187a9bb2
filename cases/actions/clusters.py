"""Cluster cases: accounts and groups linked through a pivot, acted on together under dual control.

An investigator opens a cluster from a pivot (everyone who shared an item, or a group's members).
A reviewer proposes one policy for some of its members and sees, member by member, what it would do
and who it would leave out and why. Nothing happens until a different senior approves; then each
member gets its own decision on its own case (its open case, or a new one in the investigations
queue), carried out by the same code as a reviewer's decision, one transaction and one audit row
per member. A member that changed meanwhile (claimed by a reviewer, tagged as a possible child
victim) is left out at that moment, with the reason recorded. The outcome row per (action, member)
makes the carrying out idempotent: a retried or duplicated job decides each member once.
"""

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from cases import routing
from cases.actions import ActionError
from cases.actions.decisions import BAN_DAYS, GuardFacts, carry_out, guardrail
from cases.models import (
    BanScope,
    Case,
    CaseStatus,
    Cluster,
    ClusterAction,
    ClusterActionStatus,
    ClusterMember,
    ClusterOrigin,
    ClusterOutcome,
    Decision,
    Policy,
    PolicyCategory,
    ReasonCode,
    RemoveScope,
    TagKind,
)
from cases.selectors import live_tags
from detection.detectors.risk import TEEN, age_group
from detection.models import Account, Item, Signal, SignalKind, SubjectStatus
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from reviewconsole.audit.recorder import audit
from reviewconsole.queueing import enqueue

INVESTIGATIONS = "investigations"  # the queue of cases a cluster opens
MAX_MEMBERS = 500  # one cluster, one bulk action: a network, not a platform
MAX_LINKED_ITEMS = 50  # linked items kept per member (the evidence its case gets)
# Material a report is about: without a linked file there is nothing for a report on this member to show.
FILE_CATEGORIES = {PolicyCategory.KNOWN_CSAM, PolicyCategory.NEW_CSAM, PolicyCategory.SEXUALISED_MINOR}


def _clean_text(value, limit, what):
    value = (value or "").strip()
    if len(value) > limit:
        raise ActionError(f"The {what} is too long (at most {limit} characters).")
    return value


def open_cluster(user, *, origin, members, title, note="", origin_item=None, origin_group=None, ip=None):
    """A cluster with these members: [{"account": Account | "group": Group, "items": [ids], "distance": int}]."""
    if not user.has_perm("cases.investigate"):
        raise ActionError("Only investigators open cluster cases.")
    if origin not in ClusterOrigin.values:
        raise ActionError("A cluster starts from an item or a group.")
    title = _clean_text(title, 200, "title")
    if not title:
        raise ActionError("Give the cluster a title: what links these subjects.")
    note = _clean_text(note, 5000, "note")
    if not members:
        raise ActionError("Choose at least one account or group for the cluster.")
    if len(members) > MAX_MEMBERS:
        raise ActionError(f"A cluster holds at most {MAX_MEMBERS} subjects: narrow the selection.")
    now = timezone.now()
    with transaction.atomic():
        cluster = Cluster.objects.create(title=title, note=note, origin=origin, origin_item=origin_item,
                                         origin_group=origin_group, created_by=user, created_at=now)
        ClusterMember.objects.bulk_create([
            ClusterMember(cluster=cluster, account=m.get("account"), group=m.get("group"),
                          items=sorted(set(m.get("items") or []))[:MAX_LINKED_ITEMS], distance=m.get("distance"))
            for m in members])
        audit(user, Event.CLUSTER_OPENED, item=origin_item, object_type="cluster", object_id=cluster.pk, ip=ip,
              details={"title": title, "origin": origin, "origin_item": getattr(origin_item, "pk", None),
                       "origin_group": getattr(origin_group, "pk", None),
                       "accounts": sum(1 for m in members if m.get("account")),
                       "groups": sum(1 for m in members if m.get("group"))})
    return cluster


def bulk_policies():
    """Policies a bulk action may apply: those that act, and never the child-victim policy, which is
    decided for one child at a time on their own case."""
    return [p for p in Policy.objects.filter(active=True).order_by("position", "title")
            if p.acts and p.category != PolicyCategory.MINOR_VICTIM]


def check_policy(user, cluster, policy):
    """Why this policy may not be applied to the cluster in bulk by this user, or None."""
    if policy is None or not policy.active or not policy.acts or policy.category == PolicyCategory.MINOR_VICTIM:
        return "Choose a policy that bans, removes or reports (not the child-victim policy)."
    if policy.needs_view:
        if cluster.origin_item_id is None:
            return (f"“{policy.title}” confirms material no bank knows: that rests on a person viewing it, so it "
                    "applies in bulk only to a cluster opened from an item.")
        if not user.has_perm("cases.reveal_evidence") or not AuditEvent.objects.filter(
                actor=user, action=Event.EVIDENCE_REVEALED, item=cluster.origin_item_id).exists():
            return (f"“{policy.title}” confirms material no bank knows: reveal item {cluster.origin_item_id} "
                    "through its case before applying it to everyone who shared it.")
    return None


def open_cases(members):
    accounts = [m.account_id for m in members if m.account_id]
    groups = [m.group_id for m in members if m.group_id]
    found = {}
    for case in (Case.objects.filter(Q(account__in=accounts) | Q(group__in=groups), closed_at__isnull=True)
                 .select_related("assigned_to", "queue").order_by("created_at")):
        key = ("account", case.account_id) if case.account_id else ("group", case.group_id)
        found.setdefault(key, case)
    return found


def _verdict(member, policy, case, tags, case_has_files=None):
    """(skipped reason or "", notes) for one member under one policy, from what the database says now."""
    subject = member.subject
    offender = policy.offends or policy.acts
    tag_names = {t.tag if hasattr(t, "tag") else t for t in tags}
    if offender and TagKind.POSSIBLE_MINOR_VICTIM in tag_names:
        return "tagged “possible minor victim”: decide on its own case", []
    if offender and member.account_id and age_group(subject.age_band) == TEEN:
        return f"the platform says this account is a minor ({subject.age_band}): decide on its own case", []
    if case is not None:
        if case.possible_minor_victim:
            return f"its case #{case.pk} says it may be a child victim: decide there", []
        if case.status == CaseStatus.CLAIMED and case.assigned_to_id:
            return f"its case #{case.pk} is being reviewed by {case.assigned_to.get_username()}", []
        if case.status == CaseStatus.AWAITING_SECOND:
            return f"its case #{case.pk} waits for a second reviewer", []
    if policy.category in FILE_CATEGORIES and not member.items and not (
            case_has_files if case_has_files is not None
            else case is not None and case.signals.filter(item__isnull=False).exists()):
        return "no linked file: nothing to report on it", []
    banned = subject.status == SubjectStatus.BANNED
    if banned and not policy.reportable and policy.remove == RemoveScope.NONE:
        return "already banned", []
    notes = []
    if banned:
        notes.append("already banned")
    if TagKind.SENIOR_ONLY in tag_names:
        notes.append("tagged “do not action without a senior” (the approver is a senior)")
    if TagKind.LEGAL_HOLD in tag_names:
        notes.append("under legal hold")
    return "", notes


def preview(user, cluster, policy, member_ids=None):
    """What the policy would do to each chosen member: rows of {member, case, does, skipped, notes}."""
    why = check_policy(user, cluster, policy)
    if why:
        raise ActionError(why)
    members = list(cluster.members.select_related("account", "group"))
    if member_ids is not None:
        wanted = set(member_ids)
        members = [m for m in members if m.pk in wanted]
    cases = open_cases(members)
    tags = live_tags([m.account_id for m in members if m.account_id], [m.group_id for m in members if m.group_id])
    with_files = set(Signal.objects.filter(case__in=[c.pk for c in cases.values()], item__isnull=False)
                     .values_list("case_id", flat=True).distinct())
    rows = []
    for member in members:
        key = (member.kind, member.subject.pk)
        case = cases.get(key)
        skipped, notes = _verdict(member, policy, case, tags.get(key, []),
                                  case_has_files=case is not None and case.pk in with_files)
        where = f"on its case #{case.pk}" if case else "on a new case in the investigations queue"
        n = len(member.items)
        linked = f"{n} linked item{'s' if n != 1 else ''}"
        does = "" if skipped else f"{policy.describe(member.kind)}: {where}, with {linked}"
        rows.append({"member": member, "case": case, "does": does, "skipped": skipped, "notes": notes,
                     "tags": tags.get(key, [])})
    return rows


def propose(user, cluster_id, *, policy_code, member_ids, note, ban_days=None, ip=None):
    """Propose a bulk action: nothing is done until a different senior approves it."""
    if not user.has_perm("cases.review_case"):
        raise ActionError("Only reviewers propose actions.")
    note = _clean_text(note, 5000, "note")
    if not note:
        raise ActionError("Say why these subjects are acted on together: the approver and the audit read it.")
    if ban_days not in BAN_DAYS:
        raise ActionError("Choose a ban duration from the list.")
    member_ids = sorted({int(m) for m in member_ids})
    if not member_ids:
        raise ActionError("Choose at least one member.")
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().filter(pk=cluster_id).first()
        if cluster is None:
            raise ActionError("No such cluster.")
        policy = Policy.objects.filter(code=policy_code or "", active=True).first()
        if policy is None:
            raise ActionError("Choose a policy from the list.")
        if ban_days and policy.ban == BanScope.NONE:
            ban_days = None
        rows = preview(user, cluster, policy, member_ids)
        if len(rows) != len(member_ids):
            raise ActionError("Choose members of this cluster.")
        chosen = [r for r in rows if not r["skipped"]]
        if not chosen:
            raise ActionError("The policy would apply to none of the chosen members: see why in the preview.")
        earlier = (ClusterAction.objects.filter(cluster=cluster, status=ClusterActionStatus.PENDING,
                                                proposed_by=user, policy=policy).first())
        if earlier is not None and sorted(earlier.members.values_list("pk", flat=True)) == member_ids:
            return earlier, False  # the same proposal again (a double click)
        action = ClusterAction.objects.create(
            cluster=cluster, policy=policy, policy_version=policy.version, ban_days=ban_days, note=note,
            proposed_by=user, proposed_at=timezone.now(),
            preview={str(r["member"].pk): {"subject": f"{r['member'].kind} {r['member'].subject.external_id}",
                                           "does": r["does"], "skipped": r["skipped"], "notes": r["notes"],
                                           "case": r["case"].pk if r["case"] else None} for r in rows})
        action.members.set(member_ids)
        audit(user, Event.CLUSTER_ACTION_PROPOSED, object_type="cluster_action", object_id=action.pk, ip=ip,
              details={"cluster": cluster.pk, "policy": policy.code, "policy_version": policy.version,
                       "members": len(member_ids), "would_act_on": len(chosen), "ban_days": ban_days,
                       "note": note})
    return action, True


def review(user, action_id, *, approve, note="", ip=None):
    """The second person: a senior other than the proposer approves (then it is carried out) or rejects."""
    note = _clean_text(note, 5000, "note")
    with transaction.atomic():
        action = (ClusterAction.objects.select_for_update(of=("self",)).select_related("policy", "cluster")
                  .filter(pk=action_id).first())
        if action is None or action.status != ClusterActionStatus.PENDING:
            raise ActionError("There is no bulk action waiting for approval here.")
        if action.proposed_by_id == user.pk:
            raise ActionError("A bulk action is approved by someone other than the person who proposed it.")
        if not user.has_perm("cases.review_escalated"):
            raise ActionError("Only a senior reviewer approves bulk actions.")
        policy = action.policy
        if approve:
            if policy.reportable and not user.has_perm("cases.reveal_evidence"):
                raise ActionError("Approving a report needs someone cleared to view the evidence.")
            if not policy.active or policy.version != action.policy_version:
                raise ActionError("The policy changed since this was proposed: reject it and propose again.")
            why = check_policy(action.proposed_by, action.cluster, policy)
            if why:
                raise ActionError(why)
        if not approve and not note:
            raise ActionError("Say why it is rejected: the proposer reads it.")
        now = timezone.now()
        action.status = ClusterActionStatus.APPROVED if approve else ClusterActionStatus.REJECTED
        action.reviewed_by, action.reviewed_at, action.review_note = user, now, note
        action.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
        audit(user, Event.CLUSTER_ACTION_APPROVED if approve else Event.CLUSTER_ACTION_REJECTED,
              object_type="cluster_action", object_id=action.pk, ip=ip,
              details={"cluster": action.cluster_id, "policy": policy.code, "proposed_by": action.proposed_by_id,
                       "note": note})
        if approve:
            enqueue("cases.jobs.carry_out_cluster_action", action.pk)
    return action


def carry_out_action(action_id):
    """Decide every member of an approved bulk action that has no outcome yet, one transaction each;
    then mark the action done. Safe to run twice, or twice at once."""
    action = ClusterAction.objects.select_related("policy", "cluster").filter(pk=action_id).first()
    if action is None or action.status != ClusterActionStatus.APPROVED:
        return {"done": 0, "skipped": 0}
    counts = {"done": 0, "skipped": 0}
    pending = action.members.exclude(outcomes__action=action).order_by("pk").values_list("pk", flat=True)
    for member_id in list(pending):
        outcome = _decide_member(action.pk, member_id)
        if outcome is not None:
            counts["skipped" if outcome.skipped else "done"] += 1
    with transaction.atomic():
        action = ClusterAction.objects.select_for_update().get(pk=action_id)
        if action.status == ClusterActionStatus.APPROVED and not action.members.exclude(
                outcomes__action=action).exists():
            outcomes = action.outcomes.all()
            action.status, action.finished_at = ClusterActionStatus.DONE, timezone.now()
            action.save(update_fields=["status", "finished_at"])
            audit(action.reviewed_by, Event.CLUSTER_ACTION_FINISHED, object_type="cluster_action",
                  object_id=action.pk, details={
                      "cluster": action.cluster_id, "decided": outcomes.filter(skipped="").count(),
                      "skipped": {str(o.member_id): o.skipped for o in outcomes.exclude(skipped="")}})
    return counts


def _decide_member(action_id, member_id):
    now = timezone.now()
    try:
        with transaction.atomic():
            # The action's row lock serialises two jobs carrying out the same action.
            action = (ClusterAction.objects.select_for_update(of=("self",))
                      .select_related("policy", "cluster", "proposed_by", "reviewed_by").get(pk=action_id))
            if action.status != ClusterActionStatus.APPROVED or ClusterOutcome.objects.filter(
                    action=action, member_id=member_id).exists():
                return None
            member = ClusterMember.objects.select_related("account", "group").get(pk=member_id)
            subject_q = {"account": member.account_id} if member.account_id else {"group": member.group_id}
            case = (Case.objects.select_for_update(of=("self",)).select_related("assigned_to", "account", "group")
                    .filter(**subject_q, closed_at__isnull=True).order_by("created_at").first())
            tags = live_tags(*(([member.account_id], []) if member.account_id else ([], [member.group_id])))
            skipped, _ = _verdict(member, action.policy, case, tags.get((member.kind, member.subject.pk), []))
            if skipped:
                return ClusterOutcome.objects.create(action=action, member=member, case=case, skipped=skipped)
            return _decide(action, member, case, now)
    except IntegrityError:  # another job recorded this member's outcome first
        return None


def _decide(action, member, case, now):
    policy, cluster = action.policy, action.cluster
    if case is None:
        case = Case.objects.create(
            account=member.account, group=member.group, queue=routing.get_queue(INVESTIGATIONS),
            status=CaseStatus.OPEN, priority=50, base_priority=50,
            summary=f"Cluster #{cluster.pk}: {cluster.title}"[:255])
        audit(action.reviewed_by, Event.CASE_OPENED, case=case,
              details={"cluster": cluster.pk, "cluster_action": action.pk, "member": member.pk})
    _link_items(action, member, case)
    case = Case.objects.select_related("account", "group", "queue").get(pk=case.pk)
    facts = GuardFacts(action.proposed_by, case)
    # Checked before approval: a cleared senior approves, and the cluster's item was revealed if it had to be.
    facts.update({"cleared": True, "revealed": True, "senior": True})
    try:
        guardrail(action.proposed_by, case, policy, facts)
    except ActionError as exc:
        return ClusterOutcome.objects.create(action=action, member=member, case=case, skipped=str(exc)[:300])
    reason, _ = ReasonCode.objects.get_or_create(code=policy.code, defaults={"label": policy.title})
    decision = Decision.objects.create(
        case=case, case_version=case.version, action=policy.action, reason=reason, policy=policy,
        policy_version=policy.version, decided_by=action.proposed_by, note=action.note,
        approval="approved", second_reviewer=action.reviewed_by, second_reviewed_at=action.reviewed_at,
        ban_until=now + timedelta(days=action.ban_days) if action.ban_days and policy.ban != BanScope.NONE else None,
        options={"member_ids": [], "effects": policy.effects(), "cluster": cluster.pk,
                 "cluster_action": action.pk, "second_review_reason": "bulk action on a cluster"})
    Case.objects.filter(pk=case.pk).update(version=F("version") + 1)
    case.version += 1
    effects = carry_out(case, decision, now)
    audit(action.reviewed_by, Event.decision(policy.action), case=case, object_type="decision",
          object_id=decision.pk, details={"reason": policy.code, "note": action.note,
                                           "policy_version": policy.version, "cluster": cluster.pk,
                                           "cluster_action": action.pk,
                                           "second_reviewer_of": action.proposed_by_id, **effects})
    return ClusterOutcome.objects.create(action=action, member=member, case=case, decision=decision)


def _link_items(action, member, case):
    """The member's linked items become evidence on its case, as signals that say who linked them and how."""
    cluster = action.cluster
    origin = cluster.origin_item_id
    how = (f"the same file as, or a PDQ distance of at most {member.distance} from, item {origin}"
           if origin and member.distance is not None else
           f"shared in group {cluster.origin_group.external_id}" if cluster.origin_group_id else "linked")
    items = Item.objects.filter(pk__in=member.items).only("pk", "account", "group")
    Signal.objects.bulk_create([
        Signal(item=item, account_id=item.account_id, group_id=item.group_id, kind=SignalKind.INVESTIGATION,
               detector="cluster", label=f"Linked in cluster #{cluster.pk}", score=1.0, severity=50,
               explanation=(f"{action.proposed_by.get_username()} linked this item to cluster #{cluster.pk} "
                            f"(“{cluster.title}”): {how}. Approved by {action.reviewed_by.get_username()}."),
               details={"cluster": cluster.pk, "cluster_action": action.pk, "origin_item": origin,
                        "distance": member.distance},
               dedupe_key=f"cluster-action:{action.pk}:member:{member.pk}:item:{item.pk}", case=case,
               triaged_at=timezone.now())
        for item in items], ignore_conflicts=True)


def unfinished_actions(older_than_seconds=60):
    """Approved bulk actions whose carrying out has not finished: their job was lost, or is slow."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(ClusterAction.objects.filter(status=ClusterActionStatus.APPROVED, reviewed_at__lt=cutoff)
                .values_list("pk", flat=True))


def members_from_pivot(item, pivot, chosen):
    """Cluster members from an item pivot (cases.subjects.item_pivot) and the keys chosen ("account:12")."""
    members = []
    by_key = {}
    for kind in ("account", "group"):
        for entry in pivot[f"{kind}s"]:
            by_key[f"{kind}:{entry['subject'].pk}"] = (kind, entry)
    # The item's own sharer belongs to the cluster too, at distance 0.
    own = {}
    if item.account_id:
        own[f"account:{item.account_id}"] = ("account", item.account)
    if item.group_id:
        own[f"group:{item.group_id}"] = ("group", item.group)
    for key in chosen:
        if key in own and key not in by_key:
            kind, subject = own[key]
            members.append({kind: subject, "items": [item.pk], "distance": 0})
            continue
        if key not in by_key:
            raise ActionError("Choose subjects from this pivot.")
        kind, entry = by_key[key]
        items = list(entry.get("item_ids", []))
        if key in own:
            items.append(item.pk)
        members.append({kind: entry["subject"], "items": items, "distance": entry["distance"]})
    return members


def members_from_group(group, chosen_account_ids, *, include_group=False):
    """Cluster members from a group's members (and the group itself, if chosen): each with the items it
    sent to the group that a detector flagged (the evidence against it there)."""
    chosen_account_ids = set(chosen_account_ids)
    accounts = list(Account.objects.filter(pk__in=chosen_account_ids, membership__group=group))
    if len(accounts) != len(chosen_account_ids):
        raise ActionError("Choose members of this group.")
    linked = {}
    rows = (Item.objects.filter(group=group, account__in=[a.pk for a in accounts], signals__isnull=False)
            .values_list("account", "pk").distinct().order_by("account", "pk"))
    for account_id, item_id in rows:
        linked.setdefault(account_id, []).append(item_id)
    members = [{"account": a, "items": linked.get(a.pk, [])[:MAX_LINKED_ITEMS], "distance": None} for a in accounts]
    if include_group:
        flagged = list(Item.objects.filter(group=group, signals__isnull=False).values_list("pk", flat=True)
                       .distinct().order_by("pk")[:MAX_LINKED_ITEMS])
        members.insert(0, {"group": group, "items": flagged, "distance": None})
    return members

