"""Which review queue a case belongs in, and how urgent it is, from its signals."""

from django.conf import settings
from django.utils import timezone

from cases.models import Case, ReviewQueue, RoutingRule
from detection.detectors.risk import TEEN, TEEN_CONTACT, age_group
from detection.models import Account, SignalKind, UserReport

KNOWN_MATERIAL = "known-material"
NEW_CONTENT = "new-content"
TEXT = "text-surfaces"
USER_REPORTS = "user-reports"
ESCALATIONS = "escalations"
APPEALS = "appeals"  # appeals against decisions (cases.models.appeals): their own page, not the case queue

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
    return Router().route(signals)


class Router:
    """The routing rules and queues read once for many cases: triage re-ranks a burst's cases together."""

    def __init__(self):
        self.rules = list(RoutingRule.objects.filter(enabled=True).select_related("queue"))
        self.queues = {}

    def route(self, signals):
        signals = list(signals)
        for rule in self.rules:
            if any(rule.matches(s) for s in signals):
                return rule.queue
        return self.queue(route(s.kind for s in signals))

    def queue(self, slug):
        if slug not in self.queues:
            self.queues[slug] = get_queue(slug)
        return self.queues[slug]


# Known material that travelled widely is more urgent: every hour it stays up it reaches more chats.
# The raise grows with the chats reached and saturates at SPREAD_FULL_CHATS, past any platform's
# per-forward cap (a handful of chats), so only a chain of forwards gets there. It is capped below the
# corroboration allowance (20): spread speaks to urgency, not certainty, so a widely forwarded weak
# match (severity 68 x 0.6) still ranks below an exact match that went nowhere.
SPREAD_PRIORITY_MAX = 15
SPREAD_FULL_CHATS = 100
# Without a chat count the forwards stand in for it; the platform's "forwarded many times" mark with no
# count counts as many chats as a chain of five forwards.
SPREAD_MARK_CHATS = 25


def spread_raise(signals):
    """(points, chats) for the widest-travelled known-material match among the signals: 0..15."""
    widest = 0
    for signal in signals:
        spread = (signal.details or {}).get("spread") if signal.kind == SignalKind.HASH_MATCH else None
        if not isinstance(spread, dict):
            continue
        chats = spread.get("chats")
        if not isinstance(chats, int) or isinstance(chats, bool):
            forwards = spread.get("forwards")
            chats = forwards if isinstance(forwards, int) and not isinstance(forwards, bool) else 0
        if spread.get("forwarded_many") is True:
            chats = max(chats, SPREAD_MARK_CHATS)
        widest = max(widest, chats)
    return round(SPREAD_PRIORITY_MAX * min(1.0, widest / SPREAD_FULL_CHATS)), widest


def priority(signals):
    """0..100: the strongest signal's severity x confidence, plus a little for corroboration, plus up
    to SPREAD_PRIORITY_MAX for known material that travelled widely."""
    signals = list(signals)
    if not signals:
        return 0
    strongest = max(s.severity * s.score for s in signals)
    # A muted reporter's report is kept but corroborates nothing (its weight is in its score already).
    counted = [s for s in signals if not (s.details or {}).get("muted")]
    reports = sum(1 for s in counted if s.kind == SignalKind.USER_REPORT)
    corroboration = min(10, 2 * max(0, len(counted) - 1)) + min(10, 3 * reports)
    spread, _ = spread_raise(signals)
    return int(min(100, round(strongest + corroboration + spread)))


# What makes a minor account a possible victim rather than a subject to enforce against.
VICTIM_REPORT_REASONS = ("nudity", "csam", "child_exploitation", "sextortion", "grooming")
MINOR_VICTIM_PRIORITY = 85  # above every case resting on one user report


def minor_victim_reason(case):
    """Why this case's account may be a child victim, or "": a minor (by the platform's age band)
    reported for nudity or sexual content, or shown in flagged images, or contacted by an adult
    whom the console flagged for contacting teens."""
    account = case.account
    if account is None or age_group(account.age_band) != TEEN:
        return ""
    reports = UserReport.objects.filter(account=account, reason__in=VICTIM_REPORT_REASONS)
    if adults_in_contact(account).exists():
        return f"a minor ({account.age_band}) reported or contacted by an adult flagged for contacting teens"
    if reports.exists():
        return f"a minor ({account.age_band}) reported for {reports.first().reason.replace('_', ' ')}"
    if case.signals.filter(kind=SignalKind.CLASSIFIER).exists():
        return f"a minor ({account.age_band}) shown in images flagged as sexual content"
    return ""


def adults_in_contact(account):
    """Accounts on the other side: reporters of this account that carry a teen-contact signal."""
    reporters = UserReport.objects.filter(account=account).values_list("reporter", flat=True)
    return Account.objects.filter(external_id__in=reporters, signals__detector=TEEN_CONTACT).distinct()


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
