"""Bad input on every API endpoint answers a JSON 4xx naming the problem: never HTML, never a 5xx.

The last test drives schemathesis against the OpenAPI document, in process, through the WSGI app.
"""

import json
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from detection.models import Account, Group, Item, UserReport
from tests.factories import case_with_match

pytestmark = pytest.mark.django_db

JSON_ENDPOINTS = [("put", "/api/v1/accounts/a-1"), ("put", "/api/v1/groups/g-1"), ("post", "/api/v1/reports"),
                  ("post", "/api/v1/items"), ("post", "/api/v1/enforcements/1/confirm")]


def send(api, method, url, body, content_type="application/json", **extra):
    return getattr(api, method)(url, body, content_type=content_type, **extra)


def assert_json_error(response, status=400):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]
    return response.json()


def nothing_stored():
    return not (Account.objects.exists() or Group.objects.exists() or Item.objects.exists()
                or UserReport.objects.exists())


class TestMalformedBodies:
    @pytest.mark.parametrize("method, url", JSON_ENDPOINTS)
    @pytest.mark.parametrize("body, words", [
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"a": ' * 50 + b"1" + b"}" * 50, "nested"),
        (b'{"bio": "\xff\xfe"}', "UTF-8"),
        (b'{"facts": {"n": NaN}}', "NaN"),
        (b'{"facts": {"n": Infinity}}', "Infinity"),
        (b'{"facts": {"n": -Infinity}}', "Infinity"),
        (b'{"facts": {"n": 1e999}}', "range"),
        (b"[1, 2]", "object"),
        (b'"text"', "object"),
        (b"null", "object"),
        (b"{not json", "malformed"),
        (b'{"bio": "\\ud800"}', "surrogate"),
    ])
    def test_every_json_endpoint_refuses_it_clearly(self, api, method, url, body, words):
        assert words in assert_json_error(send(api, method, url, body))["error"]
        assert nothing_stored()

    @pytest.mark.parametrize("method, url", JSON_ENDPOINTS)
    @pytest.mark.parametrize("length", ["abc", "-1", "1e3", "99999999999999999999999999"])
    def test_a_bad_content_length_is_a_400(self, api, method, url, length):
        assert_json_error(send(api, method, url, b"{}", CONTENT_LENGTH=length))

    @pytest.mark.parametrize("method, url", JSON_ENDPOINTS)
    def test_a_huge_content_length_is_a_413(self, api, method, url):
        assert_json_error(send(api, method, url, b"{}", CONTENT_LENGTH=str(10**15)), status=413)

    @pytest.mark.parametrize("method, url", JSON_ENDPOINTS)
    def test_a_body_over_the_limit_is_a_413(self, api, method, url, settings):
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
        assert_json_error(send(api, method, url, json.dumps({"bio": "x" * 2000})), status=413)

    @pytest.mark.parametrize("body, content_type", [
        (b"--x\r\nContent-Disposition: form-data; name=\"account\"\r\n\r\na\r\n", "multipart/form-data"),
        (b"garbage", "multipart/form-data; boundary=x"),
        (b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\x00.jpg\"\r\n"
         b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\r\n--x--\r\n", "multipart/form-data; boundary=x"),
    ])
    def test_broken_multipart_is_a_json_400(self, api, body, content_type):
        response = api.post("/api/v1/items", body, content_type=content_type)
        assert_json_error(response)
        assert not Item.objects.exists()

    def test_too_many_multipart_fields_is_a_json_400(self, api, settings):
        settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
        assert_json_error(api.post("/api/v1/items", {f"f{i}": "x" for i in range(10)}))

    def test_an_empty_confirm_body_names_the_result(self, api):
        case, _ = case_with_match()
        body = assert_json_error(api.post("/api/v1/enforcements/1/confirm", b"", content_type="application/json"))
        assert "result" in body["fields"]
        for response in (api.post("/api/v1/enforcements/1/confirm"),  # the test client sends empty multipart
                         api.post("/api/v1/enforcements/1/confirm", "result=applied", content_type="text/plain")):
            assert "Content-Type" in assert_json_error(response, status=415)["error"]

    @pytest.mark.parametrize("url", ["/api/v1/nowhere", "/api/v1/items/abc", "/api/v1/items/1/x", "/api/v1/"])
    def test_unknown_api_paths_are_a_json_404(self, api, url):
        assert_json_error(api.get(url), status=404)
        assert_json_error(api.post(url, b"{}", content_type="application/json"), status=404)


class TestFieldValues:
    @pytest.mark.parametrize("url, body, field", [
        ("/api/v1/accounts/a-1", {"facts": {"teen_non_contacts_initiated_7d": -1}}, "facts"),
        ("/api/v1/accounts/a-1", {"facts": {"blocked_by_teens_30d": 1.5}}, "facts"),
        ("/api/v1/accounts/a-1", {"facts": {"phone_hash": 5}}, "facts"),
        ("/api/v1/accounts/a-1", {"facts": {"device_hashes": ["x"] * 21}}, "facts"),
        ("/api/v1/groups/g-1", {"facts": {"media_post_share": 2}}, "facts"),
        ("/api/v1/groups/g-1", {"facts": {"member_joins_7d": -3}}, "facts"),
        ("/api/v1/accounts/a-1", {"facts": {"k\x00": 1}}, "facts"),
        ("/api/v1/accounts/a-1", {"facts": {"k": ["v\x00"]}}, "facts"),
        ("/api/v1/accounts/a-1", {"facts": "{\"n\": NaN}"}, "facts"),
        ("/api/v1/groups/g-1", {"member_count": ""}, "member_count"),
        ("/api/v1/groups/g-1", {"member_count": []}, "member_count"),
        ("/api/v1/groups/g-1", {"member_count": {}}, "member_count"),
        ("/api/v1/groups/g-1", {"member_count": True}, "member_count"),
        ("/api/v1/groups/g-1", {"member_count": 10**12}, "member_count"),
        ("/api/v1/groups/g-1", {"members": [""]}, "members"),
        ("/api/v1/groups/g-1", {"members": ["a\x00"]}, "members"),
        ("/api/v1/accounts/a-1", {"registered_at": 1700000000}, "registered_at"),
        ("/api/v1/accounts/a-1", {"registered_at": ["2026-01-01"]}, "registered_at"),
        ("/api/v1/accounts/a-1", {"registered_at": {"at": "2026-01-01"}}, "registered_at"),
        ("/api/v1/accounts/a-1", {"registered_at": "0001-01-01T00:00:00+05:00"}, "registered_at"),
        ("/api/v1/accounts/a-1", {"bio": "x\x00y"}, "bio"),
        ("/api/v1/accounts/a-1", {"screen_name": 5}, "screen_name"),
        ("/api/v1/items", {"account": "a", "text": "hi", "uploaded_at": 5}, "uploaded_at"),
        ("/api/v1/items", {"account": "a", "text": "hi", "uploaded_at": ["x"]}, "uploaded_at"),
        ("/api/v1/items", {"account": "a\x00", "text": "hi"}, "account"),
        ("/api/v1/items", {"account": "a", "text": "h\x00i"}, "text"),
        ("/api/v1/reports", {"reporter": "u\x00", "account": "a", "reason": "csam"}, "reporter"),
        ("/api/v1/reports", {"reporter": "u", "account": "a", "reason": "csam", "comment": "\x00"}, "comment"),
        ("/api/v1/reports", {"reporter": "u", "item": 10**30, "reason": "csam"}, "item"),
    ])
    def test_it_names_the_bad_field(self, api, url, body, field):
        method = "put" if "/accounts/" in url or "/groups/" in url else "post"
        response = send(api, method, url, json.dumps(body))
        assert field in assert_json_error(response)["fields"]
        assert nothing_stored()

    def test_null_is_the_same_as_leaving_a_field_out(self, api):
        assert send(api, "put", "/api/v1/groups/g-1", json.dumps({"name": "G", "member_count": 4})).status_code == 201
        response = send(api, "put", "/api/v1/groups/g-1", json.dumps({"member_count": None, "name": None}))
        assert response.status_code == 200
        group = Group.objects.get()
        assert group.member_count == 4 and group.name == "G"

    @pytest.mark.parametrize("url", ["/api/v1/accounts/a%00b", "/api/v1/groups/%00"])
    def test_a_nul_in_the_path_is_a_400(self, api, url):
        assert "external_id" in assert_json_error(send(api, "put", url, b"{}"))["fields"]
        assert nothing_stored()

    def test_a_nul_in_a_multipart_field_is_a_400(self, api, image_bytes):
        upload = SimpleUploadedFile("photo.jpg", image_bytes(1), content_type="image/jpeg")
        response = api.post("/api/v1/items", {"account": "a\x00b", "file": upload})
        assert "account" in assert_json_error(response)["fields"]
        assert not Item.objects.exists()

    @pytest.mark.parametrize("query", ["limit=501", "limit=0", "limit=-1", "limit=1e3", "limit=%D9%A1",
                                       "offset=-1", "offset=99999999999999999999", "offset=1000000001",
                                       "limit=99999999999999999999999999999"])
    def test_list_bounds_are_enforced(self, api, query):
        assert_json_error(api.get(f"/api/v1/cases?{query}"))

    @pytest.mark.parametrize("query", ["after=-1", "after=99999999999999999999999", "after=x"])
    def test_the_enforcement_cursor_is_bounded(self, api, query):
        assert_json_error(api.get(f"/api/v1/enforcements?{query}"))

    def test_the_documented_maxima_are_accepted(self, api):
        assert api.get("/api/v1/cases?limit=500&offset=1000000000").status_code == 200
        assert api.get(f"/api/v1/enforcements?after={2**63 - 1}").status_code == 200
        assert api.get(f"/api/v1/items/{2**63 - 1}").status_code == 404


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(api_token, settings):
    """Every operation of the document, positive and negative examples, a few each, in well under a minute."""
    import schemathesis
    from django.core.signals import request_finished, request_started
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation.modes import GenerationMode
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    settings.ALLOWED_HOSTS = ["localhost"]
    case_with_match()
    app = get_wsgi_application()
    # As Django's test client does: keep the test's database connection (and its transaction) open.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    started = time.monotonic()
    try:
        schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
        headers = {"Authorization": f"Bearer {api_token}"}
        checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                                  operation.as_strategy(GenerationMode.NEGATIVE)))
            @hypothesis_settings(max_examples=20, deadline=None, database=None, derandomize=True,
                                 suppress_health_check=list(HealthCheck))
            def run(case):
                case.call_and_validate(headers=headers, checks=checks)

            run()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert time.monotonic() - started < 60


@pytest.mark.django_db
@pytest.mark.usefixtures("redis_conn")
@pytest.mark.parametrize("path", ["/django-rq/queues/99/", "/django-rq/queues/0/no-such-job/",
                                  "/django-rq/workers/0/no-such-worker/", "/django-rq/schedulers/99/",
                                  "/django-rq/queues/0/no-such-job/requeue/", "/django-rq/queues/99/finished/"])
def test_unknown_ids_in_the_job_dashboard_are_404s(client, users, path):
    from tests.conftest import verify_2fa
    client.force_login(users["admin"])
    verify_2fa(client, users["admin"])
    client.raise_request_exception = False
    assert client.get(path).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/", "/api/v2/items", "/api/nothing/here"])
def test_paths_under_api_outside_v1_answer_json_too(client, path):
    response = client.get(path)
    assert response.status_code == 404 and response["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "not found"


@pytest.mark.django_db
def test_other_paths_keep_html_error_pages(client, users):
    client.force_login(users["reviewer"])
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
@pytest.mark.parametrize("when", ["2026-02-04T07:47:57-21:30", "2026-02-04T07:47:57+15:00"])
def test_an_impossible_time_zone_offset_is_a_400(api, when):
    # Found by schemathesis on PostgreSQL, which refuses offsets past ±15:59 with a server error.
    response = api.post("/api/v1/items", json.dumps({"account": "acct-tz", "text": "hello", "uploaded_at": when}),
                        content_type="application/json")
    assert response.status_code == 400 and "uploaded_at" in response.json()["fields"]
