"""Law-enforcement requests: the agencies' portal, its fence, agency isolation, and the liaison's work."""

import zlib
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from cases.actions import ActionError, legal
from cases.models import LegalHold, LegalRequest, LegalRequestStatus
from detection.models import Item
from reviewconsole.audit.models import AuditEvent
from tests.conftest import PDF, make_officer, verify_2fa
from tests.factories import case_with_match

pytestmark = pytest.mark.django_db


def signed_in(client, user, verified=True):
    client.force_login(user)
    if verified:
        verify_2fa(client, user)
    return client


def form(document=PDF, name="warrant.pdf", **overrides):
    data = {"kind": "search_warrant", "reference": "2026-CR-0042", "identifiers": "account: acct-1\ngroup: g-7",
            "description": "Subscriber records and stored photos.",
            "due_date": (timezone.now() + timedelta(days=14)).date().isoformat(),
            "document": SimpleUploadedFile(name, document, content_type="application/pdf")}
    data.update(overrides)
    return data


def file_request(officer, kind="subpoena", reference="R-1", identifiers=(("account", "acct-1"),)):
    return legal.submit_request(officer, kind=kind, reference=reference,
                                identifiers=[{"type": t, "id": i} for t, i in identifiers], description="Please.",
                                due_at=timezone.now() + timedelta(days=10), document=PDF, document_name="p.pdf")


@pytest.fixture
def other_officer(db):
    return make_officer("otto", "County Sheriff")


def test_an_officer_files_a_request_with_its_legal_process(client, users):
    response = signed_in(client, users["officer"]).post("/le/new/", form())
    request_obj = LegalRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/le/{request_obj.pk}/"
    assert request_obj.agency.name == "Metro Police" and request_obj.submitted_by == users["officer"]
    assert request_obj.identifiers == [{"type": "account", "id": "acct-1"}, {"type": "group", "id": "g-7"}]
    (doc,) = request_obj.documents.all()
    assert doc.name == "warrant.pdf" and doc.size == len(PDF) and doc.side == "agency"
    assert AuditEvent.objects.filter(action="legal.request_submitted", actor=users["officer"]).exists()
    page = client.get(f"/le/{request_obj.pk}/")
    assert b"2026-CR-0042" in page.content and b"warrant.pdf" in page.content


HOSTILE_DOCUMENTS = {
    "not a pdf": (b"\x89PNG\r\n\x1a\n" + b"0" * 100, "not a PDF"),
    "empty": (b"", "empty"),
    "truncated": (PDF[:-8], "truncated"),
    "javascript": (PDF.replace(b"/Type /Catalog",
                               b"/Type /Catalog /OpenAction << /S /JavaScript /JS (alert) >>"), "active content"),
    "escaped name": (PDF.replace(b"/Type /Catalog", b"/Type /Catalog /Names << /J#61vaScript 3 0 R >>"),
                     "active content"),
    "launch": (PDF.replace(b"/Type /Catalog", b"/Type /Catalog /AA << /O << /S /Launch /F (cmd.exe) >> >>"),
               "active content"),
    "hidden in a stream": (PDF.replace(b"trailer", b"3 0 obj\n<< /Filter /FlateDecode >>\nstream\n"
                                       + zlib.compress(b"<< /S /JavaScript /JS (x) >>")
                                       + b"\nendstream\nendobj\ntrailer"), "compressed stream"),
    "encrypted": (PDF.replace(b"<< /Root 1 0 R >>", b"<< /Root 1 0 R /Encrypt 5 0 R >>"), "Encrypted"),
    "html polyglot": (PDF.replace(b"%PDF-1.4\n", b"%PDF-1.4\n<html><script>alert(1)</script>\n"), "markup"),
    "compression bomb": (PDF.replace(b"trailer", b"3 0 obj\n<< /Filter /FlateDecode >>\nstream\n"
                                     + zlib.compress(b"\0" * (80 * 1024 * 1024), 9) + b"\nendstream\nendobj\ntrailer"),
                         "compression bomb"),
}


@pytest.mark.parametrize("case", list(HOSTILE_DOCUMENTS))
def test_hostile_documents_are_refused_with_a_reason_and_nothing_is_filed(client, users, case):
    document, reason = HOSTILE_DOCUMENTS[case]
    response = signed_in(client, users["officer"]).post("/le/new/", form(document))
    assert response.status_code == 200
    assert reason in " ".join(response.context["form"].non_field_errors()) or reason in response.content.decode()
    assert not LegalRequest.objects.exists()


def test_an_oversized_document_is_refused_before_it_is_read(client, users, settings):
    settings.LEGAL_DOCUMENT_MAX_BYTES = 1000
    response = signed_in(client, users["officer"]).post("/le/new/", form(PDF + b"%" * 2000))
    assert "larger than" in " ".join(response.context["form"].non_field_errors())
    assert not LegalRequest.objects.exists()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("identifiers", "", "This field is required"),
    ("identifiers", "phone: 555", "Cannot read identifier"),
    ("identifiers", "\n".join(f"account: a{n}" for n in range(60)), "At most 50"),
    ("due_date", "2001-01-01", "must be in the future"),
    ("kind", "wiretap", "Select a valid choice"),
    ("reference", "", "This field is required"),
])
def test_bad_request_fields_are_refused(client, users, field, value, message):
    response = signed_in(client, users["officer"]).post("/le/new/", form(**{field: value}))
    assert response.status_code == 200 and message in response.content.decode()
    assert not LegalRequest.objects.exists()


def test_a_request_without_a_document_is_refused(client, users):
    data = form()
    del data["document"]
    response = signed_in(client, users["officer"]).post("/le/new/", data)
    assert response.status_code == 200 and not LegalRequest.objects.exists()


def test_agencies_never_see_each_others_requests(client, users, other_officer):
    mine = file_request(users["officer"], reference="MINE")
    theirs = file_request(other_officer, reference="THEIRS")
    theirs_doc = theirs.documents.get()
    signed_in(client, users["officer"])
    listing = client.get("/le/").content
    assert b"MINE" in listing and b"THEIRS" not in listing
    for url in (f"/le/{theirs.pk}/", f"/le/{theirs.pk}/documents/{theirs_doc.pk}/",
                f"/le/{mine.pk}/documents/{theirs_doc.pk}/", f"/le/{theirs.pk + 1000}/"):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/le/{theirs.pk}/message/", {"text": "hi"}).status_code == 404
    assert not theirs.messages.exists()
    assert client.get(f"/le/{mine.pk}/documents/{mine.documents.get().pk}/").status_code == 200


def test_an_officer_sees_only_the_portal(client, users):
    signed_in(client, users["officer"])
    for url in ("/queue/", "/reports/", "/metrics/", "/admin/", "/legal/", "/account/viewing/", "/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"] == "/le/", url
    assert client.post("/queue/claim/").status_code == 403


def test_the_portal_needs_a_verified_second_factor(client, users):
    signed_in(client, users["officer"], verified=False)
    response = client.get("/le/")
    assert response.status_code == 302 and response["Location"].startswith("/account/verify/")


def test_an_inactive_agency_is_shut_out(client, users):
    users["officer"].agency_member.agency.__class__.objects.update(active=False)
    assert signed_in(client, users["officer"]).get("/le/").status_code == 403


def test_staff_without_an_agency_cannot_use_the_portal(client, users):
    assert signed_in(client, users["admin"]).get("/le/").status_code == 403
    assert signed_in(client, users["liaison"]).get("/le/new/").status_code == 403


def test_emergencies_come_first_with_their_own_sla(users):
    later = file_request(users["officer"], reference="LATER")
    emergency = file_request(users["officer"], kind="emergency", reference="NOW")
    queue = list(legal.staff_queue())
    assert queue[0] == emergency and queue[1] == later
    assert legal.sla_deadline(emergency) <= emergency.created_at + timedelta(hours=1)
    assert legal.sla_deadline(later) == later.due_at


def test_the_liaison_verifies_links_preserves_responds_and_closes(client, users):
    case, item = case_with_match(seed=1, account="acct-1")
    request_obj = file_request(users["officer"], identifiers=(("account", "acct-1"), ("account", "gone")))
    signed_in(client, users["liaison"])
    url = f"/legal/{request_obj.pk}/"
    assert f"/legal/{request_obj.pk}/".encode() in client.get("/legal/").content
    client.post(url + "link/")  # refused before verification
    assert not request_obj.accounts.exists()
    client.post(url + "verify/", {"note": ""})
    assert LegalRequest.objects.get().status == LegalRequestStatus.SUBMITTED
    client.post(url + "verify/", {"note": "Called the agency switchboard"})
    client.post(url + "link/")
    assert list(request_obj.accounts.values_list("external_id", flat=True)) == ["acct-1"]
    assert list(request_obj.cases.all()) == [case]
    client.post(url + "hold/", {"days": "90"})
    hold = LegalHold.objects.get(legal_request=request_obj)
    assert hold.item == item and hold.reason == "preservation"
    client.post(url + "hold/", {"days": "180"})  # again: extends, never duplicates
    assert LegalHold.objects.filter(legal_request=request_obj).count() == 1
    assert LegalHold.objects.get().until > timezone.now() + timedelta(days=179)
    with pytest.raises(Exception, match="legal hold"):
        Item.objects.get(pk=item.pk).delete()
    reply = SimpleUploadedFile("records.pdf", PDF, content_type="application/pdf")
    client.post(url + "respond/", {"text": "Records attached.", "documents": [reply]})
    request_obj.refresh_from_db()
    assert request_obj.status == LegalRequestStatus.RESPONDED
    assert request_obj.documents.filter(side="response", name="records.pdf").exists()
    client.post(url + "close/", {"note": ""})
    assert LegalRequest.objects.get().status == LegalRequestStatus.CLOSED
    actions = set(AuditEvent.objects.filter(actor=users["liaison"]).values_list("action", flat=True))
    assert {"legal.queue_viewed", "legal.request_verified", "legal.subjects_linked", "legal.holds_placed",
            "legal.responded", "legal.closed"} <= actions


def test_the_officer_reads_the_response_and_every_download_is_audited(client, users):
    request_obj = file_request(users["officer"])
    legal.verify(users["liaison"], request_obj, note="call-back")
    legal.respond(users["liaison"], request_obj, text="Here you are.", documents=[("answer.pdf", PDF)])
    answer = request_obj.documents.get(side="response")
    signed_in(client, users["officer"])
    page = client.get(f"/le/{request_obj.pk}/").content.decode()
    assert "Here you are." in page and "answer.pdf" in page
    response = client.get(f"/le/{request_obj.pk}/documents/{answer.pk}/")
    assert response.status_code == 200 and response.content == PDF
    assert response["Cache-Control"] == "no-store" and response["Content-Type"] == "application/pdf"
    assert AuditEvent.objects.filter(action="legal.document_downloaded", actor=users["officer"],
                                     object_id=str(answer.pk)).exists()
    assert AuditEvent.objects.filter(action="legal.request_viewed", actor=users["officer"]).exists()
    signed_in(client, users["liaison"]).get(f"/legal/{request_obj.pk}/documents/{answer.pk}/")
    assert AuditEvent.objects.filter(action="legal.document_downloaded", actor=users["liaison"]).exists()


def test_a_tampered_document_is_not_sent(client, users, settings):
    request_obj = file_request(users["officer"])
    doc = request_obj.documents.get()
    (settings.EVIDENCE_ROOT / doc.storage_path).write_bytes(PDF.replace(b"Pages", b"Pagez"))
    response = signed_in(client, users["liaison"]).get(f"/legal/{request_obj.pk}/documents/{doc.pk}/")
    assert response.status_code == 302


def test_rejecting_needs_a_reason_the_agency_sees(client, users):
    request_obj = file_request(users["officer"])
    with pytest.raises(ActionError):
        legal.close(users["liaison"], request_obj, reject=True, note="")
    legal.close(users["liaison"], request_obj, reject=True, note="Not our service.")
    page = signed_in(client, users["officer"]).get(f"/le/{request_obj.pk}/").content.decode()
    assert "Rejected" in page and "Not our service." in page
    assert client.post(f"/le/{request_obj.pk}/message/", {"text": "but"}).status_code == 302
    assert not request_obj.messages.filter(text="but").exists()


def test_an_officer_adds_a_message_and_a_document(client, users):
    request_obj = file_request(users["officer"])
    signed_in(client, users["officer"]).post(
        f"/le/{request_obj.pk}/message/",
        {"text": "Amended order attached.", "document": SimpleUploadedFile("amended.pdf", PDF)})
    assert request_obj.messages.get().text == "Amended order attached."
    assert request_obj.documents.filter(name="amended.pdf").exists()
    client.post(f"/le/{request_obj.pk}/message/", {"text": "", "document": SimpleUploadedFile("x.exe", b"MZ")})
    assert request_obj.documents.count() == 2


def test_an_uploaded_name_cannot_escape_or_inject():
    assert legal._safe_name("../../etc/passwd") == "passwd.pdf"
    assert legal._safe_name('a"b;c.pdf') == "a_b_c.pdf"


def test_an_oversized_response_attachment_is_refused_and_nothing_is_sent(client, users, settings):
    request_obj = file_request(users["officer"])
    legal.verify(users["liaison"], request_obj, note="call-back")
    settings.LEGAL_DOCUMENT_MAX_BYTES = 1000
    big = SimpleUploadedFile("big.pdf", PDF + b"%" * 2000, content_type="application/pdf")
    signed_in(client, users["liaison"]).post(f"/legal/{request_obj.pk}/respond/", {"text": "Here.", "documents": [big]})
    request_obj.refresh_from_db()
    assert request_obj.status == LegalRequestStatus.VERIFIED and not request_obj.messages.exists()
