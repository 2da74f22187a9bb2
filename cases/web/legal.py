"""Law-enforcement requests: the agencies' portal (/le/) and the liaison team's queue (/legal/).

Agency users reach their requests only through `legal.requests_for_agency_user`, so a guessed id
from another agency is a 404, the same as an id that does not exist. Every page view and download,
on both sides, is audited.
"""

from datetime import datetime, time

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cases import selectors
from cases.actions import ActionError, legal
from cases.models import LegalDocument, LegalHold, LegalRequest, LegalRequestKind
from cases.web.permissions import access_officer, client_ip, require_liaison
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit


def _too_big():
    return legal.RejectedDocument(
        f"The document is larger than {settings.LEGAL_DOCUMENT_MAX_BYTES // (1024 * 1024)} MB.")


def _upload(request, field):
    """(bytes, name) of an uploaded file, refused by its size before a byte of it is read."""
    upload = request.FILES.get(field)
    if upload is None:
        return None, ""
    if upload.size > settings.LEGAL_DOCUMENT_MAX_BYTES:
        raise _too_big()
    return upload.read(), upload.name


def _pdf_response(data, doc):
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{doc.name}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"
    return response


# The agencies' portal ---------------------------------------------------------------------------

class RequestForm(forms.Form):
    # No kind is pre-selected: a request is an emergency (answered within the hour, ahead of the
    # queue) only when the officer says so.
    kind = forms.ChoiceField(choices=[("", "Choose the kind of request"), *LegalRequestKind.choices],
                             label="Kind of request",
                             help_text="Emergency disclosure only for a danger of death or serious physical injury.",
                             error_messages={"required": "Choose the kind of request."})
    reference = forms.CharField(max_length=100, label="Your case or docket number")
    identifiers = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=10_000,
                                  help_text="One per line: 'account: ID' or 'group: ID'.")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), max_length=20_000,
                                  help_text="What you ask for and the legal basis. For an emergency, the danger.")
    due_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    document = forms.FileField(help_text="The signed legal process, as a PDF.")


@login_required
@require_GET
def portal(request):
    member = access_officer(request.user)
    requests = legal.requests_for_agency_user(request.user).select_related("submitted_by")
    audit(request.user, Event.LEGAL_PORTAL_VIEWED, object_type="agency", object_id=member.agency_id,
          ip=client_ip(request))
    return render(request, "legal/portal.html", {"agency": member.agency, "requests": requests})


@login_required
@require_http_methods(["GET", "POST"])
def portal_new(request):
    member = access_officer(request.user)
    form = RequestForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            document, name = _upload(request, "document")
            due_at = datetime.combine(data["due_date"], time(23, 59), tzinfo=timezone.get_current_timezone())
            created = legal.submit_request(
                request.user, kind=data["kind"], reference=data["reference"],
                identifiers=legal.parse_identifiers(data["identifiers"]), description=data["description"],
                due_at=due_at, document=document, document_name=name, ip=client_ip(request))
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Request {created.pk} filed. You will see our answer here.")
            return redirect("cases:portal_request", pk=created.pk)
    return render(request, "legal/portal_new.html", {"agency": member.agency, "form": form})


@login_required
@require_GET
def portal_request(request, pk):
    access_officer(request.user)
    request_obj = get_object_or_404(legal.requests_for_agency_user(request.user), pk=pk)
    audit(request.user, Event.LEGAL_REQUEST_VIEWED, object_type="legalrequest", object_id=pk, ip=client_ip(request))
    return render(request, "legal/portal_request.html", {
        "req": request_obj, "documents": request_obj.documents.all(),
        "unmatched": selectors.unmatched_identifiers(request_obj),
        "messages_": request_obj.messages.select_related("author"),
        "holds": LegalHold.active().filter(legal_request=request_obj).count(),
    })


@login_required
@require_POST
def portal_message(request, pk):
    access_officer(request.user)
    request_obj = get_object_or_404(legal.requests_for_agency_user(request.user), pk=pk)
    try:
        document, name = _upload(request, "document")
        legal.add_agency_message(request.user, request_obj, text=request.POST.get("text", "")[:20_000],
                                 document=document, document_name=name, ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Sent.")
    return redirect("cases:portal_request", pk=pk)


@login_required
@require_GET
def portal_document(request, pk, doc_id):
    access_officer(request.user)
    request_obj = get_object_or_404(legal.requests_for_agency_user(request.user), pk=pk)
    doc = get_object_or_404(LegalDocument, pk=doc_id, request=request_obj)
    try:
        data = legal.read_document(request.user, doc, ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("cases:portal_request", pk=pk)
    return _pdf_response(data, doc)


# The liaison team -------------------------------------------------------------------------------

@login_required
@require_GET
def legal_queue(request):
    require_liaison(request.user)
    queue = list(legal.staff_queue())
    now = timezone.now()
    for request_obj in queue:
        request_obj.deadline = legal.sla_deadline(request_obj)
        request_obj.overdue = request_obj.deadline < now
    audit(request.user, Event.LEGAL_QUEUE_VIEWED, ip=client_ip(request))
    closed = LegalRequest.objects.exclude(pk__in=[r.pk for r in queue]).select_related("agency")[:20]
    return render(request, "legal/queue.html", {"queue": queue, "closed": closed})


@login_required
@require_GET
def legal_request(request, pk):
    require_liaison(request.user)
    request_obj = get_object_or_404(LegalRequest.objects.select_related("agency", "submitted_by", "verified_by"), pk=pk)
    audit(request.user, Event.LEGAL_REQUEST_VIEWED, object_type="legalrequest", object_id=pk, ip=client_ip(request))
    return render(request, "legal/request.html", {
        "req": request_obj, "deadline": legal.sla_deadline(request_obj),
        "documents": request_obj.documents.select_related("uploaded_by"),
        "messages_": request_obj.messages.select_related("author"),
        "accounts": request_obj.accounts.all(), "groups": request_obj.groups.all(),
        "unmatched": selectors.unmatched_identifiers(request_obj),
        "cases": request_obj.cases.select_related("queue", "account", "group"),
        "holds": LegalHold.active().filter(legal_request=request_obj).count(),
        "preservation_days": settings.LEGAL_PRESERVATION_DAYS,
    })


@login_required
@require_POST
def legal_action(request, pk, verb):
    require_liaison(request.user)
    request_obj = get_object_or_404(LegalRequest, pk=pk)
    post, ip = request.POST, client_ip(request)
    try:
        if verb == "verify":
            legal.verify(request.user, request_obj, note=post.get("note", ""), ip=ip)
            messages.success(request, "Verified.")
        elif verb == "link":
            found = legal.link_subjects(request.user, request_obj, ip=ip)
            messages.success(request, f"Linked {len(found['accounts'])} accounts, {len(found['groups'])} groups, "
                                      f"{len(found['cases'])} cases."
                                      + (f" Not found: {', '.join(found['missing'])}." if found["missing"] else ""))
        elif verb == "hold":
            try:
                days = int(post.get("days") or settings.LEGAL_PRESERVATION_DAYS)
            except ValueError:
                raise ActionError("Days must be a whole number.") from None
            new, extended = legal.place_holds(request.user, request_obj, days=days, ip=ip)
            messages.success(request, f"Preservation: {new} items newly held, {extended} holds extended.")
        elif verb == "respond":
            uploads = request.FILES.getlist("documents")
            if any(f.size > settings.LEGAL_DOCUMENT_MAX_BYTES for f in uploads):
                raise _too_big()
            documents = [(f.name, f.read()) for f in uploads]
            legal.respond(request.user, request_obj, text=post.get("text", "")[:20_000], documents=documents, ip=ip)
            messages.success(request, "Response sent to the agency.")
        elif verb in ("close", "reject"):
            legal.close(request.user, request_obj, reject=verb == "reject", note=post.get("note", "")[:2000], ip=ip)
            messages.success(request, "Rejected." if verb == "reject" else "Closed.")
        else:
            raise PermissionDenied
    except ActionError as exc:
        messages.error(request, str(exc))
    return redirect("cases:legal_request", pk=pk)


@login_required
@require_GET
def legal_document(request, pk, doc_id):
    require_liaison(request.user)
    doc = get_object_or_404(LegalDocument, pk=doc_id, request_id=pk)
    try:
        data = legal.read_document(request.user, doc, ip=client_ip(request))
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect("cases:legal_request", pk=pk)
    return _pdf_response(data, doc)
