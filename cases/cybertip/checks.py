"""System checks of the CyberTipline settings (`manage.py check`)."""

from django.conf import settings
from django.core.checks import Error

from cases.cybertip.documents import PLACEHOLDER_REPORTER_EMAIL, reporter_email_problem


def cybertip_reporter(app_configs=None, **kwargs):
    """With CyberTipline credentials set, reports would go out: their reporter address must be real.

    Registered in `CasesConfig.ready()`: always under production settings, with `--deploy` otherwise."""
    if not settings.CYBERTIP_USERNAME:
        return []
    problem = reporter_email_problem(production=True)
    if problem is None:
        return []
    return [Error(
        problem,
        hint=(f"Set CYBERTIP_REPORTER_EMAIL to the address NCMEC and law enforcement should write to; "
              f"{PLACEHOLDER_REPORTER_EMAIL} is only the development default. Reports stop (needs attention) "
              f"instead of being filed while it is wrong."),
        id="cases.E001",
    )]
