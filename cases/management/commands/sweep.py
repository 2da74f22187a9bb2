from django.conf import settings
from django.core.management.base import BaseCommand
from tqdm import tqdm

from cases.sweep import pending_count, sweep


class Command(BaseCommand):
    help = "Re-enqueue pending work (scans, classification, triage, deliveries, filings, analysis) older than an age."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=None, metavar="SECONDS",
                            help="default: SWEEP_AFTER_SECONDS")

    def handle(self, *args, older_than, **options):

        age = settings.SWEEP_AFTER_SECONDS if older_than is None else older_than
        with tqdm(total=pending_count(age), unit="job", disable=options["verbosity"] == 0) as bar:
            counts = sweep(age, progress=bar.update)
        labels = {"items": "items to scan", "classify": "items to classify", "signals": "signals to triage",
                  "enforcements": "enforcement deliveries", "reports": "CyberTipline filings",
                  "subjects": "accounts and groups to analyse",
                  "retro": "retroactive matching runs (new bank entries, actioned accounts' media)"}
        self.stdout.write("re-enqueued " + ", ".join(f"{counts.get(key, 0)} {label}" for key, label in labels.items()))
