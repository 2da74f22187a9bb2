"""Benchmark: the queue and case pages with many open cases and many signals.

Open cases (one account each, spread over the review queues, priorities 0–99) and `signals_per_case`
signals for each are written with COPY on PostgreSQL (bulk_create elsewhere); the tables are ANALYZEd as
a live database's would be, and the queue counts are kept by the job the cron runs. Each page is
requested through the Django test client in this process (server time, no network), after one warm-up
request, and reported as median and 95th percentile.
"""

import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group as Role
from django.db import connection
from django.test import Client
from django.utils import timezone
from tqdm import tqdm

from cases.models import Case, ReviewQueue
from cases.selectors import refresh_queue_stats
from detection.models import Account, Signal
from reviewconsole.devtools.benchmarks.investigations import _copy, _ids

PAGE = 100_000
RUNS = 40


def generate(out, cases, signals_per_case):
    tag = f"pg{int(time.time())}"
    queue_ids = list(ReviewQueue.objects.filter(senior_only=False).values_list("pk", flat=True))
    now = timezone.now()
    started = time.perf_counter()
    with tqdm(total=cases, unit="case", desc="cases") as bar:
        for start in range(0, cases, PAGE):
            end = min(start + PAGE, cases)
            _copy(Account, ["external_id", "screen_name", "display_name", "facts", "status", "created_at",
                            "updated_at", "bio", "email", "phone", "age_band"],
                  ((f"{tag}-a{n}", "", "", "{}", "active", now, now, "", "", "", "") for n in range(start, end)))
            accounts = _ids(Account, f"{tag}-a")
            _copy(Case, ["account_id", "queue_id", "status", "priority", "base_priority", "summary",
                         "possible_minor_victim", "version", "resolution", "created_at", "updated_at"],
                  ((accounts[f"{tag}-a{n}"], queue_ids[n % len(queue_ids)], "open", (n * 37) % 100, (n * 37) % 100,
                    "Near match, bank bench-known", "", 0, "", now, now) for n in range(start, end)))
            case_of = dict(Case.objects.filter(account__external_id__startswith=f"{tag}-a",
                                               account__in=[accounts[f"{tag}-a{n}"] for n in range(start, end)])
                           .values_list("account_id", "pk"))
            _copy(Signal, ["account_id", "kind", "detector", "label", "score", "severity", "explanation", "details",
                           "dedupe_key", "case_id", "triaged_at", "created_at"],
                  ((accounts[f"{tag}-a{n}"], "hash_match", "pdq", "Known material (benchmark)", 0.9, 90,
                    "Near match to a benchmark bank entry", "{}", f"{tag}-s{n}-{k}",
                    case_of[accounts[f"{tag}-a{n}"]], now, now)
                   for n in range(start, end) for k in range(signals_per_case)))
            bar.update(end - start)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for table in ("cases_account", "cases_case", "cases_signal"):
                cursor.execute(f"ANALYZE {table}")
    out(f"pages: generated {cases:,} open cases and {cases * signals_per_case:,} signals in "
        f"{time.perf_counter() - started:.0f} s")


def _timed(client, url, runs=RUNS):
    client.get(url, secure=True)  # warm-up
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url, secure=True)
        timings.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
    timings.sort()
    return timings[len(timings) // 2] * 1000, timings[int(len(timings) * 0.95) - 1] * 1000


def run(out, cases=100_000, signals_per_case=10):
    if cases:
        generate(out, cases, signals_per_case)
    started = time.perf_counter()
    refresh_queue_stats()  # what the cron does every QUEUE_STATS_SECONDS
    out(f"pages: queue counts kept in {(time.perf_counter() - started) * 1000:.0f} ms (the cron's job)")
    user = get_user_model().objects.create_user(f"bench-pages-{int(time.time())}", password="x" * 16)
    user.groups.add(Role.objects.get(name="reviewer"))
    client = Client(HTTP_HOST=settings.ALLOWED_HOSTS[0])
    client.force_login(user)
    one_case = Case.objects.filter(closed_at__isnull=True, signals__isnull=False).order_by("-pk").first()
    open_cases = Case.objects.filter(closed_at__isnull=True).count()
    signals = Signal.objects.count() if connection.vendor != "postgresql" else _estimate("cases_signal")
    figures = {}
    for label, url in (("queue page", "/queue/"), ("queue page, one queue", "/queue/?queue=user-reports"),
                       ("case page", f"/cases/{one_case.pk}/")):
        median, p95 = _timed(client, url)
        figures[label] = p95
        out(f"page: {label:<22} with {open_cases:,} open cases, ~{signals:,} signals: median {median:.0f} ms, "
            f"p95 {p95:.0f} ms")
    return figures


def _estimate(table):
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table])
        return cursor.fetchone()[0]
