"""Live figures for the health checks and the Prometheus scrape: read at request time, cheaply.

Web and workers are separate processes, so nothing here counts in memory: every figure comes from
the database, Redis or the daily rollups when it is asked for. Each query is meant to stay cheap with
millions of rows: the backlogs are read through the partial indexes that say what is pending
(`item_pending_idx`, `signal_untriaged_idx`, `enforcement_pending_idx`, `retro_pending_idx`,
`shared_media_pending_idx`), open cases through `case_queue_age_idx`, the recent scan rate through
`item_scanned_idx`, reports not filed through `cybertip_unfiled_idx`, deliveries given up through
`enforcement_failed_idx`, and running totals (matches by bank, items scanned, reports filed,
decisions past their SLA) from the `DailyMetric` rollups rather than by counting the signal, item
and report tables.
"""

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

import redis
from django.conf import settings
from django.db import connection
from django.db.models import Count, Min, Q, Sum
from django.utils import timezone
from rq import Queue, Worker
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from cases.models import (
    Breaker,
    BreakerScope,
    Case,
    CyberTipReport,
    DailyMetric,
    Enforcement,
    EnforcementStatus,
    Platform,
    ReviewQueue,
    Rule,
)
from detection.models import Bank, Item, ItemStatus, RetroMatch, SharedMediaRequest, Signal

log = logging.getLogger(__name__)

# A probe must answer even when Redis does not: never wait longer than this for it.
REDIS_TIMEOUT_SECONDS = 2
SCAN_RATE_SECONDS = 300
# Stages of the pipeline whose pending work the database records (see cases.sweep).
STAGES = ("scan", "triage", "dispatch", "cybertip", "retro")
CYBERTIP_IN_FILING = (CyberTipReport.Status.QUEUED, CyberTipReport.Status.SUBMITTED)
ROLLED_UP = ("matches", "items_scanned", "sla_breaches")

_redis_clients = {}


def redis_client():
    """A Redis client for REDIS_URL with short timeouts, kept per URL so that its connections are reused."""
    url = settings.REDIS_URL
    client = _redis_clients.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                      socket_timeout=REDIS_TIMEOUT_SECONDS)
        _redis_clients[url] = client
    return client


def _age(since, now):
    return max(0.0, (now - since).total_seconds()) if since else 0.0


# Readiness ----------------------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    ok: bool
    figure: float | None
    unit: str
    error: str = ""

    def as_dict(self):
        row = {"name": self.name, "status": "ok" if self.ok else "fail", "figure": self.figure, "unit": self.unit}
        if self.error:
            row["error"] = self.error
        return row


def _check(name, unit, probe):
    """Run one probe: it returns (figure, error or ""). An exception fails the check; only its class is shown
    (the answer is public), the rest goes to the log."""
    try:
        figure, error = probe()
    except Exception as exc:  # a probe reports any failure as a failed check, never as a 500
        log.warning("readiness check %s failed: %r", name, exc)
        return Check(name, False, None, unit, f"unavailable ({type(exc).__name__})")
    return Check(name, not error, figure, unit, error)


def _timed_ms(call):
    start = time.perf_counter()
    call()
    return round((time.perf_counter() - start) * 1000, 1)


def _database():
    def select_one():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    return _timed_ms(select_one), ""


def _redis():
    return _timed_ms(redis_client().ping), ""


def freshest_heartbeat(now=None):
    """(workers registered, seconds since the most recent heartbeat of any of them, or None)."""
    now = now or timezone.now()
    workers = Worker.all(connection=redis_client())
    beats = [w.last_heartbeat for w in workers if w.last_heartbeat]
    return len(workers), (_age(max(beats), now) if beats else None)


def _workers():
    limit = settings.READY_WORKER_HEARTBEAT_SECONDS
    count, age = freshest_heartbeat()
    if age is None:
        return None, "no RQ worker is registered"
    age = round(age, 1)
    return age, (f"no worker heartbeat for {age:.0f} s (limit {limit} s, {count} registered)" if age > limit else "")


def oldest_scan_wait(now=None):
    """Seconds the oldest item still waiting for its scan has waited (0: none waits). Rejected and scanned
    items are done; `status = queued` is what item_pending_idx covers, so this is one index lookup."""
    oldest = Item.objects.filter(status=ItemStatus.QUEUED).aggregate(at=Min("enqueued_at"))["at"]
    return _age(oldest, now or timezone.now())


def oldest_triage_wait(now=None):
    """Seconds the oldest signal not yet triaged into a case has waited (signal_untriaged_idx)."""
    oldest = Signal.objects.filter(triaged_at__isnull=True).aggregate(at=Min("created_at"))["at"]
    return _age(oldest, now or timezone.now())


def _backlog(read):
    def probe():
        limit = settings.READY_MAX_QUEUE_AGE_SECONDS
        age = round(read(), 1)
        return age, (f"oldest pending for {age:.0f} s (limit {limit} s)" if age > limit else "")
    return probe


def readiness():
    """Every readiness check, in order: the database, Redis, a live worker, the scan and triage backlogs.
    What needs a store that did not answer fails at once rather than waiting for it a second time."""
    database, broker = _check("database", "ms", _database), _check("redis", "ms", _redis)

    def after(store, name, unit, probe):
        return _check(name, unit, probe) if store.ok else Check(name, False, None, unit, f"{store.name} unavailable")

    return [
        database,
        broker,
        after(broker, "workers", "seconds since last heartbeat", _workers),
        after(database, "scan_backlog", "seconds", _backlog(oldest_scan_wait)),
        after(database, "triage_backlog", "seconds", _backlog(oldest_triage_wait)),
    ]


# Figures for the scrape ---------------------------------------------------------------------------

def rq_figures():
    """Jobs per RQ queue and state, and the workers: read-only (no registry clean-up), one round trip."""
    conn = redis_client()
    registries = {"started": StartedJobRegistry, "failed": FailedJobRegistry, "scheduled": ScheduledJobRegistry,
                  "deferred": DeferredJobRegistry}
    names = list(settings.RQ_QUEUES)
    pipe = conn.pipeline(transaction=False)
    for name in names:
        queue = Queue(name, connection=conn)
        pipe.llen(queue.key)
        for registry in registries.values():
            pipe.zcard(registry(name, connection=conn).key)
    results = iter(pipe.execute())
    jobs = {}
    for name in names:
        jobs[(name, "queued")] = next(results)
        for state in registries:
            jobs[(name, state)] = next(results)
    workers, heartbeat_age = freshest_heartbeat()
    return {"jobs": jobs, "workers": workers, "heartbeat_age": heartbeat_age}


def pending_stages(now=None):
    """{stage: (waiting, seconds the oldest has waited)} for the stages whose backlog the database records.

    scan: items still queued; triage: signals not yet in a case; dispatch: enforcement rows not yet
    delivered or confirmed (pushed by webhook or pulled by the platform); cybertip: reports queued for
    filing or submitted with files still uploading (reports waiting for a senior's approval are people's
    work, counted by status); retro: banks with new entries and actioned accounts' media not yet matched
    against the stored items. Classification has no index on its backlog and is not read here; the
    `classify` RQ queue shows its jobs.
    """
    now = now or timezone.now()
    stages = {}

    def read(stage, queryset, field):
        row = queryset.aggregate(n=Count("*"), at=Min(field))
        stages[stage] = (row["n"], _age(row["at"], now))

    read("scan", Item.objects.filter(status=ItemStatus.QUEUED), "enqueued_at")
    read("triage", Signal.objects.filter(triaged_at__isnull=True), "created_at")
    read("dispatch", Enforcement.objects.filter(status=EnforcementStatus.PENDING), "created_at")
    retro = RetroMatch.objects.filter(requested_at__isnull=False).aggregate(n=Count("*"), at=Min("requested_at"))
    shared = SharedMediaRequest.objects.filter(done_at__isnull=True).aggregate(n=Count("*"), at=Min("requested_at"))
    oldest = min((at for at in (retro["at"], shared["at"]) if at), default=None)
    stages["retro"] = (retro["n"] + shared["n"], _age(oldest, now))
    return stages


def cybertip_figures(now=None):
    """Reports by status, and the filing stage's backlog."""
    now = now or timezone.now()
    by_status = {status: 0 for status in CyberTipReport.Status.values}
    waiting, oldest = 0, None
    # Reports not filed through cybertip_unfiled_idx; filed ones, which only grow, from the daily rollups.
    by_status[CyberTipReport.Status.FILED] = int(
        DailyMetric.objects.filter(metric="cybertip_filed").aggregate(n=Sum("value"))["n"] or 0)
    for status, n, at in (CyberTipReport.objects.exclude(status=CyberTipReport.Status.FILED).values_list("status")
                          .annotate(n=Count("*"), at=Min("created_at")).order_by()):
        by_status[status] = n
        if status in CYBERTIP_IN_FILING:
            waiting += n
            oldest = min(oldest, at) if oldest else at
    return by_status, (waiting, _age(oldest, now))


def delivery_figures():
    """Webhook deliveries per platform: waiting (pending), failing (pending, last attempt failed, retried
    with backoff) through enforcement_pending_idx, and given up (status failed, through enforcement_failed_idx)."""
    rows = defaultdict(lambda: {"pending": 0, "failing": 0, "failed": 0})
    pending = (Enforcement.objects.filter(status=EnforcementStatus.PENDING).values_list("platform_id")
               .annotate(n=Count("*"), failing=Count("pk", filter=~Q(last_error=""))).order_by())
    for platform_id, n, failing in pending:
        rows[platform_id]["pending"], rows[platform_id]["failing"] = n, failing
    failed = (Enforcement.objects.filter(status=EnforcementStatus.FAILED).values_list("platform_id")
              .annotate(n=Count("*")).order_by())
    for platform_id, n in failed:
        rows[platform_id]["failed"] = n
    names = dict(Platform.objects.filter(pk__in=[pk for pk in rows if pk]).values_list("pk", "name"))
    return {names.get(pk, "") if pk else "": figures for pk, figures in rows.items()}


def case_figures(now=None):
    """Open cases per review queue and status, and per queue those past the queue's SLA (case_queue_age_idx)."""
    now = now or timezone.now()
    queues = list(ReviewQueue.objects.values_list("pk", "slug", "sla_minutes"))
    slugs = {pk: slug for pk, slug, _ in queues}
    open_cases = Case.objects.filter(closed_at__isnull=True)
    by_status = {(slugs.get(queue_id, str(queue_id)), status): n for queue_id, status, n in
                 open_cases.values_list("queue_id", "status").annotate(n=Count("*")).order_by()}
    past_sla = {slug: open_cases.filter(queue_id=pk, created_at__lt=now - timedelta(minutes=sla)).count()
                for pk, slug, sla in queues}
    return by_status, past_sla


def scanned_recently(now=None, seconds=SCAN_RATE_SECONDS):
    """Items whose scan finished (scanned or rejected) in the last `seconds` (item_scanned_idx)."""
    now = now or timezone.now()
    return Item.objects.filter(scanned_at__gt=now - timedelta(seconds=seconds)).count()


def rolled_up_totals():
    """Running totals from the daily rollups (cases.metrics, every 10 minutes): {metric: {key: total}}.
    Counting matches by bank from the signals table would read every match ever made."""
    totals = {metric: {} for metric in ROLLED_UP}
    for metric, key, total in (DailyMetric.objects.filter(metric__in=ROLLED_UP).values_list("metric", "key")
                               .annotate(total=Sum("value")).order_by()):
        totals[metric][key] = total
    return totals


def breaker_figures():
    """Every rule's and bank's circuit breaker (1 open, 0 closed), and open breakers per scope."""
    open_breakers = list(Breaker.objects.filter(resumed_at__isnull=True).values_list("scope", "object_id"))
    is_open = {(str(scope), object_id) for scope, object_id in open_breakers}
    rule, bank = BreakerScope.RULE.value, BreakerScope.BANK.value
    states = [(rule, code, int((rule, pk) in is_open)) for pk, code in Rule.objects.values_list("pk", "code")]
    states += [(bank, name, int((bank, pk) in is_open)) for pk, name in Bank.objects.values_list("pk", "name")]
    counts = {scope: 0 for scope in BreakerScope.values}
    for scope, _ in open_breakers:
        counts[scope] += 1
    return states, counts
