"""Case-stage jobs: triage signals into cases."""

import logging

from django.db import transaction
from django.utils import timezone

from cases.actions.triage import attach_signals
from cases.selectors import unreported_confirmations
from detection.models import Group, Signal, SignalKind
from reviewconsole.queueing import enqueue

log = logging.getLogger(__name__)


def triage_signals(signal_ids):
    """Idempotent: signals already triaged are skipped."""
    cases = [case.pk for case in attach_signals(signal_ids)]
    restale_groups_of_matched_members(signal_ids)
    return cases


def restale_groups_of_matched_members(signal_ids):
    """A member's new match changes its groups' risk: mark them for analysis and hand them on.

    The groups' `updated_at` moves past `analysed_at`, so the sweep finds them if the job is lost.
    """
    accounts = Signal.objects.filter(pk__in=signal_ids, kind=SignalKind.HASH_MATCH, account__isnull=False)
    groups = list(Group.objects.filter(membership__account__in=accounts.values("account")).distinct()
                  .values_list("pk", flat=True))
    if not groups:
        return
    with transaction.atomic():
        Group.objects.filter(pk__in=groups).update(updated_at=timezone.now())
        for pk in groups:
            enqueue("detection.jobs.analysis.analyse_subject", "group", pk, queue="default")


def alert_unreported():
    """The "confirmed, not reported" alarm for operators: one error line per overdue decision."""
    rows = unreported_confirmations()
    for row in rows:
        log.error("confirmed, not reported: decision %s on case %s, %s h ago: %s",
                  row["decision"].pk, row["case"].pk, row["hours"], row["reason"])
    return len(rows)
