"""Case-stage jobs: triage signals into cases, rules, reporters, bulk actions on clusters."""

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from cases.actions.clusters import carry_out_action, unfinished_actions
from cases.actions.reporters import refresh_reporter_standing
from cases.actions.rules import apply_rules
from cases.actions.triage import attach_signals
from cases.selectors import unreported_confirmations
from detection.models import Group, Signal, SignalKind
from reviewconsole.queueing import enqueue, enqueue_now, kick, kicked

log = logging.getLogger(__name__)


def triage_signals(signal_ids):
    """Idempotent: signals already triaged are skipped. Automation rules then run over the cases."""
    cases = [case.pk for case in attach_signals(signal_ids)]
    restale_groups_of_matched_members(signal_ids)
    if cases:
        apply_rules(cases)
    return cases


# Intake hands over its signals by a kick under this key; one run takes every signal waiting, at most this many.
TRIAGE_KICK = "triage-pending"
TRIAGE_PENDING_LIMIT = 1000
TRIAGE_PENDING_TIMEOUT = 600  # seconds: a thousand signals' cases and their rules, with room to spare


def triage_pending(limit=TRIAGE_PENDING_LIMIT):
    """Triage every signal still waiting, oldest first, in one run: while a run works, the signals of the
    next intake requests gather, so that the cases of many requests are opened and their rules decide
    them together (a rule's decisions are written in batches) instead of a few at a time.

    Should the run fail, its signals are handed on in smaller jobs, so that one bad signal cannot hold
    back the rest; the sweep is the net under both.
    """
    kicked(TRIAGE_KICK, queue="triage")
    ids = list(Signal.objects.filter(triaged_at__isnull=True).order_by("created_at", "pk")
               .values_list("pk", flat=True)[:limit])
    if not ids:
        return []
    try:
        cases = triage_signals(ids)
    except Exception:
        log.exception("triage of %d waiting signals failed; handing them on in smaller jobs", len(ids))
        for start in range(0, len(ids), 50):
            enqueue_now("cases.jobs.triage_signals", ids[start:start + 50], queue="triage")
        return []
    if len(ids) == limit:  # more are waiting
        kick(TRIAGE_KICK, "cases.jobs.triage_pending", queue="triage", job_timeout=TRIAGE_PENDING_TIMEOUT)
    return cases


def apply_rules_recent(minutes=15, settle_seconds=60):
    """The rules again over cases that got signals lately: triage runs them at once, but a triage job
    lost with its worker or a flushed Redis would otherwise leave a case the rules never saw. A rule
    version acts on a case once, so this repeats nothing."""
    now = timezone.now()
    case_ids = list(Signal.objects.filter(created_at__gte=now - timedelta(minutes=minutes),
                                          created_at__lt=now - timedelta(seconds=settle_seconds),
                                          case__isnull=False, case__closed_at__isnull=True)
                    .values_list("case_id", flat=True).distinct()[:50_000])
    for start in range(0, len(case_ids), 1000):
        apply_rules(case_ids[start:start + 1000])
    return len(case_ids)


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


def refresh_reporters():
    """Reporters' standing (decided, upheld, dismissed reports), recounted from their reports' cases."""
    return refresh_reporter_standing()


def carry_out_cluster_action(action_id):
    """An approved bulk action on a cluster: one decision per member, each in its own transaction."""
    return carry_out_action(action_id)


def finish_cluster_actions():
    """The net under bulk actions: an approved one whose job was lost with its worker or a flushed Redis
    is carried out again (members already decided are skipped)."""
    ids = unfinished_actions()
    for action_id in ids:
        enqueue("cases.jobs.carry_out_cluster_action", action_id)
    return len(ids)
