"""Triage: untriaged signals into the open case of their subject, ranked and routed."""

from collections import defaultdict

from django.db import IntegrityError, transaction
from django.utils import timezone

from cases import routing
from cases.models import Case
from detection import hash_quality
from detection.models import Account, Signal, SignalKind
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
        opened_cases = []
        router = routing.Router()
        # Cases are locked in subject order and the bank entries' counts moved once, after them: two
        # triage jobs running at once then take their row locks in the same order and cannot deadlock.
        for (kind, subject_id), subject_signals in sorted(by_subject.items(), key=lambda pair: pair[0]):
            case, opened = _open_case_for(kind, subject_id, router)
            Signal.objects.filter(pk__in=[s.pk for s in subject_signals]).update(case=case, triaged_at=timezone.now())
            opened_cases.append((case, opened, subject_signals))
        # Every case's signals, and its account (whose age band says whether it may be a victim), read
        # once for the batch rather than per case.
        of_case = defaultdict(list)
        for signal in Signal.objects.filter(case__in=[case for case, _, _ in opened_cases]):
            of_case[signal.case_id].append(signal)
        accounts = Account.objects.in_bulk([case.account_id for case, _, _ in opened_cases if case.account_id])
        for case, opened, subject_signals in opened_cases:
            if case.account_id in accounts:
                case.account = accounts[case.account_id]
            _rerank(case, of_case[case.pk], router)
            audit(None, Event.CASE_OPENED if opened else Event.CASE_SIGNALS_ADDED, case=case,
                  details={"signals": [s.pk for s in subject_signals]})
        hash_quality.count_matches([s for s in signals if s.kind == SignalKind.HASH_MATCH])
        return [case for case, _, _ in opened_cases]


def _open_case_for(kind, subject_id, router=None):
    lookup = {f"{kind}_id": subject_id, "closed_at__isnull": True}
    # The case row is locked, not its queue's: every triage shares the few queue rows.
    case = Case.objects.select_for_update(of=("self",)).select_related("queue").filter(**lookup).first()
    if case:
        return case, False
    queue = (router or routing.Router()).queue(routing.USER_REPORTS)
    try:
        with transaction.atomic():
            return Case.objects.create(queue=queue, **{f"{kind}_id": subject_id}), True
    except IntegrityError:  # another triage opened it a moment ago
        return Case.objects.select_for_update().get(**lookup), False


def _rerank(case, signals=None, router=None):
    signals = list(case.signals.all()) if signals is None else signals
    router = router or routing.Router()
    case.base_priority = routing.priority(signals)
    case.priority = routing.aged(case.base_priority, case.created_at, timezone.now())
    if case.queue.slug != routing.ESCALATIONS:
        case.queue = router.route(signals)
    top = max(signals, key=lambda s: s.severity * s.score, default=None)
    case.summary = top.label[:255] if top else ""
    case.possible_minor_victim = routing.minor_victim_reason(case)[:255]
    if case.possible_minor_victim:
        # A child who may be harmed now goes before cases that rest on one report.
        case.base_priority = max(case.base_priority, routing.MINOR_VICTIM_PRIORITY)
        case.priority = max(case.priority, case.base_priority)
        case.summary = f"Possible child victim: {case.summary}"[:255]
    case.save(update_fields=["priority", "base_priority", "queue", "summary", "possible_minor_victim", "updated_at"])
