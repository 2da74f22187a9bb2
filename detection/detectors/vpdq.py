"""vPDQ-style video matching: per-frame PDQ hashes, compared as shares of frames (pure: no database).

A video matches a bank video when enough of its distinct usable frames match some frame of the
bank video (query share) and enough of the bank video's frames are matched (target share), as in
Meta's vPDQ. Frames that match single-image entries are findings of their own: a known image
shown inside a video.
"""

import csv
import re
from dataclasses import dataclass, field

from detection.detectors.video import DEFAULT_LIMITS, frame_hashes, sample_animation, sample_video, video_format

HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_LINE_CHARS = 512


def video_frame_entries(data, limits=DEFAULT_LIMITS):
    """[(seconds, pdq_hex, quality)] of a video or animated image, as sampled for scanning."""
    sampled = sample_video(data, limits) if video_format(data) else sample_animation(data, limits)
    if sampled is None:
        return []
    return [(h["t"], h["pdq"], h["quality"]) for h in frame_hashes(sampled.frames)]


def parse_vpdq_lines(lines):
    """Yield (line_number, (seconds, pdq_hex, quality), None) or (line_number, None, error).

    Accepts the per-frame files of Meta's vPDQ tools: `frame_number,quality,pdq_hex,timestamp`
    (the C++ CLI), `frame_number,pdq_hex,quality,timestamp` (the Python binding's example) and
    `pdq_hex,quality,timestamp` (ThreatExchange's compact form). The hash column is found by its
    shape, so the orders cannot be confused.
    """
    for number, raw in enumerate(lines, 1):
        if len(raw) > MAX_LINE_CHARS:
            yield number, None, "line too long"
            continue
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            cells = [cell.strip().lower() for cell in next(csv.reader([line]))]
        except csv.Error as exc:
            yield number, None, f"unreadable line: {exc}"
            continue
        if number == 1 and not any(HEX64.match(c.removeprefix("0x")) for c in cells):
            continue  # a header row
        yield (number, *_frame(cells))


def _frame(cells):
    hashes = [n for n, cell in enumerate(cells) if HEX64.match(cell.removeprefix("0x"))]
    if len(cells) not in (3, 4) or len(hashes) != 1:
        return None, "expected frame_number,quality,pdq_hex,timestamp (or pdq_hex,quality,timestamp)"
    at = hashes[0]
    numbers = cells[:at] + cells[at + 1:]
    if len(cells) == 4:
        if at not in (1, 2):
            return None, "the PDQ hash must be the second or third column of a four-column line"
        _, quality, seconds = numbers  # with the hash taken out, both four-column orders agree
    elif at == 0:
        quality, seconds = numbers
    else:
        return None, "the PDQ hash must be the first column of a three-column line"
    try:
        quality, seconds = int(quality), float(seconds)
    except ValueError:
        return None, f"quality {quality!r} or timestamp {seconds!r} is not a number"
    if not 0 <= quality <= 100:
        return None, f"quality {quality} is not within 0..100"
    if not 0 <= seconds < 10**7:
        return None, f"timestamp {seconds} is not a time within a video"
    return (round(seconds, 3), cells[at].removeprefix("0x"), quality), None


@dataclass
class FrameHit:
    t: float  # in the scanned item
    entry_id: int
    distance: int
    threshold: int
    bank_t: float | None = None  # in the bank video


@dataclass
class VideoFinding:
    """What one bank's entries say about one scanned video or animation."""

    bank_id: int
    media_key: str = ""  # the bank video that matched by the vPDQ rule, "" for none
    query_matched: int = 0
    query_total: int = 0
    target_matched: int = 0
    target_total: int = 0
    percent: int = 80
    hits: list = field(default_factory=list)  # FrameHit of the matched bank video
    image_hits: list = field(default_factory=list)  # FrameHit of frames matching single-image entries

    @property
    def best(self):
        return min(self.hits or self.image_hits, key=lambda h: h.distance)

    @property
    def query_share(self):
        return self.query_matched / self.query_total if self.query_total else 0.0

    @property
    def target_share(self):
        return self.target_matched / self.target_total if self.target_total else 0.0


def usable_frames(frames, min_quality):
    """The frames worth matching: quality high enough, and each distinct hash once (as vPDQ does)."""
    seen, usable = set(), []
    for frame in frames or []:
        pdq = frame.get("pdq") or ""
        if len(pdq) == 64 and (frame.get("quality") or 0) >= min_quality and pdq not in seen:
            seen.add(pdq)
            usable.append(frame)
    return usable


def match_frames(frames, frame_matches, media, frame_counts, percents):
    """Apply the vPDQ rule. Returns {bank_id: VideoFinding} for banks with a video or image finding.

    frames: the usable frames; frame_matches: the PDQ matches of each (same order);
    media: {entry_id: (media_key, frame_seconds)} for every matched entry;
    frame_counts: {(bank_id, media_key): entries of that bank video};
    percents: {bank_id: the bank's video_match_percent}.
    """
    per_media = {}  # (bank, media) -> {"query": set of frame indexes, "target": set of entry ids, "hits": []}
    images = {}
    for index, (frame, matches) in enumerate(zip(frames, frame_matches, strict=True)):
        for m in matches:
            key, bank_t = media.get(m.bank_hash_id, ("", None))
            hit = FrameHit(t=frame["t"], entry_id=m.bank_hash_id, distance=m.distance, threshold=m.threshold,
                           bank_t=bank_t)
            if not key:
                images.setdefault(m.bank_id, []).append(hit)
                continue
            group = per_media.setdefault((m.bank_id, key), {"query": set(), "target": set(), "hits": []})
            group["query"].add(index)
            group["target"].add(m.bank_hash_id)
            group["hits"].append(hit)
    findings = {}
    for (bank_id, key), group in per_media.items():
        percent = percents[bank_id]
        finding = VideoFinding(
            bank_id=bank_id, media_key=key, query_matched=len(group["query"]), query_total=len(frames),
            target_matched=len(group["target"]), target_total=max(frame_counts.get((bank_id, key), 0),
                                                                  len(group["target"])),
            percent=percent, hits=_best_per_frame(group["hits"]),
        )
        if finding.query_share * 100 < percent or finding.target_share * 100 < percent:
            continue
        current = findings.get(bank_id)
        if current is None or (finding.query_share, finding.target_share) > (current.query_share,
                                                                              current.target_share):
            findings[bank_id] = finding
    for bank_id, hits in images.items():
        finding = findings.setdefault(bank_id, VideoFinding(bank_id=bank_id, query_total=len(frames),
                                                            percent=percents[bank_id]))
        finding.image_hits = _best_per_frame(hits)
    return findings


def _best_per_frame(hits):
    best = {}
    for hit in hits:
        if hit.t not in best or hit.distance < best[hit.t].distance:
            best[hit.t] = hit
    return sorted(best.values(), key=lambda h: h.t)


def clock(seconds):
    """0:12, 1:02:03: how a reviewer finds the moment in a player."""
    seconds = int(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def explain(finding, bank_name, media_label=""):
    """The reviewer's sentence for a finding, with every number that decided it."""
    parts = []
    if finding.media_key:
        best = min(finding.hits, key=lambda h: h.distance)
        parts.append(
            f"Video matches bank '{bank_name}' entry video '{media_label or finding.media_key}': "
            f"{finding.query_matched} of {finding.query_total} sampled frames "
            f"({finding.query_share:.0%}) ≥ {finding.percent} %, {finding.target_matched} of "
            f"{finding.target_total} bank frames ({finding.target_share:.0%}) ≥ {finding.percent} %, "
            f"best PDQ distance {best.distance} at {clock(best.t)}")
    if finding.image_hits:
        best = min(finding.image_hits, key=lambda h: h.distance)
        count = len(finding.image_hits)
        parts.append(
            f"{count} sampled frame{'s' if count != 1 else ''} of the video match{'es' if count == 1 else ''} "
            f"bank '{bank_name}' image entr{'y' if len({h.entry_id for h in finding.image_hits}) == 1 else 'ies'}: "
            f"best PDQ distance {best.distance} ≤ {best.threshold} at {clock(best.t)} (entry #{best.entry_id})")
    return "; ".join(parts) + "."


def score(finding):
    """Confidence: a bank video matched nearly frame for frame scores near 1; a single frame that
    matches a known image a little less, as one still can be a coincidence a whole video cannot."""
    scores = []
    if finding.media_key:
        scores.append(min(1.0, 0.7 + 0.3 * min(finding.query_share, finding.target_share)))
    if finding.image_hits:
        best = min(finding.image_hits, key=lambda h: h.distance)
        scores.append(0.95 * (1 - 0.3 * best.distance / (best.threshold + 1)))
    return round(max(scores), 3)
