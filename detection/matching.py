"""Match an item's hashes against the enabled banks.

Exact hashes (MD5, SHA-256) are looked up in the database by index. Perceptual hashes are searched in
an exact Hamming index (detection.detectors.index): a snapshot mapped from files that every worker on a
host shares, plus the rows added since in each process, kept current incrementally: rows added since
the last look (by id) are appended, bank settings (enabled, thresholds, kind) are per-bank arrays
applied at search time, and every hit is checked against the database before it is returned, so a
deleted row never matches. A look happens at most every INDEX_CHECK_SECONDS, or at once after
invalidate(), which also tells every other process over Redis.
"""

import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import weakref
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Sum

from detection.detectors.index import HammingIndex, LayeredIndex, parse_hex, to_hex
from detection.models import Bank, BankHash, HashType

log = logging.getLogger(__name__)

INDEX_CHECK_SECONDS = 2.0
# How often the row count is compared with the database, which notices rows committed late with an
# id below the newest one seen (possible on PostgreSQL with concurrent imports) and bulk deletions.
INDEX_RECONCILE_SECONDS = 300.0
LOAD_PAGE = 50_000
INVALIDATE_RELOAD_ROWS = 100_000
# Banks of at least this many perceptual hashes are kept in a snapshot under VAR_DIR that the workers map
# (see BankIndex): mapping 10M rows takes a second, reading them from the database about a minute. A new
# snapshot is written once the rows added since pass SNAPSHOT_SHARE of it; one that differs from the
# database in more than SNAPSHOT_MAX_DRIFT of its rows is not used.
CACHE_MIN_ROWS = settings.BANK_INDEX_SNAPSHOT_MIN_ROWS
SNAPSHOT_SHARE = settings.BANK_INDEX_SNAPSHOT_SHARE
# A process without its index reads at most this many rows from the database in a request (see ready):
# more than that, workers have written a snapshot to map instead.
COLD_LOAD_ROWS = CACHE_MIN_ROWS
SNAPSHOT_MAX_DRIFT = 0.01
SNAPSHOT_RETRY_SECONDS = 60.0
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
    """One hash type's index with, per row, its BankHash id and bank id; bank thresholds apply at search time.

    The rows of a snapshot sit in a base mapped from its files (shared by every process on the host,
    see BankIndex); rows read from the database since sit in this process's delta, numbered after them.
    """

    def __init__(self, hash_type, base=None):
        self.hash_type = hash_type
        default = Bank._meta.get_field(THRESHOLD_FIELD[hash_type]).default
        index, self.base_db_ids, self.base_bank_ids = base or (None, np.zeros(0, np.int64), np.zeros(0, np.int32))
        self.index = LayeredIndex(NBITS[hash_type], base=index, design_radius=default)
        self._db_ids = np.zeros(0, dtype=np.int64)
        self._bank_ids = np.zeros(0, dtype=np.int32)
        self.limit_by_bank = np.full(1, -1, dtype=np.int16)
        self.radius = -1

    def __len__(self):
        return self.index.n

    @property
    def base_rows(self):
        return self.index.base_rows

    def reserve(self, count):
        # Some slack: hashes added soon after a cold start must not copy every row again.
        self.index.reserve(len(self) + count + count // 32 + 1024)

    def add(self, db_ids, bank_ids, vectors, merge=True):
        rows = self.index.add(vectors, merge=merge)
        size = self.index.delta.capacity
        if size > len(self._db_ids):
            self._db_ids = _grown(self._db_ids, size)
            self._bank_ids = _grown(self._bank_ids, size)
        self._db_ids[rows - self.base_rows] = db_ids
        self._bank_ids[rows - self.base_rows] = bank_ids
        return rows

    def db_ids_of(self, rows):
        return self._column(rows, self.base_db_ids, self._db_ids)

    def bank_ids_of(self, rows):
        return self._column(rows, self.base_bank_ids, self._bank_ids)

    def _column(self, rows, base, delta):
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty(len(rows), dtype=delta.dtype)
        low = rows < self.base_rows
        out[low] = base[rows[low]]
        out[~low] = delta[rows[~low] - self.base_rows]
        return out

    def set_banks(self, banks):
        """Thresholds per bank from the current Bank rows: no rows are reloaded."""
        top = max(banks, default=0)
        self.limit_by_bank = np.full(top + 1, -1, dtype=np.int16)
        for pk, bank in banks.items():
            if bank.enabled:
                self.limit_by_bank[pk] = bank.threshold_for(self.hash_type)
        self.radius = int(self.limit_by_bank.max())

    def limit_of(self, rows):
        """Each row's bank threshold (-1: its bank is off or unknown)."""
        bank_ids = self.bank_ids_of(rows).astype(np.int64)
        known = bank_ids < len(self.limit_by_bank)
        return np.where(known, self.limit_by_bank[np.where(known, bank_ids, 0)], -1)

    def search(self, vectors):
        """(query index, row, distance) of every hit within its bank's threshold."""
        if self.radius < 0 or not len(self) or not len(vectors):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        qidx, rows, dist = self.index.search(vectors, self.radius)
        keep = dist <= self.limit_of(rows)
        return qidx[keep], rows[keep], dist[keep]

    def snapshot(self):
        """(HammingIndex, db ids, bank ids) of every row, to save: this process's index itself when it has
        no base, else the live rows of base and delta in a new index, built here."""
        if self.index.base is None:
            return self.index.delta, self._db_ids[:len(self)], self._bank_ids[:len(self)]
        live = np.flatnonzero(self.index.alive)
        index = HammingIndex(self.index.nbits, design_radius=self.index.delta.design_radius)
        index.reserve(len(live))
        for lo in range(0, len(live), LOAD_PAGE * 20):
            index.add(self.index.vectors(live[lo:lo + LOAD_PAGE * 20]), merge=False)
        index.maintain()
        return index, self.db_ids_of(live), self.bank_ids_of(live)

    def nbytes(self):
        return (self.index.nbytes() + self._db_ids.nbytes + self._bank_ids.nbytes + self.base_db_ids.nbytes
                + self.base_bank_ids.nbytes)


def _grown(array, size):
    grown = np.zeros(size, dtype=array.dtype)
    grown[:len(array)] = array
    return grown


def database_key():
    """Which database the banks are in (a snapshot's folder and the announcement channel are per database)."""
    db = connection.settings_dict
    return hashlib.sha1(f"{connection.vendor}:{db.get('HOST')}:{db.get('PORT')}:{db['NAME']}".encode()).hexdigest()[:16]


class BankIndex:
    """The perceptual hashes of every bank, searchable, kept current from the database.

    Snapshots: a process that has read the rows (and no snapshot, or one that many rows have been added
    to since) writes them, index tables included, as .npy files into a folder of its own under
    VAR_DIR/bank-index-snapshots/, fsynced, renamed into place, then points the link VAR_DIR/bank-index/
    <database> at it. Every worker on the host maps the files the link points to read-only, so the page
    cache holds one copy for all of them, and moves to a newer snapshot at its next look. A start reads
    the snapshot and only what changed since: rows with a larger id, and for a bank whose count or id sum
    no longer agrees, the ids, to mask rows deleted and read rows committed late.
    """

    def __init__(self, *, listen=False):
        self.listen = listen  # marked stale by other processes' announcements (see announce)
        self.stale = False
        self.stamp = None  # None: nothing loaded yet (or invalidated); else (last id, bank stamp)
        self.checked_at = 0.0
        self.reconciled_at = 0.0
        self.saved_at = float("-inf")
        self.last_id = 0
        self.skipped = []  # malformed rows, as (id, bank id): counted so that the count checks still agree
        self.snapshot = None  # the name of the snapshot last looked at (used or not)
        self.types = {}
        self.banks = {}  # enabled banks by pk
        self.all_banks = {}
        self._bank_stamp = None

    def mark_stale(self):
        """Look at the database at the next match. Called from the subscriber thread: it only sets a flag."""
        self.stale = True

    def refresh(self, force=False, snapshot=True):
        """Bring the index up to date with the database (at most every INDEX_CHECK_SECONDS unless marked
        stale). `snapshot`: write a snapshot when one is due (a web request passes False: that is a worker's
        part, and would cost a request seconds)."""
        if self.listen and settings.BANK_INDEX_SYNC:
            listen(self)
        now = time.monotonic()
        if (not force and not self.stale and self.stamp is not None
                and now - self.checked_at < INDEX_CHECK_SECONDS):
            return
        self.stale = False  # before reading: an announcement that arrives meanwhile marks it again
        self.checked_at = now
        cold = force or not self.types or self._needs_reload(now) or self._snapshot_moved()
        if cold:
            self._reset()
        self._load_banks()
        if cold:
            self._load_cache()
        self._load_rows()
        if snapshot and self._snapshot_due(now):
            self._save_cache()
        self.stamp = (self.last_id, self._bank_stamp)

    # -- snapshots --------------------------------------------------------------------------------

    def _cache_dir(self):
        """The link to the current snapshot."""
        return Path(settings.VAR_DIR) / "bank-index" / database_key()

    def _snapshot_store(self):
        return Path(settings.VAR_DIR) / "bank-index-snapshots" / database_key()

    def _snapshot_moved(self):
        """Another process wrote a snapshot since this one looked."""
        try:
            return Path(os.readlink(self._cache_dir())).name != self.snapshot
        except OSError:
            return False

    def _snapshot_due(self, now):
        """Enough rows are held outside the mapped snapshot (all of them, at a first start) to write one."""
        mapped = sum(rows.base_rows for rows in self.types.values())
        fresh = self.size() - mapped
        return (self.size() >= CACHE_MIN_ROWS and fresh > 0 and fresh > mapped * SNAPSHOT_SHARE
                and now - self.saved_at >= SNAPSHOT_RETRY_SECONDS)

    def _load_cache(self):
        """Map the snapshot if it (still) agrees with the database, closely enough: the rows it held."""
        link = self._cache_dir()
        self.snapshot = _link_name(link)  # looked at, used or not: a bad one is not tried at every look
        try:
            folder = link.resolve(strict=True)  # one snapshot throughout, should the link move meanwhile
        except OSError:
            return 0
        self.snapshot = folder.name
        try:
            meta = json.loads((folder / "meta.json").read_text())
            changed = self._changed_banks(meta)
            if changed is None:
                log.info("bank index: snapshot %s differs too much from the database: not used", folder)
                return 0
            types = {}
            for hash_type in PERCEPTUAL:
                index = HammingIndex.load(folder, prefix=f"{hash_type}.")
                db_ids, bank_ids = (np.asarray(np.load(folder / f"{hash_type}.{name}.npy", mmap_mode="r",
                                                       allow_pickle=False)) for name in ("db_ids", "bank_ids"))
                if db_ids.shape != (len(index),) or bank_ids.shape != (len(index),):
                    raise ValueError(f"{hash_type}: the ids do not fit the index")
                types[hash_type] = _TypeRows(hash_type, base=(index, db_ids, bank_ids))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("bank index: snapshot %s not used: %s", folder, exc)
            return 0
        for rows in types.values():
            rows.set_banks(self.all_banks)
        self.types = types
        self.last_id = meta["last_id"]
        self.skipped = [tuple(pair) for pair in meta["skipped"]]
        if changed:
            self._reconcile(changed)
        log.info("bank index: %s rows mapped from the snapshot %s", meta["rows"], folder)
        return meta["rows"]

    def _bank_counts(self, last_id):
        """{bank id: (rows, sum of ids)} of the perceptual rows up to an id, in the database."""
        return {pk: (count, int(total)) for pk, count, total in BankHash.objects.filter(
            hash_type__in=PERCEPTUAL, id__lte=last_id).values_list("bank_id").annotate(
            count=Count("id"), total=Sum("id")).order_by().values_list("bank_id", "count", "total")}

    def _changed_banks(self, meta):
        """The banks whose rows changed since the snapshot (by count and id sum), or None when more than
        SNAPSHOT_MAX_DRIFT of its rows did: then reading everything again is the simpler way."""
        saved = {int(pk): tuple(value) for pk, value in meta["banks"].items()}
        current = self._bank_counts(meta["last_id"])
        changed = sorted(pk for pk in set(saved) | set(current) if saved.get(pk) != current.get(pk))
        drift = sum(abs(saved.get(pk, (0, 0))[0] - current.get(pk, (0, 0))[0]) or 1 for pk in changed)
        return None if drift > SNAPSHOT_MAX_DRIFT * meta["rows"] else changed

    def _reconcile(self, bank_ids):
        """Bring some banks' rows in line with the database by id: rows it no longer holds are masked out,
        rows it holds below the last id seen (committed late) are read."""
        for bank_id in bank_ids:
            in_db = self._ids_in_database(bank_id)
            held = [np.array([pk for pk, bank in self.skipped if bank == bank_id], dtype=np.int64)]
            for rows in self.types.values():
                mine = np.flatnonzero((rows.bank_ids_of(np.arange(len(rows))) == bank_id) & rows.index.alive)
                ids = rows.db_ids_of(mine)
                gone = ~np.isin(ids, in_db)
                rows.index.remove(mine[gone])
                held.append(ids[~gone])
            missing = np.setdiff1d(in_db, np.concatenate(held)).tolist()
            for start in range(0, len(missing), 5000):
                with connection.cursor() as cursor:
                    chunk = missing[start:start + 5000]
                    cursor.execute(f"SELECT id, bank_id, hash_type, value FROM {BankHash._meta.db_table} "
                                   f"WHERE id IN ({', '.join(['%s'] * len(chunk))}) ORDER BY id", chunk)
                    page = cursor.fetchall()
                if page:
                    self._add_page(page)
        for rows in self.types.values():
            rows.index.maintain()

    def _ids_in_database(self, bank_id):
        """The ids of a bank's perceptual rows up to the last id seen, sorted (read a page at a time)."""
        pages, after = [], 0
        while True:
            page = list(BankHash.objects.filter(bank_id=bank_id, hash_type__in=PERCEPTUAL, id__gt=after,
                                                id__lte=self.last_id).order_by("id").values_list("id", flat=True)
                        [:LOAD_PAGE])
            if page:
                pages.append(np.array(page, dtype=np.int64))
                after = page[-1]
            if len(page) < LOAD_PAGE:
                return np.concatenate(pages) if pages else np.zeros(0, dtype=np.int64)

    def _save_cache(self):
        """Write a snapshot of every row and point the link at it. One process at a time (a lock file);
        readers see the old snapshot or the new one, whole. Returns the folder, or None."""
        self.saved_at = time.monotonic()
        link, store = self._cache_dir(), self._snapshot_store()
        staging = None
        try:
            store.mkdir(parents=True, exist_ok=True)
            link.parent.mkdir(parents=True, exist_ok=True)
            with _exclusive(store / ".lock") as locked:
                if not locked:
                    return None  # another process is writing one: it is picked up at a later look
                current = _link_name(link)
                if current and current != self.snapshot and int(current.split("-")[0]) >= self.last_id:
                    return None  # a newer one than this process would write
                name = f"{self.last_id:012d}-{os.getpid()}-{time.time_ns() % 10**9:09d}"
                staging = store / f".{name}.tmp"
                staging.mkdir()
                self._write_snapshot(staging)
                os.rename(staging, store / name)
                staging = None
                _fsync_dir(store)
                pointer = link.with_name(f".{link.name}.{os.getpid()}.tmp")
                pointer.unlink(missing_ok=True)
                os.symlink(os.path.relpath(store / name, link.parent), pointer)
                if link.is_dir() and not link.is_symlink():
                    shutil.rmtree(link)  # the cache of an earlier version: a plain folder
                os.replace(pointer, link)
                _fsync_dir(link.parent)
                _prune(store, keep={name, current})
        except OSError as exc:
            log.warning("bank index: could not write a snapshot: %s", exc)
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            return None
        log.info("bank index: snapshot of %s rows written to %s", self.size(), store / name)
        return store / name

    def _write_snapshot(self, folder):
        banks = {}
        total = len(self.skipped)
        for pk, bank_id in self.skipped:
            count, ids = banks.get(bank_id, (0, 0))
            banks[bank_id] = (count + 1, ids + pk)
        for hash_type, rows in self.types.items():
            index, db_ids, bank_ids = rows.snapshot()
            index.save(folder, prefix=f"{hash_type}.")
            for name, array in (("db_ids", db_ids), ("bank_ids", bank_ids)):
                np.save(folder / f"{hash_type}.{name}.npy", np.ascontiguousarray(array))
                _fsync(folder / f"{hash_type}.{name}.npy")
            alive = index.alive
            live_banks, live_ids = bank_ids[alive].astype(np.int64), db_ids[alive]
            total += len(live_ids)
            for bank_id in np.unique(live_banks).tolist():
                ids = live_ids[live_banks == bank_id]
                count, id_sum = banks.get(bank_id, (0, 0))
                banks[bank_id] = (count + len(ids), id_sum + int(ids.sum()))
        (folder / "meta.json").write_text(json.dumps({
            "last_id": self.last_id, "rows": total, "skipped": self.skipped,
            "banks": {str(pk): list(value) for pk, value in banks.items()}}))
        _fsync(folder / "meta.json")
        _fsync_dir(folder)

    # -- reading the database ---------------------------------------------------------------------

    def _reset(self):
        self.stamp = None  # not loaded until the load completes: a failed one leaves the index cold (see ready)
        self.types = {t: _TypeRows(t) for t in PERCEPTUAL}
        self.last_id = 0
        self.skipped = []
        self.snapshot = None
        self._bank_stamp = None
        self.reconciled_at = time.monotonic()

    def _needs_reload(self, now):
        """Rows the incremental load cannot see: ids reused below the last one seen, or late commits."""
        if self.stamp is not None and now - self.reconciled_at < INDEX_RECONCILE_SECONDS:
            return False
        self.reconciled_at = now
        agg = BankHash.objects.filter(hash_type__in=PERCEPTUAL, id__lte=self.last_id).aggregate(count=Count("id"))
        loaded = sum(int(t.index.alive.sum()) for t in self.types.values()) + len(self.skipped)
        if agg["count"] != loaded:
            log.info("bank index: %s rows in the database, %s loaded: reloading", agg["count"], loaded)
            return True
        return False

    def _load_banks(self):
        """Banks are few: read them all on every look, and re-derive the thresholds if any changed."""
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
            if len(good) < len(sel):
                bad = np.setdiff1d(sel, sel[good])
                self.skipped += list(zip(ids[bad].tolist(), bank_ids[bad].tolist(), strict=True))
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
        about = {row: (bank_id, pk, limit) for row, bank_id, pk, limit in zip(
            all_rows, rows.bank_ids_of(all_rows).tolist(), rows.db_ids_of(all_rows).tolist(),
            rows.limit_of(all_rows).tolist(), strict=True)}
        live = self._still_in_database(rows, about, values)
        result = {}
        for number, per in found.items():
            result[number] = [
                HashMatch(bank_id=about[row][0], bank_hash_id=about[row][1], hash_type=hash_type, value=values[row],
                          distance=d, threshold=about[row][2], transform=transform)
                for row, (d, transform) in sorted(per.items()) if row in live
            ]
        return result

    def _still_in_database(self, rows, about, values):
        """The rows whose BankHash still exists unchanged; the others are masked out of the index.
        about: {row: (bank id, BankHash id, threshold)}."""
        by_id = {pk: row for row, (_, pk, _) in about.items()}
        current = {}
        ids = list(by_id)
        for start in range(0, len(ids), 5000):
            current.update((pk, (bank_id, value)) for pk, bank_id, value in BankHash.objects.filter(
                pk__in=ids[start:start + 5000]).values_list("pk", "bank_id", "value"))
        live = set()
        for pk, row in by_id.items():
            if current.get(pk) == (about[row][0], values[row]):
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


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path):
    _fsync(path)  # a folder's entries (a rename, a new file) are durable once the folder is synced


@contextmanager
def _exclusive(path):
    """Yields whether this process holds the lock on `path` (without waiting for it)."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _link_name(link):
    try:
        return Path(os.readlink(link)).name
    except OSError:
        return None


def _prune(store, keep):
    """Delete the snapshots but the newest ones (a process still mapping a deleted one keeps its pages
    until it moves on), and staging folders a writer left behind more than an hour ago."""
    for path in store.iterdir():
        if path.name in keep or not path.is_dir():
            continue
        if path.name.startswith(".") and time.time() - path.stat().st_mtime < 3600:
            continue
        shutil.rmtree(path, ignore_errors=True)


_index = BankIndex(listen=True)


def invalidate(*, announce=True):
    """Look at the database on the next match instead of within INDEX_CHECK_SECONDS, in this process and
    (announce) in every other one: announced over Redis once the current transaction commits.

    A small index is rebuilt from scratch (cheap, and immune to ids reused after a rollback); a large
    one is brought up to date incrementally, with its row count checked against the database.
    """
    if _index.size() < INVALIDATE_RELOAD_ROWS:
        _index.types = {}
    _index.checked_at = float("-inf")
    _index.reconciled_at = float("-inf")
    if announce and settings.BANK_INDEX_SYNC:
        # No database call here: the in_atomic_block flag is read without connecting.
        if connection.in_atomic_block:
            transaction.on_commit(announce_change)
        else:
            announce_change()


# -- telling every worker at once -----------------------------------------------------------------
#
# A bank change is announced on a Redis channel (one per database); a subscriber thread in each process
# marks its index stale, and the next match looks at the database. Redis pub/sub delivers at most once:
# a process that was disconnected misses what was said meanwhile, so the subscriber marks the index
# stale again on every (re)subscription, and the poll every INDEX_CHECK_SECONDS stays as the fallback.

SYNC_CHANNEL = "reviewconsole:bank-index:"
_publisher = None  # (pid, client)
_subscriber = None
_subscriber_lock = threading.Lock()


def _channel():
    return SYNC_CHANNEL + database_key()


def announce_change(reason="banks changed"):
    """Tell every process's bank index to look at the database now. False if Redis could not be told:
    the others then see the change at their next poll."""
    global _publisher  # noqa: PLW0603
    try:
        if _publisher is None or _publisher[0] != os.getpid():
            _publisher = (os.getpid(), redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1,
                                                            socket_timeout=1))
        _publisher[1].publish(_channel(), reason)
        return True
    except (redis.RedisError, OSError) as exc:
        log.warning("bank index: could not announce a bank change (workers see it within %s s): %s",
                    INDEX_CHECK_SECONDS, exc)
        return False


def listen(index):
    """Have `index` marked stale whenever a change is announced: starts this process's subscriber thread
    (once, and again after a fork) and returns it."""
    global _subscriber  # noqa: PLW0603
    subscriber = _subscriber
    if subscriber is not None and subscriber.running() and index in subscriber.listeners:
        return subscriber
    with _subscriber_lock:
        if _subscriber is None or not _subscriber.running():
            _subscriber = Subscriber(settings.REDIS_URL, _channel()).start()
        _subscriber.listeners.add(index)
        return _subscriber


class Subscriber:
    """A daemon thread subscribed to the bank channel, marking its listeners stale on every message and
    on every (re)subscription; it reconnects after an error with a growing pause (up to 5 s)."""

    def __init__(self, url, channel):
        self.url, self.channel = url, channel
        self.listeners = weakref.WeakSet()
        self.subscribed = threading.Event()
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bank-index-subscriber", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)

    def running(self):
        return self.pid == os.getpid() and self._thread.is_alive()

    def _notify(self):
        for index in list(self.listeners):
            index.mark_stale()

    def _run(self):
        pause, failing = 0.1, False
        while not self._stop.is_set():
            pubsub = None
            try:
                # The health check pings an idle connection, so a Redis that went away is noticed.
                client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5,
                                              health_check_interval=15)
                pubsub = client.pubsub()
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self.subscribed.set()
                        pause, failing = 0.1, False
                    if message["type"] in ("subscribe", "message"):
                        self._notify()
            except (redis.RedisError, OSError, ValueError) as exc:
                self.subscribed.clear()
                if not failing:
                    log.warning("bank index: lost the bank channel (%s); polling until it is back", exc)
                failing = True
                self._stop.wait(pause)
                pause = min(pause * 2, 5.0)
            finally:
                if pubsub is not None:
                    with suppress(Exception):
                        pubsub.close()


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


def ready():
    """Whether this process can match now without a long load: the rows its next look would read from the
    database are few. That is the rows past those it holds, or, cold (or with a newer snapshot written by a
    worker), past the snapshot it would map. Intake matches hash-only items in the request only then; after
    a large import, or in a process without a snapshot to map, the items are left to the scan workers."""
    if _index.stamp is not None and not _index._snapshot_moved():
        held = _index.last_id
    else:
        held = _snapshot_last_id()
    newest = BankHash.objects.aggregate(top=Max("pk"))["top"] or 0
    return newest - held < COLD_LOAD_ROWS


def _snapshot_last_id():
    """The last bank row id the current snapshot holds (0 without a readable one)."""
    try:
        folder = _index._cache_dir().resolve(strict=True)
        return int(json.loads((folder / "meta.json").read_text())["last_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def find_matches_many(queries, *, snapshot=True):
    """For each query dict (md5, sha256, pdq, pdq_usable, phash, dhash, optional pdq_variants of
    (transform, hex)): (matches, {bank_id: Bank}). Empty strings mean "no such hash".

    A malformed perceptual hash raises ValueError: callers pass hashes they computed themselves.
    `snapshot`: as BankIndex.refresh (False in a web request).
    """
    _index.refresh(snapshot=snapshot)
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
