"""Benchmark: the bank pages on a large bank (list, first and deep pages, searches, export rate).

Fills a bank named bench-pages with `entries` synthetic MD5 and PDQ rows (random hex, not hashes of
anything), renders each page through its view several times and reports the median, then
removes the bank again (keep=True leaves it for the next run, which then skips the filling).
"""

import os
import statistics
import time

from django.contrib.auth import get_user_model
from django.test import RequestFactory
from tqdm import tqdm

from cases.web import banks as views
from detection.banks import SYNC_COUNT_LIMIT, count_bank
from detection.models import Bank, BankHash

BANK = "bench-pages"


def run(out, entries=1_000_000, repeat=5, keep=False, **options):
    bank = Bank.objects.filter(name=BANK).first()
    if bank is None or bank.hashes.count() != entries:
        Bank.objects.filter(name=BANK).delete()
        bank = Bank.objects.create(name=BANK, description="benchmark: random hex, removed afterwards")
        _fill(bank, entries)
    Bank.objects.filter(pk=bank.pk).update(counted_at=None)  # the first list view counts, as after a change
    bank.refresh_from_db()
    user, _ = get_user_model().objects.get_or_create(username="bench-banks", defaults={"is_superuser": True})
    user.is_verified = lambda: True  # the pages want a second factor; this is a direct view call
    factory = RequestFactory()
    middle = BankHash.objects.filter(bank=bank).order_by("pk").values_list("pk", flat=True)[entries // 2]
    sample = BankHash.objects.filter(bank=bank, hash_type="pdq").values_list("value", "label").first()
    started = time.perf_counter()
    count_bank(bank.pk)
    out(f"bank pages ({entries:,} entries): counting by type (in the background past "
        f"{SYNC_COUNT_LIMIT:,} entries) {(time.perf_counter() - started) * 1000:.0f} ms")
    pages = [
        ("list", "/banks/", views.bank_list, {}),
        ("entries, first page", f"/banks/{bank.pk}/", views.bank_detail, {}),
        ("entries, page in the middle", f"/banks/{bank.pk}/", views.bank_detail, {"after": str(middle)}),
        ("search, 6-digit hash prefix", f"/banks/{bank.pk}/", views.bank_detail, {"q": sample[0][:6]}),
        ("search, 1-digit hash prefix (over the cap)", f"/banks/{bank.pk}/", views.bank_detail, {"q": "a"}),
        ("search, label prefix", f"/banks/{bank.pk}/", views.bank_detail, {"q": sample[1][:9]}),
        ("search, label prefix (over the cap)", f"/banks/{bank.pk}/", views.bank_detail, {"q": "ref-0"}),
        ("filter, type PDQ", f"/banks/{bank.pk}/", views.bank_detail, {"type": "pdq"}),
    ]
    for name, path, view, params in pages:
        timings = []
        for _ in range(repeat):
            request = factory.get(path, params)
            request.user = user
            started = time.perf_counter()
            response = view(request, pk=bank.pk) if view is views.bank_detail else view(request)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (name, response.status_code)
        out(f"bank pages ({entries:,} entries): {name}: {statistics.median(timings):.1f} ms")
    request = factory.get(f"/banks/{bank.pk}/export/")
    request.user = user
    started = time.perf_counter()
    size = sum(len(chunk) for chunk in views.bank_export(request, pk=bank.pk).streaming_content)
    elapsed = time.perf_counter() - started
    out(f"bank pages ({entries:,} entries): export {entries / elapsed:,.0f} rows/s ({size / 1e6:.0f} MB streamed)")
    if not keep:
        Bank.objects.filter(pk=bank.pk).delete()


def _fill(bank, entries, batch=20_000):
    with tqdm(total=entries, unit="rows", desc="filling bank") as bar:
        for start in range(0, entries, batch):
            count = min(batch, entries - start)
            BankHash.objects.bulk_create([
                BankHash(bank=bank, hash_type="pdq" if n % 2 else "md5",
                         value=os.urandom(32 if n % 2 else 16).hex(), label=f"ref-{n:08d}")
                for n in range(start, start + count)], batch_size=batch)
            bar.update(count)
