"""The RQ worker class the console runs: in-process jobs with the heavy modules loaded once.

RQ's default worker forks a work horse per job, paying the fork and, unless modules are already
imported, the import of numpy, Pillow and pdqhash again for each job: several times slower than the
hashing itself. This worker runs jobs in its own process instead and keeps its database connection
between jobs. Crash isolation comes from outside: `runconsole` restarts a worker that dies, workers
can be started with `--max-jobs` to be recycled, a scan that keeps killing its worker is rejected
after SCAN_MAX_ATTEMPTS starts, and the database re-drives whatever a dead worker held: a running
batch renews its claims from a heartbeat thread (detection.jobs.lease), so a dead worker's claims
lapse within SCAN_LEASE_SECONDS, and cron's lease check (every LEASE_CHECK_SECONDS) wakes the scans.
"""


import atexit
import cProfile
import io
import os
import time

import imagehash
import scipy.fftpack  # noqa: F401  imagehash.phash imports it on first use
from django.db import close_old_connections
from PIL import Image
from rq.worker import SimpleWorker

# Preload what every job needs, so the first job does not pay for the imports.
import cases.jobs  # noqa: F401
import detection.jobs.scan  # noqa: F401
from detection.detectors.hashing import open_image, pdq_dihedral, pdq_square


def _warm_up():
    """Decode and hash two tiny pictures: Pillow loads its format plugins, and the hash libraries
    set themselves up, on first use rather than on import."""
    for fmt in ("JPEG", "PNG"):
        out = io.BytesIO()
        Image.new("RGB", (64, 48), (90, 120, 150)).save(out, format=fmt)
        square = pdq_square(open_image(out.getvalue(), max_pixels=10_000, max_frames=1, grey=True)[0])
        pdq_dihedral(square)
        imagehash.phash(square), imagehash.dhash(square)


_warm_up()


class _JobProfile:
    """WORKER_PROFILE=<folder>: profile every job this worker runs (cProfile) and keep the sum in
    <folder>/worker-<pid>.prof, rewritten every few seconds and at exit. For benchmarks, never on in
    production: profiling slows the jobs down by a third or so."""

    def __init__(self, folder):
        self.path = os.path.join(folder, f"worker-{os.getpid()}.prof")
        self.profile, self.saved_at = cProfile.Profile(), time.monotonic()
        atexit.register(self.save)

    def save(self):
        self.profile.dump_stats(self.path)
        self.saved_at = time.monotonic()

    def run(self, call):
        self.profile.enable()
        try:
            return call()
        finally:
            self.profile.disable()
            if time.monotonic() - self.saved_at > 10:
                self.save()


_profile = _JobProfile(os.environ["WORKER_PROFILE"]) if os.environ.get("WORKER_PROFILE") else None


class ConsoleWorker(SimpleWorker):
    def perform_job(self, job, queue, execution):
        close_old_connections()  # drop a connection the database closed while we were idle
        try:
            if _profile:
                return _profile.run(lambda: super(ConsoleWorker, self).perform_job(job, queue, execution))
            return super().perform_job(job, queue, execution)
        finally:
            close_old_connections()
