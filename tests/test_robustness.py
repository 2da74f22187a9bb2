"""Turned, mirrored and letterboxed copies of known pictures still match; unrelated ones do not."""

import time
from functools import lru_cache
from itertools import combinations
from pathlib import Path

import pytest
import skimage
from PIL import Image

from detection import intake
from detection.detectors.hashing import DIHEDRAL, UNTRIMMED, find_borders, hamming_hex, hash_image, pdq_of
from detection.jobs import scan as jobs
from detection.models import Item, Signal
from reviewconsole.devtools import synthetic
from tests.factories import known_bank, scanned_item

PHOTOS = Path(skimage.__file__).parent / "data"
# Photographs only: the drawings shipped beside them (horse, logo, phantom) sit on flat
# backgrounds that are, by any measure we can take, bars.
PHOTO_NAMES = [
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "color.png",
    "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
    "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg", "text.png",
]
# Each geometric edit and the orientation variant of the copy that should find the original.
TURNS = {
    "mirrored": "mirrored", "flipped": "flipped upside down", "rotated_90": "rotated 90° clockwise",
    "rotated_180": "rotated 180°", "rotated_270": "rotated 90° counter-clockwise", "transposed": "transposed",
}


@lru_cache(maxsize=64)
def photo(name):
    with Image.open(PHOTOS / name) as img:
        return img.convert("RGB")


@lru_cache(maxsize=128)
def edited(seed, edit, quality=90):
    img = synthetic.make_image(seed)
    return synthetic.encode(synthetic.GEOMETRIC_EDITS[edit](img) if edit else img, quality=quality)


def variants(data):
    return dict(hash_image(data).pdq_variants)


@pytest.mark.django_db
@pytest.mark.parametrize("edit, words", [
    ("mirrored", "the copy is mirrored"),
    ("rotated_90", "the copy is rotated 90° clockwise"),
    ("letterboxed", "after removing a letterbox"),
    ("pillarboxed", "after removing a pillarbox"),
])
def test_an_edited_copy_of_a_known_picture_matches_with_the_edit_explained(edit, words):
    known_bank([41], types=("pdq",))
    item = scanned_item(edited(41, edit))
    (signal,) = Signal.objects.filter(item=item)
    assert words in signal.explanation
    (evidence,) = signal.details["hashes"]
    assert evidence["type"] == "pdq" and evidence["distance"] <= 31
    assert ("transform" in evidence) == (edit in TURNS)
    assert ("trimmed" in evidence) == (edit in ("letterboxed", "pillarboxed"))


@pytest.mark.parametrize("edit", TURNS)
def test_each_orientation_variant_equals_the_hash_of_the_turned_copy(edit):
    original = hash_image(edited(7, None)).pdq
    copy = variants(edited(7, edit))
    assert hamming_hex(copy[TURNS[edit]], original) <= 8
    assert hamming_hex(copy["original"], original) > 31  # plain PDQ alone would miss it


@pytest.mark.parametrize("edit", ["letterboxed", "pillarboxed"])
@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (90, 140, 60)])
def test_bars_of_any_flat_colour_are_cut_off_before_hashing(edit, colour):
    img = synthetic.make_image(8)
    framed = synthetic.GEOMETRIC_EDITS[edit](img, colour=colour)
    for quality in (90, 30):
        hashes = hash_image(synthetic.encode(framed, quality=quality))
        left, top, right, bottom = hashes.trimmed
        bars = (top, bottom) if edit == "letterboxed" else (left, right)
        assert all(44 <= bar <= 66 for bar in bars), hashes.trimmed
        assert hamming_hex(hashes.pdq, hash_image(edited(8, None)).pdq) <= 20
        # The hash with the bars is kept for banks whose hashes were made without trimming.
        assert hashes.pdq_variants[-1][0] == UNTRIMMED


def test_a_resized_and_recompressed_letterboxed_copy_still_matches():
    img = synthetic.resized(synthetic.letterboxed(synthetic.make_image(9)), 0.5)
    hashes = hash_image(synthetic.encode(img, quality=30))
    assert any(hashes.trimmed)
    assert hamming_hex(hashes.pdq, hash_image(edited(9, None)).pdq) <= 31


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_trimming_leaves_photographs_alone(name):
    assert find_borders(photo(name)) == (0, 0, 0, 0)


def test_trimming_leaves_synthetic_images_alone():
    for seed in range(80):
        assert find_borders(synthetic.make_image(seed)) == (0, 0, 0, 0), seed
    assert hash_image(edited(3, None)).trimmed == (0, 0, 0, 0)


@pytest.mark.parametrize("size, colour", [
    ((300, 200), (0, 0, 0)), ((300, 200), (255, 255, 255)), ((1, 1), (10, 20, 30)), ((2, 400), (0, 0, 0)),
    ((400, 2), (255, 0, 0)), ((63, 63), (0, 0, 0)),
])
def test_flat_and_tiny_images_hash_without_trimming(size, colour):
    hashes = hash_image(synthetic.encode(Image.new("RGB", size, colour), fmt="PNG"))
    assert hashes.trimmed == (0, 0, 0, 0)
    assert [name for name, _ in hashes.pdq_variants] == list(DIHEDRAL)


def test_bars_that_would_leave_a_sliver_are_not_cut():
    sliver = Image.new("RGB", (400, 400), (0, 0, 0))
    sliver.paste(synthetic.make_image(2, size=(400, 40)), (0, 180))  # 10 % of the height is picture
    assert hash_image(synthetic.encode(sliver, fmt="PNG")).trimmed == (0, 0, 0, 0)


def test_trimmed_widths_are_given_in_original_pixels():
    big = synthetic.letterboxed(synthetic.make_image(5, size=(1600, 1200)))  # decoded at a quarter
    left, top, right, bottom = hash_image(synthetic.encode(big)).trimmed
    assert (left, right) == (0, 0) and abs(top - 120) <= 8 and abs(bottom - 120) <= 8


def test_unrelated_pictures_match_in_no_orientation():
    pictures = [edited(seed, None) for seed in range(100, 120)]
    pictures += [synthetic.encode(photo(name)) for name in PHOTO_NAMES[:10]]
    hashed = [hash_image(data) for data in pictures]
    for a, b in combinations(hashed, 2):
        closest = min(hamming_hex(a.pdq, value) for _, value in b.pdq_variants)
        assert closest > 31


@pytest.mark.django_db
def test_an_unrelated_picture_raises_no_signal():
    known_bank([51, 52, 53], types=("pdq",))
    for seed in (61, 62):
        for edit in (None, "mirrored", "letterboxed"):
            item = scanned_item(edited(seed, edit))
            assert not Signal.objects.filter(item=item).exists()


def test_the_hash_stays_close_to_plain_pdq_of_the_full_picture():
    # Bank entries made elsewhere are plain PDQ of the full-size file: our decode, square and
    # orientation pipeline must not move far from it.
    # (Fine textures and printed text, whose detail sits at PDQ's sampling rate, move further.)
    for name in ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
                 "hubble_deep_field.jpg", "moon.png", "motorcycle_left.png", "retina.jpg", "rocket.jpg"]:
        img = photo(name)
        assert hamming_hex(hash_image(synthetic.encode(img, fmt="PNG")).pdq, pdq_of(img)[0]) <= 16, name


# Scan batches: large for throughput, yet a crash or a slow file costs no innocent item --------

def _queued(count, start=300):
    return [intake.submit_file(edited(start + n, None), account_id=f"batch-{n}") for n in range(count)]


@pytest.mark.django_db
def test_an_item_retried_after_a_crash_is_scanned_alone(monkeypatch, redis_conn):
    items = _queued(4)
    Item.objects.filter(pk=items[2].pk).update(scan_attempts=1)  # its last scan never finished
    batches = []
    real = jobs.scan_claimed

    def recording(claimed, token, deadline=None):
        batches.append(sorted(item.pk for item in claimed))
        return real(claimed, token, deadline)

    monkeypatch.setattr(jobs, "scan_claimed", recording)
    assert jobs.scan_pending()["scanned"] == 4
    assert batches[0] == [items[2].pk]
    assert batches[1] == sorted(item.pk for n, item in enumerate(items) if n != 2)


@pytest.mark.django_db
def test_a_batch_hands_back_what_it_has_not_reached_by_its_deadline(redis_conn):
    items = _queued(3)
    claimed, token = jobs.claim_items(10)
    claimed.sort(key=lambda item: item.pk)
    outcomes, _ = jobs.scan_claimed(claimed, token, deadline=time.monotonic() - 1)
    assert outcomes == ["scanned", "skipped", "skipped"]  # always one item of progress
    for item in Item.objects.filter(pk__in=[i.pk for i in items[1:]]):
        assert (item.status, item.scan_token, item.scan_started_at, item.scan_attempts) == ("queued", "", None, 0)
    assert jobs.scan_pending()["scanned"] == 2


@pytest.mark.django_db
def test_a_batch_stores_hashes_only_for_the_items_it_still_holds(redis_conn):
    items = _queued(3)
    claimed, token = jobs.claim_items(10)
    claimed.sort(key=lambda item: item.pk)
    Item.objects.filter(pk=items[1].pk).update(scan_token="another-scan")  # our lease lapsed and it was taken
    outcomes, _ = jobs.scan_claimed(claimed, token)
    assert outcomes == ["scanned", "skipped", "scanned"]
    stored = {item.pk: item for item in Item.objects.filter(pk__in=[i.pk for i in items])}
    for n in (0, 2):
        expected = hash_image(edited(300 + n, None))
        item = stored[items[n].pk]
        assert (item.status, item.pdq, item.phash, item.dhash, item.pdq_quality, item.width) == (
            "scanned", expected.pdq, expected.phash, expected.dhash, expected.pdq_quality, 640)
    assert (stored[items[1].pk].status, stored[items[1].pk].pdq) == ("queued", "")
