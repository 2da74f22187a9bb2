"""CyberTipline reports: the list, one report with everything sent and received, and its actions."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from cases.actions import ActionError, preservation
from cases.actions.cybertip import edit_report, is_editable, record_report_view, save_and_approve
from cases.cybertip import documents, filing
from cases.models import INCIDENT_TYPES, CyberTipFile, CyberTipReport, LegalHold
from cases.web.permissions import client_ip, require_report_access
from detection.models import Item

Status = CyberTipReport.Status


@login_required
@require_GET
def report_list(request):
    require_report_access(request.user)
    reports = CyberTipReport.objects.select_related("case__account", "case__group", "created_by")[:200]
    return render(request, "cases/report_list.html", {"reports": reports})


@login_required
@require_GET
def report_detail(request, pk):
    require_report_access(request.user)
    return _render_report(request, _report_page_query(pk))


def _report_page_query(pk):
    return get_object_or_404(CyberTipReport.objects.select_related("case", "created_by", "approved_by"), pk=pk)


def _render_report(request, report, submitted=None, error=None, status=200):
    """The report page; after a refused save or approval, with the user's input kept and the reason shown.

    `submitted` is what `_read_form` returned for the refused POST: the form shows it instead of the
    saved values, while the files table further down keeps showing what is saved.
    """
    record_report_view(request.user, report, ip=client_ip(request))
    editable = is_editable(report)
    if error and not editable:  # no form to show it in: the report went ahead meanwhile
        messages.error(request, error)
        error = None
    files = list(report.files.select_related("item"))
    holds = {h.item_id: h for h in LegalHold.active().filter(item__in=[f.item_id for f in files]).order_by("until")}
    details, file_changes = submitted or (None, {})
    for report_file in files:
        report_file.hold = holds.get(report_file.item_id)
        report_file.form = file_changes.get(report_file.pk) or {
            "classification": report_file.classification, "annotations": report_file.annotations,
            "publicly_available": report_file.publicly_available}
    form = details or {"incident_type": report.incident_type, "annotations": report.annotations,
                       "escalate_reason": report.escalate_reason}
    unclassified = [f for f in files if not f.form["classification"]]
    return render(request, "cases/report_detail.html", {
        "report": report, "files": files, "exchanges": report.exchanges.all(),
        "editable": editable, "can_file": request.user.has_perm("cases.file_cybertip"),
        "can_approve": editable and report.status == Status.AWAITING_APPROVAL
        and request.user.has_perm("cases.file_cybertip"),
        "form": form, "unclassified": unclassified, "form_error": error,
        "confirm_unclassified": submitted is not None and request.POST.get("confirm_unclassified") == "yes",
        "incident_types": INCIDENT_TYPES, "report_annotations": documents.REPORT_ANNOTATIONS,
        "file_annotations": documents.FILE_ANNOTATIONS, "classifications": CyberTipFile.CLASSIFICATIONS,
    }, status=status)


def _read_form(post, report):
    """The report's details and each file's details as posted; values not in NCMEC's lists are left for
    edit_report to refuse (unknown annotation flags are dropped)."""
    details = {
        "incident_type": post.get("incident_type", ""),
        "annotations": [a for a in post.getlist("annotations") if a in documents.REPORT_ANNOTATIONS],
        "escalate_reason": post.get("escalate_reason", "")[:500],
    }
    file_changes = {}
    for report_file in report.files.all():
        prefix = f"file-{report_file.pk}-"
        public = post.get(prefix + "public", "")
        file_changes[report_file.pk] = {
            "classification": post.get(prefix + "classification", ""),
            "annotations": [a for a in post.getlist(prefix + "annotations") if a in documents.FILE_ANNOTATIONS],
            "publicly_available": {"yes": True, "no": False, "": None}.get(public, public),
        }
    return details, file_changes


@login_required
@require_POST
def report_edit(request, pk):
    require_report_access(request.user)
    report = get_object_or_404(CyberTipReport, pk=pk)
    submitted = _read_form(request.POST, report)
    try:
        edit_report(request.user, report, *submitted, ip=client_ip(request))
    except ActionError as exc:
        return _render_report(request, _report_page_query(pk), submitted, str(exc), status=400)
    messages.success(request, "Report details saved.")
    return redirect("cases:report", pk=pk)


def _approve(request, report):
    """"Approve and file" submits the details form: save it and approve together, or neither."""
    ip = client_ip(request)
    confirmed = request.POST.get("confirm_unclassified") == "yes"
    if "incident_type" not in request.POST:
        # A POST without the report's details (a script, an older page) has no edits to lose: it
        # approves the report as saved, but files left unclassified still need the confirmation.
        unclassified = report.files.filter(classification="").count()
        if unclassified and not confirmed:
            messages.error(request, f"{unclassified} file{'s' if unclassified != 1 else ''} have no industry "
                                    "classification: confirm filing without it on the report page.")
            return redirect("cases:report", pk=report.pk)
        done = filing.approve(request.user, report.pk, ip=ip, unclassified_confirmed=confirmed)
        (messages.success if done else messages.error)(
            request, "Approved: the report is queued for filing." if done
            else "Only a report awaiting approval can be approved.")
        return redirect("cases:report", pk=report.pk)
    submitted = _read_form(request.POST, report)
    try:
        save_and_approve(request.user, report, *submitted, ip=ip, unclassified_confirmed=confirmed)
    except ActionError as exc:
        return _render_report(request, _report_page_query(report.pk), submitted, str(exc), status=400)
    messages.success(request, "Details saved and approved: the report is queued for filing.")
    return redirect("cases:report", pk=report.pk)


@login_required
@require_POST
def report_action(request, pk, verb):
    require_report_access(request.user, "cases.file_cybertip")
    report = get_object_or_404(CyberTipReport, pk=pk)
    ip = client_ip(request)
    if verb == "approve":
        return _approve(request, report)
    if verb == "retry":
        done = filing.retry(request.user, report.pk, ip=ip)
        text = "Filing queued again." if done else "This report is not waiting to be filed."
    else:
        status = filing.retract(request.user, report.pk, ip=ip)
        done = status == Status.RETRACTED
        text = f"Report is now {CyberTipReport.Status(status).label.lower()}."
    (messages.success if done else messages.error)(request, text)
    return redirect("cases:report", pk=pk)


@login_required
@require_POST
def destroy_evidence(request, item_id):
    """A law-enforcement destruction request: lift the holds with the reason and destroy the bytes."""
    require_report_access(request.user, "cases.file_cybertip")
    item = get_object_or_404(Item, pk=item_id)
    reason = request.POST.get("reason", "").strip()
    if not reason:
        messages.error(request, "Record the request (agency, reference) before destroying evidence.")
    else:
        preservation.destroy(request.user, item, reason=reason, ip=client_ip(request))
        messages.success(request, f"The evidence of item {item.pk} was destroyed; its hashes and history remain.")
    back = request.POST.get("next", "")
    return redirect(back if back.startswith("/reports/") else "cases:reports")
