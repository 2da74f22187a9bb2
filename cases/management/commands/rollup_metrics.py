"""Roll up daily metrics: the days that may have changed, or a given span again."""

from datetime import UTC, date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from cases import metrics


class Command(BaseCommand):
    help = "Recompute the daily metrics behind the dashboard and the transparency report."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int,
                            help="recompute the last N days (default: the days that may have changed)")
        parser.add_argument("--since", help="recompute every day from this date (YYYY-MM-DD) to today")

    def handle(self, *args, days=None, since=None, **options):
        today = timezone.now().astimezone(UTC).date()
        if since:
            try:
                start = date.fromisoformat(since)
            except ValueError:
                raise CommandError(f"--since: not a date: {since!r}") from None
            span = [start + timedelta(days=n) for n in range((today - start).days + 1)]
        elif days:
            span = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
        else:
            span = metrics.days_to_roll()
        rows = 0
        for day in tqdm(span, unit="day", disable=len(span) < 5):
            rows += metrics.rollup_day(day)
        self.stdout.write(f"rolled up {len(span)} days ({rows} figures)")
