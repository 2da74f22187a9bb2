"""Classification jobs: run the configured image classifiers on scanned items and store their findings.

A classifier alone never actions anything: its signal opens or raises a case in the new-content
queue, and a reviewer decides.

Claiming. The pending work is `status = scanned, classified_at IS NULL`, images and videos whose
bytes are held (a hash-only item has none). A job claims items the way scans do, by a conditional
UPDATE of the item's claim pair `scan_token` / `scan_started_at`: a scan
only ever claims `queued` items and classification only `scanned` ones, so the pair is free for
classification once the scan has finished, and the two can never hold the same item at once (a
rescan that moves the item back to `queued` simply makes our conditional store find nothing). A
classification token reads `cls<attempt>-<random>`: the attempt count lives in the token, so no
extra column is needed, and an item whose classification keeps failing or killing its worker is
given up after CLASSIFY_MAX_ATTEMPTS starts instead of being retried for ever. A running batch
renews its claims (a heartbeat, detection.jobs.lease), so a claim lapses CLASSIFY_LEASE_SECONDS after
its worker died however slow the batch; an item whose classification failed keeps its claim until
CLASSIFY_RETRY_SECONDS have passed, and is then tried again.
"""

import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rq.timeouts import BaseTimeoutException

from detection import classifiers
from detection.detectors.hashing import RejectedFile, open_image
from detection.detectors.video import Limits, sample_animation, sample_frames, spread
from detection.jobs.lease import renewed
from detection.models import Item, ItemKind, ItemStatus, Signal, SignalKind
from reviewconsole.queueing import enqueue_now, kick, kicked
from reviewconsole.storage import read_original

log = logging.getLogger(__name__)

TOKEN_PREFIX = "cls"  # never in a scan's token, which is hex
# Classifiers look at small images (NudeNet at 320 px): decode no larger than needed.
IMAGE_SIDE = 320
MAX_DETAIL_DETECTIONS = 10


class GiveUp(Exception):
    """This item cannot be classified and trying again will not change that."""


def pending():
    # Never pending, a hash-only item is neither claimed nor counted by the sweep as waiting.
    return Item.objects.filter(status=ItemStatus.SCANNED, kind__in=(ItemKind.IMAGE, ItemKind.VIDEO),
                               classified_at__isnull=True, purged_at__isnull=True, hash_only=False)


def _free(now):
    lapsed = now - timedelta(seconds=settings.CLASSIFY_LEASE_SECONDS)
    return (~Q(scan_token__startswith=TOKEN_PREFIX) | Q(scan_started_at__isnull=True)
            | Q(scan_started_at__lt=lapsed))


def attempts_of(token):
    """How many classification runs have started on an item holding this token."""
    if not token.startswith(TOKEN_PREFIX):
        return 0
    head = token[len(TOKEN_PREFIX):].split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def claim_items(limit, item_ids=None):
    """Claim up to `limit` pending items that no live classification holds. Returns {item: token}."""
    now = timezone.now()
    candidates = pending().filter(_free(now))
    if item_ids is not None:
        candidates = candidates.filter(pk__in=item_ids)
    rows = list(candidates.order_by("pk").values_list("pk", "scan_token")[:limit])
    if not rows:
        return {}
    claim = uuid.uuid4().hex[:24]
    tokens = {pk: f"{TOKEN_PREFIX}{attempts_of(old) + 1}-{claim}" for pk, old in rows}
    with transaction.atomic():
        by_token = {}
        for pk, token in tokens.items():
            by_token.setdefault(token, []).append(pk)
        for token, ids in by_token.items():
            # Conditional: of two jobs that picked the same ids, each row goes to exactly one.
            pending().filter(_free(now), pk__in=ids).update(scan_token=token, scan_started_at=now)
    items = pending().filter(pk__in=list(tokens)).select_related("account")
    return {item: item.scan_token for item in items if item.scan_token == tokens[item.pk]}


def classify_pending(slot=0):
    """Classify scanned items in claimed batches until none are left or the time budget is spent."""
    kicked(f"classify:{slot}", queue="classify")  # from here on, new scans kick a fresh job
    counts = {"classified": 0, "flagged": 0, "known": 0, "failed": 0, "given_up": 0, "skipped": 0}
    if not classifiers.configured():
        return counts  # classification is switched off; items wait for a classifier to be configured
    deadline = time.monotonic() + settings.CLASSIFY_JOB_SECONDS
    while time.monotonic() < deadline:
        claimed = claim_items(settings.CLASSIFY_BATCH)
        if not claimed:
            return counts
        outcomes, signal_ids = classify_claimed(claimed)
        for outcome in outcomes.values():
            counts[outcome] += 1
        if signal_ids:
            enqueue_now("cases.jobs.triage_signals", signal_ids, queue="triage")
    kick(f"classify:{slot}", "detection.jobs.classify.classify_pending", slot, queue="classify")  # work remains
    return counts


def classify_item(item_id):
    """Classify one item now (if pending and free). Returns its outcome, or "skipped"."""
    claimed = claim_items(1, item_ids=[item_id])
    if not claimed:
        return "skipped"
    outcomes, signal_ids = classify_claimed(claimed)
    if signal_ids:
        enqueue_now("cases.jobs.triage_signals", signal_ids, queue="triage")
    return outcomes[item_id]


def classify_claimed(claimed):
    """Run every classifier on claimed items; store verdicts once per batch.

    Returns ({item id: outcome}, ids of the new signals). Outcomes: flagged, classified (below
    every threshold), known (a hash match already says more), failed (will be retried), given_up.
    """
    configured = classifiers.configured()
    known = set(Signal.objects.filter(item_id__in=[i.pk for i in claimed], kind=SignalKind.HASH_MATCH)
                .values_list("item_id", flat=True))
    verdicts, outcomes = {}, {}
    with renewed(held(claimed), settings.CLASSIFY_LEASE_SECONDS):  # however long the videos take
        for item, token in claimed.items():
            attempt = attempts_of(token)
            if item.pk in known:
                verdicts[item.pk] = []
                outcomes[item.pk] = "known"  # the match routes it to known material; save the CPU
            elif attempt > settings.CLASSIFY_MAX_ATTEMPTS:
                log.error("item %s: classification gave up: %s runs started and none finished; the file may "
                          "crash or hang the classifier", item.pk, settings.CLASSIFY_MAX_ATTEMPTS)
                verdicts[item.pk] = []
                outcomes[item.pk] = "given_up"
            else:
                try:
                    verdicts[item.pk] = classify_media(item, configured)
                    outcomes[item.pk] = "flagged" if verdicts[item.pk] else "classified"
                except BaseTimeoutException:
                    raise  # the job ran out of time: the claims lapse and the items are retried
                except GiveUp as exc:
                    log.warning("item %s: not classified: %s", item.pk, exc)
                    verdicts[item.pk] = []
                    outcomes[item.pk] = "given_up"
                except Exception as exc:  # a detector error, a missing file: retried later
                    last = attempt >= settings.CLASSIFY_MAX_ATTEMPTS
                    log.log(logging.ERROR if last else logging.WARNING,
                            "item %s: classification attempt %s of %s failed: %s: %s", item.pk, attempt,
                            settings.CLASSIFY_MAX_ATTEMPTS, type(exc).__name__, exc)
                    outcomes[item.pk] = "given_up" if last else "failed"
                    if last:
                        verdicts[item.pk] = []
    return _store(claimed, verdicts, outcomes)


def held(claimed):
    """The claimed items this run still holds: not yet stored, and not taken over after a lapse."""
    return pending().filter(pk__in=[item.pk for item in claimed], scan_token__in=set(claimed.values()))


def _store(claimed, verdicts, outcomes):
    now = timezone.now()
    # A failed item keeps its claim, dated so that it lapses (and the item is retried) once
    # CLASSIFY_RETRY_SECONDS have passed: a storage hiccup gets time to clear.
    retry = now + timedelta(seconds=settings.CLASSIFY_RETRY_SECONDS - settings.CLASSIFY_LEASE_SECONDS)
    signals = []
    with transaction.atomic():
        for item, token in claimed.items():
            if item.pk not in verdicts:
                pending().filter(pk=item.pk, scan_token=token).update(scan_started_at=retry)
                continue
            # Releasing the claim lets a later request (classified_at cleared again) start afresh.
            done = pending().filter(pk=item.pk, scan_token=token).update(classified_at=now, scan_token="")
            if not done:
                outcomes[item.pk] = "skipped"  # our claim lapsed and another run took the item
                continue
            signals += [build_signal(item, result, severity, frames) for result, severity, frames in verdicts[item.pk]]
        existing = set(Signal.objects.filter(dedupe_key__in=[s.dedupe_key for s in signals])
                       .values_list("dedupe_key", flat=True))
        created = Signal.objects.bulk_create([s for s in signals if s.dedupe_key not in existing])
    return outcomes, [s.pk for s in created]


def classify_media(item, configured):
    """[(strongest result, severity, frames looked at)] for each classifier whose threshold it passed."""
    try:
        data = read_original(item.storage_path)
        frames = video_frames(data) if item.kind == ItemKind.VIDEO else image_frames(data)
    except RejectedFile as exc:
        raise GiveUp(str(exc)) from None
    found = []
    for entry in configured:
        best = None
        for index, frame in enumerate(frames):
            result = entry.classifier.classify(frame)
            if best is None or result.score > best[0].score:
                best = (result, index)
        result, index = best
        if result.passed:
            found.append((result, entry.severity, {"count": len(frames), "strongest": index}))
    return found


def image_frames(data):
    """The image, or a few frames spread over an animation, decoded safely at the size classifiers use."""
    first, _fmt, _size, count = open_image(data, max_pixels=settings.IMAGE_MAX_PIXELS,
                                           max_frames=settings.IMAGE_MAX_FRAMES, short_side=IMAGE_SIDE)
    if count <= 1:
        return [first]
    sampled = sample_animation(data, Limits.from_settings(settings), max_pixels=settings.IMAGE_MAX_PIXELS,
                               max_source_frames=settings.IMAGE_MAX_FRAMES)
    if sampled is None or not sampled.frames:
        return [first]
    return [frame.image for frame in spread(sampled.frames, settings.CLASSIFY_VIDEO_FRAMES)]


def video_frames(data):
    return sample_frames(data, count=settings.CLASSIFY_VIDEO_FRAMES)


def build_signal(item, result, severity, frames):
    explanation = (f"{result.model} (version {result.version}): {result.label} {result.score:.2f} "
                   f"≥ threshold {result.threshold:.2f}")
    if frames["count"] > 1:
        explanation += f" (strongest of {frames['count']} sampled frames: frame {frames['strongest'] + 1})"
    return Signal(
        item=item,
        account=item.account,
        group_id=item.group_id,
        kind=SignalKind.CLASSIFIER,
        detector=result.detector,
        label=f"{result.title} {result.score:.2f}"[:128],
        score=round(result.score, 3),
        severity=severity,
        explanation=explanation,
        details={
            "model": result.model,
            "version": result.version,
            "threshold": result.threshold,
            "top_class": result.label,
            "frames": frames,
            "detections": [d.as_dict() for d in result.detections[:MAX_DETAIL_DETECTIONS]],
        },
        dedupe_key=f"item:{item.pk}:classifier:{result.detector}",
    )


def stale_count(cutoff):
    """Items scanned before `cutoff` and still waiting for a free classification run."""
    if not getattr(settings, "CLASSIFIERS", None):
        return 0
    return pending().filter(_free(timezone.now()), scanned_at__lte=cutoff).count()


def wake_all():
    """Kick every classification slot; the jobs claim their items from the database."""
    for slot in range(settings.CLASSIFY_SLOTS):
        kicked(f"classify:{slot}", queue="classify")  # a marker whose job was lost must not block this
        kick(f"classify:{slot}", "detection.jobs.classify.classify_pending", slot, queue="classify")
