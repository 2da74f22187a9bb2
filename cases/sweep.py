"""The sweep: re-enqueue every piece of pending work that waited too long.

The database says what is pending (items still `queued`, signals not triaged); Redis only carries
the hand-offs. After a worker died mid-job or Redis was flushed, this puts the work back. Its quick
part, `rescan_lapsed`, runs more often than the rest: the scan claims of a worker that died.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from cases import dispatch
from cases.cybertip import filing
from detection.jobs import classify
from detection.jobs.analysis import analyse_pending
from detection.jobs.retro import retro_pending
from detection.models import BankImport, ImportStatus, Item, ItemStatus, Signal
from reviewconsole.queueing import enqueue_now, kick, kicked

log = logging.getLogger(__name__)
TRIAGE_BATCH = 200
# Queued items the quick lapse check looks at, oldest first: more than every worker's batches hold.
LAPSED_WINDOW = 2000


def sweep(older_than=None, progress=None):
    """Returns counts of the pending work handed on again: {"items": n, "signals": n, "imports": n, ...}."""
    age = settings.SWEEP_AFTER_SECONDS if older_than is None else older_than
    cutoff = timezone.now() - timedelta(seconds=age)
    counts = {"items": 0, "signals": 0, "enforcements": 0, "reports": 0}
    # Items never claimed (or handed back) that waited too long, and items whose claim lapsed,
    # whatever their age: a live scan renews its claim, so a lapsed one means its worker died.
    stale_items = Item.objects.filter(status=ItemStatus.QUEUED).filter(
        Q(scan_started_at__isnull=True, enqueued_at__lte=cutoff) | _lapsed_scan()
    ).count()
    if stale_items:
        # Scan jobs claim their items from the database, so waking every slot is enough.
        for slot in range(settings.SCAN_SLOTS):
            kicked(f"scan:{slot}", queue="scan")  # a marker whose job was lost must not block this
            kick(f"scan:{slot}", "detection.jobs.scan.scan_pending", slot, queue="scan")
        counts["items"] = stale_items
        if progress:
            progress(stale_items)
    # Scanned images and videos still waiting for the classifiers (their jobs claim from the database).
    counts["classify"] = classify.stale_count(cutoff)
    if counts["classify"]:
        classify.wake_all()
    stale_signals = list(
        Signal.objects.filter(triaged_at__isnull=True, created_at__lte=cutoff).values_list("pk", flat=True)
    )
    for start in range(0, len(stale_signals), TRIAGE_BATCH):
        batch = stale_signals[start:start + TRIAGE_BATCH]
        if enqueue_now("cases.jobs.triage_signals", batch, queue="triage"):
            counts["signals"] += len(batch)
        if progress:
            progress(len(batch))
    due = dispatch.due_enforcements().filter(Q(next_attempt_at__isnull=False) | Q(created_at__lte=cutoff))
    for pk in due.values_list("pk", flat=True):
        if enqueue_now("cases.dispatch.dispatch_enforcement", pk, queue="dispatch"):
            counts["enforcements"] += 1
    due_reports = filing.due_reports().filter(Q(next_attempt_at__isnull=False) | Q(created_at__lte=cutoff))
    for pk in due_reports.values_list("pk", flat=True):
        if enqueue_now("cases.cybertip.filing.file_report", pk, queue="dispatch"):
            counts["reports"] += 1
    # Bank uploads still queued, or running past their lease (a dead worker); the job claims the row.
    lease_cutoff = timezone.now() - timedelta(seconds=settings.BANK_IMPORT_LEASE_SECONDS)
    counts["imports"] = 0
    stale_imports = BankImport.objects.filter(
        Q(status=ImportStatus.QUEUED, created_at__lte=cutoff)
        | Q(status=ImportStatus.RUNNING, started_at__lt=lease_cutoff)
    ).values_list("pk", flat=True)
    for pk in stale_imports:
        if enqueue_now("detection.banks.run_import", pk, queue="default"):
            counts["imports"] += 1
    # Subjects whose facts changed since their risk and text surfaces were last scored.
    counts["subjects"] = analyse_pending(cutoff)
    counts["retro"] = retro_pending(cutoff)  # new bank entries and actioned accounts' media to match
    if any(counts.values()):
        log.info("sweep re-enqueued %s", counts)
    return counts


def rescan_lapsed():
    """The quick check cron runs every LEASE_CHECK_SECONDS: wake the scan jobs when a queued item's
    claim has lapsed, so that a dead worker's items are scanned again within a lease and a check.

    Only the oldest queued items are looked at, by the partial index on queued items: scans claim
    oldest first, so held claims sit at the head of the queue, and the full sweep counts the rest.
    Returns whether the scans were woken.
    """
    head = Item.objects.filter(status=ItemStatus.QUEUED).order_by("enqueued_at").values("pk")[:LAPSED_WINDOW]
    if not Item.objects.filter(_lapsed_scan(), pk__in=head).exists():
        return False
    log.info("a scan claim lapsed (its worker died?): waking the scan jobs")
    for slot in range(settings.SCAN_SLOTS):
        kick(f"scan:{slot}", "detection.jobs.scan.scan_pending", slot, queue="scan")  # one already waiting will do
    return True


def _lapsed_scan():
    return Q(scan_started_at__lt=timezone.now() - timedelta(seconds=settings.SCAN_LEASE_SECONDS))


def pending_count(older_than):
    cutoff = timezone.now() - timedelta(seconds=older_than)
    return (Item.objects.filter(status=ItemStatus.QUEUED, enqueued_at__lte=cutoff).count()
            + Signal.objects.filter(triaged_at__isnull=True, created_at__lte=cutoff).count())


def sweep_job():
    return sweep()
