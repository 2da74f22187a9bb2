"""Which review queue a case belongs in, and how urgent it is, from its signals."""

from django.conf import settings
from django.utils import timezone

from cases.models import Case, ReviewQueue, RoutingRule
from detection.models import SignalKind

KNOWN_MATERIAL = "known-material"
NEW_CONTENT = "new-content"
TEXT = "text-surfaces"
USER_REPORTS = "user-reports"
ESCALATIONS = "escalations"

# First match wins: the strongest kind of evidence decides where a case is reviewed.
ROUTES = [
    (SignalKind.HASH_MATCH, KNOWN_MATERIAL),
    (SignalKind.CLASSIFIER, NEW_CONTENT),
    (SignalKind.BEHAVIOUR, NEW_CONTENT),
    (SignalKind.TEXT, TEXT),
    (SignalKind.USER_REPORT, USER_REPORTS),
]


def route(signal_kinds):
    kinds = set(signal_kinds)
    for kind, slug in ROUTES:
        if kind in kinds:
            return slug
    return USER_REPORTS


def route_signals(signals):
    """The queue for a case with these signals: the admins' routing rules first, then the defaults."""
    signals = list(signals)
    for rule in RoutingRule.objects.filter(enabled=True).select_related("queue"):
        if any(rule.matches(s) for s in signals):
            return rule.queue
    return get_queue(route(s.kind for s in signals))


def priority(signals):
    """0..100: the strongest signal's severity x confidence, plus a little for corroboration."""
    signals = list(signals)
    if not signals:
        return 0
    strongest = max(s.severity * s.score for s in signals)
    reports = sum(1 for s in signals if s.kind == SignalKind.USER_REPORT)
    corroboration = min(10, 2 * (len(signals) - 1)) + min(10, 3 * reports)
    return int(min(100, round(strongest + corroboration)))


def get_queue(slug):
    """The queue with this slug; re-created with a plain name if an admin deleted it."""
    queue, _ = ReviewQueue.objects.get_or_create(
        slug=slug, defaults={"name": slug.replace("-", " ").capitalize(), "senior_only": slug == ESCALATIONS}
    )
    return queue


def aged(base, created_at, now):
    hours = max(0.0, (now - created_at).total_seconds() / 3600)
    return int(min(100, base + hours * settings.PRIORITY_AGING_PER_HOUR))


def age_priorities(now=None):
    """Raise the priority of waiting cases with their age (the rq cron runs this every few minutes)."""
    now = now or timezone.now()
    changed = 0
    for pk, base, created_at, priority in Case.objects.filter(closed_at__isnull=True).values_list(
            "pk", "base_priority", "created_at", "priority").iterator(chunk_size=2000):
        new = aged(base, created_at, now)
        if new != priority:
            changed += Case.objects.filter(pk=pk).update(priority=new)
    return changed
