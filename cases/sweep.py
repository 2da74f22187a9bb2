"""The sweep: re-enqueue every piece of pending work that waited too long.

The database says what is pending (items still `queued`, signals not triaged); Redis only carries
the hand-offs. After a worker died mid-job or Redis was flushed, this puts the work back.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from reviewconsole.queueing import enqueue_now

from .models import Item, ItemStatus, Signal

log = logging.getLogger(__name__)
TRIAGE_BATCH = 200


def sweep(older_than=None, progress=None):
    """Returns counts of what was re-enqueued: {"items": n, "signals": n}."""
    age = settings.SWEEP_AFTER_SECONDS if older_than is None else older_than
    cutoff = timezone.now() - timedelta(seconds=age)
    counts = {"items": 0, "signals": 0}
    stale_items = list(
        Item.objects.filter(status=ItemStatus.QUEUED, enqueued_at__lte=cutoff).values_list("pk", flat=True)
    )
    for pk in stale_items:
        # Stamp first: a sweep that runs again soon does not pile up copies of the same job.
        Item.objects.filter(pk=pk, status=ItemStatus.QUEUED).update(enqueued_at=timezone.now())
        if enqueue_now("detection.jobs.scan_item", pk, queue="scan"):
            counts["items"] += 1
        if progress:
            progress(1)
    stale_signals = list(
        Signal.objects.filter(triaged_at__isnull=True, created_at__lte=cutoff).values_list("pk", flat=True)
    )
    for start in range(0, len(stale_signals), TRIAGE_BATCH):
        batch = stale_signals[start:start + TRIAGE_BATCH]
        if enqueue_now("cases.jobs.triage_signals", batch, queue="triage"):
            counts["signals"] += len(batch)
        if progress:
            progress(len(batch))
    if any(counts.values()):
        log.info("sweep re-enqueued %s", counts)
    return counts


def pending_count(older_than):
    cutoff = timezone.now() - timedelta(seconds=older_than)
    return (Item.objects.filter(status=ItemStatus.QUEUED, enqueued_at__lte=cutoff).count()
            + Signal.objects.filter(triaged_at__isnull=True, created_at__lte=cutoff).count())


def sweep_job():
    return sweep()
