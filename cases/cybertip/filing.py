"""Filing a CyberTipline report: submit -> upload each file -> fileinfo -> finish, resumable.

Each step's result is committed the moment the service answers (the report id before any upload,
each file id before the next file), so a job that died resumes at the first step not done and
never submits a report twice. A finish whose answer was lost is sent again: the service answers
5102 when the report was already finished, which is recorded as filed. Transient failures retry
with backoff through the sweep; validation and authorisation errors stop the filing and show the
service's message on the report and its case.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cases.actions.preservation import hold_for_report, raise_alert
from cases.cybertip import documents
from cases.cybertip.client import CyberTipClient, Unreachable
from cases.models import CyberTipExchange, CyberTipFile, CyberTipReport
from reviewconsole import storage
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from reviewconsole.audit.recorder import audit
from reviewconsole.queueing import enqueue

log = logging.getLogger(__name__)
Status = CyberTipReport.Status
TRANSIENT_CODES = {1000, 1100, 1110, 1111, 1300}
GONE_CODES = {5001}  # the service deleted the unfinished report (24 h / 1 h rules): start over


class Retry(Exception):
    pass


class Stop(Exception):
    pass


class StartOver(Exception):
    pass


def client_from_settings():
    return CyberTipClient(settings.CYBERTIP_URL, settings.CYBERTIP_USERNAME, settings.CYBERTIP_PASSWORD,
                          timeout=settings.CYBERTIP_TIMEOUT)


def approve(user, report_id, ip=None):
    """A senior's approval puts a report awaiting approval into the filing queue."""
    with transaction.atomic():
        if not CyberTipReport.objects.filter(pk=report_id, status=Status.AWAITING_APPROVAL).update(
                status=Status.QUEUED, approved_by=user, approved_at=timezone.now()):
            return False
        report = CyberTipReport.objects.get(pk=report_id)
        audit(user, Event.CYBERTIP_APPROVED, case=report.case, object_type="cybertipreport", object_id=report_id, ip=ip)
        enqueue("cases.cybertip.filing.file_report", report_id, queue="dispatch")
    return True


def retry(user, report_id, ip=None):
    """Try a stopped (or waiting) filing again now, from the step where it stopped."""
    with transaction.atomic():
        report = CyberTipReport.objects.get(pk=report_id)
        status = Status.SUBMITTED if report.ncmec_report_id else Status.QUEUED
        if not CyberTipReport.objects.filter(
                pk=report_id, status__in=[Status.FAILED, Status.QUEUED, Status.SUBMITTED]).update(
                status=status, next_attempt_at=None, attempts=0):
            return False
        audit(user, Event.CYBERTIP_RETRIED, case=report.case, object_type="cybertipreport", object_id=report_id, ip=ip,
              details={"last_error": report.last_error})
        enqueue("cases.cybertip.filing.file_report", report_id, queue="dispatch")
    return True


def retract(user, report_id, client=None, ip=None):
    """Withdraw a submitted, unfinished report. Returns the report's status afterwards."""
    report = CyberTipReport.objects.select_related("case").get(pk=report_id)
    if not report.ncmec_report_id or report.status in (Status.FILED, Status.RETRACTED):
        return report.status
    client = client or client_from_settings()
    try:
        _call(report, client.retract, report.ncmec_report_id, request=f"id={report.ncmec_report_id}")
        _save(report, status=Status.RETRACTED, next_attempt_at=None)
    except Stop as exc:
        if "code 5102" in str(exc):
            _save(report, status=Status.FILED, finished_at=report.finished_at or timezone.now(),
                  receipt=report.receipt or "Retract refused: the report was already finished (5102)")
        elif "code 5101" in str(exc) or "code 5001" in str(exc):
            _save(report, status=Status.RETRACTED, next_attempt_at=None)
        else:
            _save(report, last_error=str(exc))
    except (Retry, StartOver, Unreachable) as exc:
        _save(report, last_error=str(exc))
    audit(user, Event.CYBERTIP_RETRACT, case=report.case, object_type="cybertipreport", object_id=report_id, ip=ip,
          details={"status": report.status})
    return report.status


def file_report(report_id, client=None, restarted=False):
    """Advance the filing as far as it goes. Returns the report's status afterwards."""
    report = CyberTipReport.objects.select_related("case__account", "case__group", "decision").get(pk=report_id)
    if report.status not in (Status.QUEUED, Status.SUBMITTED):
        return report.status
    if report.next_attempt_at and report.next_attempt_at > timezone.now():
        return report.status
    undo_ends = report.decision.created_at + timedelta(seconds=settings.UNDO_SECONDS)
    if undo_ends > timezone.now():  # the reviewer may still take the decision back
        _save(report, next_attempt_at=undo_ends)
        return report.status
    if not (settings.CYBERTIP_USERNAME and settings.CYBERTIP_PASSWORD):
        _save(report, last_error="CyberTipline credentials are not configured (CYBERTIP_USERNAME/PASSWORD)",
              next_attempt_at=timezone.now() + timedelta(hours=1))
        return report.status
    client = client or client_from_settings()
    attempts = report.attempts + 1
    _save(report, attempts=attempts)
    if attempts > settings.CYBERTIP_MAX_ATTEMPTS:
        _save(report, status=Status.FAILED, next_attempt_at=None,
              last_error=f"gave up after {settings.CYBERTIP_MAX_ATTEMPTS} attempts; last: {report.last_error}")
        return report.status
    try:
        _advance(report, client)
    except StartOver as exc:
        with transaction.atomic():
            report.files.update(ncmec_file_id="", uploaded_md5="", uploaded_at=None, fileinfo_sent_at=None,
                                fileinfo_xml="")
            _save(report, status=Status.QUEUED, ncmec_report_id="", submitted_at=None, finish_sent_at=None,
                  last_error=str(exc), next_attempt_at=None)
        return report.status if restarted else file_report(report_id, client, restarted=True)
    except (Retry, Unreachable) as exc:
        delay = min(settings.CYBERTIP_BACKOFF_SECONDS * 2 ** (attempts - 1), 6 * 3600)
        _save(report, last_error=str(exc), next_attempt_at=timezone.now() + timedelta(seconds=delay))
        log.warning("CyberTipline report %s: %s; retrying in %s s", report.pk, exc, delay)
    except Stop as exc:
        _save(report, status=Status.FAILED, last_error=str(exc), next_attempt_at=None)
        audit(None, Event.CYBERTIP_FAILED, case=report.case, object_type="cybertipreport", object_id=report.pk,
              details={"error": str(exc)})
    return CyberTipReport.objects.get(pk=report.pk).status


def _save(report, **fields):
    for name, value in fields.items():
        setattr(report, name, value)
    CyberTipReport.objects.filter(pk=report.pk).update(**fields)


def _call(report, method, *args, request=""):
    """One request; its exchange row is committed whatever happens."""
    try:
        answer = method(*args)
    except Unreachable as exc:
        CyberTipExchange.objects.create(report=report, step=method.__name__, request=request, error=str(exc))
        raise
    CyberTipExchange.objects.create(
        report=report, step=answer.step, request=request, http_status=answer.http_status,
        response_code=answer.code, request_id=answer.request_id,
        response=answer.body.decode("utf-8", errors="replace"),
    )
    log.info("CyberTipline %s for report %s: code %s, Request-ID %s", answer.step, report.pk, answer.code,
             answer.request_id)
    if answer.ok:
        return answer
    message = f"{answer.step}: code {answer.code} {answer.description}".strip()
    if answer.code in TRANSIENT_CODES or answer.http_status >= 500:
        raise Retry(message)
    if answer.code in GONE_CODES:
        raise StartOver(message + " (the service no longer has this report; filing again)")
    raise Stop(message)


def _advance(report, client):
    if not report.ncmec_report_id:
        document = documents.report_xml(gather_report(report))
        problems = documents.validate(document)
        if problems:
            raise Stop("report document invalid: " + "; ".join(problems))
        answer = _call(report, client.submit, document, request=document.decode())
        if not answer.report_id:
            raise Stop("submit answered 0 without a reportId")
        # Stored before anything else happens: the one thing that must never be lost.
        _save(report, ncmec_report_id=answer.report_id, xml_sent=document.decode(), submitted_at=timezone.now(),
              status=Status.SUBMITTED)
        hold_for_report(report, start=report.submitted_at)
        audit(None, Event.CYBERTIP_SUBMITTED, case=report.case, object_type="cybertipreport", object_id=report.pk,
              details={"ncmec_report_id": answer.report_id, "request_id": answer.request_id})
    for report_file in report.files.select_related("item").filter(ncmec_file_id=""):
        _upload(report, report_file, client)
    for report_file in report.files.select_related("item").filter(fileinfo_sent_at__isnull=True):
        document = documents.file_details_xml(gather_file(report, report_file))
        problems = documents.validate(document)
        if problems:
            raise Stop(f"file details of item {report_file.item_id} invalid: " + "; ".join(problems))
        _call(report, client.fileinfo, document, request=document.decode())
        CyberTipFile.objects.filter(pk=report_file.pk).update(fileinfo_xml=document.decode(),
                                                              fileinfo_sent_at=timezone.now())
    if not report.finish_sent_at:
        _save(report, finish_sent_at=timezone.now())
    try:
        answer = _call(report, client.finish, report.ncmec_report_id, request=f"id={report.ncmec_report_id}")
        receipt = answer.body.decode("utf-8", errors="replace")
    except Stop as exc:
        if "code 5102" not in str(exc):
            raise
        # A finish whose answer we lost went through after all.
        receipt = "Finish receipt lost; the service confirmed the report finished (5102) on " + \
                  timezone.now().isoformat(timespec="seconds")
    _save(report, status=Status.FILED, finished_at=timezone.now(), receipt=receipt, last_error="",
          next_attempt_at=None)
    audit(None, Event.CYBERTIP_FILED, case=report.case, object_type="cybertipreport", object_id=report.pk,
          details={"ncmec_report_id": report.ncmec_report_id})


def _upload(report, report_file, client):
    item = report_file.item
    try:
        data = storage.read_original(item.storage_path)
    except FileNotFoundError:
        raise_alert(item, "evidence file missing")
        raise Stop(f"item {item.pk}: the evidence file is missing") from None
    md5, _, sha256 = documents.hashes_of(data)
    if sha256 != item.sha256:
        # Chain of custody: what we would send is not what we received.
        raise_alert(item, "SHA-256 of stored bytes differs from intake", sha256)
        raise Stop(f"item {item.pk}: stored bytes no longer match the SHA-256 recorded at intake")
    name = f"item-{item.pk}{_suffix(item)}"
    answer = _call(report, client.upload, report.ncmec_report_id, name, data,
                   request=f"id={report.ncmec_report_id} file={name} {len(data)} bytes sha256={sha256}")
    if answer.md5 and answer.md5 != md5:
        raise Stop(f"item {item.pk}: the service received bytes with MD5 {answer.md5}, we sent {md5}")
    CyberTipFile.objects.filter(pk=report_file.pk).update(ncmec_file_id=answer.file_id, uploaded_md5=answer.md5,
                                                          uploaded_at=timezone.now())
    report_file.ncmec_file_id = answer.file_id


def _suffix(item):
    return {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}.get(
        item.detected_format, "")


def gather_report(report):
    case = report.case
    account, group = case.account, case.group
    files = list(report.files.select_related("item", "item__account"))
    if account is None and files:
        account = files[0].item.account
    moments = [f.item.uploaded_at or f.item.created_at for f in files] or [case.created_at]
    uploads = []
    for report_file in files:
        item = report_file.item
        if item.ip and (item.ip, item.uploaded_at) not in {(u.ip, u.at) for u in uploads}:
            uploads.append(documents.Upload(ip=item.ip, at=item.uploaded_at or item.created_at))
    decision = report.decision
    return documents.ReportData(
        incident_type=report.incident_type,
        incident_at=min(moments),
        escalate_reason=report.escalate_reason,
        annotations=report.annotations,
        room_name=group.name if group else "",
        esp_identifier=account.external_id if account else "",
        screen_name=account.screen_name if account else "",
        display_name=account.display_name if account else "",
        profile_bio=account.bio if account else "",
        emails=[account.email] if account and account.email else [],
        phones=[account.phone] if account and account.phone else [],
        uploads=uploads[:20],
        group_identifier=(f"{group.external_id} ({group.name})" if group and group.name
                          else group.external_id if group else ""),
        disabled_at=decision.created_at if account else None,
        disabled_until=decision.ban_until,
        additional_info=report.additional_info or case.summary,
        **documents.reporter_settings(),
    )


def gather_file(report, report_file):
    item = report_file.item
    data = storage.read_original(item.storage_path)
    md5, sha1, sha256 = documents.hashes_of(data)
    return documents.FileData(
        report_id=report.ncmec_report_id,
        file_id=report_file.ncmec_file_id,
        file_name=f"item-{item.pk}{_suffix(item)}",
        original_name=item.original_name,
        uploaded_at=item.uploaded_at or item.created_at,
        # True only if a person here actually looked at the unblurred file: the audit log says.
        viewed=AuditEvent.objects.filter(item=item, action=Event.EVIDENCE_REVEALED).exists(),
        publicly_available=report_file.publicly_available,
        classification=report_file.classification,
        annotations=report_file.annotations,
        md5=md5, sha1=sha1, sha256=sha256,
        pdq=item.pdq,
        upload_ip=item.ip or "",
    )


def due_reports(now=None):
    now = now or timezone.now()
    return CyberTipReport.objects.filter(
        Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True), status__in=[Status.QUEUED, Status.SUBMITTED]
    )
