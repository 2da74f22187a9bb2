from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from detection.models import TermCategory
from detection.termlists import read_csv, upsert_terms


class Command(BaseCommand):
    help = ("Load a text-term list from CSV (header: category,term,match,weight,note); "
            "existing terms are updated, so loading the same file twice changes nothing.")

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--replace-category", action="append", default=[], dest="replace",
                            choices=[*TermCategory.values, "all"],
                            help="delete terms of this category that are not in the file (repeatable; 'all')")
        parser.add_argument("--strict", action="store_true", help="load nothing if any row is bad")

    def handle(self, *args, file, replace, strict, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"no such file: {file}")
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as stream, \
                tqdm(unit=" rows", disable=options["verbosity"] == 0, mininterval=0.5) as bar:
            result = read_csv(stream, progress=bar.update)
        for line, message in result.errors[:50]:
            self.stderr.write(f"line {line}: {message}")
        if len(result.errors) > 50:
            self.stderr.write(f"... and {len(result.errors) - 50} more bad rows")
        if strict and result.errors:
            raise CommandError(f"{len(result.errors)} bad rows; nothing loaded (--strict)")
        if not result.rows:
            raise CommandError("no valid term in the file")
        categories = TermCategory.values if "all" in replace else replace
        counts = upsert_terms(result.rows, replace_categories=categories)
        self.stdout.write(
            f"{counts['created']} created, {counts['updated']} updated, {counts['unchanged']} unchanged, "
            f"{counts['deleted']} deleted, {len(result.errors)} bad rows"
        )
