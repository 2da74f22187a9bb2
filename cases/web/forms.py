"""Validation of what the platform sends, with errors worded for the integrator."""

import datetime
import json
import math

from django import forms
from django.conf import settings

from detection.intake import MAX_FORWARDS, REPORT_REASONS
from detection.models import ItemKind

MAX_FACTS_BYTES = 16 * 1024
MAX_MEMBERS = 1000
MAX_MEMBER_COUNT = 10**9
MAX_HASH_CHARS = 128
MAX_DEVICE_HASHES = 20
IDENTIFIER = {"max_length": 255, "strip": True}
NUL_MESSAGE = "must not contain NUL characters (\\x00)"

# Where a group's invite link was seen listed in public, and which apps sent it members: bounded lists.
MAX_LISTINGS = 50
MAX_REFERRALS = 50
MAX_SOURCE_CHARS = 253  # the longest domain name
LISTING_KINDS = ("site", "app")
# A count no subject reaches (the risk scores ignore anything larger too): a platform bug, refused.
MAX_COUNT = 10**12

# The facts the risk scores read, and what each must be (the OpenAPI document states the same).
COUNT, SHARE, HASH, HASHES, LISTINGS, REFERRALS = "count", "share", "hash", "hashes", "listings", "referrals"
ACCOUNT_FACTS = {"phone_hash": HASH, "device_hashes": HASHES, "teen_non_contacts_initiated_7d": COUNT,
                 "non_contacts_initiated_7d": COUNT, "blocked_by_teens_30d": COUNT, "reported_by_teens_30d": COUNT,
                 "first_contact_blocks_30d": COUNT, "first_contact_reports_30d": COUNT,
                 "group_adds_refused_30d": COUNT}
GROUP_FACTS = {"invite_link_resets_7d": COUNT, "member_joins_7d": COUNT, "media_post_share": SHARE,
               "teen_members": COUNT, "adult_members": COUNT, "invite_listings": LISTINGS,
               "invite_join_share": SHARE, "referral_joins": REFERRALS}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value, upper=MAX_COUNT):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= upper


def _source_error(value):
    if not (isinstance(value, str) and value.strip() and len(value) <= MAX_SOURCE_CHARS):
        return f"must be a site's domain or an app's name: 1 to {MAX_SOURCE_CHARS} characters"
    return None


def _entries_error(value, limit, keys):
    """Why a list of small objects (listings, referrals) is malformed, or None; `keys`: {key: check}."""
    if not isinstance(value, list) or len(value) > limit:
        return f"must be a list of at most {limit} objects"
    for n, entry in enumerate(value):
        if not isinstance(entry, dict):
            return f"[{n}] must be an object with {', '.join(keys)}"
        extra = sorted(set(entry) - set(keys))
        if extra:
            return f"[{n}] has an unknown key `{extra[0][:40]}`; an entry holds {', '.join(keys)}"
        for key, check in keys.items():
            message = check(entry.get(key))
            if message:
                return f"[{n}].{key} {message}"
    return None


def _seen_at_error(value):
    if not isinstance(value, str) or len(value) > 64:
        return "must be a date and time as an ISO 8601 string"
    try:
        DateTimeField().clean(value)
    except forms.ValidationError as exc:
        return exc.messages[0]
    return None


LISTING_KEYS = {"source": _source_error,
                "kind": lambda v: None if v in LISTING_KINDS else "must be site or app",
                "seen_at": _seen_at_error}
REFERRAL_KEYS = {"app": _source_error,
                 "joins": lambda v: None if _is_count(v) else f"must be a whole number from 0 to {MAX_COUNT}"}


def _fact_error(kind, value):
    if kind == COUNT and not _is_count(value):
        return f"must be a whole number from 0 to {MAX_COUNT}"
    if kind == LISTINGS:
        return _entries_error(value, MAX_LISTINGS, LISTING_KEYS)
    if kind == REFERRALS:
        return _entries_error(value, MAX_REFERRALS, REFERRAL_KEYS)
    if kind == SHARE and not (_is_number(value) and 0 <= value <= 1):
        return "must be a number from 0 to 1"
    if kind == HASH and not (isinstance(value, str) and len(value) <= MAX_HASH_CHARS):
        return f"must be a string of at most {MAX_HASH_CHARS} characters"
    if kind == HASHES and not (isinstance(value, list) and len(value) <= MAX_DEVICE_HASHES and all(
            isinstance(v, str) and len(v) <= MAX_HASH_CHARS for v in value)):
        return f"must be a list of at most {MAX_DEVICE_HASHES} strings of at most {MAX_HASH_CHARS} characters"
    return None


def _bad_value(value):
    """Why a JSON value cannot be stored (a NUL character, NaN or an infinity anywhere), or None."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack += list(node) + list(node.values())
        elif isinstance(node, list):
            stack += node
        elif isinstance(node, str) and "\x00" in node:
            return NUL_MESSAGE
        elif isinstance(node, float) and not math.isfinite(node):
            return "must not hold NaN or infinite numbers"
    return None


def _strict_json(text):
    def refuse(name):
        raise ValueError(f"{name} is not a JSON number")

    return json.loads(text, parse_constant=refuse)


class FactsField(forms.JSONField):
    """A JSON object of behaviour facts; the known keys (`spec`) must have the documented types."""

    def __init__(self, *, spec=None, **kwargs):
        self.spec = spec or {}
        super().__init__(**kwargs)

    def to_python(self, value):
        if isinstance(value, str) and value not in self.empty_values:
            try:
                value = _strict_json(value)
            except (ValueError, RecursionError):
                raise forms.ValidationError("must be a JSON object") from None
        else:
            value = super().to_python(value)
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("must be a JSON object")
        problem = _bad_value(value)
        if problem:
            raise forms.ValidationError(problem)
        if len(json.dumps(value)) > MAX_FACTS_BYTES:
            raise forms.ValidationError(f"must be at most {MAX_FACTS_BYTES} bytes of JSON")
        for key, kind in self.spec.items():
            message = _fact_error(kind, value[key]) if key in value else None
            if message:
                if message.startswith("["):  # an entry of a list: name it, `invite_listings[3].kind`
                    path, _, message = message.partition(" ")
                    raise forms.ValidationError(f"`{key}{path}` {message}")
                raise forms.ValidationError(f"`{key}` {message}")
        return value

    def bound_data(self, data, initial):
        return data


class DateTimeField(forms.DateTimeField):
    """An ISO 8601 date and time that can be stored: no year 1 or 9999 offsets that overflow in UTC."""

    def to_python(self, value):
        if value not in self.empty_values and not isinstance(value, (str, datetime.datetime)):
            raise forms.ValidationError("must be a date and time as an ISO 8601 string")
        value = super().to_python(value)
        if value is not None:
            try:
                value.astimezone(datetime.UTC)
            except (OverflowError, ValueError):
                raise forms.ValidationError("out of range") from None
            offset = value.utcoffset()
            # Real offsets run from -12:00 to +14:00; PostgreSQL refuses anything past ±15:59.
            if offset is not None and abs(offset) > datetime.timedelta(hours=14):
                raise forms.ValidationError("time zone offset out of range (at most ±14:00)")
        return value


class MarkField(forms.Field):
    """A true/false mark, left out when unknown: JSON true/false, or "true"/"false" in a multipart form."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise forms.ValidationError("must be true or false")


def json_type_errors(form_class, body):
    """Field errors for JSON values of the wrong type (a number for a string, a list for a date, ...)."""
    errors = {}
    for name, value in body.items():
        field = form_class.base_fields.get(name)
        if field is None or value is None or isinstance(field, (forms.JSONField, forms.FileField)):
            continue
        if isinstance(field, forms.IntegerField):
            if isinstance(value, bool) or not isinstance(value, int):
                errors[name] = ["must be a whole number"]
        elif isinstance(field, MarkField):
            if not isinstance(value, bool):
                errors[name] = ["must be true or false"]
        elif not isinstance(value, str):
            errors[name] = ["must be a string"]
    return errors


class ItemForm(forms.Form):
    account = forms.CharField(**IDENTIFIER)
    group = forms.CharField(required=False, **IDENTIFIER)
    kind = forms.ChoiceField(choices=ItemKind.choices, required=False)
    external_id = forms.CharField(required=False, **IDENTIFIER)
    uploaded_at = DateTimeField(required=False)
    ip = forms.GenericIPAddressField(required=False)
    text = forms.CharField(required=False, strip=False)
    file = forms.FileField(required=False, allow_empty_file=True)
    # How far it travelled (detection.intake.clean_spread): known material that spread is more urgent.
    forward_count = forms.IntegerField(required=False, min_value=0, max_value=MAX_FORWARDS)
    forward_chats = forms.IntegerField(required=False, min_value=0, max_value=MAX_FORWARDS)
    forwarded_many = MarkField(required=False)

    def clean(self):
        data = super().clean()
        kind = data.get("kind") or (ItemKind.TEXT if "text" in self.data and not data.get("file") else ItemKind.IMAGE)
        data["kind"] = kind
        upload = data.get("file")
        if kind == ItemKind.TEXT:
            if upload:
                self.add_error("file", "text items carry `text`, not a file")
            text = data.get("text") or ""
            if not text.strip():
                self.add_error("text", "required for text items")
            elif len(text) > settings.MAX_TEXT_CHARS:
                self.add_error("text", f"at most {settings.MAX_TEXT_CHARS} characters")
        elif upload is None:
            self.add_error("file", "required: send the image or video as multipart field `file`")
        elif upload.size > settings.MAX_UPLOAD_BYTES:
            self.add_error("file", f"too large: {upload.size} bytes (limit {settings.MAX_UPLOAD_BYTES})")
        elif upload.size == 0:
            self.add_error("file", "empty file")
        elif "\x00" in (upload.name or "") + (upload.content_type or ""):
            self.add_error("file", f"the file name and content type {NUL_MESSAGE}")
        return data


class AccountForm(forms.Form):
    screen_name = forms.CharField(required=False, max_length=255)
    display_name = forms.CharField(required=False, max_length=255)
    bio = forms.CharField(required=False, max_length=5000)
    email = forms.CharField(required=False, max_length=320)
    phone = forms.CharField(required=False, max_length=64)
    age_band = forms.CharField(required=False, max_length=16)
    registered_at = DateTimeField(required=False)
    facts = FactsField(required=False, spec=ACCOUNT_FACTS)


class GroupForm(forms.Form):
    name = forms.CharField(required=False, max_length=255)
    description = forms.CharField(required=False, max_length=5000)
    member_count = forms.IntegerField(required=False, min_value=0, max_value=MAX_MEMBER_COUNT)
    facts = FactsField(required=False, spec=GROUP_FACTS)
    members = forms.JSONField(required=False)

    def clean_members(self):
        members = self.cleaned_data.get("members")
        if members in (None, ""):
            return None
        if not isinstance(members, list) or not all(isinstance(m, str) and 0 < len(m) <= 255 for m in members):
            raise forms.ValidationError("must be a list of account ids (strings of 1 to 255 characters)")
        if any("\x00" in m for m in members):
            raise forms.ValidationError(f"account ids {NUL_MESSAGE}")
        if len(members) > MAX_MEMBERS:
            raise forms.ValidationError(f"at most {MAX_MEMBERS} members a request")
        return members


class ReportForm(forms.Form):
    reporter = forms.CharField(**IDENTIFIER)
    account = forms.CharField(required=False, **IDENTIFIER)
    group = forms.CharField(required=False, **IDENTIFIER)
    item = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    reason = forms.ChoiceField(choices=[(k, v[0]) for k, v in REPORT_REASONS.items()])
    comment = forms.CharField(required=False, max_length=5000)
    external_id = forms.CharField(required=False, **IDENTIFIER)

    def clean(self):
        data = super().clean()
        targets = [name for name in ("account", "group", "item") if data.get(name)]
        if len(targets) != 1:
            raise forms.ValidationError("name exactly one target: account, group or item")
        return data



class AppealForm(forms.Form):
    """A user's appeal (DSA Art. 20) of a ban or removal, named by its enforcement id or its statement's id."""

    enforcement = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    statement_of_reasons = forms.CharField(required=False, max_length=64, strip=True)
    account = forms.CharField(required=False, **IDENTIFIER)
    statement = forms.CharField(max_length=settings.APPEAL_MAX_CHARS, strip=True)
    attachment = forms.CharField(required=False, max_length=settings.APPEAL_ATTACHMENT_MAX_CHARS, strip=False)

    def clean(self):
        data = super().clean()
        named = [name for name in ("enforcement", "statement_of_reasons") if data.get(name)]
        if len(named) != 1 and not {"enforcement", "statement_of_reasons"} & set(self.errors):
            raise forms.ValidationError("name the decision appealed: exactly one of enforcement (its id) or "
                                        "statement_of_reasons (its id, sor-...)")
        return data

def errors_of(form):
    return {field: [e["message"] for e in errs] for field, errs in form.errors.get_json_data().items()}
