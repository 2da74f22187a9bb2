"""Renditions of evidence for the browser: re-encoded on the server, blurred unless revealed."""

import io

from django.conf import settings
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from detection.hashing import RejectedFile, open_image

from . import storage
from .models import ItemKind

THUMB_SIDE = 320
REVEAL_SIDE = 1024
BLUR_RADIUS = 14


def _encode(img, quality=80):
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=False)  # drops EXIF and everything else
    return out.getvalue()


def _placeholder(text):
    img = Image.new("L", (THUMB_SIDE, THUMB_SIDE * 3 // 4), 200)
    ImageDraw.Draw(img).text((16, THUMB_SIDE * 3 // 8 - 6), text, fill=60)
    return _encode(img)


def _decoded(item, side):
    data = storage.read_original(item.storage_path)
    rgb, _, _, _ = open_image(data, max_pixels=settings.IMAGE_MAX_PIXELS, max_frames=settings.IMAGE_MAX_FRAMES,
                              short_side=side)
    rgb.thumbnail((side, side))
    return rgb


def blurred(item):
    """The default rendition: small, greyscale and strongly blurred. Cached in the private store."""
    if item.purged_at:
        return _placeholder("Evidence destroyed")
    if item.kind != ItemKind.IMAGE:
        return _placeholder(f"{item.get_kind_display()}: no preview")
    cached = storage.derivative_path(item.pk, "blur.jpg")
    if cached.exists():
        return cached.read_bytes()
    try:
        img = _decoded(item, THUMB_SIDE)
    except (RejectedFile, FileNotFoundError):
        return _placeholder("No preview: file rejected or missing")
    img = ImageOps.grayscale(img).filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    data = _encode(img, quality=70)
    cached.write_bytes(data)
    return data


def revealed(item):
    """The unblurred rendition, re-encoded; only ever produced after the reveal is audited."""
    if item.purged_at:
        return _placeholder("Evidence destroyed")
    if item.kind != ItemKind.IMAGE:
        return _placeholder(f"{item.get_kind_display()}: no preview")
    try:
        return _encode(_decoded(item, REVEAL_SIDE), quality=85)
    except (RejectedFile, FileNotFoundError):
        return _placeholder("No preview: file rejected or missing")
