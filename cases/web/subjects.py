"""Account and group pages, tags, pivots and the network view."""


from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from cases import subjects
from cases.actions import ActionError
from cases.actions.tags import SENIOR_TAGS, tag_subject, untag_subject
from cases.models import SubjectTag, TagKind
from cases.search import near_items
from cases.web.permissions import (
    REVEAL,
    REVIEW,
    REVIEW_ESCALATED,
    access_item,
    access_subject,
    client_ip,
    require_investigator,
    visible_item_ids,
)
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

NEAR_RADIUS = 31  # the bank's PDQ threshold
MAX_QUERY = 200  # longest query-string value these pages read


def _flags(user):
    return {"review": user.has_perm(REVIEW), "senior": user.has_perm(REVIEW_ESCALATED),
            "reveal": user.has_perm(REVEAL)}


def _bad_request(request, message):
    return render(request, "cases/subjects/bad_request.html", {"message": message}, status=400)


def _subject_page(request, kind, pk):
    subject = access_subject(request.user, kind, pk)
    before = request.GET.get("before", "")
    members_after = request.GET.get("members_after", "0") or "0"
    if len(before) > MAX_QUERY or len(members_after) > 20 or not members_after.isdigit():
        return _bad_request(request, "That page link is not valid.")
    try:
        rows, next_cursor = subjects.timeline(subject, _flags(request.user), before or None)
    except subjects.BadCursor:
        return _bad_request(request, "That page link is not valid: start again from the newest entries.")
    profile = subjects.profile(subject, int(members_after))
    items = [row["obj"] for row in rows if row["kind"] == "item"]
    visible = visible_item_ids(request.user, items)
    for row in rows:
        if row["kind"] == "item":
            row["visible"] = row["obj"].pk in visible
    if kind == "account":
        profile["co_members"] = subjects.co_members(subject)
    net = subjects.network(subject, hops=1)
    with transaction.atomic():
        audit(request.user, Event.SUBJECT_VIEWED, object_type=kind, object_id=subject.pk, ip=client_ip(request),
              details={"before": before} if before else None)
    return render(request, "cases/subjects/subject.html", {
        **profile, "rows": rows, "next_cursor": next_cursor, "before": before, "network": net,
        "tag_choices": [(value, label, value in SENIOR_TAGS) for value, label in TagKind.choices],
        "is_senior": request.user.has_perm(REVIEW_ESCALATED), "can_open_cases": request.user.has_perm(REVIEW),
        "can_see_reports": _flags(request.user)["reveal"] and _flags(request.user)["review"],
        "members_after": int(members_after),
    })


@login_required
@require_GET
def account_page(request, pk):
    return _subject_page(request, "account", pk)


@login_required
@require_GET
def group_page(request, pk):
    return _subject_page(request, "group", pk)


def _network(request, kind, pk):
    subject = access_subject(request.user, kind, pk)
    hops = request.GET.get("hops", "1")
    if hops not in ("1", "2"):
        return HttpResponse("hops must be 1 or 2\n", status=400, content_type="text/plain; charset=utf-8")
    net = subjects.network(subject, hops=int(hops))
    places = subjects.radial_layout(net["nodes"])
    for node in net["nodes"]:
        node["x"], node["y"] = places[node["key"]]
    where = {node["key"]: (node["x"], node["y"]) for node in net["nodes"]}
    lines = [{"x1": where[a][0], "y1": where[a][1], "x2": where[b][0], "y2": where[b][1]} for a, b in net["edges"]]
    with transaction.atomic():
        audit(request.user, Event.SUBJECT_NETWORK_VIEWED, object_type=kind, object_id=subject.pk,
              ip=client_ip(request), details={"hops": int(hops), "nodes": len(net["nodes"]),
                                               "left_out": net["left_out"]})
    body = render_to_string("cases/subjects/network.svg", {
        "subject_id": subjects.xml_safe(subject.external_id), "kind": kind, "net": net, "lines": lines, "size": 640})
    response = HttpResponse(body, content_type="image/svg+xml; charset=utf-8")
    response["Cache-Control"] = "no-store, private"
    response["X-Content-Type-Options"] = "nosniff"
    # A standalone SVG document may run nothing and load nothing.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@login_required
@require_GET
def account_network(request, pk):
    return _network(request, "account", pk)


@login_required
@require_GET
def group_network(request, pk):
    return _network(request, "group", pk)


def _tags(request, kind, pk):
    require_investigator(request.user)
    subject = access_subject(request.user, kind, pk)
    remove = request.POST.get("remove", "")
    try:
        if remove:
            if not remove.isdigit() or len(remove) > 12:
                raise ActionError("That tag does not exist.")
            get_object_or_404(SubjectTag, pk=int(remove), **{kind: subject.pk})
            row, changed = untag_subject(request.user, int(remove), ip=client_ip(request))
            messages.success(request, f"Removed “{row.get_tag_display()}”." if changed
                             else f"“{row.get_tag_display()}” was already removed.")
        else:
            row, changed = tag_subject(request.user, subject, request.POST.get("tag", ""),
                                       request.POST.get("note", ""), ip=client_ip(request))
            messages.success(request, f"Tagged “{row.get_tag_display()}”." if changed
                             else f"“{row.get_tag_display()}” was already set: nothing changed.")
    except ActionError as exc:
        messages.error(request, str(exc))
    return redirect(f"cases:{kind}", pk=subject.pk)


@login_required
@require_POST
def account_tags(request, pk):
    return _tags(request, "account", pk)


@login_required
@require_POST
def group_tags(request, pk):
    return _tags(request, "group", pk)


def _near(item):
    """PDQ neighbours of the item through the index of stored items, and a word when the answer is partial."""
    vectors = subjects.vectors_of(item)
    if not vectors:
        return [], "This item has no usable PDQ hash, so only identical files (MD5, SHA-256) are listed."
    # timeout None: settings.SEARCH_NEAR_TIMEOUT, after which near_items falls back to exact PDQ matches.
    try:
        found = near_items(vectors, radius=NEAR_RADIUS, limit=subjects.PIVOT_LIMIT, timeout=None)
    except ValueError:  # stored hashes the index cannot read: say so rather than fail the page
        return [], "This item's stored PDQ hashes could not be searched: only identical files are listed."
    if getattr(found, "exact_only", False):
        return found.hits, ("The similar-media index did not answer in time: only identical files and exact "
                            "PDQ matches are listed. Try again in a moment.")
    if not found.complete:
        return found.hits, f"More than {subjects.PIVOT_LIMIT} similar items: the nearest are listed."
    return found.hits, ""


@login_required
@require_GET
def item_pivot(request, pk):
    require_investigator(request.user)
    item = access_item(request.user, pk)
    near, warning = _near(item)
    pivot = subjects.item_pivot(item, near)
    with transaction.atomic():
        audit(request.user, Event.SUBJECT_PIVOT_VIEWED, item=item, object_type="item", object_id=item.pk,
              ip=client_ip(request), details={"accounts": len(pivot["accounts"]), "groups": len(pivot["groups"])})
    return render(request, "cases/subjects/pivot.html", {
        "item": item, **pivot, "warning": warning, "radius": NEAR_RADIUS,
        "can_open_cases": request.user.has_perm(REVIEW), "can_cluster": True,
    })
