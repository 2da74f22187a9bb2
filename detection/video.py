"""Frames from untrusted video (PyAV, FFmpeg inside its wheel): sampled safely, never the sound."""

import io

import av
from PIL import Image

from .hashing import RejectedFile

MAX_SIDE = 4096
MAX_DECODED_FRAMES = 20_000  # a bound on work whatever the file claims about itself


def sample_frames(data, *, count=16, every_seconds=1.0):
    """Up to `count` RGB frames, one per `every_seconds` of video. Raises RejectedFile."""
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise RejectedFile(f"corrupt or unsupported video: {exc}") from None
    frames = []
    try:
        if not container.streams.video:
            raise RejectedFile("no video stream in the file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if (stream.codec_context.width or 0) > MAX_SIDE or (stream.codec_context.height or 0) > MAX_SIDE:
            raise RejectedFile(f"video too large: {stream.codec_context.width}x{stream.codec_context.height}")
        next_at = 0.0
        for decoded, frame in enumerate(container.decode(stream)):
            if decoded >= MAX_DECODED_FRAMES or len(frames) >= count:
                break
            at = float(frame.time) if frame.time is not None else decoded / 25
            if at + 1e-6 >= next_at:
                frames.append(frame.to_image().convert("RGB"))
                next_at = at + every_seconds
    except RejectedFile:
        raise
    except (av.FFmpegError, ValueError, OSError, MemoryError) as exc:
        if not frames:
            raise RejectedFile(f"corrupt video: {exc}") from None
    finally:
        container.close()
    if not frames:
        raise RejectedFile("video has no decodable frames")
    return frames


def contact_sheet(frames, columns=4, tile=(160, 120)):
    """The sampled frames as one still, for review: a sheet shows the whole video at a glance, muted."""
    rows = (len(frames) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * tile[0], rows * tile[1]), (20, 20, 20))
    for n, frame in enumerate(frames):
        small = frame.copy()
        small.thumbnail(tile)
        x, y = (n % columns) * tile[0], (n // columns) * tile[1]
        sheet.paste(small, (x + (tile[0] - small.width) // 2, y + (tile[1] - small.height) // 2))
    return sheet
