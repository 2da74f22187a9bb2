from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from detection.intake import submit_file
from detection.models import ItemKind

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".m4v"}


class Command(BaseCommand):
    help = "Submit local files as items of an account (and group), as the platform API would."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+")
        parser.add_argument("--account", required=True)
        parser.add_argument("--group")

    def handle(self, *args, files, account, group, **options):

        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise CommandError(f"not a file: {', '.join(missing)}")
        for name in tqdm(files, unit="file", disable=len(files) < 10 or options["verbosity"] == 0):
            path = Path(name)
            if path.stat().st_size > settings.MAX_UPLOAD_BYTES:
                self.stderr.write(f"{name}: skipped, larger than {settings.MAX_UPLOAD_BYTES} bytes")
                continue
            kind = ItemKind.VIDEO if path.suffix.lower() in VIDEO_SUFFIXES else ItemKind.IMAGE
            item = submit_file(path.read_bytes(), account_id=account, group_id=group, kind=kind,
                               original_name=path.name, actor_label="cli:ingest")
            self.stdout.write(f"{name}: item {item.pk} {item.status}")
