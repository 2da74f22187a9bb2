"""Benchmark of perceptual-hash matching at bank scale: build, memory, lookups per second per core, recall.

Banks are synthetic: "random" hashes are uniform 256-bit strings; "clustered" ones mimic real banks,
where bits are correlated and near-duplicates (re-encodes, crops, frames of one video) crowd around
an original: centres are drawn from a low-rank latent model (sign of 24 latent factors mixed into
256 bits, so bits are correlated and biased: two unrelated rows differ in about 100 bits, not 128),
and every centre gets about 100 members, each with every bit flipped with probability d/256 for a d
drawn from 0..15 (so about d bits). "uniform-clusters" has the same clusters around uniformly random
centres, which separates the cost of clustering from that of skewed bits. Near-duplicate queries are
bank rows with exactly 0..31 bits flipped. Figures are CPU seconds of this process
(time.process_time), i.e. per core.
"""

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # effective only if numpy is not imported yet; CPU time is used anyway

import gc  # noqa: E402
import io  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from detection.detectors.index import HammingIndex, _brute  # noqa: E402

RADIUS = 31
BLOCK = 1 << 16
RECALL_SAMPLE = 100


def run(out, sizes=(1_000_000, 10_000_000), queries=2000, kinds=("random", "clustered", "uniform-clusters"),
        visibility_rows=100_000):
    out(f"PDQ matching, radius {RADIUS}, {queries} queries per figure; lookups/s are per core (CPU time)")
    for kind in kinds:
        for size in sizes:
            _bench_bank(out, kind, size, queries)
            gc.collect()
    if visibility_rows:
        _bench_visibility(out, visibility_rows)


def rss_mb():
    """Resident and peak memory of this process from /proc (MB)."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def _reset_peak():
    """Start the peak (VmHWM) over, so that it is this bank's; Linux only, best effort."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def random_bank(size, rng):
    return rng.integers(0, 256, (size, 32), dtype=np.uint8)


def clustered_bank(size, rng, skewed=True):
    centres_count = min(100_000, max(10, size // 100))
    if skewed:
        mixing = rng.normal(size=(24, 256))
        bias = rng.normal(scale=0.5, size=256)
        latent = rng.normal(size=(centres_count, 24))
        centres = np.packbits((latent @ mixing + bias * 3) > 0, axis=1)
    else:
        centres = random_bank(centres_count, rng)
    bits = np.empty((size, 32), dtype=np.uint8)
    bits[:centres_count] = centres
    for lo in tqdm(range(centres_count, size, BLOCK), desc="clustered bank", leave=False):
        hi = min(size, lo + BLOCK)
        owner = rng.integers(0, centres_count, hi - lo)
        flips = rng.integers(0, 16, hi - lo)
        noise = rng.random((hi - lo, 256)) < (flips / 256)[:, None]
        bits[lo:hi] = centres[owner] ^ np.packbits(noise, axis=1)
    return bits


BANKS = {"random": random_bank, "clustered": clustered_bank,
         "uniform-clusters": partial(clustered_bank, skewed=False)}


def near_queries(rows, rng):
    """Bank rows with 0..31 bits flipped: every one must be found."""
    unpacked = np.unpackbits(rows, axis=1)
    for i, d in enumerate(rng.integers(0, RADIUS + 1, len(rows))):
        unpacked[i, rng.choice(256, d, replace=False)] ^= 1
    return np.packbits(unpacked, axis=1)


def _bench_bank(out, kind, size, count):
    rng = np.random.default_rng(size + len(kind))
    bits = BANKS[kind](size, rng)
    gc.collect()
    before, _ = rss_mb()
    _reset_peak()
    index = HammingIndex(256, design_radius=RADIUS)
    wall, cpu = time.perf_counter(), time.process_time()
    # As a worker's cold start does: rows copied in page by page, then the tables built once (here
    # after the generated bank is freed, since a worker never holds a second copy of the rows).
    index.reserve(size + size // 32 + 1024)  # with the slack the bank index leaves for new hashes
    for lo in range(0, size, 1 << 20):
        index.add(bits[lo:lo + (1 << 20)], merge=False)
    del bits
    gc.collect()
    index.maintain()
    build_wall, build_cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss, peak = rss_mb()
    widths = index.tables.widths if index.tables is not None else []
    out(f"{kind} {size:>11,}: build {build_wall:.1f} s ({build_cpu:.1f} s CPU), chunks {widths}, "
        f"index arrays {index.nbytes() / 2**20:,.0f} MiB, RSS {rss:,.0f} MiB (bank alone {before:,.0f}, "
        f"peak while loading and building {peak:,.0f})")
    sets = {"near": near_queries(index.vectors(rng.integers(0, len(index), count)), rng),
            "random": rng.integers(0, 256, (count, 32), dtype=np.uint8)}
    search = partial(index.search, radius=RADIUS)
    for name, queries in sets.items():
        single, hits = _rate(search, queries, single=True)
        batched, _ = _rate(search, queries, single=False)
        # Brute force reads the whole bank a query: fewer of them at 100 M hashes (a sample, not a proof).
        recall, brute_rate = _recall(index, queries[:min(RECALL_SAMPLE, max(10, 10**9 // size))])
        out(f"  {name:>6} queries: {single:8,.0f} lookups/s single, {batched:8,.0f} batched; "
            f"{hits / len(queries):.1f} hits per query; recall {recall:.4f} on {RECALL_SAMPLE} vs brute force "
            f"({brute_rate:,.1f} lookups/s)")
    fresh = rng.integers(0, 256, (index.max_delta + 1, 32), dtype=np.uint8)
    start = time.process_time()
    index.add(fresh[:1])
    visible = len(index.search(fresh[:1], RADIUS)[0]) == 1
    one = time.process_time() - start
    start = time.process_time()
    index.add(fresh[1:])
    merged = time.process_time() - start
    out(f"  adding one hash: searchable at once ({visible}, {one * 1000:.1f} ms); merging "
        f"{index.max_delta:,} added hashes into the tables: {merged:.2f} s CPU, no rebuild "
        f"(tables built for {index.tables.built_rows:,} rows, now hold {index.tables.n:,})")
    del search, index, sets
    gc.collect()


def _rate(search, queries, single):
    hits = 0
    start = time.process_time()
    if single:
        for i in tqdm(range(len(queries)), desc="single lookups", leave=False, mininterval=1):
            hits += len(search(queries[i:i + 1])[0])
    else:
        hits = len(search(queries)[0])
    return len(queries) / max(time.process_time() - start, 1e-9), hits


def _recall(index, queries):
    start = time.process_time()
    words = index.words
    expected = set()
    for q in range(len(queries)):
        qi, rows, _ = _brute(words, queries[q:q + 1].view(np.uint64), RADIUS, 0, len(index))
        expected.update((q, r) for r in rows.tolist())
    rate = len(queries) / max(time.process_time() - start, 1e-9)
    qidx, rows, _ = index.search(queries, RADIUS)
    found = set(zip(qidx.tolist(), rows.tolist(), strict=True))
    recall = len(found & expected) / len(expected) if expected else 1.0
    if found - expected:
        recall = -1.0  # a false hit would be a bug just as a miss is
    return recall, rate


def _bench_visibility(out, rows):
    """Through BankIndex and real database rows: cold load rate, and how soon a new hash matches."""
    from detection import matching  # noqa: PLC0415
    from detection.banks import import_hashes  # noqa: PLC0415
    from detection.models import Bank, BankHash  # noqa: PLC0415

    rng = np.random.default_rng(7)
    name = "bench-visibility"
    Bank.objects.filter(name=name).delete()
    bank = Bank.objects.create(name=name, description="benchmark, deleted afterwards")
    try:
        values = [v.tobytes().hex() for v in random_bank(rows + 1, rng)]
        start = time.perf_counter()
        for lo in tqdm(range(0, rows, 20_000), desc="bank rows", leave=False):
            BankHash.objects.bulk_create([BankHash(bank=bank, hash_type="pdq", value=v)
                                          for v in values[lo:lo + 20_000]])
        insert = time.perf_counter() - start
        index = matching.BankIndex()
        start = time.perf_counter()
        index.refresh(force=True)
        load = time.perf_counter() - start
        rss, _ = rss_mb()
        loaded = index.size()
        out(f"bank index from the database: {rows:,} rows inserted in {insert:.1f} s; all {loaded:,} perceptual "
            f"rows loaded in {load:.2f} s ({loaded / load:,.0f} rows/s, tables included; 10M rows would take "
            f"~{10_000_000 / (loaded / load):.0f} s), "
            f"{index.nbytes() / 2**20:.0f} MiB of arrays")
        index._save_cache()
        start = time.perf_counter()
        matching.BankIndex().refresh(force=True)
        out(f"cold start from the snapshot (VAR_DIR, mapped): {time.perf_counter() - start:.2f} s "
            f"(the database is still counted by bank once to check it)")
        index._cache_dir().unlink(missing_ok=True)  # the link to the snapshot, then the snapshots
        shutil.rmtree(index._snapshot_store(), ignore_errors=True)
        # The worst case: the worker looked just before the hash was added.
        index.refresh(force=False)
        index.checked_at = time.monotonic()
        added = time.perf_counter()
        import_hashes(name, io.StringIO(values[rows]), fmt="txt", hash_type="pdq")
        added_done = time.perf_counter()
        polls = 0
        while not index.match_perceptual("pdq", values[rows]):
            # What a worker does between batches: refresh (a look at most every INDEX_CHECK_SECONDS).
            time.sleep(0.05)
            index.refresh()
            polls += 1
        seen = time.perf_counter()
        out(f"new hash visible after {seen - added_done:.2f} s at worst (import itself {added_done - added:.2f} s, "
            f"check interval {matching.INDEX_CHECK_SECONDS} s, {polls} polls); no rebuild: "
            f"{len(index.types['pdq'])} rows, {index.types['pdq'].index.delta_rows:,} of them outside the snapshot")
    finally:
        bank.delete()
