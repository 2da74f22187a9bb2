"""Safe decoding of untrusted image bytes and the hashes computed from them (pure: no database)."""

import functools
import hashlib
import io
import math
import struct
import warnings
import zlib
from dataclasses import dataclass

import imagehash
import numpy as np
import pdqhash
from PIL import Image, ImageFile, UnidentifiedImageError

from detection.detectors.polyglot import check_polyglot

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
# What decoders raise on bytes they cannot make sense of, wherever in their code the bytes trip
# them (an IndexError reading past a GIF block, a struct.error unpacking a short header): every
# built-in error class and the libraries' own. Any other exception class that reaches a decoder
# (a job's timeout, raised into it by a signal handler) is not the file's doing and passes through.
DECODE_FAULTS = (ArithmeticError, AssertionError, AttributeError, BufferError, EOFError, LookupError,
                 MemoryError, OSError, RuntimeError, SyntaxError, SystemError, TypeError, ValueError, Warning,
                 struct.error, zlib.error, Image.DecompressionBombError)
# Short side the image is decoded to: JPEG draft decoding (DCT scaling) or integer reduction brings
# it down to between 1x and 2x of this, cheaply and with enough detail left to find borders.
HASH_SHORT_SIDE = 256
# PDQ runs on a square of this side. PDQ squashes every image to 64x64 anyway; at 320 its box
# filter has an odd window and its sample points fall between pixels, so the filter is symmetric
# and the eight dihedral hashes it derives from one pass equal the hashes of the rotated or
# mirrored image exactly (at other sizes they are off by up to 44 bits).
PDQ_SIDE = 320
# The eight orientations, named for how a copy differs from the original when that variant of
# the copy's hash matches: variant k is the hash of the copy turned back by the named edit.
# Order as pdqhash.compute_dihedral returns them.
DIHEDRAL = (
    "original",
    "rotated 90° clockwise",
    "rotated 180°",
    "rotated 90° counter-clockwise",
    "flipped upside down",
    "mirrored",
    "transposed",
    "transposed across the other diagonal",
)
# Name of the extra query hash of a trimmed image taken with its borders, for banks whose hashes
# were made elsewhere without trimming.
UNTRIMMED = "with its borders"
# Border trimming: a band at an edge is a letterbox or pillarbox bar when nearly all its pixels
# sit within BORDER_TOLERANCE of the edge's colour (loose enough for JPEG noise) and its mean
# within BORDER_MEAN_TOLERANCE (tight, so that gradients such as skies do not pass for bars).
BORDER_TOLERANCE = 24
BORDER_MEAN_TOLERANCE = 4
BORDER_SHARE = 0.98
BORDER_NOISE = 2.0  # standard deviation of the outermost line, per channel
BORDER_EDGE_SHARE = 0.05  # of the first content line that must stand out from the bar
BORDER_MAX = 0.35  # of the side, per edge
BORDER_MIN = 0.02  # thinner bands are frames or vignetting, and hardly move the hash
BORDER_PAIRING = 0.5  # the narrower bar of a pair is at least this share of the wider
TRIMMED_MIN = 0.25  # of each side, and at least TRIMMED_MIN_PIXELS, must remain
TRIMMED_MIN_PIXELS = 32


class RejectedFile(Exception):
    """The file is not something we will decode; the message is shown to reviewers and the API."""


def fault_reason(exc):
    """"could not decode: IndexError: index out of range": the reason given for a decoder's fault."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"could not decode: {name}: {exc}"[:300]


def rejects_faults(*faults):
    """Turn a decoder's faults (DECODE_FAULTS and `faults`) into RejectedFile, for one file alone:
    what the checks did not foresee still ends as a rejection with a reason, never a crash."""
    caught = DECODE_FAULTS + faults

    def decorate(func):
        @functools.wraps(func)
        def guarded(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except caught as exc:
                raise RejectedFile(fault_reason(exc)) from exc
        return guarded
    return decorate


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
    # ((name, hex), ...): "original" first (equal to `pdq`), then the other seven orientations,
    # then, for a trimmed image, the hash with its borders.
    pdq_variants: tuple = ()
    # Letterbox/pillarbox bars removed before hashing, in original pixels (left, top, right, bottom).
    trimmed: tuple = (0, 0, 0, 0)


def digests(data):
    return hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()


def sniff_format(data):
    for magic, fmt in MAGIC:
        if data.startswith(magic):
            return fmt
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


@rejects_faults()
def open_image(data, *, max_pixels, max_frames, short_side=HASH_SHORT_SIDE, grey=False):
    """Decode untrusted bytes to an RGB image no smaller than `short_side`, or raise RejectedFile.

    `grey`: decode to luma ("L") instead; a JPEG then skips its colour planes altogether.
    """
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
                    img.draft("L" if grey else "RGB", (math.ceil(w * scale), math.ceil(h * scale)))
            img.load()
    except RejectedFile:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RejectedFile(f"image too large (decompression bomb guard): {exc}") from None
    except UnidentifiedImageError:
        raise RejectedFile(f"corrupt file: cannot identify a {fmt} image") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise RejectedFile(f"corrupt or truncated {fmt} image: {exc}") from None
    rgb = img if grey and img.mode == "L" else _to_rgb(img)
    if grey:
        rgb = rgb.convert("L")
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
    """PDQ of an image as it is, without trimming or resizing (the hash most other tools compute)."""
    bits, quality = pdqhash.compute(np.asarray(rgb))
    return _hex(bits), int(quality)


def _hex(bits):
    # ThreatExchange's convention: the first bit of the vector is the most significant.
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def pdq_square(img):
    """The grey PDQ_SIDE square that PDQ, pHash and dHash are computed from.

    Grey first: PDQ reads luma only, with the same weights as Pillow's "L", and a third of the
    pixels resize three times faster. BOX comes closest to plain PDQ of the full picture.
    """
    return img.convert("L").resize((PDQ_SIDE, PDQ_SIDE), Image.BOX)


def pdq_dihedral(img):
    """The eight PDQ hashes of an image's orientations, ((name, hex), ...), and its quality."""
    if img.mode != "L" or img.size != (PDQ_SIDE, PDQ_SIDE):
        img = pdq_square(img)
    grey = np.asarray(img)
    # It takes RGB only: three views of the same grey plane, no copy.
    vectors, quality = pdqhash.compute_dihedral(np.broadcast_to(grey[:, :, None], (*grey.shape, 3)))
    return tuple(zip(DIHEDRAL, (_hex(v) for v in vectors), strict=True)), int(quality)


def find_borders(rgb):
    """Widths (left, top, right, bottom) of flat letterbox/pillarbox bars, or zeros if none."""
    pixels = np.asarray(rgb)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]  # grey: one channel
    h, w = pixels.shape[:2]
    if min(h, w) < TRIMMED_MIN_PIXELS * 2:
        return (0, 0, 0, 0)
    # Bands per edge, each turned so that its first row is the outermost line of the image.
    cut_w, cut_h = int(w * BORDER_MAX) + 1, int(h * BORDER_MAX) + 1
    left = _bar_width(pixels[:, :cut_w].transpose(1, 0, 2))
    top = _bar_width(pixels[:cut_h])
    right = _bar_width(pixels[:, w - cut_w:][:, ::-1].transpose(1, 0, 2))
    bottom = _bar_width(pixels[h - cut_h:][::-1])
    for first, second, side in ((left, right, w), (top, bottom, h)):
        if side - first - second < max(TRIMMED_MIN_PIXELS, side * TRIMMED_MIN):
            return (0, 0, 0, 0)
    # Letterbox and pillarbox bars come in pairs of about the same width; a flat band on one
    # side only is a caption or watermark strip, or part of the picture, and stays.
    if not _paired(left, right):
        left = right = 0
    if not _paired(top, bottom):
        top = bottom = 0
    return (left, top, right, bottom)


def _paired(first, second):
    return min(first, second) >= BORDER_PAIRING * max(first, second)


def trim(rgb, passes=2):
    """The image without its bars, and the widths cut off (left, top, right, bottom).

    A second pass catches bars inside bars: a picture on a white page, letterboxed in black.
    """
    total = np.zeros(4, dtype=int)
    for _ in range(passes):
        borders = find_borders(rgb)
        if not any(borders):
            break
        left, top, right, bottom = borders
        rgb = rgb.crop((left, top, rgb.width - right, rgb.height - bottom))
        total += borders
    return rgb, tuple(int(b) for b in total)


def trim_stages(img, passes=2):
    """The image after each trimming pass that cut something, with the widths cut off so far:
    [(image, (left, top, right, bottom)), ...], the last as trim() returns it; [(img, zeros)] when
    there are no bars.

    Video frames are hashed at every stage: compression smooths the noise out of a picture's flat
    gradients (a sky, a backdrop) until the second pass takes them for bars inside the bars.
    """
    stages, total = [], np.zeros(4, dtype=int)
    for _ in range(passes):
        borders = find_borders(img)
        if not any(borders):
            break
        left, top, right, bottom = borders
        img = img.crop((left, top, img.width - right, img.height - bottom))
        total += borders
        stages.append((img, tuple(int(b) for b in total)))
    return stages or [(img, (0, 0, 0, 0))]


def _bar_width(band):
    """How many leading rows of `band` form a bar: flat, noiseless, and ending in a sharp edge."""
    edge = band[0].astype(np.int16)
    # Bars are drawn, not photographed: sensor noise or a gradient (a sky, a studio backdrop)
    # in the outermost line means this is part of the picture.
    if edge.std(axis=0).max() > BORDER_NOISE:
        return 0  # the common case for a photo: one line looked at, nothing more
    colour = np.median(edge, axis=0)
    if not _flat(edge[None], colour)[0]:
        return 0
    run = None
    for start in range(0, len(band), 16):  # bars are narrow: look at a few rows at a time
        flat = _flat(band[start:start + 16].astype(np.int16), colour)
        if not flat.all():
            run = start + int(np.argmin(flat))
            break
    if run is None or run < max(2, BORDER_MIN * len(band) / BORDER_MAX):
        return 0  # flat beyond the cap (no edge seen), or too thin to matter
    # The picture must start within a few lines, where pixels stand out from the bar; the lines
    # before it are JPEG ringing and belong to the bar. A slow drift is a gradient, not a bar.
    after = band[run:run + 8].astype(np.int16)
    edge = (np.abs(after - colour).max(axis=2) > BORDER_TOLERANCE).mean(axis=1) >= BORDER_EDGE_SHARE
    return run + int(np.argmax(edge)) if edge.any() else 0


def _flat(rows, colour):
    """Per row: nearly all pixels near `colour` (JPEG noise allowed) and the row's mean on it."""
    near = (np.abs(rows - colour).max(axis=2) <= BORDER_TOLERANCE).mean(axis=1) >= BORDER_SHARE
    steady = (np.abs(rows.mean(axis=1) - colour) <= BORDER_MEAN_TOLERANCE).all(axis=1)
    return near & steady


@rejects_faults()
def hash_image(data, *, max_pixels=50_000_000, max_frames=500):
    """All perceptual hashes of an image file. Raises RejectedFile for anything unsafe or broken.

    Letterbox and pillarbox bars are cut off first, so that a copy with bars added hashes like the
    original; our own bank entries are hashed by this same function, so both sides agree.
    """
    # Every hash reads luma only, so the picture is decoded grey: half the decoding work of colour.
    decoded, fmt, (width, height), frames = open_image(data, max_pixels=max_pixels, max_frames=max_frames, grey=True)
    content, borders = trim(decoded)
    square = pdq_square(content)
    variants, quality = pdq_dihedral(square)
    if any(borders):
        variants += ((UNTRIMMED, pdq_dihedral(decoded)[0][0][1]),)
    sx, sy = width / decoded.width, height / decoded.height
    trimmed = tuple(round(b * s) for b, s in zip(borders, (sx, sy, sx, sy), strict=True))
    return ImageHashes(
        format=fmt,
        width=width,
        height=height,
        frames=frames,
        pdq=variants[0][1],
        pdq_quality=quality,
        phash=str(imagehash.phash(square)),
        dhash=str(imagehash.dhash(square)),
        pdq_variants=variants,
        trimmed=trimmed,
    )


def hamming_hex(a, b):
    return (int(a, 16) ^ int(b, 16)).bit_count()


ORIENTATION_NAMES = (*DIHEDRAL, UNTRIMMED)


def pack_orientations(variants):
    """((name, hex), ...) as scanned → 32 bytes per orientation, in ORIENTATION_NAMES order (stored
    on the item, so that hashes that arrive later can be searched against every orientation)."""
    by_name = dict(variants)
    if not by_name:
        return b""
    # A hash sent without its orientations (hash-only intake) is stored as its original alone.
    names = [name for name in ORIENTATION_NAMES if name in by_name]
    if names[:1] != ["original"] or names[:len(DIHEDRAL)] != list(DIHEDRAL)[:len(names[:len(DIHEDRAL)])]:
        raise ValueError("orientations must start with the original and follow the dihedral order")
    return b"".join(bytes.fromhex(by_name[name]) for name in names)


def unpack_orientations(data):
    """The stored bytes back as ((name, hex), ...). One hash: the original only; 9: with the untrimmed."""
    data = bytes(data or b"")
    if len(data) % 32:
        raise ValueError("stored orientations are not a whole number of 256-bit hashes")
    hashes = [data[i:i + 32].hex() for i in range(0, len(data), 32)]
    if len(hashes) == len(DIHEDRAL) + 1 or len(hashes) <= len(DIHEDRAL):
        return tuple(zip(ORIENTATION_NAMES, hashes, strict=False))
    raise ValueError(f"{len(hashes)} stored orientations: expected at most {len(ORIENTATION_NAMES)}")
