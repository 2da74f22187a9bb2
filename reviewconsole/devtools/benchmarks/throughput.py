"""Benchmark: images per second through one worker, end to end, next to the bare decode+hash rate.

End to end is the real path: every image submitted through intake (as the API does), then one
real RQ worker of the configured class drains the scan and triage queues in burst mode: claim,
read the evidence file, hash, match against a bank, store signals, triage them into cases. The
bare rate is the same hashing (decode, trim, eight PDQ orientations, pHash, dHash) on bytes
already in memory, measured before and after the worker run and averaged.
"""

import os
import time
from io import StringIO

from django.conf import settings
from django.db.models import Max
from django.utils import timezone
from tqdm import tqdm

from cases.models import Case
from detection import intake, matching
from detection.banks import import_hashes
from detection.detectors.hashing import hash_image
from detection.models import Item, ItemStatus, Signal
from reviewconsole.devtools import synthetic

# Classification and the rest run on their own queues and are not part of the scan path measured.
QUEUES = ("triage", "scan")


def run(out, images=1000, size=(1024, 768), queues=QUEUES, profile=None):
    """`profile`: a file to write a cProfile of the worker run to, in processor time (steadier on a
    shared machine), or in wall-clock time if the name ends in ".wall"."""
    server = _private_redis()
    try:
        return _measure(out, images, size, queues, profile)
    finally:
        if server:
            server.stop()


def _measure(out, images, size, queues, profile):
    import django_rq

    out(f"generating {images} synthetic {size[0]}x{size[1]} JPEGs ...")
    data = [synthetic.encode(synthetic.make_image(10_000 + n, size=size), quality=85)
            for n in tqdm(range(images), unit="img")]
    _bank(data[::10])  # one image in ten is "known"
    bare_before = _bare_rate(data)

    first = (Item.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    signals_before, cases_before = Signal.objects.count(), Case.objects.count()
    for n, blob in enumerate(tqdm(data, unit="img", desc="submit")):
        intake.submit_file(blob, account_id=f"bench-{n % 50}", original_name=f"{n}.jpg")
    worker = django_rq.get_worker(*queues)
    started_at = timezone.now()
    start, cpu = time.perf_counter(), time.process_time()
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.perf_counter if profile.endswith(".wall") else time.process_time)
        profiler.runcall(worker.work, burst=True, logging_level="WARNING")
        profiler.dump_stats(profile)
    else:
        worker.work(burst=True, logging_level="WARNING")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    # The bare rate is taken before and after the worker run, so that drift in the machine's
    # speed (other load, frequency scaling) does not flatter or spoil the comparison.
    bare_after = _bare_rate(data)
    bare = (bare_before[0] + bare_after[0]) / 2
    bare_cpu = (bare_before[1] + bare_after[1]) / 2

    mine = Item.objects.filter(pk__gte=first)
    scanned = mine.filter(status=ItemStatus.SCANNED).count()
    # A burst worker also pays its own start and shutdown (RQ joins its pub/sub thread for up to a
    # second on the way out); a worker that keeps running does not. So the rate is taken to the
    # last commit of the work: the last item scanned or signal triaged.
    finished_at = max(t for t in (mine.aggregate(t=Max("scanned_at"))["t"],
                                  Signal.objects.filter(item__in=mine).aggregate(t=Max("triaged_at"))["t"],
                                  started_at) if t)
    working = (finished_at - started_at).total_seconds()
    end_to_end = scanned / working
    out(f"scan: bare decode+hash {bare:.1f} images/s on one core (before {bare_before[0]:.1f}, after "
        f"{bare_after[0]:.1f}); one {type(worker).__name__} end to end (queue -> hashes -> match -> signals "
        f"-> triage -> case) {end_to_end:.1f} images/s = {100 * end_to_end / bare:.0f}% of bare ({scanned} of "
        f"{len(data)} scanned, {Signal.objects.count() - signals_before} signals, "
        f"{Case.objects.count() - cases_before} new cases, {working:.1f} s to the last commit; "
        f"{scanned / elapsed:.1f} images/s = {100 * scanned / elapsed / bare:.0f}% counting the worker's own start "
        f"and shutdown, {elapsed:.1f} s)")
    # Processor time of this process alone is steadier on a busy machine, but leaves out Redis's.
    out(f"scan: processor time per image: bare {1000 * bare_cpu:.1f} ms, worker {1000 * cpu / max(scanned, 1):.1f} "
        f"ms = {100 * bare_cpu * scanned / cpu:.0f}% of bare")
    return {"bare": bare, "end_to_end": end_to_end, "scanned": scanned}


def _private_redis():
    """A Redis of our own, emptied, unless REDIS_URL names one (which is then left as it is)."""
    if os.environ.get("REDIS_URL"):
        return None
    import django_rq

    from reviewconsole.redis_server import PrivateRedis

    server = PrivateRedis(settings.PRIVATE_REDIS_SOCKET).start()
    django_rq.get_connection("default").flushdb()
    return server


def _bare_rate(data):
    """(images per second, processor seconds per image) of hashing alone."""
    start, cpu = time.perf_counter(), time.process_time()
    for blob in data:
        hash_image(blob, max_pixels=settings.IMAGE_MAX_PIXELS, max_frames=settings.IMAGE_MAX_FRAMES)
    return len(data) / (time.perf_counter() - start), (time.process_time() - cpu) / len(data)


def _bank(known):
    lines = [f"{hash_image(blob).pdq},pdq,bench-{n}" for n, blob in enumerate(known)]
    import_hashes("bench-known", StringIO("hash,type,label\n" + "\n".join(lines)), fmt="csv")
    matching.invalidate()
