"""Automation rules for seniors: write, backtest, shadow, turn on, watch the breakers, roll back."""

from datetime import datetime, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cases import conditions
from cases.actions import ActionError
from cases.actions.rules import (
    _spec_of,
    backtest,
    backtested,
    current_version,
    resume_breaker,
    rollback_candidates,
    rollback_rule,
    save_rule,
)
from cases.models import Breaker, FiringOutcome, Policy, ReviewQueue, Rule, RuleEffect, RuleFiring, RuleMode
from cases.web.permissions import client_ip, require_rule_manager, require_second_factor

CONDITION_ROWS = 8
PREVIEW_ROWS = 100


@login_required
@require_GET
def rule_list(request):
    require_rule_manager(request.user)
    day = timezone.now() - timedelta(days=1)
    rules = list(Rule.objects.annotate(
        decided=Count("firings", filter=Q(firings__created_at__gte=day, firings__outcome=FiringOutcome.DECIDED)),
        shadow=Count("firings", filter=Q(firings__created_at__gte=day, firings__outcome=FiringOutcome.SHADOW)),
        held=Count("firings", filter=Q(firings__created_at__gte=day,
                                       firings__outcome__in=[FiringOutcome.HELD_BACK, FiringOutcome.BREAKER])),
    ))
    for rule in rules:
        rule.current = current_version(rule)
        rule.in_words = conditions.describe(rule.current.conditions) if rule.current else ""
    return render(request, "cases/rules/list.html", {
        "rules": rules, "breakers": Breaker.objects.filter(resumed_at__isnull=True),
        "recent_breakers": Breaker.objects.filter(resumed_at__isnull=False)[:10],
    })


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request, pk=None):
    require_rule_manager(request.user)
    rule = get_object_or_404(Rule, pk=pk) if pk else Rule()
    version = current_version(rule) if pk else None
    form = _form_from_version(rule, version)
    if request.method == "POST":
        if (redirect_to := require_second_factor(request)) is not None:
            return redirect_to
        form = _form_from_post(request.POST)
        rule.code, rule.title = form["code"], form["title"]
        rule.description = form["description"]
        for name in ("position", "qa_percent", "qa_percent_new", "new_days", "breaker_per_hour"):
            setattr(rule, name, form[name])
        try:
            save_rule(request.user, rule, conditions_list=form["conditions"], effect=form["effect"],
                      policy_code=form["policy"], queue_slug=form["queue"], priority=form["priority"],
                      mode=form["mode"], note=form["note"], ip=client_ip(request))
        except ActionError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Saved {rule.code} (version {rule.version}, {rule.get_mode_display().lower()}).")
            return redirect("cases:rule", rule.pk)
    return render(request, "cases/rules/edit.html", {
        "rule": rule, "form": form, "fields": list(conditions.FIELDS.values()), "ops": conditions.OPS,
        "policies": Policy.objects.filter(active=True), "queues": ReviewQueue.objects.all(),
        "effects": RuleEffect.choices, "modes": RuleMode.choices,
    })


def _form_from_version(rule, version):
    rows = [{**row, "value": ", ".join(map(conditions.show, row["value"])) if isinstance(row["value"], list)
             else conditions.show(row["value"])} for row in (version.conditions if version else [])]
    rows += [{"field": "", "op": "", "value": ""} for _ in range(CONDITION_ROWS - len(rows))]
    return {"code": rule.code, "title": rule.title, "description": rule.description, "position": rule.position,
            "qa_percent": rule.qa_percent, "qa_percent_new": rule.qa_percent_new, "new_days": rule.new_days,
            "breaker_per_hour": rule.breaker_per_hour, "mode": rule.mode,
            "effect": version.effect if version else RuleEffect.APPLY_POLICY,
            "policy": version.policy.code if version and version.policy_id else "",
            "queue": version.queue.slug if version and version.queue_id else "",
            "priority": version.priority if version else None, "note": "", "rows": rows}


def _number(post, name, default, upper):
    try:
        return max(0, min(upper, int(post.get(name, default))))
    except (TypeError, ValueError):
        return default


def _form_from_post(post):
    rows, chosen = [], []
    for i in range(CONDITION_ROWS):
        row = {"field": post.get(f"field-{i}", "")[:60], "op": post.get(f"op-{i}", "")[:8],
               "value": post.get(f"value-{i}", "")[:500]}
        rows.append(row)
        if row["field"]:
            chosen.append(row)
    priority = post.get("priority", "").strip()
    return {"code": post.get("code", "").strip()[:50], "title": post.get("title", "").strip()[:160],
            "description": post.get("description", "")[:4000], "position": _number(post, "position", 0, 1000),
            "qa_percent": _number(post, "qa_percent", 2, 100),
            "qa_percent_new": _number(post, "qa_percent_new", 20, 100),
            "new_days": _number(post, "new_days", 14, 365),
            "breaker_per_hour": _number(post, "breaker_per_hour", 0, 10**7),
            "mode": post.get("mode", ""), "effect": post.get("effect", ""), "policy": post.get("policy", ""),
            "queue": post.get("queue", ""), "priority": int(priority) if priority.isdigit() else None,
            "note": post.get("note", "")[:2000], "conditions": chosen,
            "rows": rows}


@login_required
@require_GET
def rule_detail(request, pk):
    require_rule_manager(request.user)
    rule = get_object_or_404(Rule, pk=pk)
    return render(request, "cases/rules/detail.html", _detail_context(request, rule))


def _detail_context(request, rule, **extra):
    version = current_version(rule)
    now = timezone.now()
    since, until = _window(request.GET, now)
    context = {
        "rule": rule, "version": version, "in_words": conditions.describe(version.conditions) if version else "",
        "versions": [(v, conditions.describe(v.conditions)) for v in rule.versions.select_related(
            "policy", "queue", "changed_by")[:20]],
        "firings": RuleFiring.objects.filter(rule=rule).select_related(
            "case", "case__account", "case__group", "rule_version", "decision")[:50],
        "backtested": bool(version) and backtested(rule, _spec_of(version)),
        "since": since, "until": until,
        "breakers": Breaker.objects.filter(scope="rule", object_id=rule.pk)[:10],
    }
    if "preview" in request.GET:
        candidates = rollback_candidates(rule, since, until)
        context["preview"] = {"count": candidates.count(), "rows": list(candidates[:PREVIEW_ROWS])}
    context.update(extra)
    return context


def _window(data, now):
    def parse(name, default):
        raw = data.get(name, "")
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            return default
        return timezone.make_aware(value) if timezone.is_naive(value) else value
    return parse("since", now - timedelta(days=1)), parse("until", now)


@login_required
@require_POST
def rule_backtest(request, pk):
    require_rule_manager(request.user)
    rule = get_object_or_404(Rule, pk=pk)
    version = current_version(rule)
    if version is None:
        messages.error(request, "Save the rule first.")
        return redirect("cases:rule", rule.pk)
    try:
        days = int(request.POST.get("days", "30"))
        result = backtest(request.user, rule, _spec_of(version), days=days, ip=client_ip(request))
    except (ValueError, ActionError) as exc:
        messages.error(request, str(exc) if isinstance(exc, ActionError) else "Give a number of days.")
        return redirect("cases:rule", rule.pk)
    return render(request, "cases/rules/detail.html", _detail_context(request, rule, result=result,
                                                                       backtested=True))


@login_required
@require_POST
def rule_rollback(request, pk):
    require_rule_manager(request.user)
    rule = get_object_or_404(Rule, pk=pk)
    since, until = _window(request.POST, timezone.now())
    back = f"{reverse('cases:rule', args=[rule.pk])}?since={since.isoformat()}&until={until.isoformat()}&preview=1"
    if (redirect_to := require_second_factor(request, back=back)) is not None:
        return redirect_to
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the box to confirm the rollback after reading the preview.")
        return redirect(back)
    try:
        totals = rollback_rule(request.user, rule, since, until, note=request.POST.get("note", "")[:2000],
                               ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect(back)
    messages.success(request, (
        f"Rolled back {totals.get('decisions', 0)} decisions: {totals.get('reversals_sent', 0)} reversals sent to "
        f"the platform, {totals.get('enforcements_cancelled', 0)} enforcements cancelled, "
        f"{totals.get('reports_cancelled', 0)} unfiled reports cancelled, {totals.get('reports_kept', 0)} filed "
        f"reports kept (a filed report is never retracted), {totals.get('reopened', 0)} cases reopened for review."))
    return redirect("cases:rule", rule.pk)


@login_required
@require_POST
def breaker_resume(request, pk):
    require_rule_manager(request.user)
    breaker = get_object_or_404(Breaker, pk=pk)
    if (redirect_to := require_second_factor(request, back=reverse("cases:rules"))) is not None:
        return redirect_to
    try:
        resume_breaker(request.user, breaker.pk, note=request.POST.get("note", "")[:2000], ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Resumed: automation over {breaker.label} acts again.")
    return redirect("cases:rules")
