from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cases.actions import ActionError
from cases.actions.enrolment import issue_enrolment_code


class Command(BaseCommand):
    help = "Print a one-time code that lets USER enrol an authenticator (shown once; earlier codes stop working)."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        try:
            self.stdout.write(issue_enrolment_code(None, user))
        except ActionError as exc:
            raise CommandError(str(exc)) from exc
