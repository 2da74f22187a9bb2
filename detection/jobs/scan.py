"""Detection jobs: read an item, hash and match it, store what was found as signals.

Every job takes ids and re-reads its rows, and is safe to run twice or concurrently: the item
moves from `queued` to `scanned` by a conditional UPDATE in the same transaction that writes its
signals, so only one run's findings are ever stored.
"""

import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from rq.timeouts import BaseTimeoutException

from detection.detectors.hashing import (
    RejectedFile,
    fault_reason,
    hash_image,
    pack_orientations,
    unpack_orientations,
)
from detection.detectors.video import Limits, frame_hashes, sample_animation, sample_video
from detection.jobs.lease import renewed
from detection.match_signals import match_hashed
from detection.models import Item, ItemKind, ItemStatus, Signal
from detection.termlists import item_text_signals
from reviewconsole.queueing import enqueue_now, kick, kicked
from reviewconsole.storage import read_original

log = logging.getLogger(__name__)


def claim_items(limit, item_ids=None):
    """Claim up to `limit` queued items that no live scan holds. Returns (items, token)."""
    now = timezone.now()
    free = Q(status=ItemStatus.QUEUED) & (
        Q(scan_started_at__isnull=True) | Q(scan_started_at__lt=now - timedelta(seconds=settings.SCAN_LEASE_SECONDS))
    )
    candidates = Item.objects.filter(free)
    if item_ids is not None:
        candidates = candidates.filter(pk__in=item_ids)
    # Oldest first, in the order of the partial index on queued items: ordering by pk would
    # walk every item ever scanned to find the few still queued.
    oldest = candidates.order_by("enqueued_at", "pk")
    token = uuid.uuid4().hex
    if connection.vendor == "postgresql":
        ids = _claim_skipping_locked(oldest, limit, token, now)
        if not ids:
            return [], ""
    else:
        ids = list(oldest.values_list("pk", flat=True)[:limit])
        if not ids:
            return [], ""
        with transaction.atomic():
            # Conditional: of two scans that picked the same ids, each row goes to exactly one.
            Item.objects.filter(free, pk__in=ids).update(
                scan_token=token, scan_started_at=now, scan_attempts=F("scan_attempts") + 1
            )
    claimed = Item.objects.filter(pk__in=ids, scan_token=token, status=ItemStatus.QUEUED).select_related("account")
    return list(claimed.order_by("pk")), token


def _claim_skipping_locked(oldest, limit, token, now):
    """PostgreSQL: pick and claim in one statement, rows another claim is taking skipped (SKIP LOCKED)
    rather than waited for and then lost. The picking re-checks each row once it holds its lock, so
    a row goes to exactly one claim, as with the conditional UPDATE. Returns the ids claimed."""
    with transaction.atomic():
        picked = oldest.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit]
        sql, params = picked.query.sql_with_params()
        table, quote = Item._meta.db_table, connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {quote(table)} SET scan_token = %s, scan_started_at = %s, "
                           f"scan_attempts = scan_attempts + 1 WHERE {quote('id')} IN ({sql}) RETURNING {quote('id')}",
                           [token, now, *params])
            return [pk for (pk,) in cursor.fetchall()]


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
    # Signals are committed untriaged; handing them to triage every few seconds rather than every
    # batch lets one triage run put a burst of an account's items into its case at once.
    untriaged, triage_at = [], time.monotonic() + settings.SCAN_TRIAGE_SECONDS
    try:
        while time.monotonic() < deadline:
            if untriaged and time.monotonic() >= triage_at:
                enqueue_now("cases.jobs.triage_signals", untriaged, queue="triage")
                untriaged, triage_at = [], time.monotonic() + settings.SCAN_TRIAGE_SECONDS
            if not _scan_next_batch(counts, untriaged, deadline):
                return counts
    finally:
        if untriaged:
            enqueue_now("cases.jobs.triage_signals", untriaged, queue="triage")
    kick(f"scan:{slot}", "detection.jobs.scan.scan_pending", slot, queue="scan")  # out of time, work remains
    return counts


def _scan_next_batch(counts, untriaged, deadline):
    """Claim and scan one batch; False when nothing was left to claim."""
    items, token = claim_items(settings.SCAN_BATCH)
    if not items:
        return False
    retried = [item for item in items if item.scan_attempts > 1]
    if retried and len(items) > 1:
        # Its earlier scan never finished: this may be the file that killed that worker. It goes
        # alone, so that it cannot take a batch of innocent items down with it again.
        hand_back(token, [item.pk for item in items if item is not retried[0]])
        items = retried[:1]
    outcomes, signal_ids = scan_claimed(items, token, deadline)
    for outcome in outcomes:
        counts[outcome] += 1
    untriaged += signal_ids
    return True


def scan_claimed(items, token, deadline=None):
    """Hash, match and store claimed items: hashing one by one, the database work once per batch.

    Items not reached by `deadline` (time.monotonic) are handed back. Returns (outcome per item,
    ids of the new signals).
    """
    # A batch of large files or videos could outlast the job's timeout: hashing stops when the
    # budget is spent and the rest goes back untouched for the next claim. The lease does not bound
    # the batch: a heartbeat renews the claim while the batch hashes and matches, so a lease a few
    # heartbeats long frees a dead worker's items soon after it died.
    budget = deadline or time.monotonic() + settings.SCAN_JOB_SECONDS
    with renewed(held(items, token), settings.SCAN_LEASE_SECONDS):
        hashed, rejected, released = _hash_all(items, budget)
        matched = match_hashed(hashed)
        texts = text_item_signals(hashed)
    # The heartbeat has stopped: renewing rows the store is updating would only wait on its locks.
    outcomes, signals = {}, []
    now = timezone.now()
    with transaction.atomic():
        mine = Item.objects.filter(status=ItemStatus.QUEUED, scan_token=token)
        ours = _mark_scanned(mine, token, [item.pk for item, _ in hashed], now)
        for item, fields in hashed:
            if item.pk not in ours:
                outcomes[item.pk] = "skipped"  # our claim lapsed and another scan took the item
                continue
            for name, value in fields.items():
                setattr(item, name, value)
            signals += matched.signals(item)
            signals += texts.get(item.pk, [])
            outcomes[item.pk] = "scanned"
        # A hash-only item came with its hashes: its row holds them already, nothing to write back.
        _store_fields([(item, fields) for item, fields in hashed if item.pk in ours and not item.hash_only])
        for pk, reason in rejected.items():
            done = mine.filter(pk=pk).update(status=ItemStatus.REJECTED, reject_reason=reason[:500], scanned_at=now)
            outcomes[pk] = "rejected" if done else "skipped"
            if done:
                log.info("item %s rejected: %s", pk, reason)
        created = Signal.objects.bulk_create(signals)
    if released:
        hand_back(token, released)
        outcomes.update(dict.fromkeys(released, "skipped"))
    if "scanned" in outcomes.values():  # scanned imagery waits for the classifiers (detection.classify)
        slot = int(token[:8], 16) % settings.CLASSIFY_SLOTS
        kick(f"classify:{slot}", "detection.jobs.classify.classify_pending", slot, queue="classify")
    return [outcomes[item.pk] for item in items], [s.pk for s in created]


def held(items, token):
    """The claimed items this claim still holds: not yet stored, and not taken over after a lapse."""
    return Item.objects.filter(pk__in=[item.pk for item in items], status=ItemStatus.QUEUED, scan_token=token)


def _hash_all(items, budget):
    """Hash the claimed items in turn until `budget` (time.monotonic) is spent.

    Returns ([(item, hash fields)], {item id: reject reason}, [ids of items not reached]).
    """
    hashed, rejected, released = [], {}, []
    for item in items:
        if (hashed or rejected) and time.monotonic() > budget:
            released.append(item.pk)
            continue
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
        except (BaseTimeoutException, DatabaseError, OSError):
            raise  # the job's time is up, or the database or the evidence store failed: not this file's doing
        except Exception as exc:
            # Anything else raised while decoding or hashing this one file (the detectors turn their
            # decoders' faults into RejectedFile; this is the net under them): the file is rejected
            # with the reason, and the rest of the batch goes on.
            log.exception("item %s: decoding failed", item.pk)
            rejected[item.pk] = fault_reason(exc)
    return hashed, rejected, released


def hand_back(token, pks):
    """Release claimed items unscanned, as if this claim had never been made."""
    Item.objects.filter(pk__in=pks, status=ItemStatus.QUEUED, scan_token=token).update(
        scan_token="", scan_started_at=None, scan_attempts=F("scan_attempts") - 1)


def _mark_scanned(mine, token, pks, now):
    """Move the items still claimed by `token` to scanned in one statement; returns their pks.

    Conditional like the claim: an item whose lease lapsed and that another scan took carries
    that scan's token, so it is neither updated nor returned.
    """
    if not pks:
        return set()
    mine.filter(pk__in=pks).update(status=ItemStatus.SCANNED, scanned_at=now)
    return set(Item.objects.filter(pk__in=pks, scan_token=token, status=ItemStatus.SCANNED, scanned_at=now)
               .values_list("pk", flat=True))


def _store_fields(hashed):
    """Write every item's hash fields with one prepared UPDATE run for the whole batch.

    An ORM update per item costs more than a millisecond of query building, and bulk_update's
    CASE expressions more still; executemany reuses one statement.
    """
    names = sorted({name for _, fields in hashed for name in fields})
    if not names:
        return
    fields = [Item._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    sql = (f"UPDATE {quote(Item._meta.db_table)} SET "
           + ", ".join(f"{quote(field.column)} = %s" for field in fields)
           + f" WHERE {quote(Item._meta.pk.column)} = %s")
    rows = [[field.get_db_prep_save(getattr(item, field.attname), connection) for field in fields] + [item.pk]
            for item, _ in hashed]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _hash_fields(item):
    if item.kind == ItemKind.TEXT:
        return {}
    if item.hash_only:
        # The platform hashed at its edge and sent no bytes: the hashes came in with the item.
        item.pdq_variants = unpack_orientations(item.pdq_orientations) if item.pdq_orientations else ()
        fields = {"pdq": item.pdq, "pdq_quality": item.pdq_quality}
        if item.frame_hashes:  # vPDQ frames sent for a video: matched as a scanned video's frames are
            fields["frame_hashes"] = item.frame_hashes
        return fields
    data = read_original(item.storage_path)
    if item.kind == ItemKind.VIDEO:
        return _video_fields(data)
    hashes = hash_image(data, max_pixels=settings.IMAGE_MAX_PIXELS, max_frames=settings.IMAGE_MAX_FRAMES)
    # Not columns, so kept on the instance: the query matches every orientation of the picture,
    # and explanations say when bars were cut off first.
    item.pdq_variants, item.trimmed = hashes.pdq_variants, hashes.trimmed
    return _animation_fields(data, hashes) | {
        "detected_format": hashes.format,
        "width": hashes.width,
        "height": hashes.height,
        "pdq": hashes.pdq,
        "pdq_quality": hashes.pdq_quality,
        "phash": hashes.phash,
        "dhash": hashes.dhash,
        "pdq_orientations": pack_orientations(hashes.pdq_variants),
    }


def text_item_signals(hashed):
    """Text items' term hits, by item id: matched before the transaction so that it stays short."""
    return {item.pk: item_text_signals(item) for item, _ in hashed if item.kind == ItemKind.TEXT}


def _video_fields(data):
    sampled = sample_video(data, Limits.from_settings(settings))  # a file that does not decode is rejected here
    return {"detected_format": sampled.format, "width": sampled.width, "height": sampled.height,
            "frame_hashes": _oriented_frame_hashes(sampled)}


def _animation_fields(data, hashes):
    """Frame hashes of an animated GIF, WebP or PNG; its first frame keeps the still-image hashes."""
    if hashes.frames <= 1:
        return {}
    sampled = sample_animation(data, Limits.from_settings(settings), max_pixels=settings.IMAGE_MAX_PIXELS,
                               max_source_frames=settings.IMAGE_MAX_FRAMES)
    return {"frame_hashes": _oriented_frame_hashes(sampled)} if sampled else {}


def _oriented_frame_hashes(sampled):
    """Frames trimmed and turned as stills are: a known picture shown inside a video or an animation
    is as often pillarboxed, mirrored or rotated as one shared on its own."""
    return frame_hashes(sampled.frames, orientations=True, min_quality=settings.PDQ_MIN_QUALITY,
                        size=(sampled.width, sampled.height))
