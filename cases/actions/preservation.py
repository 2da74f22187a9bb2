"""Evidence preservation: legal holds, the retention purge, chain-of-custody checks, destruction.

Purging destroys the evidence bytes (original and renditions) but keeps the item's row, hashes and
audit trail: what was purged stays on record, the content does not. A held item is never purged.

Destroying evidence on a law-enforcement request or legal instruction takes two seniors, each with
a verified second factor: one records the request and its legal basis (`request_destruction`), a
different one approves it (`approve_destruction`), and only then are the holds lifted and the bytes
destroyed. The retention purge of evidence that is not held (`purge_expired`) needs neither.
"""

import hashlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from cases.actions import ActionError
from cases.models import CyberTipFile, DestructionRequest, IntegrityAlert, LegalHold, LegalRequestStatus
from detection.models import EvidenceOnHold, Item
from reviewconsole import storage
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

log = logging.getLogger(__name__)
DESTROY_PERM = "cases.file_cybertip"  # seniors and admins: those who file CyberTipline reports
MIN_REASON_CHARS = 20
MIN_REFERENCE_CHARS = 5
Pending = DestructionRequest.Status.PENDING


def hold_for_report(report, start=None):
    """Hold every file of a CyberTipline report for CYBERTIP_HOLD_DAYS from `start` (extends, never shortens)."""
    hold_for_reports([report], start=start)


def hold_for_reports(reports, start=None):
    """hold_for_report for many reports, with a statement of each kind for all of them."""
    until = (start or timezone.now()) + timedelta(days=settings.CYBERTIP_HOLD_DAYS)
    files = list(CyberTipFile.objects.filter(report__in=reports).order_by("report_id", "pk")
                 .values_list("report_id", "item_id"))
    if not files:
        return
    holds = {}
    for hold in LegalHold.objects.filter(report__in=reports, lifted_at__isnull=True).order_by("pk"):
        holds.setdefault((hold.report_id, hold.item_id), hold)
    fresh, shorter = [], []
    for report_id, item_id in files:
        hold = holds.get((report_id, item_id))
        if hold is None:
            holds[(report_id, item_id)] = hold = LegalHold(item_id=item_id, report_id=report_id,
                                                           reason=LegalHold.Reason.CYBERTIP, until=until,
                                                           note=f"CyberTipline report {report_id}")
            fresh.append(hold)
        elif hold.pk and hold.until < until:
            shorter.append(hold.pk)
    LegalHold.objects.bulk_create(fresh)
    if shorter:
        LegalHold.objects.filter(pk__in=shorter).update(until=until)


def hold_for_decision(decision, items, start=None):
    """Hold the items a policy preserves without a report, as long as a report's would be; returns the hold ids."""
    until = (start or timezone.now()) + timedelta(days=settings.CYBERTIP_HOLD_DAYS)
    return [hold.pk for hold in LegalHold.objects.bulk_create([
        LegalHold(item=item, reason=LegalHold.Reason.MANUAL, until=until, placed_by=decision.decided_by,
                  note=f"decision {decision.pk}: {decision.reason.code}") for item in items])]


def _remove_bytes(item):
    if item.storage_path:  # a text or hash-only item has none: "" would name the evidence root itself
        storage.delete_original(item.storage_path)
    for rendition in storage.derivative_path(item.pk, "x").parent.glob(f"{item.pk}-*"):
        rendition.unlink(missing_ok=True)


def purge(item, *, actor=None, reason):
    """Destroy an item's evidence bytes, keeping its record. Refused while a hold is active."""
    with transaction.atomic():
        item = Item.objects.select_for_update().get(pk=item.pk)
        if item.purged_at:
            return False
        if LegalHold.active().filter(item=item).exists():
            raise EvidenceOnHold(f"item {item.pk} is under legal hold")
        Item.objects.filter(pk=item.pk).update(purged_at=timezone.now())
        audit(actor, Event.EVIDENCE_PURGED, item=item, object_type="item", object_id=item.pk,
              details={"reason": reason, "sha256": item.sha256, "md5": item.md5, "size": item.size})
        transaction.on_commit(lambda: _remove_bytes(item))
    return True


def purgeable(now=None):
    """Items past retention with no active hold and no open case that still needs them."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.EVIDENCE_RETENTION_DAYS)
    held = LegalHold.active(now).values("item_id")
    in_open_case = Item.objects.filter(signals__case__isnull=False, signals__case__closed_at__isnull=True).values("pk")
    return (Item.objects.filter(purged_at__isnull=True, created_at__lt=cutoff, hash_only=False)
            .exclude(storage_path="").exclude(pk__in=held).exclude(pk__in=in_open_case))


def purge_expired(progress=None, dry_run=False):
    """The retention job. Returns how many items' evidence it destroyed (or would)."""
    count = 0
    for item in purgeable().iterator(chunk_size=500):
        if dry_run or purge(item, reason=f"retention: older than {settings.EVIDENCE_RETENTION_DAYS} days"):
            count += 1
        if progress:
            progress(1)
    if count:
        log.info("retention purged the evidence of %s items", count)
    return count


def sha256_of_file(relative):
    digest = hashlib.sha256()
    with open(storage.root() / relative, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def raise_alert(item, problem, found=""):
    with transaction.atomic():
        if IntegrityAlert.objects.filter(item=item, problem=problem, resolved_at__isnull=True).exists():
            return None
        alert = IntegrityAlert.objects.create(item=item, problem=problem, found_sha256=found)
        audit(None, Event.EVIDENCE_INTEGRITY_ALERT, item=item, object_type="integrityalert", object_id=alert.pk,
              details={"problem": problem, "expected": item.sha256, "found": found})
    log.error("evidence integrity: item %s: %s", item.pk, problem)
    return alert


def verify(limit=None, progress=None):
    """Chain of custody: re-hash stored evidence, least recently checked first. Returns (checked, alerts).

    Only items whose bytes are held: a hash-only item never had a file, so none can be missing."""
    queryset = (Item.objects.filter(purged_at__isnull=True, hash_only=False).exclude(storage_path="")
                .order_by(F("verified_at").asc(nulls_first=True), "pk"))
    checked = alerts = 0
    for item in (queryset[:limit] if limit else queryset).iterator(chunk_size=200):
        try:
            found = sha256_of_file(item.storage_path)
        except FileNotFoundError:
            alerts += bool(raise_alert(item, "evidence file missing"))
        else:
            if found != item.sha256:
                alerts += bool(raise_alert(item, "SHA-256 of stored bytes differs from intake", found))
            else:
                Item.objects.filter(pk=item.pk).update(verified_at=timezone.now())
        checked += 1
        if progress:
            progress(1)
    return checked, alerts


def _second_factor_verified(user):
    """True when the user's session passed its second factor: django_otp's middleware gives
    request.user an `is_verified()`; a user object that did not come through it has none."""
    is_verified = getattr(user, "is_verified", None)
    return callable(is_verified) and bool(is_verified())


def _check_senior(user, doing):
    if getattr(user, "pk", None) is None or not user.has_perm(DESTROY_PERM):
        raise ActionError(f"Only a senior who files CyberTipline reports may {doing}.")
    if not _second_factor_verified(user):
        raise ActionError(f"Verify your second factor to {doing}.")


def _basis(request_obj):
    """The legal basis of a destruction, in words for the record."""
    parts = []
    if request_obj.legal_request_id:
        parts.append(f"legal request {request_obj.legal_request_id} ({request_obj.legal_request.reference})")
    if request_obj.reference:
        parts.append(request_obj.reference)
    return "; ".join(parts)


def request_destruction(user, item, *, reason, reference="", legal_request=None, ip=None):
    """The first senior records a law-enforcement request or legal instruction to destroy an item's evidence.

    Destroys nothing: a different senior approves it with `approve_destruction`. Needs a verified
    second factor, the legal basis (a verified `legal_request`, or the instruction's written
    `reference`, at least MIN_REFERENCE_CHARS long) and a `reason` of at least MIN_REASON_CHARS
    characters. Returns the DestructionRequest; raises ActionError, recording nothing, otherwise.
    """
    _check_senior(user, "request the destruction of evidence")
    reason, reference = (reason or "").strip(), (reference or "").strip()[:200]
    if len(reason) < MIN_REASON_CHARS:
        raise ActionError(f"Say why the evidence is to be destroyed, in at least {MIN_REASON_CHARS} characters.")
    if legal_request is None and len(reference) < MIN_REFERENCE_CHARS:
        raise ActionError("Link the law-enforcement request, or write the legal instruction's reference "
                          "(agency and number).")
    if legal_request is not None and (legal_request.verified_at is None
                                      or legal_request.status == LegalRequestStatus.REJECTED):
        raise ActionError("Only a legal request a liaison has verified can be the basis of a destruction.")
    with transaction.atomic():
        item = Item.objects.select_for_update().get(pk=item.pk)
        if item.purged_at:
            raise ActionError(f"The evidence of item {item.pk} was already destroyed.")
        if DestructionRequest.objects.filter(item=item, status=Pending).exists():
            raise ActionError(f"A destruction of item {item.pk} is already waiting for a second senior.")
        request_obj = DestructionRequest.objects.create(item=item, legal_request=legal_request, reference=reference,
                                                        reason=reason, requested_by=user)
        holds = list(LegalHold.active().filter(item=item).values_list("pk", flat=True))
        audit(user, Event.EVIDENCE_DESTRUCTION_REQUESTED, item=item, object_type="destructionrequest",
              object_id=request_obj.pk, ip=ip,
              details={"requested_by": user.get_username(), "reason": reason, "reference": reference,
                       "legal_request": legal_request.pk if legal_request else None, "active_holds": holds})
    return request_obj


def _pending(request_id):
    request_obj = (DestructionRequest.objects.select_for_update(of=("self",))
                   .select_related("item", "requested_by", "legal_request").filter(pk=request_id).first())
    if request_obj is None or request_obj.status != Pending:
        raise ActionError("This destruction request was already decided.")
    return request_obj


def approve_destruction(user, request_id, *, note="", ip=None):
    """A second senior approves a destruction request: the item's holds are lifted and its bytes destroyed.

    Refused (ActionError, nothing changed) without a verified second factor, to the senior who
    recorded the request, for a request already decided, and when a hold was placed on the item
    after the request was recorded (a new preservation needs a new request). Both seniors are named
    on the lifted holds, the approval's audit row and the purge's.
    """
    _check_senior(user, "approve the destruction of evidence")
    with transaction.atomic():
        request_obj = _pending(request_id)
        if request_obj.requested_by_id == user.pk:
            raise ActionError("A second senior must approve: you recorded this request yourself.")
        item = request_obj.item
        newer = LegalHold.active().filter(item=item, placed_at__gt=request_obj.requested_at).first()
        if newer is not None:
            raise ActionError(f"A {newer.get_reason_display().lower()} hold was placed on item {item.pk} after "
                              "this request was recorded: reject it and record a new request if it still stands.")
        now = timezone.now()
        requester, approver = request_obj.requested_by.get_username(), user.get_username()
        both = f"requested by {requester}, approved by {approver}"
        basis = _basis(request_obj)
        lifted = LegalHold.active(now).filter(item=item).update(
            lifted_by=user, lifted_at=now, lift_reason=f"destroyed on {basis} ({both}): {request_obj.reason}"[:500])
        DestructionRequest.objects.filter(pk=request_obj.pk).update(
            status=DestructionRequest.Status.APPROVED, decided_by=user, decided_at=now, decision_note=note[:500])
        audit(user, Event.EVIDENCE_DESTRUCTION_APPROVED, item=item, object_type="destructionrequest",
              object_id=request_obj.pk, ip=ip,
              details={"requested_by": requester, "approved_by": approver, "reason": request_obj.reason,
                       "reference": request_obj.reference, "legal_request": request_obj.legal_request_id,
                       "holds_lifted": lifted, "note": note[:500]})
        purge(item, actor=user, reason=f"destroyed on request {request_obj.pk}: {basis} ({both})")
    return DestructionRequest.objects.get(pk=request_obj.pk)


def reject_destruction(user, request_id, *, note, ip=None):
    """A senior (a second one, or the requester withdrawing it) rejects a destruction request; nothing is destroyed."""
    _check_senior(user, "decide a destruction request")
    note = (note or "").strip()
    if not note:
        raise ActionError("Say why the destruction request is rejected.")
    with transaction.atomic():
        request_obj = _pending(request_id)
        DestructionRequest.objects.filter(pk=request_obj.pk).update(
            status=DestructionRequest.Status.REJECTED, decided_by=user, decided_at=timezone.now(),
            decision_note=note[:500])
        audit(user, Event.EVIDENCE_DESTRUCTION_REJECTED, item=request_obj.item, object_type="destructionrequest",
              object_id=request_obj.pk, ip=ip,
              details={"requested_by": request_obj.requested_by.get_username(), "rejected_by": user.get_username(),
                       "reference": request_obj.reference, "legal_request": request_obj.legal_request_id,
                       "note": note[:500]})
    return DestructionRequest.objects.get(pk=request_obj.pk)


def purge_job():
    return purge_expired()


def verify_job():
    return verify(limit=settings.EVIDENCE_VERIFY_BATCH)
