"""Safe decoding of untrusted image bytes and the hashes computed from them (pure: no database)."""

import hashlib
import io
import math
import warnings
from dataclasses import dataclass

import imagehash
import numpy as np
import pdqhash
from PIL import Image, ImageFile, UnidentifiedImageError

ImageFile.LOAD_TRUNCATED_IMAGES = False

# The formats we decode, keyed by the magic bytes that must open the file.
MAGIC = [
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
]
ALLOWED_FORMATS = {"JPEG", "PNG", "GIF", "WEBP", "BMP"}
# Markers of a second file format hidden in an image (polyglots): active content anywhere...
ACTIVE_CONTENT = [b"<script", b"<html", b"<?php", b"<svg", b"<!doctype html"]
# ...and containers or executables appended after the image ends.
APPENDED_CONTAINERS = [b"PK\x03\x04", b"PK\x05\x06", b"%PDF-", b"\x7fELF", b"Rar!", b"7z\xbc\xaf"]
# Short side PDQ is computed on: JPEG draft decoding (DCT scaling) or integer reduction brings the
# image down to between 1x and 2x of this, which is where PDQ's own downsampling works well.
HASH_SHORT_SIDE = 256


class RejectedFile(Exception):
    """The file is not something we will decode; the message is shown to reviewers and the API."""


@dataclass(frozen=True)
class ImageHashes:
    format: str
    width: int
    height: int
    frames: int
    pdq: str
    pdq_quality: int
    phash: str
    dhash: str


def digests(data):
    return hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()


def sniff_format(data):
    for magic, fmt in MAGIC:
        if data.startswith(magic):
            return fmt
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _image_end(data, fmt):
    """Offset just past the image's own end marker, or None where the format has none we trust."""
    if fmt == "JPEG":
        end = data.rfind(b"\xff\xd9")
        return end + 2 if end >= 0 else None
    if fmt == "PNG":
        end = data.rfind(b"IEND")
        return end + 8 if end >= 0 else None  # chunk type + CRC
    if fmt == "GIF":
        end = data.rfind(b"\x3b")
        return end + 1 if end >= 0 else None
    if fmt == "WEBP" and len(data) >= 8:
        return 8 + int.from_bytes(data[4:8], "little")
    return None


def check_polyglot(data, fmt):
    lowered = data[:65536].lower() + data[-65536:].lower()
    for marker in ACTIVE_CONTENT:
        if marker in lowered:
            return f"polyglot file: contains {marker.decode(errors='replace')!r} markup"
    end = _image_end(data, fmt)
    if end is not None and end < len(data):
        trailer = data[end:]
        for marker in APPENDED_CONTAINERS:
            if marker in trailer:
                return f"polyglot file: {len(trailer)} bytes appended after the image hold another format"
    return None


def open_image(data, *, max_pixels, max_frames, short_side=HASH_SHORT_SIDE):
    """Decode untrusted bytes to an RGB image no smaller than `short_side`, or raise RejectedFile."""
    if not data:
        raise RejectedFile("empty file")
    fmt = sniff_format(data)
    if fmt is None:
        raise RejectedFile("unsupported file type: not a JPEG, PNG, GIF, WebP or BMP image")
    problem = check_polyglot(data, fmt)
    if problem:
        raise RejectedFile(problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = max_pixels
            with Image.open(io.BytesIO(data)) as probe:
                _check_header(probe, fmt, max_pixels, max_frames)
                frames = getattr(probe, "n_frames", 1)
                probe.verify()
            img = Image.open(io.BytesIO(data))
            original_size = img.size
            if img.format == "JPEG":
                w, h = img.size
                scale = short_side / min(w, h)
                if scale < 1:
                    img.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
            img.load()
    except RejectedFile:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RejectedFile(f"image too large (decompression bomb guard): {exc}") from None
    except UnidentifiedImageError:
        raise RejectedFile(f"corrupt file: cannot identify a {fmt} image") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise RejectedFile(f"corrupt or truncated {fmt} image: {exc}") from None
    rgb = _to_rgb(img)
    factor = min(rgb.size) // short_side
    if factor >= 2:
        rgb = rgb.reduce(factor)
    return rgb, fmt, original_size, frames


def _check_header(img, fmt, max_pixels, max_frames):
    if img.format not in ALLOWED_FORMATS or img.format != fmt:
        raise RejectedFile(f"file claims to be {fmt} but decodes as {img.format}")
    w, h = img.size
    if w < 1 or h < 1:
        raise RejectedFile("image has no pixels")
    if w * h > max_pixels:
        raise RejectedFile(f"image too large: {w}x{h} pixels (limit {max_pixels})")
    frames = getattr(img, "n_frames", 1)
    if frames > max_frames:
        raise RejectedFile(f"too many frames: {frames} (limit {max_frames})")


def _to_rgb(img):
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")


def pdq_of(rgb):
    bits, quality = pdqhash.compute(np.asarray(rgb))
    # ThreatExchange's convention: the first bit of the vector is the most significant.
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def hash_image(data, *, max_pixels=50_000_000, max_frames=500):
    """All perceptual hashes of an image file. Raises RejectedFile for anything unsafe or broken."""
    rgb, fmt, (width, height), frames = open_image(data, max_pixels=max_pixels, max_frames=max_frames)
    pdq, quality = pdq_of(rgb)
    return ImageHashes(
        format=fmt,
        width=width,
        height=height,
        frames=frames,
        pdq=pdq,
        pdq_quality=quality,
        phash=str(imagehash.phash(rgb)),
        dhash=str(imagehash.dhash(rgb)),
    )


def hamming_hex(a, b):
    return (int(a, 16) ^ int(b, 16)).bit_count()
