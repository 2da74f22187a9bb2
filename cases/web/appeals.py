"""Appeal pages: the appeals queue, one appeal with the decision and evidence it is about, uphold or overturn."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from cases import routing, selectors
from cases.actions import ActionError
from cases.actions import appeals as actions
from cases.models import Appeal, AppealStatus, CyberTipReport, Enforcement, ViewingPreference
from cases.web.permissions import client_ip, require_reviewer


def access_appeal(user, pk):
    """An appeal for a reviewer; appeals of child-exploitation decisions for seniors only."""
    require_reviewer(user)
    appeal = get_object_or_404(Appeal.objects.select_related(
        "decision__policy", "decision__case__queue", "decision__case__account", "decision__case__group",
        "decision__decided_by", "decision__second_reviewer", "decision__reason", "enforcement__platform",
        "statement_of_reasons", "assigned_to", "decided_by", "queue"), pk=pk)
    if actions.is_reportable(appeal.decision) and not user.has_perm("cases.review_escalated"):
        raise PermissionDenied
    return appeal


@login_required
@require_GET
def appeal_queue(request):
    require_reviewer(request.user)
    now = timezone.now()
    waiting = list(Appeal.objects.filter(status=AppealStatus.RECEIVED).select_related(
        "queue", "decision__policy", "assigned_to").order_by("received_at", "pk")[:200])
    mine = set(actions.eligible(request.user).values_list("pk", flat=True))
    for appeal in waiting:
        appeal.takeable = appeal.pk in mine
        appeal.overdue = appeal.due_at < now
    decided = Appeal.objects.exclude(status=AppealStatus.RECEIVED).select_related(
        "decided_by", "decision__policy").order_by("-decided_at")[:20]
    return render(request, "cases/appeals/queue.html", {
        "waiting": waiting, "decided": decided, "takeable": len(mine), "queue": routing.get_queue(actions.APPEALS),
    })


@login_required
@require_POST
def appeal_next(request):
    require_reviewer(request.user)
    appeal = actions.claim_next_appeal(request.user, ip=client_ip(request))
    if appeal is None:
        messages.info(request, "No appeals are waiting for you.")
        return redirect("cases:appeals")
    return redirect("cases:appeal", pk=appeal.pk)


@login_required
@require_GET
def appeal_detail(request, pk):
    appeal = access_appeal(request.user, pk)
    decision = appeal.decision
    case = decision.case
    page = selectors.case_page(case)
    return render(request, "cases/appeals/detail.html", {
        "appeal": appeal, "decision": decision, "case": case, "items": page["items"],
        "subject_signals": page["subject_signals"],
        "holds_claim": appeal.open and appeal.assigned_to_id == request.user.pk,
        "why_not": actions.why_not(request.user, appeal) if appeal.open else "",
        "reportable": actions.is_reportable(decision),
        "statements": decision.statements.all(),
        "enforcements": Enforcement.objects.filter(decision=decision).select_related("platform").order_by("pk"),
        "reports": CyberTipReport.objects.filter(decision=decision),
        "pref": ViewingPreference.for_user(request.user, case.queue.slug),
        "can_reveal": request.user.has_perm("cases.reveal_evidence"),
        "needs_2fa": settings.REQUIRE_2FA_FOR_REVEAL and not request.user.is_verified(),
        "reveal_seconds": settings.REVEAL_SECONDS,
        "notices": appeal.notices().select_related("platform"),
        "outcomes": [(AppealStatus.UPHELD, "Uphold: the decision stands"),
                     (AppealStatus.OVERTURNED, "Overturn: reverse the decision and lift the restriction")],
    })


@login_required
@require_POST
def appeal_claim(request, pk):
    appeal = access_appeal(request.user, pk)
    try:
        actions.claim_appeal(request.user, appeal.pk, ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
    return redirect("cases:appeal", pk=appeal.pk)


@login_required
@require_POST
def appeal_release(request, pk):
    appeal = access_appeal(request.user, pk)
    actions.release_appeal(request.user, appeal.pk, ip=client_ip(request))
    return redirect("cases:appeals")


@login_required
@require_POST
def appeal_decide(request, pk):
    appeal = access_appeal(request.user, pk)
    try:
        appeal, created = actions.decide_appeal(request.user, appeal.pk, outcome=request.POST.get("outcome", ""),
                                                reason=request.POST.get("reason", ""), ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("cases:appeal", pk=appeal.pk)
    if created:
        messages.success(request, f"Appeal #{appeal.pk}: {appeal.get_status_display().lower()}.")
    return redirect("cases:appeal", pk=appeal.pk)
