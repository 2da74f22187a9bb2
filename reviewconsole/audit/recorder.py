"""The one writer of audit rows. Call it inside the transaction of the change it records."""

from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent


def audit(actor, event, *, case=None, item=None, object_type="", object_id="", details=None, ip=None,
          actor_label=None):
    """Record `event` (an Event) by `actor` (a user, or None for the system). Unknown names are refused."""
    event = Event(event)  # ValueError for a name that is not in the list
    has_user = getattr(actor, "pk", None) is not None
    return AuditEvent.objects.create(
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
