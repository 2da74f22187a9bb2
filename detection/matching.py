"""Match an item's hashes against the enabled banks.

Exact hashes (MD5, SHA-256) are looked up in the database by index. Perceptual hashes are held in
memory per worker as packed bit arrays and compared by XOR and popcount with numpy; the arrays are
reloaded when the banks change (checked at most every INDEX_CHECK_SECONDS).
"""

import time
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Max

from .models import Bank, BankHash, HashType

INDEX_CHECK_SECONDS = 2.0
PERCEPTUAL = (HashType.PDQ, HashType.PHASH, HashType.DHASH)


@dataclass
class HashMatch:
    bank_id: int
    bank_hash_id: int
    hash_type: str
    value: str
    distance: int
    threshold: int


@dataclass
class _Arrays:
    ids: np.ndarray
    bank_ids: np.ndarray
    bits: np.ndarray  # (n, bytes) uint8
    values: list = field(default_factory=list)


class BankIndex:
    def __init__(self):
        self.stamp = None
        self.checked_at = 0.0
        self.arrays = {}
        self.banks = {}

    def _current_stamp(self):
        agg = Bank.objects.aggregate(updated=Max("updated_at"), top=Max("id"))
        return (BankHash.objects.aggregate(top=Max("id"))["top"], agg["updated"], agg["top"])

    def refresh(self, force=False):
        now = time.monotonic()
        if not force and self.stamp is not None and now - self.checked_at < INDEX_CHECK_SECONDS:
            return
        self.checked_at = now
        stamp = self._current_stamp()
        if stamp == self.stamp and not force:
            return
        self.banks = {bank.pk: bank for bank in Bank.objects.filter(enabled=True)}
        arrays = {}
        for hash_type in PERCEPTUAL:
            rows = list(
                BankHash.objects.filter(hash_type=hash_type, bank__in=list(self.banks))
                .values_list("id", "bank_id", "value")
                .iterator(chunk_size=10_000)
            )
            nbytes = 32 if hash_type == HashType.PDQ else 8
            bits = np.zeros((len(rows), nbytes), dtype=np.uint8)
            for i, (_, _, value) in enumerate(rows):
                bits[i] = np.frombuffer(bytes.fromhex(value), dtype=np.uint8)
            arrays[hash_type] = _Arrays(
                ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                bank_ids=np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
                bits=bits,
                values=[r[2] for r in rows],
            )
        self.arrays = arrays
        self.stamp = stamp

    def match_perceptual(self, hash_type, value):
        arrays = self.arrays.get(hash_type)
        if arrays is None or not len(arrays.ids) or not value:
            return []
        query = np.frombuffer(bytes.fromhex(value), dtype=np.uint8)
        distances = np.bitwise_count(arrays.bits ^ query).sum(axis=1, dtype=np.int32)
        thresholds = np.array(
            [self.banks[b].threshold_for(hash_type) for b in arrays.bank_ids.tolist()], dtype=np.int32
        ) if len(self.banks) > 1 else self._single_threshold(hash_type, len(arrays.ids))
        hits = np.nonzero(distances <= thresholds)[0]
        return [
            HashMatch(
                bank_id=int(arrays.bank_ids[i]),
                bank_hash_id=int(arrays.ids[i]),
                hash_type=hash_type,
                value=arrays.values[i],
                distance=int(distances[i]),
                threshold=self.banks[int(arrays.bank_ids[i])].threshold_for(hash_type),
            )
            for i in hits.tolist()
        ]

    def _single_threshold(self, hash_type, n):
        (bank,) = self.banks.values()
        return np.full(n, bank.threshold_for(hash_type), dtype=np.int32)


_index = BankIndex()


def invalidate():
    _index.stamp = None


def match_exact(pairs, bank_ids):
    """Exact MD5/SHA-256 matches for many (md5, sha256) pairs in one query: {value: [HashMatch]}."""
    found = {}
    values = {v for pair in pairs for v in pair}
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


def find_matches_many(queries):
    """For each query dict (md5, sha256, pdq, pdq_usable, phash, dhash): (matches, {bank_id: Bank})."""
    _index.refresh()
    exact = match_exact([(q["md5"], q["sha256"]) for q in queries], list(_index.banks))
    results = []
    for q in queries:
        matches = exact.get(q["md5"], []) + exact.get(q["sha256"], [])
        if q.get("pdq_usable"):
            matches += _index.match_perceptual(HashType.PDQ, q.get("pdq"))
        matches += _index.match_perceptual(HashType.PHASH, q.get("phash"))
        matches += _index.match_perceptual(HashType.DHASH, q.get("dhash"))
        bank_ids = {m.bank_id for m in matches}
        banks = {pk: bank for pk, bank in _index.banks.items() if pk in bank_ids}
        missing = bank_ids - set(banks)
        if missing:
            banks.update(Bank.objects.in_bulk(missing))
        results.append((matches, banks))
    return results
