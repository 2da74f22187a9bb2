"""Hash-only intake: a platform that hashes at its edge sends hashes instead of bytes; the item is
matched, signalled, ranked and acted on like a file, and everything that would read a file copes."""

import io
import json
import random
from xml.etree import ElementTree as ET

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from cases.actions import preservation
from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.cybertip import documents, filing
from cases.models import Case, CyberTipReport, IntegrityAlert
from detection import intake
from detection.banks import import_vpdq
from detection.detectors.hashing import DIHEDRAL, unpack_orientations
from detection.jobs import classify
from detection.models import Account, Item, ItemKind, ItemStatus, Signal
from reviewconsole.audit.models import AuditEvent
from tests.conftest import drain, verify_2fa
from tests.factories import hash_values, known_bank, triage_all
from tests.fake_cybertip import PASSWORD, USER, FakeCyberTipline

pytestmark = pytest.mark.django_db

MD5 = "0123456789abcdef0123456789abcdef"
SHA256 = "ab" * 32


def flipped(hex_hash, bits, seed=0):
    """`hex_hash` with `bits` distinct bits flipped: a near copy at exactly that Hamming distance."""
    value = int(hex_hash, 16)
    for bit in random.Random(seed).sample(range(len(hex_hash) * 4), bits):
        value ^= 1 << bit
    return f"{value:0{len(hex_hash)}x}"


def random_pdq(seed):
    return f"{random.Random(seed).getrandbits(256):064x}"


def post_hashes(api, hashes, **fields):
    body = {"account": "acct-h", "kind": "image", "hashes": hashes, **fields}
    return api.post("/api/v1/items", json.dumps(body), content_type="application/json")


def received(api, hashes, **fields):
    response = post_hashes(api, hashes, **fields)
    assert response.status_code == 202, response.content
    return Item.objects.get(pk=response.json()["id"])


def scanned(item):
    """The item as stored: hash-only items are matched in the intake request."""
    item.refresh_from_db()
    assert item.status == ItemStatus.SCANNED
    return item


def pdq_of(seed):
    return {"pdq": hash_values(seed)["pdq"], "pdq_quality": 100}


def nothing_stored():
    return not (Item.objects.exists() or Account.objects.exists())


# Matching --------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_a_hash_only_pdq_through_the_real_pipeline_raises_a_match_and_opens_a_case(api, settings):
    known_bank([31])
    response = post_hashes(api, pdq_of(31), external_id="m-31", ip="203.0.113.7",
                           uploaded_at="2026-11-01T10:00:00Z")
    # Matched in the request: stored scanned with its signal; triage (a real worker) opens the case.
    assert response.status_code == 202 and response.json()["status"] == "scanned"
    item = Item.objects.get(pk=response.json()["id"])
    assert Signal.objects.get(item=item).triaged_at is None
    assert item.hash_only and item.storage_path == "" and item.size == 0
    assert not (settings.EVIDENCE_ROOT / "originals").exists()  # no bytes were written anywhere
    assert AuditEvent.objects.get(action="item.received", item=item).details["hash_only"] is True
    drain()
    body = api.get(f"/api/v1/items/{item.pk}").json()
    assert body["status"] == "scanned" and body["hash_only"] is True
    assert body["hashes"]["pdq"] == hash_values(31)["pdq"] and body["hashes"]["md5"] is None
    (signal,) = body["signals"]
    assert signal["kind"] == "hash_match" and signal["details"]["basis"] == "pdq"
    assert signal["label"].startswith("Exact match (PDQ distance 0)")
    case = Case.objects.get(pk=body["case"])
    assert case.queue.slug == "known-material" and case.account.external_id == "acct-h"
    assert Item.objects.get(pk=item.pk).classified_at is None  # never handed to the classifiers


def test_an_md5_only_item_matches_exactly(api):
    known_bank([32])
    item = scanned(received(api, {"md5": hash_values(32)["md5"].upper()}))
    assert item.md5 == hash_values(32)["md5"] and item.pdq == "" and item.pdq_orientations is None
    (signal,) = Signal.objects.filter(item=item)
    assert signal.details["basis"] == "exact" and signal.score == 1.0
    (case,) = triage_all()
    assert case.queue.slug == "known-material"


def test_a_near_pdq_within_the_threshold_matches_and_a_far_one_does_not(api):
    known_bank([33], types=("pdq",))
    near = scanned(received(api, {"pdq": flipped(hash_values(33)["pdq"], 12), "pdq_quality": 90}))
    (signal,) = Signal.objects.filter(item=near)
    assert signal.label.startswith("Near match (PDQ distance 12 of 256)")
    assert signal.details["hashes"][0]["distance"] == 12 and signal.details["pdq_quality"] == 90
    far = scanned(received(api, {"pdq": flipped(hash_values(33)["pdq"], 90), "pdq_quality": 90}))
    assert not Signal.objects.filter(item=far).exists()


def test_a_pdq_below_the_quality_floor_is_not_compared(api):
    known_bank([34], types=("pdq",))
    item = scanned(received(api, {"pdq": hash_values(34)["pdq"], "pdq_quality": 10}))
    assert item.status == ItemStatus.SCANNED and not Signal.objects.filter(item=item).exists()


def test_the_orientations_the_platform_sent_are_stored_and_matched(api):
    known_bank([35], types=("pdq",))
    original = random_pdq(1)
    orientations = [original, hash_values(35)["pdq"]] + [random_pdq(n) for n in range(2, 8)]
    item = scanned(received(api, {"pdq": original.upper(), "pdq_quality": 80,
                                  "pdq_orientations": [o.upper() for o in orientations]}))
    assert unpack_orientations(item.pdq_orientations) == tuple(zip(DIHEDRAL, orientations, strict=True))
    (signal,) = Signal.objects.filter(item=item)
    assert DIHEDRAL[1] in signal.explanation


def test_without_orientations_the_original_pdq_alone_is_stored(api):
    item = received(api, pdq_of(36))
    assert unpack_orientations(item.pdq_orientations) == (("original", hash_values(36)["pdq"]),)


BANK_SEEDS = tuple(range(740, 756))  # a 16-second bank video, a new scene each second


def video_frames(seeds=BANK_SEEDS, flip=0):
    return [{"t": float(n), "pdq": flipped(hash_values(seed)["pdq"], flip, seed) if flip else hash_values(seed)["pdq"],
             "quality": 100} for n, seed in enumerate(seeds)]


def test_vpdq_frames_of_a_hash_only_video_match_a_video_bank(api):
    lines = "".join(f"{n},{f['quality']},{f['pdq']},{f['t']:.3f}\n" for n, f in enumerate(video_frames()))
    import_vpdq("videos", io.StringIO(lines), media_key="bank-clip")
    item = scanned(received(api, {"frames": video_frames(flip=6)}, kind="video"))
    assert len(item.frame_hashes) == 16 and item.kind == ItemKind.VIDEO
    (signal,) = Signal.objects.filter(item=item)
    assert signal.label == "Video match, bank videos" and signal.details["video"]["media_key"] == "bank-clip"


def test_a_hash_only_video_keeps_its_frames_as_sent(api):
    item = received(api, {"frames": video_frames(), "md5": MD5}, kind="video")
    assert item.frame_hashes == video_frames() and item.kind == ItemKind.VIDEO and item.md5 == MD5


def test_a_retried_submission_gives_the_same_item(api):
    first = post_hashes(api, {"md5": MD5}, external_id="m-1")
    again = post_hashes(api, {"md5": MD5}, external_id="m-1")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert Item.objects.count() == 1


# Bad input ------------------------------------------------------------------------------------

GOOD_PDQ = "f" * 64
FRAME = {"t": 0, "pdq": GOOD_PDQ, "quality": 90}


@pytest.mark.parametrize("body, field, words", [
    ({"hashes": {"pdq": "f" * 63, "pdq_quality": 90}}, "hashes.pdq", "64 hex digits"),
    ({"hashes": {"pdq": "g" * 64, "pdq_quality": 90}}, "hashes.pdq", "hex"),
    ({"hashes": {"pdq": 5, "pdq_quality": 90}}, "hashes.pdq", "string"),
    ({"hashes": {"md5": "a" * 31}}, "hashes.md5", "32 hex digits"),
    ({"hashes": {"md5": "z" * 32}}, "hashes.md5", "hex"),
    ({"hashes": {"sha256": "a" * 65}}, "hashes.sha256", "64 hex digits"),
    ({"hashes": {"sha256": "a\x00" * 32}}, "hashes.sha256", "hex"),
    ({"hashes": {"pdq": GOOD_PDQ}}, "hashes.pdq_quality", "required with pdq"),
    ({"hashes": {"pdq": GOOD_PDQ, "pdq_quality": 101}}, "hashes.pdq_quality", "0 to 100"),
    ({"hashes": {"pdq": GOOD_PDQ, "pdq_quality": -1}}, "hashes.pdq_quality", "0 to 100"),
    ({"hashes": {"pdq": GOOD_PDQ, "pdq_quality": 9.5}}, "hashes.pdq_quality", "whole number"),
    ({"hashes": {"pdq": GOOD_PDQ, "pdq_quality": True}}, "hashes.pdq_quality", "whole number"),
    ({"hashes": {"md5": MD5, "pdq_quality": 50}}, "hashes.pdq_quality", "only with pdq"),
    ({"hashes": {"md5": MD5, "sha1": "a" * 40}}, "hashes.sha1", "unknown key"),
    ({"hashes": {}}, "hashes", "at least one hash"),
    ({"hashes": {"pdq_quality": None}}, "hashes", "at least one hash"),
    ({"hashes": "f" * 64}, "hashes", "object"),
    ({"hashes": [MD5]}, "hashes", "object"),
    ({"hashes": {"pdq": GOOD_PDQ, "pdq_quality": 90, "pdq_orientations": [GOOD_PDQ] * 7}},
     "hashes.pdq_orientations", "8 dihedral"),
    ({"hashes": {"pdq": GOOD_PDQ, "pdq_quality": 90, "pdq_orientations": ["e" * 64] + [GOOD_PDQ] * 7}},
     "hashes.pdq_orientations", "must equal pdq"),
    ({"hashes": {"pdq": GOOD_PDQ, "pdq_quality": 90, "pdq_orientations": [GOOD_PDQ] * 7 + ["x"]}},
     "hashes.pdq_orientations", "hash 7"),
    ({"hashes": {"md5": MD5, "pdq_orientations": [GOOD_PDQ] * 8}}, "hashes.pdq_orientations", "only with pdq"),
    ({"hashes": {"frames": [FRAME]}}, "hashes.frames", "only for videos"),
    ({"kind": "video", "hashes": {"frames": []}}, "hashes.frames", "at least one frame"),
    ({"kind": "video", "hashes": {"frames": FRAME}}, "hashes.frames", "list of frames"),
    ({"kind": "video", "hashes": {"frames": [dict(FRAME, t=n) for n in range(4097)]}}, "hashes.frames",
     "at most 4096"),
    ({"kind": "video", "hashes": {"frames": [FRAME, dict(FRAME, t=-1)]}}, "hashes.frames[1].t", "negative"),
    ({"kind": "video", "hashes": {"frames": [dict(FRAME, t=2), dict(FRAME, t=1)]}}, "hashes.frames[1].t",
     "later than"),
    ({"kind": "video", "hashes": {"frames": [FRAME, dict(FRAME, t=0)]}}, "hashes.frames[1].t", "later than"),
    ({"kind": "video", "hashes": {"frames": [dict(FRAME, t="0")]}}, "hashes.frames[0].t", "number"),
    ({"kind": "video", "hashes": {"frames": [dict(FRAME, t=10**400)]}}, "hashes.frames[0].t", "at most"),
    ({"kind": "video", "hashes": {"frames": [dict(FRAME, pdq="f" * 62)]}}, "hashes.frames[0].pdq", "64 hex"),
    ({"kind": "video", "hashes": {"frames": [dict(FRAME, quality=200)]}}, "hashes.frames[0].quality", "0 to 100"),
    ({"kind": "video", "hashes": {"frames": [{"t": 0, "pdq": GOOD_PDQ}]}}, "hashes.frames[0].quality", "required"),
    ({"kind": "video", "hashes": {"frames": [dict(FRAME, extra=1)]}}, "hashes.frames[0]", "unknown key"),
    ({"kind": "video", "hashes": {"frames": ["x"]}}, "hashes.frames[0]", "object"),
    ({"kind": "text", "hashes": {"md5": MD5}}, "kind", "image or video"),
    ({"kind": "hologram", "hashes": {"md5": MD5}}, "kind", "image or video"),
    ({"text": "hello", "hashes": {"md5": MD5}}, "text", "not both"),
    ({"file": "photo.jpg", "hashes": {"md5": MD5}}, "file", "not both"),
    ({"hashes": None}, "hashes", "required for an image or video"),
    ({"kind": "video"}, "hashes", "required for an image or video"),
    ({"account": "", "hashes": {"md5": MD5}}, "account", ""),
    ({"account": "a\x00", "hashes": {"md5": MD5}}, "account", ""),
    ({"ip": "999.1.1.1", "hashes": {"md5": MD5}}, "ip", ""),
    ({"uploaded_at": 5, "hashes": {"md5": MD5}}, "uploaded_at", ""),
])
def test_every_bad_input_is_a_400_naming_the_field_and_stores_nothing(api, body, field, words):
    response = api.post("/api/v1/items", json.dumps({"account": "acct-h", "kind": "image", **body}),
                        content_type="application/json")
    assert response.status_code == 400, response.content
    fields = response.json()["fields"]
    assert field in fields, fields
    assert words in " ".join(fields[field])
    assert nothing_stored()


def test_the_item_fields_and_the_hashes_are_refused_together(api):
    response = post_hashes(api, {"md5": "x"}, ip="nowhere", kind="video")
    assert {"ip", "hashes.md5"} <= set(response.json()["fields"])
    assert nothing_stored()


@pytest.mark.parametrize("with_file", [True, False])
def test_hashes_in_a_multipart_upload_are_refused(api, image_bytes, with_file):
    form = {"account": "acct-h", "hashes": json.dumps({"md5": MD5})}
    if with_file:
        form["file"] = SimpleUploadedFile("photo.jpg", image_bytes(1), content_type="image/jpeg")
    response = api.post("/api/v1/items", form)
    assert response.status_code == 400
    assert ("not both" in response.json()["fields"]["hashes"][0]) == with_file
    assert nothing_stored()


def test_the_action_refuses_bad_hashes_itself():
    with pytest.raises(intake.InvalidHashes) as refused:
        intake.submit_hashes({"pdq": "f" * 64}, account_id="acct-h")
    assert "hashes.pdq_quality" in refused.value.fields
    with pytest.raises(intake.Rejection):
        intake.submit_hashes({"md5": MD5}, account_id="acct-h", kind=ItemKind.TEXT)
    assert nothing_stored()


def test_the_openapi_document_describes_the_hash_only_body(client):
    doc = client.get("/api/v1/openapi.json").json()
    variants = doc["paths"]["/items"]["post"]["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    hashed = next(v for v in variants if "hashes" in v["properties"])
    assert set(hashed["properties"]["hashes"]["properties"]) == set(intake.HASH_KEYS)
    assert hashed["properties"]["hashes"]["properties"]["frames"]["maxItems"] == intake.MAX_FRAMES
    assert doc["components"]["schemas"]["Item"]["properties"]["hash_only"]["type"] == "boolean"


# Everything that assumes a file ---------------------------------------------------------------

@pytest.fixture
def hash_case():
    known_bank([37])
    item = scanned(intake.submit_hashes({**pdq_of(37), "md5": MD5, "sha256": SHA256}, account_id="acct-h",
                                        ip="203.0.113.8"))
    (case,) = triage_all()
    return case, item


def test_the_case_page_says_no_media_is_held(client, users, hash_case):
    case, item = hash_case
    claim_case(users["specialist"], case.pk)
    client.force_login(users["specialist"])
    verify_2fa(client, users["specialist"])
    response = client.get(f"/cases/{case.pk}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "No media held" in page and "the platform sent hashes only" in page
    assert f"/evidence/{item.pk}/blurred.jpg" not in page and f"/evidence/{item.pk}/reveal/" not in page
    assert item.pdq in page and SHA256 in page


def test_reveal_is_refused_and_nothing_is_recorded_as_viewed(client, users, hash_case):
    _, item = hash_case
    client.force_login(users["specialist"])
    verify_2fa(client, users["specialist"])
    response = client.post(f"/evidence/{item.pk}/reveal/")
    assert response.status_code == 409 and b"No media held" in response.content
    blurred = client.get(f"/evidence/{item.pk}/blurred.jpg")
    assert blurred.status_code == 200 and blurred["Content-Type"] == "image/jpeg"
    assert "no-store" in blurred["Cache-Control"]
    assert not AuditEvent.objects.filter(item=item, action__startswith="evidence.").exists()


def test_the_classifiers_skip_a_hash_only_item(hash_case, settings):
    _, item = hash_case
    assert not classify.pending().filter(pk=item.pk).exists()
    assert classify.classify_item(item.pk) == "skipped"


def test_integrity_checks_and_purges_do_not_look_for_a_file(hash_case, settings,
                                                            django_capture_on_commit_callbacks):
    _, item = hash_case
    assert preservation.verify() == (0, 0) and not IntegrityAlert.objects.exists()
    assert not preservation.purgeable().filter(pk=item.pk).exists()
    settings.EVIDENCE_ROOT.mkdir(parents=True, exist_ok=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert preservation.purge(item, reason="destroyed on request: nothing held")
    assert settings.EVIDENCE_ROOT.is_dir()  # "" names no file: the root itself must be left alone
    assert Item.objects.get(pk=item.pk).purged_at is not None


@pytest.fixture
def fake(settings):
    with FakeCyberTipline() as server:
        settings.CYBERTIP_URL = server.url
        settings.CYBERTIP_USERNAME, settings.CYBERTIP_PASSWORD = USER, PASSWORD
        settings.CYBERTIP_TIMEOUT = 1
        settings.CYBERTIP_REQUIRE_APPROVAL = False
        yield server


def test_a_cybertipline_report_files_the_hashes_without_uploading(users, fake, hash_case):
    case, item = hash_case
    case = claim_case(users["specialist"], case.pk)
    decide(users["specialist"], case.pk, action="report", reason_code="csam-known", version=case.version)
    report = CyberTipReport.objects.get(case=case)
    assert filing.file_report(report.pk) == CyberTipReport.Status.FILED
    assert fake.calls == ["submit", "finish"]  # no upload, no fileinfo
    report.refresh_from_db()
    assert not fake.reports[report.ncmec_report_id]["files"]
    info = ET.fromstring(report.xml_sent.encode()).findtext("additionalInfo")
    assert f"Item {item.pk} (image" in info and "sent only its hashes" in info
    assert MD5 in info and SHA256 in info and f"PDQ {item.pdq} (quality 100)" in info
    assert "Exact match (PDQ distance 0)" in info
    report_file = report.files.get()
    assert report_file.item_id == item.pk and report_file.ncmec_file_id == "" and report_file.fileinfo_sent_at is None


def test_a_hash_only_video_is_told_with_its_frames():
    entry = documents.HashOnlyItem(item_id=9, kind="video", frames=video_frames() + video_frames(flip=3)[:4])
    text = documents.hash_only_paragraph(entry)
    assert "20 frames" in text and "and 4 more" in text and video_frames()[0]["pdq"] in text
