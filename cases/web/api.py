"""The platform's HTTP API under /api/v1/: token-authenticated JSON."""

import json
import logging
import math
import re
from functools import wraps

from django import forms
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, ValidationError
from django.db.models import Count
from django.http import JsonResponse, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt

from cases import statements
from cases.actions import appeals as appeal_actions
from cases.actions import enforcement as enforcement_actions
from cases.models import APPEAL_OUTCOME, Case, CaseStatus, Enforcement
from cases.web.forms import AccountForm, AppealForm, GroupForm, ItemForm, ReportForm, errors_of, json_type_errors
from cases.web.openapi import (  # the documented bounds
    MAX_BATCH_BYTES,
    MAX_ID,
    MAX_JSON_DEPTH,
    MAX_LIMIT,
    MAX_OFFSET,
    document,
)
from cases.web.permissions import api_token_for, client_ip
from detection import intake
from detection.models import Item, ItemKind, Signal

logger = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 2000
_DIGITS = re.compile(r"[0-9]{1,19}")


class UnsupportedMediaType(Exception):
    """A body that is not JSON where JSON is expected: a 415 from api_view."""


def error(status, message, **extra):
    return JsonResponse({"error": message, **extra}, status=status)


def api_view(methods):
    """Token auth, method check and JSON errors for one endpoint."""

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in methods:
                response = error(405, f"method not allowed; use {', '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            token = api_token_for(request)
            if token is None:
                header = request.META.get("HTTP_AUTHORIZATION", "")
                return _unauthorised("invalid or revoked token" if header.startswith("Bearer ")
                                     else "missing `Authorization: Bearer <token>` header")
            request.api_token = token
            length = request.META.get("CONTENT_LENGTH") or "0"
            if not _DIGITS.fullmatch(length.strip()):
                return error(400, "the Content-Length header must be a whole number of bytes")
            try:
                return view(request, *args, **kwargs)
            except RequestDataTooBig:
                return error(413, f"request body too large: limit {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes")
            except (MultiPartParserError, UnreadablePostError) as exc:
                return error(400, f"unreadable request body: {exc}")
            except SuspiciousOperation as exc:  # too many fields or files, and the like
                return error(400, f"refused request: {exc}")
            except UnsupportedMediaType as exc:
                return error(415, str(exc))
            except BadInput as exc:
                return error(400, str(exc), **({"fields": exc.fields} if exc.fields else {}))
            except intake.Rejection as exc:
                return error(400, "invalid input", fields={exc.field: [exc.message]})
            except intake.InvalidHashes as exc:
                return error(400, "invalid hashes", fields=exc.fields)
            except Exception:  # never Django's HTML error page under /api/
                logger.exception("API error on %s %s", request.method, request.path)
                return error(500, "internal error; the request was not applied")

        return wrapper

    return decorator


def _unauthorised(message):
    response = error(401, message)
    response["WWW-Authenticate"] = 'Bearer realm="reviewconsole"'
    return response


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _finite(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range for a number")
    return value


# Where a lone surrogate can come from in UTF-8 JSON text: an escape (UTF-8 itself cannot encode one).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_tree(value, strings=True):
    """Depth and (with `strings`) unpaired surrogates anywhere in parsed JSON (keys included)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, dict):
            stack += ([(k, depth) for k in node] if strings else []) + [(v, depth + 1) for v in node.values()]
        elif isinstance(node, list):
            stack += [(v, depth + 1) for v in node]
        elif strings and isinstance(node, str):  # NUL characters are refused by the forms, naming the field
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("a string holds an unpaired surrogate (not valid Unicode text)") from None


def parse_json(raw):
    """Strict JSON: UTF-8 only, no NaN/Infinity or overflowing numbers, bounded depth; ValueError otherwise."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
        # Looking at every string costs more than parsing them; only an escape can hide a bad one.
        _check_tree(value, strings=not isinstance(raw, bytes) or bool(_SURROGATE_ESCAPE.search(text)))
    except UnicodeDecodeError:
        raise ValueError("malformed JSON: the body is not valid UTF-8") from None
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"malformed JSON: {exc}") from None
    return value


def _json_body(request):
    """The JSON object sent; an empty body (with or without a Content-Type) is the empty object."""
    empty = (request.META.get("CONTENT_LENGTH") or "0").strip() == "0"
    if request.content_type != "application/json" and not empty:
        raise UnsupportedMediaType("send a JSON body with Content-Type: application/json")
    raw = request.body  # RequestDataTooBig over DATA_UPLOAD_MAX_MEMORY_SIZE: a 413 from api_view
    if len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise RequestDataTooBig("JSON body too large")
    body = parse_json(raw or b"{}")
    if not isinstance(body, dict):
        raise ValueError("the JSON body must be an object")
    return body


def _query_int(request, name, default, maximum, minimum=0):
    value = request.GET.get(name)
    if value is None:
        return default
    if not _DIGITS.fullmatch(value) or not minimum <= int(value) <= maximum:
        raise ValueError(f"{name} must be a whole number from {minimum} to {maximum}")
    return int(value)


def _form_data(body, form_class):
    """JSON values as a form's data: objects and lists stay JSON text for JSON fields; null is left out."""
    json_fields = {name for name, field in form_class.base_fields.items() if isinstance(field, forms.JSONField)}
    return {k: (json.dumps(v) if k in json_fields and not isinstance(v, str) else v) for k, v in body.items()
            if v is not None}


class BadInput(Exception):
    """A refused request body: `api_view` answers it as a JSON 400 naming the fields."""

    def __init__(self, message, fields=None):
        super().__init__(message)
        self.fields = fields


def _validated_json(request, form_class, what):
    """(body, valid form) for a JSON request body, or BadInput."""
    try:
        body = _json_body(request)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    body, form, wrong = _json_form(body, form_class)
    if wrong:
        raise BadInput(f"invalid {what}", wrong)
    if not form.is_valid():
        raise BadInput(f"invalid {what}", errors_of(form))
    return body, form


def _json_form(body, form_class):
    """A bound form for a JSON body, or a 400 naming each field whose JSON type is wrong."""
    body = {k: v for k, v in body.items() if v is not None}
    wrong = json_type_errors(form_class, body)
    if wrong:
        return body, None, wrong
    return body, form_class(_form_data(body, form_class)), None


@csrf_exempt  # any method: a POST to an unknown path is a JSON 404, not the CSRF page
def not_found(request, path=""):
    return error(404, "no such API endpoint; see /api/v1/openapi.json")


def openapi(request):
    return JsonResponse(document())


class HashItemForm(ItemForm):
    """An image or video the platform hashed at its edge: an item's fields, no file and no text.

    The hashes themselves are checked by detection.intake.clean_hashes, which the action runs too.
    """

    text = None
    file = None
    kind = forms.ChoiceField(choices=[(ItemKind.IMAGE, "Image"), (ItemKind.VIDEO, "Video")], required=False,
                             error_messages={"invalid_choice": "hashes describe an image or a video: kind must be "
                                                               "image or video, not %(value)s"})

    def clean(self):
        data = self.cleaned_data
        if "kind" not in self.errors:
            data["kind"] = data.get("kind") or ItemKind.IMAGE
        return data


def _clean_fields(form_class, body):
    """(cleaned data, errors by field) of a JSON body by the form's own fields and messages, without a
    form instance: an instance deep-copies its fields, which costs ten times the checks themselves
    when a batch holds a thousand small items."""
    body = {k: v for k, v in body.items() if v is not None}
    wrong = json_type_errors(form_class, body)
    if wrong:  # as _json_form: a wrong JSON type is answered before the values are looked at
        return {}, wrong
    data = _form_data(body, form_class)
    cleaned, errors = {}, {}
    for name, field in form_class.base_fields.items():
        try:
            cleaned[name] = field.clean(data.get(name))
        except ValidationError as exc:
            errors[name] = list(exc.messages)
    return cleaned, errors


def _not_both(body):
    return {name: [f"send either a file or hashes, not both: `{name}` belongs to a {what}"]
            for name, what in (("file", "multipart upload"), ("text", "text item")) if body.get(name) is not None}


def _hash_item_form(body):
    """(form, errors by field) for the item fields of a JSON body that carried hashes."""
    fields = _not_both(body)
    body, form, wrong = _json_form(body, HashItemForm)
    if wrong:
        fields.update(wrong)
    elif not form.is_valid():
        fields.update(errors_of(form))
    return form, fields


def _hash_errors(body, hashes):
    kind = body.get("kind") if body.get("kind") in (ItemKind.IMAGE, ItemKind.VIDEO) else ItemKind.IMAGE
    try:
        intake.clean_hashes(hashes, kind)
    except intake.InvalidHashes as exc:
        return exc.fields
    return {}


def _check_hash_item(body, hashes):
    """The valid form for a JSON body that carried `hashes`, or BadInput naming every bad field, the
    item's and the hashes' together."""
    form, fields = _hash_item_form(body)
    fields.update(_hash_errors(body, hashes))
    if fields:
        raise BadInput("invalid item", fields)
    return form


def _existing(data):
    """The item a retried submission (same account and external_id) already created, if any."""
    if not data["external_id"]:
        return None
    return Item.objects.filter(account__external_id=data["account"], external_id=data["external_id"]).first()


def _spread(data):
    return {name: data.get(name) for name in intake.SPREAD_FIELDS}


@api_view(["POST"])
def items(request):
    declared = int(request.META.get("CONTENT_LENGTH") or 0)  # a whole number: checked by api_view
    if declared > settings.MAX_UPLOAD_BYTES + 64 * 1024:
        return error(413, f"request too large: limit {settings.MAX_UPLOAD_BYTES} bytes per file")
    hashes = None
    if request.content_type == "application/json":
        try:
            body = _json_body(request)
        except ValueError as exc:
            return error(400, str(exc))
        if body.get("hashes") is not None:
            hashes = body.pop("hashes")
            form = _check_hash_item(body, hashes)
        else:
            if body.get("kind") in (ItemKind.IMAGE, ItemKind.VIDEO):
                return error(400, "invalid item", fields={"hashes": [
                    "required for an image or video sent as JSON; or send the file itself as multipart `file`"]})
            body.setdefault("kind", ItemKind.TEXT)
            body, form, wrong = _json_form(body, ItemForm)
            if wrong:
                return error(400, "invalid item", fields=wrong)
    elif request.content_type == "multipart/form-data":
        if "hashes" in request.POST:
            return error(400, "invalid item", fields={"hashes": [
                "send either a file or hashes, not both; hashes go in a JSON body (Content-Type: application/json)"
                if "file" in request.FILES else "hashes go in a JSON body (Content-Type: application/json)"]})
        upload = request.FILES.get("file")
        if upload is not None and upload.size > settings.MAX_UPLOAD_BYTES:
            return error(413, f"file too large: {upload.size} bytes (limit {settings.MAX_UPLOAD_BYTES})")
        form = ItemForm(request.POST, request.FILES)
    else:
        return error(415, "send multipart/form-data with a `file`, or JSON for text items and hashes")
    if not form.is_valid():
        return error(400, "invalid item", fields=errors_of(form))
    data = form.cleaned_data
    existing = _existing(data)
    if existing:  # a retried submission: same item, not a second one
        return JsonResponse({"id": existing.pk, "status": existing.status, "duplicate": True}, status=200)
    common = {
        "account_id": data["account"], "group_id": data["group"] or None, "external_id": data["external_id"],
        "uploaded_at": data["uploaded_at"], "ip": data["ip"] or None,
        "actor_label": f"api:{request.api_token.name}", "spread": _spread(data),
    }
    if hashes is not None:
        item = intake.submit_hashes(hashes, kind=data["kind"], **common)
    elif data["kind"] == ItemKind.TEXT:
        item = intake.submit_text(data["text"], **common)
    else:
        upload = data["file"]
        item = intake.submit_file(
            upload.read(), kind=data["kind"], original_name=upload.name or "", declared_type=upload.content_type or "",
            **common,
        )
    return JsonResponse({"id": item.pk, "status": item.status}, status=202)


@api_view(["POST"])
def items_batch(request):
    """Up to MAX_BATCH_ITEMS hash-only items in one request: each answered at its position."""
    declared = int(request.META.get("CONTENT_LENGTH") or 0)  # a whole number: checked by api_view
    if declared > MAX_BATCH_BYTES:
        return error(413, f"batch too large: {declared} bytes (limit {MAX_BATCH_BYTES}); send it in smaller batches")
    if request.content_type != "application/json" and declared:
        return error(415, "send the batch as JSON with Content-Type: application/json")
    try:
        # Not request.body: that refuses anything over DATA_UPLOAD_MAX_MEMORY_SIZE, the bound of one item.
        body = parse_json(request.read(MAX_BATCH_BYTES) or b"{}")
    except ValueError as exc:
        return error(400, str(exc))
    if not isinstance(body, dict):
        return error(400, 'the JSON body must be an object: {"items": [...]}')
    fields = {key[:40]: ["unknown key; a batch holds only `items`"] for key in body if key != "items"}
    entries = body.get("items")
    if not isinstance(entries, list):
        fields["items"] = ["required: a list of hash-only items, each as POST /api/v1/items takes it"]
    elif not entries:
        fields["items"] = ["at least one item"]
    if fields:
        return error(400, "invalid batch", fields=fields)
    if len(entries) > intake.MAX_BATCH_ITEMS:
        return error(413, f"at most {intake.MAX_BATCH_ITEMS} items a batch, not {len(entries)}; split it")
    results, valid = [None] * len(entries), []
    for n, raw in enumerate(entries):
        try:
            valid.append((n, _batch_entry(raw)))
        except BadInput as exc:
            results[n] = {"error": str(exc), "fields": exc.fields}
    outcomes = intake.submit_hash_batch([entry for _, entry in valid], actor_label=f"api:{request.api_token.name}")
    for (n, _), outcome in zip(valid, outcomes, strict=True):
        results[n] = _batch_result(outcome)
    duplicates = sum(bool(r.get("duplicate")) for r in results)
    refused = sum("error" in r for r in results)
    return JsonResponse({"items": results, "accepted": len(results) - duplicates - refused,
                         "duplicates": duplicates, "refused": refused}, status=202)


def _batch_entry(raw):
    """The intake.HashItem for one entry of a batch, or BadInput naming all its bad fields at once."""
    if not isinstance(raw, dict):
        raise BadInput("invalid item", {"item": ['must be an object: {"account", "kind", "hashes", ...}']})
    body = {k: v for k, v in raw.items() if k != "hashes"}
    hashes = raw.get("hashes")
    fields = _not_both(body)
    data, errors = _clean_fields(HashItemForm, body)
    fields.update(errors)
    if hashes is None:
        fields["hashes"] = ["required: a batch holds hash-only items; send a file to POST /api/v1/items"]
    elif fields:
        # The hashes of an entry that passes the form are checked once, by the action.
        fields.update(_hash_errors(body, hashes))
    if fields:
        raise BadInput("invalid item", fields)
    return intake.HashItem(account_id=data["account"], hashes=hashes, group_id=data["group"] or None,
                           kind=data["kind"] or ItemKind.IMAGE, external_id=data["external_id"],
                           uploaded_at=data["uploaded_at"], ip=data["ip"] or None, spread=_spread(data))


def _batch_result(outcome):
    if isinstance(outcome, intake.Received):
        return {"id": outcome.id, "status": outcome.status, **({"duplicate": True} if outcome.duplicate else {})}
    if isinstance(outcome, intake.Rejection):
        return {"error": "invalid item", "fields": {outcome.field: [outcome.message]}}
    return {"error": "invalid item", "fields": outcome.fields}


@api_view(["GET"])
def item_detail(request, pk):
    item = Item.objects.filter(pk=pk).select_related("account", "group").first()
    if item is None:
        return error(404, "no such item")
    signals = list(item.signals.all().order_by("pk"))
    case_ids = sorted({s.case_id for s in signals if s.case_id})
    return JsonResponse({
        "id": item.pk,
        "kind": item.kind,
        "hash_only": item.hash_only,
        "status": item.status,
        "reject_reason": item.reject_reason or None,
        "account": item.account.external_id,
        "group": item.group.external_id if item.group else None,
        "external_id": item.external_id or None,
        "spread": {name: getattr(item, name) for name in intake.SPREAD_FIELDS},
        "hashes": {"md5": item.md5 or None, "sha256": item.sha256 or None, "pdq": item.pdq or None,
                   "pdq_quality": item.pdq_quality, "phash": item.phash or None, "dhash": item.dhash or None,
                   "frames": len(item.frame_hashes or [])},
        "signals": [
            {"id": s.pk, "kind": s.kind, "detector": s.detector, "label": s.label, "score": s.score,
             "severity": s.severity, "explanation": s.explanation, "details": s.details, "case": s.case_id}
            for s in signals
        ],
        "case": case_ids[-1] if case_ids else None,
        "received_at": item.created_at.isoformat(),
        "scanned_at": item.scanned_at.isoformat() if item.scanned_at else None,
    })


def _upsert(request, external_id, form_class, upsert):
    if not external_id or len(external_id) > 255:
        return error(400, "the external id must be 1 to 255 characters",
                     fields={"external_id": ["1 to 255 characters"]})
    if "\x00" in external_id:
        return error(400, "the external id must not contain NUL characters",
                     fields={"external_id": ["must not contain NUL characters (\\x00)"]})
    body, form = _validated_json(request, form_class, "subject")
    fields = {k: v for k, v in form.cleaned_data.items() if k in body}
    subject, created = upsert(external_id, fields)
    return JsonResponse({"external_id": subject.external_id, "created": created, "status": subject.status},
                        status=201 if created else 200)


@api_view(["PUT"])
def account(request, external_id):
    return _upsert(request, external_id, AccountForm, intake.upsert_account)


@api_view(["PUT"])
def group(request, external_id):
    def upsert(external_id, fields):
        members = fields.pop("members", None)
        return intake.upsert_group(external_id, fields, members=members)

    return _upsert(request, external_id, GroupForm, upsert)


@api_view(["POST"])
def reports(request):
    _, form = _validated_json(request, ReportForm, "report")
    data = form.cleaned_data
    try:
        report = intake.submit_report(
            reporter=data["reporter"], reason=data["reason"], comment=data["comment"],
            account_id=data["account"] or None, group_id=data["group"] or None, item_id=data["item"],
            external_id=data["external_id"], actor_label=f"api:{request.api_token.name}",
        )
    except intake.Rejection as exc:
        return error(400, "invalid report", fields={exc.field: [exc.message]})
    return JsonResponse({"id": report.pk, "status": "received"}, status=202)


@api_view(["POST"])
def appeals(request):
    """A user's appeal of a ban or removal (DSA Art. 20): 201 when received, 200 for a retry of the same."""
    _, form = _validated_json(request, AppealForm, "appeal")
    data = form.cleaned_data
    try:
        enforcement = appeal_actions.find_enforcement(enforcement_id=data["enforcement"],
                                                      statement_id=data["statement_of_reasons"])
        appeal, created = appeal_actions.submit_appeal(
            enforcement, text=data["statement"], attachment=data["attachment"], appellant=data["account"],
            via=f"api:{request.api_token.name}", ip=client_ip(request))
    except appeal_actions.AppealRefused as exc:
        response = error(exc.status, str(exc))
        if exc.status == 429:
            response["Retry-After"] = str(24 * 3600)
        return response
    return JsonResponse({"id": appeal.pk, "status": appeal.status}, status=201 if created else 200)


@api_view(["GET"])
def cases(request):
    status = request.GET.get("status", "open")
    queryset = Case.objects.select_related("queue", "account", "group").order_by("-priority", "created_at")
    if status == "open":
        queryset = queryset.filter(closed_at__isnull=True)
    elif status == "closed":
        queryset = queryset.filter(status=CaseStatus.CLOSED)
    elif status != "all":
        return error(400, "status must be open, closed or all")
    try:
        limit = _query_int(request, "limit", 100, MAX_LIMIT, minimum=1)
        offset = _query_int(request, "offset", 0, MAX_OFFSET)
    except ValueError as exc:
        return error(400, str(exc))
    page = list(queryset[offset:offset + limit])
    summaries = _signal_summaries([c.pk for c in page])
    return JsonResponse({
        "count": queryset.count(),
        "results": [
            {"id": c.pk, "status": c.status, "queue": c.queue.slug, "priority": c.priority,
             "subject": {"type": "account" if c.account_id else "group", "external_id": c.subject.external_id},
             "summary": c.summary, "signals": summaries.get(c.pk, {}), "resolution": c.resolution or None,
             "created_at": c.created_at.isoformat()}
            for c in page
        ],
    })


def _signal_summaries(case_ids):
    summary = {}
    rows = Signal.objects.filter(case_id__in=case_ids).values("case_id", "kind").annotate(n=Count("pk"))
    for row in rows:
        summary.setdefault(row["case_id"], {})[row["kind"]] = row["n"]
    return summary


def _enforcement_json(e, statement=None):
    return {"id": e.pk, "action": e.action, "target": e.target, "status": e.status,
            "platform": e.platform.name if e.platform else None, "decision": e.decision_id,
            "case": e.decision.case_id, "reason": e.decision.reason.code,
            "expires_at": e.decision.ban_until.isoformat() if e.decision.ban_until else None,
            "attempts": e.attempts, "confirmed_at": e.confirmed_at.isoformat() if e.confirmed_at else None,
            "created_at": e.created_at.isoformat(),
            "statement_of_reasons": statement.as_json() if statement else None,
            **({"appeal": e.payload.get("appeal")} if e.action == APPEAL_OUTCOME else {})}


@api_view(["GET"])
def enforcements(request):
    """For platforms that pull instead of (or as well as) receiving webhooks."""
    status = request.GET.get("status", "unconfirmed")
    queryset = Enforcement.objects.select_related("platform", "decision__reason").order_by("pk")
    filters = {"unconfirmed": {"confirmed_at__isnull": True}, "confirmed": {"confirmed_at__isnull": False},
               "all": {}}
    if status not in filters:
        return error(400, "status must be unconfirmed, confirmed or all")
    try:
        after = _query_int(request, "after", 0, MAX_ID)
    except ValueError as exc:
        return error(400, str(exc))
    page = list(queryset.filter(pk__gt=after, **filters[status])[:MAX_LIMIT])
    # Each ban or removal carries its statement of reasons, made now if the decision has not yet.
    found = statements.create_statements(page)
    return JsonResponse({"results": [_enforcement_json(e, found.get(statements.key_of(e))) for e in page]})


@api_view(["POST"])
def confirm_enforcement(request, pk):
    try:
        body = _json_body(request)
    except ValueError as exc:
        return error(400, str(exc))
    result = body.get("result")
    if result not in ("applied", "failed"):
        return error(400, "invalid confirmation", fields={"result": ["required: applied or failed"]})
    detail = body.get("detail")
    if detail is None:
        detail = ""
    if not isinstance(detail, str) or "\x00" in detail or len(detail) > MAX_DETAIL_CHARS:
        return error(400, "invalid confirmation",
                     fields={"detail": [f"must be text of at most {MAX_DETAIL_CHARS} characters, without NUL"]})
    try:
        # The first confirmation stands; a repeat is answered with it.
        enforcement = enforcement_actions.confirm_enforcement(
            request.api_token, pk, result=result, detail=detail, ip=client_ip(request))
    except Enforcement.DoesNotExist:
        return error(404, "no such enforcement")
    return JsonResponse(_enforcement_json(enforcement, statements.statement_for(enforcement)))
