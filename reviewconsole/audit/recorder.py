"""The one writer of audit rows. Call it inside the transaction of the change it records."""

from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent


def _row(actor, event, *, case=None, item=None, object_type="", object_id="", details=None, ip=None,
         actor_label=None):
    event = Event(event)  # ValueError for a name that is not in the list
    has_user = getattr(actor, "pk", None) is not None
    return AuditEvent(
        actor=actor if has_user else None,
        actor_label=actor_label or (actor.get_username() if has_user else "system"),
        action=event.value,
        case=case,
        item=item,
        object_type=object_type,
        object_id=str(object_id),
        details=details or {},
        ip=ip,
    )


def audit(actor, event, *, case=None, item=None, object_type="", object_id="", details=None, ip=None,
          actor_label=None):
    """Record `event` (an Event) by `actor` (a user, or None for the system). Unknown names are refused."""
    row = _row(actor, event, case=case, item=item, object_type=object_type, object_id=object_id, details=details,
               ip=ip, actor_label=actor_label)
    row.save()
    return row


def audit_many(entries):
    """Record many events with one statement: each entry is (actor, event, {audit's keyword arguments}).

    Every name is checked before anything is written, so one unknown name records none of them."""
    rows = [_row(actor, event, **fields) for actor, event, fields in entries]
    return AuditEvent.objects.bulk_create(rows) if rows else []
