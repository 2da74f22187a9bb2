from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from detection.banks import HashFileError, import_hashes, import_vpdq
from detection.models import HashType

VPDQ = "vpdq"


class Command(BaseCommand):
    help = "Add hashes from a file to a bank, creating the bank if it does not exist."

    def add_arguments(self, parser):
        parser.add_argument("bank")
        parser.add_argument("file")
        parser.add_argument("--type", choices=[*HashType.values, VPDQ], dest="hash_type",
                            help="hash type of every line (txt), or of rows without a type column (csv/tsv); "
                                 "vpdq: the per-frame output of Meta's vPDQ for one video")
        parser.add_argument("--format", choices=["txt", "csv", "tsv"], help="default: from the file name")
        parser.add_argument("--label", default="",
                            help="vpdq: the video's reference, used as its media key (default: the file name)")

    def handle(self, *args, bank, file, hash_type, format, label, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"no such file: {file}")
        if hash_type == VPDQ:
            return self._vpdq(bank, path, label, options["verbosity"])
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

    def _vpdq(self, bank, path, label, verbosity):
        media_key = label or path.stem
        with open(path, encoding="utf-8", errors="replace", newline="") as stream, \
                tqdm(unit=" frames", disable=verbosity == 0, mininterval=0.5) as bar:
            try:
                summary = import_vpdq(bank, stream, media_key=media_key[:64] if not label else label,
                                      progress=bar.update)
            except HashFileError as exc:
                raise CommandError(str(exc)) from None
        for line in summary["errors"][:20]:
            self.stderr.write(line)
        self.stdout.write(
            f"bank {summary['bank']}{' (created)' if summary['created'] else ''}, video {summary['media_key']}: "
            f"{summary['added']} frames added, {summary['duplicates']} already present, "
            f"{summary['low_quality']} below the quality floor, {summary['error_count']} rejected "
            f"of {summary['read']} read"
        )
        if not summary["added"] and not summary["duplicates"]:
            raise CommandError("no usable frame hash in the file")
