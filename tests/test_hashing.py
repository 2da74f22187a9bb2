"""Safe decoding: every kind of bad file is rejected with a reason; good files hash stably."""

import io
import struct
import zlib

import pytest
from PIL import Image

from detection.detectors.hashing import DIHEDRAL, RejectedFile, hamming_hex, hash_image
from reviewconsole.devtools import synthetic

LIMITS = {"max_pixels": 50_000_000, "max_frames": 500}


def png_header_only(width, height):
    """A tiny PNG that declares a huge canvas: the classic decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def test_it_hashes_a_jpeg_with_all_hash_types(image_bytes):
    h = hash_image(image_bytes(1), **LIMITS)
    assert h.format == "JPEG" and (h.width, h.height) == (640, 480)
    assert len(h.pdq) == 64 and len(h.phash) == 16 and len(h.dhash) == 16
    assert 50 <= h.pdq_quality <= 100


def test_it_gives_the_eight_orientations_with_the_original_first(image_bytes):
    h = hash_image(image_bytes(2), **LIMITS)
    assert [name for name, _ in h.pdq_variants] == list(DIHEDRAL)
    assert h.pdq_variants[0][1] == h.pdq
    assert len({value for _, value in h.pdq_variants}) == 8
    assert h.trimmed == (0, 0, 0, 0)


def test_it_gives_near_hashes_for_edited_copies(image_bytes):
    original = hash_image(image_bytes(3), **LIMITS)
    for edit in synthetic.EDITS:
        copy = hash_image(image_bytes(3, edit=edit), **LIMITS)
        assert hamming_hex(original.pdq, copy.pdq) <= 31, edit
    other = hash_image(image_bytes(4), **LIMITS)
    assert hamming_hex(original.pdq, other.pdq) > 31


def test_it_hashes_png_gif_webp_and_bmp(image_bytes):
    for fmt in ("PNG", "GIF", "WEBP", "BMP"):
        assert hash_image(image_bytes(5, fmt=fmt), **LIMITS).format == fmt


def test_jpeg_draft_decoding_stays_close_to_full_decode(image_bytes):
    big = image_bytes(6, size=(2048, 1536))
    drafted = hash_image(big, **LIMITS)
    full = synthetic.make_image(6, size=(2048, 1536)).resize((512, 384))
    from detection.detectors.hashing import pdq_of
    assert hamming_hex(drafted.pdq, pdq_of(full)[0]) <= 31
    assert (drafted.width, drafted.height) == (2048, 1536)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"\x00" * 64, "unsupported file type"),
    (b"%PDF-1.7 not an image", "unsupported file type"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "unsupported file type"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "corrupt"),
    (b"GIF89a<script>alert(1)</script>", "polyglot"),
])
def test_it_rejects_bad_bytes(data, reason):
    with pytest.raises(RejectedFile, match=reason):
        hash_image(data, **LIMITS)


def test_it_rejects_a_truncated_jpeg(image_bytes):
    with pytest.raises(RejectedFile, match="truncated"):
        hash_image(image_bytes(1)[:4000], **LIMITS)


def test_it_rejects_a_decompression_bomb():
    with pytest.raises(RejectedFile, match="bomb|too large"):
        hash_image(png_header_only(60000, 60000), **LIMITS)


def test_it_rejects_images_over_the_pixel_cap(image_bytes):
    with pytest.raises(RejectedFile, match="too large"):
        hash_image(image_bytes(1), max_pixels=100_000, max_frames=10)


def test_it_rejects_animations_over_the_frame_cap():
    frames = [Image.new("RGB", (32, 32), (i * 20, 0, 0)) for i in range(12)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(RejectedFile, match="too many frames"):
        hash_image(out.getvalue(), max_pixels=10**6, max_frames=5)


def test_it_rejects_a_jpeg_with_a_zip_appended(image_bytes):
    import zipfile
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.txt", "hidden")
    with pytest.raises(RejectedFile, match="polyglot"):
        hash_image(image_bytes(1) + archive.getvalue(), **LIMITS)


def test_it_rejects_a_file_whose_magic_and_decoder_disagree(image_bytes):
    png = image_bytes(1, fmt="PNG")
    with pytest.raises(RejectedFile):
        hash_image(b"\xff\xd8\xff" + png[3:], **LIMITS)


# Polyglots: what follows the image's real end, and markup anywhere ---------------------------

def _zip(comment=b""):
    import zipfile
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.txt", "hidden")
        zf.comment = comment
    return archive.getvalue()


def _segment(marker, payload):
    return b"\xff" + bytes([marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _with_segments(jpeg, *segments):
    """The JPEG with segments inserted right after its SOI."""
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def test_a_jpeg_with_a_zip_whose_comment_ends_in_an_eoi_is_refused(image_bytes):
    # The last FF D9 of the file is the ZIP comment's; the image's own EOI comes long before it.
    data = image_bytes(1) + _zip(comment=b"nothing to see \xff\xd9")
    assert data.endswith(b"\xff\xd9")
    with pytest.raises(RejectedFile, match="polyglot file: .* after the JPEG image's end hold a ZIP archive"):
        hash_image(data, **LIMITS)


@pytest.mark.parametrize("fmt, comment", [("PNG", b"IEND\xaeB`\x82"), ("GIF", b";")])
def test_a_png_or_gif_with_a_zip_whose_comment_mimics_the_end_is_refused(image_bytes, fmt, comment):
    with pytest.raises(RejectedFile, match=f"after the {fmt} image's end hold a ZIP archive"):
        hash_image(image_bytes(1, fmt=fmt) + _zip(comment=comment), **LIMITS)


def test_an_eoi_inside_a_comment_segment_is_not_the_end(image_bytes):
    # Walking the segments skips the comment by its length: the trailer is seen whole.
    data = _with_segments(image_bytes(1), _segment(0xFE, b"fake end \xff\xd9")) + b"Rar!\x1a\x07\x00" + b"x" * 100
    with pytest.raises(RejectedFile, match="hold a RAR archive"):
        hash_image(data, **LIMITS)


def test_markup_far_from_both_ends_is_refused(image_bytes):
    big = image_bytes(7, size=(1600, 1200))
    filler = [_segment(0xFE, b"f" * 60_000), _segment(0xFE, b"f" * 20_000)]
    data = _with_segments(big, *filler, _segment(0xFE, b"<script>alert(1)</script>"))
    at = data.index(b"<script")
    assert at > 65536 and len(data) - at > 65536
    with pytest.raises(RejectedFile, match="contains '<script' markup"):
        hash_image(data, **LIMITS)


@pytest.mark.parametrize("markup", [b"<html><body>", b"<?php system($_GET['c']); ?>", b"<svg onload=alert(1)>",
                                    b"<!DOCTYPE html>", b"<SCRIPT\tsrc=x>"])
def test_each_kind_of_markup_is_refused_anywhere(image_bytes, markup):
    with pytest.raises(RejectedFile, match="markup"):
        hash_image(_with_segments(image_bytes(1), _segment(0xFE, b"a" * 100 + markup)), **LIMITS)


def test_a_zip_hidden_in_the_metadata_is_refused(image_bytes):
    with pytest.raises(RejectedFile, match="metadata holds a ZIP archive"):
        hash_image(_with_segments(image_bytes(1), _segment(0xE9, _zip())), **LIMITS)


def test_substantial_trailing_data_is_refused_however_plain(image_bytes):
    noise = bytes((n * 7919) % 251 for n in range(10_000))  # no magic number in it
    with pytest.raises(RejectedFile, match=r"10000 bytes of other data after the JPEG image's end \(at most 4096"):
        hash_image(image_bytes(1) + noise, **LIMITS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP"])
@pytest.mark.parametrize("padding", [b"", b"\n", b"\r\n", b"\x00" * 70_000, b"\xff" * 512, b"  \n\t",
                                     b"written by camera firmware 1.2" * 20],
                         ids=["none", "newline", "crlf", "zeros", "ff fill", "whitespace", "small trailer"])
def test_ordinary_images_with_common_trailing_padding_pass(image_bytes, fmt, padding):
    assert hash_image(image_bytes(2, fmt=fmt) + padding, **LIMITS).format == fmt


def test_progressive_restart_and_metadata_rich_jpegs_pass():
    img = synthetic.make_image(3, size=(400, 300))
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    for options in ({"progressive": True}, {"restart_marker_blocks": 1}, {"optimize": True, "subsampling": 0},
                    {"exif": exif, "comment": b"a comment \xff\xd9 with an EOI in it", "icc_profile": b"p" * 70_000}):
        out = io.BytesIO()
        img.save(out, format="JPEG", **options)
        assert hash_image(out.getvalue(), **LIMITS).format == "JPEG", options


def _photographs():
    from pathlib import Path

    import skimage
    photos = [p for p in (Path(skimage.__file__).parent / "data").iterdir() if p.suffix in (".png", ".jpg")]
    assert len(photos) >= 10
    return photos


def test_the_shipped_photographs_pass_the_polyglot_check():
    from detection.detectors.hashing import check_polyglot, sniff_format
    for path in _photographs():
        data = path.read_bytes()
        assert check_polyglot(data, sniff_format(data)) is None, path.name


def test_the_walk_of_each_photograph_ends_where_the_file_does():
    from detection.detectors.hashing import sniff_format
    from detection.detectors.polyglot import image_layout
    for path in _photographs():
        data = path.read_bytes()
        end, stray, _ = image_layout(data, sniff_format(data))
        assert (end, stray) == (len(data), 0), path.name
