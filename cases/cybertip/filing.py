"""Filing a CyberTipline report: submit -> upload each file -> fileinfo -> finish, resumable.

A file the platform sent as hashes only (`Item.hash_only`) has no bytes: it is neither uploaded nor
given a fileDetails; the report's additionalInfo names it with its hashes and what it matched.

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
from django.db.models import Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from cases import routing
from cases.actions import cybertip as cybertip_actions
from cases.actions.preservation import hold_for_report, raise_alert
from cases.cybertip import documents
from cases.cybertip.client import CyberTipClient, Unreachable
from cases.models import CyberTipExchange, CyberTipFile, CyberTipReport, Enforcement, EnforcementStatus, PolicyCategory
from detection.models import Account, Item, ItemKind, SignalKind, SubjectStatus
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


def approve(user, report_id, ip=None, unclassified_confirmed=False):
    """A senior's approval puts a report awaiting approval into the filing queue (False if it was not).

    The step itself is cases.actions.cybertip.approve, which the report page also runs together with
    the edits shown beside the button (save_and_approve); the job is enqueued after the commit.
    """
    return cybertip_actions.approve(user, report_id, ip=ip, unclassified_confirmed=unclassified_confirmed)


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
        problem = documents.reporter_email_problem()
        if problem:  # NCMEC and the police would write to nobody: stop, a person must fix the settings
            raise Stop(f"report not submitted: {problem}")
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
    # A hash-only item's file row stays without an NCMEC file id: there are no bytes to upload, and
    # its hashes went into the report's additionalInfo (gather_report).
    with_bytes = report.files.select_related("item").filter(item__hash_only=False)
    for report_file in with_bytes.filter(ncmec_file_id=""):
        _upload(report, report_file, client)
    for report_file in with_bytes.filter(fileinfo_sent_at__isnull=True):
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
    """The report's data from the rows.

    The reported person (the schema allows one `personOrUserReported`) is the case's account; on a
    group case, the first member the decision banned (the one with most files in the report), else
    the uploader of the first file. Every other banned member is named in additionalInfo:
    `associatedAccount` means another account of the same person, which a fellow member is not.
    """
    case, decision = report.case, report.decision
    group = case.group
    files = list(report.files.select_related("item", "item__account"))
    members = _banned_members(decision, files) if group else []
    account = case.account or (members[0] if members else files[0].item.account if files else None)
    victims = []
    if decision.policy and decision.policy.category == PolicyCategory.MINOR_VICTIM and case.account:
        # The case's account is the child: reported as the victim; the person reported is the adult
        # on the other side, when the console knows one.
        child = case.account
        victims = [documents.Victim(esp_identifier=child.external_id, screen_name=child.screen_name,
                                    display_name=child.display_name, age_band=child.age_band)]
        account = routing.adults_in_contact(child).first()
    texts = list(Item.objects.filter(signals__case=case, kind=ItemKind.TEXT).distinct()
                 .order_by("uploaded_at", "created_at", "pk"))
    moments = [_when(f.item) for f in files] + [_when(t) for t in texts]
    uploads = []
    # Only the reported person's own uploads and messages: another member's IP is not theirs.
    for item in [f.item for f in files] + texts:
        if account is None or item.account_id != account.pk or not item.ip:
            continue
        upload = documents.Upload(ip=item.ip, at=_when(item))
        if (upload.ip, upload.at) not in {(u.ip, u.at) for u in uploads}:
            uploads.append(upload)
    notes = []
    if len(members) > 1:
        notes.append(f"Other members of group {group.external_id} banned by the same decision for sharing the "
                     f"reported material in it (each a separate person on the platform): "
                     + "; ".join(_describe(m) for m in members[1:]) + ".")
    if group:
        earlier = _prior_report_ids(report, CyberTipReport.objects.filter(case__group=group))
        if earlier:
            notes.append(f"Earlier CyberTipline reports on group {group.external_id}: {', '.join(earlier)}.")
    return documents.ReportData(
        incident_type=report.incident_type,
        incident_at=min(moments) if moments else case.created_at,
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
        prior_reports=_prior_report_ids(report, _reports_on(account)) if account else [],
        group_identifier=_group_identifier(group),
        disabled_at=first_ban(account),
        disabled_until=decision.ban_until if account and _banned_by(case, decision, account) else None,
        additional_info=report.additional_info or case.summary,
        notes=notes,
        victims=victims,
        hash_only=[_hash_only(f.item, case) for f in files if f.item.hash_only],
        **documents.reporter_settings(),
    )


def _hash_only(item, case):
    matches = [signal.label for signal in item.signals.filter(case=case, kind=SignalKind.HASH_MATCH).order_by("pk")]
    return documents.HashOnlyItem(item_id=item.pk, kind=item.get_kind_display().lower(), uploaded_at=item.uploaded_at,
                                  md5=item.md5, sha256=item.sha256, pdq=item.pdq, pdq_quality=item.pdq_quality,
                                  frames=list(item.frame_hashes or []), matches=matches)


def _when(item):
    return item.uploaded_at or item.created_at


def _describe(account):
    extra = ", ".join(f"{label} {value!r}" for label, value in (("screen name", account.screen_name),
                                                               ("display name", account.display_name)) if value)
    return account.external_id + (f" ({extra})" if extra else "")


def _group_identifier(group):
    """The group's platform id, with its name when it fits in NCMEC's 255 characters."""
    if group is None:
        return ""
    room = documents.MAX_NAME - len(group.external_id) - 3
    if group.name and room > 0:
        return f"{group.external_id} ({group.name[:room]})"
    return group.external_id


def _ban_rows(decision=None):
    rows = Enforcement.objects.filter(action="ban_account").exclude(status=EnforcementStatus.CANCELLED)
    return rows.filter(decision=decision) if decision is not None else rows


def _banned_members(decision, files):
    """Members of the case's group the decision banned, the one with most files in the report first."""
    targets = list(dict.fromkeys(_ban_rows(decision).order_by("pk").values_list("target", flat=True)))
    if targets:
        found = {a.external_id: a for a in Account.objects.filter(external_id__in=targets)}
        members = [found[t] for t in targets if t in found]
    else:  # the outbox rows are the record; without them, the members chosen who are banned
        members = list(Account.objects.filter(pk__in=decision.options.get("member_ids") or [],
                                              status=SubjectStatus.BANNED).order_by("external_id"))
    files_of = {}
    for report_file in files:
        files_of[report_file.item.account_id] = files_of.get(report_file.item.account_id, 0) + 1
    return sorted(members, key=lambda m: -files_of.get(m.pk, 0))  # stable: ties keep the ban order


def _banned_by(case, decision, account):
    return case.account_id == account.pk or _ban_rows(decision).filter(target=account.external_id).exists()


def first_ban(account):
    """When the account was first disabled: the earliest of its banned_at and of the ban decisions
    carried out on it (as the subject of a case or as a member of a group). None if not banned."""
    if account is None or account.status != SubjectStatus.BANNED:
        return None
    carried_out = _ban_rows().filter(target=account.external_id).aggregate(
        first=Min(Coalesce("decision__second_reviewed_at", "decision__created_at")))["first"]
    moments = [m for m in (account.banned_at, carried_out) if m]
    return min(moments) if moments else None


def _reports_on(account):
    """Reports about this person: on their cases, banning them as a group member, or holding their files."""
    banned_in = _ban_rows().filter(target=account.external_id).values("decision")
    return CyberTipReport.objects.filter(
        Q(case__account=account) | Q(decision__in=banned_in) | Q(files__item__account=account))


def _prior_report_ids(report, reports):
    """NCMEC ids of the other finished reports among `reports`, oldest first."""
    rows = (reports.filter(status=Status.FILED).exclude(pk=report.pk).exclude(ncmec_report_id="")
            .order_by("submitted_at", "pk").values_list("ncmec_report_id", flat=True))
    return list(dict.fromkeys(rows))


def gather_file(report, report_file):
    item = report_file.item
    data = storage.read_original(item.storage_path)
    md5, sha1, sha256 = documents.hashes_of(data)
    viewed, notes = viewed_by_esp(item)
    return documents.FileData(
        report_id=report.ncmec_report_id,
        file_id=report_file.ncmec_file_id,
        file_name=f"item-{item.pk}{_suffix(item)}",
        original_name=item.original_name,
        uploaded_at=_when(item),
        viewed=viewed,
        publicly_available=report_file.publicly_available,
        classification=report_file.classification,
        annotations=report_file.annotations,
        md5=md5, sha1=sha1, sha256=sha256,
        pdq=item.pdq,
        upload_ip=item.ip or "",
        notes=notes,
    )


def viewed_by_esp(item):
    """(fileViewedByEsp, notes): true only when a person here saw the whole file, unfiltered.

    The audit log is the record: an `evidence.revealed` of this item by a person (not the system).
    A reveal shows a still image whole, in colour and unblurred. A video or an animation is revealed
    as one sheet of sampled frames, not every frame, so it does not count as viewed. Blurred, toned
    or reduced-detail renditions never count: a "no blur" preference keeps another filter, and is
    audited as a reveal (for access, budget and the record) marked `rendition: filtered-unblurred`.
    """
    reveals = AuditEvent.objects.filter(item=item, action=Event.EVIDENCE_REVEALED).exclude(
        actor__isnull=True, actor_label__in=["", "system"]).exclude(
        details__has_key="rendition", details__rendition="filtered-unblurred")  # missing key: NULL, kept
    if not reveals.exists():
        return False, []
    if item.kind == ItemKind.VIDEO or item.frame_hashes:
        return False, ["A reviewer at the provider viewed a sheet of sampled frames of this file, not every frame: "
                       "the whole file has not been viewed."]
    return True, []


def due_reports(now=None):
    now = now or timezone.now()
    return CyberTipReport.objects.filter(
        Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True), status__in=[Status.QUEUED, Status.SUBMITTED]
    )
