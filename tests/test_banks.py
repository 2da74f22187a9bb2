"""Hash banks: the pages, the allow-list, the local bank fed by decisions, and NCMEC hash sharing."""

import csv
import io
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from cases.actions import ActionError
from cases.actions.claims import claim_case
from cases.actions.decisions import decide, second_review, undo
from cases.models import Case
from detection import exchange, matching
from detection.banks import ALLOW_BANK, LOCAL_BANK, import_hashes
from detection.detectors.hashing import hash_image
from detection.models import Bank, BankHash, BankImport, BankKind, HashExchange, Signal
from reviewconsole.audit.models import AuditEvent
from tests.conftest import drain, verify_2fa
from tests.factories import case_with_match, encoded, hash_values, known_bank, scanned_item, triage_all
from tests.fake_ncmec import PASSWORD, USER, FakeNCMECHashAPI

pytestmark = pytest.mark.django_db


def signed_in(client, users, role="senior"):
    client.force_login(users[role])
    verify_2fa(client, users[role])
    return client


def bank_of(name):
    return Bank.objects.get(name=name)


def bank_names(item):
    return {s.details.get("bank") for s in Signal.objects.filter(item=item, kind="hash_match")}


def filled_bank(name="big", count=120):
    bank = Bank.objects.create(name=name)
    BankHash.objects.bulk_create([
        BankHash(bank=bank, hash_type="md5", value=f"{i:032x}", label=f"ref-{i:04d}") for i in range(count)])
    return bank


# Pages and permissions --------------------------------------------------------------------------

def test_seniors_and_admins_manage_banks_and_reviewers_do_not(users):
    assert users["senior"].has_perm("detection.change_bank") and users["admin"].has_perm("detection.view_bank")
    assert not any(users[r].has_perm("detection.view_bank") for r in ("reviewer", "specialist", "nobody"))


def test_the_navigation_links_banks_only_for_those_who_may_see_them(client, users):
    assert 'href="/banks/"' in signed_in(client, users, "senior").get("/queue/").content.decode()
    assert 'href="/banks/"' not in signed_in(client, users, "specialist").get("/queue/").content.decode()


def test_bank_pages_need_a_verified_second_factor(client, users):
    client.force_login(users["senior"])
    response = client.get("/banks/")
    assert response.status_code == 302 and response["Location"].startswith("/account/verify/?next=%2Fbanks%2F")


def test_the_list_shows_each_bank_with_counts_thresholds_and_kind(client, users):
    known_bank([1, 2])
    Bank.objects.create(name=ALLOW_BANK, kind=BankKind.ALLOW, enabled=False, severity=10)
    page = signed_in(client, users).get("/banks/").content.decode()
    assert "known" in page and "PDQ 2" in page and "MD5 2" in page and "<strong>8</strong>" in page
    assert "Allow-list (known false positives)" in page and "disabled" in page and "PDQ ≤ 31" in page


def test_browsing_pages_through_entries_newest_first(client, users):
    bank = filled_bank(count=120)
    signed_in(client, users)
    first = client.get(f"/banks/{bank.pk}/")
    entries = first.context["entries"]
    assert len(entries) == 50 and entries[0].label == "ref-0119" and first.context["total"] == 120
    second = client.get(f"/banks/{bank.pk}/" + first.context["older"])
    assert second.context["entries"][0].label == "ref-0069"
    third = client.get(f"/banks/{bank.pk}/" + second.context["older"])
    assert len(third.context["entries"]) == 20 and not third.context["older"]
    back = client.get(f"/banks/{bank.pk}/" + third.context["newer"])
    assert [e.pk for e in back.context["entries"]] == [e.pk for e in second.context["entries"]]


def test_browsing_costs_the_same_queries_on_any_page(client, users):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    bank = filled_bank(count=120)
    signed_in(client, users)
    counts = []
    for url in (f"/banks/{bank.pk}/", f"/banks/{bank.pk}/?after={bank.hashes.order_by('pk')[60].pk}"):
        client.get(url)
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        counts.append(len(queries))
    assert counts[0] == counts[1] and counts[0] <= 15, counts


def test_a_large_bank_is_counted_in_the_background(client, users, monkeypatch, redis_conn,
                                                  django_capture_on_commit_callbacks):
    import django_rq

    from detection.banks import recount_bank
    bank = filled_bank(count=120)
    monkeypatch.setattr("detection.banks.SYNC_COUNT_LIMIT", 10)
    signed_in(client, users)
    with django_capture_on_commit_callbacks(execute=True):  # django-rq enqueues on commit
        page = client.get("/banks/").content.decode()
        client.get("/banks/")  # a second view while the count waits queues no second job
    assert "(recounting)" in page
    jobs = django_rq.get_queue("default").get_jobs()
    assert [(j.func_name, j.args) for j in jobs] == [("detection.banks.recount_bank", (bank.pk,))]
    assert recount_bank(bank.pk) == {"md5": 120}
    page = client.get("/banks/").content.decode()
    assert "(recounting)" not in page and "<strong>120</strong>" in page
    Bank.objects.filter(pk=bank.pk).update(updated_at=bank_of("big").updated_at.replace(year=2100))
    assert "(recounting)" in client.get("/banks/").content.decode()


@pytest.mark.parametrize("query, expected", [
    ("0000000000000000000000000000006", 16),  # hash prefix: ...60 to ...6f
    ("0x00000000000000000000000000000010", 1),
    ("ref-001", 10),
    ("ref-0119", 1),
    ("nothing-like-this", 0),
    ("' OR 1=1 --", 0),
])
def test_searching_by_hash_prefix_or_label_prefix(client, users, query, expected):
    bank = filled_bank(count=120)
    response = signed_in(client, users).get(f"/banks/{bank.pk}/", {"q": query})
    assert len(response.context["entries"]) == expected and response.context["matched"] == expected


def test_search_within_a_type(client, users):
    known_bank([1, 2])
    bank = bank_of("known")
    response = signed_in(client, users).get(f"/banks/{bank.pk}/", {"type": "pdq"})
    assert {e.hash_type for e in response.context["entries"]} == {"pdq"} and response.context["matched"] == 2


def test_creating_a_bank_is_audited(client, users):
    response = signed_in(client, users).post("/banks/new/", {
        "name": "partner-list", "description": "From a partner", "kind": "known", "source": "file",
        "enabled": "on", "severity": 80, "pdq_threshold": 31, "phash_threshold": 6, "dhash_threshold": 6,
        "video_match_percent": 80})
    bank = bank_of("partner-list")
    assert response.status_code == 302 and response["Location"] == f"/banks/{bank.pk}/"
    event = AuditEvent.objects.get(action="bank.created")
    assert event.actor == users["senior"] and event.object_id == str(bank.pk)


@pytest.mark.parametrize("change", [{"name": "Not a slug!"}, {"pdq_threshold": 200}, {"severity": 101},
                                    {"video_match_percent": 0}, {"kind": "evil"}, {"name": "known"}])
def test_a_bad_new_bank_is_refused_with_a_reason(client, users, change):
    known_bank([1])
    form = {"name": "fresh", "kind": "known", "enabled": "on", "severity": 80, "pdq_threshold": 31,
            "phash_threshold": 6, "dhash_threshold": 6, "video_match_percent": 80, **change}
    response = signed_in(client, users).post("/banks/new/", form)
    assert response.status_code == 200 and response.context["form"].errors
    assert not Bank.objects.filter(name="fresh").exists() and not AuditEvent.objects.filter(action="bank.created")


def settings_form(bank, **changes):
    form = {name: getattr(bank, name) for name in ("description", "kind", "source", "severity", "pdq_threshold",
                                                   "phash_threshold", "dhash_threshold", "video_match_percent")}
    if bank.enabled:
        form["enabled"] = "on"
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def test_disabling_a_bank_stops_its_matches_and_enabling_brings_them_back(client, users):
    known_bank([1])
    bank = bank_of("known")
    signed_in(client, users)
    assert client.post(f"/banks/{bank.pk}/edit/", settings_form(bank, enabled=None)).status_code == 302
    assert not bank_of("known").enabled
    assert bank_names(scanned_item(encoded(1, "watermarked"), account="a1")) == set()
    event = AuditEvent.objects.get(action="bank.changed")
    assert event.details["changes"] == {"enabled": [True, False]}
    client.post(f"/banks/{bank.pk}/edit/", settings_form(bank, enabled="on"))
    assert bank_names(scanned_item(encoded(1, "watermarked"), account="a2")) == {"known"}


def test_tighter_thresholds_and_severity_take_effect(client, users):
    known_bank([1], types=("pdq", "phash", "dhash"))
    bank = bank_of("known")
    signed_in(client, users)
    client.post(f"/banks/{bank.pk}/edit/", settings_form(bank, severity=55))
    item = scanned_item(encoded(1, "watermarked"), account="a1")
    assert Signal.objects.get(item=item).severity == 55
    client.post(f"/banks/{bank.pk}/edit/", settings_form(bank_of("known"), pdq_threshold=0, phash_threshold=0,
                                                         dhash_threshold=0))
    assert bank_names(scanned_item(encoded(1, "watermarked"), account="a2")) == set()


def upload(client, bank, content, name="list.csv", **fields):
    return client.post(f"/banks/{bank.pk}/import/", {"file": SimpleUploadedFile(name, content), **fields})


def imported(bank):
    """Run the queued import jobs (enqueued after the commit: these tests commit); the bank's newest import."""
    drain()
    return BankImport.objects.filter(bank=bank).latest("pk")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_importing_a_file_reports_added_duplicates_and_bad_lines(client, users):
    bank = Bank.objects.create(name="partner")
    good = hash_values(1)
    content = "\n".join(["hash,type,label", f"{good['pdq']},pdq,ref-1", f"{good['md5']},md5,ref-1",
                         f"{good['md5']},md5,again", "nothex,pdq,bad", "abcd,sha1,wrong type"]).encode()
    response = upload(signed_in(client, users), bank, content)
    assert response.status_code == 302 and response["Location"] == f"/banks/{bank.pk}/"
    job = imported(bank)
    assert (job.status, job.imported, job.duplicates, job.error_count) == ("done", 2, 1, 2)
    page = client.get(f"/banks/{bank.pk}/").content.decode()
    assert "line 5: not a pdq hash" in page and "unknown hash type &#x27;sha1&#x27;" in page
    assert AuditEvent.objects.get(action="bank.imported").details["added"] == 2
    assert bank_names(scanned_item(encoded(1), account="a1")) == {"partner"}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_importing_plain_text_needs_a_type(client, users):
    bank = Bank.objects.create(name="partner")
    signed_in(client, users)
    response = upload(client, bank, (hash_values(1)["md5"] + "\n").encode(), name="list.txt")
    assert "say which type" in response.content.decode() and not bank.hashes.exists()
    assert not BankImport.objects.exists()
    upload(client, bank, (hash_values(1)["md5"] + "\n").encode(), name="list.txt", hash_type="md5")
    assert imported(bank).imported == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_a_tsv_file_is_read_by_its_name(client, users):
    bank = Bank.objects.create(name="partner")
    content = f"{hash_values(1)['md5']}\tmd5\tref\n{hash_values(2)['pdq']}\tpdq\tref2\n".encode()
    upload(signed_in(client, users), bank, content, name="x.tsv")
    assert imported(bank).imported == 2


@pytest.mark.parametrize("content, problem", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 10, "binary file"),
    (b"MZ\x90\x00\x03\x00\x00\x00", "binary file"),
])
def test_binary_garbage_is_refused_and_nothing_imported(client, users, content, problem):
    bank = Bank.objects.create(name="partner")
    response = upload(signed_in(client, users), bank, content)
    assert problem in response.content.decode() and not bank.hashes.exists()
    assert not AuditEvent.objects.filter(action="bank.imported").exists() and not BankImport.objects.exists()


def test_an_oversized_file_is_refused(client, users, settings):
    settings.BANK_IMPORT_MAX_BYTES = 1024 * 1024
    bank = Bank.objects.create(name="partner")
    content = (hash_values(1)["md5"] + ",md5,x\n").encode() * 40_000
    response = upload(signed_in(client, users), bank, content)
    assert "larger than 1 MB" in response.content.decode() and not bank.hashes.exists()
    assert not BankImport.objects.exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_huge_lines_broken_quotes_and_bad_encoding_are_rejected_lines_not_a_failed_import(client, users):
    bank = Bank.objects.create(name="partner")
    content = b"\n".join([
        b"a" * 200_000 + b",md5,huge",
        b'"' + b"b" * 5000,
        hash_values(1)["md5"].encode() + b",md5,\xff\xfe latin \xe9",
        hash_values(2)["md5"].encode() + b',md5,"quoted, label"',
    ])
    upload(signed_in(client, users), bank, content)
    job = imported(bank)
    assert job.status == "done" and job.imported == 2 and job.error_count == 2
    assert "line 1: line too long" in job.errors
    assert set(bank.hashes.values_list("label", flat=True)) == {"\ufffd\ufffd latin \ufffd", "quoted, label"}


def test_labels_are_escaped_on_the_page_and_neutralised_in_the_export(client, users):
    bank = Bank.objects.create(name="partner")
    rows = [("=HYPERLINK(\"http://x\")", 1), ("+cmd|' /C calc'!A0", 2), ("-2+3", 3), ("@SUM(1)", 4),
            ("<script>alert(1)</script>", 5), ("plain", 6)]
    lines = ["hash,type,label"] + [f"{hash_values(s)['md5']},md5,\"{label.replace(chr(34), chr(34) * 2)}\""
                                   for label, s in rows]
    import_hashes("partner", io.StringIO("\n".join(lines)), fmt="csv")
    signed_in(client, users)
    page = client.get(f"/banks/{bank.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    response = client.get(f"/banks/{bank.pk}/export/")
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    assert "no-store" in response["Cache-Control"]
    parsed = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert parsed[0] == ["hash", "type", "label", "added_at"]
    labels = {row[0]: row[2] for row in parsed[1:]}
    assert labels[hash_values(1)["md5"]] == "'=HYPERLINK(\"http://x\")"
    assert labels[hash_values(2)["md5"]].startswith("'+") and labels[hash_values(3)["md5"]] == "'-2+3"
    assert labels[hash_values(4)["md5"]] == "'@SUM(1)" and labels[hash_values(6)["md5"]] == "plain"


def test_the_export_holds_every_entry_and_is_audited(client, users):
    bank = filled_bank(count=120)
    response = signed_in(client, users).get(f"/banks/{bank.pk}/export/")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 121 and {r[1] for r in rows[1:]} == {"md5"} and rows[1][0] == f"{0:032x}"
    assert response["Content-Disposition"] == 'attachment; filename="big.csv"'
    event = AuditEvent.objects.get(action="bank.exported")
    assert event.actor == users["senior"] and event.details["entries"] == 120


def test_removing_an_entry_is_audited_and_stops_its_match(client, users):
    known_bank([1], types=("md5",))
    bank = bank_of("known")
    entry = bank.hashes.get()
    response = signed_in(client, users).post(f"/banks/{bank.pk}/entries/{entry.pk}/delete/")
    assert response.status_code == 302 and not bank.hashes.exists()
    assert AuditEvent.objects.get(action="bank.entry_removed").details["value"] == entry.value
    assert bank_names(scanned_item(encoded(1), account="a1")) == set()


def test_removing_an_entry_of_another_bank_is_not_found(client, users):
    known_bank([1], types=("md5",))
    other = Bank.objects.create(name="other")
    entry = bank_of("known").hashes.get()
    assert signed_in(client, users).post(f"/banks/{other.pk}/entries/{entry.pk}/delete/").status_code == 404
    assert BankHash.objects.filter(pk=entry.pk).exists()


def test_admin_pages_for_banks_load_and_admin_deletions_are_audited(client, users):
    known_bank([1], types=("md5",))
    bank = bank_of("known")
    exchange_row = HashExchange.objects.create(bank=bank, checkpoint={"max_ts": 5})
    signed_in(client, users, "admin")
    assert client.get(f"/admin/detection/bank/{bank.pk}/change/").status_code == 200
    assert client.get("/admin/detection/bankhash/?q=ab").status_code == 200
    entry = bank.hashes.get()
    assert client.get(f"/admin/detection/bankhash/{entry.pk}/change/").status_code == 200
    before = bank.updated_at
    response = client.post(f"/admin/detection/bankhash/{entry.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not bank.hashes.exists()
    assert bank_of("known").updated_at > before and AuditEvent.objects.filter(action="bank.entry_removed").exists()
    assert exchange_row.bank_id == bank.pk


# Allow-list -------------------------------------------------------------------------------------

def allow_list(seeds, types=("md5",)):
    known_bank(seeds, name=ALLOW_BANK, types=types)
    Bank.objects.filter(name=ALLOW_BANK).update(kind=BankKind.ALLOW)
    matching.invalidate()
    return bank_of(ALLOW_BANK)


def test_an_allow_listed_image_makes_no_signal_and_no_case_but_leaves_a_trace():
    known_bank([1])
    allow_list([1])
    item = scanned_item(encoded(1), account="a1")
    assert item.status == "scanned" and not Signal.objects.filter(item=item).exists()
    assert triage_all() == [] and not Case.objects.exists()
    trace = AuditEvent.objects.get(action="match.suppressed", item=item)
    assert trace.actor_label == "system" and trace.details["allow_lists"] == [ALLOW_BANK]
    assert {s["bank"] for s in trace.details["suppressed"]} == {"known"}


def test_taking_an_image_off_the_allow_list_or_disabling_it_lets_it_match_again(client, users):
    known_bank([1])
    allowed = allow_list([1])
    assert bank_names(scanned_item(encoded(1), account="a1")) == set()
    Bank.objects.filter(pk=allowed.pk).update(enabled=False)
    matching.invalidate()
    assert bank_names(scanned_item(encoded(1), account="a2")) == {"known"}
    Bank.objects.filter(pk=allowed.pk).update(enabled=True)
    matching.invalidate()
    assert bank_names(scanned_item(encoded(1), account="a3")) == set()
    entry = allowed.hashes.get()
    signed_in(client, users).post(f"/banks/{allowed.pk}/entries/{entry.pk}/delete/")
    assert bank_names(scanned_item(encoded(1), account="a4")) == {"known"}


def test_a_perceptual_allow_list_match_never_excuses_a_file_identical_to_known_material():
    known_bank([1], types=("md5",))
    known_bank([1], name="near", types=("pdq",))
    allow_list([1], types=("pdq",))
    item = scanned_item(encoded(1), account="a1")
    assert bank_names(item) == {"known"}  # the exact match stands, the perceptual one is excused
    assert AuditEvent.objects.get(action="match.suppressed").details["suppressed"][0]["bank"] == "near"


def test_an_allow_list_does_not_touch_other_images():
    known_bank([1, 2])
    allow_list([1])
    assert bank_names(scanned_item(encoded(2), account="a1")) == {"known"}
    assert not AuditEvent.objects.filter(action="match.suppressed").exists()


# The local bank, from reviewers' decisions ------------------------------------------------------

def decided(user, case, action="ban", reason="csam-known", **options):
    case = claim_case(user, case.pk)
    decision, _ = decide(user, case.pk, action=action, reason_code=reason, version=case.version, **options)
    return decision


def test_confirmed_material_goes_into_the_local_bank_with_who_and_why(users):
    case, item = case_with_match()
    decision = decided(users["reviewer"], case)
    bank = bank_of(LOCAL_BANK)
    assert bank.kind == BankKind.LOCAL and bank.source == "reviewers"
    entries = {e.hash_type: e for e in bank.hashes.all()}
    assert set(entries) == {"md5", "sha256", "pdq"}
    assert entries["md5"].value == item.md5 and entries["pdq"].value == item.pdq
    assert all(e.added_by == users["reviewer"] and e.label == f"case #{case.pk} item #{item.pk}"
               for e in entries.values())
    decision.refresh_from_db()
    assert sorted(decision.options["bank_entries"]) == sorted(e.pk for e in entries.values())
    event = AuditEvent.objects.get(action="bank.entries_added")
    assert event.details["entries_added"] == 3 and event.case_id == case.pk


def test_a_low_quality_pdq_is_not_banked(users, settings):
    case, item = case_with_match()
    settings.PDQ_MIN_QUALITY = 101
    decided(users["reviewer"], case)
    assert set(bank_of(LOCAL_BANK).hashes.values_list("hash_type", flat=True)) == {"md5", "sha256"}


def test_video_frames_are_banked_as_one_video(users):
    case, item = case_with_match()
    frames = [{"t": 0.0, "pdq": "a" * 64, "quality": 90}, {"t": 1.0, "pdq": "b" * 64, "quality": 90},
              {"t": 2.0, "pdq": "c" * 64, "quality": 10}]
    type(item).objects.filter(pk=item.pk).update(frame_hashes=frames)
    decided(users["reviewer"], case)
    framed = bank_of(LOCAL_BANK).hashes.filter(media_key=f"item-{item.pk}").order_by("frame_seconds")
    assert [(e.value[0], e.frame_seconds) for e in framed] == [("a", 0.0), ("b", 1.0)]


@pytest.mark.parametrize("action, reason", [("remove", "adult-nudity"), ("ban", "grooming"),
                                            ("escalate", "needs-specialist"), ("dismiss", "benign")])
def test_decisions_that_confirm_no_material_bank_nothing(users, action, reason):
    case, _ = case_with_match()
    decided(users["senior"], case, action=action, reason=reason, note="because")
    assert not Bank.objects.filter(name__in=[LOCAL_BANK, ALLOW_BANK]).exists() or not BankHash.objects.filter(
        bank__name__in=[LOCAL_BANK, ALLOW_BANK]).exists()


def test_a_repeated_decision_banks_once(users):
    case, _ = case_with_match()
    case = claim_case(users["reviewer"], case.pk)
    for _ in range(2):
        decide(users["reviewer"], case.pk, action="ban", reason_code="csam-known", version=case.version)
    assert bank_of(LOCAL_BANK).hashes.count() == 3
    assert AuditEvent.objects.filter(action="bank.entries_added").count() == 1


def test_undo_takes_back_exactly_the_entries_the_decision_added(users, settings):
    settings.UNDO_SECONDS = 60
    case, item = case_with_match()
    bank = Bank.objects.create(name=LOCAL_BANK, kind=BankKind.LOCAL)
    earlier = BankHash.objects.create(bank=bank, hash_type="md5", value=item.md5, label="confirmed before")
    decision = decided(users["reviewer"], case)
    assert bank.hashes.count() == 3
    undo(users["reviewer"], decision.pk)
    assert list(bank.hashes.all()) == [earlier]
    assert AuditEvent.objects.get(action="case.undo").details["bank_entries_removed"] == 2
    undo(users["reviewer"], decision.pk)  # a second undo changes nothing
    assert list(bank.hashes.all()) == [earlier]


def test_a_dual_control_decision_banks_only_when_approved(users, settings):
    settings.DUAL_CONTROL_ACTIONS = ["report"]
    case, _ = case_with_match()
    decision = decided(users["reviewer"], case)
    assert not BankHash.objects.filter(bank__name=LOCAL_BANK).exists()
    second_review(users["senior"], decision.pk, approve=True)
    entries = BankHash.objects.filter(bank__name=LOCAL_BANK)
    assert entries.count() == 3 and {e.added_by for e in entries} == {users["reviewer"]}


def test_a_rejected_dual_control_decision_banks_nothing(users, settings):
    settings.DUAL_CONTROL_ACTIONS = ["report"]
    case, _ = case_with_match()
    decision = decided(users["reviewer"], case)
    second_review(users["senior"], decision.pk, approve=False)
    assert not BankHash.objects.filter(bank__name=LOCAL_BANK).exists()


def test_a_senior_dismissal_can_put_the_items_on_the_allow_list(client, users):
    case, item = case_with_match()
    case = claim_case(users["senior"], case.pk)
    page = signed_in(client, users).get(f"/cases/{case.pk}/").content.decode()
    assert 'name="allow_list"' in page
    client.post(f"/cases/{case.pk}/decide/", {"action": "dismiss", "reason": "false-positive",
                                              "version": case.version, "allow_list": "1"})
    allowed = bank_of(ALLOW_BANK)
    assert allowed.kind == BankKind.ALLOW and allowed.hashes.filter(value=item.md5).exists()
    assert bank_names(scanned_item(encoded(1, "watermarked"), account="other")) == set()
    assert AuditEvent.objects.filter(action="match.suppressed").exists()


def test_a_reviewer_cannot_allow_list_and_does_not_see_the_option(client, users):
    case, _ = case_with_match()
    case = claim_case(users["reviewer"], case.pk)
    assert 'name="allow_list"' not in signed_in(client, users, "reviewer").get(f"/cases/{case.pk}/").content.decode()
    with pytest.raises(ActionError):
        decide(users["reviewer"], case.pk, action="dismiss", reason_code="false-positive", version=case.version,
               allow_list=True)
    with pytest.raises(ActionError):
        decide(users["senior"], case.pk, action="ban", reason_code="csam-known", version=case.version,
               allow_list=True)
    assert not Bank.objects.filter(name=ALLOW_BANK).exists()


def test_a_plain_dismissal_adds_nothing_to_the_allow_list(users):
    case, _ = case_with_match()
    decided(users["senior"], case, action="dismiss", reason="false-positive")
    assert not BankHash.objects.filter(bank__name=ALLOW_BANK).exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_a_reupload_of_confirmed_material_from_another_account_matches_the_local_bank(api, users):
    from tests.conftest import drain
    case, item = case_with_match(seed=31)
    decided(users["reviewer"], case)
    Bank.objects.filter(name="known").update(enabled=False)  # only the local bank can match now
    data = encoded(31, "watermarked")
    assert hash_image(data).pdq == item.pdq
    response = api.post("/api/v1/items", {"account": "someone-else", "file": SimpleUploadedFile("a.jpg", data)})
    assert response.status_code == 202
    drain()
    body = api.get(f"/api/v1/items/{response.json()['id']}").json()
    assert body["status"] == "scanned" and body["case"] is not None
    assert {s["details"]["bank"] for s in body["signals"] if s["detector"] == "hash_match"} == {LOCAL_BANK}
    assert Case.objects.get(pk=body["case"]).account.external_id == "someone-else"


# NCMEC hash sharing -----------------------------------------------------------------------------

@pytest.fixture
def ncmec(settings):
    with FakeNCMECHashAPI() as fake:
        settings.NCMEC_HASH_API_URL = fake.url
        settings.NCMEC_HASH_API_USER, settings.NCMEC_HASH_API_PASSWORD = USER, PASSWORD
        settings.NCMEC_HASH_API_TIMEOUT = 5
        fake.base = int(time.time()) - 3 * 3600
        yield fake


def fetch(fake, **kwargs):
    kwargs.setdefault("since", fake.base - 60)
    return exchange.fetch(**kwargs)


def test_fetching_maps_fingerprints_into_a_known_bank(ncmec):
    values = hash_values(1)
    ncmec.add("img1", ncmec.base, md5=values["md5"], pdq=values["pdq"].upper(), sha1="ab" * 20, pdna="x" * 100)
    ncmec.add("img2", ncmec.base + 900, member=7, md5="0" * 31 + "1", pdq="not-a-pdq")
    ncmec.add("vid1", ncmec.base + 1800, kind="video", md5="f" * 32, tmk_pdqf="00ff", pdq="a" * 64)
    counts = fetch(ncmec)
    bank = bank_of("ncmec")
    assert bank.kind == BankKind.KNOWN and bank.source == "ncmec"
    stored = set(bank.hashes.values_list("hash_type", "value", "label"))
    assert stored == {("md5", values["md5"], "ncmec:42-img1"), ("pdq", values["pdq"], "ncmec:42-img1"),
                      ("md5", "0" * 31 + "1", "ncmec:7-img2"), ("md5", "f" * 32, "ncmec:42-vid1")}
    assert counts["entries"] == 3 and counts["added"] == 4 and counts["invalid"] == 1
    assert counts["skipped_image_sha1"] == 1 and counts["skipped_video_pdq"] == 1
    assert counts["skipped_video_tmk_pdqf"] == 1
    state = HashExchange.objects.get(bank=bank)
    assert state.fetched_at and not state.last_error and state.checkpoint["max_ts"] > ncmec.base
    assert bank_names(scanned_item(encoded(1), account="a1")) == {"ncmec"}


def test_pages_are_followed_through_next_links(ncmec):
    for i in range(8):
        ncmec.add(f"img{i}", ncmec.base, md5=f"{i:032x}")
    counts = fetch(ncmec)
    assert bank_of("ncmec").hashes.count() == 8 and counts["added"] == 8
    starts = {q.get("start") for q in ncmec.entry_calls() if q.get("start")}
    assert starts == {"4", "7"}


def test_deleted_and_changed_entries_upstream_are_applied_here(ncmec):
    ncmec.add("img1", ncmec.base, md5="1" * 32, pdq="a" * 64)
    ncmec.add("img2", ncmec.base, member=9, md5="1" * 32)  # the same file, shared by another member
    ncmec.add("img3", ncmec.base, md5="3" * 32)
    ncmec.add("img4", ncmec.base, md5="4" * 32)
    fetch(ncmec)
    # As if that run had ended at base + 300: what changed upstream since then comes next.
    HashExchange.objects.update(checkpoint={"max_ts": ncmec.base + 300})
    ncmec.entries = [
        {**ncmec.entries[0], "deleted": True, "ts": ncmec.base + 600},
        {**ncmec.entries[2], "deleted": True, "ts": ncmec.base + 600},
        {**ncmec.entries[3], "fingerprints": {"md5": "5" * 32}, "ts": ncmec.base + 600},
    ]
    counts = exchange.fetch()  # from the stored checkpoint
    values = dict(bank_of("ncmec").hashes.values_list("value", "label"))
    assert values == {"1" * 32: "ncmec:9-img2", "5" * 32: "ncmec:42-img4"}
    assert counts["deleted_entries"] == 2 and counts["removed"] == 3 and counts["added"] == 1


def test_an_interrupted_fetch_keeps_whole_pages_and_resumes_from_its_checkpoint(ncmec):
    for i in range(8):
        ncmec.add(f"img{i}", ncmec.base, md5=f"{i:032x}")
    ncmec.fail_next(500, times=3, page=4)
    with pytest.raises(exchange.ExchangeError, match="server error"):
        fetch(ncmec)
    assert bank_of("ncmec").hashes.count() == 3
    state = HashExchange.objects.get()
    assert "start=4" in state.checkpoint["paging_url"] and "server error" in state.last_error
    assert state.fetched_at is None
    calls_before = len(ncmec.entry_calls())
    counts = exchange.fetch()
    assert ncmec.entry_calls()[calls_before].get("start") == "4"  # straight back to the failed page
    assert bank_of("ncmec").hashes.count() == 8 and counts["added"] == 5
    assert HashExchange.objects.get().last_error == ""


def test_a_passing_server_error_is_retried(ncmec):
    ncmec.add("img1", ncmec.base, md5="1" * 32)
    ncmec.fail_next(500)
    assert fetch(ncmec)["added"] == 1


def assert_failed_cleanly(fake, match, **kwargs):
    fake.add("img1", fake.base, md5="1" * 32)
    HashExchange.objects.create(bank=exchange.ncmec_bank("ncmec"), checkpoint={"max_ts": fake.base - 60})
    with pytest.raises(exchange.ExchangeError, match=match):
        exchange.fetch(**kwargs)
    state = HashExchange.objects.get()
    assert state.checkpoint == {"max_ts": fake.base - 60} and match.split()[0] in state.last_error
    assert not BankHash.objects.exists()


def test_wrong_credentials_fail_clearly(ncmec, settings):
    settings.NCMEC_HASH_API_PASSWORD = "wrong"
    assert_failed_cleanly(ncmec, "refused the credentials")


@pytest.mark.parametrize("fault, match", [
    ("malformed", "malformed XML"), ("unreadable", "could not be read"), (500, "server error")])
def test_bad_answers_fail_clearly_and_store_nothing(ncmec, fault, match):
    ncmec.fail_next(fault, times=5)
    assert_failed_cleanly(ncmec, match)


def test_a_server_that_hangs_fails_clearly(ncmec):
    ncmec.fail_next("timeout", times=2)
    client = exchange.NCMECClient(USER, PASSWORD, ncmec.url, timeout=0.5, retries=0)
    assert_failed_cleanly(ncmec, "did not answer in time", client=client)


def test_a_server_that_drops_the_connection_fails_clearly(ncmec):
    ncmec.fail_next("drop", times=5)
    assert_failed_cleanly(ncmec, "could not reach")


def test_the_command_fetches_with_a_summary_and_fails_with_a_clear_error(ncmec, settings):
    ncmec.add("img1", ncmec.base, md5="1" * 32, sha1="ab" * 20)
    out = io.StringIO()
    call_command("fetch_ncmec_hashes", "--bank", "ncmec-industry", "--since", str(ncmec.base - 60), stdout=out,
                 verbosity=0)
    assert "bank ncmec-industry: 1 entries, 1 hashes added" in out.getvalue() and "skipped: image_sha1 1" in \
        out.getvalue()
    with pytest.raises(CommandError, match="not a date"):
        call_command("fetch_ncmec_hashes", "--since", "yesterday-ish", verbosity=0)
    settings.NCMEC_HASH_API_PASSWORD = "wrong"
    with pytest.raises(CommandError, match="refused the credentials"):
        call_command("fetch_ncmec_hashes", verbosity=0)
    settings.NCMEC_HASH_API_USER = ""
    with pytest.raises(CommandError, match="not set"):
        call_command("fetch_ncmec_hashes", verbosity=0)


def test_since_accepts_dates_and_timestamps():
    assert exchange.parse_since("1700000000") == 1700000000
    assert exchange.parse_since("2024-01-02") == 1704153600
    assert exchange.parse_since("2024-01-02T01:00:00Z") == 1704157200


def test_the_bank_page_shows_the_exchange_state(client, users, ncmec):
    ncmec.add("img1", ncmec.base, md5="1" * 32)
    fetch(ncmec)
    page = signed_in(client, users).get(f"/banks/{bank_of('ncmec').pk}/").content.decode()
    assert "NCMEC hash sharing: last fetched" in page


def test_the_periodic_fetch_runs_one_at_a_time_and_records_failures(ncmec, settings, redis_conn):
    ncmec.add("img1", ncmec.base, md5="1" * 32)
    HashExchange.objects.create(bank=exchange.ncmec_bank("ncmec"), checkpoint={"max_ts": ncmec.base - 60})
    lock = redis_conn.lock("detection:ncmec-fetch", timeout=60)
    assert lock.acquire(blocking=False)
    assert exchange.fetch_job() == {"skipped": "a fetch is already running"}
    lock.release()
    assert exchange.fetch_job()["added"] == 1
    settings.NCMEC_HASH_API_PASSWORD = "wrong"
    HashExchange.objects.update(checkpoint={"max_ts": ncmec.base - 60})
    assert "refused the credentials" in exchange.fetch_job()["error"]
    assert "refused the credentials" in HashExchange.objects.get().last_error
