from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.db.models.signals import post_migrate


class CasesConfig(AppConfig):
    name = "cases"
    verbose_name = "Cases and review"

    def ready(self):
        from cases.cybertip.checks import cybertip_reporter
        from cases.roles import ensure_roles

        # After every migrate: the role groups exist with exactly their permissions.
        post_migrate.connect(ensure_roles, sender=self, dispatch_uid="cases.ensure_roles")
        # Always under production settings; in development and tests only with `check --deploy`.
        checks.register(cybertip_reporter, "cybertip", deploy=bool(settings.DEBUG or settings.TESTING))
