"""Reviewer pages: the queue, the case, decisions, and evidence renditions."""


from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Q
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from cases import leads, renditions, selectors
from cases.actions import ActionError
from cases.actions import notes as subject_notes
from cases.actions.claims import claim_case, claim_next_case, release_case, take_over
from cases.actions.decisions import BAN_DAYS, decide, guard_facts, preview_guardrail, second_review, undo
from cases.actions.evidence import record_evidence_view
from cases.actions.preferences import save_viewing_preferences
from cases.models import (
    Action,
    Case,
    CaseStatus,
    CaseView,
    Decision,
    Enforcement,
    Policy,
    ReviewQueue,
    ViewingPreference,
)
from cases.selectors import reviewable_queues
from cases.web.permissions import access_case, access_item, client_ip, require_reviewer, require_senior
from cases.wellness import exposure_today

POLICY_KEYS = "1234567890"  # the first ten policies; escalation (routing, not a policy) is "e"


@login_required
@require_GET
def home(request):
    """Where signing in lands: each role's own starting page."""
    user = request.user
    if hasattr(user, "agency_member"):
        return redirect("cases:portal")
    if not user.has_perm("cases.review_case") and user.has_perm("cases.handle_legal_requests"):
        return redirect("cases:legal_queue")
    if not user.has_perm("cases.review_case") and user.has_perm("cases.investigate"):
        return redirect("cases:search")  # an analyst: investigations start from the search box
    return redirect("cases:queue")


@login_required
@require_GET
def queue(request):
    require_reviewer(request.user)
    queues = list(reviewable_queues(request.user))
    slug = request.GET.get("queue", "")
    selected = next((q for q in queues if q.slug == slug), None)
    page = selectors.queue_page(request.user, queues, selected)
    return render(request, "cases/queue.html", {
        "queues": queues, "selected": selected, **page, "exposure": exposure_today(request.user),
        "unreported": selectors.unreported_alarm() if request.user.has_perm("cases.review_escalated")
        else None, "report_deadline_hours": settings.CYBERTIP_REPORT_DEADLINE_HOURS,
        "total_open": sum(q.stats["pending"] + q.stats["claimed"] for q in queues),
        "stats_every": settings.QUEUE_STATS_SECONDS,
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
    page = selectors.case_page(case)
    holds_claim = case.status == CaseStatus.CLAIMED and case.assigned_to_id == request.user.pk
    now = timezone.now()  # a GET changes nothing: the page reports its presence by POST to `viewing`
    pref = ViewingPreference.for_user(request.user, case.queue.slug)
    subject = "account" if case.account_id else "group"
    facts = guard_facts(request.user, case) if holds_claim else None
    policies = []
    for n, policy in enumerate(Policy.objects.filter(active=True)):
        guard, why = preview_guardrail(request.user, case, policy, facts) if facts else (None, "")
        policies.append({"policy": policy, "key": POLICY_KEYS[n] if n < len(POLICY_KEYS) else "",
                         "effects": policy.describe(subject), "guard": guard, "why": why})
    escalation = {"key": "e", "reasons": selectors.reasons_for(Action.ESCALATE)}
    return render(request, "cases/case_detail.html", {
        "case": case, **page, "holds_claim": holds_claim,
        "policies": policies, "escalation": escalation, "subject_word": subject,
        "can_reveal": request.user.has_perm("cases.reveal_evidence"),
        "needs_2fa": settings.REQUIRE_2FA_FOR_REVEAL and not request.user.is_verified(),
        "pref": pref, "exposure": exposure_today(request.user),
        "reveal_seconds": settings.REVEAL_SECONDS,
        "viewers": selectors.other_viewers(case, request.user, now), "seniors": selectors.seniors(),
        "reviewers": selectors.reviewers() if request.user.has_perm("cases.review_escalated") else [],
        "pending": case.decisions.filter(approval="pending").select_related("decided_by", "reason").first(),
        "ban_days": [(days or "", label) for days, label in BAN_DAYS.items()],
        "enforcements": Enforcement.objects.filter(decision__case=case).order_by("pk"),
        "cybertip_reports": case.cybertip_reports.all(),
        "can_allow_list": request.user.has_perm("detection.change_bank"),
        "risk_panels": selectors.risk_panels(case),
        "reporter_standings": leads.reporter_standings(case),
    })


@login_required
@require_POST
def viewing(request, pk):
    """The case page calls this while it stays open, and learns who else has the case open."""
    case = access_case(request.user, pk)
    now = timezone.now()
    CaseView.objects.update_or_create(case=case, user=request.user, defaults={"seen_at": now})
    return JsonResponse({"others": selectors.other_viewers(case, request.user, now)})


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
def take_over_view(request, pk):
    """A senior takes over a claimed case, or reassigns it to another reviewer."""
    require_senior(request.user)
    case = access_case(request.user, pk)
    to_user = None
    if request.POST.get("reassign"):
        to_user = selectors.reviewers().filter(pk=request.POST.get("to") or 0).first()
        if to_user is None:
            messages.error(request, "Choose a reviewer from the list.")
            return redirect("cases:detail", pk=case.pk)
    try:
        case = take_over(request.user, case.pk, to_user=to_user, ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("cases:detail", pk=case.pk)
    messages.success(request, f"Case {case.pk} is now {case.assigned_to.get_username()}'s.")
    return redirect("cases:detail", pk=case.pk)


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
        escalating = request.POST.get("action") == Action.ESCALATE
        decision, created = decide(
            request.user, case.pk, policy=None if escalating else request.POST.get("policy") or None,
            action=request.POST.get("action") or None, reason_code=request.POST.get("reason") or None,
            note=request.POST.get("note", "")[:4000],
            version=version, ban_days=int(ban_days) if ban_days.isdigit() else None, ip=client_ip(request),
            escalate_to=int(escalate_to) if escalate_to.isdigit() else None, member_ids=member_ids,
            allow_list=request.POST.get("allow_list") == "1",
        )
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("cases:detail", pk=case.pk)
    verb = "Recorded" if created else "Already recorded"
    what = decision.policy.title if decision.policy else f"{decision.get_action_display()} ({decision.reason})"
    if decision.approval == "pending":
        messages.warning(request, f"Proposed, not yet carried out: {what} on case {case.pk} waits for a second "
                                  f"reviewer. {decision.options.get('second_review_reason') or ''}".strip())
    else:
        messages.success(request, f"{verb}: {what} on case {case.pk}.")
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
    if item.hash_only:  # a card saying so, not evidence: nobody sees anything, so nothing is recorded as viewed
        return _image_response(renditions.blurred(item))
    case = (Case.objects.filter(Q(signals__item=item) | Q(account=item.account_id), pk=request.GET.get("case") or 0)
            .select_related("queue").first())
    category = case.queue.slug if case else ""
    pref = ViewingPreference.for_user(request.user, category)
    if pref.problem_for(request.user) or request.GET.get("listing"):
        # Thumbnails in listings (search, subject pages, pivots) always take the organisation's default:
        # a page of many pictures is not where a reviewer's relaxed filter applies; a case page is.
        pref = renditions.org_default(category)
    unblurred = renditions.shows_unblurred(item, pref)
    may_reveal = request.user.has_perm("cases.reveal_evidence") and (
        not settings.REQUIRE_2FA_FOR_REVEAL or request.user.is_verified())  # what evidence_reveal asks
    if unblurred and not may_reveal:
        # A rendition without blur is a reveal: without everything a reveal needs, the blurred default.
        pref, unblurred = renditions.org_default(category), False
    with transaction.atomic():  # as for a reveal, the audit row commits before any byte is produced
        record_evidence_view(request.user, item, revealed=unblurred, ip=client_ip(request),
                             rendition="filtered-unblurred" if unblurred else "")
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
    if item.hash_only:
        # Refused before the audit row: a reveal on record would tell NCMEC a person viewed the file.
        return HttpResponse(f"{renditions.NO_MEDIA}: there is nothing to reveal.", status=409,
                            content_type="text/plain")
    if settings.REQUIRE_2FA_FOR_REVEAL and not request.user.is_verified():
        return HttpResponse("Two-factor verification is required to reveal evidence.", status=403,
                            content_type="text/plain")
    # The audit row commits before any byte is produced; if it cannot be written, nothing is shown.
    with transaction.atomic():
        record_evidence_view(request.user, item, revealed=True, ip=client_ip(request))
    return _image_response(renditions.revealed(item))
