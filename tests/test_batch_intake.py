"""Batch hash-only intake: up to 1000 hash-only items in one request, each checked as the single endpoint
checks it, refused at its own position when bad, idempotent per account and external_id, written in
bulk with one audit row, and matched in the request by the code the scan runs (or, where that cannot be,
left queued for the scan)."""

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from cases.jobs import triage_pending
from cases.models import Case
from detection import intake, matching
from detection.detectors.hashing import DIHEDRAL, unpack_orientations
from detection.jobs.scan import scan_item
from detection.models import Account, Group, Item, ItemKind, ItemStatus, Membership, Signal
from reviewconsole.audit.models import AuditEvent
from tests.conftest import drain
from tests.factories import hash_values, known_bank
from tests.test_hash_only_intake import flipped, random_pdq

pytestmark = pytest.mark.django_db

URL = "/api/v1/items/batch"
MD5 = "0123456789abcdef0123456789abcdef"
SHA256 = "ab" * 32


def post(api, body, **extra):
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return api.post(URL, raw, content_type=extra.pop("content_type", "application/json"), **extra)


def batch(api, items):
    response = post(api, {"items": items})
    assert response.status_code == 202, response.content
    return response.json()


def md5_of(n):
    return f"{n:032x}"


def item(n, **fields):
    return {"account": f"acct-{n % 7}", "external_id": f"m-{n}", "kind": "image",
            "hashes": {"md5": md5_of(n), "pdq": random_pdq(n), "pdq_quality": 90}, **fields}


def nothing_stored():
    return not (Item.objects.exists() or Account.objects.exists() or AuditEvent.objects.exists())


# A good batch ----------------------------------------------------------------------------------

def test_a_good_batch_is_stored_in_order_as_hash_only_items_matched_at_once(api):
    frames = [{"t": float(t), "pdq": random_pdq(100 + t), "quality": 95} for t in range(3)]
    orientations = [random_pdq(200 + n) for n in range(len(DIHEDRAL))]
    body = batch(api, [
        item(1, group="grp-1", ip="203.0.113.9", uploaded_at="2026-11-01T10:00:00Z"),
        {"account": "acct-v", "kind": "video", "external_id": "v-1", "hashes": {"frames": frames}},
        {"account": "acct-o", "hashes": {"pdq": orientations[0].upper(), "pdq_quality": 70,
                                         "pdq_orientations": orientations, "sha256": SHA256.upper()}},
    ])
    assert (body["accepted"], body["duplicates"], body["refused"]) == (3, 0, 0)
    ids = [row["id"] for row in body["items"]]
    assert all(row["status"] == "scanned" and "duplicate" not in row for row in body["items"])
    first, video, oriented = (Item.objects.get(pk=pk) for pk in ids)
    assert first.hash_only and first.status == ItemStatus.SCANNED and first.storage_path == "" and first.size == 0
    assert first.scanned_at is not None and first.scan_attempts == 0
    assert first.md5 == md5_of(1) and first.pdq == random_pdq(1) and first.pdq_quality == 90
    assert first.account.external_id == "acct-1" and first.group.external_id == "grp-1"
    assert first.ip == "203.0.113.9" and first.uploaded_at.isoformat().startswith("2026-11-01T10:00")
    assert Membership.objects.filter(account=first.account, group=first.group).exists()
    assert video.kind == ItemKind.VIDEO and [f["pdq"] for f in video.frame_hashes] == [f["pdq"] for f in frames]
    assert oriented.sha256 == SHA256 and oriented.external_id == ""
    assert unpack_orientations(oriented.pdq_orientations) == tuple(zip(DIHEDRAL, orientations, strict=True))


def test_a_batch_is_one_audit_row_naming_its_items(api):
    body = batch(api, [item(n) for n in range(5)])
    (row,) = AuditEvent.objects.all()
    assert row.action == "item.received" and row.actor_label == "api:platform"
    assert row.details["items"] == [r["id"] for r in body["items"]] and row.details["hash_only"] is True
    assert row.details["count"] == 5


def test_accounts_and_groups_are_created_once_and_existing_ones_reused(api):
    Account.objects.create(external_id="acct-1", screen_name="kept")
    batch(api, [item(n, group=f"grp-{n % 2}") for n in range(14)])
    assert Account.objects.count() == 7 and Group.objects.count() == 2
    assert Account.objects.get(external_id="acct-1").screen_name == "kept"
    assert Membership.objects.count() == 14  # every account posted to both groups


def test_the_database_work_does_not_grow_with_the_batch(api):
    batch(api, [item(0)])  # the token and the first account exist now
    with CaptureQueriesContext(connection) as queries:
        batch(api, [item(n, group=f"grp-{n % 50}") for n in range(1, 1001)])
    # SQLite takes a bulk insert in slices (a bound on parameters a statement); PostgreSQL in one.
    others = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith('INSERT INTO "cases_item"')]
    assert len(others) <= 18, "\n".join(others)
    assert Item.objects.count() == 1001


def test_items_left_to_the_scan_kick_it_once_per_slot_not_once_per_item(
        api, settings, django_capture_on_commit_callbacks, monkeypatch):
    settings.INTAKE_MATCH = False
    kicks = []
    monkeypatch.setattr("reviewconsole.queueing.kick", lambda key, *args, **kwargs: kicks.append(key))
    with django_capture_on_commit_callbacks(execute=True):
        batch(api, [item(n) for n in range(200)])
    assert sorted(kicks) == [f"scan:{slot}" for slot in range(settings.SCAN_SLOTS)]


# Matched in the request ------------------------------------------------------------------------

def ring_items(prefix):
    """A near PDQ copy, an exact MD5, a copy whose mirrored orientation is the known one, and a benign item."""
    known = hash_values(41)["pdq"]
    turned = [random_pdq(7), flipped(known, 3), *(random_pdq(8 + n) for n in range(6))]
    return [
        {"account": f"{prefix}near", "group": f"{prefix}grp", "external_id": "r-1",
         "hashes": {"pdq": flipped(known, 10), "pdq_quality": 90}},
        {"account": f"{prefix}md5", "external_id": "r-2", "hashes": {"md5": hash_values(42)["md5"]}},
        {"account": f"{prefix}turned", "external_id": "r-3",
         "hashes": {"pdq": turned[0], "pdq_quality": 90, "pdq_orientations": turned}},
        {"account": f"{prefix}benign", "external_id": "b-1", "hashes": {"pdq": flipped(known, 80), "pdq_quality": 90}},
    ]


def findings(prefix):
    """What the signals on a prefix's accounts say, without the ids of their rows."""
    signals = Signal.objects.filter(account__external_id__startswith=prefix).select_related("item", "account")
    return sorted((s.item.external_id, s.account.external_id.removeprefix(prefix), s.kind, s.label, s.score,
                   s.severity, s.explanation, s.details) for s in signals)


def test_items_matched_in_the_request_get_the_signals_the_scan_gives(api, settings):
    known_bank([41, 42], types=("pdq", "md5"))
    now = batch(api, ring_items("now-"))
    settings.INTAKE_MATCH = False
    later = batch(api, ring_items("later-"))
    assert {r["status"] for r in now["items"]} == {"scanned"} and {r["status"] for r in later["items"]} == {"queued"}
    for row in later["items"]:
        assert scan_item(row["id"]) == "scanned"
    assert findings("now-") == findings("later-")
    assert [(f[0], f[1], f[7]["basis"], [h.get("distance") for h in f[7]["hashes"]]) for f in findings("now-")] == [
        ("r-1", "near", "pdq", [10]), ("r-2", "md5", "exact", [0]), ("r-3", "turned", "pdq", [3])]
    assert Signal.objects.filter(triaged_at__isnull=True).count() == 6  # left for triage, as a scan leaves them
    received = AuditEvent.objects.filter(action="item.received").order_by("pk")
    assert [row.details["matched_at_intake"] for row in received] == [True, False]


def test_matched_items_are_left_to_one_triage_run_and_the_scan_is_not_kicked(api, monkeypatch, settings,
                                                                              django_capture_on_commit_callbacks):
    known_bank([41, 42], types=("pdq", "md5"))
    settings.TRIAGE_GATHER_SECONDS = 2
    jobs, kicks = [], []
    monkeypatch.setattr("reviewconsole.queueing.enqueue_now", lambda path, *args, **kw: jobs.append(path))
    monkeypatch.setattr("reviewconsole.queueing.kick",
                        lambda key, path, *args, **kwargs: kicks.append((key, path, kwargs.get("delay"))))
    with django_capture_on_commit_callbacks(execute=True):
        batch(api, ring_items("r-") + [item(n) for n in range(50)])
        batch(api, ring_items("s-"))
    # The first kick waits 2 s for more; a kick while one waits enqueues nothing (reviewconsole.queueing.kick).
    assert kicks == [("triage-pending", "cases.jobs.triage_pending", 2)] * 2 and jobs == []
    assert Signal.objects.filter(triaged_at__isnull=True).count() == 6
    cases = triage_pending()  # one run takes both requests' signals
    assert sorted(Case.objects.filter(pk__in=cases).values_list("account__external_id", flat=True)) == [
        "r-md5", "r-near", "r-turned", "s-md5", "s-near", "s-turned"]
    assert not Signal.objects.filter(triaged_at__isnull=True).exists()


def test_a_triage_run_that_fails_hands_its_signals_on_in_smaller_jobs(api, monkeypatch):
    known_bank([41, 42], types=("pdq", "md5"))
    batch(api, ring_items("r-"))
    jobs = []
    monkeypatch.setattr("cases.jobs.enqueue_now", lambda path, ids, **kw: jobs.append((path, ids)))

    def broken(ids):
        raise RuntimeError("a signal that cannot be triaged")

    monkeypatch.setattr("cases.jobs.triage_signals", broken)
    assert triage_pending() == []
    assert jobs == [("cases.jobs.triage_signals", sorted(Signal.objects.values_list("pk", flat=True)))]


def test_a_triage_run_takes_at_most_its_limit_and_kicks_the_next(api, monkeypatch):
    known_bank([41, 42], types=("pdq", "md5"))
    batch(api, ring_items("r-"))
    kicks = []
    monkeypatch.setattr("cases.jobs.kick", lambda key, path, **kw: kicks.append(path))
    assert len(triage_pending(limit=2)) == 2 and kicks == ["cases.jobs.triage_pending"]
    assert len(triage_pending(limit=2)) == 1 and kicks == ["cases.jobs.triage_pending"]
    assert triage_pending(limit=2) == []


def _no_such_table(hashed, **options):
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")


def _unreadable(hashed, **options):
    raise ValueError("a bank row that does not parse")


@pytest.mark.parametrize("failure", [_no_such_table, _unreadable])
def test_when_matching_fails_in_the_request_the_items_wait_for_the_scan(api, monkeypatch, failure):
    known_bank([41, 42], types=("pdq", "md5"))
    monkeypatch.setattr("detection.intake.match_hashed", failure)
    body = batch(api, ring_items("x-"))
    single = api.post("/api/v1/items", json.dumps(ring_items("y-")[1]), content_type="application/json")
    assert {r["status"] for r in body["items"]} == {"queued"} and single.json()["status"] == "queued"
    assert Item.objects.filter(status=ItemStatus.QUEUED).count() == 5 and not Signal.objects.exists()
    monkeypatch.undo()
    for pk in [r["id"] for r in body["items"]] + [single.json()["id"]]:
        assert scan_item(pk) == "scanned"
    assert len(findings("x-")) == 3 and len(findings("y-")) == 1


def test_a_cold_process_does_not_read_a_large_bank_in_a_request(api, monkeypatch):
    known_bank([41, 42], types=("pdq", "md5"))
    monkeypatch.setattr(matching, "_index", matching.BankIndex())  # a web process that has matched nothing yet
    monkeypatch.setattr(matching, "COLD_LOAD_ROWS", 1)  # and banks past what it may read in a request
    assert {r["status"] for r in batch(api, ring_items("cold-"))["items"]} == {"queued"}
    matching.find_matches_many([])  # loaded once (a worker's snapshot, where there is one, is mapped instead)
    assert {r["status"] for r in batch(api, ring_items("warm-"))["items"]} == {"scanned"}
    assert len(findings("warm-")) == 3 and not findings("cold-")


def test_a_process_far_behind_a_large_import_leaves_items_to_the_scan(api, monkeypatch):
    known_bank([41, 42], types=("pdq", "md5"))
    monkeypatch.setattr(matching, "_index", matching.BankIndex())
    matching.find_matches_many([])  # warm
    monkeypatch.setattr(matching, "COLD_LOAD_ROWS", 3)
    assert {r["status"] for r in batch(api, ring_items("before-"))["items"]} == {"scanned"}
    known_bank([43, 44], name="imported", types=("pdq", "md5"))  # four rows this process has not read
    assert {r["status"] for r in batch(api, ring_items("behind-"))["items"]} == {"queued"}
    matching.find_matches_many([])  # a worker's look (or this process's, once it is small again)
    assert {r["status"] for r in batch(api, ring_items("caught-up-"))["items"]} == {"scanned"}


def test_a_web_request_never_writes_a_snapshot_of_the_bank_index(api, monkeypatch):
    known_bank([41, 42], types=("pdq", "md5"))
    monkeypatch.setattr(matching, "_index", matching.BankIndex())
    monkeypatch.setattr(matching, "CACHE_MIN_ROWS", 1)  # a snapshot would be due at once
    saved = []
    monkeypatch.setattr(matching.BankIndex, "_save_cache", lambda self: saved.append(1))
    assert {r["status"] for r in batch(api, ring_items("web-"))["items"]} == {"scanned"}
    assert saved == []
    matching._index.checked_at = float("-inf")  # its next look, as a worker's match would make it
    matching.find_matches_many([])
    assert saved == [1]


# Bad items, each refused at its own position -------------------------------------------------------

def test_bad_items_are_refused_at_their_position_with_their_reasons_and_the_rest_go_on(api):
    body = batch(api, [
        item(1),
        {"account": "acct-x", "hashes": {"pdq": "zz", "pdq_quality": 101}},
        {"account": "", "kind": "text", "hashes": {"md5": MD5}},
        {"account": "acct-x", "hashes": {}},
        {"account": "acct-x", "external_id": "no-hashes"},
        "not an object",
        {"account": "acct-x", "text": "hello", "hashes": {"md5": MD5}},
        {"account": "acct-x", "hashes": {"frames": [{"t": 0, "pdq": random_pdq(1), "quality": 90}]}},
        {"account": 5, "group": ["g"], "uploaded_at": 7, "ip": "not an ip", "hashes": {"md5": MD5}},
        {"account": "acct-\x00", "hashes": {"md5": MD5}},
        item(2),
    ])
    rows = body["items"]
    assert (body["accepted"], body["refused"]) == (2, 9)
    assert rows[0]["status"] == rows[10]["status"] == "scanned"
    fields = [row.get("fields", {}) for row in rows]
    assert set(fields[1]) == {"hashes.pdq", "hashes.pdq_quality"} and "64 hex digits" in fields[1]["hashes.pdq"][0]
    assert set(fields[2]) == {"account", "kind"}
    assert "at least one hash" in fields[3]["hashes"][0]
    assert "required" in fields[4]["hashes"][0]
    assert "must be an object" in fields[5]["item"][0]
    assert "not both" in fields[6]["text"][0]
    assert "only for videos" in fields[7]["hashes.frames"][0]
    assert set(fields[8]) == {"account", "group", "uploaded_at"}
    assert "account" in fields[9]
    assert all(row["error"] == "invalid item" for n, row in enumerate(rows) if n not in (0, 10))
    assert sorted(Item.objects.values_list("external_id", flat=True)) == ["m-1", "m-2"]
    assert not Account.objects.filter(external_id="acct-x").exists()


def test_a_batch_of_only_bad_items_stores_nothing(api):
    body = batch(api, [{"account": "a", "hashes": {"md5": "x"}}, {"account": "b", "hashes": {"sha256": 1}}])
    assert body["refused"] == 2 and body["accepted"] == 0
    assert nothing_stored()


def test_an_item_is_checked_exactly_as_the_single_endpoint_checks_it(api):
    bad = {"account": "acct-1", "kind": "video", "hashes": {
        "pdq": random_pdq(1), "pdq_quality": 50, "pdq_orientations": [random_pdq(2)] * 8,
        "frames": [{"t": 1, "pdq": random_pdq(3), "quality": 9}, {"t": 0.5, "pdq": random_pdq(4), "quality": 9}]}}
    single = api.post("/api/v1/items", json.dumps(bad), content_type="application/json")
    assert single.status_code == 400
    (row,) = batch(api, [bad])["items"]
    assert row["fields"] == single.json()["fields"]


# The batch as a whole --------------------------------------------------------------------------

def test_more_than_a_thousand_items_is_refused_whole(api):
    response = post(api, {"items": [item(n) for n in range(1001)]})
    assert response.status_code == 413 and "at most 1000 items" in response.json()["error"]
    assert nothing_stored()


def test_a_body_over_the_byte_limit_is_refused_before_it_is_read(api, monkeypatch):
    monkeypatch.setattr("cases.web.api.MAX_BATCH_BYTES", 4096)
    response = post(api, {"items": [item(n) for n in range(40)]})
    assert response.status_code == 413 and "limit 4096" in response.json()["error"]
    assert nothing_stored()


def test_a_batch_larger_than_one_item_bodys_limit_is_taken(api, settings):
    frames = [{"t": float(t), "pdq": random_pdq(t), "quality": 90} for t in range(600)]
    items = [{"account": f"acct-{n}", "kind": "video", "hashes": {"frames": frames}} for n in range(30)]
    assert len(json.dumps({"items": items})) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert batch(api, items)["accepted"] == 30


@pytest.mark.parametrize("body, field", [
    ({"items": []}, "items"),
    ({}, "items"),
    ("", "items"),
    ({"items": {"account": "a"}}, "items"),
    ({"items": "x"}, "items"),
    ({"items": None}, "items"),
    ({"items": [item(1)], "extra": 1}, "extra"),
])
def test_an_empty_or_misshapen_batch_is_a_400_naming_the_field(api, body, field):
    response = post(api, body)
    assert response.status_code == 400 and field in response.json()["fields"], response.content
    assert nothing_stored()


@pytest.mark.parametrize("raw", ["[1, 2]", "{\"items\": [", "{\"items\": [NaN]}", "7"])
def test_a_body_that_is_not_a_json_object_is_a_400(api, raw):
    response = post(api, raw)
    assert response.status_code == 400 and response.json()["error"]
    assert nothing_stored()


def test_a_form_upload_is_a_415(api):
    response = api.post(URL, {"items": "x"})
    assert response.status_code == 415


def test_only_post_and_only_with_a_token(api):
    assert api.get(URL).status_code == 405
    assert Client().post(URL, json.dumps({"items": [item(1)]}), content_type="application/json").status_code == 401
    assert nothing_stored()


# Retries ---------------------------------------------------------------------------------------

def test_a_retried_batch_gives_the_same_items_and_stores_nothing_new(api):
    items = [item(n) for n in range(20)]
    first = batch(api, items)
    again = batch(api, items)
    assert [r["id"] for r in again["items"]] == [r["id"] for r in first["items"]]
    assert all(r["duplicate"] for r in again["items"]) and (again["accepted"], again["duplicates"]) == (0, 20)
    assert Item.objects.count() == 20 and AuditEvent.objects.count() == 1


def test_a_repeat_inside_one_batch_is_answered_with_the_first(api):
    body = batch(api, [item(1), item(2), item(1, hashes={"md5": MD5})])
    assert body["items"][2] == {"id": body["items"][0]["id"], "status": "scanned", "duplicate": True}
    assert Item.objects.count() == 2 and Item.objects.get(external_id="m-1").md5 == md5_of(1)


def test_a_batch_retrying_a_single_upload_gets_that_item(api):
    single = api.post("/api/v1/items", json.dumps(item(3)), content_type="application/json").json()
    (row,) = batch(api, [item(3)])["items"]
    assert row == {"id": single["id"], "status": "scanned", "duplicate": True}


def test_the_same_external_id_from_another_account_or_without_one_is_a_new_item(api):
    body = batch(api, [item(1), item(1, account="acct-other"), {"account": "acct-1", "hashes": {"md5": MD5}},
                       {"account": "acct-1", "hashes": {"md5": MD5}}])
    assert body["accepted"] == 4 and len({r["id"] for r in body["items"]}) == 4


def test_a_batch_over_the_item_limit_is_refused_by_the_action_too():
    with pytest.raises(intake.Rejection):
        intake.submit_hash_batch([intake.HashItem("a", {"md5": MD5})] * (intake.MAX_BATCH_ITEMS + 1))


# The document ----------------------------------------------------------------------------------

def test_the_openapi_document_describes_the_batch(client):
    doc = client.get("/api/v1/openapi.json").json()
    post_op = doc["paths"]["/items/batch"]["post"]
    schema = post_op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["items"]["maxItems"] == intake.MAX_BATCH_ITEMS
    assert "hashes" in schema["properties"]["items"]["items"]["required"]
    assert {"202", "400", "401", "413", "415"} <= set(post_op["responses"])


# Through the real pipeline ---------------------------------------------------------------------

@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_a_batch_item_matching_a_bank_opens_a_case_through_real_workers(api):
    known_bank([41, 42], types=("pdq", "md5"))
    body = batch(api, [
        {"account": "acct-ring", "group": "grp-ring", "external_id": "r-1",
         "hashes": {"pdq": flipped(hash_values(41)["pdq"], 10), "pdq_quality": 90}},
        {"account": "acct-ring-2", "external_id": "r-2", "hashes": {"md5": hash_values(42)["md5"]}},
        {"account": "acct-benign", "external_id": "b-1",
         "hashes": {"pdq": flipped(hash_values(41)["pdq"], 80), "pdq_quality": 90}},
        {"account": "acct-benign", "external_id": "b-2", "hashes": {"md5": MD5}},
    ])
    drain()
    ids = [r["id"] for r in body["items"]]
    assert set(Item.objects.filter(pk__in=ids).values_list("status", flat=True)) == {ItemStatus.SCANNED}
    near, exact = (api.get(f"/api/v1/items/{pk}").json() for pk in ids[:2])
    assert near["signals"][0]["details"]["basis"] == "pdq" and near["signals"][0]["details"]["hashes"][0][
        "distance"] == 10
    assert exact["signals"][0]["details"]["basis"] == "exact"
    cases = {case.account.external_id: case for case in Case.objects.select_related("account", "queue")}
    assert set(cases) == {"acct-ring", "acct-ring-2"}
    assert cases["acct-ring"].pk == near["case"] and cases["acct-ring"].queue.slug == "known-material"
    assert not Signal.objects.filter(account__external_id="acct-benign").exists()
