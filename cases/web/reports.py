"""CyberTipline reports: the list, one report with everything sent and received, and its actions;
and the two-senior destruction of evidence on a law-enforcement request.

A report follows its case (`access_report`); approving, retrying or retracting it and destroying
evidence need the verified second factor (`require_second_factor`), whatever the role.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from cases.actions import ActionError, preservation
from cases.actions.cybertip import edit_report, is_editable, record_report_view, save_and_approve
from cases.cybertip import documents, filing
from cases.models import INCIDENT_TYPES, CyberTipFile, CyberTipReport, DestructionRequest, LegalHold, LegalRequest
from cases.web.permissions import (
    FILE_CYBERTIP,
    access_destruction_request,
    access_item,
    access_report,
    client_ip,
    require_report_access,
    require_second_factor,
    visible_reports,
)

Status = CyberTipReport.Status
Pending = DestructionRequest.Status.PENDING


@login_required
@require_GET
def report_list(request):
    reports = visible_reports(request.user).select_related("case__account", "case__group", "created_by")[:200]
    return render(request, "cases/report_list.html", {"reports": reports})


@login_required
@require_GET
def report_detail(request, pk):
    return _render_report(request, access_report(request.user, pk))


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
    item_ids = [f.item_id for f in files]
    holds = {h.item_id: h for h in LegalHold.active().filter(item__in=item_ids).order_by("until")}
    destructions = {d.item_id: d for d in DestructionRequest.objects.filter(item__in=item_ids, status=Pending)
                    .select_related("requested_by", "legal_request")}
    details, file_changes = submitted or (None, {})
    for report_file in files:
        report_file.hold = holds.get(report_file.item_id)
        report_file.destruction = destructions.get(report_file.item_id)
        report_file.form = file_changes.get(report_file.pk) or {
            "classification": report_file.classification, "annotations": report_file.annotations,
            "publicly_available": report_file.publicly_available}
    form = details or {"incident_type": report.incident_type, "annotations": report.annotations,
                       "escalate_reason": report.escalate_reason}
    unclassified = [f for f in files if not f.form["classification"]]
    can_file = request.user.has_perm(FILE_CYBERTIP)
    verified = request.user.is_verified()
    own_decision = report.decision.decided_by_id == request.user.pk
    awaiting = editable and report.status == Status.AWAITING_APPROVAL and can_file
    return render(request, "cases/report_detail.html", {
        "report": report, "files": files, "exchanges": report.exchanges.all(),
        "editable": editable, "can_file": can_file, "verified": verified,
        "can_approve": awaiting and verified and not own_decision,
        "own_decision": awaiting and own_decision, "needs_2fa": can_file and not verified,
        "min_reason": preservation.MIN_REASON_CHARS, "min_reference": preservation.MIN_REFERENCE_CHARS,
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
    report = access_report(request.user, pk)
    submitted = _read_form(request.POST, report)
    try:
        edit_report(request.user, report, *submitted, ip=client_ip(request))
    except ActionError as exc:
        return _render_report(request, access_report(request.user, pk), submitted, str(exc), status=400)
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
        try:
            done = filing.approve(request.user, report.pk, ip=ip, unclassified_confirmed=confirmed)
        except ActionError as exc:
            messages.error(request, str(exc))
            return redirect("cases:report", pk=report.pk)
        (messages.success if done else messages.error)(
            request, "Approved: the report is queued for filing." if done
            else "Only a report awaiting approval can be approved.")
        return redirect("cases:report", pk=report.pk)
    submitted = _read_form(request.POST, report)
    try:
        save_and_approve(request.user, report, *submitted, ip=ip, unclassified_confirmed=confirmed)
    except ActionError as exc:
        return _render_report(request, access_report(request.user, report.pk), submitted, str(exc), status=400)
    messages.success(request, "Details saved and approved: the report is queued for filing.")
    return redirect("cases:report", pk=report.pk)


@login_required
@require_POST
def report_action(request, pk, verb):
    report = access_report(request.user, pk, perm=FILE_CYBERTIP)
    verify = require_second_factor(request, reverse("cases:report", args=[pk]))
    if verify is not None:
        return verify
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


def _back(request, default):
    """Where a destruction form returns: the report or request list it was posted from."""
    back = request.POST.get("next", "")
    return back if back.startswith(("/reports/", "/destruction-requests/")) and "//" not in back else default


def _legal_request(value):
    value = value.strip()
    if not value:
        return None
    found = LegalRequest.objects.filter(pk=value).first() if value.isdigit() else None
    if found is None:
        raise ActionError(f"There is no legal request numbered {value[:20]}.")
    return found


@login_required
@require_POST
def destroy_evidence(request, item_id):
    """The first senior records a law-enforcement destruction request; nothing is destroyed until a
    different senior approves it (`destruction_action`)."""
    require_report_access(request.user, FILE_CYBERTIP)
    item = access_item(request.user, item_id)
    back = _back(request, reverse("cases:destruction_requests"))
    verify = require_second_factor(request, back)
    if verify is not None:
        return verify
    try:
        preservation.request_destruction(
            request.user, item, reason=request.POST.get("reason", ""), reference=request.POST.get("reference", ""),
            legal_request=_legal_request(request.POST.get("legal_request", "")), ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Destruction of item {item.pk} recorded: a second senior must approve it "
                                  "before anything is destroyed.")
    return redirect(back)


@login_required
@require_GET
def destruction_requests(request):
    """Destruction requests waiting for a second senior, and the latest decided."""
    require_report_access(request.user, FILE_CYBERTIP)
    verify = require_second_factor(request)
    if verify is not None:
        return verify
    rows = DestructionRequest.objects.select_related("item", "legal_request", "requested_by", "decided_by")
    return render(request, "cases/destroy_requests.html", {
        "pending": rows.filter(status=Pending), "decided": rows.exclude(status=Pending)[:50]})


@login_required
@require_POST
def destruction_action(request, pk, verb):
    """A second senior approves (the holds are lifted and the bytes destroyed) or rejects a destruction request."""
    request_obj = access_destruction_request(request.user, pk)
    back = _back(request, reverse("cases:destruction_requests"))
    verify = require_second_factor(request, back)
    if verify is not None:
        return verify
    note, ip = request.POST.get("note", ""), client_ip(request)
    try:
        if verb == "approve":
            preservation.approve_destruction(request.user, request_obj.pk, note=note, ip=ip)
            text = f"Approved: the evidence of item {request_obj.item_id} was destroyed; its hashes and history remain."
        else:
            preservation.reject_destruction(request.user, request_obj.pk, note=note, ip=ip)
            text = f"Rejected: the evidence of item {request_obj.item_id} is kept."
    except ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, text)
    return redirect(back)
