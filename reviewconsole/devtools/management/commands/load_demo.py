from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from reviewconsole.devtools import demo


class Command(BaseCommand):
    help = "Load synthetic demo data (images, a demo bank, accounts, groups, reports) and demo logins."

    def handle(self, *args, **options):
        if not (settings.DEBUG or settings.TESTING):
            raise CommandError("load_demo creates logins with published passwords: it runs only with DEBUG or "
                               "TESTING on, never with production settings.")
        users = demo.ensure_users()
        with tqdm(total=demo.total_steps(), unit="img", disable=options["verbosity"] == 0) as bar:
            loaded = demo.load(progress=bar.update)
        self.stdout.write("demo data loaded" if loaded else "demo data already present")
        self.stdout.write("Demo logins (user / password / role):")
        for username, password, role, _ in users:
            labels = {None: "admin (superuser)", "officer": f"law-enforcement officer, {demo.DEMO_AGENCY}"}
            label = labels.get(role, role)
            self.stdout.write(f"  {username:<11} {password:<22} {label}")
        self.stdout.write("Revealing evidence, the admin, the job dashboard and legal requests need two-factor\n"
                          "sign-in: each user enrols an authenticator app (any TOTP app) on first use.")
