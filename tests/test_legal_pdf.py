"""The structural check of law-enforcement PDFs: active content is refused however it is wrapped.

The documents are made here: a small writer for hand-built objects (with the catalog and its
action hidden in an object stream behind each filter), and pypdf's own writer for plain ones.
"""

import base64
import io
import zlib

import pytest
from pypdf import PdfWriter
from pypdf.actions import JavaScript

from cases.actions import legal
from cases.actions.legal import RejectedDocument, check_pdf
from tests.conftest import PDF

PAGES = b"<< /Type /Pages /Kids [] /Count 0 >>"
CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
SCRIPTED_CATALOG = b"<< /Type /Catalog /Pages 2 0 R /OpenAction 3 0 R >>"
SCRIPT = b"<< /S /JavaScript /JS (app.alert\\(1\\)) >>"


def written(objects, trailer=b""):
    """A PDF with a classic cross-reference table: {number: body}; object 1 is the catalog."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number, body in sorted(objects.items()):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    size = max(offsets) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[n] if n in offsets else b"0000000000 65535 f \n"
                    for n in range(1, size))
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (size, trailer, xref)
    return bytes(out)


def hidden(filters, encode, parms=b"", catalog=SCRIPTED_CATALOG, action=SCRIPT):
    """The catalog (with an /OpenAction) and the JavaScript action live in an object stream behind
    `filters`: none of the telling names is in the file's bytes as they are."""
    hidden_objects = {1: catalog, 3: action}
    header, body = b"", b""
    for number, text in hidden_objects.items():
        header += b"%d %d " % (number, len(body))
        body += text + b"\n"
    data = encode(header + body)
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {2: len(out)}
    out += b"2 0 obj\n%s\nendobj\n" % PAGES
    offsets[4] = len(out)
    out += (b"4 0 obj\n<< /Type /ObjStm /N %d /First %d /Length %d /Filter [%s] %s>>\nstream\n"
            % (len(hidden_objects), len(header), len(data), filters, parms)) + data + b"\nendstream\nendobj\n"
    offsets[5] = len(out)
    places = {0: (0, 0, 65535), 1: (2, 4, 0), 2: (1, offsets[2], 0), 3: (2, 4, 1), 4: (1, offsets[4], 0),
              5: (1, offsets[5], 0)}
    table = b"".join(bytes([kind]) + where.to_bytes(4, "big") + extra.to_bytes(2, "big")
                     for kind, where, extra in (places[n] for n in range(6)))
    out += (b"5 0 obj\n<< /Type /XRef /Size 6 /W [1 4 2] /Root 1 0 R /Length %d >>\nstream\n" % len(table)
            + table + b"\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n" % offsets[5])
    return bytes(out)


def raw_deflate(data):
    packer = zlib.compressobj(wbits=-15)
    return packer.compress(data) + packer.flush()


def png_sub_rows(data, columns=4):
    """Flate over the PNG "Sub" predictor: each byte stored as its difference from the one before
    it in its row, so that no name survives in the inflated bytes; only a parser undoes it."""
    data += b"\0" * (-len(data) % columns)
    rows = []
    for at in range(0, len(data), columns):
        row = data[at:at + columns]
        rows.append(b"\x01" + bytes((row[i] - (row[i - 1] if i else 0)) % 256 for i in range(len(row))))
    return zlib.compress(b"".join(rows))


def plain_pdf(pages=1):
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    writer.add_metadata({"/Title": "Search warrant 2026-CR-0042"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def with_writer_script(attachment=False):
    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    if attachment:
        writer.add_attachment("notes.txt", b"hello")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()
    writer.add_open_action(JavaScript("app.alert('hello');"))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


EVASIONS = {
    "ASCIIHex object stream": (hidden(b"/ASCIIHexDecode", lambda b: b.hex().encode() + b">"), "active content"),
    "ASCII85 object stream": (hidden(b"/ASCII85Decode", lambda b: base64.a85encode(b) + b"~>"), "active content"),
    "double Flate object stream": (hidden(b"/FlateDecode /FlateDecode", lambda b: zlib.compress(zlib.compress(b))),
                                   "active content"),
    "raw deflate object stream": (hidden(b"/FlateDecode", raw_deflate), "active content"),
    "Flate with a predictor": (hidden(b"/FlateDecode", png_sub_rows,
                                      b"/DecodeParms << /Predictor 11 /Columns 4 >> "), "found in its parsed objects"),
    "ASCII85 over Flate": (hidden(b"/ASCII85Decode /FlateDecode", lambda b: base64.a85encode(zlib.compress(b)) + b"~>"),
                           "active content"),
    "escaped Encrypt name": (written({1: CATALOG, 2: PAGES, 4: b"<< /Filter /Standard /V 1 /R 2 /P -4 >>"},
                                     trailer=b"/#45ncrypt 4 0 R "), "Encrypted"),
    "escaped JavaScript key": (written({1: b"<< /Type /Catalog /Pages 2 0 R /Names << /J#61vaScript 3 0 R >> >>",
                                        2: PAGES, 3: b"<< /Names [] >>"}), "active content"),
    "HTML after the first 4 KB": (written({1: CATALOG, 2: PAGES, 3: b"<< /Length 6000 >>\nstream\n" + b"0" * 6000
                                           + b"\nendstream"}).replace(b"%%EOF", b"%<html><body><script>alert(1)"
                                                                      b"</script></body></html>\n%%EOF"), "markup"),
    "HTML in the middle": (written({1: CATALOG, 2: PAGES, 3: b"<< /Length 70000 >>\nstream\n" + b"1" * 35000
                                    + b"<svg onload=alert(1)>" + b"1" * 34979 + b"\nendstream"}), "markup"),
    "JavaScript added by pypdf": (with_writer_script(), "active content"),
    "attachment added by pypdf": (with_writer_script(attachment=True), "active content"),
    "embedded file": (written({1: b"<< /Type /Catalog /Pages 2 0 R /Names << /Embedded#46iles 3 0 R >> >>",
                               2: PAGES, 3: b"<< /Names [] >>"}), "active content"),
}


@pytest.mark.parametrize("name", EVASIONS)
def test_each_evasion_is_refused_with_a_reason(name):
    document, reason = EVASIONS[name]
    with pytest.raises(RejectedDocument, match=reason):
        check_pdf(document)


def test_the_parser_alone_finds_names_that_a_predictor_scrambles():
    # The byte scan cannot see through the predictor; the parsed walk must.
    document = EVASIONS["Flate with a predictor"][0]
    assert b"JavaScript" not in zlib.decompress(document.split(b"stream\n")[1].rsplit(b"\nendstream", 1)[0])
    with pytest.raises(RejectedDocument, match="run by OpenAction, found in its parsed objects"):
        check_pdf(document)


@pytest.mark.parametrize("name", [name for name in EVASIONS if "stream" in name or "Flate" in name or "pypdf" in name
                                  or "escaped JavaScript" in name or "embedded" in name])
def test_the_parsed_walk_alone_refuses_what_hides_in_objects(name):
    with pytest.raises(RejectedDocument, match="found in its parsed objects|catalog cannot be read"):
        legal._check_parsed(EVASIONS[name][0])  # the parser's line on its own


def test_the_byte_scan_still_finds_what_the_parser_cannot_decode():
    # pypdf does not read raw deflate; the second line undoes it and finds the action.
    with pytest.raises(RejectedDocument, match="in a compressed stream"):
        check_pdf(EVASIONS["raw deflate object stream"][0])


PLAIN = {
    "minimal": PDF,
    "pypdf": plain_pdf(),
    "three pages": plain_pdf(pages=3),
    "hand-written": written({1: CATALOG, 2: PAGES}),
    "object stream": hidden(b"/FlateDecode", zlib.compress, catalog=CATALOG, action=b"<< /Lang (en) >>"),
}


@pytest.mark.parametrize("document", PLAIN.values(), ids=PLAIN.keys())
def test_a_plain_pdf_is_accepted(document):
    assert check_pdf(document) == document


def test_a_plain_pdf_with_a_web_link_is_accepted():
    link = b"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A << /S /URI /URI (https://example.org/) >> >>"
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Annots [4 0 R] >>"
    document = written({1: CATALOG, 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", 3: page, 4: link})
    assert check_pdf(document) == document


def test_a_damaged_pdf_that_cannot_be_parsed_is_refused():
    document = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R\nstartxref\n9\n%%EOF\n"
    with pytest.raises(RejectedDocument, match="cannot be read|active|not"):
        check_pdf(document)
