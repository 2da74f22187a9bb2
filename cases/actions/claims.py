"""Claims: a reviewer takes the next case, or a given one, and gives it back."""

from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from cases.actions import ActionError
from cases.models import Case, CaseStatus
from cases.selectors import reviewable_queues
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit


def _claimable(now):
    return Q(closed_at__isnull=True) & (
        Q(status=CaseStatus.OPEN) | Q(status=CaseStatus.CLAIMED, lease_expires_at__lt=now)
    )


def _claim_fields(user, now):
    return {
        "status": CaseStatus.CLAIMED,
        "assigned_to": user,
        "lease_expires_at": now + timedelta(seconds=settings.CASE_LEASE_SECONDS),
        "version": F("version") + 1,
        "updated_at": now,
    }


def claim_next_case(user, *, queue=None, ip=None):
    """Claim the most urgent claimable case for this reviewer, or return None when none waits.

    A reviewer who already holds a live claim gets that case back rather than a second one.
    """
    now = timezone.now()
    held = Case.objects.filter(assigned_to=user, status=CaseStatus.CLAIMED, lease_expires_at__gt=now,
                               closed_at__isnull=True).order_by("-priority", "created_at").first()
    if held:
        return held
    allowed = reviewable_queues(user)
    if queue is not None:
        allowed = allowed.filter(pk=queue.pk)
    candidates = Case.objects.filter(_claimable(now), queue__in=list(allowed.values_list("pk", flat=True)))
    candidates = candidates.order_by("-priority", "created_at")
    if connection.vendor == "postgresql":
        with transaction.atomic():
            case = candidates.select_for_update(skip_locked=True).first()
            if case is None:
                return None
            Case.objects.filter(pk=case.pk).update(**_claim_fields(user, now))
            case.refresh_from_db()
            audit(user, Event.CASE_CLAIMED, case=case, ip=ip)
            return case
    # SQLite: no row locks; the conditional UPDATE lets exactly one claimer win each case.
    for pk in list(candidates.values_list("pk", flat=True)[:25]):
        with transaction.atomic():
            if Case.objects.filter(_claimable(now), pk=pk).update(**_claim_fields(user, now)):
                case = Case.objects.get(pk=pk)
                audit(user, Event.CASE_CLAIMED, case=case, ip=ip)
                return case
    return None


def claim_case(user, case_id, *, ip=None):
    now = timezone.now()
    with transaction.atomic():
        case = Case.objects.select_related("queue").get(pk=case_id)
        if case.queue not in reviewable_queues(user):
            raise ActionError("This case is in a queue you do not review.")
        if case.assigned_to_id == user.pk and case.status == CaseStatus.CLAIMED:
            return case
        if not Case.objects.filter(_claimable(now), pk=case_id).update(**_claim_fields(user, now)):
            holder = case.assigned_to.get_username() if case.assigned_to else "nobody"
            raise ActionError("This case is closed." if case.closed_at else f"This case is claimed by {holder}.")
        audit(user, Event.CASE_CLAIMED, case=case, ip=ip)
    case.refresh_from_db()
    return case


def release_case(user, case_id, *, ip=None):
    with transaction.atomic():
        released = Case.objects.filter(pk=case_id, assigned_to=user, status=CaseStatus.CLAIMED).update(
            status=CaseStatus.OPEN, assigned_to=None, lease_expires_at=None, version=F("version") + 1,
            updated_at=timezone.now(),
        )
        if released:
            audit(user, Event.CASE_RELEASED, case=Case.objects.get(pk=case_id), ip=ip)
    return bool(released)


def release_all_claims(user, *, reason, except_case=None, ip=None):
    """Give back every case the user holds (sign-out, session expiry, undo): nothing stays locked
    to someone who is not looking at it. Returns the ids released."""
    with transaction.atomic():
        held = Case.objects.select_for_update().filter(assigned_to=user, status=CaseStatus.CLAIMED,
                                                         closed_at__isnull=True)
        if except_case is not None:
            held = held.exclude(pk=except_case)
        ids = list(held.values_list("pk", flat=True))
        if ids:
            Case.objects.filter(pk__in=ids).update(status=CaseStatus.OPEN, assigned_to=None, lease_expires_at=None,
                                                   version=F("version") + 1, updated_at=timezone.now())
            for pk in ids:
                audit(user, Event.CASE_RELEASED, case=Case(pk=pk), ip=ip, details={"why": reason})
    return ids


def take_over(senior, case_id, *, to_user=None, ip=None):
    """A senior takes a claimed case over, or hands it to another reviewer who may review its queue."""
    if not senior.has_perm("cases.review_escalated"):
        raise ActionError("Only a senior reviewer can take over or reassign a case.")
    target = to_user or senior
    now = timezone.now()
    with transaction.atomic():
        case = Case.objects.select_for_update(of=("self",)).select_related("queue", "assigned_to").filter(
            pk=case_id).first()
        if case is None or case.closed_at:
            raise ActionError("Only an open case can be taken over.")
        if case.status == CaseStatus.AWAITING_SECOND:
            raise ActionError("This case waits for a second reviewer: approve it or send it back instead.")
        reviews = target.is_active and target.has_perm("cases.review_case")
        if not reviews or case.queue not in reviewable_queues(target):
            raise ActionError(f"{target.get_username()} does not review this queue.")
        previous = case.assigned_to
        Case.objects.filter(pk=case.pk).update(**_claim_fields(target, now))
        audit(senior, Event.CASE_REASSIGNED if to_user else Event.CASE_TAKEN_OVER, case=case, ip=ip,
              details={"from": previous.get_username() if previous else None, "to": target.get_username()})
    case.refresh_from_db()
    return case


def release_signed_out(senior, claims, *, signed_in, ip=None):
    """A senior gives back the cases held by reviewers who have signed out (no live session).

    `claims` maps each case id to the version the senior saw on the roster; `signed_in` holds the ids of
    the users with a live session now. A case whose claim changed meanwhile (another version: re-claimed,
    taken over, decided) or whose holder is signed in is skipped. Returns (released ids, skipped ids)."""
    if not senior.has_perm("cases.review_escalated"):
        raise ActionError("Only a senior reviewer can release other reviewers' cases.")
    released, skipped = [], []
    with transaction.atomic():
        held = {case.pk: case for case in Case.objects.select_for_update(of=("self",)).select_related(
            "assigned_to").filter(pk__in=list(claims), status=CaseStatus.CLAIMED, closed_at__isnull=True)}
        for pk, version in sorted(claims.items()):
            case = held.get(pk)
            if case is None or case.version != version or case.assigned_to_id is None \
                    or case.assigned_to_id in signed_in:
                skipped.append(pk)
                continue
            if not Case.objects.filter(pk=pk, version=version, status=CaseStatus.CLAIMED).update(
                    status=CaseStatus.OPEN, assigned_to=None, lease_expires_at=None, version=F("version") + 1,
                    updated_at=timezone.now()):
                skipped.append(pk)
                continue
            released.append(pk)
            audit(senior, Event.CASE_RELEASED, case=case, ip=ip,
                  details={"why": "holder signed out", "holder": case.assigned_to.get_username()})
        audit(senior, Event.CASES_RELEASED_SIGNED_OUT, ip=ip, details={"released": released, "skipped": skipped})
    return released, skipped
