"""Evidence preservation: legal holds, the retention purge, chain-of-custody checks, destruction.

Purging destroys the evidence bytes (original and renditions) but keeps the item's row, hashes and
audit trail: what was purged stays on record, the content does not. A held item is never purged.
"""

import hashlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from cases.models import IntegrityAlert, LegalHold
from detection.models import EvidenceOnHold, Item
from reviewconsole import storage
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

log = logging.getLogger(__name__)


def hold_for_report(report, start=None):
    """Hold every file of a CyberTipline report for CYBERTIP_HOLD_DAYS from `start` (extends, never shortens)."""
    until = (start or timezone.now()) + timedelta(days=settings.CYBERTIP_HOLD_DAYS)
    for report_file in report.files.all():
        hold = LegalHold.objects.filter(item_id=report_file.item_id, report=report, lifted_at__isnull=True).first()
        if hold is None:
            LegalHold.objects.create(item_id=report_file.item_id, report=report, reason=LegalHold.Reason.CYBERTIP,
                                     until=until, note=f"CyberTipline report {report.pk}")
        elif hold.until < until:
            LegalHold.objects.filter(pk=hold.pk).update(until=until)


def hold_for_decision(decision, items, start=None):
    """Hold the items a policy preserves without a report, as long as a report's would be; returns the hold ids."""
    until = (start or timezone.now()) + timedelta(days=settings.CYBERTIP_HOLD_DAYS)
    return [LegalHold.objects.create(item=item, reason=LegalHold.Reason.MANUAL, until=until,
                                     placed_by=decision.decided_by,
                                     note=f"decision {decision.pk}: {decision.reason.code}").pk for item in items]


def _remove_bytes(item):
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
    return (Item.objects.filter(purged_at__isnull=True, created_at__lt=cutoff).exclude(storage_path="")
            .exclude(pk__in=held).exclude(pk__in=in_open_case))


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
    """Chain of custody: re-hash stored evidence, least recently checked first. Returns (checked, alerts)."""
    queryset = (Item.objects.filter(purged_at__isnull=True).exclude(storage_path="")
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


def destroy(user, item, *, reason, ip=None):
    """Law enforcement asked for destruction: lift every hold with the reason, then purge."""
    if not reason.strip():
        raise ValueError("a destruction needs a recorded reason")
    with transaction.atomic():
        lifted = LegalHold.active().filter(item=item).update(lifted_by=user, lifted_at=timezone.now(),
                                                             lift_reason=reason[:500])
        audit(user, Event.EVIDENCE_DESTRUCTION_REQUESTED, item=item, object_type="item", object_id=item.pk, ip=ip,
              details={"reason": reason, "holds_lifted": lifted})
        purge(item, actor=user, reason=f"destroyed on request: {reason}")


def purge_job():
    return purge_expired()


def verify_job():
    return verify(limit=settings.EVIDENCE_VERIFY_BATCH)
