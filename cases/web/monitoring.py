"""Health checks and the Prometheus scrape (/healthz, /readyz, /metrics): answers for machines, not people.

None of them needs a login or touches the session (cases.web.middleware leaves these paths alone), and
none may be cached. /metrics is the Prometheus text format, built per request from a fresh registry
whose one collector reads every figure at scrape time (cases.monitoring): web processes and workers
are separate, so counters kept in memory would count only the process that happened to answer.
"""

import hashlib
import hmac
import logging
import time

from django.conf import settings
from django.http import HttpResponse, HttpResponseNotFound, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from cases import monitoring

log = logging.getLogger(__name__)
PREFIX = "reviewconsole_"


@never_cache
@require_safe
def healthz(request):
    """Alive: the process answers. No database, no Redis."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request):
    """Ready: 200 when every check passes, else 503; each check with its status and its figure."""
    checks = monitoring.readiness()
    ready = all(check.ok for check in checks)
    return JsonResponse({"status": "ok" if ready else "fail", "checks": [check.as_dict() for check in checks]},
                        status=200 if ready else 503)


def _digest(value):
    return hashlib.sha256(value.encode()).digest()


def bearer_matches(request, token):
    """Whether the request carries `Authorization: Bearer <token>`, compared in constant time (digests of
    equal length, so not even the token's length shows in the timing)."""
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(_digest(given.strip()), _digest(token))


@never_cache
@require_safe
def metrics(request):
    """Prometheus scrape. No METRICS_TOKEN configured: not found (the endpoint is off). A missing or wrong
    token: 401."""
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponseNotFound("Not found.\n", content_type="text/plain; charset=utf-8")
    if not bearer_matches(request, token):
        response = HttpResponse(
            "The Prometheus scrape needs `Authorization: Bearer <METRICS_TOKEN>`. The metrics dashboard for "
            "people is /metrics/.\n", status=401, content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConsoleCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _gauge(name, documentation, labels=()):
    return GaugeMetricFamily(PREFIX + name, documentation, labels=list(labels))


def _counter(name, documentation, labels=()):
    return CounterMetricFamily(PREFIX + name, documentation, labels=list(labels))


class ConsoleCollector:
    """Every figure, read when collected. A section that fails (Redis down, say) is left out and flagged
    in reviewconsole_scrape_error, so the others still reach Prometheus."""

    def collect(self):
        start = time.perf_counter()
        errors = _gauge("scrape_error", "1 when a section of this scrape could not be read (see the log)",
                        ["section"])
        sections = (("rq", _rq), ("pending", _pending), ("deliveries", _deliveries), ("cases", _cases),
                    ("scan_rate", _scan_rate), ("rollups", _rollups), ("breakers", _breakers))
        for section, build in sections:
            try:
                families = list(build())
            except Exception:  # one unreadable source must not cost the other figures
                log.exception("metrics section %s could not be read", section)
                errors.add_metric([section], 1)
                continue
            errors.add_metric([section], 0)
            yield from families
        yield errors
        duration = _gauge("scrape_duration_seconds", "Time taken to read every figure of this scrape")
        duration.add_metric([], time.perf_counter() - start)
        yield duration


def _rq():
    figures = monitoring.rq_figures()
    jobs = _gauge("rq_jobs", "RQ jobs per queue: queued (waiting), started, failed, scheduled, deferred",
                  ["queue", "state"])
    for (queue, state), n in sorted(figures["jobs"].items()):
        jobs.add_metric([queue, state], n)
    workers = _gauge("rq_workers", "RQ workers registered in Redis")
    workers.add_metric([], figures["workers"])
    yield from (jobs, workers)
    if figures["heartbeat_age"] is not None:
        age = _gauge("rq_worker_heartbeat_age_seconds", "Seconds since the most recent heartbeat of any RQ worker")
        age.add_metric([], figures["heartbeat_age"])
        yield age


def _pending():
    stages = monitoring.pending_stages()
    by_status, stages["cybertip"] = monitoring.cybertip_figures()  # one read of the reports table for both
    waiting = _gauge("pending", "Work the database records as waiting, per pipeline stage", ["stage"])
    oldest = _gauge("pending_oldest_age_seconds", "Seconds the oldest waiting piece of work has waited (0: none)",
                    ["stage"])
    for stage in monitoring.STAGES:
        n, age = stages[stage]
        waiting.add_metric([stage], n)
        oldest.add_metric([stage], age)
    reports = _gauge("cybertip_reports", "CyberTipline reports by status", ["status"])
    for status, n in sorted(by_status.items()):
        reports.add_metric([status], n)
    yield from (waiting, oldest, reports)


def _deliveries():
    platforms = monitoring.delivery_figures()
    families = {
        "pending": _gauge("deliveries_pending", "Enforcements not yet delivered to the platform (or confirmed "
                          "by it)", ["platform"]),
        "failing": _gauge("deliveries_failing", "Pending enforcements whose last webhook attempt failed "
                          "(retried with backoff)", ["platform"]),
        "failed": _gauge("deliveries_failed", "Enforcements whose webhook gave up after DISPATCH_MAX_ATTEMPTS",
                         ["platform"]),
    }
    for platform, figures in sorted(platforms.items()):
        for state, family in families.items():
            family.add_metric([platform], figures[state])
    yield from families.values()


def _cases():
    by_status, past_sla = monitoring.case_figures()
    open_cases = _gauge("cases_open", "Open cases per review queue and status", ["queue", "status"])
    for (queue, status), n in sorted(by_status.items()):
        open_cases.add_metric([queue, status], n)
    late = _gauge("cases_past_sla", "Open cases older than their queue's SLA", ["queue"])
    for queue, n in sorted(past_sla.items()):
        late.add_metric([queue], n)
    yield from (open_cases, late)


def _scan_rate():
    scanned = _gauge("items_scanned_last_5m", "Items whose scan finished (scanned or rejected) in the last "
                     "5 minutes")
    scanned.add_metric([], monitoring.scanned_recently())
    yield scanned


def _rollups():
    totals = monitoring.rolled_up_totals()
    families = (
        ("matches", "matches", "Hash matches per bank, from the daily rollups (up to 10 minutes behind)", "bank"),
        ("items_scanned", "items_scanned", "Items scanned, by outcome, from the daily rollups", "status"),
        ("sla_breaches", "sla_breaches", "Decisions taken after their queue's SLA, from the daily rollups", "queue"),
    )
    for name, metric, documentation, label in families:
        counter = _counter(name, documentation, [label])
        for key, total in sorted(totals[metric].items()):
            counter.add_metric([key], total)
        yield counter


def _breakers():
    states, counts = monitoring.breaker_figures()
    state = _gauge("breaker_open", "Automation circuit breaker per rule and bank: 1 open (automation stopped), "
                   "0 closed", ["scope", "name"])
    for scope, name, value in states:
        state.add_metric([scope, name], value)
    open_count = _gauge("breakers_open", "Open circuit breakers per scope (rule, bank, bank entry)", ["scope"])
    for scope, n in sorted(counts.items()):
        open_count.add_metric([scope], n)
    yield from (state, open_count)
