"""Case-stage jobs: triage signals into cases."""

from .actions import attach_signals


def triage_signals(signal_ids):
    """Idempotent: signals already triaged are skipped."""
    return [case.pk for case in attach_signals(signal_ids)]
