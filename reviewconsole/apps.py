from django.apps import AppConfig


class ReviewConsoleConfig(AppConfig):
    name = "reviewconsole"
    verbose_name = "Review console plumbing"
