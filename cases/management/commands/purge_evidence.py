from django.conf import settings
from django.core.management.base import BaseCommand
from tqdm import tqdm

from cases.actions.preservation import purge_expired, purgeable


class Command(BaseCommand):
    help = "Destroy the evidence bytes of items past EVIDENCE_RETENTION_DAYS that no hold or open case needs."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count, destroy nothing")

    def handle(self, *args, dry_run, **options):
        with tqdm(total=purgeable().count(), unit="item", disable=options["verbosity"] == 0) as bar:
            count = purge_expired(progress=bar.update, dry_run=dry_run)
        verb = "would purge" if dry_run else "purged"
        self.stdout.write(f"{verb} the evidence of {count} items older than {settings.EVIDENCE_RETENTION_DAYS} days")
