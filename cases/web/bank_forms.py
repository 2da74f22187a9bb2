"""Forms for the bank pages: a bank's settings, a hash-list upload, and why an entry is deconfirmed or reconfirmed."""

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from detection.models import Bank, HashType

BANK_FIELDS = ["description", "kind", "source", "enabled", "severity", "pdq_threshold", "phash_threshold",
               "dhash_threshold", "video_match_percent"]
# Past these a "match" is mostly chance: PDQ is 256 bits, pHash and dHash 64.
LIMITS = {"severity": (0, 100), "pdq_threshold": (0, 80), "phash_threshold": (0, 20), "dhash_threshold": (0, 20),
          "video_match_percent": (1, 100)}


LABELS = {"pdq_threshold": "PDQ threshold", "phash_threshold": "pHash threshold",
          "dhash_threshold": "dHash threshold", "video_match_percent": "Video match (%)"}


class BankSettingsForm(forms.ModelForm):
    class Meta:
        model = Bank
        fields = BANK_FIELDS
        labels = LABELS

    def clean(self):
        data = super().clean()
        for name, (low, high) in LIMITS.items():
            value = data.get(name)
            if value is not None and not low <= value <= high:
                self.add_error(name, f"Between {low} and {high}.")
        return data


class NewBankForm(BankSettingsForm):
    class Meta:
        model = Bank
        fields = ["name", *BANK_FIELDS]
        labels = LABELS
        help_texts = {"name": "Lower-case letters, digits and dashes, e.g. ncmec-industry"}


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV or TSV (hash, type, label columns; a header row is optional) "
                                     "or plain text, one hash a line")
    format = forms.ChoiceField(choices=[("", "From the file name"), ("txt", "Plain text"), ("csv", "CSV"),
                                        ("tsv", "TSV")], required=False)
    hash_type = forms.ChoiceField(choices=[("", "From a type column"), *HashType.choices], required=False,
                                  label="Hash type", help_text="Needed for plain text; for CSV/TSV rows without a type")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.BANK_IMPORT_MAX_BYTES
        if upload.size > limit:
            raise ValidationError(f"The file is larger than {limit // (1024 * 1024)} MB; import big lists "
                                  "with `manage.py import_hashes`.")
        head = upload.read(64 * 1024)
        upload.seek(0)
        if b"\x00" in head:
            raise ValidationError("This is a binary file, not a list of hashes.")
        return upload

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload is None:
            return data
        name = upload.name.lower()
        data["format"] = data.get("format") or ("csv" if name.endswith(".csv") else "tsv" if name.endswith(".tsv")
                                                else "txt")
        if data["format"] == "txt" and not data.get("hash_type"):
            self.add_error("hash_type", "A plain-text list holds bare hashes: say which type they are.")
        return data


class EntryStatusForm(forms.Form):
    reason = forms.CharField(min_length=5, max_length=255, strip=True,
                             help_text="Kept with the entry and in the audit log")
