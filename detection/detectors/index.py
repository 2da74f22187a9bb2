"""Exact Hamming radius search over fixed-length bit strings (PDQ, pHash, dHash) by multi-index hashing.

A hash is cut into m disjoint chunks. If two hashes differ in at most r bits and chunk j is probed
with radius r_j where sum(r_j + 1) > r, then by pigeonhole at least one chunk differs by at most its
r_j: enumerating every chunk value within r_j of the query's chunk and verifying the rows found in
those buckets by full XOR and popcount finds every row within r, never an approximation.

Each chunk's table is a CSR bucket list: `offsets` over every chunk value (two bytes each, so chunks
can be 23-24 bits wide at 10M rows) and the row slots sorted by chunk value, all chunks in one array
so that a batch of queries is searched with a fixed number of numpy calls. Each query picks its own
radii r_j from the bucket sizes it meets: real banks are skewed and clustered, so a query's value of
one chunk may fall among crowded buckets while another's falls among empty ones. Rows are stored
sorted, so that near-duplicates found together are read from nearby memory, and the first 128 bits of
each row apart from the rest, which is read only for the few candidates those bits do not reject. Rows
added after a build sit in a small delta searched by brute force until they are merged in (an
insertion, not a rebuild); deleted rows are masked out.
"""

import json
import os
from functools import lru_cache
from itertools import combinations
from math import comb
from pathlib import Path

import numpy as np

MAX_CHUNK_BITS = 24
# Below this many rows a brute-force scan is as fast as probing tables and needs no memory for them.
BRUTE_FORCE_ROWS = 32_768
# Rows added since the build are brute-forced; past this many they are merged into the tables.
MAX_DELTA = 8_192
# Index memory (row ids and bucket offsets) allowed per row when choosing the chunking.
MAX_TABLE_BYTES_PER_ROW = 80
# Cost model weights: a probe is two random reads of `offsets`; a candidate one read of `ids` (mostly
# sequential) plus a random read of the row's bits and its verification.
PROBE_COST = 1.0
CANDIDATE_COST = 1.0
# Rings probed beyond the static allocation, for each query to choose among (see probe_caps).
SPARE_LEVELS = 3
# Pairs per brute-force step (query rows x bank rows): bounds the temporary arrays to a few MB.
BRUTE_BLOCK = 1 << 18
# Queries searched together: at most QUERY_BLOCK, fewer when each meets many candidates, so that a
# block's candidates (read and verified together) stay within about BLOCK_CANDIDATES and in cache.
QUERY_BLOCK = 8
BLOCK_CANDIDATES = 16_384


def parse_hex(values, nbits):
    """Hex strings to an (n, nbits/8) uint8 array; ValueError naming the first bad value."""
    nchars = nbits // 4
    for value in values:
        if not isinstance(value, str) or len(value) != nchars:
            raise ValueError(f"expected {nchars} hex digits, got {str(value)[:80]!r}")
    try:
        data = bytes.fromhex("".join(values))
    except ValueError:
        for value in values:
            try:
                bytes.fromhex(value)
            except ValueError:
                raise ValueError(f"not a hex hash: {value[:80]!r}") from None
        raise
    return np.frombuffer(data, dtype=np.uint8).reshape(len(values), nbits // 8)


def to_hex(vectors):
    """(n, nbytes) uint8 rows back to hex strings."""
    return [row.tobytes().hex() for row in np.asarray(vectors, dtype=np.uint8)]


class HammingIndex:
    """Rows of `nbits` bits (append-only, numbered from 0); `search` finds every row within a radius."""

    def __init__(self, nbits=256, *, design_radius=31, brute_force_rows=BRUTE_FORCE_ROWS, max_delta=MAX_DELTA,
                 max_table_bytes_per_row=MAX_TABLE_BYTES_PER_ROW):
        if nbits % 64:
            raise ValueError("nbits must be a multiple of 64")
        self.nbits = nbits
        self.nwords = nbits // 64
        self.design_radius = design_radius
        self.brute_force_rows = brute_force_rows
        self.max_delta = max_delta
        self.max_table_bytes_per_row = max_table_bytes_per_row
        self.n = 0
        self._words = _Store(self.nwords, 0)
        self._alive = np.ones(0, dtype=bool)
        self.tables = None
        # `_words` (a _Store; its length is the capacity) holds rows in storage order. A build sorts the
        # rows it covers so that similar hashes sit together (a bucket's rows are then read from a few
        # places in memory, not thousands); `_row_at` and `_slot_of` map between storage slots and row
        # numbers for those, and rows added after the build are stored at their own number.
        self._row_at = np.zeros(0, dtype=np.int32)
        self._slot_of = np.zeros(0, dtype=np.int32)
        self.read_only = False  # a loaded index (see load) takes no rows: a LayeredIndex adds them beside it

    def __len__(self):
        return self.n

    @property
    def capacity(self):
        """Rows the arrays have room for: callers keeping arrays row by row size theirs to it."""
        return len(self._words)

    @property
    def words(self):
        """Every row's words in row order (a copy)."""
        return self.words_at(np.arange(self.n))

    def words_at(self, rows):
        """The stored words of some rows as (k, nwords) uint64 (a copy)."""
        return self._words.get(self._slots(np.asarray(rows, dtype=np.int64)))

    @property
    def alive(self):
        return self._alive[:self.n]

    def nbytes(self):
        """Bytes held by the arrays (capacity included)."""
        total = self._words.nbytes + self._alive.nbytes + self._row_at.nbytes + self._slot_of.nbytes
        if self.tables is not None:
            total += self.tables.nbytes()
        return total

    # -- adding and removing ------------------------------------------------------------------

    def reserve(self, capacity):
        """Make room for `capacity` rows so a stream of adds does not copy the arrays again and again."""
        if capacity <= len(self._words):
            return
        self._writable()
        words = self._words.grown(capacity, self.n)
        alive = np.ones(capacity, dtype=bool)
        alive[:self.n] = self._alive[:self.n]
        self._words, self._alive = words, alive

    def add(self, vectors, *, merge=True):
        """Append (k, nbits/8) uint8 rows; returns their row numbers. New rows are searchable at once."""
        self._writable()
        vectors = np.ascontiguousarray(vectors, dtype=np.uint8)
        if vectors.ndim != 2 or vectors.shape[1] != self.nbits // 8:
            raise ValueError(f"expected rows of {self.nbits // 8} bytes, got shape {vectors.shape}")
        k = len(vectors)
        if self.n + k > len(self._words):
            # Some slack, so that the next few adds do not copy every row again.
            self.reserve(max(self.n + k + (self.n + k) // 32 + 1024, len(self._words) + len(self._words) // 4))
        self._words.put(self.n, vectors.view(np.uint64))
        self._alive[self.n:self.n + k] = True
        rows = np.arange(self.n, self.n + k, dtype=np.int64)
        self.n += k
        if merge:
            self.maintain()
        return rows

    def _writable(self):
        if self.read_only:
            raise ValueError("a loaded index is read-only: add rows to a LayeredIndex over it")

    def add_words(self, words):
        return self.add(np.ascontiguousarray(words, dtype=np.uint64).view(np.uint8))

    def remove(self, rows):
        """Mask rows out of every later search (their numbers are not reused)."""
        self._alive[np.asarray(rows, dtype=np.int64)] = False

    def vectors(self, rows):
        """The stored bits of some rows as (k, nbits/8) uint8."""
        return self.words_at(rows).view(np.uint8)

    def _slots(self, rows):
        covered = len(self._slot_of)
        return np.where(rows < covered, self._slot_of[np.minimum(rows, covered - 1)], rows) if covered else rows

    def _rows(self, slots):
        covered = len(self._row_at)
        return np.where(slots < covered, self._row_at[np.minimum(slots, covered - 1)], slots) if covered else slots

    def maintain(self):
        """Build the tables once there are enough rows; fold a large delta into them."""
        if self.n < self.brute_force_rows or self.read_only:
            return
        tables = self.tables
        if tables is None or self.n > tables.capacity or self.n >= 2 * tables.built_rows:
            self.rebuild()
        elif self.n - tables.n > self.max_delta:
            tables.merge(self._words.columns(tables.n, self.n), self.n)

    def rebuild(self):
        self.tables = None  # free the old tables first: peak memory is one set of tables
        # Sorted by the first word, near-duplicates (which share most chunks) are stored side by side.
        words = self._words.columns(0, self.n)
        order = np.argsort(words[0])
        for column in words:  # a column at a time: a temporary copy of one column, not of every row
            column[:] = column[order]
        self._row_at = self._rows(order).astype(np.int32)
        del order
        self._slot_of = np.empty(self.n, dtype=np.int32)
        self._slot_of[self._row_at] = np.arange(self.n, dtype=np.int32)
        plan = choose_chunks(self.n, self.nbits, self.design_radius, self.max_table_bytes_per_row)
        self.tables = _Tables(plan, self._words.columns(0, self.n), self.n)

    @property
    def delta_rows(self):
        return self.n - (self.tables.n if self.tables is not None else 0)

    # -- saving and mapping -------------------------------------------------------------------

    def save(self, folder, prefix=""):
        """Write every array a search reads into `folder` (an existing folder) as .npy files named
        `prefix` + what they hold, packed to the rows held, and fsync them; making the files appear
        together is the caller's part (write them to a new folder, then rename it).

        `load` maps the files back read-only: every process that maps the same files shares one copy of
        them in the page cache instead of holding its own.
        """
        folder = Path(folder)
        n, tables = self.n, self.tables
        meta = {"format": 1, "nbits": self.nbits, "design_radius": self.design_radius,
                "brute_force_rows": self.brute_force_rows, "max_delta": self.max_delta,
                "max_table_bytes_per_row": self.max_table_bytes_per_row, "n": n, "tables": None}
        arrays = {"words": self._words.head[:n], "words_tail": self._words.tail[:n], "alive": self._alive[:n],
                  "row_at": self._row_at, "slot_of": self._slot_of}
        if tables is not None:
            meta["tables"] = {"widths": tables.widths, "n": tables.n, "built_rows": tables.built_rows}
            if tables.offsets.full is not None:
                arrays["offsets_full"] = tables.offsets.full
            else:
                arrays["offsets_fine"], arrays["offsets_coarse"] = tables.offsets.fine, tables.offsets.coarse
            # The segments end to end, without the room each keeps for merging: a saved index takes no rows.
            segments = tables.segments()
            ids = np.lib.format.open_memmap(folder / f"{prefix}ids.npy", mode="w+", dtype=np.int32,
                                            shape=(sum(len(s) for s in segments),))
            at = 0
            for segment in segments:
                ids[at:at + len(segment)] = segment
                at += len(segment)
            ids.flush()
            del ids
            _fsync(folder / f"{prefix}ids.npy")
        for name, array in arrays.items():
            np.save(folder / f"{prefix}{name}.npy", np.ascontiguousarray(array))
            _fsync(folder / f"{prefix}{name}.npy")
        (folder / f"{prefix}index.json").write_text(json.dumps(meta))
        _fsync(folder / f"{prefix}index.json")

    @classmethod
    def load(cls, folder, prefix="", mmap_mode="r"):
        """An index over the files `save` wrote, mapped read-only (mmap_mode None reads them into memory).

        The result takes no rows (wrap it in a LayeredIndex to add some); removing rows is allowed, and
        copies only the page of the alive mask it changes. Raises ValueError (or OSError) for files that
        are missing, truncated or do not fit together.
        """
        folder = Path(folder)
        meta = json.loads((folder / f"{prefix}index.json").read_text())
        if meta.get("format") != 1:
            raise ValueError(f"unknown index format {meta.get('format')!r}")
        index = cls(meta["nbits"], design_radius=meta["design_radius"], brute_force_rows=meta["brute_force_rows"],
                    max_delta=meta["max_delta"], max_table_bytes_per_row=meta["max_table_bytes_per_row"])
        n = meta["n"]

        def array(name, dtype, shape, mode=mmap_mode):
            # A plain ndarray view of the mapping: numpy's memmap subclass adds overhead to every call.
            loaded = np.asarray(np.load(folder / f"{prefix}{name}.npy", mmap_mode=mode, allow_pickle=False))
            if loaded.dtype != dtype or loaded.shape != shape:
                raise ValueError(f"{name}.npy holds {loaded.dtype}{loaded.shape}, expected {np.dtype(dtype)}{shape}")
            return loaded

        words = _Store(index.nwords, 0)
        words.head = array("words", np.uint64, (n, words.split))
        words.tail = array("words_tail", np.uint64, (n, index.nwords - words.split))
        index._words = words
        # Copy-on-write: a removed row costs this process one private page, the rest stays shared.
        index._alive = array("alive", np.bool_, (n,), mode="c" if mmap_mode else None)
        tables = meta["tables"]
        covered = tables["n"] if tables else 0
        if tables and tables["built_rows"] > covered:
            raise ValueError("index.json: tables built for more rows than they hold")
        built = len(np.load(folder / f"{prefix}row_at.npy", mmap_mode="r"))
        if built > covered or (tables and built != tables["built_rows"]):
            raise ValueError("row_at.npy does not fit the tables")
        index._row_at = array("row_at", np.int32, (built,))
        index._slot_of = array("slot_of", np.int32, (built,))
        index.n = n
        if tables:
            widths = tables["widths"]
            sizes = _Offsets.entry_counts(widths)
            if (folder / f"{prefix}offsets_full.npy").exists():
                offsets = _Offsets.mapped(widths, full=array("offsets_full", np.int32, (sum(sizes),)))
            else:
                offsets = _Offsets.mapped(widths, fine=array("offsets_fine", np.uint16, (sum(sizes),)),
                                          coarse=array("offsets_coarse", np.int32, (sum(sizes) // _Offsets.BLOCK,)))
            ids = array("ids", np.int32, (len(widths) * covered,))
            index.tables = _Tables.mapped(tables, index.nwords, ids, offsets)
        index.read_only = True
        return index

    # -- searching ----------------------------------------------------------------------------

    def search(self, queries, radius, row_limit=None):
        """Every (query, row) pair within radius: arrays (query index, row, distance), sorted.

        queries: (q, nbits/8) uint8 (or (q, nwords) uint64). radius: an int or one per query.
        row_limit: optional per-row maximum distance (an int array over rows; negative = never
        matches), e.g. each row's bank threshold, applied after the query radius.
        """
        qwords = self._query_words(queries)
        if np.ndim(radius) == 0:
            qidx, rows, dist = self._search_radius(qwords, None, int(radius))
        else:
            radius = np.asarray(radius, dtype=np.int64)
            if radius.shape != (len(qwords),):
                raise ValueError("one radius per query expected")
            # Queries with the same radius share one probe plan; there are rarely more than one or two.
            parts = [self._search_radius(qwords[sel], sel, r)
                     for r in np.unique(radius).tolist() for sel in [np.nonzero(radius == r)[0]]]
            qidx, rows, dist = (np.concatenate(x) for x in zip(*parts, strict=True)) if parts else _empty()
        if not len(rows):
            return qidx, rows, dist
        keep = self._alive[rows]
        if row_limit is not None:
            keep &= dist <= np.asarray(row_limit)[rows]
        qidx, rows, dist = qidx[keep], rows[keep], dist[keep]
        # A row can be found through several chunks; keep one of each (query, row) pair.
        key, first = np.unique(qidx * max(self.n, 1) + rows, return_index=True)
        return qidx[first], rows[first], dist[first]

    def _query_words(self, queries):
        q = np.asarray(queries)
        if q.dtype == np.uint64 and q.ndim == 2 and q.shape[1] == self.nwords:
            return np.ascontiguousarray(q)
        q = np.ascontiguousarray(q, dtype=np.uint8)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2 or q.shape[1] != self.nbits // 8:
            raise ValueError(f"expected queries of {self.nbits // 8} bytes, got shape {q.shape}")
        return q.view(np.uint64)

    def _search_radius(self, qwords, qsel, radius):
        if radius < 0 or not self.n or not len(qwords):
            return _empty()
        tables = self.tables
        parts = []
        start = 0
        if tables is not None:
            probes = tables.probes(radius)
            if probes is None:  # radius so large that probing would touch most rows anyway
                parts.append(_scan(self._words.columns(0, tables.n), qwords, radius, 0))
            else:
                lo, block = 0, 1
                while lo < len(qwords):
                    qi, rows, dist, candidates = tables.search(self._words, qwords[lo:lo + block], radius, probes)
                    parts.append((qi + lo, rows, dist))
                    lo += block
                    block = min(QUERY_BLOCK, max(1, BLOCK_CANDIDATES * block // max(candidates, 1)))
            start = tables.n
        parts.append(_scan(self._words.columns(start, self.n), qwords, radius, start))
        parts = [p for p in parts if len(p[0])]
        if not parts:
            return _empty()
        qidx, slots, dist = (np.concatenate(x) for x in zip(*parts, strict=True)) if len(parts) > 1 else parts[0]
        return (qidx if qsel is None else qsel[qidx]), self._rows(slots), dist


class LayeredIndex:
    """A read-only base (a HammingIndex loaded from files every process on a host maps, so they share one
    copy) and an in-memory delta for rows added since, numbered after the base's rows. It answers like a
    HammingIndex: the base and the delta are each searched exactly and their hits put together."""

    def __init__(self, nbits=256, *, base=None, **options):
        if base is not None and base.nbits != nbits:
            raise ValueError(f"a base of {base.nbits}-bit rows under a {nbits}-bit index")
        self.nbits = nbits
        self.nwords = nbits // 64
        self.base = base
        self.base_rows = len(base) if base is not None else 0
        self.delta = HammingIndex(nbits, **options)

    def __len__(self):
        return self.n

    @property
    def n(self):
        return self.base_rows + self.delta.n

    @property
    def capacity(self):
        return self.base_rows + self.delta.capacity

    @property
    def delta_rows(self):
        """Rows held in this process only (added since the base was saved)."""
        return self.delta.n

    @property
    def alive(self):
        return np.concatenate([self.base.alive, self.delta.alive]) if self.base is not None else self.delta.alive

    @property
    def words(self):
        return self.words_at(np.arange(self.n))

    def nbytes(self):
        """Bytes of the arrays, the mapped base's included (it is shared, not this process's alone)."""
        return self.delta.nbytes() + (self.base.nbytes() if self.base is not None else 0)

    def reserve(self, capacity):
        self.delta.reserve(capacity - self.base_rows)

    def add(self, vectors, *, merge=True):
        return self.delta.add(vectors, merge=merge) + self.base_rows

    def add_words(self, words):
        return self.add(np.ascontiguousarray(words, dtype=np.uint64).view(np.uint8))

    def maintain(self):
        self.delta.maintain()

    def remove(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        if self.base is not None:
            self.base.remove(rows[rows < self.base_rows])
        self.delta.remove(rows[rows >= self.base_rows] - self.base_rows)

    def words_at(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        if self.base is None:
            return self.delta.words_at(rows)
        out = np.empty((len(rows), self.nwords), dtype=np.uint64)
        low = rows < self.base_rows
        out[low] = self.base.words_at(rows[low])
        out[~low] = self.delta.words_at(rows[~low] - self.base_rows)
        return out

    def vectors(self, rows):
        return self.words_at(rows).view(np.uint8)

    def search(self, queries, radius, row_limit=None):
        """As HammingIndex.search, over the base and the delta."""
        if self.base is None:
            return self.delta.search(queries, radius, row_limit)
        qwords = self.delta._query_words(queries)
        limit = None if row_limit is None else np.asarray(row_limit)
        base_hits = self.base.search(qwords, radius, None if limit is None else limit[:self.base_rows])
        qidx, rows, dist = self.delta.search(qwords, radius, None if limit is None else limit[self.base_rows:])
        if not len(rows):
            return base_hits
        qidx, rows, dist = (np.concatenate(x) for x in zip(base_hits, (qidx, rows + self.base_rows, dist),
                                                            strict=True))
        order = np.lexsort((rows, qidx))
        return qidx[order], rows[order], dist[order]


def _empty():
    e = np.zeros(0, dtype=np.int64)
    return e, e, e


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _verify_one(rows, query, radius):
    """(positions, distances) of the (n, nwords) rows within radius of one query, as int64."""
    return _Store.of(rows).verify(np.arange(len(rows)), [query[k] for k in range(rows.shape[1])], radius)


class _Store:
    """Rows of words in storage order, the first (up to) two words of every row in one array and the
    rest in another: verification reads the first 128 bits of every candidate, which already differ in
    more than the radius for most, and the rest only for the few left, so it reads half the bytes."""

    HEAD = 2

    def __init__(self, nwords, capacity):
        self.nwords = nwords
        self.split = min(self.HEAD, nwords)
        self.head = np.zeros((capacity, self.split), dtype=np.uint64)
        self.tail = np.zeros((capacity, nwords - self.split), dtype=np.uint64)

    @classmethod
    def of(cls, words):
        store = cls(words.shape[1], len(words))
        store.put(0, words)
        return store

    def __len__(self):
        return len(self.head)

    @property
    def nbytes(self):
        return self.head.nbytes + self.tail.nbytes

    def grown(self, capacity, n):
        """A larger store holding a copy of slots [0, n)."""
        store = _Store(self.nwords, capacity)
        store.head[:n] = self.head[:n]
        store.tail[:n] = self.tail[:n]
        return store

    def put(self, start, words):
        """Store (k, nwords) uint64 rows at slots [start, start + k)."""
        self.head[start:start + len(words)] = words[:, :self.split]
        self.tail[start:start + len(words)] = words[:, self.split:]

    def get(self, slots):
        """The words of some slots (an index array or a slice) as (k, nwords) uint64 (a copy)."""
        return np.concatenate([self.head[slots], self.tail[slots]], axis=1)

    def columns(self, start, stop):
        """Views of each word of slots [start, stop)."""
        return ([self.head[start:stop, k] for k in range(self.split)]
                + [self.tail[start:stop, k] for k in range(self.nwords - self.split)])

    def verify(self, slots, query, radius):
        """(positions in `slots`, distances) of the slots within radius, as int64; query[k] is the word
        k to compare with, a scalar or one per slot (when the slots belong to several queries)."""
        # np.take rather than fancy indexing: several times faster for gathers of a few thousand rows.
        # A column at a time avoids broadcasting over a short last axis (slow in numpy).
        head = np.take(self.head, slots, axis=0)
        dist = np.zeros(len(slots), dtype=np.uint16)
        for k in range(self.split):
            dist += np.bitwise_count(head[:, k] ^ query[k])
        keep = np.flatnonzero(dist <= radius)
        if self.split == self.nwords or not len(keep):
            return keep, dist[keep].astype(np.int64)
        dist = dist[keep].astype(np.int64)
        tail = np.take(self.tail, slots[keep], axis=0)
        for k in range(self.split, self.nwords):
            dist += np.bitwise_count(tail[:, k - self.split] ^ (query[k] if np.ndim(query[k]) == 0 else query[k][keep]))
        hit = np.flatnonzero(dist <= radius)
        return keep[hit], dist[hit]


def _brute(words, qwords, radius, start, stop):
    """Exhaustive scan of rows [start, stop) of an (n, nwords) array."""
    return _scan([words[start:stop, k] for k in range(words.shape[1])], qwords, radius, start)


def _scan(columns, qwords, radius, first):
    """Exhaustive scan of rows given as word columns, in blocks; row numbers start at `first`."""
    rows = len(columns[0])
    if not rows:
        return _empty()
    parts = []
    nq = len(qwords)
    step = max(1, BRUTE_BLOCK // nq)
    for lo in range(0, rows, step):
        hi = min(rows, lo + step)
        # (queries, rows) a word at a time: long inner loops, no (queries, rows, words) temporary.
        dist = np.zeros((nq, hi - lo), dtype=np.int16)
        for k, column in enumerate(columns):
            dist += np.bitwise_count(qwords[:, k, None] ^ column[None, lo:hi])
        qi, ri = np.nonzero(dist <= radius)
        parts.append((qi.astype(np.int64), ri.astype(np.int64) + lo + first, dist[qi, ri].astype(np.int64)))
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


# -- choosing the chunking --------------------------------------------------------------------

def split_bits(nbits, m):
    """m chunk widths as even as possible (wider ones first)."""
    base, extra = divmod(nbits, m)
    return [base + 1] * extra + [base] * (m - extra)


@lru_cache(maxsize=4096)
def ball(width, radius):
    return sum(comb(width, k) for k in range(radius + 1)) if radius >= 0 else 0


def allocate_radii(widths, radius, rows):
    """Per-chunk probe radii with sum(r_j + 1) > radius, spending each extra unit where it costs least.

    A radius of -1 means the chunk is not probed. Returns (radii, estimated probes, candidates).
    """
    radii = [-1] * len(widths)
    for _ in range(radius + 1):
        best = min(range(len(widths)), key=lambda j: _chunk_cost(widths[j], radii[j] + 1, rows)
                   - _chunk_cost(widths[j], radii[j], rows))
        radii[best] += 1
    probes = sum(ball(w, r) for w, r in zip(widths, radii, strict=True))
    candidates = sum(ball(w, r) * rows / 2 ** w for w, r in zip(widths, radii, strict=True))
    return radii, probes, candidates


@lru_cache(maxsize=65536)
def _chunk_cost(width, radius, rows):
    probes = ball(width, radius)
    return probes * PROBE_COST + probes * rows / 2 ** width * CANDIDATE_COST


def probe_caps(widths, radii, spare=SPARE_LEVELS):
    """How far each chunk is looked up: the static radii plus `spare` more rings, the cheapest first.

    The spare rings are what lets a query move probing away from its crowded chunks (see _Plan); no
    chunk goes past the largest static radius, whose next ring would cost more than it saves.
    """
    caps = list(radii)
    top = max(radii)
    for _ in range(spare):
        options = [j for j in range(len(caps)) if caps[j] < top]
        if not options:
            break
        cheapest = min(options, key=lambda j: comb(widths[j], caps[j] + 1))
        caps[cheapest] += 1
    return caps


def table_bytes(widths, rows):
    """Memory of the tables: a row slot (int32) per row and chunk, a little over two bytes per chunk value."""
    return 4 * len(widths) * rows + sum(2 * 2 ** w + 4 * 2 ** w // _Offsets.BLOCK + 3 * _Offsets.BLOCK for w in widths)


def choose_chunks(rows, nbits, radius, max_bytes_per_row=MAX_TABLE_BYTES_PER_ROW):
    """Chunk widths that minimise the estimated cost of a search at `radius` within the memory cap."""
    rows = max(rows, 1)
    options = []
    for m in range(-(-nbits // MAX_CHUNK_BITS), nbits // 4 + 1):
        widths = split_bits(nbits, m)
        memory = table_bytes(widths, rows)
        radii, _, candidates = allocate_radii(widths, radius, rows)
        probes = sum(ball(w, c) for w, c in zip(widths, probe_caps(widths, radii), strict=True))
        options.append((memory, probes * PROBE_COST + candidates * CANDIDATE_COST, widths))
    # Small banks may spend a few MB regardless; if nothing fits, the leanest option.
    fitting = [o for o in options if o[0] <= max_bytes_per_row * rows + (1 << 22)]
    if not fitting:
        return min(options)[2]
    return min(fitting, key=lambda o: o[1])[2]


@lru_cache(maxsize=256)
def _masks(width, radius):
    """Every XOR mask of `width` bits with at most `radius` bits set (none for a chunk not probed)."""
    masks = [0] if radius >= 0 else []
    for k in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(width), k)]
    return np.array(masks, dtype=np.int64)


class _Tables:
    """CSR bucket tables for rows [0, n): one per chunk, concatenated."""

    def __init__(self, widths, columns, n):
        self._layout(widths, len(columns), n, n + max(n // 8, 4 * MAX_DELTA))
        self.built_rows = n
        self.offsets = _Offsets(self.widths)
        self.table_base = self.offsets.base
        self.ids = np.zeros(self.m * self.capacity, dtype=np.int32)
        for j in range(self.m):
            values = self.chunk_values(columns, j)
            # Bucket v starts after every row of a smaller value: counts shifted by one, summed in place.
            values += 1
            table = np.bincount(values, minlength=2 ** self.widths[j] + 1)
            values -= 1
            np.cumsum(table, out=table)
            self.offsets.store(j, table)
            del table
            # Sorting (value, row) packed in one int64 is about twice as fast as an argsort.
            values <<= 32
            values |= np.arange(n, dtype=np.int64)
            values.sort()
            self.ids[self.segment_base[j]:self.segment_base[j] + n] = values & 0xFFFFFFFF
            del values

    def _layout(self, widths, nwords, n, capacity):
        self.widths = list(widths)
        self.m = len(widths)
        self.n = n
        self.capacity = capacity
        starts = np.concatenate([[0], np.cumsum(self.widths)[:-1]]).astype(np.int64)
        self.word = starts // 64
        self.shift = (starts % 64).astype(np.uint64)
        self.spans = (starts % 64) + np.array(self.widths) > 64
        self.word2 = np.minimum(self.word + 1, nwords - 1)
        self.shift2 = np.where(self.spans, 64 - starts % 64, 0).astype(np.uint64)
        self.spanmask = np.where(self.spans, np.uint64(2 ** 64 - 1), np.uint64(0)).astype(np.uint64)
        self.valmask = np.array([(1 << w) - 1 for w in self.widths], dtype=np.uint64)
        self.segment_base = np.arange(self.m, dtype=np.int64) * self.capacity
        self._probes = {}

    @classmethod
    def mapped(cls, meta, nwords, ids, offsets):
        """Tables over saved arrays (see HammingIndex.save): segments packed end to end, no room to merge."""
        tables = cls.__new__(cls)
        tables._layout(meta["widths"], nwords, meta["n"], meta["n"])
        tables.built_rows = meta["built_rows"]
        tables.ids = ids
        tables.offsets = offsets
        tables.table_base = offsets.base
        return tables

    def segments(self):
        """Each chunk's row slots, [0, n) of its segment."""
        return [self.ids[base:base + self.n] for base in self.segment_base.tolist()]

    def nbytes(self):
        return self.ids.nbytes + self.offsets.nbytes()

    def chunk_values(self, columns, j):
        """Chunk j of each row (given as word columns) as int64 (chunks may straddle two 64-bit words)."""
        value = columns[self.word[j]] >> self.shift[j]
        if self.spans[j]:
            value |= columns[self.word2[j]] << self.shift2[j]
        return (value & self.valmask[j]).astype(np.int64)

    def query_values(self, qwords):
        """All chunks of each query at once: (q, m) int64."""
        value = qwords[:, self.word] >> self.shift
        value |= (qwords[:, self.word2] << self.shift2) & self.spanmask
        return (value & self.valmask).astype(np.int64)

    def probes(self, radius):
        """The probe plan (a _Plan) for a radius, or None when probing would cost more than a scan.

        Every chunk is looked up to its cap (probe_caps); each query then picks its own per-chunk
        radii within those caps from the bucket sizes it meets (_Plan.choose).
        """
        if radius not in self._probes:
            radii, probes, candidates = allocate_radii(self.widths, radius, self.n)
            if probes * PROBE_COST + candidates * CANDIDATE_COST > self.n / 4:
                self._probes[radius] = None
            else:
                self._probes[radius] = _Plan(self.widths, probe_caps(self.widths, radii), self.table_base,
                                             self.segment_base)
        return self._probes[radius]

    def search(self, words, qwords, radius, plan):
        """(query index, slot, distance) of every row of `words` (a _Store) within radius of some query,
        and the number of candidates verified."""
        nq = len(qwords)
        keys = (self.query_values(qwords)[:, plan.chunk] ^ plan.mask) + plan.base
        # np.take rather than fancy indexing: several times faster for gathers of a few thousand rows.
        lo, counts = self.offsets.lookup(keys)
        counts *= plan.choose(counts, radius)
        counts = counts.ravel()
        # Flatten the buckets into one list of positions in `ids`: each probe's run of rows.
        ends = np.cumsum(counts, dtype=np.int64)
        total = int(ends[-1])
        if not total:
            return (*_empty(), 0)
        segment = plan.segment if nq == 1 else np.tile(plan.segment, nq)
        first = (lo.ravel() + segment) - (ends - counts)
        pos = np.repeat(first, counts) + np.arange(total, dtype=np.int64)
        rows = np.take(self.ids, pos)
        if nq == 1:
            hit, dist = words.verify(rows, [qwords[0, k] for k in range(qwords.shape[1])], radius)
            return np.zeros(len(hit), dtype=np.int64), rows[hit].astype(np.int64), dist, total
        qidx = np.repeat(np.repeat(np.arange(nq, dtype=np.int64), len(plan.chunk)), counts)
        # Each query word per candidate: far cheaper to gather than whole query rows.
        hit, dist = words.verify(rows, [np.take(qwords[:, k], qidx) for k in range(qwords.shape[1])], radius)
        return qidx[hit], rows[hit].astype(np.int64), dist, total

    def merge(self, columns, n):
        """Insert rows [self.n, n) (given as word columns) into every chunk's buckets in place: O(rows)
        copying, no sort of the table."""
        new_rows = np.arange(self.n, n, dtype=np.int64)
        for j, width in enumerate(self.widths):
            values = self.chunk_values(columns, j)
            order = np.argsort(values, kind="stable")
            values, fresh = values[order], new_rows[order]
            table = self.offsets.table(j)
            segment = self.ids[self.segment_base[j]:self.segment_base[j] + n]
            # Each new row goes to the end of its bucket (before the start of the next one).
            merged = np.insert(segment[:self.n], table[values + 1], fresh.astype(np.int32))
            segment[:] = merged
            table[1:] += np.cumsum(np.bincount(values, minlength=2 ** width))
            self.offsets.store(j, table)
        self.n = n


class _Offsets:
    """The bucket offsets of every chunk: where each chunk value's rows start in `ids`, and one past the end.

    Stored compactly (two bytes an entry instead of four, which is what lets chunks be wide) as an int32
    base per block of BLOCK consecutive entries plus a uint16 offset from it; if a block ever spans more
    than 65,535 rows (a very crowded stretch of chunk values), everything is widened to plain int32.
    """

    SHIFT = 8
    BLOCK = 1 << SHIFT
    STORE_STEP = BLOCK << 12  # entries converted at a time (a multiple of BLOCK)

    def __init__(self, widths):
        self.widths = list(widths)
        self.sizes = self.entry_counts(widths)
        self.base = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.fine = np.zeros(sum(self.sizes), dtype=np.uint16)
        self.coarse = np.zeros(sum(self.sizes) // self.BLOCK, dtype=np.int32)
        self.full = None

    @classmethod
    def entry_counts(cls, widths):
        """Entries of each chunk's offsets: 2**width + 1, rounded up to whole blocks."""
        return [-(-(2 ** w + 1) // cls.BLOCK) * cls.BLOCK for w in widths]

    @classmethod
    def mapped(cls, widths, fine=None, coarse=None, full=None):
        """Offsets over saved arrays: `fine` and `coarse`, or `full`."""
        offsets = cls.__new__(cls)
        offsets.widths = list(widths)
        offsets.sizes = cls.entry_counts(widths)
        offsets.base = np.concatenate([[0], np.cumsum(offsets.sizes)[:-1]]).astype(np.int64)
        offsets.fine, offsets.coarse, offsets.full = fine, coarse, full
        return offsets

    def nbytes(self):
        if self.full is not None:
            return self.full.nbytes
        return self.fine.nbytes + self.coarse.nbytes

    def store(self, j, table):
        """Set chunk j's offsets from a (2**width + 1,) array (a slice at a time: no copy of it is made)."""
        lo, size, count = self.base[j], self.sizes[j], len(table)
        block = self.BLOCK
        starts = table[::block]
        spans = np.append(table[block - 1::block], table[-1])[:len(starts)] - starts
        if self.full is None and int(spans.max()) > 0xFFFF:
            self.full = self.coarse.repeat(block) + self.fine
            self.fine = self.coarse = None
        if self.full is not None:
            self.full[lo:lo + count] = table
            self.full[lo + count:lo + size] = table[-1]
            return
        coarse = self.coarse[lo // block:(lo + size) // block]
        coarse[:len(starts)] = starts
        coarse[len(starts):] = table[-1]
        fine = self.fine[lo:lo + size]
        step = self.STORE_STEP
        for first in range(0, count, step):
            piece = table[first:first + step]
            bases = coarse[first // block:first // block + -(-len(piece) // block)]
            fine[first:first + len(piece)] = piece - np.repeat(bases, block)[:len(piece)]
        fine[count:] = 0
        fine[count:len(starts) * block] = table[-1] - starts[-1]

    def table(self, j):
        """Chunk j's offsets as a (2**width + 1,) int64 array."""
        lo, stop = self.base[j], self.base[j] + 2 ** self.widths[j] + 1
        if self.full is not None:
            return self.full[lo:stop].astype(np.int64)
        coarse = self.coarse[lo // self.BLOCK:-(-stop // self.BLOCK)].repeat(self.BLOCK)[:stop - lo]
        return coarse.astype(np.int64) + self.fine[lo:stop]

    def lookup(self, keys):
        """(start, count) of the buckets at global entry numbers `keys` (any shape), as int64."""
        if self.full is not None:
            lo = np.take(self.full, keys).astype(np.int64)
            return lo, np.take(self.full, keys + 1) - lo
        block = keys >> self.SHIFT
        after = keys + 1
        # A bucket's end is in the same block as its start except for a block's last entry: the count
        # is the difference of the fine offsets, corrected by the two bases only for those few.
        count = np.take(self.fine, after).astype(np.int64)
        fine = np.take(self.fine, keys)
        count -= fine
        lo = np.take(self.coarse, block).astype(np.int64)
        lo += fine
        edge = np.flatnonzero(after & (self.BLOCK - 1) == 0)
        if len(edge):
            start = lo.reshape(-1)[edge] - fine.reshape(-1)[edge]  # the block's base
            count.reshape(-1)[edge] += np.take(self.coarse, block.reshape(-1)[edge] + 1) - start
        return lo, count


class _Plan:
    """Probes of every chunk up to a cap, and the choice of each query's own per-chunk radii.

    A group is the ring of probes of one chunk at one level (bits flipped). A query needs radius + 1
    groups, taken as a prefix of levels in each chunk: then sum(r_j + 1) > radius and pigeonhole
    holds. Which groups is decided per query from the bucket sizes it actually meets, so a chunk
    whose value falls in a crowded part of the table is probed narrowly and the others widely.
    """

    def __init__(self, widths, caps, table_base, segment_base):
        group_chunk, group_level, sizes = [], [], []
        for j, (width, cap) in enumerate(zip(widths, caps, strict=True)):
            for level in range(cap + 1):
                group_chunk.append(j)
                group_level.append(level)
                sizes.append(comb(width, level))
        self.group_level = np.array(group_level, dtype=np.int64)
        self.group = np.repeat(np.arange(len(sizes)), sizes)
        self.group_start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.chunk = np.repeat(np.array(group_chunk, dtype=np.int64), sizes)
        self.mask = np.concatenate([_masks(w, c) for w, c in zip(widths, caps, strict=True)])
        self.base = table_base[self.chunk]
        self.segment = segment_base[self.chunk]
        # Groups at level l > 0, and the same chunk's group at level l - 1 (the one before it).
        self.by_level = [np.nonzero(self.group_level == level)[0] for level in range(1, max(caps) + 1)]

    def choose(self, counts, radius):
        """(q, probes) bool: the probes each query uses, given its bucket sizes `counts` (q, probes)."""
        need = radius + 1
        if need >= len(self.group_level):
            return np.ones(counts.shape, dtype=bool)
        cost = np.add.reduceat(counts, self.group_start, axis=1).astype(np.int64)
        # A ring is worth taking only after the ones inside it: make the costs non-decreasing along
        # the levels of a chunk and break ties by level, so any threshold selects a prefix of levels.
        for groups in self.by_level:
            cost[:, groups] = np.maximum(cost[:, groups], cost[:, groups - 1])
        cost <<= 6
        cost += self.group_level
        kth = np.partition(cost, need - 1, axis=1)[:, need - 1:need]
        return np.take(cost <= kth, self.group, axis=1)
