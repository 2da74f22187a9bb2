"""Health checks and the Prometheus scrape: /healthz, /readyz and /metrics against real Redis and real rows."""

import socket
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, Worker
from rq.utils import utcformat

from cases import metrics, monitoring
from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.actions.rules import resume_breaker, save_rule, trip
from cases.dispatch import dispatch_enforcement
from cases.models import Breaker, Case, Platform, ReviewQueue, Rule
from cases.web.middleware import MACHINE_PATHS
from detection import intake
from detection.models import Bank, Item, Signal
from tests.conftest import verify_2fa
from tests.factories import ban_only, case_with_match, encoded

pytestmark = pytest.mark.django_db
TOKEN = "scrape-token-for-the-tests-0123456789"


@pytest.fixture
def worker(redis_conn):
    """A real RQ worker registered in Redis, as `rqworker` does at start, with a fresh heartbeat."""
    registered = Worker(["default"], connection=monitoring.redis_client())
    registered.register_birth()
    registered.heartbeat()
    yield registered
    registered.register_death()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def checks(response):
    return {check["name"]: check for check in response.json()["checks"]}


def pending_items(count, age_seconds=0):
    items = [intake.submit_file(encoded(40 + n), account_id="acct-waiting") for n in range(count)]
    Item.objects.filter(pk__in=[i.pk for i in items]).update(
        enqueued_at=timezone.now() - timedelta(seconds=age_seconds))
    return items


# /healthz ---------------------------------------------------------------------------------------

def test_healthz_answers_without_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]


def test_a_signed_in_session_is_neither_read_nor_written_by_the_probes(client, users, django_assert_num_queries):
    client.force_login(users["officer"])  # an officer's session elsewhere is fenced into the portal
    verify_2fa(client, users["officer"])
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert not response.cookies and "Cookie" not in response.get("Vary", "")


def test_the_probe_paths_the_middleware_leaves_alone_are_the_routes():
    assert {reverse("healthz"), reverse("readyz"), reverse("prometheus_metrics")} == MACHINE_PATHS


def test_the_dashboard_for_people_keeps_its_address():
    assert reverse("cases:metrics") == "/metrics/" != reverse("prometheus_metrics")


# /readyz ----------------------------------------------------------------------------------------

def test_readyz_is_200_when_every_check_passes(client, worker):
    pending_items(1, age_seconds=30)
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and "no-store" in response["Cache-Control"]
    got = checks(response)
    assert list(got) == ["database", "redis", "workers", "scan_backlog", "triage_backlog"]
    assert all(check["status"] == "ok" for check in got.values())
    assert 30 <= got["scan_backlog"]["figure"] < 60
    assert got["triage_backlog"]["figure"] == 0
    assert 0 <= got["workers"]["figure"] < 5


def test_readyz_fails_when_the_database_does_not_answer(client, worker, monkeypatch):
    def refused(*args, **kwargs):
        raise OperationalError("could not connect to server: secret-host.internal")

    monkeypatch.setattr(connection, "cursor", refused)
    response = client.get("/readyz")
    monkeypatch.undo()
    assert response.status_code == 503
    got = checks(response)
    assert got["database"]["status"] == "fail" and got["database"]["error"] == "unavailable (OperationalError)"
    assert got["redis"]["status"] == "ok" and got["workers"]["status"] == "ok"
    assert got["scan_backlog"]["error"] == got["triage_backlog"]["error"] == "database unavailable"
    assert "secret-host" not in response.content.decode()  # the answer is public: no connection details


def test_readyz_fails_when_redis_is_unreachable(client, settings, worker):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    got = checks(response)
    assert got["redis"]["status"] == "fail" and "ConnectionError" in got["redis"]["error"]
    assert got["workers"]["status"] == "fail" and got["workers"]["error"] == "redis unavailable"
    assert got["database"]["status"] == "ok" and got["scan_backlog"]["status"] == "ok"


def test_readyz_fails_with_no_worker_registered(client, redis_conn):
    response = client.get("/readyz")
    assert response.status_code == 503
    got = checks(response)
    assert got["workers"]["status"] == "fail" and got["workers"]["error"] == "no RQ worker is registered"
    assert got["redis"]["status"] == "ok"


def test_readyz_fails_when_the_last_heartbeat_is_too_old(client, worker, settings):
    settings.READY_WORKER_HEARTBEAT_SECONDS = 120
    # A worker killed without deregistering: its key outlives it until RQ's TTL, its heartbeat stops.
    worker.connection.hset(worker.key, "last_heartbeat", utcformat(timezone.now() - timedelta(seconds=300)))
    response = client.get("/readyz")
    assert response.status_code == 503
    got = checks(response)
    assert got["workers"]["status"] == "fail" and 299 < got["workers"]["figure"] < 330
    assert "limit 120 s" in got["workers"]["error"]


def test_readyz_fails_when_the_oldest_unscanned_item_waited_too_long(client, worker, settings):
    settings.READY_MAX_QUEUE_AGE_SECONDS = 600
    pending_items(1, age_seconds=60)
    old, = pending_items(1, age_seconds=900)
    response = client.get("/readyz")
    assert response.status_code == 503
    got = checks(response)
    assert got["scan_backlog"]["status"] == "fail" and 900 <= got["scan_backlog"]["figure"] < 960
    assert [name for name, check in got.items() if check["status"] == "fail"] == ["scan_backlog"]
    # Rejected items are finished, not waiting: the same row rejected no longer holds readiness back.
    Item.objects.filter(pk=old.pk).update(status="rejected", reject_reason="test")
    assert client.get("/readyz").status_code == 200


def test_readyz_fails_when_signals_wait_for_triage(client, worker, settings):
    settings.READY_MAX_QUEUE_AGE_SECONDS = 600
    intake.submit_report(reporter="u-1", reason="csam", account_id="acct-reported")
    Signal.objects.update(created_at=timezone.now() - timedelta(seconds=1200))
    got = checks(client.get("/readyz"))
    assert got["triage_backlog"]["status"] == "fail" and got["triage_backlog"]["figure"] >= 1200


# /metrics ---------------------------------------------------------------------------------------

def test_metrics_is_not_found_while_no_token_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"])
def test_metrics_refuses_a_missing_or_wrong_token(client, settings, header):
    settings.METRICS_TOKEN = TOKEN
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "reviewconsole_" not in response.content.decode()


def scrape(client, settings):
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain") and "no-store" in response["Cache-Control"]
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, metric, /, **labels):
    return samples[(metric, tuple(sorted(labels.items())))]


def banned(users, seed, account):
    case, _ = case_with_match(seed=seed, account=account)
    case = claim_case(users["specialist"], case.pk)
    decision, _ = decide(users["specialist"], case.pk, policy=ban_only().code, version=case.version)
    return decision.enforcements.get()


@pytest.fixture
def console(users, redis_conn, settings):
    """Two items waiting for their scan, an open case matched in bank "known", a delivery failing and one
    given up, an open breaker on the bank, a rule whose breaker is closed, the rollups done."""
    open_case, _ = case_with_match(seed=1, account="acct-1")
    Case.objects.filter(pk=open_case.pk).update(created_at=timezone.now() - timedelta(days=3))  # past its SLA
    Platform.objects.create(name="gone", webhook_url=f"http://127.0.0.1:{closed_port()}/hook")
    failing = banned(users, 2, "acct-2")
    assert dispatch_enforcement(failing.pk) == "retry"
    given_up = banned(users, 3, "acct-3")
    settings.DISPATCH_MAX_ATTEMPTS = 1
    assert dispatch_enforcement(given_up.pk) == "failed"
    bank = Bank.objects.get(name="known")
    trip("bank", bank.pk, count=5000, limit=2000, usual=3.0)
    save_rule(users["senior"], Rule(code="known-ban", title="Known"), effect="apply_policy",
              policy_code="csam-known", mode="shadow",
              conditions_list=[{"field": "signal.kind", "op": "eq", "value": "hash_match"}])
    pending_items(2, age_seconds=100)
    metrics.rollup_recent()
    return {"open_case": open_case}


def test_metrics_figures_match_the_console(client, settings, console, worker):
    samples = scrape(client, settings)
    assert value(samples, "reviewconsole_pending", stage="scan") == 2
    assert 100 <= value(samples, "reviewconsole_pending_oldest_age_seconds", stage="scan") < 160
    assert value(samples, "reviewconsole_pending", stage="triage") == 0
    assert value(samples, "reviewconsole_pending_oldest_age_seconds", stage="triage") == 0
    # One ban still being retried (failing) and one given up; both banned accounts' rows.
    assert value(samples, "reviewconsole_deliveries_pending", platform="gone") == 1
    assert value(samples, "reviewconsole_deliveries_failing", platform="gone") == 1
    assert value(samples, "reviewconsole_deliveries_failed", platform="gone") == 1
    assert value(samples, "reviewconsole_pending", stage="dispatch") == 1
    # Three matches in bank "known", from the rollups; three items scanned, all in the last 5 minutes.
    assert value(samples, "reviewconsole_matches_total", bank="known") == 3
    assert value(samples, "reviewconsole_items_scanned_total", status="scanned") == 3
    assert value(samples, "reviewconsole_items_scanned_last_5m") == 3
    queue = console["open_case"].queue.slug
    assert value(samples, "reviewconsole_cases_open", queue=queue, status="open") == 1
    assert value(samples, "reviewconsole_cases_past_sla", queue=queue) == 1
    assert value(samples, "reviewconsole_breaker_open", scope="bank", name="known") == 1
    assert value(samples, "reviewconsole_breaker_open", scope="rule", name="known-ban") == 0
    assert value(samples, "reviewconsole_breakers_open", scope="bank") == 1
    assert value(samples, "reviewconsole_breakers_open", scope="rule") == 0
    assert value(samples, "reviewconsole_rq_workers") == 1
    assert value(samples, "reviewconsole_rq_jobs", queue="scan", state="queued") == 0
    assert all(value(samples, "reviewconsole_scrape_error", section=s) == 0
               for s in ("rq", "pending", "deliveries", "cases", "scan_rate", "rollups", "breakers"))


def test_metrics_counts_rq_jobs_and_cybertip_reports(client, settings, users, redis_conn):
    triage = Queue("triage", connection=monitoring.redis_client())  # django-rq's would wait for a commit
    triage.enqueue("cases.jobs.triage_signals", [])
    triage.enqueue("cases.jobs.triage_signals", [])
    case, _ = case_with_match(seed=4, account="acct-4")
    case = claim_case(users["specialist"], case.pk)
    decide(users["specialist"], case.pk, action="report", reason_code="csam-known", version=case.version)
    samples = scrape(client, settings)
    assert value(samples, "reviewconsole_rq_jobs", queue="triage", state="queued") == 2
    assert value(samples, "reviewconsole_rq_jobs", queue="triage", state="failed") == 0
    assert value(samples, "reviewconsole_rq_workers") == 0
    assert value(samples, "reviewconsole_cybertip_reports", status="awaiting_approval") == 1
    assert value(samples, "reviewconsole_cybertip_reports", status="filed") == 0
    assert value(samples, "reviewconsole_pending", stage="cybertip") == 0  # approval is people's work


def test_a_resumed_breaker_reads_closed(client, settings, users, console):
    breaker = Breaker.objects.get(resumed_at__isnull=True)
    senior = users["senior"]
    resume_breaker(senior, breaker.pk, note="Checked: a legitimate surge.")
    samples = scrape(client, settings)
    assert value(samples, "reviewconsole_breaker_open", scope="bank", name="known") == 0


def test_metrics_still_answers_with_redis_down(client, settings, console):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    samples = scrape(client, settings)
    assert value(samples, "reviewconsole_scrape_error", section="rq") == 1
    assert value(samples, "reviewconsole_scrape_error", section="pending") == 0
    assert value(samples, "reviewconsole_pending", stage="scan") == 2
    assert not any(name.startswith("reviewconsole_rq_") for name, _ in samples)


def test_the_scrape_reads_a_bounded_number_of_queries(client, settings, console, django_assert_max_num_queries):
    # Fixed work per scrape, whatever the rows: one query per review queue for the SLA, the rest constant.
    with django_assert_max_num_queries(17 + ReviewQueue.objects.count()):
        scrape(client, settings)


def test_the_probes_answer_plain_http_and_the_scrape_is_sent_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True  # production: the probes come over plain HTTP inside the network
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 301 and response["Location"].startswith("https://")
    assert client.get("/queue/").status_code == 301
