"""Hash matches as signals a reviewer can read: exact or near, on which hash, in which bank, against
which entry, what was undone (mirroring, bars), and the video rule; plus the allow-list that
suppresses known false positives. Used by the scan job, and by intake for items that arrive as hashes."""

import logging
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count

from detection import matching
from detection.detectors import vpdq
from detection.detectors.hashing import DIHEDRAL, UNTRIMMED
from detection.matching import HashMatch
from detection.models import BankHash, BankKind, HashType, Signal, SignalKind
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

log = logging.getLogger(__name__)


# Hash types by how much their agreement proves, strongest first: a cryptographic digest proves the
# very file, PDQ (256 bits) the picture; pHash and dHash (64 bits) are weak second opinions that
# unrelated pictures share by chance, so a match resting on them alone is ranked well below.
EXACT_TYPES = (HashType.SHA256, HashType.MD5)


WEAK_TYPES = (HashType.PHASH, HashType.DHASH)


HASH_RANK = {t: rank for rank, t in enumerate((*EXACT_TYPES, HashType.PDQ, *WEAK_TYPES))}
# Confidence of one agreeing hash: (at distance 0, at the bank's threshold), linear in between.
# Every PDQ match (>= 0.70) outscores every weak one; only a cryptographic match scores 1.
SCORE_RANGE = {HashType.SHA256: (1.0, 1.0), HashType.MD5: (1.0, 1.0), HashType.PDQ: (0.95, 0.70),
               HashType.PHASH: (0.60, 0.45), HashType.DHASH: (0.50, 0.35)}


CORROBORATION = 0.03  # added for each further hash type that agrees


NOT_EXACT_CEILING = 0.98  # however many perceptual hashes agree, they do not prove the file


WEAK_CEILING = 0.65  # pHash and dHash together stay below the weakest PDQ match


# A match on weak hashes alone gets this share of its bank's severity (90 -> 68).
WEAK_SEVERITY_SHARE = 0.75


LABEL_CHARS = 60  # an entry's label as quoted in explanations


def entry_labels(entry_ids):
    """{bank entry id: its label} for the entries that have one: explanations name entries by them."""
    ids = sorted(entry_ids)
    labels = {}
    for start in range(0, len(ids), 5000):
        labels.update(BankHash.objects.filter(pk__in=ids[start:start + 5000]).exclude(label="")
                      .values_list("pk", "label"))
    return labels


def entry_name(entry_id, labels):
    """"entry 'case 412 item 9' (#21)" for a labelled entry, "entry #21" for one without a label."""
    label = " ".join(str(labels.get(entry_id) or "").split())
    if not label:
        return f"entry #{entry_id}"
    if len(label) > LABEL_CHARS:
        label = label[:LABEL_CHARS - 1] + "…"
    return f"entry '{label}' (#{entry_id})"


def spread_of(item):
    """How far the item travelled, as the platform counted it: ({forwards, chats, forwarded_many}, words),
    or (None, "") when it sent nothing. cases.routing.priority raises the case by the chats reached."""
    forwards, chats, mark = item.forward_count, item.forward_chats, item.forwarded_many
    if forwards is None and chats is None and mark is None:
        return None, ""
    parts = []
    if chats is not None:
        parts.append(f"forwarded to {chats:,} chat{'' if chats == 1 else 's'}"
                     + (f" ({forwards:,} forward{'' if forwards == 1 else 's'})" if forwards is not None else ""))
    elif forwards is not None:
        parts.append(f"forwarded {forwards:,} time{'' if forwards == 1 else 's'}")
    if mark:
        parts.append("marked \"forwarded many times\" by the platform")
    words = "; ".join(parts) if parts else "not marked as forwarded many times"
    return {"forwards": forwards, "chats": chats, "forwarded_many": mark, "text": words}, words


def with_spread(signal, item):
    """Name the item's spread in a match signal's explanation and details (once)."""
    spread, words = spread_of(item)
    if spread is None:
        return signal
    note = f" Spread: {words}."
    signal.explanation = signal.explanation.replace(note, "") + note
    signal.details["spread"] = spread
    return signal


def build_match_signals(item, matches, banks, labels=None):
    """One signal per bank the item matched, explaining every hash that agreed and by how much.

    The label and the first words of the explanation say what the match rests on: an exact file
    match (MD5/SHA-256), an exact or near PDQ match with its distance, or weak hashes alone.
    """
    matches = apply_allow_list(item, matches, banks)
    if labels is None:
        labels = entry_labels({m.bank_hash_id for m in matches})
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
        evidence = [_describe(m, item, labels) for m in sorted(best.values(), key=lambda m: HASH_RANK[m.hash_type])]
        basis = _basis(best)
        score, severity = _score(best), bank.severity
        headline = _headline(best)
        explanation = (f"{headline} in bank '{bank.name}': " + "; ".join(e["text"] for e in evidence)
                       + _trim_note(evidence) + ".")
        caveat = ""
        if basis == "weak":
            severity = round(bank.severity * WEAK_SEVERITY_SHARE)
            caveat = _weak_caveat(best, item)
            explanation = f"{caveat} {explanation}"
        strongest = max(best.values(), key=lambda m: (_confidence(m), -HASH_RANK[m.hash_type]))
        details = {
            "bank": bank.name,
            "bank_id": bank.pk,
            "entry_id": strongest.bank_hash_id,
            "basis": basis,
            "hashes": evidence,
            "pdq_quality": item.pdq_quality,
        }
        if strongest.bank_hash_id in labels:
            details["entry_label"] = labels[strongest.bank_hash_id]
        if caveat:
            details["caveat"] = caveat
        signals.append(Signal(
            item=item,
            account_id=item.account_id,
            group_id=item.group_id,
            kind=SignalKind.HASH_MATCH,
            detector="hash_match",
            label=_fit_label(f"{headline}, bank {bank.name}"),
            score=round(score, 3),
            severity=severity,
            explanation=explanation,
            details=details,
            dedupe_key=f"item:{item.pk}:bank:{bank.pk}",
        ))
    return [with_spread(signal, item) for signal in signals]


def _basis(best):
    """What a bank's matches rest on: "exact" (a digest), "pdq", or "weak" (pHash/dHash alone)."""
    if any(t in best for t in EXACT_TYPES):
        return "exact"
    return "pdq" if HashType.PDQ in best else "weak"


def _score(best):
    """The strongest hash's confidence, corroborated a little by each further type that agrees."""
    score = max(_confidence(m) for m in best.values()) + CORROBORATION * (len(best) - 1)
    basis = _basis(best)
    ceiling = 1.0 if basis == "exact" else NOT_EXACT_CEILING if basis == "pdq" else WEAK_CEILING
    return min(ceiling, score)


def _headline(best):
    """"Exact file match (SHA-256)", "Exact match (PDQ distance 0)", "Near match (PDQ distance 16 of 256)",
    "Weak match (dHash only, distance 3 of 64)"."""
    exact = [HashType(t).label for t in EXACT_TYPES if t in best]
    if exact:
        return f"Exact file match ({' and '.join(exact)})"
    if HashType.PDQ in best:
        distance = best[HashType.PDQ].distance
        return "Exact match (PDQ distance 0)" if distance == 0 else f"Near match (PDQ distance {distance} of 256)"
    weak = [best[t] for t in WEAK_TYPES if t in best]
    names = " and ".join(HashType(m.hash_type).label for m in weak)
    if len(weak) == 1:
        return f"Weak match ({names} only, distance {weak[0].distance} of 64)"
    return f"Weak match ({names} only, distances {' and '.join(str(m.distance) for m in weak)} of 64)"


def _weak_caveat(best, item):
    """The warning that opens the explanation of a match resting on pHash/dHash alone."""
    weak = [HashType(t).label for t in WEAK_TYPES if t in best]
    text = (f"{weak[0]} only: a weak perceptual hash; confirm by viewing" if len(weak) == 1
            else f"{' and '.join(weak)} only: weak perceptual hashes; confirm by viewing")
    if item.pdq and (item.pdq_quality or 0) < settings.PDQ_MIN_QUALITY:
        text += f" (PDQ not compared: quality {item.pdq_quality or 0} < {settings.PDQ_MIN_QUALITY})"
    return text + "."


def _fit_label(label):
    """A long bank name must not overflow the label column: it is cut, visibly."""
    limit = Signal._meta.get_field("label").max_length
    return label if len(label) <= limit else label[:limit - 1] + "…"


def apply_allow_list(item, matches, banks):
    """Drop the matches an allow-list bank excuses, and leave a trace of every one dropped.

    An allow-list entry that matches exactly (MD5/SHA-256) excuses every other match; one that
    only matches perceptually excuses only perceptual matches, never a file identical to known
    material. Allow-list matches never become signals themselves.
    """
    def kind(bank_id):
        return getattr(banks.get(bank_id), "kind", BankKind.KNOWN)

    allowing = [m for m in matches if kind(m.bank_id) == BankKind.ALLOW]
    if not allowing:
        return matches
    exact_allow = any(m.hash_type in EXACT_TYPES for m in allowing)
    kept, suppressed = [], []
    for match in matches:
        if kind(match.bank_id) == BankKind.ALLOW:
            continue
        (suppressed if exact_allow or match.hash_type not in EXACT_TYPES else kept).append(match)
    if suppressed:
        names = sorted({banks[m.bank_id].name for m in allowing})
        log.info("item %s: %d match(es) suppressed by allow-list %s", item.pk, len(suppressed), ", ".join(names))
        # Called inside the scan's transaction: the trace is stored with the findings, or not at all.
        audit(None, Event.MATCH_SUPPRESSED, item=item, object_type="item", object_id=item.pk,
              details={"allow_lists": names, "allow_entries": sorted({m.bank_hash_id for m in allowing}),
                       "suppressed": [{"bank": banks[m.bank_id].name, "entry_id": m.bank_hash_id,
                                       "type": m.hash_type, "distance": m.distance} for m in suppressed]})
    return kept


def _confidence(match):
    top, bottom = SCORE_RANGE[match.hash_type]
    if match.threshold <= 0:
        return top
    # At distance 0 the type's top score, at the bank's threshold its bottom one: closer scores higher.
    return top - (top - bottom) * min(1.0, match.distance / match.threshold)


def _describe(match, item, labels):
    label = HashType(match.hash_type).label
    entry = {"type": match.hash_type, "entry_id": match.bank_hash_id, "distance": match.distance,
             "threshold": match.threshold}
    if labels.get(match.bank_hash_id):
        entry["entry_label"] = labels[match.bank_hash_id]
    name = entry_name(match.bank_hash_id, labels)
    if match.hash_type in EXACT_TYPES:
        entry["text"] = f"{label} identical ({name})"
    else:
        bits = 256 if match.hash_type == HashType.PDQ else 64
        entry["text"] = (f"{label} distance {match.distance} of {bits} bits ≤ threshold {match.threshold}"
                         f" ({name})")
        if match.hash_type == HashType.PDQ:
            entry["text"] += f", quality {item.pdq_quality} ≥ {settings.PDQ_MIN_QUALITY}"
        entry["text"] += _edits_undone(match, item, entry)
    return entry


def _trim_note(evidence):
    """Bars the scan cut off before the perceptual hashes agreed, said once per signal."""
    trimmed = next((e["trimmed"] for e in evidence if e.get("trimmed")), None)
    if not trimmed:
        return ""
    return f", compared after removing {_bars(trimmed)}"


def _bars(trimmed):
    """"a pillarbox (80, 0, 80, 0 px left, top, right, bottom)": the bars cut off, in the file's pixels."""
    left, top, right, bottom = trimmed
    kind = "letterbox" if not (left or right) else "pillarbox" if not (top or bottom) else "border"
    return f"a {kind} ({left}, {top}, {right}, {bottom} px left, top, right, bottom)"


def _edits_undone(match, item, entry):
    """What the scan undid before this perceptual hash agreed: bars cut off, orientation turned."""
    transform = getattr(match, "transform", "")
    text = ""
    trimmed = tuple(getattr(item, "trimmed", ()) or ())
    if any(trimmed) and transform != UNTRIMMED:
        entry["trimmed"] = list(trimmed)  # said once for the whole signal, by _trim_note
    if transform:
        entry["transform"] = transform
    if transform and transform not in ("original", UNTRIMMED):
        text += f"; the copy is {transform}"
    return text


# Video and animation: frames sampled and hashed, matched by the vPDQ rule ---------------------

_bank_video_frames = {}  # (bank id, bank updated_at, media key) -> entries: bank changes bump updated_at


@dataclass
class FrameMatch(HashMatch):
    """A sampled frame's PDQ match, with the bars cut off the frame before it agreed."""

    trimmed: tuple = ()


# The frame hashes that each carry a frame's eight orientations, and the bars cut off before them.
FRAME_TRIMS = (("variants", "trimmed"), ("outer_variants", "outer_trimmed"))


def _frames_to_match(frames, min_quality):
    """The frames worth matching: as vpdq.usable_frames, and also those usable once trimmed."""
    seen, usable = set(), []
    for frame in frames or []:
        pdq = frame.get("pdq") or ""
        oriented = tuple(tuple(frame.get(key) or ()) for key, _ in FRAME_TRIMS)
        as_is = len(pdq) == 64 and (frame.get("quality") or 0) >= min_quality
        if (as_is or any(oriented)) and (pdq, oriented) not in seen:
            seen.add((pdq, oriented))
            usable.append(frame)
    return usable


def _frame_queries(frame, min_quality):
    """[(query, bars cut off)] for one frame: as it is (vPDQ's hash), then trimmed as a still is, in
    every orientation, so that a known picture shown inside a video matches however it was framed."""
    blank = {"md5": "", "sha256": "", "pdq_usable": True, "phash": "", "dhash": ""}
    queries = []
    if len(frame.get("pdq") or "") == 64 and (frame.get("quality") or 0) >= min_quality:
        queries.append(({**blank, "pdq": frame["pdq"]}, ()))
    for variants_key, trimmed_key in FRAME_TRIMS:
        variants = frame.get(variants_key) or ()
        if len(variants) == len(DIHEDRAL):
            queries.append(({**blank, "pdq": variants[0], "pdq_variants": list(zip(DIHEDRAL, variants, strict=True))},
                            tuple(frame.get(trimmed_key) or ())))
    return queries


def match_video_frames(hashed, *, snapshot=True):
    """PDQ matches of every usable sampled frame, for all items of a batch at once.

    Every frame's orientations go into the one search with the rest of the batch. Returns
    {item pk: (frames, matches per frame, {entry id: (media key, seconds)}, frame counts, banks)}
    for the items with at least one frame match; the vPDQ rule itself is applied in the
    transaction, after the allow-list has had its say.
    """
    queued, queries = [], []
    for item, fields in hashed:
        for frame in _frames_to_match(fields.get("frame_hashes"), settings.PDQ_MIN_QUALITY):
            asked = _frame_queries(frame, settings.PDQ_MIN_QUALITY)
            queued.append((item.pk, frame, [trimmed for _, trimmed in asked]))
            queries += [query for query, _ in asked]
    if not queued:
        return {}
    found = iter(matching.find_matches_many(queries, snapshot=snapshot))
    per_item, banks = {}, {}
    for pk, frame, trims in queued:
        best = {}
        for trimmed in trims:
            matches, frame_banks = next(found)
            banks.update(frame_banks)
            for m in matches:
                if m.hash_type != HashType.PDQ:
                    continue
                match = FrameMatch(**vars(m), trimmed=trimmed)
                # One match per entry and frame, the closest; on a tie, the one with the fewest edits undone.
                rank = (match.distance, bool(match.transform), bool(match.trimmed))
                if m.bank_hash_id not in best or rank < best[m.bank_hash_id][0]:
                    best[m.bank_hash_id] = (rank, match)
        frames, frame_matches = per_item.setdefault(pk, ([], []))
        frames.append(frame)
        frame_matches.append([match for _, match in sorted(best.values(), key=lambda v: v[1].bank_hash_id)])
    per_item = {pk: v for pk, v in per_item.items() if any(v[1])}
    entry_ids = {m.bank_hash_id for _, frame_matches in per_item.values() for ms in frame_matches for m in ms}
    media = {pk: (key, seconds) for pk, key, seconds in
             BankHash.objects.filter(pk__in=entry_ids).values_list("pk", "media_key", "frame_seconds")}
    counts = _frame_counts({(m.bank_id, media[m.bank_hash_id][0]) for _, frame_matches in per_item.values()
                            for ms in frame_matches for m in ms if media.get(m.bank_hash_id, ("",))[0]}, banks)
    return {pk: (frames, frame_matches, media, counts, banks) for pk, (frames, frame_matches) in per_item.items()}


def _frame_counts(keys, banks):
    """How many frames each matched bank video has: the denominator of the target share."""
    wanted = {key for key in keys if (key[0], banks[key[0]].updated_at, key[1]) not in _bank_video_frames}
    if wanted:
        if len(_bank_video_frames) > 10_000:
            _bank_video_frames.clear()
        for key in wanted:
            _bank_video_frames[(key[0], banks[key[0]].updated_at, key[1])] = 0
        rows = (BankHash.objects.filter(bank_id__in={b for b, _ in wanted}, media_key__in={k for _, k in wanted},
                                        hash_type=HashType.PDQ)
                .values_list("bank_id", "media_key").annotate(n=Count("id")))
        for bank_id, key, n in rows:
            if (bank_id, key) in wanted:
                _bank_video_frames[(bank_id, banks[bank_id].updated_at, key)] = n
    return {key: _bank_video_frames[(key[0], banks[key[0]].updated_at, key[1])] for key in keys}


def with_video_signals(item, signals, matches, banks, frames_found, *, labels=None):
    """Add the vPDQ findings to the item's signals: one signal per bank, whatever matched.

    Where the bank already gave a signal (the whole file's MD5, or an animation's first frame), the
    video finding joins its explanation instead of becoming a second signal for the same bank.
    """
    if not frames_found:
        return signals
    frames, frame_matches, media, counts, frame_banks = frames_found
    frame_banks = frame_banks | banks
    if labels is None:
        labels = entry_labels({m.bank_hash_id for ms in frame_matches for m in ms})
    # The allow-list sees the whole file's matches with the frames': an exact allow-list match
    # excuses every frame, a perceptual one excuses the perceptual matches.
    allow_exact = [m for m in matches if getattr(banks.get(m.bank_id), "kind", "") == BankKind.ALLOW]
    kept = {id(m) for m in apply_allow_list(item, allow_exact + [m for ms in frame_matches for m in ms], frame_banks)}
    frame_matches = [[m for m in ms if id(m) in kept] for ms in frame_matches]
    # How each frame matched each entry: vpdq's hits keep the time and the entry, not the edits undone.
    undone = {(frame["t"], m.bank_hash_id): m for frame, ms in zip(frames, frame_matches, strict=True) for m in ms}
    findings = vpdq.match_frames(frames, frame_matches, media, counts,
                                 {pk: bank.video_match_percent for pk, bank in frame_banks.items()})
    by_key = {signal.dedupe_key: signal for signal in signals}
    for bank_id, finding in sorted(findings.items()):
        bank = frame_banks[bank_id]
        text = _named_entries(vpdq.explain(finding, bank.name), finding.image_hits, labels) + _frames_edited(
            finding, undone)
        key = f"item:{item.pk}:bank:{bank.pk}"
        label = _fit_label(f"{'Video' if finding.media_key else 'Known image in video'} match, bank {bank.name}")
        if key in by_key:
            signal = by_key[key]
            if signal.details.get("basis") == "weak":
                # An animation whose first frame matched on weak hashes alone: the frames' PDQ carries
                # the match now, and the first frame's hashes only corroborate it.
                signal.details.pop("caveat", None)
                hashes = signal.details["hashes"]
                signal.explanation = (f"{text} First frame: " + "; ".join(h["text"] for h in hashes)
                                      + _trim_note(hashes) + ".")
                signal.label, signal.severity = label, bank.severity
                signal.details["basis"] = "video"
            else:
                signal.explanation = f"{signal.explanation} {text}"
            with_spread(signal, item)  # the spread closes the explanation, after the video's finding
            signal.score = max(signal.score, vpdq.score(finding))
            signal.details["video"] = _video_details(finding, undone)
            continue
        best = finding.best
        evidence = {"type": HashType.PDQ, "entry_id": best.entry_id, "distance": best.distance,
                    "threshold": best.threshold,
                    "text": f"PDQ distance {best.distance} of 256 bits ≤ threshold {best.threshold} "
                            f"at {vpdq.clock(best.t)} ({entry_name(best.entry_id, labels)})"}
        if labels.get(best.entry_id):
            evidence["entry_label"] = labels[best.entry_id]
        how = undone.get((best.t, best.entry_id))
        evidence.update(_frame_edit_fields(how))
        evidence["text"] += f"; {_frame_edits(how)}" if _frame_edits(how) else ""
        signal = Signal(
            item=item, account_id=item.account_id, group_id=item.group_id, kind=SignalKind.HASH_MATCH,
            detector="hash_match",  # the same detector as the still-image matches: routing rules see one kind
            label=label,
            score=vpdq.score(finding), severity=bank.severity, explanation=text,
            details={
                "bank": bank.name, "bank_id": bank.pk, "entry_id": best.entry_id, "basis": "video",
                **({"entry_label": labels[best.entry_id]} if labels.get(best.entry_id) else {}),
                "hashes": [evidence],
                "video": _video_details(finding, undone),
            },
            dedupe_key=key,
        )
        signals.append(with_spread(signal, item))
        by_key[key] = signal
    return signals


def _named_entries(text, hits, labels):
    """vpdq.explain names an image entry "(entry #21)": name it by its label where it has one."""
    for entry_id in {hit.entry_id for hit in hits}:
        if labels.get(entry_id):
            text = text.replace(f"(entry #{entry_id})", f"({entry_name(entry_id, labels)})")
    return text


def _frame_edits(match):
    """"the copy is mirrored, compared after removing a pillarbox (...)": what was undone before a
    frame matched, in the words of a still's explanation; "" for a frame that matched as it is."""
    parts = [f"the copy is {match.transform}"] if getattr(match, "transform", "") else []
    if any(getattr(match, "trimmed", ())):
        parts.append(f"compared after removing {_bars(match.trimmed)}")
    return ", ".join(parts)


def _frame_edit_fields(match):
    """The edits undone as evidence fields, under the keys a still's evidence uses."""
    return {**({"transform": match.transform} if getattr(match, "transform", "") else {}),
            **({"trimmed": list(match.trimmed)} if any(getattr(match, "trimmed", ())) else {})}


def _frames_edited(finding, undone):
    """" Frame at 0:04: the copy is mirrored, ...": said for the frame each part of vpdq.explain names."""
    notes = []
    for hits in (finding.hits, finding.image_hits):
        if not hits:
            continue
        best = min(hits, key=lambda h: h.distance)  # the frame vpdq.explain gives the time of
        edits = _frame_edits(undone.get((best.t, best.entry_id)))
        note = f" Frame at {vpdq.clock(best.t)}: {edits}."
        if edits and note not in notes:
            notes.append(note)
    return "".join(notes)


def _video_details(finding, undone):
    def frames(hits):
        return [{"t": h.t, "entry_id": h.entry_id, "distance": h.distance, "bank_t": h.bank_t,
                 **_frame_edit_fields(undone.get((h.t, h.entry_id)))} for h in hits]

    return {
        "method": "vpdq", "media_key": finding.media_key, "required_percent": finding.percent,
        "query_matched": finding.query_matched, "query_total": finding.query_total,
        "target_matched": finding.target_matched, "target_total": finding.target_total,
        "frames": frames(finding.hits), "image_frames": frames(finding.image_hits),
    }


@dataclass
class BatchMatches:
    """Every bank match of a batch of items, as match_hashed found them, keyed by item pk (or by any
    distinct key given before the items have one)."""

    found: dict  # key: (matches, {bank id: Bank})
    frames: dict  # key: video frame findings (match_video_frames)
    labels: dict  # entry id: label

    def any(self, key):
        return bool(self.found[key][0]) or key in self.frames

    def signals(self, item, key=None):
        """The item's match signals (unsaved), the allow-list applied; `key` as given to match_hashed."""
        key = item.pk if key is None else key
        matches, banks = self.found[key]
        return with_video_signals(item, build_match_signals(item, matches, banks, self.labels), matches, banks,
                                  self.frames.get(key), labels=self.labels)


def match_hashed(hashed, *, snapshot=True):
    """Match a batch of (item, hash fields) against every bank in one search, as a scan does: each item's
    digests, PDQ in every orientation it has (`item.pdq_variants`), pHash, dHash and video frames.

    Items are told apart by `item.pk`: anything with `pk`, `md5`, `sha256` and `pdq_variants` serves
    before the row exists. Reads only; the signals are built from the result in the writing transaction.
    `snapshot`: as matching.BankIndex.refresh (intake passes False).
    """
    found = matching.find_matches_many([
        {"md5": item.md5, "sha256": item.sha256, "pdq": fields.get("pdq", ""),
         "pdq_usable": (fields.get("pdq_quality") or 0) >= settings.PDQ_MIN_QUALITY,
         "phash": fields.get("phash", ""), "dhash": fields.get("dhash", ""),
         "pdq_variants": list(getattr(item, "pdq_variants", ()))}
        for item, fields in hashed
    ], snapshot=snapshot)
    frames = match_video_frames(hashed, snapshot=snapshot)
    labels = entry_labels({m.bank_hash_id for matches, _ in found for m in matches}
                          | {m.bank_hash_id for v in frames.values() for ms in v[1] for m in ms})
    return BatchMatches({item.pk: one for (item, _), one in zip(hashed, found, strict=True)}, frames, labels)
