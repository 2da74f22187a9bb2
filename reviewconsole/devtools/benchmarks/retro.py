"""Benchmark of retroactive matching: new bank hashes against every orientation of every stored item.

The index (no database): `items` stored items with eight PDQ orientations each, random hashes, and
`queries` new bank hashes, each planted into one random orientation of its own random item at a
distance of 0..31 bits. Build time, memory, search time, recall of the planted pairs (every query),
and recall against brute force over every row (a sample of queries: brute force over 80 million rows
takes about a second a query). Figures are wall-clock seconds and processor seconds of this process.

End to end (the configured database, the job): `e2e_items` hash-only items written straight into
the item table (eight orientations each, some planted near the new hashes), `e2e_entries` hashes
imported into a bank through the importer (which records the request), then the retroactive job
timed from a warm index, with its signals checked against the planted items; the index's cold load
from the database and from its cache under VAR_DIR are timed too. Everything is removed afterwards.
"""

import gc
import io
import shutil
import time
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from detection import retro
from detection.banks import import_hashes
from detection.jobs.retro import retro_match
from detection.models import Account, Bank, Item, ItemStatus, RetroMatch, Signal
from reviewconsole.devtools.benchmarks.matching import _reset_peak, rss_mb

RADIUS = 31
ORIENTATIONS = 8
CHUNK_ROWS = 8_000_000
SEED = 20_261_202


def run(out, *, items=10_000_000, queries=10_000, sample=100, e2e_items=200_000, e2e_entries=1_000):
    if items:
        _bench_index(out, items, queries, sample)
        gc.collect()
    if e2e_items:
        _bench_job(out, e2e_items, e2e_entries)


def _flip(values, distances, rng):
    """Each row of `values` with exactly distances[i] of its 256 bits flipped."""
    bits = np.unpackbits(values, axis=1)
    for i, d in enumerate(distances.tolist()):
        bits[i, rng.choice(256, d, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def _plan(items, queries):
    rng = np.random.default_rng(SEED)
    bank = rng.integers(0, 256, (queries, 32), dtype=np.uint8)
    owners = rng.choice(items, queries, replace=False)
    rows = owners * ORIENTATIONS + rng.integers(0, ORIENTATIONS, queries)
    distances = rng.integers(0, RADIUS + 1, queries)
    planted = _flip(bank, distances, rng)
    order = np.argsort(rows)
    return bank, rows[order], planted[order], owners, distances


def _chunks(total_rows, plan):
    """(first row, rows) of the stored population, chunk by chunk, the same on every call."""
    _, rows, planted, _, _ = plan
    for first in range(0, total_rows, CHUNK_ROWS):
        count = min(CHUNK_ROWS, total_rows - first)
        # A stream of its own per chunk (numpy's seeding ignores trailing zeros, so no (SEED, 0)).
        chunk = np.random.default_rng((SEED, 7, first + 1)).integers(0, 256, (count, 32), dtype=np.uint8)
        lo, hi = np.searchsorted(rows, [first, first + count])
        chunk[rows[lo:hi] - first] = planted[lo:hi]
        yield first, chunk


def _bench_index(out, items, queries, sample):
    total = items * ORIENTATIONS
    out(f"retroactive matching: {items:,} stored items x {ORIENTATIONS} orientations = {total:,} PDQ rows, "
        f"{queries:,} new bank hashes, radius {RADIUS}")
    plan = _plan(items, queries)
    bank, _, _, owners, _ = plan
    _reset_peak()
    rss_before, _ = rss_mb()
    index = retro.StoredIndex(design_radius=RADIUS)
    index.reserve(total, bulk=True)
    wall, cpu = time.perf_counter(), time.process_time()
    for first, chunk in tqdm(_chunks(total, plan), total=-(-total // CHUNK_ROWS), desc="rows", leave=False):
        # Item ids from 1, eight rows each, as the index holds them.
        index.add(np.arange(first, first + len(chunk)) // ORIENTATIONS + 1, chunk, bulk=True)
    loaded = time.perf_counter() - wall
    index.maintain()
    build_wall, build_cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss, peak = rss_mb()
    out(f"  build: {build_wall:.0f} s wall, {build_cpu:.0f} s CPU (of which generating and copying the rows "
        f"{loaded:.0f} s); index {index.nbytes() / 2**20:,.0f} MiB ({index.nbytes() / total:.0f} bytes a row), "
        f"process {rss:,.0f} MiB (grew by {rss - rss_before:,.0f}), peak {peak:,.0f} MiB")

    wall, cpu = time.perf_counter(), time.process_time()
    qidx, found, _ = index.search(bank, RADIUS)
    search_wall, search_cpu = time.perf_counter() - wall, time.process_time() - cpu
    hits = set(zip(qidx.tolist(), found.tolist(), strict=True))
    planted = {(q, int(owners[q]) + 1) for q in range(queries)}
    out(f"  search: {queries:,} hashes in {search_wall:.1f} s wall, {search_cpu:.1f} s CPU "
        f"({queries / search_wall:,.0f} a second, one core); {len(hits):,} (hash, item) pairs found")
    out(f"  recall of the planted near-duplicates (0..{RADIUS} bits, random orientation): "
        f"{len(planted & hits) / len(planted):.4f} ({len(planted & hits):,} of {len(planted):,})")
    del index
    gc.collect()
    if sample:
        _brute_force(out, plan, total, sample, hits)


def _brute_force(out, plan, total, sample, hits):
    bank = plan[0]
    chosen = bank[:sample].view(np.uint64)
    expected = set()
    wall = time.perf_counter()
    for first, chunk in tqdm(_chunks(total, plan), total=-(-total // CHUNK_ROWS), desc="brute force", leave=False):
        words = chunk.view(np.uint64)
        for q in range(sample):
            dist = np.bitwise_count(words[:, 0] ^ chosen[q, 0]).astype(np.uint16)
            for k in range(1, 4):
                dist += np.bitwise_count(words[:, k] ^ chosen[q, k])
            rows = np.flatnonzero(dist <= RADIUS)
            expected.update((q, int(first + r) // ORIENTATIONS + 1) for r in rows.tolist())
    found = {pair for pair in hits if pair[0] < sample}
    recall = len(found & expected) / len(expected) if expected else 1.0
    out(f"  recall against brute force over all {total:,} rows, first {sample} hashes: {recall:.4f} "
        f"({len(found & expected)} of {len(expected)} pairs; {len(found - expected)} found that brute force did "
        f"not); brute force took {time.perf_counter() - wall:.0f} s")


# Through the database and the job ------------------------------------------------------------

PREFIX = "bench-retro"


def _bench_job(out, items, entries):
    out(f"retroactive job end to end: {items:,} stored items in the database, {entries:,} new bank entries")
    rng = np.random.default_rng(SEED + 1)
    _cleanup()
    settle, settings.RETRO_SETTLE_SECONDS = getattr(settings, "RETRO_SETTLE_SECONDS", None), 0
    try:
        new = rng.integers(0, 256, (entries, 32), dtype=np.uint8)
        planted_items = rng.choice(items, entries, replace=False)
        planted_rows = rng.integers(0, ORIENTATIONS, entries)
        planted = _flip(new, rng.integers(0, RADIUS + 1, entries), rng)
        wall = time.perf_counter()
        _insert_items(items, rng, dict(zip(planted_items.tolist(), zip(planted_rows.tolist(), planted, strict=True),
                                           strict=True)))
        out(f"  {items:,} items written in {time.perf_counter() - wall:.0f} s")
        names = [f"{PREFIX}-{n}" for n in planted_items.tolist()]
        expected = set()
        for lo in range(0, len(names), 5000):
            expected.update(Item.objects.filter(external_id__in=names[lo:lo + 5000]).values_list("pk", flat=True))

        retro.forget_index()
        wall, cpu = time.perf_counter(), time.process_time()
        index = retro.stored_index()
        index.refresh()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out(f"  index cold load from the database: {wall:.1f} s wall, {cpu:.1f} s CPU for {len(index):,} rows "
            f"({items / cpu:,.0f} items a second of CPU, tables and saving the cache included)")
        if len(index) >= retro.CACHE_MIN_ROWS:
            retro.forget_index()
            wall, cpu = time.perf_counter(), time.process_time()
            retro.stored_index().refresh()
            out(f"  cold start from the cache under VAR_DIR: {time.perf_counter() - wall:.1f} s wall, "
                f"{time.process_time() - cpu:.1f} s CPU")

        wall = time.perf_counter()
        import_hashes(PREFIX, io.StringIO("\n".join(bytes(v).hex() for v in new)), fmt="txt", hash_type="pdq")
        imported = time.perf_counter() - wall
        bank = Bank.objects.get(name=PREFIX)
        wall, cpu = time.perf_counter(), time.process_time()
        counts = retro_match(bank.pk)
        job_wall, job_cpu = time.perf_counter() - wall, time.process_time() - cpu
        got = set(Signal.objects.filter(dedupe_key__endswith=f":bank:{bank.pk}").values_list("item_id", flat=True))
        out(f"  import {imported:.1f} s; the job: {job_wall:.1f} s wall, {job_cpu:.1f} s CPU for {counts['entries']:,} "
            f"entries: {counts['candidates']:,} candidate items matched again as a scan would, "
            f"{counts['signals']:,} signals; planted items found {len(expected & got):,} of {len(expected):,}, "
            f"others {len(got - expected)}")
    finally:
        if settle is None:
            del settings.RETRO_SETTLE_SECONDS
        else:
            settings.RETRO_SETTLE_SECONDS = settle
        _cleanup()


def _insert_items(count, rng, planted):
    """Hash-only items written straight into the table: the intake's audit rows would make them
    impossible to remove again."""
    account, _ = Account.objects.get_or_create(external_id=f"{PREFIX}-account")
    # Scanned over the past weeks, ten seconds apart, as a stream of scans leaves them.
    start = timezone.now() - timedelta(seconds=10 * count)
    for lo in tqdm(range(0, count, 20_000), desc="items", leave=False):
        hi = min(count, lo + 20_000)
        vectors = rng.integers(0, 256, (hi - lo, ORIENTATIONS, 32), dtype=np.uint8)
        rows = []
        for n in range(lo, hi):
            if n in planted:
                k, value = planted[n]
                vectors[n - lo, k] = value
            blob = vectors[n - lo].tobytes()  # as pack_orientations stores them, in DIHEDRAL order
            rows.append(Item(account=account, hash_only=True, external_id=f"{PREFIX}-{n}", md5="", sha256="",
                             pdq=blob[:32].hex(), pdq_quality=90, status=ItemStatus.SCANNED,
                             scanned_at=start + timedelta(seconds=10 * n),
                             pdq_orientations=blob))
        with transaction.atomic():
            Item.objects.bulk_create(rows)


def _cleanup():
    Signal.objects.filter(account__external_id=f"{PREFIX}-account").delete()
    Item.objects.filter(account__external_id=f"{PREFIX}-account").delete()
    Account.objects.filter(external_id=f"{PREFIX}-account").delete()
    RetroMatch.objects.filter(bank__name=PREFIX).delete()
    Bank.objects.filter(name=PREFIX).delete()
    index = retro.stored_index()
    shutil.rmtree(index._cache_dir(), ignore_errors=True)
    retro.forget_index()
