from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CasesConfig(AppConfig):
    name = "cases"
    verbose_name = "Cases and review"

    def ready(self):
        from cases.roles import ensure_roles

        # After every migrate: the role groups exist with exactly their permissions.
        post_migrate.connect(ensure_roles, sender=self, dispatch_uid="cases.ensure_roles")
