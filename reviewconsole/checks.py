"""System checks of the deployment: `manage.py check --deploy` fails on a setting production must not have."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def demo_off(app_configs, **kwargs):
    """DEMO loads published logins and synthetic data and relaxes the SECRET_KEY rule: never in production."""
    if getattr(settings, "DEMO", False):
        return [Error("DEMO is on: demo logins and data are not for a deployment.",
                      hint="Unset DEMO (DEMO=0) in the production environment.", id="reviewconsole.E001")]
    return []
