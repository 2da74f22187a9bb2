"""Read queries behind the reviewer pages and the actions that need the same lists.

Views call these instead of querying; each returns plain lists and dicts for a template.
"""

from collections import OrderedDict, defaultdict
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Min, Q
from django.utils import timezone

from cases import routing
from cases.models import (
    REPORTABLE,
    Case,
    CaseStatus,
    CaseView,
    CyberTipReport,
    Decision,
    IntegrityAlert,
    LegalHold,
    LegalRequest,
    LegalRequestStatus,
    QueueStats,
    ReasonCode,
    ReviewQueue,
    RuleFiring,
    SubjectNote,
    SubjectTag,
)
from detection import hash_quality
from detection.detectors.risk import DETECTORS as RISK_DETECTORS
from detection.models import Account, Item, Signal, UserReport

QUEUE_PAGE = 50
VIEWING_SECONDS = 75  # the page refreshes its presence every 30 s


def reviewable_queues(user):
    queryset = ReviewQueue.objects.exclude(slug=routing.APPEALS)  # appeals have their own page
    if not user.has_perm("cases.review_escalated"):
        queryset = queryset.filter(senior_only=False)
    return queryset


def reasons_for(action):
    return [r for r in ReasonCode.objects.filter(active=True) if action in r.actions]


def matched_members(group):
    """Members of a group who shared known material in it, with how many such items each."""
    return (Account.objects.filter(items__group=group, items__signals__kind="hash_match").distinct()
            .annotate(matched=Count("items", filter=Q(items__group=group, items__signals__kind="hash_match"),
                                    distinct=True))
            .order_by("-matched", "external_id"))


def queue_page(user, queues, selected):
    """The queue page: per-queue counts, SLA breaches, decisions today, and the first page of cases.

    Sets `stats` on each queue; returns the cases, the reviewer's own claim, decisions waiting for a
    second reviewer and the time the page was computed at."""
    open_cases = Case.objects.filter(closed_at__isnull=True)
    if not user.has_perm("cases.review_escalated"):
        # A join on the queue flag, not a list of queue ids, so the ranked index stays usable.
        open_cases = open_cases.filter(queue__senior_only=False)
    now = timezone.now()
    stats, counted_at = queue_stats(queues, now)
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Decisions that stand: not undone, not a proposal still waiting for (or refused by) a second reviewer.
    handled = dict(Decision.objects.filter(created_at__gte=start_of_day, undone_at__isnull=True)
                   .exclude(approval__in=["pending", "rejected"]).values("case__queue")
                   .annotate(n=Count("pk")).values_list("case__queue", "n"))
    for q in queues:
        q.stats = stats[q.pk]
        q.stats["handled_today"] = handled.get(q.pk, 0)
    listed = open_cases.filter(queue=selected) if selected else open_cases
    # The page first, then its signal counts: counting before the LIMIT would group every open case.
    cases = list(listed.select_related("queue", "account", "group", "assigned_to")
                 .order_by("-priority", "created_at")[:QUEUE_PAGE])
    signal_counts = dict(Signal.objects.filter(case__in=[c.pk for c in cases]).values("case")
                         .annotate(n=Count("pk")).values_list("case", "n"))
    for case in cases:
        case.signal_count = signal_counts.get(case.pk, 0)
    attach_tags(cases)
    for case in cases:
        case.due_at = case.created_at + timedelta(minutes=case.queue.sla_minutes)
        case.breached = case.due_at < now
    mine = Case.objects.filter(assigned_to=user, status=CaseStatus.CLAIMED, closed_at__isnull=True).first()
    awaiting_second = list(
        Decision.objects.filter(approval="pending", case__queue__in=queues).exclude(decided_by=user)
        .select_related("case", "decided_by", "reason")[:20])
    return {"cases": cases, "mine": mine, "awaiting_second": awaiting_second, "now": now, "counted_at": counted_at}


def count_queues(queues, now):
    """{queue id: {pending, claimed, breaches, oldest}} counted now: grouped by (queue, status), and one
    ranged count per queue whose oldest case is past its SLA, each served by an index on open cases."""
    stats = {q.pk: {"pending": 0, "claimed": 0, "breaches": 0, "oldest": None} for q in queues}
    for row in (Case.objects.filter(closed_at__isnull=True, queue__in=list(stats)).values("queue", "status")
                .annotate(n=Count("pk"), oldest=Min("created_at"))):
        entry = stats[row["queue"]]
        entry["pending" if row["status"] == CaseStatus.OPEN else "claimed"] += row["n"]
        if entry["oldest"] is None or row["oldest"] < entry["oldest"]:
            entry["oldest"] = row["oldest"]
    for q in queues:
        if stats[q.pk]["oldest"] and stats[q.pk]["oldest"] < now - timedelta(minutes=q.sla_minutes):
            stats[q.pk]["breaches"] = Case.objects.filter(
                closed_at__isnull=True, queue=q, created_at__lt=now - timedelta(minutes=q.sla_minutes)).count()
    return stats


def open_cases_estimate():
    """About how many cases are open, without counting them: on PostgreSQL the planner's row count of the
    index over open cases (kept by autovacuum and ANALYZE); elsewhere an exact count (an embedded database
    is small). -1 when the statistics have never been gathered."""
    if connection.vendor != "postgresql":
        return Case.objects.filter(closed_at__isnull=True).count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", ["case_queue_age_idx"])
        row = cursor.fetchone()
    return int(row[0]) if row else -1


def queue_stats(queues, now):
    """The queue page's figures and when they were counted: counted on the request while open cases are
    few (QUEUE_COUNT_EXACT_BELOW); past that, as the cron last counted them (`refresh_queue_stats`, every
    QUEUE_STATS_SECONDS), and counted on the request only if that is older than QUEUE_STATS_MAX_AGE
    (the cron stopped). Returns (stats, counted_at), counted_at None when counted on this request."""
    estimate = open_cases_estimate()
    if estimate < settings.QUEUE_COUNT_EXACT_BELOW:  # -1 (no statistics yet): count
        return count_queues(queues, now), None
    kept = {row.queue_id: row for row in QueueStats.objects.filter(queue__in=queues)}
    fresh = now - timedelta(seconds=settings.QUEUE_STATS_MAX_AGE)
    if len(kept) < len(queues) or any(row.computed_at < fresh for row in kept.values()):
        refresh_queue_stats(queues)
        kept = {row.queue_id: row for row in QueueStats.objects.filter(queue__in=queues)}
    stats = {pk: {"pending": row.pending, "claimed": row.claimed, "breaches": row.breaches, "oldest": row.oldest}
             for pk, row in kept.items()}
    return stats, min(row.computed_at for row in kept.values()) if kept else None


def refresh_queue_stats(queues=None):
    """Count every queue's open cases and keep the figures for the queue page (a cron job)."""
    queues = list(queues) if queues is not None else list(ReviewQueue.objects.all())
    now = timezone.now()
    counted = count_queues(queues, now)
    for q in queues:
        QueueStats.objects.update_or_create(queue=q, defaults={**counted[q.pk], "computed_at": now})
    return len(queues)


def live_tags(accounts=(), groups=()):
    """{("account"|"group", pk): [live SubjectTag, ...]} for many subjects (objects or ids) in one query."""
    account_ids = [getattr(a, "pk", a) for a in accounts if a is not None]
    group_ids = [getattr(g, "pk", g) for g in groups if g is not None]
    found = defaultdict(list)
    if not account_ids and not group_ids:
        return found
    for tag in (SubjectTag.objects.filter(Q(account__in=account_ids) | Q(group__in=group_ids),
                                          removed_at__isnull=True).select_related("set_by")):
        found[("account", tag.account_id) if tag.account_id else ("group", tag.group_id)].append(tag)
    return found


def attach_tags(cases):
    """Set `subject_tags` on each case (queue rows, search results) from one query."""
    tags = live_tags([c.account_id for c in cases if c.account_id], [c.group_id for c in cases if c.group_id])
    for case in cases:
        case.subject_tags = tags.get(("account", case.account_id) if case.account_id else ("group", case.group_id), [])
    return cases


def case_page(case):
    """Everything the case page shows about the case and its subject, read in a fixed number of queries."""
    signals = list(case.signals.select_related("item").order_by("-severity", "-score", "pk"))
    items = OrderedDict()
    for signal in signals:
        if signal.item_id:
            items.setdefault(signal.item_id, {"item": signal.item, "signals": []})["signals"].append(signal)
    subject_signals = [s for s in signals if not s.item_id]
    alerts = IntegrityAlert.objects.filter(item__in=list(items), resolved_at__isnull=True)
    for entry in items.values():
        entry["alerts"] = [a for a in alerts if a.item_id == entry["item"].pk]
    held = set(LegalHold.active().filter(item__in=list(items)).values_list("item_id", flat=True))
    for entry in items.values():
        entry["held"] = entry["item"].pk in held
    history = Case.objects.filter(
        Q(account=case.account_id) if case.account_id else Q(group=case.group_id)
    ).exclude(pk=case.pk).order_by("-created_at")[:20]
    decisions = Decision.objects.filter(case__in=[case.pk, *[c.pk for c in history]]).select_related(
        "reason", "decided_by", "case", "rule_version__rule"
    )[:50]
    if case.account_id:
        facts = {
            "items": Item.objects.filter(account=case.account_id).count(),
            "groups": list(case.account.groups.all()[:20]),
        }
    else:
        facts = {"items": Item.objects.filter(group=case.group_id).count(), "members": case.group.members.count(),
                 "matched_members": list(matched_members(case.group)[:200])}
    about = Q(account=case.account_id) if case.account_id else Q(group=case.group_id)
    return {
        "subject": case.subject, "items": list(items.values()), "subject_signals": subject_signals,
        "history": history, "decisions": decisions, "facts": facts,
        # Entries this case's matches rest on that people deconfirmed, the breaker quarantined, or that
        # reviewers keep dismissing: the reviewer should know before trusting the match.
        "entry_standing": sorted(hash_quality.entry_standing(hash_quality.entries_of_signals(signals)).items()),
        # What automation made of this case: a rule in shadow, or one that left it to people and why.
        "rule_firings": RuleFiring.objects.filter(case=case).exclude(outcome="decided").select_related(
            "rule_version__rule", "rule_version__policy", "rule_version__queue")[:10],
        "user_reports": UserReport.objects.filter(about).order_by("-created_at")[:20],
        "notes": SubjectNote.objects.filter(about).select_related("author")[:50],
        "subject_tags": list(SubjectTag.objects.filter(about, removed_at__isnull=True).select_related("set_by")),
        # A case resting on reports alone still shows what the account sent (blurred, on request).
        "account_items": [{"item": item, "signals": [], "alerts": [], "held": False} for item in Item.objects.filter(
            account=case.account_id, status="scanned", kind__in=["image", "video"]).order_by("-created_at")[:12]]
        if case.account_id and not items else [],
        "legal_requests": list(open_legal_requests(case)),
        "preservation_holds": preservation_holds(case).count(),
        "other_party": other_party(case),
        "escalation": Decision.objects.filter(case=case, action="escalate", undone_at__isnull=True)
        .select_related("decided_by", "reason").order_by("-created_at").first(),
    }


def other_party(case):
    """The cases on the other side of a possible child victim: the adults flagged for contacting teens
    who reported the child; and, on such an adult's case, the children who may be its victims."""
    if case.account_id is None:
        return []
    if case.possible_minor_victim:
        accounts = routing.adults_in_contact(case.account)
        role = "adult flagged for contacting teens"
    else:
        reported = UserReport.objects.filter(reporter=case.account.external_id).values_list("account", flat=True)
        accounts = Account.objects.filter(pk__in=reported, cases__possible_minor_victim__gt="").distinct()
        role = "possible child victim"
    rows = []
    for account in accounts[:10]:
        rows.append({"account": account, "role": role,
                     "cases": list(Case.objects.filter(account=account).order_by("-created_at")[:3])})
    return rows


def risk_panels(case):
    """The latest risk assessment of each kind about the case's subject, as its signal stored it."""
    about = Q(account=case.account_id) if case.account_id else Q(group=case.group_id, account__isnull=True)
    panels = []
    for detector in RISK_DETECTORS:
        signal = Signal.objects.filter(about, detector=detector).order_by("-created_at", "-pk").first()
        if signal is None:
            continue
        details = signal.details if isinstance(signal.details, dict) else {}
        features = [f for f in details.get("features", []) if isinstance(f, dict)]
        features.sort(key=lambda f: -(f.get("contribution") or 0))
        panels.append({"signal": signal, "features": features, "threshold": details.get("threshold"),
                       "summary": details.get("summary") or {}, "in_case": signal.case_id == case.pk})
    return panels


def other_viewers(case, user, now):
    recent = now - timedelta(seconds=VIEWING_SECONDS)
    return [v.user.get_username() for v in CaseView.objects.filter(case=case, seen_at__gte=recent)
            .exclude(user=user).select_related("user")]


def reviewers():
    """Active people who review cases: the choices when a senior reassigns one."""
    perm = Q(groups__permissions__codename="review_case") | Q(user_permissions__codename="review_case")
    return get_user_model().objects.filter(perm, is_active=True).distinct().order_by("username")


def seniors():
    perm = Q(groups__permissions__codename="review_escalated") | Q(user_permissions__codename="review_escalated")
    return get_user_model().objects.filter(perm, is_active=True).distinct().order_by("username")


def _unreported(now):
    due = now - timedelta(hours=settings.CYBERTIP_REPORT_DEADLINE_HOURS)
    return (Decision.objects.filter(Q(policy__category__in=sorted(REPORTABLE)) | Q(action="report"),
                                    undone_at__isnull=True, approval__in=["", "approved"], created_at__lt=due)
            .exclude(cybertip_report__status=CyberTipReport.Status.FILED))


def unreported_alarm(limit=20):
    """The page tile: how many, and the oldest `limit` with their reasons (pages never load them all)."""
    now = timezone.now()
    return {"count": _unreported(now).count(), "rows": unreported_confirmations(now, limit=limit)}


def unreported_confirmations(now=None, limit=None):
    """Confirmed reportable decisions whose CyberTipline report is not filed within the deadline.

    US law asks for the report "as soon as reasonably possible" after actual knowledge; a report
    still unfiled CYBERTIP_REPORT_DEADLINE_HOURS after the decision is an alarm, with the reason.
    """
    now = now or timezone.now()
    decisions = _unreported(now).select_related("case", "policy", "cybertip_report").order_by("created_at", "pk")
    if limit is not None:
        decisions = decisions[:limit]
    rows = []
    for decision in decisions:
        report = getattr(decision, "cybertip_report", None)
        if report is None:
            reason = "no CyberTipline report exists for this decision"
        elif report.status == CyberTipReport.Status.FAILED:
            reason = f"filing stopped: {report.last_error or 'needs attention'}"
        elif report.status == CyberTipReport.Status.AWAITING_APPROVAL:
            reason = "the report waits for a senior's approval"
        elif report.status == CyberTipReport.Status.RETRACTED:
            reason = "the report was retracted and not filed again"
        else:
            reason = f"the report is {report.get_status_display().lower()}"
        rows.append({"decision": decision, "case": decision.case, "report": report, "reason": reason,
                     "hours": int((now - decision.created_at).total_seconds() // 3600)})
    return rows


def open_legal_requests(case):
    """Law-enforcement requests still open on the case's subject (or on the case itself)."""
    about = Q(cases=case) | (Q(accounts=case.account_id) if case.account_id else Q(groups=case.group_id))
    return (LegalRequest.objects.filter(about).exclude(status__in=[LegalRequestStatus.CLOSED,
                                                                   LegalRequestStatus.REJECTED])
            .select_related("agency").distinct().order_by("due_at", "pk"))


def preservation_holds(case):
    """Holds placed on the subject's items for a law-enforcement preservation request, still in force."""
    items = Item.objects.filter(account=case.account_id) if case.account_id else Item.objects.filter(
        group=case.group_id)
    return LegalHold.active().filter(item__in=items, reason=LegalHold.Reason.PRESERVATION)


def unmatched_identifiers(request_obj):
    """The identifiers a legal request names that match no account or group we know, as "type: id"."""
    from detection.models import Group  # here, so this function stays one appended block

    wanted = {kind: {i.get("id") for i in request_obj.identifiers or [] if i.get("type") == kind}
              for kind in ("account", "group")}
    known = {"account": set(Account.objects.filter(external_id__in=wanted["account"])
                            .values_list("external_id", flat=True)),
             "group": set(Group.objects.filter(external_id__in=wanted["group"]).values_list("external_id", flat=True))}
    return [f"{i.get('type')}: {i.get('id')}" for i in request_obj.identifiers or []
            if i.get("id") not in known.get(i.get("type"), set())]
