"""Synthetic, benign images for demo data, tests and benchmarks: shapes, gradients, noise, text.

Nothing here resembles a person. Each image is fully determined by its seed, so a "known
material" demo bank is simply the hashes of some seeds' images.
"""

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WORDS = ["harbour", "meadow", "lantern", "orchard", "granite", "willow", "copper", "estuary", "summit", "thistle"]


def make_image(seed, size=(640, 480)):
    rng = random.Random(seed)
    w, h = size
    gen = np.random.default_rng(seed)
    # Gradient background in two random colours.
    a = np.array([rng.randrange(256) for _ in range(3)], dtype=np.float32)
    b = np.array([rng.randrange(256) for _ in range(3)], dtype=np.float32)
    t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    if rng.random() < 0.5:
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    base = a * (1 - t) + b * t
    base = np.broadcast_to(base, (h, w, 3)).copy()
    base += gen.normal(0, 6, size=(h, w, 3)).astype(np.float32)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(12, 30)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randint(w // 16, w // 3), y0 + rng.randint(h // 16, h // 3)
        colour = tuple(rng.randrange(256) for _ in range(3))
        shape = rng.choice(["rect", "ellipse", "line", "polygon"])
        if shape == "rect":
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        elif shape == "ellipse":
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif shape == "line":
            draw.line([x0, y0, x1, y1], fill=colour, width=rng.randint(3, 20))
        else:
            points = [(rng.randrange(w), rng.randrange(h)) for _ in range(rng.randint(3, 6))]
            draw.polygon(points, fill=colour)
    draw.text((rng.randrange(w // 2), rng.randrange(h - 20)), rng.choice(WORDS), fill=(255, 255, 255))
    return img.filter(ImageFilter.SMOOTH) if rng.random() < 0.3 else img


def encode(img, fmt="JPEG", quality=90):
    out = io.BytesIO()
    img.save(out, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return out.getvalue()


# Edits a platform sees on re-shared copies; each keeps the picture recognisable.
def resized(img, factor=0.6):
    return img.resize((max(1, int(img.width * factor)), max(1, int(img.height * factor))), Image.BILINEAR)


def recompressed(img, quality=40):
    return Image.open(io.BytesIO(encode(img, quality=quality))).convert("RGB")


def watermarked(img, text="shared via demo"):
    copy = img.copy()
    draw = ImageDraw.Draw(copy)
    draw.rectangle([0, copy.height - 28, copy.width, copy.height], fill=(0, 0, 0))
    draw.text((8, copy.height - 22), text, fill=(255, 255, 255))
    return copy


def brightened(img, delta=30):
    arr = np.asarray(img).astype(np.int16) + delta
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


EDITS = {"resized": resized, "recompressed": recompressed, "watermarked": watermarked, "brightened": brightened}


# Edits that move pixels around. Plain PDQ does not survive these; the scan undoes the
# orientation changes (dihedral hashes) and the bars (trimming). Crops and small rotations stay
# beyond a global hash's reach.
def mirrored(img):
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def flipped(img):
    return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)


def rotated_90(img):
    return img.transpose(Image.Transpose.ROTATE_270)  # PIL turns counter-clockwise: this is 90° clockwise


def rotated_180(img):
    return img.transpose(Image.Transpose.ROTATE_180)


def rotated_270(img):
    return img.transpose(Image.Transpose.ROTATE_90)


def transposed(img):
    return img.transpose(Image.Transpose.TRANSPOSE)


def letterboxed(img, share=0.1, colour=(0, 0, 0)):
    """Bars of `share` of the height added above and below, as when a picture is fitted to a frame."""
    bar = max(1, int(img.height * share))
    framed = Image.new("RGB", (img.width, img.height + 2 * bar), colour)
    framed.paste(img, (0, bar))
    return framed


def pillarboxed(img, share=0.1, colour=(0, 0, 0)):
    bar = max(1, int(img.width * share))
    framed = Image.new("RGB", (img.width + 2 * bar, img.height), colour)
    framed.paste(img, (bar, 0))
    return framed


def cropped(img, share=0.05):
    """`share` of each side cut off."""
    dx, dy = int(img.width * share), int(img.height * share)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


def tilted(img, degrees=3):
    return img.rotate(degrees, resample=Image.BILINEAR, expand=False)


GEOMETRIC_EDITS = {
    "mirrored": mirrored, "flipped": flipped, "rotated_90": rotated_90, "rotated_180": rotated_180,
    "rotated_270": rotated_270, "transposed": transposed, "letterboxed": letterboxed,
    "pillarboxed": pillarboxed, "cropped": cropped, "tilted": tilted,
}
