"""Benchmark: text-surface normalisation and matching, per field, with the default list and a large list.

Texts are synthetic bios (benign words with a few obfuscated list phrases mixed in); the large list is
generated phrases, standing in for a partner's list of thousands of entries. Pure functions, no database.
"""

import csv
import random
import statistics
import time
from pathlib import Path

from tqdm import tqdm

from detection.detectors.text import MAX_CHARS, Term, compile_terms, match_terms, normalise

DEFAULTS = Path(__file__).resolve().parents[3] / "detection" / "data" / "default_terms.csv"
WORDS = ("hiking coffee dogs music travel photos friends weekend football art games books sunny city "
         "love family cooking garden running cats movies beach summer studio design").split()
TRICKS = ["s3nd p1cs", "ѕеnd рісѕ", "s e n d  p i c s", "our little s\u200becret", "add me on sn4p", "im 14 yo"]


def _default_terms():
    with DEFAULTS.open(encoding="utf-8") as handle:
        return [Term(r["term"], r["category"], r["match"], float(r["weight"])) for r in csv.DictReader(handle)]


def _bio(rng, words):
    parts = [rng.choice(WORDS) for _ in range(words)]
    if rng.random() < 0.2:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(TRICKS))
    return " ".join(parts)


def _time(texts, terms, desc):
    timings, hits = [], 0
    for text in tqdm(texts, unit="text", desc=desc, leave=False):
        started = time.perf_counter()
        hits += bool(match_terms(text, terms))
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), max(timings), hits


def run(out, texts=500, large_terms=5000, **options):
    rng = random.Random(7)
    bios = [_bio(rng, rng.randint(5, 60)) for _ in range(texts)]
    defaults = compile_terms(_default_terms())
    started = time.perf_counter()
    large = compile_terms(_default_terms()) + compile_terms(
        Term(f"{rng.choice(WORDS)}x {rng.choice(WORDS)}y {n}", "other", "word", 0.1) for n in range(large_terms))
    compile_s = time.perf_counter() - started
    out(f"text: {len(defaults)} default terms; a list of {len(large)} terms compiles in {compile_s:.2f} s")
    for name, terms in (("default list", defaults), (f"{len(large)} terms", large)):
        median, worst, flagged = _time(bios, terms, name)
        out(f"text: {name}: median {median:.2f} ms, max {worst:.2f} ms per bio ({flagged}/{len(bios)} flagged)")
    big = "".join(_bio(rng, 200) + "\n" for _ in range(400))[:MAX_CHARS * 100]
    started = time.perf_counter()
    normalise(big)
    norm_ms = (time.perf_counter() - started) * 1000
    median, _, _ = _time([big] * 5, defaults, "1 MB text")
    out(f"text: {len(big) // 1000} kB text (matched up to {MAX_CHARS} chars): normalise {norm_ms:.1f} ms, "
        f"match with the default list {median:.1f} ms")
