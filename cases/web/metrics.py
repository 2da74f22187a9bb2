"""Metrics dashboard, monthly transparency report (page and CSV) and reviewer workload: seniors and admins."""

import csv
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Max
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from cases import metrics, selectors
from cases.models import DailyMetric
from cases.web import charts
from cases.web.permissions import require_senior
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit


def _year(request):
    this_year = timezone.now().year
    try:
        year = int(request.GET.get("year", this_year))
    except ValueError:
        year = this_year
    return min(max(year, 2000), this_year)


@login_required
@require_GET
def dashboard(request):
    require_senior(request.user)
    period = request.GET.get("period", "day")
    if period not in metrics.PERIODS:
        period = "day"
    data = metrics.dashboard(period)
    labels = data["labels"]
    chart_list = [
        charts.stacked_bars("Items scanned", labels, data["items_scanned"]),
        charts.stacked_bars("Matches by bank", labels, data["matches"]),
        charts.stacked_bars("Signals by type", labels, data["signals"]),
        charts.lines("Cases opened and closed", labels,
                     {"opened": data["cases_opened"], "closed": data["cases_closed"]}),
        charts.stacked_bars("Decisions by action", labels, data["decisions"]),
        charts.stacked_bars("Decisions by queue", labels, data["decisions_by_queue"]),
        charts.stacked_bars("Accounts and groups banned", labels,
                            {"accounts": data["accounts_banned"], "groups": data["groups_banned"]}),
        charts.bars("CyberTipline reports filed", labels, data["cybertip_filed"]),
        charts.lines("Intake to decision", labels, {"median": data["ttd_p50"], "90th percentile": data["ttd_p90"]},
                     unit="s"),
        charts.stacked_bars("Decisions past their queue's SLA", labels, data["sla_breaches"]),
        charts.stacked_bars("How cases were found", labels,
                            {"proactively": data["proactive"], "from user reports": data["reported"]}),
    ]
    prevention = metrics.prevention(data)
    chart_list += [
        charts.lines("Forwards per actioned item", labels, {"forwards": prevention["forwards_per_item"]}),
        charts.lines("Actioned groups found through public invite links", labels,
                     {"share": prevention["public_listing_share"]}, unit="%"),
        charts.bars("First-contact blocks against actioned accounts", labels, prevention["first_contact_blocks"]),
    ]
    rolled = DailyMetric.objects.aggregate(d=Max("day"))["d"]
    totals = {
        "scanned": sum(sum(v) for v in data["items_scanned"].values()),
        "opened": sum(data["cases_opened"]),
        "decisions": sum(sum(v) for v in data["decisions"].values()),
        "filed": sum(data["cybertip_filed"]),
        "proactive_share": metrics._share(sum(data["proactive"]), sum(data["proactive"]) + sum(data["reported"])),
    }
    return render(request, "cases/metrics.html", {
        "period": period, "periods": list(metrics.PERIODS), "charts": chart_list, "totals": totals,
        "live": metrics.live_counts(), "rolled": rolled, "data": data, "prevention": prevention["totals"],
        "unreported": selectors.unreported_alarm(),
        "report_deadline_hours": settings.CYBERTIP_REPORT_DEADLINE_HOURS,
        "rows": list(zip(labels, data["ttd_p50"], data["ttd_p90"], data["proactive_share"], strict=True)),
    })


@login_required
@require_GET
def transparency(request):
    require_senior(request.user)
    year = _year(request)
    months = metrics.transparency(year)
    return render(request, "cases/transparency.html", {
        "year": year, "months": months, "years": range(timezone.now().year, timezone.now().year - 5, -1),
        "totals": {key: sum(m[key] for m in months) for key in
                   ("items_scanned", "accounts_actioned", "groups_actioned", "content_removed", "reports_filed",
                    "proactive", "reported", "appeals_received", "appeals_upheld", "appeals_overturned",
                    "decisions_automated", "decisions_human", "forwards", "items_with_forwards",
                    "groups_public_listing", "first_contact_blocks", "first_contact_accounts")},
        "year_rates": _year_rates(months),
    })


def _year_rates(months):
    return {"forwards_per_actioned_item": metrics.per(sum(m["forwards"] for m in months),
                                                      sum(m["items_with_forwards"] for m in months)),
            "groups_public_listing_share": metrics._share(sum(m["groups_public_listing"] for m in months),
                                                          sum(m["groups_actioned"] for m in months))}


CSV_COLUMNS = ["month", "items_scanned", "cases_opened", "accounts_actioned", "groups_actioned", "accounts_banned",
               "groups_banned", "content_removed", "reports_filed", "proactive", "reported", "proactive_share",
               "appeals_received", "appeals_upheld", "appeals_overturned", "appeal_median_hours",
               "decisions_automated", "decisions_human", "forwards_per_actioned_item", "groups_public_listing",
               "groups_public_listing_share", "first_contact_blocks", "first_contact_accounts"]


@login_required
@require_GET
def transparency_csv(request):
    require_senior(request.user)
    year = _year(request)
    audit(request.user, Event.METRICS_TRANSPARENCY_EXPORTED, details={"year": year})
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="transparency-{year}.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for month in metrics.transparency(year):
        writer.writerow([month["month"].strftime("%Y-%m")] + [
            "" if month[c] is None else month[c] for c in CSV_COLUMNS[1:]])
    return response


@login_required
@require_GET
def reviewers(request):
    require_senior(request.user)
    try:
        days = min(max(int(request.GET.get("days", 30)), 1), 365)
    except ValueError:
        days = 30
    rows = metrics.reviewer_workload(timezone.now() - timedelta(days=days))
    return render(request, "cases/reviewers.html", {"rows": rows, "days": days, "spans": (7, 30, 90)})
