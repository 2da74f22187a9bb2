"""Reviewer wellness: how much a reviewer has been exposed to today, against the budget."""

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent


@dataclass
class Exposure:
    reveals: int
    minutes: int

    @property
    def over_budget(self):
        return (self.reveals >= settings.EXPOSURE_REVEALS_PER_DAY
                or self.minutes >= settings.EXPOSURE_MINUTES_PER_DAY)


def exposure_today(user, now=None):
    """Reveals today, and minutes spent on cases (from each claim to the decision that followed)."""
    now = now or timezone.now()
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    events = AuditEvent.objects.filter(actor=user, created_at__gte=start).filter(
        action__in=[Event.EVIDENCE_REVEALED, Event.CASE_CLAIMED, Event.CASE_RELEASED, Event.CASE_BAN, Event.CASE_REMOVE,
                    Event.CASE_ESCALATE, Event.CASE_REPORT, Event.CASE_DISMISS]
    ).order_by("created_at").values_list("action", "case_id", "created_at")
    reveals, seconds, claimed = 0, 0.0, {}
    for action, case_id, at in events:
        if action == Event.EVIDENCE_REVEALED:
            reveals += 1
        elif action == Event.CASE_CLAIMED:
            claimed[case_id] = at
        elif case_id in claimed:
            seconds += (at - claimed.pop(case_id)).total_seconds()
    seconds += sum((now - at).total_seconds() for at in claimed.values())  # the case open now
    return Exposure(reveals=reveals, minutes=int(seconds // 60))
