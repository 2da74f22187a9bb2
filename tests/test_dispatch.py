"""Enforcement delivery: signed webhooks, retries with backoff, the platform's pull and confirm."""

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.dispatch import DELIVERY_HEADER, SIGNATURE_HEADER, dispatch_enforcement, sign, verify
from cases.models import Enforcement, EnforcementStatus, Platform
from reviewconsole.audit.models import AuditEvent
from tests.conftest import drain
from tests.factories import ban_only, case_with_match, remove_only
from tests.webhook_server import WebhookServer


def ban(users, days=None):
    # A policy that only bans, so that one enforcement goes out; a specialist may decide a matched
    # case without a second reviewer.
    case, item = case_with_match()
    case = claim_case(users["specialist"], case.pk)
    decision, _ = decide(users["specialist"], case.pk, policy=ban_only().code, version=case.version, ban_days=days)
    return decision


@pytest.fixture
def hook():
    with WebhookServer() as server:
        yield server


@pytest.fixture
def platform(db, hook):
    return Platform.objects.create(name="chat", webhook_url=hook.url)


def test_signatures_verify_and_expire():
    body = b'{"a": 1}'
    header = sign("s3cret", 1_700_000_000, body)
    assert verify("s3cret", header, body, now=1_700_000_100)
    assert not verify("s3cret", header, body + b" ", now=1_700_000_100)
    assert not verify("other", header, body, now=1_700_000_100)
    assert not verify("s3cret", header, body, now=1_700_001_000)
    assert not verify("s3cret", "garbage", body)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_a_ban_is_delivered_signed_through_the_queue(users, platform, hook):
    decision = ban(users, days=7)
    drain()
    (request,) = hook.received
    body = json.loads(request["body"])
    assert body["action"] == "ban_account" and body["target"] == "acct-1" and body["reason"] == "spam-account"
    assert body["expires_at"].startswith(str((decision.created_at + timedelta(days=7)).date()))
    assert verify(platform.signing_secret, request["headers"][SIGNATURE_HEADER], request["body"])
    assert request["headers"][DELIVERY_HEADER] == f"enforcement-{body['id']}"
    assert Enforcement.objects.get(action="ban_account").status == EnforcementStatus.DELIVERED


@pytest.mark.django_db
def test_a_failing_endpoint_is_retried_with_backoff_and_never_loses_the_ban(users, platform, hook, settings):
    hook.script = [500, "drop", 503]
    ban(users)
    enforcement = Enforcement.objects.get(action="ban_account")
    delays = []
    for expected_error in ("HTTP 500", "Error", "HTTP 503"):
        assert dispatch_enforcement(enforcement.pk) == "retry"
        enforcement.refresh_from_db()
        assert expected_error in enforcement.last_error and enforcement.status == EnforcementStatus.PENDING
        delays.append((enforcement.next_attempt_at - timezone.now()).total_seconds())
        assert dispatch_enforcement(enforcement.pk) == "skipped"  # not due yet
        Enforcement.objects.filter(pk=enforcement.pk).update(next_attempt_at=timezone.now())
    assert delays[0] < delays[1] < delays[2]  # backoff doubles
    assert dispatch_enforcement(enforcement.pk) == "delivered"
    assert len(hook.received) == 4
    bodies = {r["body"] for r in hook.received}
    assert len(bodies) == 1  # the same payload every time; the delivery id lets the platform dedupe


@pytest.mark.django_db
def test_it_gives_up_after_the_attempt_limit_but_keeps_the_row(users, platform, hook, settings):
    settings.DISPATCH_MAX_ATTEMPTS = 2
    hook.script = [500, 500]
    ban(users)
    enforcement = Enforcement.objects.get(action="ban_account")
    assert dispatch_enforcement(enforcement.pk) == "retry"
    Enforcement.objects.filter(pk=enforcement.pk).update(next_attempt_at=timezone.now())
    assert dispatch_enforcement(enforcement.pk) == "failed"
    enforcement.refresh_from_db()
    assert enforcement.status == EnforcementStatus.FAILED and enforcement.last_error.startswith("HTTP 500")


@pytest.mark.django_db
def test_an_unreachable_endpoint_is_an_error_not_a_crash(users, db):
    Platform.objects.create(name="gone", webhook_url="http://127.0.0.1:9/hook")
    ban(users)
    enforcement = Enforcement.objects.get(action="ban_account")
    assert dispatch_enforcement(enforcement.pk) == "retry"
    assert "ConnectionError" in Enforcement.objects.get(pk=enforcement.pk).last_error


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_the_sweep_redelivers_after_the_queue_lost_the_job(users, platform, hook, redis_conn):
    hook.script = [500]
    ban(users)
    drain()  # first attempt fails
    redis_conn.flushdb()
    Enforcement.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    call_command("sweep", "--older-than", "0", verbosity=0)
    drain()
    assert Enforcement.objects.get(action="ban_account").status == EnforcementStatus.DELIVERED
    assert len(hook.received) == 2


@pytest.mark.django_db
def test_remove_sends_one_enforcement_per_item(users, platform):
    case, item = case_with_match()
    case = claim_case(users["specialist"], case.pk)
    decide(users["specialist"], case.pk, policy=remove_only().code, version=case.version)
    (enforcement,) = Enforcement.objects.all()
    assert enforcement.action == "remove_content" and enforcement.payload["item_id"] == item.pk
    assert enforcement.platform == platform


@pytest.mark.django_db
def test_without_a_webhook_the_platform_pulls_and_confirms(api, users):
    ban(users)
    listed = api.get("/api/v1/enforcements").json()["results"]
    (row,) = listed
    assert row["action"] == "ban_account" and row["platform"] is None and row["expires_at"] is None
    url = f"/api/v1/enforcements/{row['id']}/confirm"
    response = api.post(url, json.dumps({"result": "applied", "detail": "banned"}), content_type="application/json")
    assert response.status_code == 200 and response.json()["confirmed_at"]
    again = api.post(url, json.dumps({"result": "failed"}), content_type="application/json").json()
    assert again["confirmed_at"] == response.json()["confirmed_at"]
    assert Enforcement.objects.get().confirmation["result"] == "applied"
    assert AuditEvent.objects.filter(action="enforcement.confirmed").count() == 1
    assert api.get("/api/v1/enforcements").json()["results"] == []


@pytest.mark.django_db
@pytest.mark.parametrize("body, status", [({"result": "maybe"}, 400), ({}, 400), ("[1]", 400)])
def test_bad_confirmations_are_refused(api, users, body, status):
    ban(users)
    pk = Enforcement.objects.get().pk
    payload = body if isinstance(body, str) else json.dumps(body)
    response = api.post(f"/api/v1/enforcements/{pk}/confirm", payload, content_type="application/json")
    assert response.status_code == status
    assert api.post("/api/v1/enforcements/999/confirm", json.dumps({"result": "applied"}),
                    content_type="application/json").status_code == 404
    assert api.get("/api/v1/enforcements?status=x").status_code == 400


@pytest.mark.django_db
def test_a_bad_ban_duration_is_refused(users):
    from cases.actions import ActionError
    case, _ = case_with_match()
    case = claim_case(users["reviewer"], case.pk)
    with pytest.raises(ActionError, match="duration"):
        decide(users["reviewer"], case.pk, action="ban", reason_code="csam-known", version=case.version, ban_days=3)
