"""Claims kept alive while their worker lives: a heartbeat renews a batch's lease as it works.

A job claims rows by stamping them with its token and the time; another job may take a row whose
stamp is older than the lease. Renewing the stamp while the batch runs lets the lease be short (a
dead worker's rows are free again a lease after its last heartbeat) however long one file takes: the lease no longer
has to outlast a batch, only the gap between two heartbeats.
"""

import logging
import threading
from contextlib import contextmanager, suppress

from django.db import connections
from django.utils import timezone

log = logging.getLogger(__name__)
BEATS_PER_LEASE = 3  # two heartbeats can fail (a database hiccup) before the lease lapses


@contextmanager
def renewed(rows, lease_seconds, field="scan_started_at"):
    """Renew the claim on `rows` every third of `lease_seconds` until the block ends.

    `rows` selects the rows this claim still holds, conditional on its token and on the work not
    being done, so a row another job took over after a lapse, or one already stored, is never
    renewed. The heartbeat runs in a thread of its own, with its own database connection, so that it
    keeps beating while one long file is decoded; it stops once nothing of the claim is left.
    """
    if lease_seconds <= 0:
        yield
        return
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(rows, field, lease_seconds / BEATS_PER_LEASE, stop),
                            name="lease-heartbeat", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()


def _beat(rows, field, every, stop):
    try:
        while not stop.wait(every):
            try:
                if not rows.all().update(**{field: timezone.now()}):
                    return  # every row is done, handed back or taken over: nothing left to keep
            except Exception as exc:
                # The claim simply lapses if this keeps failing; the next beat tries afresh.
                log.warning("could not renew a claim's lease (%s: %s); trying again in %.3g s",
                            type(exc).__name__, exc, every)
                with suppress(Exception):
                    connections[rows.db].close()  # a broken connection is opened afresh next time
    finally:
        connections.close_all()  # this thread's connections only
