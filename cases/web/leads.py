"""For leads: who holds which case, reporters and their standing, the audit log, and invite-link referrals."""

import csv
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from cases import leads, selectors
from cases.actions import ActionError
from cases.actions.claims import release_signed_out as release_signed_out_claims
from cases.actions.reporters import mute_reporter, trust_reporter, unmute_reporter, untrust_reporter
from cases.web.middleware import SEEN, STARTED
from cases.web.permissions import client_ip, require_second_factor, require_senior
from detection.models import Reporter
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

QUERY_MAX = 4000  # characters of query string an audit search may carry
CSV_COLUMNS = ["time", "actor", "event", "case", "item", "object_type", "object_id", "ip", "details"]
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _signed_in():
    return leads.signed_in_user_ids(seen_key=SEEN, started_key=STARTED)


@login_required
@require_GET
def roster(request):
    """Claims with their holders, queue and since when; reviewers' exposure today and who is signed in."""
    require_senior(request.user)
    data = leads.roster(signed_in=_signed_in())
    return render(request, "cases/leads/roster.html", {
        "roster": data, "reviewer_choices": selectors.reviewers(), "now": timezone.now()})


@login_required
@require_POST
def release_signed_out(request):
    """Give back the claims, shown on the roster, of reviewers who have signed out."""
    require_senior(request.user)
    claims = {}
    for value in request.POST.getlist("claim")[:1000]:
        pk, _, version = value.partition(":")
        if not (pk.isdigit() and version.isdigit()) or len(value) > 40:
            messages.error(request, "The roster changed or the form is damaged: reload the roster and try again.")
            return redirect("cases:roster")
        claims[int(pk)] = int(version)
    if not claims:
        messages.info(request, "No signed-out reviewer holds a case.")
        return redirect("cases:roster")
    try:
        released, skipped = release_signed_out_claims(request.user, claims, signed_in=_signed_in(),
                                                      ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("cases:roster")
    if released:
        messages.success(request, f"Released {len(released)} case(s): {', '.join(map(str, released))}.")
    if skipped:
        messages.warning(request, f"Left {len(skipped)} case(s) alone (claimed again, decided, or the reviewer "
                                  f"signed back in): {', '.join(map(str, skipped))}.")
    return redirect("cases:roster")


@login_required
@require_GET
def reporters(request):
    require_senior(request.user)
    show = request.GET.get("show", "all")
    show = show if show in leads.REPORTER_FILTERS else "all"
    sort = request.GET.get("sort", "dismissed")
    sort = sort if sort in leads.REPORTER_SORTS else "dismissed"
    q = request.GET.get("q", "").strip()[:255]
    page = Paginator(leads.reporters(show=show, sort=sort, q=q), 100).get_page(request.GET.get("page"))
    return render(request, "cases/leads/reporters.html", {
        "page": page, "show": show, "sort": sort, "q": q, "filters": leads.REPORTER_FILTERS,
        "sorts": list(leads.REPORTER_SORTS)})


VERBS = {"mute": mute_reporter, "unmute": unmute_reporter, "trust": trust_reporter, "untrust": untrust_reporter}


@login_required
@require_POST
def reporter_action(request, pk):
    """`verb` = mute (with a reason) | unmute | trust | untrust."""
    require_senior(request.user)
    reporter = get_object_or_404(Reporter, pk=pk)
    verb = request.POST.get("verb", "")
    if verb not in VERBS:
        messages.error(request, "Choose mute, unmute, trust or untrust.")
        return redirect("cases:reporters")
    kwargs = {"reason": request.POST.get("reason", "")} if verb == "mute" else {}
    try:
        _, changed = VERBS[verb](request.user, reporter.pk, ip=client_ip(request), **kwargs)
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("cases:reporters")
    done = {"mute": "muted", "unmute": "unmuted", "trust": "trusted", "untrust": "no longer trusted"}[verb]
    messages.success(request, f"Reporter {reporter.external_id} {done}." if changed
                     else f"Reporter {reporter.external_id} was already {done}.")
    return redirect("cases:reporters")


def _filter_or_error(request):
    if len(request.META.get("QUERY_STRING", "")) > QUERY_MAX:
        raise leads.FilterError("The search is too long: narrow it with fewer, shorter fields.")
    return leads.parse_audit_filter(request.GET)


@login_required
@require_GET
def audit_search(request):
    """The audit log, filtered and keyset-paged; every search is itself audited."""
    require_senior(request.user)
    context = {"events": Event.choices, "presets": leads.PRESETS, "params": request.GET, "rows": [], "next": None}
    try:
        flt = _filter_or_error(request)
        after = request.GET.get("after", "")
        rows, cursor = leads.audit_page(flt, after=after or None)
    except leads.FilterError as exc:
        context["error"] = str(exc)
        return render(request, "cases/leads/audit.html", context, status=400)
    audit(request.user, Event.AUDIT_SEARCHED, ip=client_ip(request),
          details={"filter": flt.as_details(), **({"after": after} if after else {})})
    params = request.GET.copy()
    params.pop("after", None)
    context.update(rows=rows, next=cursor, filter=flt, base_query=params.urlencode(),
                   selected_events=set(flt.events))
    return render(request, "cases/leads/audit.html", context)


def safe_cell(value):
    """A CSV cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class _Echo:
    def write(self, value):
        return value


def _csv_lines(rows, cap):
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    count = 0
    for event in rows.iterator(chunk_size=2000):
        if count == cap:
            yield writer.writerow([safe_cell(f"Stopped at {cap} rows: more rows match. Narrow the filter "
                                             "(dates, event, actor) and export again.")])
            return
        count += 1
        yield writer.writerow([safe_cell(v) for v in (
            event.created_at.isoformat(), event.actor_label, event.action, event.case_id, event.item_id,
            event.object_type, event.object_id, event.ip, json.dumps(event.details, sort_keys=True))])


@login_required
@require_GET
def audit_csv(request):
    """The same filter as a streamed CSV: behind the second factor, capped, and audited."""
    require_senior(request.user)
    step_up = require_second_factor(request)
    if step_up is not None:
        return step_up
    try:
        flt = _filter_or_error(request)
    except leads.FilterError as exc:
        return render(request, "cases/leads/audit.html", {
            "events": Event.choices, "presets": leads.PRESETS, "params": request.GET, "rows": [],
            "error": str(exc)}, status=400)
    with transaction.atomic():
        audit(request.user, Event.AUDIT_EXPORTED, ip=client_ip(request),
              details={"filter": flt.as_details(), "cap": leads.AUDIT_CSV_MAX_ROWS})
    # One row past the cap tells the stream that there is more than it may export.
    rows = leads.audit_rows(flt)[:leads.AUDIT_CSV_MAX_ROWS + 1]
    response = StreamingHttpResponse(_csv_lines(rows, leads.AUDIT_CSV_MAX_ROWS), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{timezone.now():%Y%m%d-%H%M%S}.csv"'
    response["Cache-Control"] = "no-store"
    return response


def _referral_kind(request):
    kind = request.GET.get("kind", "")
    return kind if kind in leads.REFERRAL_KINDS else ""


@login_required
@require_GET
def referrals(request):
    """Sites and apps through which groups were reached, with the groups and actioned accounts behind each:
    what the team takes to the app store or the site."""
    require_senior(request.user)
    kind = _referral_kind(request)
    return render(request, "cases/leads/referrals.html", {
        "sources": leads.referral_sources(kind), "kind": kind, "kinds": leads.REFERRAL_KINDS,
        "limit": leads.REFERRAL_GROUP_LIMIT})


REFERRAL_COLUMNS = ["source", "kind", "group", "group_name", "how", "group_actioned", "actioned_members",
                    "source_groups", "source_actioned_groups", "source_actioned_accounts", "source_referral_joins"]


@login_required
@require_GET
def referrals_csv(request):
    """The referrals as CSV, one row per source and group: behind the second factor, and audited."""
    require_senior(request.user)
    step_up = require_second_factor(request)
    if step_up is not None:
        return step_up
    kind = _referral_kind(request)
    sources = leads.referral_sources(kind)
    audit(request.user, Event.REFERRALS_EXPORTED, ip=client_ip(request),
          details={"kind": kind or "all", "sources": len(sources)})
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="referrals-{timezone.now():%Y%m%d-%H%M%S}.csv"'
    response["Cache-Control"] = "no-store"
    writer = csv.writer(response)
    writer.writerow(REFERRAL_COLUMNS)
    for source in sources:
        for row in source.groups:
            writer.writerow([safe_cell(v) for v in (
                source.name, source.kind, row.group.external_id, row.group.name, row.how,
                "yes" if row.actioned else "no", row.actioned_members, len(source.groups),
                source.actioned_groups, len(source.actioned_accounts), f"{source.referral_joins:.0f}")])
    return response
