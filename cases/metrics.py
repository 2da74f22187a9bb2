"""Daily metrics: rolled up from the live tables, read by the dashboard and the transparency report.

Each day (UTC) is computed by a handful of aggregate queries over that day's rows only, using
the created/closed/scanned/decided indexes, and stored as DailyMetric rows. The dashboard and the
transparency report then read a few hundred rows instead of millions. A day can be recomputed at
any time, so a late change (a report finished, a ban lifted) is picked up by the next rollup.
"""

import math
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

from django.db import transaction
from django.db.models import Count, Max, Min, OuterRef, Q, Subquery, Sum
from django.db.models.fields.json import KT
from django.utils import timezone

from cases.models import (
    Action,
    Appeal,
    AppealStatus,
    Case,
    CyberTipReport,
    DailyMetric,
    Decision,
    QAReview,
    ReviewQueue,
)
from detection.detectors import risk
from detection.models import Account, Group, Item, ItemStatus, Signal, SignalKind

# Time from intake to decision is kept per day as a histogram with buckets 10 % apart, so that
# percentiles over a week or a month come out within 10 % without keeping every duration.
TTD_BASE_SECONDS = 10
TTD_GROWTH = 1.1
FINAL_ACTIONS = [Action.BAN, Action.REMOVE, Action.REPORT, Action.DISMISS]
ACTIONED = [Action.BAN, Action.REMOVE, Action.REPORT]
# How far back the periodic rollup reaches when nothing has been rolled up yet.
BACKFILL_DAYS = 400


def day_bounds(day):
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def ttd_bucket(seconds):
    if seconds <= TTD_BASE_SECONDS:
        return 0
    return 1 + int(math.log(seconds / TTD_BASE_SECONDS, TTD_GROWTH))


def ttd_bucket_upper(bucket):
    return TTD_BASE_SECONDS * TTD_GROWTH ** bucket


def compute_day(day):
    """Every figure for one day, as (metric, key, value) triples."""
    start, end = day_bounds(day)
    totals = defaultdict(float)  # two groups may fold into one key (e.g. two kinds of proactive case)

    def add(metric, key, value):
        if value:
            totals[(metric, "" if key is None else str(key))] += float(value)

    def counted(queryset, field, metric):
        for key, n in queryset.values_list(field).annotate(n=Count("pk")).order_by():
            add(metric, key, n)

    add("items_received", "", Item.objects.filter(created_at__gte=start, created_at__lt=end).count())
    counted(Item.objects.filter(scanned_at__gte=start, scanned_at__lt=end), "status", "items_scanned")
    signals = Signal.objects.filter(created_at__gte=start, created_at__lt=end)
    counted(signals, "kind", "signals")
    for bank, n in (signals.filter(kind=SignalKind.HASH_MATCH).annotate(bank=KT("details__bank"))
                    .values_list("bank").annotate(n=Count("pk")).order_by()):
        add("matches", bank or "unknown", n)

    opened = Case.objects.filter(created_at__gte=start, created_at__lt=end)
    counted(opened, "queue__slug", "cases_opened")
    first_kind = Signal.objects.filter(case=OuterRef("pk")).order_by("created_at", "pk").values("kind")[:1]
    for kind, n in opened.annotate(first=Subquery(first_kind)).values_list("first").annotate(n=Count("pk")).order_by():
        if kind is not None:  # a case with no signal yet was found by nothing we can name
            add("cases_found", "reported" if kind == SignalKind.USER_REPORT else "proactive", n)
    counted(Case.objects.filter(closed_at__gte=start, closed_at__lt=end), "queue__slug", "cases_closed")

    decisions = Decision.objects.filter(created_at__gte=start, created_at__lt=end, undone_at__isnull=True)
    counted(decisions, "action", "decisions")
    counted(decisions, "case__queue__slug", "decisions_by_queue")
    actioned = decisions.filter(action__in=ACTIONED)
    add("accounts_actioned", "", actioned.filter(case__account__isnull=False)
        .values("case__account").distinct().count())
    add("groups_actioned", "", actioned.filter(case__group__isnull=False).values("case__group").distinct().count())
    add("accounts_banned", "", Account.objects.filter(banned_at__gte=start, banned_at__lt=end).count())
    add("groups_banned", "", Group.objects.filter(banned_at__gte=start, banned_at__lt=end).count())
    add("cybertip_filed", "", CyberTipReport.objects.filter(finished_at__gte=start, finished_at__lt=end).count())

    _prevention(actioned, add)
    _time_to_decision(decisions.filter(action__in=FINAL_ACTIONS), add)
    final = decisions.filter(action__in=FINAL_ACTIONS)
    add("decisions_by_means", "automated", final.filter(rule_version__isnull=False).count())
    add("decisions_by_means", "human", final.filter(rule_version__isnull=True).count())
    _appeals(start, end, add)
    return [(metric, key, value) for (metric, key), value in totals.items()]


def _prevention(actioned, add):
    """What the platform's prevention facts say about the day's actioned subjects: how far actioned items
    had travelled, how many actioned groups were found through public invite listings or referring apps,
    and first-contact blocks and reports against actioned accounts."""
    items = Item.objects.filter(pk__in=Item.objects.filter(signals__case__decisions__in=actioned).values("pk"))
    spread = items.aggregate(items=Count("pk"), counted=Count("forward_count"), forwards=Sum("forward_count"),
                             chats=Sum("forward_chats"), marked=Count("pk", filter=Q(forwarded_many=True)))
    for key, value in spread.items():
        add("spread", key, value)
    groups = Group.objects.filter(pk__in=actioned.filter(case__group__isnull=False).values("case__group"))
    for facts in groups.values_list("facts", flat=True):  # the risk helpers skip anything malformed
        add("groups_found", "public_listing", bool(risk.invite_listings(facts)))
        add("groups_found", "referral", bool(risk.referrals(facts)))
    accounts = Account.objects.filter(pk__in=actioned.filter(case__account__isnull=False).values("case__account"))
    for stored in accounts.values_list("facts", flat=True):
        facts = stored if isinstance(stored, dict) else {}
        blocks = risk.number(facts.get("first_contact_blocks_30d")) or 0
        reports = risk.number(facts.get("first_contact_reports_30d")) or 0
        add("first_contact", "blocks", blocks)
        add("first_contact", "reports", reports)
        add("first_contact", "accounts", bool(blocks or reports))


def _time_to_decision(decisions, add):
    """Intake (the first evidence's arrival) to decision; SLA from the case's opening, per queue."""
    timed = decisions.annotate(
        first_item=Min("case__signals__item__created_at"),
        first_signal=Min("case__signals__created_at"),
    ).values_list("created_at", "first_item", "first_signal", "case__created_at", "case__queue__slug",
                  "case__queue__sla_minutes")
    durations, histogram, breaches = [], defaultdict(int), defaultdict(int)
    for decided, first_item, first_signal, opened, queue, sla_minutes in timed:
        intake = min(t for t in (first_item, first_signal, opened) if t is not None)
        seconds = max(0.0, (decided - intake).total_seconds())
        durations.append(seconds)
        histogram[ttd_bucket(seconds)] += 1
        if (decided - opened).total_seconds() > sla_minutes * 60:
            breaches[queue] += 1
    for bucket, n in histogram.items():
        add("ttd_hist", bucket, n)
    for queue, n in breaches.items():
        add("sla_breaches", queue, n)
    if durations:
        durations.sort()
        add("ttd_p50", "", _exact_percentile(durations, 0.5) or 0.001)
        add("ttd_p90", "", _exact_percentile(durations, 0.9) or 0.001)


def _appeals(start, end, add):
    """Appeals received and decided that day, and the time each decided one took (as a histogram)."""
    add("appeals_received", "", Appeal.objects.filter(received_at__gte=start, received_at__lt=end).count())
    decided = Appeal.objects.filter(decided_at__gte=start, decided_at__lt=end).exclude(status=AppealStatus.RECEIVED)
    for status, received, decided_at in decided.values_list("status", "received_at", "decided_at"):
        add("appeals_decided", status, 1)
        add("appeal_ttd_hist", ttd_bucket(max(0.0, (decided_at - received).total_seconds())), 1)


def _exact_percentile(values, q):
    return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


def rollup_day(day):
    rows = compute_day(day)
    with transaction.atomic():
        DailyMetric.objects.filter(day=day).delete()
        DailyMetric.objects.bulk_create([DailyMetric(day=day, metric=m, key=k, value=v) for m, k, v in rows])
    return len(rows)


def first_day():
    """The earliest day anything happened, or None on an empty console."""
    firsts = [Item.objects.aggregate(d=Min("created_at"))["d"], Case.objects.aggregate(d=Min("created_at"))["d"]]
    firsts = [d for d in firsts if d]
    return min(firsts).astimezone(UTC).date() if firsts else None


def days_to_roll(today=None):
    """Yesterday and today always (late changes land there), and every day never rolled up."""
    today = today or timezone.now().astimezone(UTC).date()
    last = DailyMetric.objects.aggregate(d=Max("day"))["d"]
    if last is None:
        start = first_day() or today
        start = max(start, today - timedelta(days=BACKFILL_DAYS))
    else:
        start = min(last, today - timedelta(days=1))
    return [start + timedelta(days=n) for n in range((today - start).days + 1)]


def rollup_recent(progress=None):
    """The periodic job: roll up the days that may have changed. Returns the days done."""
    days = days_to_roll()
    for day in days:
        rollup_day(day)
        if progress:
            progress(1)
    return days


# Reading ---------------------------------------------------------------------------------------

PERIODS = {"day": 30, "week": 12, "month": 12}


def bucket_start(day, period):
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def bucket_starts(end_day, period, count):
    starts, current = [], bucket_start(end_day, period)
    for _ in range(count):
        starts.append(current)
        if period == "day":
            current -= timedelta(days=1)
        elif period == "week":
            current -= timedelta(days=7)
        else:
            current = (current - timedelta(days=1)).replace(day=1)
    return starts[::-1]


def load(start_day, end_day, metrics=None):
    """DailyMetric rows of a span as {metric: {day: {key: value}}}: one indexed query."""
    rows = DailyMetric.objects.filter(day__gte=start_day, day__lte=end_day)
    if metrics:
        rows = rows.filter(metric__in=metrics)
    table = defaultdict(lambda: defaultdict(dict))
    for day, metric, key, value in rows.values_list("day", "metric", "key", "value").order_by():
        table[metric][day][key] = value
    return table


def dashboard(period="day", count=None, today=None):
    """Everything the dashboard draws: one series per figure, bucketed by day, week or month."""
    count = count or PERIODS[period]
    today = today or timezone.now().astimezone(UTC).date()
    starts = bucket_starts(today, period, count)
    table = load(starts[0], today)
    index = {start: n for n, start in enumerate(starts)}

    def bucket_of(day):
        return index.get(bucket_start(day, period))

    def totals(metric):
        series = [0.0] * len(starts)
        for day, keys in table[metric].items():
            if (n := bucket_of(day)) is not None:
                series[n] += sum(keys.values())
        return series

    def by_key(metric):
        series = defaultdict(lambda: [0.0] * len(starts))
        for day, keys in table[metric].items():
            if (n := bucket_of(day)) is not None:
                for key, value in keys.items():
                    series[key][n] += value
        return dict(sorted(series.items(), key=lambda kv: -sum(kv[1])))

    histograms = [defaultdict(float) for _ in starts]
    for day, keys in table["ttd_hist"].items():
        if (n := bucket_of(day)) is not None:
            for key, value in keys.items():
                histograms[n][int(key)] += value
    found = by_key("cases_found")
    proactive, reported = found.get("proactive", [0.0] * len(starts)), found.get("reported", [0.0] * len(starts))
    return {
        "period": period,
        "starts": starts,
        "labels": [_label(s, period) for s in starts],
        "items_received": totals("items_received"),
        "items_scanned": by_key("items_scanned"),
        "signals": by_key("signals"),
        "matches": by_key("matches"),
        "cases_opened": totals("cases_opened"),
        "cases_closed": totals("cases_closed"),
        "decisions": by_key("decisions"),
        "decisions_by_queue": by_key("decisions_by_queue"),
        "accounts_banned": totals("accounts_banned"),
        "groups_banned": totals("groups_banned"),
        "cybertip_filed": totals("cybertip_filed"),
        "sla_breaches": by_key("sla_breaches"),
        "proactive": proactive,
        "reported": reported,
        "proactive_share": [_share(p, p + r) for p, r in zip(proactive, reported, strict=True)],
        "spread": by_key("spread"),
        "groups_found": by_key("groups_found"),
        "groups_actioned": totals("groups_actioned"),
        "first_contact": by_key("first_contact"),
        "ttd_p50": [histogram_percentile(h, 0.5) for h in histograms],
        "ttd_p90": [histogram_percentile(h, 0.9) for h in histograms],
        "rolled_days": len({d for metric in table.values() for d in metric}),
    }


def histogram_percentile(histogram, q):
    """The q-quantile of durations kept as bucket counts: the upper edge of the bucket it falls in."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= q * total:
            return ttd_bucket_upper(bucket)
    return ttd_bucket_upper(max(histogram))


def _share(part, whole):
    return round(100 * part / whole, 1) if whole else None


def per(part, whole):
    """part / whole to one decimal, None without a whole: forwards per actioned item."""
    return round(part / whole, 1) if whole else None


def prevention(data):
    """The prevention figures of a dashboard's series: per bucket and over the whole span."""
    zeros = [0.0] * len(data["starts"])
    forwards, counted = data["spread"].get("forwards", zeros), data["spread"].get("counted", zeros)
    listed, groups = data["groups_found"].get("public_listing", zeros), data["groups_actioned"]
    blocks = data["first_contact"].get("blocks", zeros)
    return {
        "forwards_per_item": [per(f, c) for f, c in zip(forwards, counted, strict=True)],
        "public_listing_share": [_share(n, g) for n, g in zip(listed, groups, strict=True)],
        "first_contact_blocks": blocks,
        "totals": {"forwards_per_item": per(sum(forwards), sum(counted)),
                   "items_counted": sum(counted), "public_listing_share": _share(sum(listed), sum(groups)),
                   "first_contact_blocks": sum(blocks),
                   "first_contact_accounts": sum(data["first_contact"].get("accounts", zeros))},
    }


def _label(start, period):
    if period == "month":
        return start.strftime("%b %Y")
    if period == "week":
        return f"wk {start:%d %b}"
    return start.strftime("%d %b")


def transparency(year):
    """One row per month of `year`: what a public transparency report states."""
    table = load(date(year, 1, 1), date(year, 12, 31), metrics=[
        "items_scanned", "cases_opened", "cases_found", "accounts_actioned", "groups_actioned", "accounts_banned",
        "groups_banned", "decisions", "cybertip_filed", "appeals_received", "appeals_decided", "appeal_ttd_hist",
        "decisions_by_means", "spread", "groups_found", "first_contact"])
    months = []
    for month in range(1, 13):
        def total(metric, key=None, _month=month):
            return int(sum(value for day, keys in table[metric].items() if day.month == _month
                           for k, value in keys.items() if key is None or k == key))
        proactive, reported = total("cases_found", "proactive"), total("cases_found", "reported")
        appeal_times = defaultdict(float)
        for day, keys in table["appeal_ttd_hist"].items():
            if day.month == month:
                for key, value in keys.items():
                    appeal_times[int(key)] += value
        median = histogram_percentile(appeal_times, 0.5)
        months.append({
            "month": date(year, month, 1),
            "items_scanned": total("items_scanned"),
            "cases_opened": total("cases_opened"),
            "accounts_actioned": total("accounts_actioned"),
            "groups_actioned": total("groups_actioned"),
            "accounts_banned": total("accounts_banned"),
            "groups_banned": total("groups_banned"),
            "content_removed": total("decisions", Action.REMOVE),
            "reports_filed": total("cybertip_filed"),
            "proactive": proactive,
            "reported": reported,
            "proactive_share": _share(proactive, proactive + reported),
            "appeals_received": total("appeals_received"),
            "appeals_upheld": total("appeals_decided", AppealStatus.UPHELD),
            "appeals_overturned": total("appeals_decided", AppealStatus.OVERTURNED),
            "appeal_median_hours": round(median / 3600, 1) if median is not None else None,
            "decisions_automated": total("decisions_by_means", "automated"),
            "decisions_human": total("decisions_by_means", "human"),
            "forwards": total("spread", "forwards"),
            "items_with_forwards": total("spread", "counted"),
            "forwards_per_actioned_item": per(total("spread", "forwards"), total("spread", "counted")),
            "groups_public_listing": total("groups_found", "public_listing"),
            "groups_public_listing_share": _share(total("groups_found", "public_listing"), total("groups_actioned")),
            "first_contact_blocks": total("first_contact", "blocks"),
            "first_contact_accounts": total("first_contact", "accounts"),
        })
    return months


def reviewer_workload(since):
    """Per reviewer since a time: decisions by action, undone, QA sampled and agreement."""
    decisions = Decision.objects.filter(created_at__gte=since)
    rows = {}
    for name, action, n in (decisions.values_list("decided_by__username", "action")
                            .annotate(n=Count("pk")).order_by()):
        row = rows.setdefault(name, {"name": name, "total": 0, "undone": 0, "qa_reviewed": 0, "qa_agreed": 0,
                                     **{a.value: 0 for a in Action}})
        row[action] = n
        row["total"] += n
    for name, n in decisions.filter(undone_at__isnull=False).values_list("decided_by__username").annotate(
            n=Count("pk")).order_by():
        rows[name]["undone"] = n
    qa = QAReview.objects.filter(decision__created_at__gte=since, reviewed_at__isnull=False)
    for name, n, agreed in qa.values_list("decision__decided_by__username").annotate(
            n=Count("pk"), agreed=Count("pk", filter=Q(agrees=True))).order_by():
        if name in rows:
            rows[name]["qa_reviewed"], rows[name]["qa_agreed"] = n, agreed
    for row in rows.values():
        row["qa_rate"] = _share(row["qa_agreed"], row["qa_reviewed"])
    return sorted(rows.values(), key=lambda r: -r["total"])


def live_counts():
    """Figures read live (cheap, from partial indexes): what is waiting now."""
    now = timezone.now()
    open_cases = Case.objects.filter(closed_at__isnull=True)
    return {
        "open_cases": open_cases.count(),
        "items_waiting": Item.objects.filter(status=ItemStatus.QUEUED).count(),
        "past_sla": sum(
            open_cases.filter(queue=queue, created_at__lt=now - timedelta(minutes=queue.sla_minutes)).count()
            for queue in ReviewQueue.objects.all()
        ),
    }
