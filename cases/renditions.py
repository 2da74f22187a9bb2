"""Renditions of evidence for the browser: re-encoded on the server, blurred unless revealed."""

import io

from django.conf import settings
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from cases.models import ViewingPreference
from detection.detectors.hashing import RejectedFile, open_image
from detection.detectors.video import Limits, contact_sheet, sample_animation, sample_video, spread
from detection.models import ItemKind
from reviewconsole import storage

THUMB_SIDE = 320
REVEAL_SIDE = 1024
SHEET_FRAMES = 16  # of the sampled frames, spread over the whole video: enough to judge at a glance
NO_MEDIA = "No media held (the platform sent hashes only)"


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
    limits = Limits.from_settings(settings)
    if item.kind == ItemKind.VIDEO:
        return _sheet(sample_video(data, limits), side)
    animation = sample_animation(data, limits, max_pixels=settings.IMAGE_MAX_PIXELS,
                                 max_source_frames=settings.IMAGE_MAX_FRAMES)
    if animation is not None:
        return _sheet(animation, side)
    rgb, _, _, _ = open_image(data, max_pixels=settings.IMAGE_MAX_PIXELS, max_frames=settings.IMAGE_MAX_FRAMES,
                              short_side=side)
    rgb.thumbnail((side, side))
    return rgb


def _sheet(sampled, side):
    """A video or animation as one still of its frames: never the moving file, never its sound."""
    sheet = contact_sheet([frame.image for frame in spread(sampled.frames, SHEET_FRAMES)])
    sheet.thumbnail((side * 2, side * 2))
    return sheet


BLUR_RADIUS = {"strong": 14, "light": 5, "none": 0}
SEPIA = ((40, 26, 13), (255, 240, 192))


def reduce_detail(img):
    """Illustration-like: a few flat colours and their outlines, enough to judge, less to absorb."""
    flat = ImageOps.posterize(img.convert("RGB").filter(ImageFilter.ModeFilter(5)), 2)
    edges = ImageOps.invert(img.convert("L").filter(ImageFilter.FIND_EDGES)).point(lambda v: 0 if v < 200 else 255)
    return Image.composite(flat, Image.new("RGB", img.size, (30, 30, 30)), edges)


def filtered(img, pref):
    """Apply a reviewer's filters to a small rendition: reduced detail, tone, then blur."""
    if pref.detail == "reduced":
        img = reduce_detail(img)
    if pref.tone == "greyscale":
        img = ImageOps.grayscale(img)
    elif pref.tone == "sepia":
        img = ImageOps.colorize(ImageOps.grayscale(img), *SEPIA)
    radius = BLUR_RADIUS.get(pref.blur, BLUR_RADIUS["strong"])
    return img.filter(ImageFilter.GaussianBlur(radius)) if radius else img


def warning_card(lines):
    """What the detectors found, in place of the image: no pixel of the evidence is in it."""
    img = Image.new("L", (THUMB_SIDE, THUMB_SIDE * 3 // 4), 225)
    draw = ImageDraw.Draw(img)
    draw.text((14, 14), "Content warning", fill=40)
    for n, line in enumerate(lines[:6]):
        draw.text((14, 44 + 22 * n), line[:48], fill=70)
    return _encode(img)


def shows_unblurred(item, pref):
    """Whether `blurred(item, pref)` would show the item's pixels without blur (a "no blur" preference
    on a picture): such a rendition is a reveal, whatever its other filters."""
    return (pref.blur == ViewingPreference.Blur.NONE and not pref.warning_screen and not pref.problem_for(None)
            and not item.purged_at and not item.hash_only and item.kind in (ItemKind.IMAGE, ItemKind.VIDEO))


def org_default(category=""):
    """The organisation's default for a category (else for all), blurred: a "no blur" default is replaced by
    the built-in safe default, so that this is always safe to serve without a reveal."""
    rows = {p.category: p for p in ViewingPreference.objects.filter(user__isnull=True, category__in={category, ""})}
    pref = rows.get(category) or rows.get("") or ViewingPreference()
    if pref.blur == ViewingPreference.Blur.NONE or pref.problem_for(None):
        pref = ViewingPreference()
    return pref


def blurred(item, pref=None, caption=()):
    """The default rendition: small and filtered per the reviewer's preference (strong blur and
    greyscale unless they chose otherwise), or a warning card. Cached in the private store."""
    pref = pref or ViewingPreference()
    if pref.problem_for(None):
        pref = ViewingPreference()  # never unfiltered by default, whatever was stored
    if item.hash_only:
        return _placeholder(NO_MEDIA)
    if pref.warning_screen:
        return warning_card(list(caption) or ["Evidence item"])
    if item.purged_at:
        return _placeholder("Evidence destroyed")
    if item.kind not in (ItemKind.IMAGE, ItemKind.VIDEO):
        return _placeholder(f"{item.get_kind_display()}: no preview")
    cached = storage.derivative_path(item.pk, f"{pref.signature}.jpg")
    if cached.exists():
        return cached.read_bytes()
    try:
        img = _decoded(item, THUMB_SIDE)
    except (RejectedFile, FileNotFoundError):
        return _placeholder("No preview: file rejected or missing")
    data = _encode(filtered(img, pref), quality=70)
    cached.write_bytes(data)
    return data


def revealed(item):
    """The unblurred rendition, re-encoded; only ever produced after the reveal is audited."""
    if item.hash_only:
        return _placeholder(NO_MEDIA)
    if item.purged_at:
        return _placeholder("Evidence destroyed")
    if item.kind not in (ItemKind.IMAGE, ItemKind.VIDEO):
        return _placeholder(f"{item.get_kind_display()}: no preview")
    try:
        return _encode(_decoded(item, REVEAL_SIDE), quality=85)
    except (RejectedFile, FileNotFoundError):
        return _placeholder("No preview: file rejected or missing")
