"""Search: one box for cases, subjects, items, hashes and identifiers."""

import unicodedata

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from cases import search as finder
from cases import subjects
from cases.web.permissions import REVIEW, can_view_case, client_ip, require_investigator, visible_item_ids
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit


def _shown(text):
    """The query as the box shows it again: control characters dropped, cut to the length allowed."""
    return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cs"))[:finder.MAX_QUERY]


def _visible(user, found):
    """Drop what the user may not open or see; mark the cases they may open (analysts see cases as text)."""
    reviews = user.has_perm(REVIEW)
    items = found.results.get("items")
    shown = visible_item_ids(user, [hit.obj for hit in items.hits]) if items else set()  # two queries for all
    for kind, results in found.results.items():
        kept = []
        for hit in results.hits:
            if kind == "cases":
                hit.linked = can_view_case(user, hit.obj)
                if hit.linked or not reviews:
                    kept.append(hit)
            elif kind == "items":
                if hit.obj.pk in shown:
                    kept.append(hit)
            elif kind == "reports":
                if can_view_case(user, hit.obj.case):
                    kept.append(hit)
            else:
                kept.append(hit)
        results.hits = kept
    _tag(found)
    return found


def _tag(found):
    """Tags shown beside every account and group found (and the subject of every case), from one query."""
    accounts = [h.obj.pk for k, r in found.results.items() if k == "accounts" for h in r.hits]
    groups = [h.obj.pk for k, r in found.results.items() if k == "groups" for h in r.hits]
    cases = [h.obj for k, r in found.results.items() if k == "cases" for h in r.hits]
    tags = subjects.live_tags(accounts + [c.account_id for c in cases if c.account_id],
                              groups + [c.group_id for c in cases if c.group_id])
    for kind, results in found.results.items():
        for hit in results.hits:
            if kind in ("accounts", "groups"):
                hit.tags = tags.get((kind[:-1], hit.obj.pk), [])
            elif kind == "cases":
                case = hit.obj
                hit.tags = tags.get(("account", case.account_id) if case.account_id else ("group", case.group_id), [])


@login_required
@require_GET
def search(request):
    require_investigator(request.user)
    raw = request.GET.get("q", "")
    kind = request.GET.get("kind") or None
    context = {"search_query": _shown(raw), "kinds": list(finder.KIND_LABELS.items()), "kind": kind}
    try:
        found = finder.search(request.user, raw, kind)
    except finder.BadQuery as exc:
        return render(request, "cases/search.html", {**context, "error": str(exc)}, status=400)
    if not found.query:
        return render(request, "cases/search.html", context)
    found = _visible(request.user, found)
    audit(request.user, Event.SEARCH_PERFORMED, object_type="search", ip=client_ip(request), details={
        "query": found.query, "kind": kind or "all", "searched_as": found.understood,
        "kinds": list(found.results), "counts": found.counts(),
        "truncated": [k for k, r in found.results.items() if r.truncated]})
    cases = found.results.get("cases")
    if found.total == 1 and cases and cases.hits and cases.hits[0].linked:
        return redirect("cases:detail", cases.hits[0].obj.pk)
    return render(request, "cases/search.html", {**context, "found": found,
                                                 "results": [found.results[k] for k in found.results]})
