"""Blind QA: seniors judge sampled decisions without seeing them, and see how often they agree."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from cases.actions import ActionError
from cases.actions.qa import record_qa
from cases.models import Action, QAReview
from cases.web.permissions import require_senior


@login_required
@require_GET
def qa_next(request):
    require_senior(request.user)
    qa = (QAReview.objects.filter(reviewed_at__isnull=True).exclude(decision__decided_by=request.user)
          .select_related("decision__case__account", "decision__case__group", "decision__case__queue").first())
    context = {"qa": qa, "pending": QAReview.objects.filter(reviewed_at__isnull=True).count()}
    if qa:
        case = qa.decision.case
        signals = list(case.signals.select_related("item").order_by("-severity", "pk"))
        context.update({
            "case": case, "signals": signals,
            "items": list({s.item_id: s.item for s in signals if s.item_id}.values()),
            "actions": [(a.value, a.label) for a in Action if a != Action.ESCALATE],
        })
    return render(request, "cases/qa.html", context)


@login_required
@require_POST
def qa_review(request, pk):
    require_senior(request.user)
    qa = get_object_or_404(QAReview, pk=pk)
    try:
        qa = record_qa(request.user, qa.pk, action=request.POST.get("action", ""),
                       note=request.POST.get("note", "")[:2000])
    except ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Recorded. " + ("You agreed with the original decision." if qa.agrees
                                                  else "You disagreed with the original decision."))
    return redirect("cases:qa")


@login_required
@require_GET
def qa_agreement(request):
    require_senior(request.user)
    reviewed = QAReview.objects.filter(reviewed_at__isnull=False)
    by_reviewer = (reviewed.values("decision__decided_by__username")
                   .annotate(n=Count("pk"), agreed=Count("pk", filter=Q(agrees=True))).order_by("-n"))
    by_rule = (reviewed.filter(decision__rule_version__isnull=False).values("decision__rule_version__rule__code")
               .annotate(n=Count("pk"), agreed=Count("pk", filter=Q(agrees=True))).order_by("-n"))
    by_queue = (reviewed.values("decision__case__queue__name")
                .annotate(n=Count("pk"), agreed=Count("pk", filter=Q(agrees=True))).order_by("-n"))
    rows = lambda qs, key: [{"name": r[key], "n": r["n"], "rate": round(100 * r["agreed"] / r["n"])} for r in qs]  # noqa: E731
    return render(request, "cases/qa_agreement.html", {
        "by_reviewer": rows(by_reviewer, "decision__decided_by__username"),
        "by_queue": rows(by_queue, "decision__case__queue__name"),
        "by_rule": rows(by_rule, "decision__rule_version__rule__code"),
        "sampled": QAReview.objects.count(), "reviewed": reviewed.count(),
    })
