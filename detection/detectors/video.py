"""Frames from untrusted video (PyAV) and animations (Pillow): sampled within budgets, never the sound."""

import io
import time
import warnings
from dataclasses import dataclass, replace

import av
import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from detection.detectors.hashing import (
    DECODE_FAULTS,
    RejectedFile,
    _to_rgb,
    check_polyglot,
    fault_reason,
    pdq_dihedral,
    pdq_of,
    rejects_faults,
    sniff_format,
    trim_stages,
)

# Sampled frames are kept this small: PDQ works on 64x64 anyway and a contact sheet tile is smaller
# still, while 64 full-size 4K frames would be gigabytes.
KEEP_SIDE = 512
THUMB = 32  # side of the greyscale thumbnails compared to find scene changes
ANIMATED_FORMATS = {"GIF", "PNG", "WEBP"}
VIDEO_MAGIC = [(4, b"ftyp", "MP4/MOV"), (0, b"\x1a\x45\xdf\xa3", "WebM/Matroska")]
VIDEO_FAULTS = DECODE_FAULTS + (av.FFmpegError,)


@dataclass(frozen=True)
class Limits:
    max_frames: int = 64  # frames sampled and hashed
    max_decoded_frames: int = 30_000  # frames decoded, whatever the file claims about itself
    max_seconds: float = 900.0  # of video
    max_wall_seconds: float = 30.0  # spent decoding one file
    max_side: int = 4096
    scene_threshold: float = 30.0  # mean absolute difference of 0..255 thumbnails
    max_animation_pixels: int = 400_000_000  # logical screen x frames: what decoding an animation costs

    @classmethod
    def from_settings(cls, settings):
        return cls(
            max_frames=settings.VIDEO_MAX_FRAMES,
            max_decoded_frames=settings.VIDEO_MAX_DECODED_FRAMES,
            max_seconds=settings.VIDEO_MAX_SECONDS,
            max_wall_seconds=settings.VIDEO_MAX_DECODE_SECONDS,
            max_side=settings.VIDEO_MAX_SIDE,
            scene_threshold=settings.VIDEO_SCENE_THRESHOLD,
            max_animation_pixels=settings.VIDEO_MAX_ANIMATION_PIXELS,
        )


DEFAULT_LIMITS = Limits()


@dataclass
class Frame:
    t: float  # seconds from the start
    image: Image.Image  # RGB, at most KEEP_SIDE on its long side
    scene_change: bool = False


@dataclass
class Sampled:
    format: str
    width: int
    height: int
    duration: float
    frames: list


class _Sampler:
    """Decides which decoded frames to keep: one per interval, plus scene changes, up to a cap.

    When the duration is known the interval stretches so that the samples cover the whole video
    rather than only its first minute; a quarter of the cap is kept for scene changes.
    """

    def __init__(self, limits, duration=None):
        self.limits = limits
        periodic = max(1, limits.max_frames - limits.max_frames // 4)
        self.every = max(1.0, (duration or 0) / periodic)
        self.next_at = 0.0
        self.previous = None
        self.scene_budget = limits.max_frames // 4
        self.frames = []

    @property
    def full(self):
        return len(self.frames) >= self.limits.max_frames

    def offer(self, t, thumb, image_of):
        """`thumb`: a THUMB x THUMB greyscale array of the frame; `image_of()` makes the RGB frame."""
        change = self.previous is not None and float(
            np.abs(thumb.astype(np.int16) - self.previous).mean()) > self.limits.scene_threshold
        self.previous = thumb.astype(np.int16)
        periodic = t + 1e-6 >= self.next_at
        scene = change and self.scene_budget > 0 and (not self.frames or t - self.frames[-1].t >= 0.25)
        if not (periodic or scene) or self.full:
            return
        if periodic:
            self.next_at = t + self.every
        else:
            self.scene_budget -= 1
        self.frames.append(Frame(t=round(t, 3), image=image_of(), scene_change=not periodic))


def video_format(data):
    for offset, magic, name in VIDEO_MAGIC:
        if data[offset:offset + len(magic)] == magic:
            return name
    return None


def _kept_size(width, height):
    scale = min(1.0, KEEP_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


@rejects_faults(av.FFmpegError)
def sample_video(data, limits=DEFAULT_LIMITS):
    """Frames of an MP4/MOV/WebM file, one a second plus scene changes. Raises RejectedFile."""
    if not data:
        raise RejectedFile("empty file")
    fmt = video_format(data)
    if fmt is None:
        raise RejectedFile("unsupported video: not MP4, MOV or WebM")
    started = time.monotonic()
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError, IndexError) as exc:
        raise RejectedFile(f"corrupt or unsupported video: {exc}") from None
    try:
        return _sample_container(container, fmt, limits, started)
    finally:
        container.close()


def _sample_container(container, fmt, limits, started):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no"]
        raise RejectedFile(f"no video stream in the file ({', '.join(kinds)} streams only)")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise RejectedFile("video stream has no codec we can decode")
    stream.thread_type = "AUTO"
    width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
    _check_side(width, height, limits)
    duration = _duration(container, stream)
    if duration and duration > limits.max_seconds:
        raise RejectedFile(f"video too long: {duration:.0f} s (limit {limits.max_seconds:.0f} s)")
    sampler = _Sampler(limits, duration)
    decoded = 0
    rate = float(stream.average_rate or 25) or 25.0
    try:
        for frame in container.decode(stream):
            decoded += 1
            _check_budget(decoded, started, limits)
            t = max(0.0, float(frame.time) if frame.time is not None else (decoded - 1) / rate)
            if t > limits.max_seconds:
                raise RejectedFile(f"video too long: frames past {limits.max_seconds:.0f} s")
            if not width:
                width, height = frame.width, frame.height
                _check_side(width, height, limits)
            size = _kept_size(frame.width, frame.height)
            sampler.offer(t, _luma_thumb(frame), lambda f=frame, s=size: f.to_image(width=s[0], height=s[1]))
            if sampler.full:
                break
    except VIDEO_FAULTS as exc:
        # Frames before the damage still count: cutting the tail off a known video must not hide it.
        if not sampler.frames:
            known = isinstance(exc, (av.FFmpegError, ValueError, OSError, MemoryError))
            raise RejectedFile(f"corrupt video: {exc}" if known else fault_reason(exc)) from exc
    if not sampler.frames:
        raise RejectedFile("video has no decodable frames")
    return Sampled(format=fmt, width=width, height=height, duration=duration or sampler.frames[-1].t,
                   frames=sampler.frames)


def _luma_thumb(frame):
    """A coarse grid of the frame's brightness, read straight from the luma plane where there is
    one: scaling every decoded frame with swscale would cost more than decoding it."""
    if frame.format.name.startswith(("yuv", "yuvj", "nv12", "nv21", "gray")):
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:frame.height, :frame.width]
        return luma[::max(1, frame.height // THUMB), ::max(1, frame.width // THUMB)][:THUMB, :THUMB]
    return frame.reformat(width=THUMB, height=THUMB, format="gray").to_ndarray()[:, :THUMB]


def _duration(container, stream):
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _check_side(width, height, limits):
    if width > limits.max_side or height > limits.max_side:
        raise RejectedFile(f"video too large: {width}x{height} (limit {limits.max_side} a side)")


def _check_budget(decoded, started, limits):
    if decoded > limits.max_decoded_frames:
        raise RejectedFile(f"video exceeds the decode budget: more than {limits.max_decoded_frames} frames")
    if time.monotonic() - started > limits.max_wall_seconds:
        raise RejectedFile(f"video exceeds the decode budget: more than {limits.max_wall_seconds:.0f} s "
                           f"to decode {decoded} frames")


@rejects_faults()
def sample_animation(data, limits=DEFAULT_LIMITS, *, max_pixels=50_000_000, max_source_frames=500):
    """Frames of an animated GIF, WebP or PNG, timed by their durations. Raises RejectedFile.

    Returns None for a still image: it has no frames beyond the one hash_image already hashed.
    """
    fmt = sniff_format(data)
    if fmt not in ANIMATED_FORMATS:
        return None
    problem = check_polyglot(data, fmt)
    if problem:
        raise RejectedFile(problem)
    started = time.monotonic()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                count = getattr(img, "n_frames", 1)
                if count <= 1:
                    return None
                return _sample_sequence(img, fmt, count, limits, started, max_pixels=max_pixels,
                                        max_source_frames=max_source_frames)
    except RejectedFile:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RejectedFile(f"animation too large (decompression bomb guard): {exc}") from None
    except UnidentifiedImageError:
        raise RejectedFile(f"corrupt file: cannot identify a {fmt} image") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError) as exc:
        raise RejectedFile(f"corrupt or truncated {fmt} animation: {exc}") from None


def _sample_sequence(img, fmt, count, limits, started, *, max_pixels, max_source_frames):
    width, height = img.size
    if width < 1 or height < 1:
        raise RejectedFile("animation has no pixels")
    if width * height > max_pixels:
        raise RejectedFile(f"animation too large: {width}x{height} pixels (limit {max_pixels})")
    if count > max_source_frames:
        raise RejectedFile(f"too many frames: {count} (limit {max_source_frames})")
    # Every frame must be decoded (GIF and APNG frames are drawn over the previous ones), so the
    # cost is the logical screen times the frame count, however small each frame's own patch is.
    if width * height * count > limits.max_animation_pixels:
        raise RejectedFile(f"animation too large to decode: {width}x{height} x {count} frames "
                           f"(limit {limits.max_animation_pixels} pixels in all)")
    sampler = _Sampler(limits, duration=None)
    t = 0.0
    size = _kept_size(width, height)
    for decoded, frame in enumerate(ImageSequence.Iterator(img), 1):
        _check_budget(decoded, started, limits)
        if frame.size != (width, height):
            raise RejectedFile(f"animation frame {decoded} is {frame.size[0]}x{frame.size[1]}, "
                               f"not the declared {width}x{height}")
        rgb = _to_rgb(frame)
        thumb = np.asarray(rgb.convert("L").resize((THUMB, THUMB), Image.Resampling.BILINEAR))
        sampler.offer(t, thumb, lambda r=rgb: r.resize(size, Image.Resampling.BILINEAR) if r.size != size else r)
        if sampler.full:
            break
        # Browsers show frames of under 20 ms for 100 ms; timestamps follow what a viewer sees.
        duration_ms = frame.info.get("duration") or 0
        t += (duration_ms if duration_ms >= 20 else 100) / 1000
    return Sampled(format=fmt, width=width, height=height, duration=t, frames=sampler.frames)


@rejects_faults()
def frame_hashes(frames, *, orientations=False, min_quality=0, size=None):
    """PDQ of each sampled frame: [{"t", "pdq", "quality"}], the shape stored on Item.frame_hashes.

    "pdq" is the frame as it is, the hash Meta's vPDQ takes, so that video banks made elsewhere
    match. With `orientations`, a frame whose trimmed picture reaches `min_quality` also carries
    "variants": the eight PDQ (in DIHEDRAL order) of the frame trimmed of its bars as hash_image
    trims a still, and "trimmed": those bars in pixels of `size` (the source's width, height), when
    there were any. Where a single trimming pass cut less than two, "outer_variants" and
    "outer_trimmed" hold the frame trimmed once.
    """
    hashes, oriented = [], {}
    for frame in frames:
        pdq, quality = pdq_of(frame.image)
        entry = {"t": frame.t, "pdq": pdq, "quality": quality}
        if orientations:
            # A scene held for seconds is sampled again and again: its picture is trimmed and turned once.
            if pdq not in oriented:
                oriented[pdq] = _orientations(frame.image, min_quality, size or frame.image.size)
            entry.update(oriented[pdq])
        hashes.append(entry)
    return hashes


def _orientations(image, min_quality, size):
    sx, sy = size[0] / image.width, size[1] / image.height
    found = {}
    for prefix, (content, borders) in zip(("", "outer_"), reversed(trim_stages(image.convert("L"))), strict=False):
        variants, quality = pdq_dihedral(content)
        if quality < min_quality:
            continue
        found[f"{prefix}variants"] = [value for _, value in variants]
        if any(borders):
            found[f"{prefix}trimmed"] = [round(b * s) for b, s in zip(borders, (sx, sy, sx, sy), strict=True)]
    return found


def sample_frames(data, *, count=16, limits=DEFAULT_LIMITS):
    """Up to `count` RGB frames spread over a video (for classifiers and review). Raises RejectedFile."""
    return [f.image for f in sample_video(data, replace(limits, max_frames=max(count, 1))).frames]


def spread(frames, count):
    """`count` frames evenly spread over a longer list, first and last included."""
    if len(frames) <= count:
        return list(frames)
    step = (len(frames) - 1) / (count - 1)
    return [frames[round(n * step)] for n in range(count)]


def contact_sheet(frames, columns=4, tile=(160, 120)):
    """The sampled frames as one still, for review: a sheet shows the whole video at a glance, muted."""
    rows = (len(frames) + columns - 1) // columns
    sheet = Image.new("RGB", (min(len(frames), columns) * tile[0], rows * tile[1]), (20, 20, 20))
    for n, frame in enumerate(frames):
        small = frame.copy()
        small.thumbnail(tile)
        x, y = (n % columns) * tile[0], (n // columns) * tile[1]
        sheet.paste(small, (x + (tile[0] - small.width) // 2, y + (tile[1] - small.height) // 2))
    return sheet
