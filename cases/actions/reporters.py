"""Reporters: their standing worked out from the cases their reports fed, and seniors muting or trusting them."""

from collections import Counter

from django.db import transaction
from django.db.models import Q
from django.db.models.fields.json import KT
from django.utils import timezone

from cases.actions import ActionError
from detection.models import Reporter, Signal, SignalKind, UserReport
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

UPHELD = ("ban", "remove", "report")  # a case's resolution when an enforcing policy decided it
DISMISSED = "dismiss"
MUTE_REASON_MAX = 500


def refresh_reporter_standing(now=None):
    """Recount every reporter's decided, upheld and dismissed reports from the cases their reports fed.

    Safe to run twice: it recomputes from the cases, never adds to what was there. A report counts
    once its case is closed (an undone decision reopens the case, and the report stops counting).
    Returns the number of Reporter rows whose counts changed."""
    now = now or timezone.now()
    counts = {}
    rows = (Signal.objects.filter(kind=SignalKind.USER_REPORT, case__closed_at__isnull=False)
            .filter(Q(case__resolution__in=UPHELD) | Q(case__resolution=DISMISSED))
            .values_list(KT("details__reporter"), "case__resolution"))
    for external_id, resolution in rows.iterator(chunk_size=5000):
        if not external_id:
            continue
        tally = counts.setdefault(external_id, Counter())
        tally["reports"] += 1
        tally["upheld" if resolution in UPHELD else "dismissed"] += 1
    with transaction.atomic():
        known = set(Reporter.objects.values_list("external_id", flat=True))
        seen = set(UserReport.objects.values_list("reporter", flat=True).distinct()) | set(counts)
        Reporter.objects.bulk_create([Reporter(external_id=e) for e in sorted(seen - known) if e],
                                     ignore_conflicts=True, batch_size=1000)
        changed = []
        for reporter in Reporter.objects.select_for_update().iterator(chunk_size=2000):
            tally = counts.get(reporter.external_id, Counter())
            new = (tally["reports"], tally["upheld"], tally["dismissed"])
            if (reporter.reports, reporter.upheld, reporter.dismissed) != new or reporter.standing_at is None:
                reporter.reports, reporter.upheld, reporter.dismissed = new
                reporter.standing_at = now
                changed.append(reporter)
        Reporter.objects.bulk_update(changed, ["reports", "upheld", "dismissed", "standing_at"], batch_size=1000)
    return len(changed)


def _require_senior(user):
    if not user.has_perm("cases.review_escalated"):
        raise ActionError("Only a senior reviewer can mute or trust a reporter.")


def _change(user, reporter_id, event, ip, details=None, **fields):
    with transaction.atomic():
        reporter = Reporter.objects.select_for_update().filter(pk=reporter_id).first()
        if reporter is None:
            raise ActionError("No such reporter.")
        before = {name: getattr(reporter, name) for name in fields}
        if before == fields:
            return reporter, False  # already so: a repeated click changes nothing and records nothing
        for name, value in fields.items():
            setattr(reporter, name, value)
        reporter.save(update_fields=list(fields))
        audit(user, event, object_type="reporter", object_id=reporter.pk, ip=ip,
              details={"reporter": reporter.external_id, **(details or {})})
    return reporter, True


def mute_reporter(user, reporter_id, *, reason, ip=None):
    """Their reports are still recorded and shown, but weigh nothing and open no case alone."""
    _require_senior(user)
    reason = (reason or "").strip()
    if not reason:
        raise ActionError("Say why this reporter is muted.")
    if len(reason) > MUTE_REASON_MAX:
        raise ActionError(f"Keep the reason under {MUTE_REASON_MAX} characters.")
    with transaction.atomic():
        current = Reporter.objects.select_for_update().filter(pk=reporter_id).first()
        if current is not None and current.muted_at:
            return current, False
        return _change(user, reporter_id, Event.REPORTER_MUTED, ip, {"reason": reason},
                       muted_at=timezone.now(), muted_by=user, mute_reason=reason)


def unmute_reporter(user, reporter_id, *, ip=None):
    _require_senior(user)
    return _change(user, reporter_id, Event.REPORTER_UNMUTED, ip, muted_at=None, muted_by=None, mute_reason="")


def trust_reporter(user, reporter_id, *, ip=None):
    """A trusted flagger: their reports weigh more."""
    _require_senior(user)
    with transaction.atomic():
        current = Reporter.objects.select_for_update().filter(pk=reporter_id).first()
        if current is not None and current.trusted_at:
            return current, False
        return _change(user, reporter_id, Event.REPORTER_TRUSTED, ip, trusted_at=timezone.now(), trusted_by=user)


def untrust_reporter(user, reporter_id, *, ip=None):
    _require_senior(user)
    return _change(user, reporter_id, Event.REPORTER_UNTRUSTED, ip, trusted_at=None, trusted_by=None)
