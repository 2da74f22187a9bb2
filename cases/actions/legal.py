"""Law-enforcement requests: what an agency files, and what the liaison team does with it.

Every function here is atomic and writes its audit row in the same transaction. Agency users
reach requests only through `requests_for_agency_user`, so one agency can never name another's.
"""

import base64
import hashlib
import io
import logging
import re
import zlib
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case as When_
from django.db.models import IntegerField, Q, Value, When
from django.utils import timezone
from pypdf import PdfReader, apply_configuration
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

from cases.actions import ActionError
from cases.models import (
    Case,
    LegalDocument,
    LegalHold,
    LegalMessage,
    LegalRequest,
    LegalRequestKind,
    LegalRequestStatus,
)
from detection.models import Account, Group, Item
from reviewconsole import storage
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

MAX_IDENTIFIERS = 50
# Names that make a PDF do something when opened; a legal-process document has no need of them.
ACTIVE_PDF_NAMES = [b"/JavaScript", b"/JS", b"/Launch", b"/EmbeddedFile", b"/EmbeddedFiles", b"/RichMedia", b"/XFA",
                    b"/OpenAction", b"/AA", b"/SubmitForm", b"/ImportData", b"/GoToR"]
PDF_NAME_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
PDF_STREAM = re.compile(rb"stream\r?\n(.*?)endstream", re.S)
PDF_ENCRYPT = re.compile(rb"/Encrypt(?![A-Za-z])")
# Web markup anywhere in the file makes it an HTML page too (a polyglot); a tag's name ends as HTML
# ends it, which keeps compressed bytes from passing for one.
PDF_MARKUP = re.compile(rb"<(?:script|html|svg|iframe|object|embed|body)[\s/>]|<!doctype", re.IGNORECASE)
PDF_HEX = re.compile(rb"[0-9A-Fa-f\s]*>?\s*")
PDF_A85 = re.compile(rb"(?:<~)?[!-uz\s]*(?:~>)?\s*")
PDF_LAYERS = 4  # filters undone on one stream, one over another (Flate over Flate over ASCII85...)
# Compressed streams are inflated to look inside them, up to this much in all (a zip-bomb guard).
PDF_INFLATE_BUDGET = 64 * 1024 * 1024
# The parsed check: names that are active content wherever they stand, as a key or a value (an
# action's /S), once the parser has undone the filters of object streams and the #xx escapes.
ACTIVE_PDF_OBJECTS = {"/JavaScript", "/JS", "/Launch", "/SubmitForm", "/ImportData", "/RichMedia",
                      "/RichMediaExecute", "/EmbeddedFile", "/EmbeddedFiles", "/XFA", "/GoToR", "/GoToE"}
PDF_MAX_NODES = 2_000_000  # objects, dictionary entries and array items walked, at most
# The parser's complaints about damaged files are answered by the refusal, not the log.
logging.getLogger("pypdf").setLevel(logging.ERROR)
PDF_PARSER_LIMITS = {"zlib_maximum_output_length": 32 * 1024 * 1024, "lzw_maximum_output_length": 32 * 1024 * 1024,
                     "run_length_maximum_output_length": 32 * 1024 * 1024, "jbig2dec_binary": None}


class RejectedDocument(ActionError):
    """The upload is not a PDF we accept; the message says why."""


def check_pdf(data, name=""):
    """Raise RejectedDocument unless `data` is a plain PDF within the size limit.

    Two lines: a scan of the bytes (and of every stream with its filters undone) for the names of
    active content, and a real parser (pypdf) walking every object of the document as a viewer
    would find it, both through its cross-reference table and rebuilt from the objects themselves.
    """
    limit = settings.LEGAL_DOCUMENT_MAX_BYTES
    if not data:
        raise RejectedDocument("The document is empty.")
    if len(data) > limit:
        raise RejectedDocument(f"The document is larger than {limit // (1024 * 1024)} MB.")
    if not re.match(rb"%PDF-[12]\.\d", data[:8]):
        raise RejectedDocument("The document is not a PDF (it does not start with %PDF-).")
    if b"%%EOF" not in data[-2048:]:
        raise RejectedDocument("The PDF is truncated or damaged (no end-of-file marker).")
    for where, chunk in _pdf_parts(data):
        # Names may hide letters as #xx escapes (/J#61vaScript); undo them before looking.
        plain = PDF_NAME_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), chunk)
        if PDF_ENCRYPT.search(plain):
            raise RejectedDocument(_ENCRYPTED)
        for marker in ACTIVE_PDF_NAMES:
            if re.search(re.escape(marker) + rb"(?![A-Za-z])", plain):
                raise RejectedDocument(f"The PDF contains active content ({marker.decode()[1:]}{where}); "
                                       "send a plain document without scripts, actions or attachments.")
    markup = PDF_MARKUP.search(data)
    if markup:
        raise RejectedDocument(f"The PDF also holds web markup at byte {markup.start()} (a polyglot file).")
    _check_parsed(data)
    return data


_ENCRYPTED = "Encrypted PDFs cannot be checked; send the document without a password."


def _pdf_parts(data):
    """The file, then every stream with its filters undone (Flate with or without its zlib header,
    ASCIIHex, ASCII85, one over another), all within PDF_INFLATE_BUDGET."""
    yield "", data
    budget = [PDF_INFLATE_BUDGET]
    for match in PDF_STREAM.finditer(data):
        layer = match.group(1)
        for _ in range(PDF_LAYERS):
            layer = _unfilter(layer, budget)
            if layer is None:
                break
            yield " in a compressed stream", layer


def _unfilter(data, budget):
    """`data` with one filter undone, or None when no filter we know fits: Flate (zlib), then
    ASCIIHex and ASCII85 where every character is of their alphabets, then raw deflate (no zlib
    header, which lenient readers accept)."""
    decoded = _inflate(data, 15, budget)
    if decoded is None and data.strip() and PDF_HEX.fullmatch(data):
        digits = re.sub(rb"[\s>]", b"", data)
        decoded = bytes.fromhex((digits + b"0" * (len(digits) % 2)).decode())
    elif decoded is None and data.strip() and PDF_A85.fullmatch(data):
        try:
            decoded = base64.a85decode(data.strip().removeprefix(b"<~").removesuffix(b"~>"),
                                       ignorechars=b" \t\r\n\f\v")
        except ValueError:
            decoded = None
    if decoded is None:
        decoded = _inflate(data, -15, budget)
    if decoded is not None:
        budget[0] -= len(decoded)
        if budget[0] < 0:
            raise RejectedDocument("The PDF's compressed streams expand too far to be checked (a compression bomb).")
    return decoded


def _inflate(data, wbits, budget):
    try:
        return zlib.decompressobj(wbits).decompress(data, budget[0] + 1)
    except zlib.error:
        return None  # not this kind of Flate, or damaged: the bytes as they are were searched already


def _check_parsed(data):
    """Walk the document as a parser sees it: refuse encryption and active content in any object."""
    # Viewers that find the cross-reference table damaged rebuild it from the objects in the file;
    # a bad pointer makes pypdf do the same, so that objects the table leaves out are seen too.
    views = [data, data + b"\nstartxref\n0\n%%EOF\n"]
    for view in views:
        try:
            with apply_configuration(**PDF_PARSER_LIMITS):
                problem = _parsed_problem(PdfReader(io.BytesIO(view), strict=False))
        except RejectedDocument:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever stops the parser, the document cannot be checked
            if view is data and "startxref" in str(exc):
                continue  # no usable pointer: the rebuilt view below is the one a viewer shows
            raise RejectedDocument(f"The PDF cannot be read to check it ({type(exc).__name__}: {str(exc)[:120]}); "
                                   "send a plain, undamaged document.") from None
        if problem:
            raise RejectedDocument(problem)


def _parsed_problem(reader):
    if reader.is_encrypted or "/Encrypt" in reader.trailer:
        return _ENCRYPTED
    root = reader.trailer.get("/Root")
    if not isinstance(root.get_object() if root is not None else None, DictionaryObject):
        return ("The PDF's catalog cannot be read (a damaged file, or one only some readers open); "
                "send a plain document.")
    # Every indirect object the document has, not only those reachable from its catalog.
    stack = [(IndirectObject(num, gen, reader), "") for gen, table in reader.xref.items() for num in table]
    stack += [(IndirectObject(num, 0, reader), "") for num in reader.xref_objStm]
    stack.append((reader.trailer, ""))  # walked first, so that a finding names the way to it
    seen, walked = set(), 0
    while stack:
        obj, via = stack.pop()
        walked += 1
        if walked > PDF_MAX_NODES:
            return "The PDF has too many objects to be checked."
        if isinstance(obj, IndirectObject):
            if (obj.idnum, obj.generation) in seen:
                continue
            seen.add((obj.idnum, obj.generation))
            obj = obj.get_object()
        if isinstance(obj, NameObject) and obj in ACTIVE_PDF_OBJECTS:
            return _active(obj, via)
        if isinstance(obj, DictionaryObject):  # streams too: their dictionaries
            for key, value in dict.items(obj):  # as stored: references unresolved, walked once each
                if key in ACTIVE_PDF_OBJECTS:
                    return _active(key, via)
                if key == "/Encrypt":
                    return _ENCRYPTED
                stack.append((value, f" run by {key[1:]}" if key in ("/OpenAction", "/AA") else via))
        elif isinstance(obj, ArrayObject):
            stack.extend((value, via) for value in list.__iter__(obj))
    return None


def _active(name, via):
    return (f"The PDF contains active content ({name[1:]}{via}, found in its parsed objects); "
            "send a plain document without scripts, actions or attachments.")


def _store(request_obj, data, name, user, side):
    check_pdf(data, name)
    path = storage.save_original(data, folder="legal")
    return LegalDocument.objects.create(
        request=request_obj, side=side, name=_safe_name(name), storage_path=path, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), uploaded_by=user)


def _safe_name(name):
    name = re.sub(r"[^\w.\- ]+", "_", (name or "document.pdf").rsplit("/", 1)[-1].rsplit("\\", 1)[-1])[:200]
    return name if name.lower().endswith(".pdf") else name + ".pdf"


def parse_identifiers(text):
    """Lines like 'account: 12345' or 'group: g-9' (a bare id is an account) into a clean list."""
    identifiers = []
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        kind, _, value = line.partition(":") if ":" in line else ("account", "", line)
        kind, value = kind.strip().lower(), value.strip()
        if kind not in ("account", "group") or not value or len(value) > 255:
            raise ActionError(f"Cannot read identifier line {line[:80]!r}: write 'account: ID' or 'group: ID'.")
        if {"type": kind, "id": value} not in identifiers:
            identifiers.append({"type": kind, "id": value})
    if not identifiers:
        raise ActionError("Name at least one account or group.")
    if len(identifiers) > MAX_IDENTIFIERS:
        raise ActionError(f"At most {MAX_IDENTIFIERS} identifiers per request; file several requests.")
    return identifiers


def submit_request(user, *, kind, reference, identifiers, description, due_at, document, document_name, ip=None):
    member = getattr(user, "agency_member", None)
    if member is None or not member.agency.active:
        raise ActionError("Only officers of an active agency may file requests.")
    if kind not in LegalRequestKind.values:
        raise ActionError("Choose the kind of legal process.")
    if due_at <= timezone.now():
        raise ActionError("The due date must be in the future.")
    with transaction.atomic():
        request_obj = LegalRequest.objects.create(
            agency=member.agency, submitted_by=user, kind=kind, reference=reference[:100],
            identifiers=identifiers, description=description, due_at=due_at)
        doc = _store(request_obj, document, document_name, user, LegalDocument.Side.AGENCY)
        audit(user, Event.LEGAL_REQUEST_SUBMITTED, object_type="legalrequest", object_id=request_obj.pk, ip=ip,
              details={"agency": member.agency.name, "kind": kind, "reference": reference[:100],
                       "identifiers": len(identifiers), "document_sha256": doc.sha256})
    return request_obj


def add_agency_message(user, request_obj, *, text, document=None, document_name="", ip=None):
    if not request_obj.is_open:
        raise ActionError("This request is closed; file a new one.")
    if not text.strip() and not document:
        raise ActionError("Write a message or attach a document.")
    with transaction.atomic():
        message = LegalMessage.objects.create(request=request_obj, side=LegalDocument.Side.AGENCY, author=user,
                                              text=text.strip()) if text.strip() else None
        doc = _store(request_obj, document, document_name, user, LegalDocument.Side.AGENCY) if document else None
        audit(user, Event.LEGAL_AGENCY_MESSAGE, object_type="legalrequest", object_id=request_obj.pk, ip=ip,
              details={"document_sha256": doc.sha256 if doc else None})
    return message


def staff_queue():
    """Open requests: emergencies first, then by due date."""
    return (LegalRequest.objects.filter(status__in=[LegalRequestStatus.SUBMITTED, LegalRequestStatus.VERIFIED,
                                                   LegalRequestStatus.RESPONDED])
            .select_related("agency", "assigned_to")
            .annotate(urgent=When_(When(kind=LegalRequestKind.EMERGENCY, then=Value(0)), default=Value(1),
                                   output_field=IntegerField()))
            .order_by("urgent", "due_at", "pk"))


def sla_deadline(request_obj):
    """When a first response is owed: emergencies within LEGAL_EMERGENCY_SLA_HOURS, others by the due date."""
    if request_obj.is_emergency:
        return min(request_obj.due_at,
                   request_obj.created_at + timedelta(hours=settings.LEGAL_EMERGENCY_SLA_HOURS))
    return request_obj.due_at


def _locked(request_obj):
    return LegalRequest.objects.select_for_update().get(pk=request_obj.pk)


def verify(user, request_obj, *, note, ip=None):
    if not note.strip():
        raise ActionError("Say how the request was verified (e.g. a call-back to the agency's switchboard).")
    with transaction.atomic():
        request_obj = _locked(request_obj)
        if request_obj.status != LegalRequestStatus.SUBMITTED:
            raise ActionError("Only a newly submitted request can be verified.")
        request_obj.status = LegalRequestStatus.VERIFIED
        request_obj.verified_by, request_obj.verified_at = user, timezone.now()
        request_obj.verification_note = note.strip()[:500]
        request_obj.assigned_to = request_obj.assigned_to or user
        request_obj.save(update_fields=["status", "verified_by", "verified_at", "verification_note", "assigned_to",
                                        "updated_at"])
        audit(user, Event.LEGAL_REQUEST_VERIFIED, object_type="legalrequest", object_id=request_obj.pk, ip=ip,
              details={"note": note.strip()[:500]})
    return request_obj


def link_subjects(user, request_obj, ip=None):
    """Link the accounts and groups the request names (as we know them) and their cases."""
    with transaction.atomic():
        request_obj = _locked(request_obj)
        if request_obj.status == LegalRequestStatus.SUBMITTED:
            raise ActionError("Verify the request before linking it to accounts.")
        ids = {kind: [i["id"] for i in request_obj.identifiers if i.get("type") == kind]
               for kind in ("account", "group")}
        accounts = list(Account.objects.filter(external_id__in=ids["account"]))
        groups = list(Group.objects.filter(external_id__in=ids["group"]))
        request_obj.accounts.add(*accounts)
        request_obj.groups.add(*groups)
        cases = list(Case.objects.filter(Q(account__in=accounts) | Q(group__in=groups)))
        request_obj.cases.add(*cases)
        found = {a.external_id for a in accounts} | {g.external_id for g in groups}
        missing = [i["id"] for i in request_obj.identifiers if i["id"] not in found]
        audit(user, Event.LEGAL_SUBJECTS_LINKED, object_type="legalrequest", object_id=request_obj.pk, ip=ip,
              details={"accounts": len(accounts), "groups": len(groups), "cases": len(cases), "not_found": missing})
    return {"accounts": accounts, "groups": groups, "cases": cases, "missing": missing}


def place_holds(user, request_obj, *, days=None, ip=None):
    """Preserve every stored item of the linked accounts and groups (the evidence hold, reused)."""
    days = days or settings.LEGAL_PRESERVATION_DAYS
    if not 1 <= days <= 3650:
        raise ActionError("A preservation hold lasts between 1 day and 10 years.")
    with transaction.atomic():
        request_obj = _locked(request_obj)
        if request_obj.status == LegalRequestStatus.SUBMITTED:
            raise ActionError("Verify the request before preserving anything.")
        items = Item.objects.filter(Q(account__in=request_obj.accounts.all()) | Q(group__in=request_obj.groups.all()))
        until = timezone.now() + timedelta(days=days)
        held = set(LegalHold.active().filter(legal_request=request_obj).values_list("item_id", flat=True))
        new = [LegalHold(item=item, reason=LegalHold.Reason.PRESERVATION, legal_request=request_obj, placed_by=user,
                         until=until, note=f"{request_obj.get_kind_display()} {request_obj.reference}"[:500])
               for item in items.exclude(pk__in=held)]
        LegalHold.objects.bulk_create(new)
        extended = LegalHold.active().filter(legal_request=request_obj, until__lt=until).update(until=until)
        audit(user, Event.LEGAL_HOLDS_PLACED, object_type="legalrequest", object_id=request_obj.pk, ip=ip,
              details={"new": len(new), "extended": extended, "until": until.isoformat()})
    return len(new), extended


def respond(user, request_obj, *, text, documents=(), ip=None):
    """Answer the agency: a message and PDF attachments they can download."""
    if not text.strip():
        raise ActionError("Write the response to the agency.")
    with transaction.atomic():
        request_obj = _locked(request_obj)
        if request_obj.status not in (LegalRequestStatus.VERIFIED, LegalRequestStatus.RESPONDED):
            raise ActionError("Only a verified, open request can be answered.")
        LegalMessage.objects.create(request=request_obj, side=LegalDocument.Side.RESPONSE, author=user,
                                    text=text.strip())
        docs = [_store(request_obj, data, name, user, LegalDocument.Side.RESPONSE) for name, data in documents]
        request_obj.status = LegalRequestStatus.RESPONDED
        request_obj.save(update_fields=["status", "updated_at"])
        audit(user, Event.LEGAL_RESPONDED, object_type="legalrequest", object_id=request_obj.pk, ip=ip,
              details={"documents": [d.sha256 for d in docs]})
    return request_obj


def close(user, request_obj, *, reject=False, note="", ip=None):
    if reject and not note.strip():
        raise ActionError("Say why the request is rejected; the agency sees it.")
    with transaction.atomic():
        request_obj = _locked(request_obj)
        if not request_obj.is_open:
            raise ActionError("The request is already closed.")
        if note.strip():
            LegalMessage.objects.create(request=request_obj, side=LegalDocument.Side.RESPONSE, author=user,
                                        text=note.strip())
        request_obj.status = LegalRequestStatus.REJECTED if reject else LegalRequestStatus.CLOSED
        request_obj.closed_at = timezone.now()
        request_obj.save(update_fields=["status", "closed_at", "updated_at"])
        audit(user, Event.LEGAL_REJECTED if reject else Event.LEGAL_CLOSED, object_type="legalrequest",
              object_id=request_obj.pk, ip=ip, details={"note": note.strip()[:500]})
    return request_obj


def requests_for_agency_user(user):
    member = getattr(user, "agency_member", None)
    if member is None:
        return LegalRequest.objects.none()
    return LegalRequest.objects.filter(agency_id=member.agency_id)


def read_document(user, doc, ip=None):
    """The bytes of a document, after the caller's access check; the download is audited first."""
    audit(user, Event.LEGAL_DOCUMENT_DOWNLOADED, object_type="legaldocument", object_id=doc.pk, ip=ip,
          details={"request": doc.request_id, "side": doc.side, "sha256": doc.sha256})
    data = storage.read_original(doc.storage_path)
    if hashlib.sha256(data).hexdigest() != doc.sha256:
        raise ActionError("The stored document does not match its fingerprint; it was not sent.")
    return data
