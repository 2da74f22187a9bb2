"""Benchmarks: every section prints its figures; `--only` picks sections. See the README for results."""

import os
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from reviewconsole.redis_server import PrivateRedis

SECTIONS = ["throughput", "robustness", "matching", "retro", "classifiers", "video", "text", "banks", "pages",
            "metrics", "decisions", "month", "investigations", "shared_index"]
# Platform-sized runs on PostgreSQL (a database of their own, an hour or more), and worker processes each
# holding a bank index (GBs at 10 M hashes): only when named in --only.
NAMED_ONLY = {"month", "investigations", "shared_index"}


class Command(BaseCommand):
    help = "Measure scan throughput, hash robustness, matching at bank scale, classifiers, text, pages and metrics."

    def add_arguments(self, parser):
        parser.add_argument("--only", default=",".join(s for s in SECTIONS if s not in NAMED_ONLY),
                            help=f"comma-separated: {', '.join(SECTIONS)} ({', '.join(sorted(NAMED_ONLY))} only "
                                 "when named)")
        parser.add_argument("--images", type=int, default=1000, help="throughput: images through one worker")
        parser.add_argument("--bank-sizes", default="1000000,10000000", help="matching: PDQ bank sizes")
        parser.add_argument("--matching-kinds", default="random,clustered,uniform-clusters",
                            help="matching: kinds of generated bank (random, clustered, uniform-clusters)")
        parser.add_argument("--retro-items", type=int, default=10_000_000,
                            help="retro: stored items (eight PDQ orientations each) searched by new bank hashes")
        parser.add_argument("--retro-hashes", type=int, default=10_000, help="retro: new bank hashes")
        parser.add_argument("--retro-db-items", type=int, default=200_000,
                            help="retro: items in the database for the end-to-end figure of the job")
        parser.add_argument("--bank-entries", type=int, default=200_000, help="banks: rows in the browsed bank")
        parser.add_argument("--cases", type=int, default=100_000, help="pages: open cases for the page timings")
        parser.add_argument("--signals-per-case", type=int, default=10, help="pages: signals of each open case")
        parser.add_argument("--metrics-items", type=int, default=1_000_000, help="metrics: items over a year")
        parser.add_argument("--metrics-cases", type=int, default=200_000, help="metrics: decided cases over a year")
        parser.add_argument("--decisions", type=int, default=1000,
                            help="decisions: open known-material cases a rule decides")
        parser.add_argument("--decisions-batch", type=int, default=100,
                            help="decisions: cases per apply_rules call (as a triage job hands them over)")
        parser.add_argument("--month-scale", type=float, default=1.0,
                            help="month: share of a tenth of a month (1.0: 1 M accounts, 50,000 groups, 3 M hash-only "
                                 "items, 30,000 files); 0.01 runs in about a minute")
        parser.add_argument("--month-workers", type=int, default=2, help="month: worker processes")
        parser.add_argument("--investigations-scale", type=float, default=1.0,
                            help="investigations: share of 1 M accounts, 100,000 groups, 10 M items and 1 M cases")
        parser.add_argument("--investigations-reuse", action="store_true",
                            help="investigations: measure again on the data a previous run generated")
        parser.add_argument("--shared-index-rows", type=int, default=2_000_000,
                            help="shared_index: PDQ hashes in the index the worker processes hold")
        parser.add_argument("--shared-index-workers", default="1,2,4", help="shared_index: worker counts")

    def handle(self, *args, only, **options):
        chosen = [s.strip() for s in only.split(",") if s.strip()]
        unknown = set(chosen) - set(SECTIONS)
        if unknown:
            raise CommandError(f"unknown sections: {', '.join(sorted(unknown))}")
        if not os.environ.get("REDIS_URL"):
            PrivateRedis(settings.PRIVATE_REDIS_SOCKET).start()
        for section in [s for s in SECTIONS if s in chosen]:
            self.stdout.write(self.style.MIGRATE_HEADING(f"\n== {section}"))
            started = time.perf_counter()
            getattr(self, f"bench_{section}")(self.out, **options)
            self.stdout.write(f"({section}: {time.perf_counter() - started:.0f} s)")

    def out(self, line):
        self.stdout.write(line)

    def bench_throughput(self, out, images, **options):
        from reviewconsole.devtools.benchmarks import throughput
        throughput.run(out, images=images)

    def bench_robustness(self, out, **options):
        from reviewconsole.devtools.benchmarks import robustness
        robustness.run(out)

    def bench_matching(self, out, bank_sizes, matching_kinds, **options):
        from reviewconsole.devtools.benchmarks import matching
        matching.run(out, sizes=tuple(int(s) for s in bank_sizes.split(",") if s),
                     kinds=tuple(k for k in matching_kinds.split(",") if k))

    def bench_retro(self, out, retro_items, retro_hashes, retro_db_items, **options):
        from reviewconsole.devtools.benchmarks import retro
        retro.run(out, items=retro_items, queries=retro_hashes, e2e_items=retro_db_items)

    def bench_classifiers(self, out, **options):
        from reviewconsole.devtools.benchmarks import classifiers
        classifiers.run(out)

    def bench_video(self, out, **options):
        from reviewconsole.devtools.benchmarks import video
        video.run(out)

    def bench_text(self, out, **options):
        from reviewconsole.devtools.benchmarks import text
        text.run(out)

    def bench_banks(self, out, bank_entries, **options):
        from reviewconsole.devtools.benchmarks import bank_pages
        bank_pages.run(out, entries=bank_entries)

    def bench_metrics(self, out, metrics_items, metrics_cases, **options):
        from reviewconsole.devtools.benchmarks import metrics as benchmarks
        benchmarks.run(out, items=metrics_items, cases=metrics_cases)

    def bench_decisions(self, out, decisions, decisions_batch, **options):
        from reviewconsole.devtools.benchmarks import decisions as benchmark
        benchmark.run(out, decisions=decisions, batch=decisions_batch)

    def bench_month(self, out, month_scale, month_workers, **options):
        from reviewconsole.devtools.benchmarks import month
        month.run(out, scale=month_scale, workers=month_workers)

    def bench_shared_index(self, out, shared_index_rows, shared_index_workers, **options):
        from reviewconsole.devtools.benchmarks import shared_index
        shared_index.run(out, rows=shared_index_rows,
                         workers=tuple(int(n) for n in shared_index_workers.split(",") if n))

    def bench_investigations(self, out, investigations_scale, investigations_reuse, **options):
        from reviewconsole.devtools.benchmarks import investigations
        investigations.run(out, scale=investigations_scale, reuse=investigations_reuse)

    def bench_pages(self, out, cases, signals_per_case, **options):
        """Server time of the queue and case pages with `cases` open cases and their signals."""
        from reviewconsole.devtools.benchmarks import pages
        pages.run(out, cases=cases, signals_per_case=signals_per_case)
