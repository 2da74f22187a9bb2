from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from detection import matching, retro
from detection.banks import delete_bank, remove_entry
from detection.detectors.text import MAX_CHARS, check_term, highlight_pieces, match_terms, normalise, score
from detection.models import Bank, BankHash, BankHashOutcome, HashExchange, TextTerm
from detection.termlists import active_terms
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit


def _ip(request):
    return request.META.get("REMOTE_ADDR") or None


def _audited(request, event, obj, **details):
    audit(request.user, event, object_type=obj._meta.model_name, object_id=obj.pk, ip=_ip(request),
          details={"via": "admin", **details})


def _touch(bank_ids):
    # Workers reload a bank when its updated_at moves; a deleted entry moves no id, so say so here.
    Bank.objects.filter(pk__in=set(bank_ids)).update(updated_at=timezone.now())
    matching.invalidate()


def _plain(value):
    """A form value as it can stand in an audit row's JSON."""
    return value.isoformat() if hasattr(value, "isoformat") else value


def _term_details(term, **more):
    return {"via": "admin", "category": term.category, "term": term.term, "match": term.match, **more}


def set_terms_enabled(user, term_ids, enabled, *, ip=None):
    """Switch text terms on or off, one audit row per term that changed, all or nothing.

    Each row is saved (not updated in bulk) so that its updated_at moves: that is what tells the
    workers' term caches to reload. Returns how many terms changed.
    """
    with transaction.atomic():
        terms = list(TextTerm.objects.select_for_update().filter(pk__in=list(term_ids)).exclude(enabled=enabled)
                     .order_by("pk"))
        for term in terms:
            term.enabled = enabled
            term.save(update_fields=["enabled", "updated_at"])
            audit(user, Event.TEXT_TERM_CHANGED, object_type="textterm", object_id=term.pk, ip=ip,
                  details=_term_details(term, changes={"enabled": [not enabled, enabled]}))
    return len(terms)


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
        with transaction.atomic():  # inside the admin's own transaction: the bank and its row together
            super().save_model(request, obj, form, change)
            _audited(request, Event.BANK_CHANGED if change else Event.BANK_CREATED, obj, name=obj.name,
                     changes={name: _plain(form.cleaned_data.get(name)) for name in form.changed_data})
        matching.invalidate()

    def delete_model(self, request, obj):
        delete_bank(request.user, obj, ip=_ip(request), via="admin")

    def delete_queryset(self, request, queryset):
        with transaction.atomic():  # the bulk action has no transaction of its own: all banks or none
            for bank in queryset:
                delete_bank(request.user, bank, ip=_ip(request), via="admin")


@admin.register(BankHash)
class BankHashAdmin(admin.ModelAdmin):
    list_display = ["value", "hash_type", "bank", "label", "media_key", "status", "match_count", "confirm_count",
                    "dismiss_count", "auto_action_count", "added_by", "added_at"]
    list_filter = ["hash_type", "status", "bank"]
    # Prefix searches only: a substring search reads every row of a 10M-entry bank.
    search_fields = ["^value", "^label"]
    list_select_related = ["bank", "added_by"]
    raw_id_fields = ["added_by"]
    show_full_result_count = False
    # The record is kept by the hash-quality loop, and the status changes only through its audited
    # actions (the bank page's deconfirm and reconfirm, the circuit breaker).
    readonly_fields = ["status", "status_reason", "status_changed_at", "match_count", "confirm_count",
                       "dismiss_count", "auto_action_count", "last_matched_at"]

    def save_model(self, request, obj, form, change):
        # An entry added (or its value edited) here is matched against the stored items too.
        with transaction.atomic(), retro.new_entries(obj.bank_id):
            if change and "value" in form.changed_data:
                retro.request_retro(obj.bank_id, after_id=obj.pk - 1)
            super().save_model(request, obj, form, change)
            _audited(request, Event.BANK_ENTRY_CHANGED if change else Event.BANK_ENTRY_ADDED, obj.bank,
                     entry=obj.pk, type=obj.hash_type, value=obj.value)
            _touch([obj.bank_id])

    def delete_model(self, request, obj):
        remove_entry(request.user, obj, ip=_ip(request), via="admin")

    def delete_queryset(self, request, queryset):
        rows = list(queryset.values_list("pk", "bank_id", "bank__name", "hash_type", "value", "label"))
        with transaction.atomic():  # the bulk action has no transaction of its own: all entries or none
            for pk, bank_id, name, hash_type, value, label in rows:
                audit(request.user, Event.BANK_ENTRY_REMOVED, object_type="bank", object_id=bank_id, ip=_ip(request),
                      details={"via": "admin", "name": name, "entry": pk, "type": hash_type, "value": value,
                               "label": label})
            BankHash.objects.filter(pk__in=[row[0] for row in rows]).delete()
            _touch([row[1] for row in rows])


@admin.register(BankHashOutcome)
class BankHashOutcomeAdmin(admin.ModelAdmin):
    """Read-only: outcomes are written by decisions and rules, and marked sent by the feedback job."""

    list_display = ["created_at", "outcome", "bank_hash", "decision", "item", "sent_at", "send_error"]
    list_filter = ["outcome", ("sent_at", admin.EmptyFieldListFilter), "bank_hash__bank"]
    list_select_related = ["bank_hash__bank"]
    raw_id_fields = ["bank_hash", "decision", "item"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
        changed = set_terms_enabled(request.user, queryset.values_list("pk", flat=True), True, ip=_ip(request))
        self.message_user(request, f"{changed} term(s) enabled.")

    @admin.action(description="Disable selected terms", permissions=["change"])
    def disable_terms(self, request, queryset):
        changed = set_terms_enabled(request.user, queryset.values_list("pk", flat=True), False, ip=_ip(request))
        self.message_user(request, f"{changed} term(s) disabled.")

    # The form and the list's "enabled" column both save through here, inside the admin's own
    # transaction; the savepoint keeps the term and its audit row together whoever calls.
    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if change:
                changes = {name: [_plain(form.initial.get(name)), _plain(form.cleaned_data.get(name))]
                           for name in form.changed_data}
                audit(request.user, Event.TEXT_TERM_CHANGED, object_type="textterm", object_id=obj.pk,
                      ip=_ip(request), details=_term_details(obj, changes=changes))
            else:
                audit(request.user, Event.TEXT_TERM_CREATED, object_type="textterm", object_id=obj.pk,
                      ip=_ip(request), details=_term_details(obj, weight=obj.weight, enabled=obj.enabled))

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit(request.user, Event.TEXT_TERM_DELETED, object_type="textterm", object_id=obj.pk,
                  ip=_ip(request), details=_term_details(obj))
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():  # the bulk action has no transaction of its own
            for term in queryset.select_for_update():
                audit(request.user, Event.TEXT_TERM_DELETED, object_type="textterm", object_id=term.pk,
                      ip=_ip(request), details=_term_details(term))
            super().delete_queryset(request, queryset)

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
