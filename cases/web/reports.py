"""CyberTipline reports: the list, one report with everything sent and received, and its actions."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from cases.actions import ActionError, preservation
from cases.actions.cybertip import edit_report, is_editable, record_report_view
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
    report = get_object_or_404(CyberTipReport.objects.select_related("case", "created_by", "approved_by"), pk=pk)
    record_report_view(request.user, report, ip=client_ip(request))
    editable = is_editable(report)
    files = list(report.files.select_related("item"))
    holds = {h.item_id: h for h in LegalHold.active().filter(item__in=[f.item_id for f in files]).order_by("until")}
    for report_file in files:
        report_file.hold = holds.get(report_file.item_id)
    return render(request, "cases/report_detail.html", {
        "report": report, "files": files, "exchanges": report.exchanges.all(),
        "editable": editable, "can_file": request.user.has_perm("cases.file_cybertip"),
        "incident_types": INCIDENT_TYPES, "report_annotations": documents.REPORT_ANNOTATIONS,
        "file_annotations": documents.FILE_ANNOTATIONS, "classifications": CyberTipFile.CLASSIFICATIONS,
    })


@login_required
@require_POST
def report_edit(request, pk):
    require_report_access(request.user)
    report = get_object_or_404(CyberTipReport, pk=pk)
    post = request.POST
    details = {
        "incident_type": post.get("incident_type", ""),
        "annotations": [a for a in post.getlist("annotations") if a in documents.REPORT_ANNOTATIONS],
        "escalate_reason": post.get("escalate_reason", "")[:500],
    }
    file_changes = {}
    for report_file in report.files.all():
        prefix = f"file-{report_file.pk}-"
        classification = post.get(prefix + "classification", "")
        file_changes[report_file.pk] = {
            "classification": classification if classification in documents.CLASSIFICATIONS else "",
            "annotations": [a for a in post.getlist(prefix + "annotations") if a in documents.FILE_ANNOTATIONS],
            "publicly_available": {"yes": True, "no": False}.get(post.get(prefix + "public", "")),
        }
    try:
        edit_report(request.user, report, details, file_changes, ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Report details saved.")
    return redirect("cases:report", pk=pk)


@login_required
@require_POST
def report_action(request, pk, verb):
    require_report_access(request.user, "cases.file_cybertip")
    report = get_object_or_404(CyberTipReport, pk=pk)
    ip = client_ip(request)
    if verb == "approve":
        done = filing.approve(request.user, report.pk, ip=ip)
        text = ("Approved: the report is queued for filing." if done
                else "Only a report awaiting approval can be approved.")
    elif verb == "retry":
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
