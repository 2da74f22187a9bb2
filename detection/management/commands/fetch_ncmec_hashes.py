from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from detection.exchange import ExchangeError, fetch, parse_since


class Command(BaseCommand):
    help = "Fetch new, changed and deleted entries from NCMEC's hash-sharing API into a bank."

    def add_arguments(self, parser):
        parser.add_argument("--bank", default=settings.NCMEC_HASH_BANK, help="bank to fill (default: %(default)s)")
        parser.add_argument("--since", help="start here instead of the stored checkpoint: a date, date-time "
                                            "or seconds since 1970 (UTC)")

    def handle(self, *args, bank, since, **options):
        try:
            start = parse_since(since) if since else None
            with tqdm(unit=" entries", disable=options["verbosity"] == 0, mininterval=0.5) as bar:
                counts = fetch(bank, since=start, progress=bar.update)
        except ExchangeError as exc:
            raise CommandError(f"{exc} (nothing of the failed page was stored; the next run continues "
                               "from the last page stored)") from None
        skipped = {k: v for k, v in counts.items() if k.startswith("skipped_")}
        self.stdout.write(
            f"bank {counts['bank']}: {counts.get('entries', 0)} entries, {counts.get('added', 0)} hashes added, "
            f"{counts.get('deleted_entries', 0)} deleted upstream ({counts.get('removed', 0)} hashes removed), "
            f"{counts.get('invalid', 0)} invalid, {counts.get('pages', 0)} pages"
            + (", skipped: " + ", ".join(f"{k[8:]} {v}" for k, v in sorted(skipped.items())) if skipped else "")
        )
