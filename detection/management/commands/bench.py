"""Benchmarks: worker throughput against the bare decode+hash rate, and match latency by bank size."""

import os
import time

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand
from tqdm import tqdm

from cases import intake
from cases.models import Case, Item, ItemStatus, Signal
from detection import matching, synthetic
from detection.hashing import hash_image
from detection.models import Bank, HashType
from reviewconsole.redis_server import PrivateRedis


class Command(BaseCommand):
    help = "Measure images/s per worker next to the bare decode+hash rate, and PDQ match latency."

    def add_arguments(self, parser):
        parser.add_argument("--images", type=int, default=1000)
        parser.add_argument("--bank-sizes", default="10000,100000,1000000")
        parser.add_argument("--cases", type=int, default=100_000, help="open cases for the page timings (0: skip)")

    def handle(self, *args, images, bank_sizes, cases, **options):
        if not os.environ.get("REDIS_URL"):
            PrivateRedis(settings.PRIVATE_REDIS_SOCKET).start()
        import django_rq

        django_rq.get_connection("default").flushdb()
        self.stdout.write(f"generating {images} synthetic 1024x768 JPEGs ...")
        data = [synthetic.encode(synthetic.make_image(10_000 + n, size=(1024, 768)), quality=85)
                for n in tqdm(range(images), unit="img")]
        bank_seeds = range(10_000, 10_000 + images, 10)  # one image in ten is "known"
        self._bank(bank_seeds, data)

        bare_before = self._bare_rate(data)

        for n, blob in enumerate(data):
            intake.submit_file(blob, account_id=f"bench-{n % 50}", original_name=f"{n}.jpg")
        start = time.perf_counter()
        django_rq.get_worker(*settings.WORKER_QUEUES).work(burst=True, logging_level="WARNING")
        elapsed = time.perf_counter() - start
        scanned = Item.objects.filter(status=ItemStatus.SCANNED).count()
        end_to_end = scanned / elapsed
        # The bare rate is taken before and after the worker run, so that drift in the machine's
        # speed (other load, frequency scaling) does not flatter or spoil the comparison.
        bare = (bare_before + self._bare_rate(data)) / 2
        opened = Case.objects.count()
        self.stdout.write(self.style.SUCCESS(
            f"\nscan: bare decode+hash {bare:.1f} images/s on one core; one worker end to end "
            f"(queue -> hashes -> match -> signals -> triage -> case) {end_to_end:.1f} images/s "
            f"= {100 * end_to_end / bare:.0f}% of bare ({scanned} scanned, "
            f"{Signal.objects.count()} signals, {opened} cases)"))

        for size in [int(s) for s in bank_sizes.split(",") if s]:
            self._match_latency(size)
        if cases:
            self._page_latency(cases)

    def _page_latency(self, count):
        """Server time of the queue and case pages with `count` open cases (median of 20 requests)."""
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group as Role
        from django.test import Client

        from cases.models import Account, ReviewQueue

        queue_ids = list(ReviewQueue.objects.filter(senior_only=False).values_list("pk", flat=True))
        existing = Case.objects.count()
        batch = 5000
        with tqdm(total=count, unit="case", desc="cases") as bar:
            for start in range(0, count, batch):
                n = min(batch, count - start)
                accounts = Account.objects.bulk_create(
                    [Account(external_id=f"bench-page-{existing + start + i}") for i in range(n)])
                Case.objects.bulk_create([
                    Case(account=a, queue_id=queue_ids[i % len(queue_ids)], priority=(i * 37) % 100,
                         base_priority=(i * 37) % 100, summary="Near match, bank bench-known")
                    for i, a in enumerate(accounts)])
                bar.update(n)
        user = get_user_model().objects.create_user(f"bench-{existing}", password="x" * 16)
        user.groups.add(Role.objects.get(name="reviewer"))
        client = Client(HTTP_HOST=settings.ALLOWED_HOSTS[0])
        client.force_login(user)
        one_case = Case.objects.filter(signals__isnull=False).first() or Case.objects.first()
        for label, url in (("queue page", "/queue/"), ("queue page, one queue", "/queue/?queue=user-reports"),
                           ("case page", f"/cases/{one_case.pk}/")):
            timings = []
            for _ in range(20):
                start = time.perf_counter()
                response = client.get(url, secure=True)
                timings.append(time.perf_counter() - start)
                assert response.status_code == 200, (url, response.status_code)
            timings.sort()
            self.stdout.write(f"page: {label:<22} with {Case.objects.filter(closed_at__isnull=True).count():,} "
                              f"open cases: median {timings[10] * 1000:.0f} ms, slowest {timings[-1] * 1000:.0f} ms")

    def _bare_rate(self, data):
        start = time.perf_counter()
        for blob in data:
            hash_image(blob, max_pixels=settings.IMAGE_MAX_PIXELS, max_frames=settings.IMAGE_MAX_FRAMES)
        return len(data) / (time.perf_counter() - start)

    def _bank(self, seeds, data):
        lines = []
        for seed in seeds:
            h = hash_image(data[seed - 10_000])
            lines.append(f"{h.pdq},pdq,bench-{seed}")
        from io import StringIO

        from detection.banks import import_hashes

        import_hashes("bench-known", StringIO("hash,type,label\n" + "\n".join(lines)), fmt="csv")
        matching.invalidate()

    def _match_latency(self, size):
        rng = np.random.default_rng(size)
        index = matching.BankIndex()
        bits = rng.integers(0, 256, size=(size, 32), dtype=np.uint8)
        bank = Bank(pk=1, name="synthetic", pdq_threshold=31)
        index.banks = {1: bank}
        index.arrays = {HashType.PDQ: matching._Arrays(
            ids=np.arange(size, dtype=np.int64), bank_ids=np.ones(size, dtype=np.int64), bits=bits,
            values=None)}
        queries = [bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex() for _ in range(50)]
        queries[0] = bits[size // 2].tobytes().hex()
        index.arrays[HashType.PDQ].values = _LazyHex(bits)
        start = time.perf_counter()
        hits = sum(len(index.match_perceptual(HashType.PDQ, q)) for q in queries)
        per = (time.perf_counter() - start) / len(queries)
        self.stdout.write(f"match: PDQ brute force over {size:>9,} hashes: {per * 1000:8.2f} ms per lookup "
                          f"({1 / per:,.0f} lookups/s on one core; {bits.nbytes / 2**20:.0f} MiB; {hits} hit)")


class _LazyHex:
    def __init__(self, bits):
        self.bits = bits

    def __getitem__(self, i):
        return self.bits[i].tobytes().hex()
