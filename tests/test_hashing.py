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
