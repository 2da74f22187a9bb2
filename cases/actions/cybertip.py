"""CyberTipline reports before they are sent: the details a specialist or senior may still change.

Approval, retry and retraction are steps of the filing job (cases.cybertip.filing), which writes
each of them with its audit row; this module only holds the edits made on the report page.
"""

from django.db import transaction

from cases.actions import ActionError
from cases.models import INCIDENT_TYPES, CyberTipFile, CyberTipReport
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

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


def record_report_view(user, report, ip=None):
    """Opening a report is audited: it holds the most sensitive record there is."""
    return audit(user, Event.CYBERTIP_VIEWED, case=report.case, object_type="cybertipreport", object_id=report.pk,
                 ip=ip)
