"""Retroactive matching: the index of every stored item's PDQ hashes that new bank entries are searched
against, and the requests, committed with the entries, that say which entries still wait.

A bank entry says what a picture looks like in one orientation, and the other seven cannot be derived
from its 256 bits; the scan, though, kept every orientation of every item it hashed. So the index holds
each usable item's PDQ in each stored orientation (and each usable video or animation frame's), about
eight rows an item, and a new entry is one query. Rows are held in the exact multi-index Hamming
search of detection.detectors.index, in segments: the first built once from everything stored, later
items in a tail that is merged into as they come and sealed when large, so that taking in new items
never re-sorts the rows of ten million old ones. The worker that runs retroactive jobs owns the index;
it reads items scanned since its last look (by scan time, re-reading a window before it so that
late commits are not missed) and keeps large indexes on disk under VAR_DIR for its next start. A hit
is only a candidate: the job matches the item again as a scan would, from its row, before any signal.
"""

import hashlib
import json
import logging
import os
import shutil
import time
from collections import OrderedDict
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max, Value
from django.db.models.functions import Least
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from detection.detectors.index import HammingIndex
from detection.detectors.vpdq import usable_frames
from detection.models import BankHash, Item, ItemStatus, RetroMatch, SharedMediaRequest
from reviewconsole.queueing import enqueue, kick_after_commit

log = logging.getLogger(__name__)

# Items are read by scan time; a row committed up to this long after its scanned_at is still seen.
OVERLAP_SECONDS = 600
LOAD_PAGE = 20_000
# A tail segment past this many rows is sealed and a new one begun: merging into it then costs what
# merging into a bank of this size does, however many items are stored.
SEGMENT_ROWS = 16_000_000
# At least this many rows: saved under VAR_DIR at a cold start, so the next start reads files, not rows.
CACHE_MIN_ROWS = 1_000_000
# Below this many items the count of scanned items is checked at every look (a database that was
# emptied and filled again, as tests do, is then noticed at once); above, every RECONCILE_SECONDS.
SMALL_ITEMS = 50_000
RECONCILE_SECONDS = 300.0
# The window before the cursor is read again at every look while it holds fewer than RECHECK_ROWS items;
# a busier one (a high scan rate fills it with hundreds of thousands) at most every RECHECK_SECONDS,
# well within the settle time of new entries, so a retroactive run still finds every late commit and a
# shared-media search does not pay for the whole window each time.
RECHECK_ROWS = 20_000
RECHECK_SECONDS = 10.0


def usable(quality):
    """Whether a PDQ of this quality is matched at all (as at scan time)."""
    return (quality or 0) >= settings.PDQ_MIN_QUALITY


def item_vectors(pdq, quality, orientations, frames, min_quality=None):
    """The 32-byte PDQ hashes of one item that are indexed and matched, joined: every stored
    orientation of a usable still (the PDQ alone for items scanned before orientations were kept),
    then every usable frame with the orientations the scan kept of it, each distinct hash once."""
    min_quality = settings.PDQ_MIN_QUALITY if min_quality is None else min_quality
    still = b""
    if (quality or 0) >= min_quality:
        blob = bytes(orientations or b"")
        still = blob if blob and len(blob) % 32 == 0 else bytes.fromhex(pdq) if pdq else b""
    if not frames:
        return still
    found = [still[i:i + 32] for i in range(0, len(still), 32)]
    for frame in usable_frames(frames, min_quality):
        found.append(bytes.fromhex(frame["pdq"]))
        for name in ("variants", "outer_variants"):
            found += [bytes.fromhex(v) for v in frame.get(name) or () if isinstance(v, str) and len(v) == 64]
    return b"".join(dict.fromkeys(found))


ROW_COLUMNS = "id, scanned_at, status, pdq, pdq_quality, pdq_orientations, frame_hashes"


def _aware(value):
    """A scan time as read by raw SQL (naive UTC on SQLite) as an aware datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _frames(value):
    """frame_hashes as read by raw SQL: JSON text on SQLite (mostly "[]"), or already decoded."""
    if isinstance(value, str | bytes):
        return json.loads(value) if len(value) > 2 else []
    return value or []


class _Segment:
    """Rows of one Hamming index and the item each row belongs to."""

    def __init__(self, design_radius):
        self.index = HammingIndex(256, design_radius=design_radius)
        self.items = np.zeros(0, dtype=np.uint32)

    def __len__(self):
        return self.index.n

    def reserve(self, rows):
        self.index.reserve(rows)
        self._fit(len(self))

    def add(self, items, vectors):
        before = len(self)
        rows = self.index.add(vectors, merge=False)
        self._fit(before)
        self.items[rows] = items

    def _fit(self, rows):
        if self.index.capacity > len(self.items):
            grown = np.zeros(self.index.capacity, dtype=np.uint32)
            grown[:rows] = self.items[:rows]
            self.items = grown

    def nbytes(self):
        return self.index.nbytes() + self.items.nbytes


class StoredIndex:
    """Every indexed row of every stored item: `search` finds the items within a radius of queries."""

    def __init__(self, design_radius=None):
        self.design_radius = settings.PDQ_MATCH_THRESHOLD if design_radius is None else design_radius
        self._reset()

    def _reset(self):
        self.segments = []
        self.cursor = None  # (scanned_at, id) of the newest item read; None: nothing loaded yet
        self.items_seen = 0  # item rows read with a scan time, indexed or not: what the count check compares
        self.recent = OrderedDict()  # id -> scan time of the items in the window that is read again
        self.saved_rows = 0  # rows in the cache on disk
        self.reconciled_at = time.monotonic()
        self.rechecked_at = 0.0

    def __len__(self):
        return sum(len(s) for s in self.segments)

    def nbytes(self):
        return sum(s.nbytes() for s in self.segments)

    # -- rows ---------------------------------------------------------------------------------

    def add(self, items, vectors, *, bulk=False):
        """Append rows ((k,) item ids, (k, 32) uint8); searchable after maintain(). A bulk load (a cold
        start) goes into one segment however large, which searches fastest; later rows go to a tail."""
        if len(items) and int(np.max(items)) >= 2**32:
            raise ValueError("item ids are held in 32 bits here: widen StoredIndex's item arrays first")
        items = np.asarray(items, dtype=np.uint32)
        vectors = np.ascontiguousarray(vectors, dtype=np.uint8).reshape(-1, 32)
        start = 0
        while start < len(items):
            if not self.segments or (not bulk and len(self.segments[-1]) >= SEGMENT_ROWS):
                if self.segments:
                    self.segments[-1].index.maintain()  # sealed: its tables are final
                self.segments.append(_Segment(self.design_radius))
            tail = self.segments[-1]
            take = len(items) - start if bulk else min(len(items) - start, SEGMENT_ROWS - len(tail))
            tail.add(items[start:start + take], vectors[start:start + take])
            start += take

    def reserve(self, rows, *, bulk=False):
        """Room for `rows` more rows in the tail (all of them for a bulk load), so that a cold start
        sizes its arrays once instead of copying them as they grow."""
        if not self.segments:
            self.segments.append(_Segment(self.design_radius))
        tail = self.segments[-1]
        tail.reserve(len(tail) + (rows if bulk else min(rows, SEGMENT_ROWS)))

    def maintain(self):
        """Fold rows added since the last call into the tables (only the tail ever changes)."""
        if self.segments:
            self.segments[-1].index.maintain()

    def search(self, vectors, radius):
        """(query index, item id, distance) of every item with a row within `radius` (an int, or one per
        query) of a query: each (query, item) pair once, at its smallest distance."""
        vectors = np.ascontiguousarray(vectors, dtype=np.uint8).reshape(-1, 32)
        parts = []
        for segment in self.segments:
            if len(segment):
                qidx, rows, dist = segment.index.search(vectors, radius)
                parts.append((qidx, segment.items[rows].astype(np.int64), dist))
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        qidx, items, dist = (np.concatenate(x) for x in zip(*parts, strict=True))
        order = np.lexsort((dist, items, qidx))
        qidx, items, dist = qidx[order], items[order], dist[order]
        first = np.ones(len(qidx), dtype=bool)
        first[1:] = (qidx[1:] != qidx[:-1]) | (items[1:] != items[:-1])
        return qidx[first], items[first], dist[first]

    # -- from the database --------------------------------------------------------------------

    def refresh(self):
        """Take in the items scanned since the last look (a cold start reads the cache, then the rest)."""
        cold = self.cursor is None or self._needs_reload()
        cached = 0
        if cold:
            self._reset()
            cached = self._load_cache()
        self._load_rows(bulk=cold)
        if not cold and self.items_seen < SMALL_ITEMS and self._count_through(self.cursor[0]) != self.items_seen:
            # Cheap while small, and it catches a database emptied and filled again (as tests do).
            self._reset()
            self._load_rows(bulk=True)
        self.maintain()
        if cold:
            self.saved_rows = cached
        # Saved at a cold start that read many rows from the database, and again as the index grows,
        # so that a restart reads files and only the most recent items from the database.
        if len(self) >= CACHE_MIN_ROWS and len(self) - self.saved_rows > self.saved_rows // (10 if cold else 4):
            self._save_cache()
            self.saved_rows = len(self)

    def take_new(self):
        """A light look for a search: the items scanned after the cursor, without the checks for late
        commits and deletions (a count over the last ten minutes' items, another over all of them) that
        a retroactive run makes before it trusts the index: at a high scan rate those cost a second
        each, and a search answers in milliseconds. A cold index gets the full refresh()."""
        if self.cursor is None:
            self.refresh()
            return
        self._load_rows(recheck=False)
        self.maintain()

    def _needs_reload(self):
        """Rows the incremental read cannot see: items deleted, or committed later than the overlap.

        Compared up to the start of the window that is read again, so that items committing right
        now (counted by the database, not read yet) do not look like a loss.
        """
        now = time.monotonic()
        if now - self.reconciled_at < RECONCILE_SECONDS and self.items_seen >= SMALL_ITEMS:
            return False
        self.reconciled_at = now
        horizon = self.cursor[0] - timedelta(seconds=OVERLAP_SECONDS)
        read = self.items_seen - sum(1 for at in self.recent.values() if at > horizon)
        count = self._count_through(horizon)
        if count != read:
            log.info("stored index: %s items scanned in the database, %s read: reloading", count, read)
            return True
        return False

    @staticmethod
    def _count_through(moment):
        # Every item with a scan time (rejected ones too) is read and counted: then this count is
        # answered from the (scanned_at, id) index alone.
        return Item.objects.filter(scanned_at__lte=moment).count()

    def _load_rows(self, bulk=False, recheck=True):
        """Read the items scanned since the last look, a page at a time in scan order: the window
        before the cursor again (ids and times only, and the rows of ids not read yet), then every
        item after it."""
        window = False
        if self.cursor is None:
            estimate = Item.objects.filter(scanned_at__isnull=False).count()
            self.reserve(estimate * 8 + estimate // 8, bulk=True)
        elif recheck and (window := self._window_due()):
            horizon = self.cursor[0] - timedelta(seconds=OVERLAP_SECONDS)
            after = None
            complete = self._window_read(horizon)
            while not complete:
                page = self._page("id, scanned_at", start=horizon, after=after, through=self.cursor)
                fresh = [pk for pk, _ in page if pk not in self.recent]
                for lo in range(0, len(fresh), 500):
                    self._add_rows(self._rows(fresh[lo:lo + 500]), bulk)
                complete = len(page) < LOAD_PAGE
                if not complete:
                    after = page[-1][1], page[-1][0]
        after = self.cursor
        while True:
            page = self._page(ROW_COLUMNS, start=after[0] if after else None, after=after)
            self._add_rows(page, bulk)
            if page:
                after = self.cursor = (page[-1][1], page[-1][0])
                # Ids leave the window as the read moves on: a cold start of ten million items must
                # not hold them all in it.
                horizon = self.cursor[0] - timedelta(seconds=OVERLAP_SECONDS)
                while self.recent and next(iter(self.recent.values())) < horizon:
                    self.recent.popitem(last=False)
            if len(page) < LOAD_PAGE:
                break
        if window:  # late commits went in out of order: a last pass over the window
            horizon = self.cursor[0] - timedelta(seconds=OVERLAP_SECONDS)
            self.recent = OrderedDict((pk, at) for pk, at in self.recent.items() if at >= horizon)

    def _window_read(self, horizon):
        """Whether every item in the window up to the cursor was read already: the database's count and
        sum of their ids against those of the ids read. Two numbers in one indexed aggregate, where reading
        the window's ids and times again costs a second a million rows; any difference (a late commit, a
        deletion) sends the caller to read the window again."""
        read = [pk for pk, at in self.recent.items() if at >= horizon]
        adapt = connection.ops.adapt_datetimefield_value
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*), SUM(id) FROM {Item._meta.db_table} WHERE scanned_at >= %s "
                           "AND (scanned_at, id) <= (%s, %s)", [adapt(horizon), adapt(self.cursor[0]), self.cursor[1]])
            count, total = cursor.fetchone()
        return count == len(read) and int(total or 0) == sum(read)

    def _window_due(self):
        now = time.monotonic()
        if len(self.recent) >= RECHECK_ROWS and now - self.rechecked_at < RECHECK_SECONDS:
            return False
        self.rechecked_at = now
        return True

    @staticmethod
    def _page(columns, *, start=None, after=None, through=None):
        """A page of items with a scan time, in (scanned_at, id) order: from `start`, after the key
        `after`, up to and including the key `through`. Raw SQL: ten million rows through the ORM's
        per-row conversions take many minutes."""
        adapt = connection.ops.adapt_datetimefield_value
        where, params = ["scanned_at IS NOT NULL"], []
        if start is not None:  # the range the (scanned_at, id) index serves; the row comparisons refine it
            where.append("scanned_at >= %s")
            params.append(adapt(start))
        if after is not None:
            where.append("(scanned_at, id) > (%s, %s)")
            params += [adapt(after[0]), after[1]]
        if through is not None:
            where.append("(scanned_at, id) <= (%s, %s)")
            params += [adapt(through[0]), through[1]]
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {columns} FROM {Item._meta.db_table} WHERE {' AND '.join(where)} "
                           "ORDER BY scanned_at, id LIMIT %s", [*params, LOAD_PAGE])
            return [(row[0], _aware(row[1]), *row[2:]) for row in cursor.fetchall()]

    @staticmethod
    def _rows(ids):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {ROW_COLUMNS} FROM {Item._meta.db_table} WHERE id IN "
                           f"({', '.join(['%s'] * len(ids))}) ORDER BY scanned_at, id", ids)
            return [(row[0], _aware(row[1]), *row[2:]) for row in cursor.fetchall()]

    def _add_rows(self, rows, bulk):
        ids, parts = [], []
        min_quality = settings.PDQ_MIN_QUALITY
        for pk, scanned_at, status, pdq, quality, orientations, frames in rows:
            if pk in self.recent:
                continue
            self.recent[pk] = scanned_at
            self.items_seen += 1
            if status != ItemStatus.SCANNED:
                continue
            try:
                vectors = item_vectors(pdq, quality, orientations, _frames(frames), min_quality)
            except (ValueError, TypeError, AttributeError):
                log.warning("stored index: item %s has malformed hashes; not indexed", pk)
                continue
            parts.append(vectors)
            ids += [pk] * (len(vectors) // 32)
        if ids:
            self.add(ids, np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(-1, 32), bulk=bulk)

    def _cache_dir(self):
        db = connection.settings_dict
        key = hashlib.sha1(f"{connection.vendor}:{db.get('HOST')}:{db.get('PORT')}:{db['NAME']}".encode()).hexdigest()
        return Path(settings.VAR_DIR) / "stored-index" / key[:16]

    def _load_cache(self):
        """Rows saved by an earlier cold start, if the database still holds the items they came from."""
        folder = self._cache_dir()
        try:
            meta = json.loads((folder / "meta.json").read_text())
            cursor = (datetime.fromisoformat(meta["cursor_at"]), meta["cursor_id"])
            if self._count_through(cursor[0]) != meta["items_seen"]:
                return 0
            words = np.load(folder / "words.npy", mmap_mode="r")
            items = np.load(folder / "items.npy", mmap_mode="r")
        except (OSError, ValueError, KeyError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("stored index: cache in %s not used: %s", folder, exc)
            return 0
        self.reserve(len(words) + len(words) // 16, bulk=True)
        step = 4_000_000  # a slice at a time: the mapped file is never copied whole
        for start in range(0, len(words), step):
            self.add(items[start:start + step], words[start:start + step].view(np.uint8).reshape(-1, 32), bulk=True)
        self.cursor = cursor
        self.items_seen = meta["items_seen"]
        self.recent = OrderedDict((pk, cursor[0]) for pk in meta["recent"])
        log.info("stored index: %s rows from the cache in %s", len(words), folder)
        return len(words)

    def _save_cache(self):
        """Save the rows for the next cold start (written aside, then swapped in whole)."""
        folder = self._cache_dir()
        staging = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
        try:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            words = [s.index.words_at(np.arange(len(s))) for s in self.segments]
            np.save(staging / "words.npy", np.concatenate(words) if words else np.zeros((0, 4), np.uint64))
            del words
            np.save(staging / "items.npy", np.concatenate([s.items[:len(s)] for s in self.segments]))
            (staging / "meta.json").write_text(json.dumps({
                "cursor_at": self.cursor[0].isoformat(), "cursor_id": self.cursor[1], "items_seen": self.items_seen,
                "recent": sorted(self.recent), "rows": len(self)}))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
        except OSError as exc:
            log.warning("stored index: could not save the cache: %s", exc)
            shutil.rmtree(staging, ignore_errors=True)


_index = None


def stored_index():
    """This worker's index of stored items (built on first use, then kept current by refresh())."""
    global _index  # noqa: PLW0603
    if _index is None:
        _index = StoredIndex()
    return _index


def forget_index():
    """Drop this process's index: the next refresh() starts from the cache or the database."""
    global _index  # noqa: PLW0603
    _index = None


# Requests: committed with the entries or the decision that causes them ---------------------------

RETRO_JOB = "detection.jobs.retro.retro_match"
SHARE_JOB = "detection.jobs.retro.share_pending"
SHARE_KICK = "share-outward"
# A cold start of a large index (reading the rows, building the tables) takes minutes; a run stops
# itself earlier (RETRO_JOB_SECONDS) and hands the rest to the next.
JOB_TIMEOUT = 3600


def queue_name():
    """The queue of retroactive jobs: "retro" where it is configured (a worker of its own holds the
    index of stored items), else "default"."""
    return "retro" if "retro" in settings.RQ_QUEUES else "default"


def settle_seconds():
    """How long an entry waits before it is matched retroactively. A scan that looked at the banks
    just before the entry was committed may commit its item a little after: waiting this long means
    such an item is already in the stored index when the entry is searched for."""
    return getattr(settings, "RETRO_SETTLE_SECONDS", 60)


@contextmanager
def new_entries(bank_id):
    """Wrap the statements that add entries to a bank, inside their transaction: if they added any,
    retroactive matching of the bank is requested in that same transaction."""
    bank_id = getattr(bank_id, "pk", bank_id)
    # Every id the statements allocate is above the highest id visible now, committed or not elsewhere.
    floor = BankHash.objects.aggregate(top=Max("pk"))["top"] or 0
    yield
    if BankHash.objects.filter(bank_id=bank_id, pk__gt=floor).exists():
        request_retro(bank_id, after_id=floor)


def request_retro(bank_id, *, after_id):
    """Record that the bank's entries with an id above `after_id` are to be matched retroactively, and
    hand the work to a job after the commit. Call it inside the transaction that added the entries.

    The bank's mark only ever moves down here: entries committed late (with ids below others already
    matched, possible on PostgreSQL) are then matched too; those matched twice give no second signal.
    A bank already pending is not enqueued again: its run goes round until no request is left.
    """
    now = timezone.now()
    row, created = RetroMatch.objects.get_or_create(
        bank_id=bank_id, defaults={"matched_through": after_id, "requested_at": now, "requests": 1})
    woke = created
    if not created:
        woke = RetroMatch.objects.filter(pk=row.pk, requested_at__isnull=True).update(requested_at=now)
        RetroMatch.objects.filter(pk=row.pk).update(matched_through=Least(F("matched_through"), Value(after_id)),
                                                    requests=F("requests") + 1)
    if woke:
        enqueue(RETRO_JOB, bank_id, queue=queue_name(), job_timeout=JOB_TIMEOUT)


def request_share_outward(account_id, *, decision_id=None, reason=""):
    """Record that an actioned account's media is to be matched against every other account's, and
    kick the job that runs pending requests after the commit. Call it inside the transaction of the decision."""
    request = share_request(account_id, decision_id=decision_id, reason=reason)
    if request.done_at is None:
        kick_after_commit(SHARE_KICK, SHARE_JOB, queue=queue_name())
    return request


def request_share_outward_many(wanted):
    """request_share_outward for many decisions: `wanted` is [(account_id, decision_id, reason)], each
    with a decision. The request rows the decisions lack are written with one statement, and the job
    that runs pending requests is kicked once after the commit."""
    wanted = [(account_id, decision_id, reason or "") for account_id, decision_id, reason in wanted]
    if not wanted:
        return []
    found = {}
    for request in SharedMediaRequest.objects.filter(decision_id__in={d for _, d, _ in wanted}).order_by("pk"):
        found.setdefault((request.account_id, request.decision_id), request)
    fresh = [SharedMediaRequest(account_id=account_id, decision_id=decision_id, reason=reason[:255])
             for account_id, decision_id, reason in wanted if (account_id, decision_id) not in found]
    if fresh:
        try:
            with transaction.atomic():
                SharedMediaRequest.objects.bulk_create(fresh)
        except IntegrityError:  # another run recorded some a moment ago: one by one, as share_request does
            for row in fresh:
                found[(row.account_id, row.decision_id)] = share_request(row.account_id, decision_id=row.decision_id,
                                                                         reason=row.reason)
        else:
            found.update({(row.account_id, row.decision_id): row for row in fresh})
    requests = [found[(account_id, decision_id)] for account_id, decision_id, _ in wanted]
    if any(request.done_at is None for request in requests):
        # One job runs every pending request, in batches (detection.jobs.retro.share_pending).
        kick_after_commit(SHARE_KICK, SHARE_JOB, queue=queue_name())
    return requests


def share_request(account_id, *, decision_id=None, reason=""):
    """The request row for an account and decision: one per decision, so that a decision's request
    runs once; without a decision, the one not yet done (else a new one)."""
    rows = SharedMediaRequest.objects.filter(account_id=account_id, decision_id=decision_id)
    if decision_id is None:
        rows = rows.filter(done_at__isnull=True)
    request = rows.order_by("pk").first()
    if request is None:
        try:
            with transaction.atomic():
                request = SharedMediaRequest.objects.create(account_id=account_id, decision_id=decision_id,
                                                            reason=(reason or "")[:255])
        except IntegrityError:  # another run recorded it a moment ago
            request = rows.order_by("pk").first()
    return request


# Near search for the web: the index answers through a small job on its own queue ----------------

NEAR_JOB = "detection.jobs.retro.near_search"


def nearest(index, vectors, radius, limit):
    """The `limit` items nearest to any of the 32-byte `vectors` within `radius`, each once at its smallest
    distance, as {"hits": [[item id, distance]], "complete": whether none was left out, "rows": rows searched}."""
    qidx, items, dist = index.search(np.frombuffer(vectors, dtype=np.uint8), int(radius))
    del qidx
    best = {}
    for pk, d in zip(items.tolist(), dist.tolist(), strict=True):
        if pk not in best or d < best[pk]:
            best[pk] = d
    ranked = sorted(best.items(), key=lambda hit: (hit[1], hit[0]))
    return {"hits": [list(hit) for hit in ranked[:limit]], "complete": len(ranked) <= limit, "rows": len(index)}


def ask_near(vectors, radius, limit, timeout):
    """Ask the worker that holds the index (a job on the retro queue, answered through RQ's results) for the
    items near `vectors`; None when no worker answered within `timeout` seconds or Redis is unreachable."""
    import django_rq
    from rq.results import Result

    job = None
    try:
        queue = django_rq.get_queue(queue_name(), commit_mode="auto")  # a question goes now, transaction or not
        wait = max(0.05, float(timeout))
        # ttl: a question nobody picked up in time is dropped rather than answered to nobody later; at_front:
        # a search waits behind the job that runs, not behind every retroactive run queued.
        job = queue.enqueue(NEAR_JOB, bytes(vectors), int(radius), int(limit), result_ttl=60, failure_ttl=60,
                            ttl=int(wait) + 6, job_timeout=60, at_front=True)
        # Job.latest_result(timeout=...) takes whole seconds (RQ multiplies by 1000 and redis-py refuses a
        # float block), so the wait is the same XREAD on the job's result stream, in milliseconds, and in
        # steps of a second so that no step outlasts the connection's socket timeout.
        deadline, answered = time.monotonic() + wait, None
        while not answered and (left := deadline - time.monotonic()) > 0:
            answered = queue.connection.xread({Result.get_key(job.id): "0-0"}, block=max(1, int(min(left, 1) * 1000)))
        result = job.latest_result() if answered else None
        if result is not None and result.type == Result.Type.SUCCESSFUL and result.return_value is not None:
            return result.return_value  # None: the worker's index is still being built
    except Exception as exc:  # Redis down or flushed: the caller falls back to the database
        log.warning("stored index: near search not answered (%s)", exc)
    if job is not None:
        try:
            job.cancel()  # not answered: nobody should work on it later
        except Exception:  # already taken, finished or gone
            pass
    return None
