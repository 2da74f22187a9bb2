from django.core.management.base import BaseCommand, CommandError

from cases.models import ApiToken


class Command(BaseCommand):
    help = "Issue a platform API token and print it once on stdout (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(f"a token named {name!r} exists; revoke it in admin or choose another name")
        _, key = ApiToken.issue(name)
        self.stdout.write(key)
