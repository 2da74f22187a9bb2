from django.core.management.base import BaseCommand
from tqdm import tqdm

from cases.actions.preservation import verify
from detection.models import Item


class Command(BaseCommand):
    help = "Re-hash stored evidence against the SHA-256 taken at intake; raise alerts on mismatch."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None)

    def handle(self, *args, limit, **options):
        total = Item.objects.filter(purged_at__isnull=True).exclude(storage_path="").count()
        with tqdm(total=min(total, limit or total), unit="item", disable=options["verbosity"] == 0) as bar:
            checked, alerts = verify(limit=limit, progress=bar.update)
        self.stdout.write(f"checked {checked} items, {alerts} new integrity alerts")
        if alerts:
            self.stderr.write(self.style.ERROR("integrity alerts raised: see the cases and admin"))
