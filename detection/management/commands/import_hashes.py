from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from detection.banks import import_hashes
from detection.models import HashType


class Command(BaseCommand):
    help = "Add hashes from a file to a bank, creating the bank if it does not exist."

    def add_arguments(self, parser):
        parser.add_argument("bank")
        parser.add_argument("file")
        parser.add_argument("--type", choices=HashType.values, dest="hash_type",
                            help="hash type of every line (txt), or of rows without a type column (csv/tsv)")
        parser.add_argument("--format", choices=["txt", "csv", "tsv"], help="default: from the file name")

    def handle(self, *args, bank, file, hash_type, format, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"no such file: {file}")
        fmt = format or {".csv": "csv", ".tsv": "tsv"}.get(path.suffix.lower(), "txt")
        if fmt == "txt" and not hash_type:
            raise CommandError("a txt file holds bare hashes: say which with --type")
        with open(path, encoding="utf-8", errors="replace", newline="") as stream, \
                tqdm(unit=" lines", disable=options["verbosity"] == 0, mininterval=0.5) as bar:
            summary = import_hashes(bank, stream, fmt=fmt, hash_type=hash_type, progress=bar.update)
        for line in summary["errors"][:20]:
            self.stderr.write(line)
        self.stdout.write(
            f"bank {summary['bank']}{' (created)' if summary['created'] else ''}: "
            f"{summary['added']} added, {summary['duplicates']} already present, "
            f"{summary['error_count']} rejected of {summary['read']} read"
        )
        if summary["error_count"] and not summary["added"] and not summary["duplicates"]:
            raise CommandError("no valid hash in the file")
