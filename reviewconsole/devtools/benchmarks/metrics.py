"""Benchmarks of the console's own pages: metrics over a generated year of activity."""

import random
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group as Role
from django.db.models import Count, F, OuterRef, Subquery
from django.test import Client
from django.utils import timezone
from tqdm import tqdm

from cases import metrics
from cases.models import Action, Case, CyberTipReport, DailyMetric, Decision, ReasonCode, ReviewQueue
from detection.models import Account, Item, ItemStatus, Signal, SignalKind

BATCH = 5000


def generate_year(items, cases, out, seed=7):
    """`items` scanned items and `cases` decided cases spread over the last 365 days, in bulk."""
    rng = random.Random(seed)
    now = timezone.now()
    user = get_user_model().objects.create_user(f"bench-metrics-{now.timestamp():.0f}", password="x" * 16)
    queues = list(ReviewQueue.objects.filter(senior_only=False))
    reasons = {a: next(r for r in ReasonCode.objects.all() if a in r.actions) for a in Action.values}
    accounts_before = Account.objects.count()

    def when():
        return now - timedelta(seconds=rng.random() * 365 * 86400)

    with tqdm(total=items, unit="item", desc="items") as bar:
        for start in range(0, items, BATCH):
            n = min(BATCH, items - start)
            accounts = Account.objects.bulk_create(
                [Account(external_id=f"bm-{accounts_before + start + i}") for i in range(n)])
            rows = []
            for account in accounts:
                at = when()
                rows.append(Item(account=account, status=ItemStatus.SCANNED, created_at=at, enqueued_at=at,
                                 scanned_at=at + timedelta(seconds=2), md5="0" * 32, sha256="0" * 64))
            made = Item.objects.bulk_create(rows)
            # created_at is set on insert; back-date it as enqueued_at, one statement a batch.
            Item.objects.filter(pk__in=[x.pk for x in made]).update(created_at=F("enqueued_at"))
            bar.update(n)
    item_ids = list(Item.objects.order_by("-pk").values_list("pk", "account_id", "created_at")[:items])
    rng.shuffle(item_ids)
    actions = [Action.BAN] * 3 + [Action.REMOVE] * 2 + [Action.REPORT] + [Action.DISMISS] * 4
    with tqdm(total=cases, unit="case", desc="cases") as bar:
        for start in range(0, cases, BATCH):
            chunk = item_ids[start:start + BATCH]
            made = Case.objects.bulk_create([
                Case(account_id=account_id, queue=rng.choice(queues), created_at=at + timedelta(minutes=1),
                     closed_at=at + timedelta(minutes=rng.randint(5, 3000)), status="closed")
                for _, account_id, at in chunk])
            reported = {c.pk for c in made if rng.random() < 0.3}
            signals = Signal.objects.bulk_create([
                Signal(item_id=item_id, account_id=case.account_id, case=case,
                       kind=SignalKind.USER_REPORT if case.pk in reported else SignalKind.HASH_MATCH,
                       detector="bench", label="bench", score=0.9, severity=90, explanation="bench",
                       details={"bank": rng.choice(["ncmec", "local-confirmed", "partner"])},
                       dedupe_key=f"bench:{case.pk}", triaged_at=case.created_at)
                for (item_id, _, _), case in zip(chunk, made, strict=True)])
            decisions = Decision.objects.bulk_create([
                Decision(case=case, case_version=1, action=(action := rng.choice(actions)), reason=reasons[action],
                         decided_by=user)
                for case in made])
            # created_at is set on insert; back-date it to spread the year, one statement a batch.
            batch_cases = Case.objects.filter(pk=OuterRef("case_id"))
            Signal.objects.filter(pk__in=[x.pk for x in signals]).update(
                created_at=Subquery(batch_cases.values("created_at")[:1]))
            Decision.objects.filter(pk__in=[x.pk for x in decisions]).update(
                created_at=Subquery(batch_cases.values("closed_at")[:1]))
            bar.update(len(made))
    out(f"generated {items:,} items, {cases:,} cases with signals and decisions over 365 days")


def run(out, items=1_000_000, cases=200_000, generate=True):
    if generate:
        generate_year(items, cases, out)
    DailyMetric.objects.all().delete()  # time the first rollup from nothing
    count_rows = {m.__name__: m.objects.count() for m in (Item, Signal, Case, Decision, CyberTipReport)}
    out("rows: " + ", ".join(f"{name} {n:,}" for name, n in count_rows.items()))

    start = time.perf_counter()
    days = metrics.days_to_roll()
    for day in tqdm(days, unit="day", desc="rollup"):
        metrics.rollup_day(day)
    backfill = time.perf_counter() - start
    out(f"metrics: first rollup of {len(days)} days: {backfill:.1f} s ({1000 * backfill / len(days):.0f} ms a day); "
        f"{DailyMetric.objects.count():,} figures kept")
    start = time.perf_counter()
    metrics.rollup_recent()
    out(f"metrics: periodic rollup (yesterday and today): {1000 * (time.perf_counter() - start):.0f} ms")

    user = get_user_model().objects.create_user(f"bench-senior-{time.time():.0f}", password="x" * 16)
    user.groups.add(Role.objects.get(name="senior"))
    client = Client(HTTP_HOST=settings.ALLOWED_HOSTS[0])
    client.force_login(user)
    year = timezone.now().astimezone(UTC).year
    for label, url in (("dashboard, by day", "/metrics/?period=day"), ("dashboard, by month", "/metrics/?period=month"),
                       ("transparency report", f"/metrics/transparency/?year={year}"),
                       ("transparency CSV", f"/metrics/transparency.csv?year={year}"),
                       ("reviewer workload, 30 days", "/metrics/reviewers/?days=30")):
        timings = []
        for _ in range(10):
            start = time.perf_counter()
            response = client.get(url, secure=True)
            timings.append(time.perf_counter() - start)
            assert response.status_code == 200, (url, response.status_code)
        timings.sort()
        out(f"page: {label:<28} median {timings[5] * 1000:6.0f} ms, slowest {timings[-1] * 1000:6.0f} ms")
    start = time.perf_counter()
    since = datetime.now(UTC) - timedelta(days=365)
    direct = dict(Decision.objects.filter(created_at__gte=since).values_list("action").annotate(
        n=Count("pk")).order_by())
    out(f"for comparison: decisions by action over the year straight from the table: "
        f"{1000 * (time.perf_counter() - start):.0f} ms ({sum(direct.values()):,} decisions)")
