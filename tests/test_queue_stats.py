"""The queue page at a million cases: counted on each visit while open cases are few, read from the counts
the cron keeps once they are many (with their time on the page), and counted again if the cron stopped."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cases import routing
from cases.models import Case, QueueStats
from cases.selectors import open_cases_estimate, refresh_queue_stats
from detection.models import Account

pytestmark = pytest.mark.django_db


def open_cases(n, start=0, queue="user-reports"):
    q = routing.get_queue(queue)
    for i in range(start, start + n):
        Case.objects.create(account=Account.objects.create(external_id=f"qs-{i}"), queue=q, priority=i % 100)
    return q


def waiting(response, slug):
    return next(q for q in response.context["queues"] if q.slug == slug).stats["pending"]


def grouped_counts(queries):
    return [q["sql"] for q in queries if "GROUP BY" in q["sql"] and "cases_case" in q["sql"]
            and '"status"' in q["sql"]]


def test_few_open_cases_are_counted_on_each_visit(client, users):
    open_cases(3)
    client.force_login(users["reviewer"])
    first = client.get(reverse("cases:queue"))
    assert waiting(first, "user-reports") == 3 and first.context["counted_at"] is None
    open_cases(2, start=3)
    assert waiting(client.get(reverse("cases:queue")), "user-reports") == 5
    assert not QueueStats.objects.exists()


def test_many_open_cases_are_read_from_the_kept_counts(client, users, settings):
    settings.QUEUE_COUNT_EXACT_BELOW = 0  # as if PostgreSQL estimated a million open cases
    open_cases(3)
    client.force_login(users["reviewer"])
    first = client.get(reverse("cases:queue"))  # nothing kept yet: counted once, and kept
    assert waiting(first, "user-reports") == 3 and first.context["counted_at"] is not None
    assert "Counts as of" in first.content.decode()
    open_cases(2, start=3)
    with CaptureQueriesContext(connection) as seen:
        second = client.get(reverse("cases:queue"))
    assert waiting(second, "user-reports") == 3  # the kept figure, not a count per visit
    assert not grouped_counts(seen.captured_queries)
    assert len(second.context["cases"]) == 5  # the list of cases itself is live
    refresh_queue_stats()  # the cron
    assert waiting(client.get(reverse("cases:queue")), "user-reports") == 5


def test_kept_counts_older_than_the_limit_are_counted_again(client, users, settings):
    settings.QUEUE_COUNT_EXACT_BELOW = 0
    open_cases(2)
    refresh_queue_stats()
    open_cases(4, start=2)
    QueueStats.objects.update(computed_at=QueueStats.objects.first().computed_at - timedelta(
        seconds=settings.QUEUE_STATS_MAX_AGE + 5))  # the cron stopped
    client.force_login(users["reviewer"])
    with CaptureQueriesContext(connection) as seen:
        response = client.get(reverse("cases:queue"))
    assert waiting(response, "user-reports") == 6 and grouped_counts(seen.captured_queries)


def test_breaches_and_claims_are_kept_too(users, settings):
    q = open_cases(3)
    Case.objects.filter(pk=Case.objects.first().pk).update(status="claimed", assigned_to=users["reviewer"])
    Case.objects.update(created_at=Case.objects.first().created_at - timedelta(minutes=q.sla_minutes + 1))
    refresh_queue_stats([q])
    kept = QueueStats.objects.get(queue=q)
    assert (kept.pending, kept.claimed, kept.breaches) == (2, 1, 3) and kept.oldest is not None


def test_the_estimate_is_a_number_on_either_database():
    open_cases(2)
    estimate = open_cases_estimate()
    # SQLite counts; PostgreSQL estimates from statistics (-1 before the first ANALYZE).
    assert estimate == 2 if connection.vendor == "sqlite" else estimate >= -1


def test_the_pages_benchmark_runs_at_a_small_size(users, settings):
    """`manage.py bench --only pages` at a tiny size: it generates cases and signals, keeps the counts as
    the cron would, and times the three pages (a smoke test; the figures are for the README)."""
    from reviewconsole.devtools.benchmarks import pages

    lines = []
    figures = pages.run(lines.append, cases=30, signals_per_case=3)
    assert set(figures) == {"queue page", "queue page, one queue", "case page"}
    assert Case.objects.filter(closed_at__isnull=True).count() == 30
    assert QueueStats.objects.exists() and any("generated 30 open cases and 90 signals" in line for line in lines)
