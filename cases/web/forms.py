"""Validation of what the platform sends, with errors worded for the integrator."""

import json

from django import forms
from django.conf import settings

from detection.intake import REPORT_REASONS
from detection.models import ItemKind

MAX_FACTS_BYTES = 16 * 1024
IDENTIFIER = {"max_length": 255, "strip": True}


class FactsField(forms.JSONField):
    def to_python(self, value):
        value = super().to_python(value)
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("must be a JSON object")
        if len(json.dumps(value)) > MAX_FACTS_BYTES:
            raise forms.ValidationError(f"must be at most {MAX_FACTS_BYTES} bytes of JSON")
        return value

    def bound_data(self, data, initial):
        return data


class ItemForm(forms.Form):
    account = forms.CharField(**IDENTIFIER)
    group = forms.CharField(required=False, **IDENTIFIER)
    kind = forms.ChoiceField(choices=ItemKind.choices, required=False)
    external_id = forms.CharField(required=False, **IDENTIFIER)
    uploaded_at = forms.DateTimeField(required=False)
    ip = forms.GenericIPAddressField(required=False)
    text = forms.CharField(required=False, strip=False)
    file = forms.FileField(required=False, allow_empty_file=True)

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
        return data


class AccountForm(forms.Form):
    screen_name = forms.CharField(required=False, max_length=255)
    display_name = forms.CharField(required=False, max_length=255)
    bio = forms.CharField(required=False, max_length=5000)
    email = forms.CharField(required=False, max_length=320)
    phone = forms.CharField(required=False, max_length=64)
    age_band = forms.CharField(required=False, max_length=16)
    registered_at = forms.DateTimeField(required=False)
    facts = FactsField(required=False)


class GroupForm(forms.Form):
    name = forms.CharField(required=False, max_length=255)
    description = forms.CharField(required=False, max_length=5000)
    member_count = forms.IntegerField(required=False, min_value=0, max_value=10**9)
    facts = FactsField(required=False)
    members = forms.JSONField(required=False)

    def clean_members(self):
        members = self.cleaned_data.get("members")
        if members in (None, ""):
            return None
        if not isinstance(members, list) or not all(isinstance(m, str) and 0 < len(m) <= 255 for m in members):
            raise forms.ValidationError("must be a list of account ids (strings of 1 to 255 characters)")
        if len(members) > 1000:
            raise forms.ValidationError("at most 1000 members a request")
        return members


class ReportForm(forms.Form):
    reporter = forms.CharField(**IDENTIFIER)
    account = forms.CharField(required=False, **IDENTIFIER)
    group = forms.CharField(required=False, **IDENTIFIER)
    item = forms.IntegerField(required=False, min_value=1)
    reason = forms.ChoiceField(choices=[(k, v[0]) for k, v in REPORT_REASONS.items()])
    comment = forms.CharField(required=False, max_length=5000)
    external_id = forms.CharField(required=False, **IDENTIFIER)

    def clean(self):
        data = super().clean()
        targets = [name for name in ("account", "group", "item") if data.get(name)]
        if len(targets) != 1:
            raise forms.ValidationError("name exactly one target: account, group or item")
        return data


def errors_of(form):
    return {field: [e["message"] for e in errs] for field, errs in form.errors.get_json_data().items()}
