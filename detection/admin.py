from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from detection import matching
from detection.detectors.text import MAX_CHARS, check_term, highlight_pieces, match_terms, normalise, score
from detection.models import Bank, BankHash, HashExchange, TextTerm
from detection.termlists import active_terms
from reviewconsole.audit.recorder import audit


def _audited(request, action, obj, **details):
    audit(request.user, action, object_type=obj._meta.model_name, object_id=obj.pk,
          ip=request.META.get("REMOTE_ADDR") or None, details={"via": "admin", **details})


def _touch(bank_ids):
    # Workers reload a bank when its updated_at moves; a deleted entry moves no id, so say so here.
    Bank.objects.filter(pk__in=set(bank_ids)).update(updated_at=timezone.now())
    matching.invalidate()


class HashExchangeInline(admin.StackedInline):
    model = HashExchange
    extra = 0
    can_delete = False
    readonly_fields = ["api", "checkpoint", "fetched_at", "last_error", "last_error_at", "totals"]


@admin.register(Bank)
class BankAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "source", "enabled", "severity", "pdq_threshold", "phash_threshold",
                    "dhash_threshold", "video_match_percent", "updated_at"]
    list_filter = ["enabled", "kind", "source"]
    search_fields = ["name", "description"]
    inlines = [HashExchangeInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        _audited(request, "bank.changed" if change else "bank.created", obj, name=obj.name,
                 changes={name: form.cleaned_data.get(name) for name in form.changed_data})
        matching.invalidate()

    def delete_model(self, request, obj):
        _audited(request, "bank.deleted", obj, name=obj.name)
        super().delete_model(request, obj)
        matching.invalidate()

    def delete_queryset(self, request, queryset):
        for bank in queryset:
            _audited(request, "bank.deleted", bank, name=bank.name)
        super().delete_queryset(request, queryset)
        matching.invalidate()


@admin.register(BankHash)
class BankHashAdmin(admin.ModelAdmin):
    list_display = ["value", "hash_type", "bank", "label", "media_key", "added_by", "added_at"]
    list_filter = ["hash_type", "bank"]
    # Prefix searches only: a substring search reads every row of a 10M-entry bank.
    search_fields = ["^value", "^label"]
    list_select_related = ["bank", "added_by"]
    raw_id_fields = ["added_by"]
    show_full_result_count = False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        _audited(request, "bank.entry_changed" if change else "bank.entry_added", obj.bank, entry=obj.pk,
                 type=obj.hash_type, value=obj.value)
        _touch([obj.bank_id])

    def delete_model(self, request, obj):
        _audited(request, "bank.entry_removed", obj.bank, entry=obj.pk, type=obj.hash_type, value=obj.value)
        super().delete_model(request, obj)
        _touch([obj.bank_id])

    def delete_queryset(self, request, queryset):
        rows = list(queryset.values_list("pk", "bank_id", "hash_type", "value"))
        for pk, bank_id, hash_type, value in rows:
            audit(request.user, "bank.entry_removed", object_type="bank", object_id=bank_id,
                  details={"via": "admin", "entry": pk, "type": hash_type, "value": value})
        super().delete_queryset(request, queryset)
        _touch([bank_id for _, bank_id, _, _ in rows])


class TextTermForm(forms.ModelForm):
    class Meta:
        model = TextTerm
        fields = ["category", "term", "match", "weight", "enabled", "note"]

    def clean_weight(self):
        weight = self.cleaned_data["weight"]
        if weight is not None and not 0 <= weight <= 1:
            raise forms.ValidationError("The weight is between 0 and 1.")
        return weight

    def clean(self):
        data = super().clean()
        term, match = (data.get("term") or "").strip(), data.get("match")
        if term and match:
            try:
                check_term(term, match)
            except ValueError as exc:
                self.add_error("term", str(exc))
            data["term"] = term
        return data


class TestTextForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}), strip=False,
                           max_length=MAX_CHARS, help_text="Matched against the enabled terms, as a bio would be")


@admin.register(TextTerm)
class TextTermAdmin(admin.ModelAdmin):
    form = TextTermForm
    list_display = ["term", "category", "match", "weight", "enabled", "note", "updated_at"]
    list_filter = ["category", "match", "enabled"]
    list_editable = ["enabled"]
    search_fields = ["term", "note"]
    change_list_template = "admin/detection/textterm/change_list.html"
    actions = ["enable_terms", "disable_terms"]

    @admin.action(description="Enable selected terms", permissions=["change"])
    def enable_terms(self, request, queryset):
        for term in queryset:  # save() per row bumps updated_at, which tells workers to reload
            term.enabled = True
            term.save(update_fields=["enabled", "updated_at"])

    @admin.action(description="Disable selected terms", permissions=["change"])
    def disable_terms(self, request, queryset):
        for term in queryset:
            term.enabled = False
            term.save(update_fields=["enabled", "updated_at"])

    def get_urls(self):
        return [
            path("test/", self.admin_site.admin_view(self.test_text_view), name="detection_textterm_test"),
            *super().get_urls(),
        ]

    def test_text_view(self, request):
        """Try a text against the enabled terms: the normalised readings and every hit, highlighted."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = TestTextForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            sample = form.cleaned_data["text"]
            norm = normalise(sample)
            hits = match_terms(sample, active_terms(force=True), normalised=norm)
            result = {
                "norm": norm, "hits": hits, "score": score(hits),
                "pieces": highlight_pieces(sample, [(h["start"], h["end"]) for h in hits]),
            }
        return TemplateResponse(request, "admin/detection/textterm/test_text.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "form": form, "result": result,
            "title": "Test a text against the term lists",
        })
