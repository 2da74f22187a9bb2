"""The platform API: authentication, every endpoint, and bad input on every field."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from cases.models import ApiToken
from detection.models import Account, Group, Item, ItemStatus, Signal, UserReport
from reviewconsole.audit.models import AuditEvent
from tests.factories import case_with_match

pytestmark = pytest.mark.django_db


def upload(api, data, **fields):
    payload = {"account": "acct-1", **fields}
    if data is not None:
        payload["file"] = SimpleUploadedFile("photo.jpg", data, content_type="image/jpeg")
    return api.post("/api/v1/items", payload)


def put_json(api, url, body):
    return api.put(url, json.dumps(body), content_type="application/json")


def post_json(api, url, body):
    return api.post(url, json.dumps(body), content_type="application/json")


class TestAuth:
    @pytest.mark.parametrize("header", [None, "Token abc", "Bearer ", "Bearer wrong"])
    def test_it_refuses_missing_or_bad_tokens(self, client, header):
        if header is not None:
            client.defaults["HTTP_AUTHORIZATION"] = header
        response = client.get("/api/v1/cases")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_it_refuses_a_revoked_token(self, api):
        ApiToken.objects.update(revoked_at=timezone.now())
        assert api.get("/api/v1/cases").status_code == 401

    def test_it_records_token_use(self, api):
        api.get("/api/v1/cases")
        assert ApiToken.objects.get().last_used_at is not None

    def test_it_refuses_wrong_methods(self, api):
        response = api.delete("/api/v1/items")
        assert response.status_code == 405 and response["Allow"] == "POST"

    def test_session_users_get_no_api_access(self, client, users):
        client.force_login(users["admin"])
        assert client.get("/api/v1/cases").status_code == 401


class TestItems:
    def test_it_accepts_an_image_and_stores_it_privately(self, api, image_bytes, settings):
        data = image_bytes(1)
        response = upload(api, data, group="grp-1", external_id="m-1", ip="203.0.113.9",
                          uploaded_at="2026-11-01T10:00:00Z")
        assert response.status_code == 202
        item = Item.objects.get(pk=response.json()["id"])
        assert response.json()["status"] == "queued"
        assert item.group.external_id == "grp-1" and str(item.ip) == "203.0.113.9"
        assert item.size == len(data) and len(item.sha256) == 64
        stored = settings.EVIDENCE_ROOT / item.storage_path
        assert stored.read_bytes() == data
        assert AuditEvent.objects.filter(action="item.received", item=item).exists()

    def test_a_retried_submission_gives_the_same_item(self, api, image_bytes):
        first = upload(api, image_bytes(1), external_id="m-1")
        second = upload(api, image_bytes(1), external_id="m-1")
        assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
        assert Item.objects.count() == 1

    def test_it_accepts_a_text_item_as_json(self, api):
        response = post_json(api, "/api/v1/items", {"account": "acct-1", "text": "hello there"})
        assert response.status_code == 202
        assert Item.objects.get().kind == "text"

    @pytest.mark.parametrize("fields, field", [
        ({}, "file"),
        ({"account": ""}, "account"),
        ({"kind": "hologram"}, "kind"),
        ({"ip": "999.1.1.1"}, "ip"),
        ({"uploaded_at": "yesterday"}, "uploaded_at"),
        ({"account": "x" * 300}, "account"),
    ])
    def test_it_names_the_bad_field(self, api, image_bytes, fields, field):
        data = None if field == "file" else image_bytes(1)
        response = upload(api, data, **fields)
        assert response.status_code == 400
        assert field in response.json()["fields"]
        assert Item.objects.count() == 0

    def test_it_refuses_an_empty_file(self, api):
        response = upload(api, b"")
        assert response.status_code == 400 and Item.objects.count() == 0

    def test_it_refuses_an_oversized_file(self, api, image_bytes, settings):
        settings.MAX_UPLOAD_BYTES = 1000
        response = upload(api, image_bytes(1))
        assert response.status_code == 413
        assert Item.objects.count() == 0

    def test_it_refuses_oversized_text(self, api, settings):
        settings.MAX_TEXT_CHARS = 10
        response = post_json(api, "/api/v1/items", {"account": "a", "text": "x" * 11})
        assert response.status_code == 400 and "text" in response.json()["fields"]

    @pytest.mark.parametrize("body, content_type", [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ("account=a", "text/plain"),
    ])
    def test_it_refuses_malformed_bodies(self, api, body, content_type):
        response = api.post("/api/v1/items", body, content_type=content_type)
        assert response.status_code in (400, 415)
        assert "error" in response.json()

    def test_a_corrupt_file_is_accepted_then_rejected_by_the_scan(self, api):
        response = upload(api, b"\xff\xd8\xff\xe0 definitely not a jpeg")
        assert response.status_code == 202  # nothing lost: the item exists, the scan says why

    def test_it_shows_an_item_with_hashes_signals_and_case(self, api):
        case, item = case_with_match()
        body = api.get(f"/api/v1/items/{item.pk}").json()
        assert body["status"] == "scanned" and body["case"] == case.pk
        assert body["hashes"]["pdq"] == item.pdq
        (signal,) = body["signals"]
        assert signal["kind"] == "hash_match" and signal["details"]["bank"] == "known"
        assert "PDQ distance" in signal["explanation"]

    def test_it_shows_a_rejected_item_with_its_reason(self, api):
        from tests.factories import scanned_item
        item = scanned_item(b"GIF89a<script>x</script>")
        body = api.get(f"/api/v1/items/{item.pk}").json()
        assert body["status"] == ItemStatus.REJECTED and "polyglot" in body["reject_reason"]

    def test_an_unknown_item_is_404(self, api):
        assert api.get("/api/v1/items/999999").status_code == 404


class TestSubjects:
    def test_it_creates_then_updates_an_account(self, api):
        body = {"screen_name": "kit", "bio": "hi", "age_band": "13-15", "facts": {"contacts_started_7d": 3}}
        assert put_json(api, "/api/v1/accounts/a-1", body).status_code == 201
        assert put_json(api, "/api/v1/accounts/a-1", {"bio": "changed"}).status_code == 200
        account = Account.objects.get(external_id="a-1")
        assert account.bio == "changed" and account.screen_name == "kit" and account.facts["contacts_started_7d"] == 3

    def test_it_upserts_a_group_with_members(self, api):
        response = put_json(api, "/api/v1/groups/g-1", {"name": "G", "member_count": 40, "members": ["a-1", "a-2"]})
        assert response.status_code == 201
        assert set(Group.objects.get().members.values_list("external_id", flat=True)) == {"a-1", "a-2"}

    @pytest.mark.parametrize("url, body, field", [
        ("/api/v1/accounts/a-1", {"facts": [1, 2]}, "facts"),
        ("/api/v1/accounts/a-1", {"facts": {"k": "v" * 20000}}, "facts"),
        ("/api/v1/accounts/a-1", {"registered_at": "soon"}, "registered_at"),
        ("/api/v1/accounts/a-1", {"bio": "b" * 6000}, "bio"),
        ("/api/v1/groups/g-1", {"member_count": -1}, "member_count"),
        ("/api/v1/groups/g-1", {"members": "a-1"}, "members"),
        ("/api/v1/groups/g-1", {"members": [1, 2]}, "members"),
    ])
    def test_it_names_the_bad_field(self, api, url, body, field):
        response = put_json(api, url, body)
        assert response.status_code == 400 and field in response.json()["fields"]
        assert not Account.objects.exists() and not Group.objects.exists()

    def test_it_refuses_an_overlong_id(self, api):
        assert put_json(api, "/api/v1/accounts/" + "x" * 300, {}).status_code == 400


class TestReports:
    def test_it_records_a_report_and_its_signal(self, api):
        response = post_json(api, "/api/v1/reports", {"reporter": "u-9", "account": "a-1", "reason": "grooming",
                                                      "comment": "asks for photos"})
        assert response.status_code == 202
        report = UserReport.objects.get()
        signal = Signal.objects.get(kind="user_report")
        assert signal.account == report.account and "asks for photos" in signal.explanation

    def test_it_accepts_a_report_on_an_item(self, api):
        case, item = case_with_match()
        response = post_json(api, "/api/v1/reports", {"reporter": "u-9", "item": item.pk, "reason": "csam"})
        assert response.status_code == 202
        assert UserReport.objects.get().item == item

    @pytest.mark.parametrize("body, field", [
        ({"account": "a-1", "reason": "grooming"}, "reporter"),
        ({"reporter": "u", "account": "a-1", "reason": "bored"}, "reason"),
        ({"reporter": "u", "reason": "csam"}, "__all__"),
        ({"reporter": "u", "account": "a", "group": "g", "reason": "csam"}, "__all__"),
        ({"reporter": "u", "item": 424242, "reason": "csam"}, "item"),
        ({"reporter": "u", "item": "x", "reason": "csam"}, "item"),
    ])
    def test_it_refuses_bad_reports(self, api, body, field):
        response = post_json(api, "/api/v1/reports", body)
        assert response.status_code == 400 and field in response.json()["fields"]
        assert not UserReport.objects.exists()


class TestCases:
    def test_it_lists_open_cases_with_signal_summary(self, api):
        case, _ = case_with_match()
        body = api.get("/api/v1/cases?status=open").json()
        assert body["count"] == 1
        (row,) = body["results"]
        assert row["id"] == case.pk and row["queue"] == "known-material"
        assert row["subject"] == {"type": "account", "external_id": "acct-1"}
        assert row["signals"] == {"hash_match": 1}

    @pytest.mark.parametrize("query", ["status=maybe", "limit=x", "offset=-"])
    def test_it_refuses_bad_queries(self, api, query):
        assert api.get(f"/api/v1/cases?{query}").status_code == 400


def test_the_openapi_document_describes_every_api_route(client):
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    (api_resolver,) = [p for p in get_resolver().url_patterns
                       if isinstance(p, URLResolver) and str(p.pattern) == "api/v1/"]
    routes = {"/" + str(p.pattern).replace("<int:pk>", "{id}").replace("<str:external_id>", "{external_id}")
              for p in api_resolver.url_patterns
              if isinstance(p, URLPattern) and p.name != "not_found"} - {"/openapi.json"}  # not_found: the JSON 404
    assert routes == set(doc["paths"])
