"""Match an item's hashes against the enabled banks.

Exact hashes (MD5, SHA-256) are looked up in the database by index. Perceptual hashes are held in
memory per worker in an exact Hamming index (detection.index) built once from the database and then
kept current incrementally: rows added since the last look (by id) are appended, bank settings
(enabled, thresholds, kind) are per-bank arrays applied at search time, and every hit is checked
against the database before it is returned, so a deleted row never matches. A look happens at most
every INDEX_CHECK_SECONDS, or at once after invalidate().
"""

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Count

from detection.detectors.index import HammingIndex, parse_hex, to_hex
from detection.models import Bank, BankHash, HashType

log = logging.getLogger(__name__)

INDEX_CHECK_SECONDS = 2.0
# How often the row count is compared with the database, which notices rows committed late with an
# id below the newest one seen (possible on PostgreSQL with concurrent imports) and bulk deletions.
INDEX_RECONCILE_SECONDS = 300.0
LOAD_PAGE = 50_000
INVALIDATE_RELOAD_ROWS = 100_000
# A cold start of a bank at least this large saves its rows under VAR_DIR for the next one: reading
# 10M rows back from .npy files takes seconds, reading them from the database minutes.
CACHE_MIN_ROWS = 1_000_000
PERCEPTUAL = (HashType.PDQ, HashType.PHASH, HashType.DHASH)
NBITS = {HashType.PDQ: 256, HashType.PHASH: 64, HashType.DHASH: 64}
THRESHOLD_FIELD = {HashType.PDQ: "pdq_threshold", HashType.PHASH: "phash_threshold",
                   HashType.DHASH: "dhash_threshold"}
UNTRANSFORMED = ("", "original")


@dataclass
class HashMatch:
    bank_id: int
    bank_hash_id: int
    hash_type: str
    value: str
    distance: int
    threshold: int
    transform: str = ""  # which orientation of the query image matched; "" for the image as it is


class _TypeRows:
    """One hash type's index with, per row, its BankHash id, bank id and bank threshold (-1: off)."""

    def __init__(self, hash_type):
        self.hash_type = hash_type
        default = Bank._meta.get_field(THRESHOLD_FIELD[hash_type]).default
        self.index = HammingIndex(NBITS[hash_type], design_radius=default)
        self.db_ids = np.zeros(0, dtype=np.int64)
        self.bank_ids = np.zeros(0, dtype=np.int32)
        self.limits = np.zeros(0, dtype=np.int16)
        self.limit_by_bank = np.full(1, -1, dtype=np.int16)
        self.radius = -1

    def __len__(self):
        return self.index.n

    def reserve(self, count):
        # Some slack: hashes added soon after a cold start must not copy every row again.
        self.index.reserve(len(self) + count + count // 32 + 1024)

    def add(self, db_ids, bank_ids, vectors, merge=True):
        rows = self.index.add(vectors, merge=merge)
        size = self.index.capacity
        if size > len(self.db_ids):
            self.db_ids = _grown(self.db_ids, size)
            self.bank_ids = _grown(self.bank_ids, size)
            self.limits = _grown(self.limits, size)
        self.db_ids[rows] = db_ids
        self.bank_ids[rows] = bank_ids
        self.limits[rows] = self._limit_for(bank_ids)
        return rows

    def set_banks(self, banks):
        """Thresholds per bank from the current Bank rows: no rows are reloaded."""
        top = max(banks, default=0)
        self.limit_by_bank = np.full(top + 1, -1, dtype=np.int16)
        for pk, bank in banks.items():
            if bank.enabled:
                self.limit_by_bank[pk] = bank.threshold_for(self.hash_type)
        self.radius = int(self.limit_by_bank.max())
        self.limits[:len(self)] = self._limit_for(self.bank_ids[:len(self)])

    def _limit_for(self, bank_ids):
        bank_ids = np.asarray(bank_ids, dtype=np.int64)
        known = bank_ids < len(self.limit_by_bank)
        return np.where(known, self.limit_by_bank[np.where(known, bank_ids, 0)], -1)

    def search(self, vectors):
        """(query index, row, distance) of every hit within its bank's threshold."""
        if self.radius < 0 or not len(self) or not len(vectors):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return self.index.search(vectors, self.radius, row_limit=self.limits)

    def nbytes(self):
        return self.index.nbytes() + self.db_ids.nbytes + self.bank_ids.nbytes + self.limits.nbytes


def _grown(array, size):
    grown = np.zeros(size, dtype=array.dtype)
    grown[:len(array)] = array
    return grown


class BankIndex:
    def __init__(self):
        self.stamp = None  # None: nothing loaded yet (or invalidated); else (last id, bank stamp)
        self.checked_at = 0.0
        self.reconciled_at = 0.0
        self.last_id = 0
        self.skipped = 0
        self.types = {}
        self.banks = {}  # enabled banks by pk
        self.all_banks = {}
        self._bank_stamp = None

    def refresh(self, force=False):
        now = time.monotonic()
        if not force and self.stamp is not None and now - self.checked_at < INDEX_CHECK_SECONDS:
            return
        self.checked_at = now
        cold = force or not self.types or self._needs_reload(now)
        if cold:
            self._reset()
        self._load_banks()
        cached = self._load_cache() if cold else 0
        self._load_rows()
        if cold and self.size() >= CACHE_MIN_ROWS and self.size() - cached > cached // 10:
            self._save_cache()
        self.stamp = (self.last_id, self._bank_stamp)

    def _cache_dir(self):
        db = connection.settings_dict
        key = hashlib.sha1(f"{connection.vendor}:{db.get('HOST')}:{db.get('PORT')}:{db['NAME']}".encode()).hexdigest()
        return Path(settings.VAR_DIR) / "bank-index" / key[:16]

    def _load_cache(self):
        """Rows saved by an earlier cold start, if the database still holds exactly them: their count."""
        folder = self._cache_dir()
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if BankHash.objects.filter(hash_type__in=PERCEPTUAL, id__lte=meta["last_id"]).count() != meta["rows"]:
                return 0
            # Mapped, not read: the rows are copied once, into the index's own arrays.
            arrays = {t: [np.load(folder / f"{t}.{name}.npy", mmap_mode="r")
                          for name in ("words", "db_ids", "bank_ids")] for t in PERCEPTUAL}
        except (OSError, ValueError, KeyError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("bank index: cache in %s not used: %s", folder, exc)
            return 0
        for hash_type, (words, db_ids, bank_ids) in arrays.items():
            rows = self.types[hash_type]
            rows.reserve(len(words))
            rows.add(db_ids, bank_ids, words.view(np.uint8).reshape(len(words), NBITS[hash_type] // 8), merge=False)
        self.last_id = meta["last_id"]
        self.skipped = meta.get("skipped", 0)
        log.info("bank index: %s rows from the cache in %s", meta["rows"], folder)
        return meta["rows"]

    def _save_cache(self):
        """Save the rows for the next cold start (written aside, then swapped in whole)."""
        folder = self._cache_dir()
        staging = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
        try:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            total = self.skipped
            for hash_type, rows in self.types.items():
                alive = rows.index.alive
                total += int(alive.sum())
                np.save(staging / f"{hash_type}.words.npy", rows.index.words_at(np.nonzero(alive)[0]))
                np.save(staging / f"{hash_type}.db_ids.npy", rows.db_ids[:len(rows)][alive])
                np.save(staging / f"{hash_type}.bank_ids.npy", rows.bank_ids[:len(rows)][alive])
            (staging / "meta.json").write_text(json.dumps({"last_id": self.last_id, "rows": total,
                                                           "skipped": self.skipped}))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
        except OSError as exc:
            log.warning("bank index: could not save the cache: %s", exc)
            shutil.rmtree(staging, ignore_errors=True)

    def _reset(self):
        self.types = {t: _TypeRows(t) for t in PERCEPTUAL}
        self.last_id = 0
        self.skipped = 0  # malformed rows: counted so that the count check still agrees
        self._bank_stamp = None
        self.reconciled_at = time.monotonic()

    def _needs_reload(self, now):
        """Rows the incremental load cannot see: ids reused below the last one seen, or late commits."""
        if self.stamp is not None and now - self.reconciled_at < INDEX_RECONCILE_SECONDS:
            return False
        self.reconciled_at = now
        agg = BankHash.objects.filter(hash_type__in=PERCEPTUAL, id__lte=self.last_id).aggregate(count=Count("id"))
        loaded = sum(int(t.index.alive.sum()) for t in self.types.values()) + self.skipped
        if agg["count"] != loaded:
            log.info("bank index: %s rows in the database, %s loaded: reloading", agg["count"], loaded)
            return True
        return False

    def _load_banks(self):
        """Banks are few: read them all on every look, and re-derive the per-row limits if any changed."""
        self.all_banks = Bank.objects.in_bulk()
        self.banks = {pk: bank for pk, bank in self.all_banks.items() if bank.enabled}
        stamp = sorted((pk, b.enabled, b.pdq_threshold, b.phash_threshold, b.dhash_threshold)
                       for pk, b in self.all_banks.items())
        if stamp != self._bank_stamp:
            for rows in self.types.values():
                rows.set_banks(self.all_banks)
            self._bank_stamp = stamp

    def _load_rows(self):
        """Stream rows with id > last seen into the arrays, a page at a time: no list of all rows."""
        if self.last_id == 0:
            # A cold start: size the arrays once instead of growing them page by page.
            counts = BankHash.objects.filter(hash_type__in=PERCEPTUAL).values_list("hash_type").annotate(
                n=Count("id")).order_by()
            for hash_type, count in counts:
                self.types[hash_type].reserve(count)
        while True:
            # Only the id range in SQL: a hash_type condition tempts SQLite into the (hash_type, value)
            # index and a sort of every remaining row for each page. Exact hashes are skipped here.
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT id, bank_id, hash_type, value FROM {BankHash._meta.db_table} "
                               "WHERE id > %s ORDER BY id LIMIT %s", [self.last_id, LOAD_PAGE])
                page = cursor.fetchall()
            if page:
                self._add_page(page)
                self.last_id = page[-1][0]
            if len(page) < LOAD_PAGE:
                break
        for rows in self.types.values():
            rows.index.maintain()  # once, not per page: a cold start builds the tables once

    def _add_page(self, page):
        ids, bank_ids, types, values = zip(*page, strict=True)
        ids = np.array(ids, dtype=np.int64)
        bank_ids = np.array(bank_ids, dtype=np.int64)
        # Pages are usually of one hash type (a bank imports one type at a time).
        kinds = np.full(len(types), types[0]) if types.count(types[0]) == len(types) else np.array(types)
        for hash_type, rows in self.types.items():
            sel = np.nonzero(kinds == hash_type)[0]
            if not len(sel):
                continue
            chosen = values if len(sel) == len(values) else [values[i] for i in sel.tolist()]
            good, vectors = _parse_rows(chosen, NBITS[hash_type])
            self.skipped += len(sel) - len(good)
            sel = sel[good]
            rows.add(ids[sel], bank_ids[sel], vectors, merge=False)

    def match_many(self, hash_type, queries):
        """queries: [(query number, transform, hex)]. Returns {query number: {row: (distance, transform)}}."""
        rows = self.types.get(hash_type)
        if rows is None or not queries:
            return {}
        vectors = parse_hex([value for _, _, value in queries], NBITS[hash_type])
        qidx, hits, dist = rows.search(vectors)
        found = {}
        for q, row, d in zip(qidx.tolist(), hits.tolist(), dist.tolist(), strict=True):
            number, transform, _ = queries[q]
            best = found.setdefault(number, {})
            # The smallest distance wins; on a tie the image as it is beats a rotation or mirror.
            if row not in best or (d, transform != "") < (best[row][0], best[row][1] != ""):
                best[row] = (d, transform)
        return found

    def matches_for(self, hash_type, found):
        """HashMatch objects for {query number: {row: (distance, transform)}} after checking the rows."""
        rows = self.types[hash_type]
        all_rows = sorted({row for per in found.values() for row in per})
        if not all_rows:
            return {}
        values = dict(zip(all_rows, to_hex(rows.index.vectors(all_rows)), strict=True))
        live = self._still_in_database(rows, all_rows, values)
        result = {}
        for number, per in found.items():
            result[number] = [
                HashMatch(bank_id=int(rows.bank_ids[row]), bank_hash_id=int(rows.db_ids[row]), hash_type=hash_type,
                          value=values[row], distance=d, threshold=int(rows.limits[row]), transform=transform)
                for row, (d, transform) in sorted(per.items()) if row in live
            ]
        return result

    def _still_in_database(self, rows, candidates, values):
        """The rows whose BankHash still exists unchanged; the others are masked out of the index."""
        by_id = {int(rows.db_ids[row]): row for row in candidates}
        current = {}
        ids = list(by_id)
        for start in range(0, len(ids), 5000):
            current.update((pk, (bank_id, value)) for pk, bank_id, value in BankHash.objects.filter(
                pk__in=ids[start:start + 5000]).values_list("pk", "bank_id", "value"))
        live = set()
        for pk, row in by_id.items():
            if current.get(pk) == (int(rows.bank_ids[row]), values[row]):
                live.add(row)
                continue
            rows.index.remove([row])
            if pk in current:  # edited in place: index the row as it is now
                bank_id, value = current[pk]
                good, vectors = _parse_rows([value], NBITS[rows.hash_type])
                if good:
                    rows.add(np.array([pk]), np.array([bank_id]), vectors)
        return live

    def match_perceptual(self, hash_type, value, transform=""):
        if not value:
            return []
        found = self.match_many(hash_type, [(0, transform, value)])
        return self.matches_for(hash_type, found).get(0, [])

    def nbytes(self):
        return sum(rows.nbytes() for rows in self.types.values())

    def size(self):
        return sum(len(rows) for rows in self.types.values())


def _parse_rows(values, nbits):
    """Vectors of the well-formed values (and their positions): one bad row must not stop the rest."""
    try:
        return list(range(len(values))), parse_hex(values, nbits)
    except ValueError:
        good, vectors = [], []
        for i, value in enumerate(values):
            try:
                vectors.append(parse_hex([value], nbits))
                good.append(i)
            except ValueError:
                log.warning("bank index: skipping malformed %s-bit hash %r", nbits, str(value)[:80])
        return good, (np.concatenate(vectors) if vectors else np.zeros((0, nbits // 8), dtype=np.uint8))


_index = BankIndex()


def invalidate():
    """Look at the database on the next match instead of within INDEX_CHECK_SECONDS.

    A small index is rebuilt from scratch (cheap, and immune to ids reused after a rollback); a large
    one is brought up to date incrementally, with its row count checked against the database.
    """
    if _index.size() < INVALIDATE_RELOAD_ROWS:
        _index.types = {}
    _index.checked_at = float("-inf")
    _index.reconciled_at = float("-inf")


def match_exact(pairs, bank_ids):
    """Exact MD5/SHA-256 matches for many (md5, sha256) pairs in one query: {value: [HashMatch]}."""
    found = {}
    values = {v for pair in pairs for v in pair if v}
    if not bank_ids or not values:
        return found
    rows = BankHash.objects.filter(
        hash_type__in=[HashType.MD5, HashType.SHA256], value__in=values, bank_id__in=bank_ids
    ).values_list("id", "bank_id", "hash_type", "value")
    for i, b, t, v in rows:
        if (t == HashType.MD5) == (len(v) == 32):
            found.setdefault(v, []).append(HashMatch(bank_id=b, bank_hash_id=i, hash_type=t, value=v,
                                                     distance=0, threshold=0))
    return found


def _perceptual_queries(queries):
    """{hash type: [(query number, transform, hex)]}: every orientation of a PDQ in one batch."""
    batches = {t: [] for t in PERCEPTUAL}
    for number, q in enumerate(queries):
        if q.get("pdq_usable"):
            seen = set()
            for name, value in [("", q.get("pdq"))] + list(q.get("pdq_variants") or ()):
                if value and value not in seen:
                    seen.add(value)
                    batches[HashType.PDQ].append((number, "" if name in UNTRANSFORMED else name, value))
        for hash_type in (HashType.PHASH, HashType.DHASH):
            if q.get(hash_type):
                batches[hash_type].append((number, "", q[hash_type]))
    return batches


def find_matches_many(queries):
    """For each query dict (md5, sha256, pdq, pdq_usable, phash, dhash, optional pdq_variants of
    (transform, hex)): (matches, {bank_id: Bank}). Empty strings mean "no such hash".

    A malformed perceptual hash raises ValueError: callers pass hashes they computed themselves.
    """
    _index.refresh()
    batches = _perceptual_queries(queries)
    perceptual = {t: _index.matches_for(t, _index.match_many(t, batch)) for t, batch in batches.items()}
    exact = match_exact([(q.get("md5", ""), q.get("sha256", "")) for q in queries], list(_index.banks))
    results = []
    for number, q in enumerate(queries):
        matches = exact.get(q.get("md5"), []) + exact.get(q.get("sha256"), [])
        for hash_type in PERCEPTUAL:
            matches += perceptual[hash_type].get(number, [])
        bank_ids = {m.bank_id for m in matches}
        banks = {pk: bank for pk, bank in _index.banks.items() if pk in bank_ids}
        missing = bank_ids - set(banks)
        if missing:
            banks.update(Bank.objects.in_bulk(missing))
        results.append((matches, banks))
    return results
