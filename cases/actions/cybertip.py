"""CyberTipline reports before they are sent: the details a specialist or senior may still change,
and the senior's approval that queues the filing.

Retry and retraction are steps of the filing job (cases.cybertip.filing), which writes each of them
with its audit row. Approval lives here (cases.cybertip.filing.approve calls `approve`) so that the
page's "Approve and file" can save the details shown with it and approve in one transaction.
"""

from django.db import transaction
from django.utils import timezone

from cases.actions import ActionError
from cases.models import INCIDENT_TYPES, CyberTipFile, CyberTipReport
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from reviewconsole.audit.recorder import audit
from reviewconsole.queueing import enqueue

Status = CyberTipReport.Status
EDITABLE = (Status.AWAITING_APPROVAL, Status.QUEUED, Status.FAILED)
REPORT_FIELDS = ("incident_type", "annotations", "escalate_reason")
FILE_FIELDS = ("classification", "annotations", "publicly_available")
CLASSIFICATIONS = {value for value, _ in CyberTipFile.CLASSIFICATIONS}


def is_editable(report):
    """A report can be changed until it reaches NCMEC."""
    return report.status in EDITABLE and not report.ncmec_report_id


def edit_report(user, report, cleaned_data, file_changes, ip=None):
    """Change a report's details and its files' details together, with the audit row, or not at all.

    `cleaned_data` holds `incident_type`, `annotations` (a list) and `escalate_reason`;
    `file_changes` maps the pk of each file of the report to its `classification`, `annotations`
    (a list) and `publicly_available` (True, False or None). Raises ActionError, changing nothing,
    if the report was already submitted or a value is not one NCMEC accepts.
    """
    report_id = getattr(report, "pk", report)
    values = {"incident_type": cleaned_data.get("incident_type"),
              "annotations": list(cleaned_data.get("annotations") or []),
              "escalate_reason": (cleaned_data.get("escalate_reason") or "")[:500]}
    new_files = {}
    for pk, change in file_changes.items():
        new_files[pk] = {"classification": change.get("classification") or "",
                         "annotations": list(change.get("annotations") or []),
                         "publicly_available": change.get("publicly_available")}
        if (new_files[pk]["classification"] not in CLASSIFICATIONS
                or new_files[pk]["publicly_available"] not in (True, False, None)):
            raise ActionError("Choose a classification and availability from the lists.")
    with transaction.atomic():
        report = CyberTipReport.objects.select_for_update().filter(pk=report_id).first()
        if report is None or not is_editable(report):
            raise ActionError("This report was already submitted; it can no longer be changed.")
        if values["incident_type"] not in INCIDENT_TYPES:
            raise ActionError("Choose one of NCMEC's incident types.")
        files = {f.pk: f for f in report.files.all()}
        if set(new_files) - set(files):
            raise ActionError("A file in the form is not part of this report; reload the page.")
        changed = [name for name in REPORT_FIELDS if getattr(report, name) != values[name]]
        for name in REPORT_FIELDS:
            setattr(report, name, values[name])
        report.save(update_fields=list(REPORT_FIELDS))
        changed_files = {}
        for pk, new in new_files.items():
            report_file = files[pk]
            fields = [name for name in FILE_FIELDS if getattr(report_file, name) != new[name]]
            for name in FILE_FIELDS:
                setattr(report_file, name, new[name])
            report_file.save(update_fields=list(FILE_FIELDS))
            if fields:
                changed_files[str(pk)] = fields
        audit(user, Event.CYBERTIP_EDITED, case=report.case, object_type="cybertipreport", object_id=report.pk,
              ip=ip, details={"changed": changed, "files": changed_files})
    return report


class UnclassifiedFiles(ActionError):
    """Approval refused: some files have no industry classification and leaving it out was not confirmed."""

    def __init__(self, files, total):
        self.files, self.total = files, total
        names = ", ".join(str(f.item_id) for f in files)
        one = len(files) == 1
        them = "it" if one else "them"
        super().__init__(
            f"{len(files)} of {total} file{'' if total == 1 else 's'} {'has' if one else 'have'} no industry "
            f"classification ({'item' if one else 'items'} {names}). Classify {them}, or tick “File without "
            f"classifying these files” to file {them} as {'it is' if one else 'they are'}. "
            "Nothing was saved or approved.")


def unclassified_files(report):
    """The files of a report that carry no industry classification, in page order."""
    return [f for f in report.files.all() if not f.classification]


def check_approver(user, report_id):
    """The second pair of eyes: the senior who decided the case does not approve its report.

    Raises ActionError for the decider (report.decision.decided_by). The verified second factor the
    approval also needs is checked where the session is known (cases.web.reports).
    """
    decided_by = (CyberTipReport.objects.filter(pk=report_id).values_list("decision__decided_by", flat=True)
                  .first())
    if decided_by is not None and decided_by == getattr(user, "pk", None):
        raise ActionError("You decided this case: a different senior must approve its report.")


def check_viewed_if_required(user, report_id):
    """A report from an automated decision whose policy asks for a human view before filing is approved
    only by a specialist who has revealed every file in it: then fileViewedByEsp is true, and police
    can open the files without a warrant of their own."""
    report = CyberTipReport.objects.select_related("decision").filter(pk=report_id).first()
    if report is None or report.decision is None or not report.decision.rule_version_id:
        return
    if not (report.decision.options.get("effects") or {}).get("view_before_filing"):
        return
    if not user.has_perm("cases.reveal_evidence"):
        raise ActionError("This report waits for a specialist's view of its files.")
    # A hash-only item has no file to view: the platform kept it, and the report says so.
    items = set(report.files.filter(item__hash_only=False).values_list("item_id", flat=True))
    seen = set(AuditEvent.objects.filter(actor=user, action=Event.EVIDENCE_REVEALED, item__in=items)
               .values_list("item_id", flat=True))
    if items - seen:
        raise ActionError(f"View every file before approving: {len(items - seen)} of {len(items)} not yet revealed "
                          "by you. An automated decision's report is filed with the files seen by a person, as "
                          "its policy requires.")


def approve(user, report, ip=None, unclassified_confirmed=False):
    """A senior's approval puts a report awaiting approval into the filing queue.

    Returns False, changing nothing, if the report is not awaiting approval; raises ActionError if
    `user` took the decision that drafted it (`check_approver`). The audit row names
    the files sent without an industry classification (optional for NCMEC) and whether the senior
    confirmed leaving it out. The filing job is enqueued only once the outermost transaction commits.
    """
    report_id = getattr(report, "pk", report)
    check_approver(user, report_id)
    check_viewed_if_required(user, report_id)
    with transaction.atomic():
        if not CyberTipReport.objects.filter(pk=report_id, status=Status.AWAITING_APPROVAL).update(
                status=Status.QUEUED, approved_by=user, approved_at=timezone.now()):
            return False
        report = CyberTipReport.objects.select_related("case").get(pk=report_id)
        files = list(report.files.all())
        unclassified = [{"file": f.pk, "item": f.item_id} for f in files if not f.classification]
        details = {"files": len(files), "unclassified": unclassified}
        if unclassified:
            details["unclassified_confirmed"] = bool(unclassified_confirmed)
        audit(user, Event.CYBERTIP_APPROVED, case=report.case, object_type="cybertipreport", object_id=report_id,
              ip=ip, details=details)
        enqueue("cases.cybertip.filing.file_report", report_id, queue="dispatch")
    return True


def save_and_approve(user, report, cleaned_data, file_changes, *, ip=None, unclassified_confirmed=False):
    """"Approve and file": save the details on the page, then approve, in one transaction.

    Takes what `edit_report` takes. Raises ActionError, saving and approving nothing, if `user`
    decided the case, if the edit is refused, if the report is no longer awaiting approval, or
    (UnclassifiedFiles) if a file is left without industry classification and
    `unclassified_confirmed` is not set.
    """
    report_id = getattr(report, "pk", report)
    check_approver(user, report_id)
    check_viewed_if_required(user, report_id)
    with transaction.atomic():
        locked = CyberTipReport.objects.select_for_update().filter(pk=report_id).first()
        if locked is None or locked.status != Status.AWAITING_APPROVAL:
            raise ActionError("Only a report awaiting approval can be approved; nothing was saved.")
        report = edit_report(user, locked, cleaned_data, file_changes, ip=ip)
        missing = unclassified_files(report)
        if missing and not unclassified_confirmed:
            raise UnclassifiedFiles(missing, report.files.count())
        if not approve(user, report, ip=ip, unclassified_confirmed=unclassified_confirmed):
            raise ActionError("Only a report awaiting approval can be approved; nothing was saved.")
    return CyberTipReport.objects.get(pk=report_id)


def record_report_view(user, report, ip=None):
    """Opening a report is audited: it holds the most sensitive record there is."""
    return audit(user, Event.CYBERTIP_VIEWED, case=report.case, object_type="cybertipreport", object_id=report.pk,
                 ip=ip)
