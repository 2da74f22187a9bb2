"""Law-enforcement requests: what an agency files, and what the liaison team does with it.

Every function here is atomic and writes its audit row in the same transaction. Agency users
reach requests only through `requests_for_agency_user`, so one agency can never name another's.
"""

import hashlib
import re
import zlib
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case as When_
from django.db.models import IntegerField, Q, Value, When
from django.utils import timezone

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
ACTIVE_PDF_NAMES = [b"/JavaScript", b"/JS", b"/Launch", b"/EmbeddedFile", b"/RichMedia", b"/XFA", b"/OpenAction",
                    b"/AA", b"/SubmitForm", b"/ImportData", b"/GoToR"]
PDF_NAME_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
PDF_STREAM = re.compile(rb"stream\r?\n(.*?)endstream", re.S)
# Compressed streams are inflated to look inside them, up to this much in all (a zip-bomb guard).
PDF_INFLATE_BUDGET = 64 * 1024 * 1024


class RejectedDocument(ActionError):
    """The upload is not a PDF we accept; the message says why."""


def check_pdf(data, name=""):
    """Raise RejectedDocument unless `data` is a plain PDF within the size limit."""
    limit = settings.LEGAL_DOCUMENT_MAX_BYTES
    if not data:
        raise RejectedDocument("The document is empty.")
    if len(data) > limit:
        raise RejectedDocument(f"The document is larger than {limit // (1024 * 1024)} MB.")
    if not re.match(rb"%PDF-[12]\.\d", data[:8]):
        raise RejectedDocument("The document is not a PDF (it does not start with %PDF-).")
    if b"%%EOF" not in data[-2048:]:
        raise RejectedDocument("The PDF is truncated or damaged (no end-of-file marker).")
    if b"/Encrypt" in data:
        raise RejectedDocument("Encrypted PDFs cannot be checked; send the document without a password.")
    for where, chunk in _pdf_parts(data):
        # Names may hide letters as #xx escapes (/J#61vaScript); undo them before looking.
        plain = PDF_NAME_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), chunk)
        for marker in ACTIVE_PDF_NAMES:
            if re.search(re.escape(marker) + rb"(?![A-Za-z])", plain):
                raise RejectedDocument(f"The PDF contains active content ({marker.decode()[1:]}{where}); "
                                       "send a plain document without scripts, actions or attachments.")
    lowered = data[:4096].lower()
    if b"<html" in lowered or b"<script" in lowered:
        raise RejectedDocument("The PDF also holds web markup (a polyglot file).")
    return data


def _pdf_parts(data):
    yield "", data
    budget = PDF_INFLATE_BUDGET
    for match in PDF_STREAM.finditer(data):
        inflater = zlib.decompressobj()
        try:
            inflated = inflater.decompress(match.group(1), budget + 1)
        except zlib.error:
            continue  # not Flate, or damaged: the raw bytes were already searched
        budget -= len(inflated)
        if budget < 0:
            raise RejectedDocument("The PDF's compressed streams expand too far to be checked (a compression bomb).")
        yield " in a compressed stream", inflated


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
