from django.core.management.base import BaseCommand
from tqdm import tqdm

from cases import demo


class Command(BaseCommand):
    help = "Load synthetic demo data (images, a demo bank, accounts, groups, reports) and demo logins."

    def handle(self, *args, **options):
        users = demo.ensure_users()
        with tqdm(total=demo.total_steps(), unit="img", disable=options["verbosity"] == 0) as bar:
            loaded = demo.load(progress=bar.update)
        self.stdout.write("demo data loaded" if loaded else "demo data already present")
        self.stdout.write("Demo logins (user / password / role):")
        for username, password, role, _ in users:
            self.stdout.write(f"  {username:<11} {password:<22} {role or 'admin (superuser)'}")
        self.stdout.write("Revealing evidence, the admin and the job dashboard need two-factor sign-in: each user\n"
                          "enrols an authenticator app (any TOTP app) at /account/two-factor/ on first use.")
