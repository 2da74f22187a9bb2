"""Cluster cases: opened from a pivot, previewed, proposed, approved by a second senior."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from cases import subjects
from cases.actions import ActionError
from cases.actions import clusters as cluster_actions
from cases.actions.decisions import BAN_DAYS
from cases.models import Cluster, ClusterAction, ClusterActionStatus, ClusterOrigin
from cases.selectors import live_tags
from cases.web.permissions import (
    REVEAL,
    REVIEW,
    REVIEW_ESCALATED,
    access_item,
    access_subject,
    client_ip,
    require_investigator,
    require_second_factor,
    visible_item_ids,
)
from cases.web.subjects import _near
from detection.models import Item
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

MAX_KEY = 32  # "account:123456789012"


def _keys(values):
    keys = [v for v in values if len(v) <= MAX_KEY]
    if len(keys) != len(values) or len(keys) > cluster_actions.MAX_MEMBERS:
        raise ActionError(f"Choose at most {cluster_actions.MAX_MEMBERS} subjects.")
    return keys


def _ids(values):
    if len(values) > cluster_actions.MAX_MEMBERS or not all(v.isdigit() and len(v) < 13 for v in values):
        raise ActionError("That selection is not valid.")
    return [int(v) for v in values]


def _visible(user, members):
    """Only the linked items the opener may see become evidence: an item held only by senior-only cases
    does not reach a case in the investigations queue through someone who could not see it."""
    ids = {pk for m in members for pk in m.get("items") or []}
    visible = visible_item_ids(user, Item.objects.filter(pk__in=ids).only("pk", "account")) if ids else set()
    for m in members:
        m["items"] = [pk for pk in m.get("items") or [] if pk in visible]
    return members


@login_required
@require_POST
def cluster_new(request):
    """Open a cluster from an item pivot (the subjects ticked there) or from a group (the members who sent
    flagged items in it, and the group)."""
    require_investigator(request.user)
    origin = request.POST.get("origin", "")
    title, note = request.POST.get("title", ""), request.POST.get("note", "")
    if origin == ClusterOrigin.ITEM:
        item_id = request.POST.get("item", "")
        item = access_item(request.user, int(item_id)) if item_id.isdigit() and len(item_id) < 13 else None
        if item is None:
            messages.error(request, "That item does not exist.")
            return redirect("cases:search")
        back = reverse("cases:item_pivot", args=[item.pk])
        try:
            # The pivot is found again here: the members and their linked items come from the server.
            near, _ = _near(item)
            pivot = subjects.item_pivot(item, near)
            members = _visible(request.user, cluster_actions.members_from_pivot(
                item, pivot, _keys(request.POST.getlist("member"))))
            cluster = cluster_actions.open_cluster(request.user, origin=origin, members=members, title=title,
                                                   note=note, origin_item=item, ip=client_ip(request))
        except ActionError as exc:
            messages.error(request, str(exc))
            return redirect(back)
    elif origin == ClusterOrigin.GROUP:
        group_id = request.POST.get("group", "")
        if not group_id.isdigit() or len(group_id) > 12:
            messages.error(request, "That group does not exist.")
            return redirect("cases:search")
        group = access_subject(request.user, "group", int(group_id))
        flagged = list(Item.objects.filter(group=group, signals__isnull=False).values_list("account", flat=True)
                       .distinct().order_by("account")[:cluster_actions.MAX_MEMBERS - 1])  # and the group
        try:
            members = _visible(request.user, cluster_actions.members_from_group(
                group, [a for a in flagged if a is not None], include_group=True))
            cluster = cluster_actions.open_cluster(request.user, origin=origin, members=members, title=title,
                                                   note=note, origin_group=group, ip=client_ip(request))
        except ActionError as exc:
            messages.error(request, str(exc))
            return redirect("cases:group", pk=group.pk)
    else:
        messages.error(request, "A cluster starts from an item or a group.")
        return redirect("cases:search")
    messages.success(request, f"Cluster #{cluster.pk} opened with {cluster.members.count()} subjects.")
    return redirect("cases:cluster", pk=cluster.pk)


@login_required
@require_GET
def cluster_list(request):
    require_investigator(request.user)
    clusters = (Cluster.objects.select_related("created_by", "origin_item", "origin_group")
                .annotate(size=Count("members", distinct=True),
                          waiting=Count("actions", filter=Q(actions__status=ClusterActionStatus.PENDING),
                                        distinct=True))[:100])
    return render(request, "cases/clusters/list.html", {"clusters": clusters})


def _selection(request):
    """The members ticked for a preview: all of them when none are given."""
    raw = request.GET.getlist("member")
    if not raw:
        return None
    return _ids(raw)


@login_required
@require_GET
def cluster_page(request, pk):
    require_investigator(request.user)
    cluster = get_object_or_404(Cluster.objects.select_related("created_by", "origin_item", "origin_group"), pk=pk)
    members = list(cluster.members.select_related("account", "group"))
    user = request.user
    can_propose = user.has_perm(REVIEW)
    policies = cluster_actions.bulk_policies() if can_propose else []
    code = request.GET.get("policy", "")
    ban_days = request.GET.get("ban_days", "")
    preview_rows, preview_error, chosen_policy, chosen = None, "", None, None
    try:
        chosen = _selection(request)
        if ban_days and (not ban_days.isdigit() or int(ban_days) not in BAN_DAYS):
            raise ActionError("Choose a ban duration from the list.")
        if code and can_propose:
            chosen_policy = next((p for p in policies if p.code == code), None)
            if chosen_policy is None:
                raise ActionError("Choose a policy from the list.")
            preview_rows = cluster_actions.preview(user, cluster, chosen_policy, chosen)
    except ActionError as exc:
        preview_error = str(exc)
    cases = cluster_actions.open_cases(members)
    tags = live_tags([m.account_id for m in members if m.account_id], [m.group_id for m in members if m.group_id])
    for member in members:
        key = (member.kind, member.subject.pk)
        member.open_case, member.live_tags = cases.get(key), tags.get(key, [])
        member.ticked = chosen is None or member.pk in chosen
    actions = list(cluster.actions.select_related("policy", "proposed_by", "reviewed_by")
                   .prefetch_related("outcomes__case", "outcomes__member__account", "outcomes__member__group"))
    for action in actions:
        action.can_review = (action.status == ClusterActionStatus.PENDING and user.has_perm(REVIEW_ESCALATED)
                             and action.proposed_by_id != user.pk
                             and (not action.policy.reportable or user.has_perm(REVEAL)))
        action.member_count = len(action.preview)
    with transaction.atomic():
        audit(user, Event.CLUSTER_VIEWED, object_type="cluster", object_id=cluster.pk, ip=client_ip(request),
              details={"preview": code} if code else None)
    return render(request, "cases/clusters/cluster.html", {
        "cluster": cluster, "members": members, "actions": actions, "policies": policies,
        "can_propose": can_propose, "chosen_policy": chosen_policy, "preview_rows": preview_rows,
        "preview_error": preview_error, "ban_days": [(d or "", label) for d, label in BAN_DAYS.items()],
        "chosen_ban_days": ban_days,
        "will_act": sum(1 for r in preview_rows or [] if not r["skipped"]),
        "policy_check": cluster_actions.check_policy(user, cluster, chosen_policy) if chosen_policy else None,
    })


@login_required
@require_POST
def cluster_propose(request, pk):
    require_investigator(request.user)
    cluster = get_object_or_404(Cluster, pk=pk)
    back = reverse("cases:cluster", args=[cluster.pk])
    ban_days = request.POST.get("ban_days", "")
    try:
        if ban_days and not (ban_days.isdigit() and len(ban_days) < 4):
            raise ActionError("Choose a ban duration from the list.")
        action, created = cluster_actions.propose(
            request.user, cluster.pk, policy_code=request.POST.get("policy", "")[:64],
            member_ids=_ids(request.POST.getlist("member")), note=request.POST.get("note", ""),
            ban_days=int(ban_days) if ban_days else None, ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect(back)
    messages.success(request, f"Bulk action #{action.pk} proposed: a different senior must approve it."
                     if created else f"Bulk action #{action.pk} was already proposed.")
    return redirect(f"{back}#actions")


@login_required
@require_POST
def cluster_action_review(request, pk):
    require_investigator(request.user)
    action = get_object_or_404(ClusterAction, pk=pk)
    back = reverse("cases:cluster", args=[action.cluster_id])
    verdict = request.POST.get("verdict", "")
    if verdict not in ("approve", "reject"):
        messages.error(request, "Approve or reject.")
        return redirect(back)
    if verdict == "approve" and (step_up := require_second_factor(request, back)) is not None:
        return step_up
    try:
        cluster_actions.review(request.user, action.pk, approve=verdict == "approve",
                               note=request.POST.get("note", ""), ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect(f"{back}#actions")
    messages.success(request, f"Bulk action #{action.pk} approved: each member is being decided now."
                     if verdict == "approve" else f"Bulk action #{action.pk} rejected.")
    return redirect(f"{back}#actions")

