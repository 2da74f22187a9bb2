"""Retroactive jobs: new bank entries matched against the items already stored, and an actioned
account's media matched against every other account's and group's (sharing outward).

Both claim the row that says the work is pending (detection.models.retro) with a lease, and are safe
to run twice: a retroactive match is stored under the scan's own dedupe key, so it and a scan never
give two signals, and a shared-media signal under a key naming the item and the actioned account.
"""

import logging
import math
import time
import uuid
from collections import Counter, defaultdict
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from detection import matching, retro
from detection.detectors.hashing import DIHEDRAL, ORIENTATION_NAMES, unpack_orientations
from detection.detectors.index import parse_hex
from detection.detectors.vpdq import clock, usable_frames
from detection.match_signals import build_match_signals, entry_labels, match_video_frames, with_video_signals
from detection.models import (
    Account,
    BankHash,
    BankKind,
    HashType,
    Item,
    ItemKind,
    ItemStatus,
    RetroMatch,
    SharedMediaRequest,
    Signal,
    SignalKind,
)
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit
from reviewconsole.queueing import enqueue, enqueue_now, kick, kicked

log = logging.getLogger(__name__)

PAGE = 10_000  # entries searched together; the bank's mark moves after each page
CHUNK = 500  # candidate items matched again at a time
EXACT_BATCH = 1000


def lease_seconds():
    """A claim older than this belongs to a worker that died: the sweep hands the work on again."""
    return getattr(settings, "RETRO_LEASE_SECONDS", 900)


def job_seconds():
    """A run stops after this long and enqueues the rest, so that no job nears its timeout."""
    return getattr(settings, "RETRO_JOB_SECONDS", 600)


def _free():
    return Q(claimed_at__isnull=True) | Q(claimed_at__lt=timezone.now() - timedelta(seconds=lease_seconds()))


# New entries against stored items --------------------------------------------------------------

def retro_match(bank_id):
    """The job: match the bank's entries added since its last run against every stored item.

    Only entries that have settled (retro.settle_seconds) are matched; the rest wait for a later run,
    which this one enqueues. Returns the run's counts, or None when another run holds the bank or
    nothing is pending.
    """
    token = uuid.uuid4().hex
    if not RetroMatch.objects.filter(_free(), bank_id=bank_id, requested_at__isnull=False).update(
            claim_token=token, claimed_at=timezone.now()):
        return None
    counts, marks = Counter(entries=0, candidates=0, signals=0), []
    started = time.monotonic()
    again, finished = None, False
    try:
        index = retro.stored_index()
        looked_at = timezone.now()
        index.refresh()
        # A cold start reads and builds for minutes: the claim is renewed, as after every page.
        RetroMatch.objects.filter(bank_id=bank_id, claim_token=token).update(claimed_at=timezone.now())
        counts["index_rows"] = len(index)
        matching.invalidate()  # the entries to match must be in this worker's bank index too
        settled = looked_at - timedelta(seconds=retro.settle_seconds())
        deadline = started + job_seconds()
        while True:
            state = RetroMatch.objects.select_related("bank").filter(bank_id=bank_id, claim_token=token).first()
            if state is None:
                break  # the claim lapsed and another run has the bank
            entries = list(BankHash.objects.filter(bank_id=bank_id, pk__gt=state.matched_through).order_by("pk")
                           .values_list("pk", "hash_type", "value", "added_at")[:PAGE])
            ready = entries[:next((i for i, e in enumerate(entries) if e[3] > settled), len(entries))]
            if ready:
                marks.append((state.matched_through, ready[-1][0]))
                _match_entries(state, token, ready, index, counts)
            if len(ready) < len(entries):
                again = max(1, math.ceil((entries[len(ready)][3] - settled).total_seconds()))
                break
            if len(entries) == PAGE:
                if time.monotonic() > deadline:
                    again = 0
                    break
                continue
            finished = bool(RetroMatch.objects.filter(pk=state.pk, claim_token=token, requests=state.requests)
                            .update(requested_at=None))
            if finished:
                break
            # Requests came in while this run went on; their entries may lie below the mark.
    finally:
        _end_run(bank_id, token, counts, marks, started, finished=finished, waiting=again)
    if again is not None:
        enqueue_now(retro.RETRO_JOB, bank_id, queue=retro.queue_name(), delay=again, job_timeout=retro.JOB_TIMEOUT)
    return dict(counts)


def _end_run(bank_id, token, counts, marks, started, *, finished, waiting):
    """Release the claim, add the run's counts to the bank's totals, and audit the run if it did anything."""
    with transaction.atomic():
        state = RetroMatch.objects.select_for_update().select_related("bank").filter(
            bank_id=bank_id, claim_token=token).first()
        if state is None:
            return
        totals = Counter(state.totals)
        totals.update({k: v for k, v in counts.items() if k != "index_rows"})
        RetroMatch.objects.filter(pk=state.pk).update(claim_token="", claimed_at=None, runs=state.runs + 1,
                                                      last_run_at=timezone.now(), totals=dict(totals))
        if counts["entries"]:
            audit(None, Event.MATCH_RETROACTIVE, object_type="bank", object_id=bank_id, details={
                "bank": state.bank.name, "entries_from": marks[0][0] + 1, "entries_through": marks[-1][1],
                **dict(sorted(counts.items())), "seconds": round(time.monotonic() - started, 3),
                "finished": finished, **({"waiting_seconds": waiting} if waiting else {})})


def _match_entries(state, token, entries, index, counts):
    """Search one page of entries, store the signals of the items they match, move the bank's mark."""
    bank = state.bank
    by_type = defaultdict(list)
    for _, hash_type, value, _ in entries:
        by_type[hash_type].append(value)
    counts["entries"] += len(entries)
    for hash_type, values in by_type.items():
        counts[f"entries_{hash_type}"] += len(values)
    candidates = set()
    if bank.enabled and bank.kind != BankKind.ALLOW:
        # An allow-list entry excuses matches; it never makes one, so it has nothing to look for.
        if by_type[HashType.PDQ]:
            _, items, _ = index.search(parse_hex(by_type[HashType.PDQ], 256), bank.pdq_threshold)
            candidates.update(items.tolist())
        for field, hash_type in (("md5", HashType.MD5), ("sha256", HashType.SHA256)):
            values = by_type[hash_type]
            for start in range(0, len(values), EXACT_BATCH):
                candidates.update(Item.objects.filter(status=ItemStatus.SCANNED, **{
                    f"{field}__in": values[start:start + EXACT_BATCH]}).values_list("pk", flat=True))
    else:
        counts["entries_skipped"] += len(entries)
    counts["candidates"] += len(candidates)
    candidates = sorted(candidates)
    for start in range(0, len(candidates), CHUNK):
        _signal_items(bank, candidates[start:start + CHUNK], counts)
    moved = RetroMatch.objects.filter(pk=state.pk, claim_token=token, matched_through=state.matched_through).update(
        matched_through=entries[-1][0], claimed_at=timezone.now())
    if not moved:
        log.info("retro match of bank %s: the mark moved under this run; it goes round again", bank.pk)


def _stored_query(item):
    """The item's stored hashes as the scan's matching takes them."""
    item.pdq_variants = _orientations(item)
    return {"md5": item.md5, "sha256": item.sha256, "pdq": item.pdq, "pdq_usable": retro.usable(item.pdq_quality),
            "phash": item.phash, "dhash": item.dhash, "pdq_variants": list(item.pdq_variants)}


def _orientations(item):
    try:
        return unpack_orientations(bytes(item.pdq_orientations)) if item.pdq_orientations else ()
    except ValueError:
        return ()


def _signal_items(bank, item_ids, counts):
    """Match candidate items again exactly as a scan would, and store the signals for `bank`.

    Allow-list banks take part as at scan time; every other bank's matches are left to its own runs.
    """
    keys = {pk: f"item:{pk}:bank:{bank.pk}" for pk in item_ids}
    done = set(Signal.objects.filter(dedupe_key__in=list(keys.values())).values_list("dedupe_key", flat=True))
    counts["already_signalled"] += len(done)
    items = Item.objects.filter(pk__in=[pk for pk, key in keys.items() if key not in done], status=ItemStatus.SCANNED)
    if bank.kind == BankKind.LOCAL:
        # The local bank is filled from our reviewers' decisions: the items those decisions were about
        # (and any other item already in a case) have been seen by people; the point is the copies
        # nobody has seen yet.
        seen = set(items.filter(signals__case__isnull=False).values_list("pk", flat=True))
        counts["already_in_a_case"] += len(seen)
        items = items.exclude(pk__in=seen)
    items = list(items.select_related("account").order_by("pk"))
    if not items:
        return
    found = matching.find_matches_many([_stored_query(item) for item in items])
    frames_found = match_video_frames([(item, {"frame_hashes": item.frame_hashes}) for item in items
                                       if item.frame_hashes])
    labels = entry_labels({m.bank_hash_id for matches, _ in found for m in matches})
    signals = []
    with transaction.atomic():
        for item, (matches, banks) in zip(items, found, strict=True):
            ours = [m for m in matches
                    if m.bank_id == bank.pk or getattr(banks.get(m.bank_id), "kind", "") == BankKind.ALLOW]
            # The video findings name their own entries (labels=None): their shape is the scan's business.
            built = with_video_signals(item, build_match_signals(item, ours, banks, labels), ours, banks,
                                       frames_found.get(item.pk))
            mine = [s for s in built if s.dedupe_key == keys[item.pk]]
            if not mine:
                allowed = any(getattr(banks.get(m.bank_id), "kind", "") == BankKind.ALLOW for m in ours)
                counts["suppressed" if allowed else "not_confirmed"] += 1
                continue
            for signal in mine:
                signal.details["retroactive"] = True
                signal.explanation += " Found by retroactive matching, when the entry was added after the scan."
            signals += mine
        counts["signals"] += len(_store_signals(signals))


def _store_signals(signals):
    """Insert the signals whose dedupe key is new and hand them to triage after the commit; returns
    the dedupe keys of the new ones. Call inside a transaction. A key stored meanwhile (a concurrent run)
    is skipped."""
    keys = [s.dedupe_key for s in signals]
    existing = set(Signal.objects.filter(dedupe_key__in=keys).values_list("dedupe_key", flat=True))
    fresh = [s for s in signals if s.dedupe_key not in existing]
    Signal.objects.bulk_create(fresh, ignore_conflicts=True)
    ids = list(Signal.objects.filter(dedupe_key__in=[s.dedupe_key for s in fresh], triaged_at__isnull=True)
               .values_list("pk", flat=True))
    if ids:
        enqueue("cases.jobs.triage_signals", ids, queue="triage")
    return [s.dedupe_key for s in fresh]


def retro_pending(cutoff):
    """The sweep's part: hand on every retroactive run and shared-media request pending since before
    `cutoff` that no live run holds. Returns how many were handed on."""
    queue, handed = retro.queue_name(), 0
    for bank_id in RetroMatch.objects.filter(_free(), requested_at__lte=cutoff).values_list("bank_id", flat=True):
        handed += enqueue_now(retro.RETRO_JOB, bank_id, queue=queue, job_timeout=retro.JOB_TIMEOUT)
    if SharedMediaRequest.objects.filter(_free(), done_at__isnull=True, requested_at__lte=cutoff).exists():
        # One run takes them all in batches; a kick left by a lost job lapses within KICK_TTL.
        handed += kick(retro.SHARE_KICK, retro.SHARE_JOB, queue=queue)
    return handed


# Sharing outward: an actioned account's media against everyone else's ---------------------------

SHARED_DETECTOR = "shared_media"
# Below a bank match of known material (90): the finding rests on another account's decision. Media
# of the account that was not itself a known-material match (a profile photo, say) ranks lower still.
SHARED_SEVERITY = 80
SHARED_SEVERITY_UNMATCHED = 50
# Two videos are the same media when this share of the frames of one is found in the other.
SHARED_VIDEO_PERCENT = 50
FRAME = "frame"


def share_outward(account_id, *, decision_id=None, reason=""):
    """Run one account's request now (see share_pending, which runs them in batches): every other
    account's and group's item whose media matches the actioned account's gets a shared-media signal.

    Returns the counts, or None when another run holds the request.
    """
    request = retro.share_request(account_id, decision_id=decision_id, reason=reason)
    if request.done_at is not None:
        return request.counts
    requests, token = _claim_shares(SharedMediaRequest.objects.filter(pk=request.pk), 1)
    if not requests:
        return None
    if reason and not requests[0].reason:
        requests[0].reason = reason[:255]
    try:
        return _share(requests, token).get(request.pk)
    finally:
        _release_shares(requests, token)


def share_pending():
    """The job: every pending shared-media request, up to SHARE_BATCH at a time, until none is left or the
    run's time is spent (then it kicks itself again). A batch costs a handful of queries and one search of
    the index of stored items, where a request at a time costs as much for each actioned account."""
    kicked(retro.SHARE_KICK, queue=retro.queue_name())
    deadline, done, failed = time.monotonic() + share_seconds(), 0, set()
    while time.monotonic() < deadline:
        pending = (SharedMediaRequest.objects.filter(done_at__isnull=True).exclude(pk__in=failed)
                   .order_by("requested_at", "pk"))
        requests, token = _claim_shares(pending, SHARE_BATCH)
        if not requests:
            return done
        try:
            done += len(_share(requests, token))
        except Exception:
            # One at a time, so that a request that cannot be run (an account with more media than a run
            # can hold, say) does not hold back the others; it waits for the next run (the sweep kicks one).
            log.exception("shared media: a batch of %d requests failed; running them one at a time", len(requests))
            for request in requests:
                try:
                    done += len(_share([request], token))
                except Exception:
                    log.exception("shared media for account %s failed; left for a later run", request.account_id)
                    failed.add(request.pk)
        finally:
            _release_shares(requests, token)
    kick(retro.SHARE_KICK, retro.SHARE_JOB, queue=retro.queue_name())  # out of time, work remains
    return done


SHARE_BATCH = 200


def share_seconds():
    """A run takes batches for this long, then kicks the next run."""
    return settings.SHARE_JOB_SECONDS


def _claim_shares(pending, limit):
    """Claim up to `limit` of the `pending` requests that no live run holds: (requests, token)."""
    token = uuid.uuid4().hex
    ids = list(pending.filter(_free(), done_at__isnull=True).values_list("pk", flat=True)[:limit])
    if not ids:
        return [], token
    # Conditional, as every claim: of two runs that picked the same rows, each row goes to one.
    SharedMediaRequest.objects.filter(_free(), pk__in=ids, done_at__isnull=True).update(
        claim_token=token, claimed_at=timezone.now())
    return list(SharedMediaRequest.objects.filter(pk__in=ids, claim_token=token).order_by("pk")), token


def _release_shares(requests, token):
    SharedMediaRequest.objects.filter(pk__in=[r.pk for r in requests], claim_token=token).update(
        claim_token="", claimed_at=None)


def _share(requests, token):
    """Match the media of the requests' accounts (all their scanned items, in every orientation, and their
    frames) against every stored item in one search; store the findings and mark the requests done in one
    transaction. Returns {request id: counts} for the requests this claim still held."""
    started = time.monotonic()
    accounts = Account.objects.in_bulk({r.account_id for r in requests})
    sources = defaultdict(dict)  # account id -> {item id: item}
    for start in range(0, len(accounts), CHUNK):
        for item in (Item.objects.filter(account_id__in=list(accounts)[start:start + CHUNK], status=ItemStatus.SCANNED)
                     .exclude(kind=ItemKind.TEXT).order_by("pk")):
            sources[item.account_id][item.pk] = item
    every_source = {pk: item for items in sources.values() for pk, item in items.items()}
    known = set()
    ids = list(every_source)
    for start in range(0, len(ids), EXACT_BATCH):
        known.update(Signal.objects.filter(item_id__in=ids[start:start + EXACT_BATCH], kind=SignalKind.HASH_MATCH)
                     .exclude(detector=SHARED_DETECTOR).values_list("item_id", flat=True))
    queries = []  # (source item id, frame time or None for the picture, 32 bytes)
    for item in every_source.values():
        if retro.usable(item.pdq_quality) and item.pdq:
            queries.append((item.pk, None, bytes.fromhex(item.pdq)))
        queries += [(item.pk, f["t"], bytes.fromhex(f["pdq"]))
                    for f in usable_frames(item.frame_hashes, settings.PDQ_MIN_QUALITY)]
    threshold = settings.PDQ_MATCH_THRESHOLD
    hits = defaultdict(list)  # other item id -> [query index]
    if queries:
        index = retro.stored_index()
        index.refresh()
        # A cold start of the index can take minutes: the claims are renewed so that no other run takes them.
        SharedMediaRequest.objects.filter(pk__in=[r.pk for r in requests], claim_token=token).update(
            claimed_at=timezone.now())
        qidx, items, _ = index.search(np.frombuffer(b"".join(q[2] for q in queries), dtype=np.uint8), threshold)
        for q, pk in zip(qidx.tolist(), items.tolist(), strict=True):
            hits[pk].append(q)
    exact = _same_files(every_source.values())  # {other item id: [source item ids]}
    candidates = sorted(set(hits) | set(exact))
    others = {}
    for start in range(0, len(candidates), CHUNK):
        # An item already removed by a decision was acted on: a ring's members would otherwise each add a
        # signal to every other member's decided items, reopening their cases for nothing new.
        others.update((o.pk, o) for o in Item.objects.filter(
            pk__in=candidates[start:start + CHUNK], status=ItemStatus.SCANNED, removed_at__isnull=True)
            .select_related("account"))
    results, findings = {}, []
    for request in requests:
        mine = sources.get(request.account_id, {})
        counts = Counter(items=len(mine), queries=sum(1 for q in queries if q[0] in mine))
        found = []
        for other in others.values():
            if other.account_id == request.account_id:
                continue
            same = [source for source in exact.get(other.pk, ()) if source in mine]
            near = [queries[q] for q in hits.get(other.pk, ()) if queries[q][0] in mine]
            if not same and not near:
                continue
            counts["candidates"] += 1
            finding = _shared_finding(other, same[0] if same else None, near, mine, threshold)
            if finding:
                found.append((other, finding))
        results[request.pk] = counts
        findings.append((request, found))
    allowed = _allowed([f for _, found in findings for f in found])
    with transaction.atomic():
        held = set(SharedMediaRequest.objects.select_for_update().filter(
            pk__in=[r.pk for r in requests], claim_token=token, done_at__isnull=True).values_list("pk", flat=True))
        now, signals = timezone.now(), []
        for request, found in findings:
            if request.pk not in held:  # the claim lapsed: the run that holds the request now stores its findings
                results.pop(request.pk)
                continue
            counts, account = results[request.pk], accounts[request.account_id]
            kept = [(other, finding) for other, finding in found if (other.pk, id(finding)) in allowed]
            counts["suppressed"] += len(found) - len(kept)
            mine = sources.get(request.account_id, {})
            made = [_shared_signal(other, finding, account=account, source=mine[finding["source"]],
                                   matched_known=finding["source"] in known, decision_id=request.decision_id,
                                   reason=request.reason) for other, finding in kept]
            signals += made
            counts.update(matched_items=len(made), accounts=len({o.account_id for o, _ in kept}),
                          groups=len({o.group_id for o, _ in kept if o.group_id}))
        # Two requests for one account (two decisions) make the same signals: the first one's are kept.
        new_keys = set(_store_signals(list({signal.dedupe_key: signal for signal in reversed(signals)}.values())))
        for request, _ in findings:
            if request.pk not in held:
                continue
            counts = results[request.pk]
            mine = {key for key in new_keys if key.endswith(f":shared:{request.account_id}")}
            counts["signals"] = len(mine)
            new_keys -= mine
            results[request.pk] = dict(counts)
            SharedMediaRequest.objects.filter(pk=request.pk).update(done_at=now, counts=results[request.pk])
            account = accounts[request.account_id]
            audit(None, Event.MATCH_SHARED_OUTWARD, object_type="account", object_id=account.pk, details={
                "account": account.external_id, "decision": request.decision_id, "reason": request.reason[:255],
                **dict(sorted(results[request.pk].items())), "batch": len(requests),
                "seconds": round(time.monotonic() - started, 3)})
    return results


def _same_files(sources):
    """{other item id: [source item ids]} for items with the same MD5 or SHA-256 as a source item."""
    by_digest = defaultdict(list)
    for item in sources:
        for field in ("md5", "sha256"):
            value = getattr(item, field)
            if value:
                by_digest[(field, value)].append(item.pk)
    found = defaultdict(list)
    for field in ("md5", "sha256"):
        values = [v for f, v in by_digest if f == field]
        for start in range(0, len(values), EXACT_BATCH):
            rows = Item.objects.filter(status=ItemStatus.SCANNED, **{f"{field}__in": values[start:start + EXACT_BATCH]})
            for pk, value in rows.values_list("pk", field):
                found[pk] += [source for source in by_digest[(field, value)] if source not in found[pk]]
    return found


def _stored_rows(item):
    """The other item's hashes as indexed, each with where it comes from: (frame time or None, orientation)."""
    rows = []
    if retro.usable(item.pdq_quality):
        named = _orientations(item) or ((("original", item.pdq),) if item.pdq else ())
        rows += [(None, name, value) for name, value in named]
    for frame in usable_frames(item.frame_hashes, settings.PDQ_MIN_QUALITY):
        rows.append((frame["t"], "original", frame["pdq"]))
        for key in ("variants", "outer_variants"):
            rows += [(frame["t"], name, value) for name, value in zip(DIHEDRAL, frame.get(key) or (), strict=False)]
    return [(t, name, value) for t, name, value in rows if isinstance(value, str) and len(value) == 64]


def _shared_finding(other, exact_source, queries, sources, threshold):
    """How the other item matches the account's media, or None: the same file, a picture (in any
    orientation, or a picture inside a video), or a video sharing enough of its frames."""
    if exact_source is not None:
        return {"basis": "exact", "source": exact_source, "distance": 0, "transform": "", "t": None,
                "source_t": None}
    rows = _stored_rows(other)
    if not rows or not queries:
        return None
    q = np.frombuffer(b"".join(v for _, _, v in queries), dtype=np.uint64).reshape(-1, 4)
    r = parse_hex([v for _, _, v in rows], 256).view(np.uint64)
    dist = np.bitwise_count(q[:, None, :] ^ r[None, :, :]).sum(axis=2)
    pairs = [(int(dist[i, j]), i, j) for i, j in zip(*np.nonzero(dist <= threshold), strict=True)]
    pictures = [p for p in pairs if queries[p[1]][1] is None or rows[p[2]][0] is None]
    if pictures:
        d, i, j = min(pictures)
        return {"basis": "pdq", "source": queries[i][0], "distance": d, "threshold": threshold,
                "transform": "" if rows[j][1] == ORIENTATION_NAMES[0] else rows[j][1], "t": rows[j][0],
                "source_t": queries[i][1]}
    # Frames against frames: one shared frame (a title card, a black screen) is not the same video.
    best = None
    for source_id in {queries[i][0] for _, i, _ in pairs}:
        mine = [(d, i, j) for d, i, j in pairs if queries[i][0] == source_id]
        source_frames = len(usable_frames(sources[source_id].frame_hashes, settings.PDQ_MIN_QUALITY))
        other_frames = len(usable_frames(other.frame_hashes, settings.PDQ_MIN_QUALITY))
        share = max(len({i for _, i, _ in mine}) / max(source_frames, 1),
                    len({rows[j][0] for _, _, j in mine}) / max(other_frames, 1))
        if share * 100 >= SHARED_VIDEO_PERCENT and (best is None or share > best["share"]):
            d, i, j = min(mine)
            best = {"basis": "video", "source": source_id, "distance": d, "threshold": threshold, "share": share,
                    "transform": "" if rows[j][1] == ORIENTATION_NAMES[0] else rows[j][1], "t": rows[j][0],
                    "source_t": queries[i][1]}
    return best


def _allowed(findings):
    """The findings ([(other item, finding)]) an allow-list does not excuse, as at scan time: an exact
    allow-list match excuses the item, a perceptual one perceptual findings only. Returns the set of
    (item id, id(finding)) kept; each item is matched once however many findings name it."""
    if not findings:
        return set()
    distinct = list({other.pk: other for other, _ in findings}.values())
    found = dict(zip([o.pk for o in distinct], matching.find_matches_many([_stored_query(o) for o in distinct]),
                     strict=True))
    kept = set()
    for other, finding in findings:
        matches, banks = found[other.pk]
        allowing = [m for m in matches if getattr(banks.get(m.bank_id), "kind", "") == BankKind.ALLOW]
        exact = any(m.hash_type in (HashType.MD5, HashType.SHA256) for m in allowing)
        if allowing and (exact or finding["basis"] != "exact"):
            continue
        kept.add((other.pk, id(finding)))
    return kept


def _shared_signal(other, finding, *, account, source, matched_known, decision_id, reason):
    what = "which matched known material" if matched_known else "from that account's media"
    by = f"decision #{decision_id}" if decision_id else "a decision"
    headline = f"Shared media matching what account '{account.external_id}' was actioned for"
    if reason:
        headline += f" ({reason})"
    if finding["basis"] == "exact":
        evidence = f"the same file (MD5/SHA-256 identical) as item #{source.pk} of that account, {what}"
        score = 1.0
    else:
        where = f" at {clock(finding['t'])}" if finding["t"] is not None else ""
        there = f" at {clock(finding['source_t'])}" if finding["source_t"] is not None else ""
        evidence = (f"PDQ distance {finding['distance']} of 256 bits ≤ {finding['threshold']}{where} to item "
                    f"#{source.pk}{there} of that account, {what}")
        if finding["basis"] == "video":
            evidence += f"; {finding['share']:.0%} of the frames of one video are found in the other"
        if finding["transform"]:
            evidence += f"; the copy is {finding['transform']}"
        score = round(0.95 - 0.25 * finding["distance"] / max(finding["threshold"], 1), 3)
    hashes = [{"type": HashType.MD5 if finding["basis"] == "exact" else HashType.PDQ, "distance": finding["distance"],
               "threshold": finding.get("threshold", 0), "transform": finding["transform"], "text": evidence,
               **({"t": finding["t"]} if finding["t"] is not None else {})}]
    label = f"Shared media: matches account {account.external_id}"
    limit = Signal._meta.get_field("label").max_length
    return Signal(
        item=other, account=other.account, group_id=other.group_id, kind=SignalKind.HASH_MATCH,
        detector=SHARED_DETECTOR, label=label if len(label) <= limit else label[:limit - 1] + "…",
        score=score, severity=SHARED_SEVERITY if matched_known else SHARED_SEVERITY_UNMATCHED,
        explanation=f"{headline}, by {by}: {evidence}.",
        details={"basis": "shared", "match": finding["basis"], "source_account": account.external_id,
                 "source_account_id": account.pk, "source_item": source.pk, "source_matched_known": matched_known,
                 "decision_id": decision_id, "reason": reason[:255], "distance": finding["distance"],
                 "hashes": hashes},
        dedupe_key=f"item:{other.pk}:shared:{account.pk}",
    )


# Near search for the web ------------------------------------------------------------------------

# A search takes in items stored since the index last looked, unless it looked this recently: a look costs a
# query or more, the search itself a millisecond, and searches come in bursts.
NEAR_FRESH_SECONDS = 1.0
_near_looked = [None, 0.0]  # the index last brought up to date here, and when


WARM_JOB = "detection.jobs.retro.warm_index"
WARM_KEY = "stored-index-warm"
# A cold index of at most this many scanned items is built inside the search itself (seconds); a larger one
# is built by a job of its own (minutes at 10 M items: far beyond a search's 60-second job timeout, which
# would kill the build every time), while searches fall back to exact matches.
WARM_INLINE_ITEMS = 200_000


def warm_index():
    """The job: build or load this worker's index of stored items, with the time a cold start needs."""
    kicked(WARM_KEY, queue=retro.queue_name())
    index = retro.stored_index()
    index.refresh()
    _near_looked[:] = [index, time.monotonic()]
    return len(index)


def _cold_and_large(index):
    if index.cursor is not None or index._cache_dir().exists():
        return False
    scanned = Item.objects.filter(status=ItemStatus.SCANNED).values("pk")[:WARM_INLINE_ITEMS + 1]
    return scanned.count() > WARM_INLINE_ITEMS


def near_search(vectors, radius, limit):
    """The job: the stored items near the 32-byte PDQ `vectors`, from this worker's index brought up to date
    (see retro.nearest). Reads only; the web waits for the answer through RQ's results. None while a large
    index is still being built (the web then lists exact matches and says so)."""
    index = retro.stored_index()
    if _cold_and_large(index):
        kick(WARM_KEY, WARM_JOB, queue=retro.queue_name(), job_timeout=retro.JOB_TIMEOUT)
        return None
    if index.cursor is None:
        index.refresh()
        _near_looked[:] = [index, time.monotonic()]
    elif index is not _near_looked[0] or time.monotonic() - _near_looked[1] > NEAR_FRESH_SECONDS:
        index.take_new()  # new items only; late commits and deletions are a retroactive run's checks
        _near_looked[:] = [index, time.monotonic()]
    return retro.nearest(index, vectors, radius, limit)
