"""Viewing evidence: the audit row that must exist before any evidence byte leaves."""

from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit


def record_evidence_view(user, item, *, revealed, ip=None):
    """The audit row that must exist before any evidence byte leaves the server."""
    return audit(user, Event.EVIDENCE_REVEALED if revealed else Event.EVIDENCE_VIEWED_BLURRED, item=item,
                 object_type="item", object_id=item.pk, ip=ip)
