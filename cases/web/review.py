"""Reviewer pages: the queue, the case, decisions, and evidence renditions."""

from collections import OrderedDict
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, Min, Q
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from cases import renditions
from cases.actions import ActionError
from cases.actions import notes as subject_notes
from cases.actions.claims import claim_case, claim_next_case, release_case, reviewable_queues
from cases.actions.decisions import BAN_DAYS, decide, matched_members, reasons_for, second_review, undo
from cases.actions.evidence import record_evidence_view
from cases.actions.preferences import save_viewing_preferences
from cases.models import (
    Action,
    Case,
    CaseStatus,
    CaseView,
    Decision,
    Enforcement,
    IntegrityAlert,
    LegalHold,
    ReviewQueue,
    SubjectNote,
    ViewingPreference,
)
from cases.web.permissions import access_case, access_item, client_ip, require_reviewer
from cases.wellness import exposure_today
from detection.detectors.risk import DETECTORS as RISK_DETECTORS
from detection.models import Item, Signal, UserReport

QUEUE_PAGE = 50
VIEWING_SECONDS = 75  # the page refreshes its presence every 30 s
ACTION_KEYS = OrderedDict([
    (Action.BAN, "b"), (Action.REMOVE, "r"), (Action.ESCALATE, "e"), (Action.REPORT, "t"), (Action.DISMISS, "d"),
])


@login_required
@require_GET
def home(request):
    """Where signing in lands: each role's own starting page."""
    user = request.user
    if hasattr(user, "agency_member"):
        return redirect("cases:portal")
    if not user.has_perm("cases.review_case") and user.has_perm("cases.handle_legal_requests"):
        return redirect("cases:legal_queue")
    return redirect("cases:queue")


@login_required
@require_GET
def queue(request):
    require_reviewer(request.user)
    queues = list(reviewable_queues(request.user))
    slug = request.GET.get("queue", "")
    selected = next((q for q in queues if q.slug == slug), None)
    open_cases = Case.objects.filter(closed_at__isnull=True)
    if not request.user.has_perm("cases.review_escalated"):
        # A join on the queue flag, not a list of queue ids, so the ranked index stays usable.
        open_cases = open_cases.filter(queue__senior_only=False)
    now = timezone.now()
    stats = {q.pk: {"pending": 0, "claimed": 0, "breaches": 0, "oldest": None} for q in queues}
    # Grouped by (queue, status) and one ranged count per queue: each served by an index on open cases.
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
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    handled = dict(Decision.objects.filter(created_at__gte=start_of_day).values("case__queue")
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
    for case in cases:
        case.due_at = case.created_at + timedelta(minutes=case.queue.sla_minutes)
        case.breached = case.due_at < now
    mine = Case.objects.filter(assigned_to=request.user, status=CaseStatus.CLAIMED, closed_at__isnull=True).first()
    awaiting_second = list(
        Decision.objects.filter(approval="pending", case__queue__in=queues).exclude(decided_by=request.user)
        .select_related("case", "decided_by", "reason")[:20])
    return render(request, "cases/queue.html", {
        "queues": queues, "selected": selected, "cases": cases, "mine": mine, "now": now,
        "exposure": exposure_today(request.user), "awaiting_second": awaiting_second,
        "total_open": sum(q.stats["pending"] + q.stats["claimed"] for q in queues),
    })


@login_required
@require_POST
def claim_next(request):
    require_reviewer(request.user)
    selected = ReviewQueue.objects.filter(slug=request.POST.get("queue", "")).first()
    case = claim_next_case(request.user, queue=selected, ip=client_ip(request))
    if case is None:
        messages.info(request, "No cases are waiting. Well done.")
        return redirect("cases:queue")
    return redirect("cases:detail", pk=case.pk)


@login_required
@require_GET
def case_detail(request, pk):
    case = access_case(request.user, pk)
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
    subject = case.subject
    history = Case.objects.filter(
        Q(account=case.account_id) if case.account_id else Q(group=case.group_id)
    ).exclude(pk=case.pk).order_by("-created_at")[:20]
    decisions = Decision.objects.filter(case__in=[case.pk, *[c.pk for c in history]]).select_related(
        "reason", "decided_by", "case"
    )[:50]
    if case.account_id:
        facts = {
            "items": Item.objects.filter(account=case.account_id).count(),
            "groups": list(case.account.groups.all()[:20]),
        }
    else:
        facts = {"items": Item.objects.filter(group=case.group_id).count(), "members": case.group.members.count(),
                 "matched_members": list(matched_members(case.group)[:200])}
    holds_claim = case.status == CaseStatus.CLAIMED and case.assigned_to_id == request.user.pk
    now = timezone.now()  # a GET changes nothing: the page reports its presence by POST to `viewing`
    reports = UserReport.objects.filter(
        Q(account=case.account_id) if case.account_id else Q(group=case.group_id)).order_by("-created_at")[:20]
    notes = SubjectNote.objects.filter(
        Q(account=case.account_id) if case.account_id else Q(group=case.group_id)).select_related("author")[:50]
    pref = ViewingPreference.for_user(request.user, case.queue.slug)
    actions = [
        {"value": a.value, "label": a.label, "key": ACTION_KEYS[a], "reasons": reasons_for(a.value)}
        for a in ACTION_KEYS
        if a != Action.REPORT or request.user.has_perm("cases.reveal_evidence")
    ]
    return render(request, "cases/case_detail.html", {
        "case": case, "subject": subject, "items": list(items.values()), "subject_signals": subject_signals,
        "history": history, "decisions": decisions, "facts": facts, "holds_claim": holds_claim,
        "actions": actions, "can_reveal": request.user.has_perm("cases.reveal_evidence"),
        "needs_2fa": settings.REQUIRE_2FA_FOR_REVEAL and not request.user.is_verified(),
        "pref": pref, "exposure": exposure_today(request.user), "notes": notes, "user_reports": reports,
        "reveal_seconds": settings.REVEAL_SECONDS,
        "viewers": other_viewers(case, request.user, now), "seniors": seniors(),
        "pending": case.decisions.filter(approval="pending").select_related("decided_by", "reason").first(),
        "ban_days": [(days or "", label) for days, label in BAN_DAYS.items()],
        "enforcements": Enforcement.objects.filter(decision__case=case).order_by("pk"),
        "cybertip_reports": case.cybertip_reports.all(),
        "can_allow_list": request.user.has_perm("detection.change_bank"),
        "risk_panels": risk_panels(case),
    })


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


def seniors():
    from django.contrib.auth import get_user_model  # noqa: PLC0415

    perm = Q(groups__permissions__codename="review_escalated") | Q(user_permissions__codename="review_escalated")
    return get_user_model().objects.filter(perm, is_active=True).distinct().order_by("username")


@login_required
@require_POST
def viewing(request, pk):
    """The case page calls this while it stays open, and learns who else has the case open."""
    case = access_case(request.user, pk)
    now = timezone.now()
    CaseView.objects.update_or_create(case=case, user=request.user, defaults={"seen_at": now})
    return JsonResponse({"others": other_viewers(case, request.user, now)})


@login_required
@require_POST
def add_note(request, pk):
    case = access_case(request.user, pk)
    try:
        subject_notes.add_note(request.user, case, request.POST.get("text", ""), ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
    return redirect("cases:detail", pk=case.pk)


@login_required
@require_POST
def second_review_view(request, decision_id):
    require_reviewer(request.user)
    decision = get_object_or_404(Decision.objects.select_related("case__queue"), pk=decision_id)
    access_case(request.user, decision.case_id)
    try:
        decision = second_review(request.user, decision.pk, approve=request.POST.get("approve") == "1",
                                 note=request.POST.get("note", "")[:2000], ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("cases:detail", pk=decision.case_id)
    verb = "Approved and carried out" if decision.approval == "approved" else "Sent back to the queue"
    messages.success(request, f"{verb}: {decision.get_action_display()} on case {decision.case_id}.")
    return redirect("cases:queue")


@login_required
@require_POST
def undo_view(request, decision_id):
    require_reviewer(request.user)
    request.session.pop("undo", None)
    try:
        decision = undo(request.user, decision_id, ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("cases:queue")
    messages.info(request, f"Undone: {decision.get_action_display()} on case {decision.case_id}. "
                           "The case is yours again.")
    return redirect("cases:detail", pk=decision.case_id)


@login_required
@require_POST
def claim(request, pk):
    case = access_case(request.user, pk)
    try:
        claim_case(request.user, case.pk, ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
    return redirect("cases:detail", pk=case.pk)


@login_required
@require_POST
def release(request, pk):
    case = access_case(request.user, pk)
    if release_case(request.user, case.pk, ip=client_ip(request)):
        messages.info(request, f"Case {case.pk} released back to its queue.")
    return redirect("cases:queue")


@login_required
@require_POST
def decide_view(request, pk):
    case = access_case(request.user, pk)
    try:
        version = int(request.POST.get("version", ""))
    except ValueError:
        messages.error(request, "The form was incomplete; reload the case.")
        return redirect("cases:detail", pk=case.pk)
    ban_days = request.POST.get("ban_days", "")
    escalate_to = request.POST.get("escalate_to", "")
    member_ids = [int(m) for m in request.POST.getlist("members") if m.isdigit()]
    try:
        decision, created = decide(
            request.user, case.pk, action=request.POST.get("action", ""),
            reason_code=request.POST.get("reason", ""), note=request.POST.get("note", "")[:4000],
            version=version, ban_days=int(ban_days) if ban_days.isdigit() else None, ip=client_ip(request),
            escalate_to=int(escalate_to) if escalate_to.isdigit() else None, member_ids=member_ids,
            allow_list=request.POST.get("allow_list") == "1",
        )
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("cases:detail", pk=case.pk)
    verb = "Recorded" if created else "Already recorded"
    messages.success(request, f"{verb}: {decision.get_action_display()} on case {case.pk} ({decision.reason}).")
    if created and settings.UNDO_SECONDS:
        request.session["undo"] = {"decision": decision.pk, "case": case.pk,
                                   "until": (decision.created_at.timestamp() + settings.UNDO_SECONDS)}
    exposure = exposure_today(request.user)
    if exposure.over_budget:
        messages.warning(request, f"You have reached today's exposure budget ({exposure.reveals} reveals, "
                                  f"{exposure.minutes} minutes on cases). Please take a break; the next case "
                                  "will wait for you.")
        return redirect("cases:queue")
    next_case = claim_next_case(request.user, ip=client_ip(request))
    if next_case is None:
        messages.info(request, "No more cases are waiting.")
        return redirect("cases:queue")
    return redirect("cases:detail", pk=next_case.pk)


def _image_response(data):
    response = HttpResponse(data, content_type="image/jpeg")
    response["Cache-Control"] = "no-store, private"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = "inline"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


def caption_for(item):
    """What the detectors found, in a reviewer's words: the warning screen shows this."""
    lines = []
    for signal in item.signals.all()[:4]:
        details = signal.details or {}
        hashes = details.get("hashes") or []
        if signal.kind == "hash_match" and hashes:
            best = hashes[0]
            lines.append(f"Known-material match, bank {details.get('bank')}")
            lines.append(f"{best['type'].upper()} distance {best['distance']} (threshold {best['threshold']})")
        else:
            lines.append(signal.label)
    return lines


@login_required
@require_GET
def evidence_blurred(request, item_id):
    item = access_item(request.user, item_id)
    case = Case.objects.filter(pk=request.GET.get("case") or 0, signals__item=item).select_related("queue").first()
    pref = ViewingPreference.for_user(request.user, case.queue.slug if case else "")
    if pref.problem_for(request.user):
        pref = ViewingPreference()
    record_evidence_view(request.user, item, revealed=False, ip=client_ip(request))
    return _image_response(renditions.blurred(item, pref, caption_for(item) if pref.warning_screen else ()))


@login_required
def viewing_preferences(request):
    """A reviewer's own filters, for every category and per queue."""
    require_reviewer(request.user)
    categories = [("", "All categories")] + [(q.slug, q.name) for q in reviewable_queues(request.user)]
    if request.method == "POST":
        choices = {}
        for slug, _ in categories:
            prefix = f"{slug or 'all'}-"
            if request.POST.get(prefix + "mode") == "inherit" and slug:
                choices[slug] = None
                continue
            choices[slug] = {
                "blur": request.POST.get(prefix + "blur"), "tone": request.POST.get(prefix + "tone"),
                "detail": request.POST.get(prefix + "detail"),
                "warning_screen": request.POST.get(prefix + "warning") == "on",
            }
        try:
            save_viewing_preferences(request.user, choices, ip=client_ip(request))
        except ActionError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Viewing preferences saved.")
        return redirect("viewing_preferences")
    rows = []
    for slug, name in categories:
        own = ViewingPreference.objects.filter(user=request.user, category=slug).first()
        rows.append({"slug": slug or "all", "name": name, "own": own is not None,
                     "pref": own or ViewingPreference.for_user(request.user, slug)})
    return render(request, "cases/viewing_preferences.html", {
        "rows": rows, "blurs": ViewingPreference.Blur.choices, "tones": ViewingPreference.Tone.choices,
        "details": ViewingPreference.Detail.choices})


@login_required
@require_POST
def evidence_reveal(request, item_id):
    item = access_item(request.user, item_id, reveal=True)
    if settings.REQUIRE_2FA_FOR_REVEAL and not request.user.is_verified():
        return HttpResponse("Two-factor verification is required to reveal evidence.", status=403,
                            content_type="text/plain")
    # The audit row commits before any byte is produced; if it cannot be written, nothing is shown.
    with transaction.atomic():
        record_evidence_view(request.user, item, revealed=True, ip=client_ip(request))
    return _image_response(renditions.revealed(item))
