"""Appeals (DSA Art. 20): receiving a user's appeal, claiming it, and upholding or overturning the decision.

Who may decide: a reviewer who took no part in the decision (neither its decider nor its second
reviewer), and a senior when the policy is one the law makes reportable. Overturning reverses the
decision through the outbox (`reverse_decision`: unban and restore what was delivered, cancel what was
not, bank entries it added removed, their outcome recorded), counts against the decision in QA, and
leaves a note on the subject. A CyberTipline report already filed is never retracted: the overturn is
recorded against it. Either outcome is told to the platform by an `appeal_outcome` outbox row.
"""

import hashlib
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from cases import routing
from cases.actions import ActionError
from cases.actions.decisions import reverse_decision
from cases.models import (
    APPEAL_OUTCOME,
    REPORTABLE,
    Action,
    Appeal,
    AppealStatus,
    Case,
    CyberTipReport,
    Decision,
    Enforcement,
    EnforcementStatus,
    QAReview,
    StatementOfReasons,
    SubjectNote,
)
from cases.statements import RESTRICTING, statement_for
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit
from reviewconsole.queueing import enqueue

APPEALS = routing.APPEALS  # the review queue's slug
LIMIT_DAYS = 30
# What the user is told, whatever the policy: never how material was found, never a reviewer's words.
NOTICE = {
    AppealStatus.UPHELD: "Your appeal was reviewed by a member of the safety team who did not take the original "
                         "decision. The decision stands.",
    AppealStatus.OVERTURNED: "Your appeal was reviewed by a member of the safety team who did not take the original "
                             "decision. The decision was reversed and the restriction it imposed has been lifted.",
}


class AppealRefused(Exception):
    """The platform's appeal is not taken; `status` is the HTTP answer (404, 409, 429)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def fingerprint(text, attachment=""):
    return hashlib.sha256(f"{text}\x00{attachment}".encode()).hexdigest()


def find_enforcement(*, enforcement_id=None, statement_id=None):
    """The enforcement row the platform names, by its id or by its statement of reasons' id; AppealRefused 404."""
    row = None
    if enforcement_id is not None:
        row = Enforcement.objects.select_related("decision").filter(pk=enforcement_id).first()
    elif statement_id:
        try:
            uid = uuid.UUID(statement_id.removeprefix("sor-"))
        except ValueError:
            uid = None
        statement = StatementOfReasons.objects.filter(uid=uid).first() if uid else None
        if statement is not None:
            row = (Enforcement.objects.select_related("decision")
                   .filter(decision=statement.decision_id, action=statement.action, target=statement.target)
                   .order_by("pk").first())
    if row is None:
        raise AppealRefused(404, "no such enforcement")
    return row


def submit_appeal(enforcement, *, text, attachment="", appellant="", via="", ip=None, now=None):
    """Receive a user's appeal of the decision behind `enforcement`. Returns (appeal, created).

    A retry (same decision, account, statement and attachment) returns the appeal first received.
    Refused with AppealRefused: what restricts nothing (400), a decision already reversed or too old,
    a second appeal of the same decision by the same account (409), too many appeals from one account (429).
    """
    now = now or timezone.now()
    appellant = appellant or enforcement.target
    mark = fingerprint(text, attachment)
    decision = enforcement.decision
    existing = Appeal.objects.filter(decision=decision, appellant=appellant).first()
    if existing is not None:
        return _repeat(existing, mark), False
    if enforcement.action not in RESTRICTING:
        raise AppealRefused(400, "only a ban or a removal can be appealed")
    if decision.undone_at or decision.rolled_back_at or enforcement.status == EnforcementStatus.CANCELLED:
        raise AppealRefused(409, "this decision was already reversed: there is nothing to appeal")
    if now - decision.created_at > timedelta(days=settings.APPEAL_WINDOW_DAYS):
        raise AppealRefused(409, f"decisions can be appealed within {settings.APPEAL_WINDOW_DAYS} days")
    recent = Appeal.objects.filter(appellant=appellant, received_at__gte=now - timedelta(days=LIMIT_DAYS)).count()
    if recent >= settings.APPEAL_LIMIT_PER_30_DAYS:
        raise AppealRefused(429, f"this account has lodged {recent} appeals in the last {LIMIT_DAYS} days; "
                                 f"at most {settings.APPEAL_LIMIT_PER_30_DAYS} are taken")
    statement = statement_for(enforcement)  # what the user was told, made now if it was not yet
    try:
        with transaction.atomic():
            appeal = Appeal.objects.create(
                decision=decision, enforcement=enforcement, statement_of_reasons=statement,
                queue=routing.get_queue(APPEALS), appellant=appellant, text=text, attachment=attachment,
                fingerprint=mark, received_via=via[:100], received_at=now)
            audit(None, Event.APPEAL_RECEIVED, case=decision.case, ip=ip, object_type="appeal", object_id=appeal.pk,
                  actor_label=via, details={"decision": decision.pk, "enforcement": enforcement.pk,
                                            "appellant": appellant})
    except IntegrityError:  # the same appeal, sent twice at once: the first one stands
        existing = Appeal.objects.filter(decision=decision, appellant=appellant).first()
        if existing is None:
            raise
        return _repeat(existing, mark), False
    return appeal, True


def _repeat(existing, mark):
    if existing.fingerprint == mark:
        return existing
    if existing.open:
        raise AppealRefused(409, f"this account's appeal of this decision (#{existing.pk}) is still being reviewed")
    raise AppealRefused(409, f"this account's appeal of this decision (#{existing.pk}) was already decided: "
                             f"{existing.get_status_display().lower()}")


# Who decides ------------------------------------------------------------------------------------

def is_reportable(decision):
    policy = decision.policy
    return bool(policy and policy.reportable) or \
        CyberTipReport.objects.filter(decision=decision).exists()


def why_not(user, appeal):
    """Why `user` may not decide this appeal, or "" when they may."""
    decision = appeal.decision
    if not user.has_perm("cases.review_case"):
        return "You do not review cases."
    if user.pk in (decision.decided_by_id, decision.second_reviewer_id):
        return "You took part in the decision under appeal: someone else reviews it."
    if is_reportable(decision) and not user.has_perm("cases.review_escalated"):
        return "Appeals of child-exploitation decisions are reviewed by a senior."
    return ""


def eligible(user):
    """The open appeals `user` may take, oldest first."""
    appeals = Appeal.objects.filter(status=AppealStatus.RECEIVED).exclude(
        Q(decision__decided_by=user) | Q(decision__second_reviewer=user))
    if not user.has_perm("cases.review_escalated"):
        appeals = appeals.exclude(Q(decision__policy__category__in=list(REPORTABLE))
                                  | Q(decision__cybertip_report__isnull=False))
    return appeals.order_by("received_at", "pk")


# Claims -----------------------------------------------------------------------------------------

def claim_appeal(user, appeal_id, *, ip=None, now=None):
    """Take an open appeal (free, or its claim lapsed). Returns the appeal; ActionError when it cannot be."""
    now = now or timezone.now()
    with transaction.atomic():
        appeal = (Appeal.objects.select_for_update(of=("self",)).select_related("decision__policy")
                  .filter(pk=appeal_id).first())
        if appeal is None or not appeal.open:
            raise ActionError("This appeal is not waiting for review.")
        if appeal.assigned_to_id == user.pk:
            return appeal
        if appeal.assigned_to_id and appeal.lease_expires_at and appeal.lease_expires_at > now:
            raise ActionError("Someone else is reviewing this appeal.")
        refusal = why_not(user, appeal)
        if refusal:
            raise ActionError(refusal)
        appeal.assigned_to, appeal.lease_expires_at = user, now + timedelta(seconds=settings.CASE_LEASE_SECONDS)
        appeal.save(update_fields=["assigned_to", "lease_expires_at"])
        audit(user, Event.APPEAL_CLAIMED, case=appeal.decision.case, ip=ip, object_type="appeal", object_id=appeal.pk)
    return appeal


def claim_next_appeal(user, *, ip=None):
    """The oldest open appeal this user may decide, claimed for them; None when there is none."""
    now = timezone.now()
    free = eligible(user).filter(Q(assigned_to__isnull=True) | Q(assigned_to=user) | Q(lease_expires_at__lt=now))
    for pk in free.values_list("pk", flat=True)[:20]:
        try:
            return claim_appeal(user, pk, ip=ip, now=now)
        except ActionError:
            continue  # taken meanwhile: try the next
    return None


def release_appeal(user, appeal_id, *, ip=None):
    with transaction.atomic():
        released = Appeal.objects.filter(pk=appeal_id, assigned_to=user, status=AppealStatus.RECEIVED).update(
            assigned_to=None, lease_expires_at=None)
        if released:
            appeal = Appeal.objects.select_related("decision").get(pk=appeal_id)
            audit(user, Event.APPEAL_RELEASED, case=appeal.decision.case, ip=ip, object_type="appeal",
                  object_id=appeal_id)
    return bool(released)


# The outcome ------------------------------------------------------------------------------------

def decide_appeal(user, appeal_id, *, outcome, reason, ip=None):
    """Uphold or overturn an appeal the user has claimed, with a reason. Returns (appeal, created).

    A repeat of the same outcome by the same reviewer (a double submit) returns the appeal as decided.
    """
    if outcome not in (AppealStatus.UPHELD, AppealStatus.OVERTURNED):
        raise ActionError("Choose to uphold or to overturn the decision.")
    reason = (reason or "").strip()
    if not reason:
        raise ActionError("Say why: the reason is recorded with the outcome.")
    if len(reason) > 5000:
        raise ActionError("Keep the reason under 5000 characters.")
    now = timezone.now()
    with transaction.atomic():
        appeal = (Appeal.objects.select_for_update(of=("self",))
                  .select_related("decision__policy", "decision__case", "enforcement")
                  .filter(pk=appeal_id).first())
        if appeal is None:
            raise ActionError("No such appeal.")
        if not appeal.open:
            if appeal.status == outcome and appeal.decided_by_id == user.pk:
                return appeal, False
            raise ActionError(f"This appeal was already decided: {appeal.get_status_display().lower()}.")
        refusal = why_not(user, appeal)
        if refusal:
            raise ActionError(refusal)
        if appeal.assigned_to_id != user.pk:
            raise ActionError("Claim the appeal before deciding it.")
        decision = appeal.decision
        details = {"decision": decision.pk, "reason": reason}
        if outcome == AppealStatus.OVERTURNED:
            details.update(_overturn(user, appeal, decision, reason, now, ip=ip))
        appeal.status, appeal.decided_by, appeal.decided_at, appeal.reason = outcome, user, now, reason
        details["notices"] = _notify(appeal, now)  # reads the outcome set above; kept with it below
        appeal.assigned_to, appeal.lease_expires_at, appeal.outcome = None, None, details
        appeal.save(update_fields=["status", "decided_by", "decided_at", "reason", "assigned_to", "lease_expires_at",
                                   "outcome"])
        event = Event.APPEAL_OVERTURNED if outcome == AppealStatus.OVERTURNED else Event.APPEAL_UPHELD
        audit(user, event, case=decision.case, ip=ip, object_type="appeal", object_id=appeal.pk, details=details)
    return appeal, True


def _overturn(user, appeal, decision, reason, now, *, ip=None):
    """Reverse the decision and record the overturn where it counts; returns what was done."""
    done = {}
    decision = Decision.objects.select_for_update(of=("self",)).get(pk=decision.pk)
    if decision.undone_at or decision.rolled_back_at:
        done["already_reversed"] = True
    else:
        # The appeal's reviewer has judged the case: it stays closed, not back to the queue.
        done.update(reverse_decision(user, decision, now, why=f"overturned on appeal #{appeal.pk}: {reason}"[:500],
                                     ip=ip, reopen=False))
        Case.objects.filter(pk=decision.case_id).update(resolution="overturned on appeal")
    done["qa"] = _count_in_qa(user, appeal, decision, reason, now)
    kept = []
    for report in CyberTipReport.objects.filter(decision=decision).exclude(status=CyberTipReport.Status.CANCELLED):
        # Never retracted: the duty to report stood when it was filed. The overturn is recorded against it.
        kept.append(report.pk)
        audit(user, Event.APPEAL_REPORT_KEPT, case=decision.case, ip=ip, object_type="cybertip_report",
              object_id=report.pk, details={"appeal": appeal.pk, "status": report.status,
                                            "ncmec_report_id": report.ncmec_report_id})
    done["reports_kept"] = kept
    case = decision.case
    words = f"Decision #{decision.pk} overturned on appeal #{appeal.pk}: {reason}"
    if kept:
        words += f" CyberTipline report{'s' if len(kept) > 1 else ''} #{', #'.join(map(str, kept))} stay filed."
    SubjectNote.objects.create(account_id=case.account_id, group_id=case.group_id, case=case, author=user,
                               text=words)
    return done


def _count_in_qa(user, appeal, decision, reason, now):
    """An overturn is a disagreement with the decision: it counts in QA agreement for its decider or rule.
    A blind judgement already given stands."""
    note = f"Overturned on appeal #{appeal.pk}: {reason}"[:2000]
    qa, created = QAReview.objects.get_or_create(decision=decision, defaults={
        "reviewer": user, "action": Action.DISMISS, "agrees": False, "note": note, "reviewed_at": now})
    if created:
        return "recorded"
    if qa.reviewed_at is None:
        QAReview.objects.filter(pk=qa.pk, reviewed_at__isnull=True).update(
            reviewer=user, action=Action.DISMISS, agrees=False, note=note, reviewed_at=now)
        return "recorded"
    return "already reviewed"


def notice_payload(appeal):
    statement = appeal.statement_of_reasons
    return {"appeal": {
        "id": appeal.pk, "outcome": appeal.status, "message": NOTICE[appeal.status],
        "decided_at": appeal.decided_at.isoformat(), "statement_of_reasons": statement.puid if statement else None,
        "enforcement": appeal.enforcement_id,
    }}


def _notify(appeal, now):
    """The outcome notice to the platform the appealed enforcement went to (or to be pulled)."""
    platform = appeal.enforcement.platform
    row, created = Enforcement.objects.get_or_create(
        decision=appeal.decision, action=APPEAL_OUTCOME, target=appeal.appellant, platform=platform,
        defaults={"payload": notice_payload(appeal)})
    if created and platform is not None and platform.webhook_url:
        enqueue("cases.dispatch.dispatch_enforcement", row.pk, queue="dispatch")
    return [row.pk]
