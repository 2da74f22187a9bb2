"""Benchmark: which edited copies each hash still matches, and how often unrelated pictures collide.

Originals are the photographs shipped inside the scikit-image package (read from its installed
files, never fetched) and synthetic images. Each original is encoded as a JPEG, edited the way
re-shared copies are, and hashed two ways: plain PDQ as most tools compute it (one hash of the
picture as it is), and the scan's pipeline (bars trimmed, all eight orientations).
"""

from itertools import combinations
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image
from tqdm import tqdm

from detection.detectors.hashing import hash_image, open_image, pdq_of
from reviewconsole.devtools import synthetic

PHOTOS = [
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "color.png",
    "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
    "motorcycle_left.png", "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg", "text.png",
]
S = synthetic
EDITS = {
    "resize 50 %": lambda img: S.resized(img, 0.5),
    "JPEG quality 30": lambda img: S.recompressed(img, 30),
    "watermark text": S.watermarked,
    "brightness +30 %": lambda img: _brighter(img, 1.3),
    "mirror": S.mirrored,
    "flip upside down": S.flipped,
    "rotate 90°": S.rotated_90,
    "rotate 180°": S.rotated_180,
    "rotate 270°": S.rotated_270,
    "transpose": S.transposed,
    "letterbox 10 % (bars top and bottom)": S.letterboxed,
    "pillarbox 10 % (bars left and right)": S.pillarboxed,
    "mirror + JPEG quality 30": lambda img: S.recompressed(S.mirrored(img), 30),
    "letterbox + resize 50 %": lambda img: S.resized(S.letterboxed(img), 0.5),
    "rotate 90° + resize 50 %": lambda img: S.resized(S.rotated_90(img), 0.5),
    "crop 5 % of each side": S.cropped,
    "rotate 3°": S.tilted,
}
METHODS = ["PDQ plain", "PDQ scan", "pHash", "dHash", "any"]
LIMITS = {"max_pixels": 50_000_000, "max_frames": 500}


def run(out, synthetic_images=300, photos=True):
    originals = _originals(synthetic_images, photos)
    thresholds = {"PDQ plain": 31, "PDQ scan": 31, "pHash": 6, "dHash": 6}
    hashed = [_hashes(S.encode(img)) for _, img in tqdm(originals, unit="img", desc="originals")]
    hits = {edit: {"photo": np.zeros(len(METHODS)), "synthetic": np.zeros(len(METHODS))} for edit in EDITS}
    for (source, img), original in tqdm(list(zip(originals, hashed, strict=True)), unit="img", desc="edits"):
        for edit, apply in EDITS.items():
            copy = _hashes(S.encode(apply(img)))
            hits[edit][source] += [_matched(copy, original, m, thresholds) for m in METHODS]
    counts = {source: sum(s == source for s, _ in originals) for source in ("photo", "synthetic")}
    out(f"Share of edited copies that still match their original ({counts['photo']} photographs from the "
        f"scikit-image package · {counts['synthetic']} synthetic images; PDQ ≤ {thresholds['PDQ plain']}, "
        f"pHash ≤ {thresholds['pHash']}, dHash ≤ {thresholds['dHash']} of 64 bits; PDQ only where the copy's "
        f"quality ≥ {settings.PDQ_MIN_QUALITY}):")
    out("")
    out("| edit | " + " | ".join(_HEADINGS[m] for m in METHODS) + " |")
    out("|---|" + "---|" * len(METHODS))
    for edit in EDITS:
        cells = [" · ".join(_pct(hits[edit][source][i], counts[source]) for source in ("photo", "synthetic"))
                 for i in range(len(METHODS))]
        out(f"| {edit} | " + " | ".join(cells) + " |")
    pairs, false = _false_matches(hashed, thresholds)
    cells = [f"{false[m]} ({100 * false[m] / max(pairs, 1):.3f} %)" for m in METHODS]
    out(f"| **false matches** among {pairs:,} pairs of unrelated originals | " + " | ".join(cells) + " |")
    out("")
    scan = METHODS.index("PDQ scan")
    missed = [edit for edit in EDITS if hits[edit]["photo"][scan] + hits[edit]["synthetic"][scan]
              < (counts["photo"] + counts["synthetic"]) / 2]
    out("Cells: photographs · synthetic. 'PDQ scan' is what the scan does: letterbox and pillarbox bars cut off, "
        "then PDQ of all eight orientations (rotations by 90° and mirrors) matched.")
    if missed:
        out(f"Not closed: {', '.join(missed)}. PDQ, pHash and dHash are global hashes of the whole frame: cutting "
            "off the edges or turning the picture by a few degrees moves every coefficient, which they are not "
            "designed to survive; what pHash and dHash still catch there are second opinions at 6 of 64 bits. "
            "Those copies need local features (keypoints) or a learned embedding, not a looser threshold.")


_HEADINGS = {"PDQ plain": "PDQ plain (as is)", "PDQ scan": "PDQ scan (trim + 8 orientations)",
             "pHash": "pHash ≤ 6", "dHash": "dHash ≤ 6", "any": "any"}


def _originals(count, photos):
    images = []
    if photos:
        import skimage

        folder = Path(skimage.__file__).parent / "data"
        for name in PHOTOS:
            if (folder / name).exists():
                with Image.open(folder / name) as img:
                    images.append(("photo", img.convert("RGB")))
    images += [("synthetic", S.make_image(20_000 + n)) for n in range(count)]
    return images


def _brighter(img, factor):
    arr = np.asarray(img).astype(np.float32) * factor
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _hashes(data):
    rgb = open_image(data, **LIMITS)[0]
    plain, plain_quality = pdq_of(rgb)
    scan = hash_image(data, **LIMITS)
    return {"plain": plain, "plain_quality": plain_quality, "variants": [v for _, v in scan.pdq_variants],
            "pdq": scan.pdq, "quality": scan.pdq_quality, "phash": scan.phash, "dhash": scan.dhash}


def _distance(a, b):
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _matched(query, bank, method, thresholds):
    """Would the bank entry made from `bank` match the item `query`, by this method?"""
    usable = query["quality"] >= settings.PDQ_MIN_QUALITY
    if method == "PDQ plain":
        return (query["plain_quality"] >= settings.PDQ_MIN_QUALITY
                and _distance(query["plain"], bank["plain"]) <= thresholds[method])
    if method == "PDQ scan":
        return usable and min(_distance(v, bank["pdq"]) for v in query["variants"]) <= thresholds[method]
    if method in ("pHash", "dHash"):
        key = method.lower()
        return _distance(query[key], bank[key]) <= thresholds[method]
    return any(_matched(query, bank, m, thresholds) for m in ("PDQ scan", "pHash", "dHash"))


def _false_matches(hashed, thresholds):
    """Unordered pairs of different originals where either, as an item, matches the other as a bank entry."""
    false = dict.fromkeys(METHODS, 0)
    pairs = 0
    for a, b in combinations(hashed, 2):
        pairs += 1
        for method in METHODS:
            if _matched(a, b, method, thresholds) or _matched(b, a, method, thresholds):
                false[method] += 1
    return pairs, false


def _pct(hit, total):
    return f"{100 * hit / total:.0f} %" if total else "–"
