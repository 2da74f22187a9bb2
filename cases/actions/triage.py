"""Triage: untriaged signals into the open case of their subject, ranked and routed."""

from collections import defaultdict

from django.db import IntegrityError, transaction
from django.utils import timezone

from cases import routing
from cases.models import Case
from detection import hash_quality
from detection.models import Signal, SignalKind
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit


def attach_signals(signal_ids):
    """Put untriaged signals into the open case of their subject, opening one if needed."""
    with transaction.atomic():
        signals = list(
            Signal.objects.select_for_update().filter(pk__in=signal_ids, triaged_at__isnull=True).order_by("pk")
        )
        by_subject = defaultdict(list)
        for signal in signals:
            key = ("account", signal.account_id) if signal.account_id else ("group", signal.group_id)
            by_subject[key].append(signal)
        cases = []
        # Cases are locked in subject order and the bank entries' counts moved once, after them: two
        # triage jobs running at once then take their row locks in the same order and cannot deadlock.
        for (kind, subject_id), subject_signals in sorted(by_subject.items(), key=lambda pair: pair[0]):
            case, opened = _open_case_for(kind, subject_id)
            Signal.objects.filter(pk__in=[s.pk for s in subject_signals]).update(case=case, triaged_at=timezone.now())
            _rerank(case)
            audit(None, Event.CASE_OPENED if opened else Event.CASE_SIGNALS_ADDED, case=case,
                  details={"signals": [s.pk for s in subject_signals]})
            cases.append(case)
        hash_quality.count_matches([s for s in signals if s.kind == SignalKind.HASH_MATCH])
        return cases


def _open_case_for(kind, subject_id):
    lookup = {f"{kind}_id": subject_id, "closed_at__isnull": True}
    case = Case.objects.select_for_update().filter(**lookup).first()
    if case:
        return case, False
    queue = routing.get_queue(routing.USER_REPORTS)
    try:
        with transaction.atomic():
            return Case.objects.create(queue=queue, **{f"{kind}_id": subject_id}), True
    except IntegrityError:  # another triage opened it a moment ago
        return Case.objects.select_for_update().get(**lookup), False


def _rerank(case):
    signals = list(case.signals.all())
    case.base_priority = routing.priority(signals)
    case.priority = routing.aged(case.base_priority, case.created_at, timezone.now())
    if case.queue.slug != routing.ESCALATIONS:
        case.queue = routing.route_signals(signals)
    top = max(signals, key=lambda s: s.severity * s.score, default=None)
    case.summary = top.label[:255] if top else ""
    case.possible_minor_victim = routing.minor_victim_reason(case)[:255]
    if case.possible_minor_victim:
        # A child who may be harmed now goes before cases that rest on one report.
        case.base_priority = max(case.base_priority, routing.MINOR_VICTIM_PRIORITY)
        case.priority = max(case.priority, case.base_priority)
        case.summary = f"Possible child victim: {case.summary}"[:255]
    case.save(update_fields=["priority", "base_priority", "queue", "summary", "possible_minor_victim", "updated_at"])
