"""The RQ worker class the console runs: in-process jobs with the heavy modules loaded once.

RQ's default worker forks a work horse per job, paying the fork and, unless modules are already
imported, the import of numpy, Pillow and pdqhash again for each job: several times slower than the
hashing itself. This worker runs jobs in its own process instead and keeps its database connection
between jobs. Crash isolation comes from outside: `runconsole` restarts a worker that dies, workers
can be started with `--max-jobs` to be recycled, a scan that keeps killing its worker is rejected
after SCAN_MAX_ATTEMPTS starts, and the database sweep re-enqueues whatever a dead worker held.
"""


import scipy.fftpack  # noqa: F401  imagehash.phash imports it on first use
from django.db import close_old_connections
from rq.worker import SimpleWorker

# Preload what every job needs, so the first job does not pay for the imports.
import cases.jobs  # noqa: F401
import detection.hashing  # noqa: F401
import detection.jobs  # noqa: F401


class ConsoleWorker(SimpleWorker):
    def perform_job(self, job, queue, execution):
        close_old_connections()  # drop a connection the database closed while we were idle
        try:
            return super().perform_job(job, queue, execution)
        finally:
            close_old_connections()
