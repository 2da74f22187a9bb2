"""Enforcements after the decision: staff ask for a delivery to be tried again, platforms confirm.

The outbox rows themselves are written by decisions (cases.actions.decisions) and delivered by
cases.dispatch; these actions only move a row's delivery state, each with its audit row in the
same transaction, and hand the delivery to the dispatch queue after the commit.
"""

from django.db import transaction
from django.utils import timezone

from cases.actions import ActionError
from cases.models import Enforcement, EnforcementStatus
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit
from reviewconsole.queueing import enqueue

CONFIRMATION_RESULTS = ("applied", "failed")
# Delivered rows need nothing more; cancelled ones belong to an undone decision and must never go out.
NOT_RETRIED = (EnforcementStatus.DELIVERED, EnforcementStatus.CANCELLED)


def retry_delivery(user, enforcement_ids, *, ip=None):
    """Put undelivered enforcements back in line and queue a delivery attempt for each, now.

    Delivered and cancelled rows are left alone. Returns the ids queued again (one audit row each).
    """
    with transaction.atomic():
        rows = list(
            Enforcement.objects.select_for_update(of=("self",)).select_related("decision__case")
            .filter(pk__in=list(enforcement_ids)).exclude(status__in=NOT_RETRIED).order_by("pk")
        )
        ids = [row.pk for row in rows]
        Enforcement.objects.filter(pk__in=ids).update(status=EnforcementStatus.PENDING, next_attempt_at=None)
        for row in rows:
            audit(user, Event.ENFORCEMENT_RETRIED, case=row.decision.case, object_type="enforcement",
                  object_id=row.pk, ip=ip,
                  details={"action": row.action, "target": row.target, "previous_status": row.status,
                           "attempts": row.attempts, "last_error": row.last_error[:500]})
            enqueue("cases.dispatch.dispatch_enforcement", row.pk, queue="dispatch")
    return ids


def confirm_enforcement(token, enforcement_id, *, result, detail="", ip=None):
    """A platform (by its API token) says it applied an enforcement, or could not.

    The first confirmation stands; a repeat changes nothing and writes no audit row. Returns the
    enforcement as it now is; Enforcement.DoesNotExist for an unknown id, ActionError for a bad result.
    """
    if result not in CONFIRMATION_RESULTS:
        raise ActionError("The result must be applied or failed.")
    detail = str(detail)[:2000]
    with transaction.atomic():
        enforcement = Enforcement.objects.select_related("decision").get(pk=enforcement_id)
        confirmed = Enforcement.objects.filter(pk=enforcement.pk, confirmed_at__isnull=True).update(
            confirmed_at=timezone.now(), confirmation={"result": result, "detail": detail})
        if confirmed:
            audit(None, Event.ENFORCEMENT_CONFIRMED, case=enforcement.decision.case,
                  actor_label=f"api:{token.name}", object_type="enforcement", object_id=enforcement.pk,
                  details={"result": result, "detail": detail}, ip=ip)
    return Enforcement.objects.select_related("platform", "decision__reason").get(pk=enforcement.pk)
