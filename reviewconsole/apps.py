from django.apps import AppConfig


class ReviewConsoleConfig(AppConfig):
    name = "reviewconsole"
    verbose_name = "Review console plumbing"

    def ready(self):
        from reviewconsole import checks  # noqa: F401 - registers the deployment checks
