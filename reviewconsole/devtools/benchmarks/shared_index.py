"""Benchmark of workers sharing one bank index: the memory of 1, 2 and 4 worker processes holding the same
PDQ index, mapped from one snapshot or each with its own copy, and lookups per second per core both ways.

Each worker is a separate Python process that loads the saved index (HammingIndex.load: mapped read-only,
or read into its own memory), touches every page of it, as a worker that has answered queries for a while
has, and holds it while this process reads its /proc/<pid>/smaps_rollup: Rss, Pss (each shared page
divided among the processes that map it) and Shared_Clean. A bare worker (Python and numpy, no index) is
measured the same way, as the baseline.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from django.conf import settings

from detection.detectors.index import HammingIndex
from reviewconsole.devtools.benchmarks.matching import RADIUS, _rate, near_queries

ROOT = Path(__file__).resolve().parents[3]
WORKER = """
import sys
import numpy as np
from detection.detectors.index import HammingIndex

mode = sys.argv[1]
if mode != "bare":
    index = HammingIndex.load(sys.argv[2], mmap_mode="r" if mode == "mapped" else None)
    arrays = [index._words.head, index._words.tail, index._alive, index._row_at, index._slot_of, index.tables.ids,
              *(a for a in (index.tables.offsets.fine, index.tables.offsets.coarse, index.tables.offsets.full)
                if a is not None)]
    for array in arrays:  # one byte a page: every page resident, as after a while of queries
        int(array.reshape(-1).view(np.uint8)[::4096].sum())
print("ready", flush=True)
sys.stdin.readline()
"""


def run(out, rows=2_000_000, workers=(1, 2, 4), queries=2000, modes=("mapped", "private")):
    folder = Path(settings.VAR_DIR) / "bench-shared-index"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        _build(out, folder, rows)
        bare = _measure(folder, "bare", 1)[0]
        out(f"a bare worker (Python and numpy, no index): Rss {bare['Rss']:,.0f} MiB, Pss {bare['Pss']:,.0f} MiB")
        for mode in modes:
            for count in workers:
                stats = _measure(folder, mode, count)
                pss = [s["Pss"] for s in stats]
                out(f"{mode:>7}, {count} worker{'s' if count > 1 else ' '}: Pss per worker {np.mean(pss):,.0f} MiB "
                    f"(total {sum(pss):,.0f}, index share {np.mean(pss) - bare['Pss']:,.0f}), "
                    f"Rss {np.mean([s['Rss'] for s in stats]):,.0f} MiB, "
                    f"Shared_Clean {np.mean([s['Shared_Clean'] for s in stats]):,.0f} MiB, "
                    f"private {np.mean([s['Private_Clean'] + s['Private_Dirty'] for s in stats]):,.0f} MiB")
        _lookups(out, folder, queries)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _build(out, folder, rows):
    rng = np.random.default_rng(rows)
    index = HammingIndex(256, design_radius=RADIUS)
    index.reserve(rows)
    for lo in range(0, rows, 1 << 20):
        index.add(rng.integers(0, 256, (min(1 << 20, rows - lo), 32), dtype=np.uint8), merge=False)
    start = time.perf_counter()
    index.maintain()
    built = time.perf_counter() - start
    start = time.perf_counter()
    index.save(folder)
    saved = time.perf_counter() - start
    size = sum(p.stat().st_size for p in folder.iterdir())
    out(f"PDQ index of {rows:,} random hashes: built in {built:.1f} s, saved in {saved:.1f} s "
        f"({size / 2**20:,.0f} MiB of files, fsynced)")


def _measure(folder, mode, count):
    """smaps_rollup figures (MiB) of `count` workers holding the index at the same time."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, mode, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env) for _ in range(count)]
    try:
        for proc in procs:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {mode} worker did not start")
        return [_smaps(proc.pid) for proc in procs]
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(timeout=60)


def _smaps(pid):
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                fields[name] = int(value.split()[0]) / 1024
    return fields


def _lookups(out, folder, count):
    """Single lookups per CPU second at radius 31, from the mapped files and from memory, pages warm."""
    rng = np.random.default_rng(3)
    for mode in ("mapped", "private"):
        start = time.perf_counter()
        index = HammingIndex.load(folder, mmap_mode="r" if mode == "mapped" else None)
        loaded = time.perf_counter() - start
        near = near_queries(index.vectors(rng.integers(0, len(index), count)), rng)
        random = rng.integers(0, 256, (count, 32), dtype=np.uint8)
        _rate(lambda q, index=index: index.search(q, RADIUS), near[:200], single=True)  # warm up
        rates = [_rate(lambda q, index=index: index.search(q, RADIUS), queries, single=True)[0]
                 for queries in (near, near, random, random)]
        out(f"{mode:>7}: loaded in {loaded:.2f} s; {max(rates[:2]):,.0f} lookups/s per core (near-duplicate "
            f"queries), {max(rates[2:]):,.0f} (random queries), radius {RADIUS}, single lookups, pages warm")
        del index
