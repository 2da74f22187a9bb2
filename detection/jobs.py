"""Detection jobs: read an item, hash and match it, store what was found as signals.

Every job takes ids and re-reads its rows, and is safe to run twice or concurrently: the item
moves from `queued` to `scanned` by a conditional UPDATE in the same transaction that writes its
signals, so only one run's findings are ever stored.
"""

import logging
from collections import defaultdict

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from cases.models import Item, ItemKind, ItemStatus, Signal, SignalKind
from cases.storage import read_original
from reviewconsole.queueing import enqueue

from . import matching
from .hashing import RejectedFile, hash_image
from .models import HashType

log = logging.getLogger(__name__)

# How much one hash type's agreement counts: exact and PDQ matches are strong evidence,
# pHash and dHash are second opinions.
HASH_WEIGHT = {HashType.MD5: 1.0, HashType.SHA256: 1.0, HashType.PDQ: 1.0, HashType.PHASH: 0.7, HashType.DHASH: 0.6}
VIDEO_MAGIC = [(4, b"ftyp", "MP4/MOV"), (0, b"\x1a\x45\xdf\xa3", "WebM/Matroska")]


def scan_item(item_id):
    """Scan one item. Returns a short word for logs and tests: scanned, rejected, skipped."""
    with transaction.atomic():
        started = Item.objects.filter(pk=item_id, status=ItemStatus.QUEUED).update(
            scan_attempts=F("scan_attempts") + 1
        )
    if not started:
        return "skipped"
    item = Item.objects.select_related("account").get(pk=item_id)
    if item.scan_attempts > settings.SCAN_MAX_ATTEMPTS:
        # Earlier runs started and never finished: the file kills or hangs the worker.
        return _reject(item, f"scan did not finish in {settings.SCAN_MAX_ATTEMPTS} attempts; "
                             "the file may crash or hang the decoder")
    try:
        fields = _hash_fields(item)
    except RejectedFile as exc:
        return _reject(item, str(exc))
    except FileNotFoundError:
        return _reject(item, "original file is missing from the evidence store")
    matches, banks = matching.find_matches(
        md5=item.md5,
        sha256=item.sha256,
        pdq=fields.get("pdq", ""),
        pdq_usable=(fields.get("pdq_quality") or 0) >= settings.PDQ_MIN_QUALITY,
        phash=fields.get("phash", ""),
        dhash=fields.get("dhash", ""),
    )
    with transaction.atomic():
        done = Item.objects.filter(pk=item_id, status=ItemStatus.QUEUED).update(
            status=ItemStatus.SCANNED, scanned_at=timezone.now(), **fields
        )
        if not done:
            return "skipped"
        for name, value in fields.items():
            setattr(item, name, value)
        signals = Signal.objects.bulk_create(build_match_signals(item, matches, banks))
        if signals:
            enqueue("cases.jobs.triage_signals", [s.pk for s in signals], queue="triage")
    return "scanned"


def _hash_fields(item):
    if item.kind == ItemKind.TEXT:
        return {}
    data = read_original(item.storage_path)
    if item.kind == ItemKind.VIDEO:
        for offset, magic, name in VIDEO_MAGIC:
            if data[offset:offset + len(magic)] == magic:
                return {"detected_format": name}
        raise RejectedFile("unsupported video: not MP4, MOV or WebM")
    hashes = hash_image(data, max_pixels=settings.IMAGE_MAX_PIXELS, max_frames=settings.IMAGE_MAX_FRAMES)
    return {
        "detected_format": hashes.format,
        "width": hashes.width,
        "height": hashes.height,
        "pdq": hashes.pdq,
        "pdq_quality": hashes.pdq_quality,
        "phash": hashes.phash,
        "dhash": hashes.dhash,
    }


def _reject(item, reason):
    with transaction.atomic():
        Item.objects.filter(pk=item.pk, status=ItemStatus.QUEUED).update(
            status=ItemStatus.REJECTED, reject_reason=reason[:500], scanned_at=timezone.now()
        )
    log.info("item %s rejected: %s", item.pk, reason)
    return "rejected"


def build_match_signals(item, matches, banks):
    """One signal per bank the item matched, explaining every hash that agreed and by how much."""
    by_bank = defaultdict(list)
    for match in matches:
        by_bank[match.bank_id].append(match)
    signals = []
    for bank_id, bank_matches in by_bank.items():
        bank = banks[bank_id]
        best = {}
        for match in bank_matches:
            if match.hash_type not in best or match.distance < best[match.hash_type].distance:
                best[match.hash_type] = match
        evidence = [_describe(m, item) for m in sorted(best.values(), key=lambda m: -HASH_WEIGHT[m.hash_type])]
        # Each further hash type that agrees corroborates the strongest one a little.
        score = min(1.0, max(_confidence(m) for m in best.values()) + 0.03 * (len(best) - 1))
        strongest = max(best.values(), key=_confidence)
        exact = any(t in best for t in (HashType.MD5, HashType.SHA256))
        signals.append(Signal(
            item=item,
            account=item.account,
            group_id=item.group_id,
            kind=SignalKind.HASH_MATCH,
            detector="hash_match",
            label=f"{'Exact' if exact else 'Near'} match, bank {bank.name}",
            score=round(score, 3),
            severity=bank.severity,
            explanation=f"Matches bank '{bank.name}': " + "; ".join(e["text"] for e in evidence) + ".",
            details={
                "bank": bank.name,
                "bank_id": bank.pk,
                "entry_id": strongest.bank_hash_id,
                "hashes": evidence,
                "pdq_quality": item.pdq_quality,
            },
            dedupe_key=f"item:{item.pk}:bank:{bank.pk}",
        ))
    return signals


def _confidence(match):
    if match.threshold == 0:
        return HASH_WEIGHT[match.hash_type]
    # At distance 0 the full weight; at the threshold still 70 % of it: a match is a match.
    return HASH_WEIGHT[match.hash_type] * (1 - 0.3 * match.distance / (match.threshold + 1))


def _describe(match, item):
    label = HashType(match.hash_type).label
    entry = {"type": match.hash_type, "entry_id": match.bank_hash_id, "distance": match.distance,
             "threshold": match.threshold}
    if match.threshold == 0:
        entry["text"] = f"{label} identical (entry #{match.bank_hash_id})"
    else:
        bits = 256 if match.hash_type == HashType.PDQ else 64
        entry["text"] = (f"{label} distance {match.distance} of {bits} bits ≤ threshold {match.threshold}"
                         f" (entry #{match.bank_hash_id})")
        if match.hash_type == HashType.PDQ:
            entry["text"] += f", quality {item.pdq_quality} ≥ {settings.PDQ_MIN_QUALITY}"
    return entry
