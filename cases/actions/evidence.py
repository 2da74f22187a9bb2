"""Viewing evidence: the audit row that must exist before any evidence byte leaves."""

from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit


def record_evidence_view(user, item, *, revealed, ip=None, rendition=""):
    """The audit row that must exist before any evidence byte leaves the server.

    `rendition` names what a reveal showed when it was not the reveal rendition: "filtered-unblurred" for
    a "no blur" preference (unblurred, but toned or reduced and small). It is a reveal for access, audit
    and the exposure budget; the details say it was not the unfiltered file."""
    return audit(user, Event.EVIDENCE_REVEALED if revealed else Event.EVIDENCE_VIEWED_BLURRED, item=item,
                 object_type="item", object_id=item.pk, ip=ip,
                 details={"rendition": rendition} if rendition else None)
