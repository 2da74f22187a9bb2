"""Polyglots: an image that is also something else, found by following the image's own structure.

A decoder stops at the image's real end (JPEG: the first EOI reached by walking its segments; PNG:
IEND; GIF: the trailer reached by walking its blocks), so what lies beyond, or between the blocks,
is what a second reader would see. Pure: bytes in, a reason or None out.
"""

import re

# Markup a browser or a server would act on, anywhere in the file: a tag's name must end as HTML
# ends it (space, "/" or ">"), which keeps random compressed bytes from passing for "<svg".
MARKUP = re.compile(rb"<(script|html|svg|iframe|object|embed|body)[\s/>]|<(\?php)|<(!doctype)", re.IGNORECASE)
# Archives, documents, executables and media that must not hide in an image's metadata or after it.
HIDDEN_FORMATS = [
    (b"PK\x03\x04", "a ZIP archive"), (b"PK\x05\x06", "a ZIP archive"), (b"%PDF-", "a PDF"),
    (b"\x7fELF", "an ELF executable"), (b"Rar!", "a RAR archive"), (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"ftyp", "an MP4/MOV video"), (b"\x1a\x45\xdf\xa3", "a WebM/Matroska video"),
]
# ...and, after the image's end only, a second picture or a Windows executable (an EXIF thumbnail
# is a JPEG inside the metadata, so these are not looked for there).
TRAILING_FORMATS = HIDDEN_FORMATS + [
    (b"\xff\xd8\xff", "a JPEG"), (b"\x89PNG", "a PNG"), (b"GIF8", "a GIF"), (b"RIFF", "a RIFF (WebP/AVI) file"),
]
# Trailing bytes we accept: padding of any length (zeros, 0xFF fill, whitespace from a text-mode
# copy), and up to TRAILER_ALLOWANCE bytes of anything else that names no other format (what some
# cameras and editors leave behind). More than that is a second file riding along, unscanned.
PADDING = frozenset(b"\x00\xff \t\r\n")
TRAILER_ALLOWANCE = 4096
STRAY_ALLOWANCE = 64  # bytes between segments or blocks that the decoder skips over

_JPEG_MARKER = re.compile(rb"\xff+([^\x00\xff])")  # fill FFs, then the marker; FF00 outside a scan is skipped
_JPEG_SCAN_END = re.compile(rb"\xff+([^\x00\xd0-\xd7\xff])")  # in a scan: FF00 is a stuffed FF, FFD0-D7 restarts
_JPEG_BARE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM and RSTn carry no length


def check_polyglot(data, fmt):
    """Why `data` (a `fmt` image) is also another kind of file, or None."""
    found = MARKUP.search(data)
    if found:
        tag = next(g for g in found.groups() if g).decode("ascii", "replace").lower()
        return f"polyglot file: contains '<{tag}' markup at byte {found.start()}"
    layout = image_layout(data, fmt)
    if layout is None:
        return None  # no end we can find: a truncated file, which the decoder refuses
    end, stray, metadata = layout
    if stray > STRAY_ALLOWANCE:
        return f"polyglot file: {stray} stray bytes between the {fmt} image's segments"
    for start, stop in metadata:
        for magic, name in HIDDEN_FORMATS:
            if data.find(magic, start, stop) >= 0:
                return f"polyglot file: the {fmt} image's metadata holds {name}"
    return _trailer_problem(data[end:], fmt)


def _trailer_problem(trailer, fmt):
    if not trailer:
        return None
    if trailer.startswith(b"MZ"):
        return f"polyglot file: {len(trailer)} bytes after the {fmt} image's end hold a Windows executable"
    for magic, name in TRAILING_FORMATS:
        if magic in trailer:
            return f"polyglot file: {len(trailer)} bytes after the {fmt} image's end hold {name}"
    if len(trailer) > TRAILER_ALLOWANCE and not set(trailer) <= PADDING:
        return (f"polyglot file: {len(trailer)} bytes of other data after the {fmt} image's end "
                f"(at most {TRAILER_ALLOWANCE} are accepted)")
    return None


def image_layout(data, fmt):
    """(offset just past the image's end, stray bytes the decoder skips, [(start, stop) of metadata])
    as the decoder walks the file, or None where the walk finds no end (truncated or unknown)."""
    walk = {"JPEG": _jpeg_layout, "PNG": _png_layout, "GIF": _gif_layout, "WEBP": _webp_layout,
            "BMP": _bmp_layout}.get(fmt)
    return walk(data) if walk else None


def _jpeg_layout(data):
    """From SOI, marker by marker: a segment's length skips its payload (so an FF D9 in a comment
    is not the end), a scan's entropy-coded data runs to the first FF that is not stuffing (FF00)
    or a restart (FFD0-D7). The first EOI so reached is where libjpeg stops."""
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, stray, metadata = 2, 0, []
    while True:
        found = _JPEG_MARKER.search(data, pos)
        if not found:
            return None
        stray += found.start() - pos  # libjpeg skips garbage before a marker (with a warning)
        marker, pos = found.group(1)[0], found.end()
        if marker == 0xD9:
            return pos, stray, metadata
        if marker in _JPEG_BARE:
            continue
        if marker == 0xD8 or pos + 2 > len(data):
            return None  # a second SOI is fatal to the decoder
        length = int.from_bytes(data[pos:pos + 2], "big")
        start, pos = pos + 2, pos + length
        if length < 2 or pos > len(data):
            return None
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn, COM
            metadata.append((start, pos))
        if marker == 0xDA:  # SOS: the entropy-coded data follows its header
            found = _JPEG_SCAN_END.search(data, pos)
            if not found:
                return None
            pos = found.start()


def _png_layout(data):
    """Chunk by chunk from the signature to IEND; every chunk but image data counts as metadata."""
    pos, metadata = 8, []
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data):
            return None
        if kind == b"IEND":
            return end, 0, metadata
        if kind not in (b"IDAT", b"fdAT"):
            metadata.append((pos + 8, pos + 8 + length))
        pos = end
    return None


def _gif_layout(data):
    """Block by block, as Pillow reads them: extensions and images are runs of sub-blocks; a byte
    that starts neither is skipped; the first trailer (0x3B) between blocks is the end."""
    if len(data) < 13:
        return None
    pos = 13
    if data[10] & 0x80:
        pos += 3 << ((data[10] & 7) + 1)  # global colour table
    stray, metadata = 0, []
    while pos < len(data):
        introducer = data[pos]
        if introducer == 0x3B:
            return pos + 1, stray, metadata
        if introducer == 0x21:  # extension: label, then sub-blocks
            start = pos + 2
            pos = _gif_sub_blocks(data, start)
            if pos is None:
                return None
            metadata.append((start, pos))
        elif introducer == 0x2C:  # image: descriptor, local colour table, LZW code size, sub-blocks
            if pos + 10 > len(data):
                return None
            flags = data[pos + 9]
            pos += 10 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0) + 1
            pos = _gif_sub_blocks(data, pos)
            if pos is None:
                return None
        else:
            stray += 1
            pos += 1
    return None


def _gif_sub_blocks(data, pos):
    while pos < len(data):
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos if pos <= len(data) else None
    return None


def _webp_layout(data):
    if len(data) < 12:
        return None
    end = 8 + int.from_bytes(data[4:8], "little")
    return (end, 0, []) if end <= len(data) else None


def _bmp_layout(data):
    """Uncompressed BMPs end after their pixel rows (or a V5 header's colour profile, if later)."""
    if len(data) < 26:
        return None
    offset, header = int.from_bytes(data[10:14], "little"), int.from_bytes(data[14:18], "little")
    if header == 12:  # OS/2 core header
        width, height = int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
        bits, compression = int.from_bytes(data[24:26], "little"), 0
    elif header >= 40 and len(data) >= 34:
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = abs(int.from_bytes(data[22:26], "little", signed=True))
        bits, compression = int.from_bytes(data[28:30], "little"), int.from_bytes(data[30:34], "little")
    else:
        return None
    if compression not in (0, 3, 6) or width <= 0 or bits not in (1, 2, 4, 8, 16, 24, 32):
        return None  # run-length and embedded JPEG/PNG data have no end we compute here
    end = offset + (width * bits + 31) // 32 * 4 * height
    if header >= 124 and len(data) >= 14 + 124:  # V5: a linked colour profile may follow the pixels
        profile_at = 14 + int.from_bytes(data[14 + 112:14 + 116], "little")
        profile_size = int.from_bytes(data[14 + 116:14 + 120], "little")
        if profile_size:
            end = max(end, profile_at + profile_size)
    return (end, 0, []) if end <= len(data) else None
