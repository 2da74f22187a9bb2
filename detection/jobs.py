"""Detection jobs: read an item, hash and match it, store what was found as signals.

Every job takes ids and re-reads its rows, and is safe to run twice or concurrently: the item
moves from `queued` to `scanned` by a conditional UPDATE in the same transaction that writes its
signals, so only one run's findings are ever stored.
"""

import logging
import time
import uuid
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from cases.models import Item, ItemKind, ItemStatus, Signal, SignalKind
from cases.storage import read_original
from reviewconsole.queueing import enqueue_now, kick, kicked

from . import matching
from .hashing import RejectedFile, hash_image
from .models import HashType
from .video import sample_frames

log = logging.getLogger(__name__)

# How much one hash type's agreement counts: exact and PDQ matches are strong evidence,
# pHash and dHash are second opinions.
HASH_WEIGHT = {HashType.MD5: 1.0, HashType.SHA256: 1.0, HashType.PDQ: 1.0, HashType.PHASH: 0.7, HashType.DHASH: 0.6}
VIDEO_MAGIC = [(4, b"ftyp", "MP4/MOV"), (0, b"\x1a\x45\xdf\xa3", "WebM/Matroska")]


def claim_items(limit, item_ids=None):
    """Claim up to `limit` queued items that no live scan holds. Returns (items, token)."""
    now = timezone.now()
    free = Q(status=ItemStatus.QUEUED) & (
        Q(scan_started_at__isnull=True) | Q(scan_started_at__lt=now - timedelta(seconds=settings.SCAN_LEASE_SECONDS))
    )
    candidates = Item.objects.filter(free)
    if item_ids is not None:
        candidates = candidates.filter(pk__in=item_ids)
    ids = list(candidates.order_by("pk").values_list("pk", flat=True)[:limit])
    if not ids:
        return [], ""
    token = uuid.uuid4().hex
    with transaction.atomic():
        # Conditional: of two scans that picked the same ids, each row goes to exactly one.
        Item.objects.filter(free, pk__in=ids).update(
            scan_token=token, scan_started_at=now, scan_attempts=F("scan_attempts") + 1
        )
    return list(Item.objects.filter(scan_token=token, status=ItemStatus.QUEUED).select_related("account")), token


def scan_item(item_id):
    """Scan one item now. Returns scanned, rejected or skipped (someone else has or had it)."""
    items, token = claim_items(1, item_ids=[item_id])
    if not items:
        return "skipped"
    outcomes, signal_ids = scan_claimed(items, token)
    if signal_ids:
        enqueue_now("cases.jobs.triage_signals", signal_ids, queue="triage")
    return outcomes[0]


def scan_pending(slot=0):
    """Scan queued items in claimed batches until none are left or the time budget is spent.

    One job scans many items: RQ's own bookkeeping costs several milliseconds a job, as much as
    hashing an image, so a job per item would halve throughput.
    """
    kicked(f"scan:{slot}", queue="scan")  # from here on, new items kick a fresh job
    deadline = time.monotonic() + settings.SCAN_JOB_SECONDS
    counts = {"scanned": 0, "rejected": 0, "skipped": 0}
    while time.monotonic() < deadline:
        items, token = claim_items(settings.SCAN_BATCH)
        if not items:
            return counts
        outcomes, signal_ids = scan_claimed(items, token)
        for outcome in outcomes:
            counts[outcome] += 1
        if signal_ids:
            enqueue_now("cases.jobs.triage_signals", signal_ids, queue="triage")
    kick(f"scan:{slot}", "detection.jobs.scan_pending", slot, queue="scan")  # out of time, work remains
    return counts


def scan_claimed(items, token):
    """Hash, match and store claimed items: hashing one by one, the database work once per batch.

    Returns (outcome per item, ids of the new signals).
    """
    hashed, rejected = [], {}
    for item in items:
        if item.scan_attempts > settings.SCAN_MAX_ATTEMPTS:
            # Earlier runs started and never finished: the file kills or hangs the worker.
            rejected[item.pk] = (f"scan did not finish in {settings.SCAN_MAX_ATTEMPTS} attempts; "
                                 "the file may crash or hang the decoder")
            continue
        try:
            hashed.append((item, _hash_fields(item)))
        except RejectedFile as exc:
            rejected[item.pk] = str(exc)
        except FileNotFoundError:
            rejected[item.pk] = "original file is missing from the evidence store"
    found = matching.find_matches_many([
        {"md5": item.md5, "sha256": item.sha256, "pdq": fields.get("pdq", ""),
         "pdq_usable": (fields.get("pdq_quality") or 0) >= settings.PDQ_MIN_QUALITY,
         "phash": fields.get("phash", ""), "dhash": fields.get("dhash", "")}
        for item, fields in hashed
    ])
    outcomes, signals = {}, []
    now = timezone.now()
    with transaction.atomic():
        mine = Item.objects.filter(status=ItemStatus.QUEUED, scan_token=token)
        for (item, fields), (matches, banks) in zip(hashed, found, strict=True):
            if not mine.filter(pk=item.pk).update(status=ItemStatus.SCANNED, scanned_at=now, **fields):
                outcomes[item.pk] = "skipped"  # our claim lapsed and another scan took the item
                continue
            for name, value in fields.items():
                setattr(item, name, value)
            signals += build_match_signals(item, matches, banks)
            outcomes[item.pk] = "scanned"
        for pk, reason in rejected.items():
            done = mine.filter(pk=pk).update(status=ItemStatus.REJECTED, reject_reason=reason[:500], scanned_at=now)
            outcomes[pk] = "rejected" if done else "skipped"
            if done:
                log.info("item %s rejected: %s", pk, reason)
        created = Signal.objects.bulk_create(signals)
    return [outcomes[item.pk] for item in items], [s.pk for s in created]


def _hash_fields(item):
    if item.kind == ItemKind.TEXT:
        return {}
    data = read_original(item.storage_path)
    if item.kind == ItemKind.VIDEO:
        for offset, magic, name in VIDEO_MAGIC:
            if data[offset:offset + len(magic)] == magic:
                first = sample_frames(data, count=1)[0]  # a file that does not decode is rejected here
                return {"detected_format": name, "width": first.width, "height": first.height}
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
