from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import transaction

from cases.actions.enforcement import retry_delivery
from cases.actions.enrolment import issue_enrolment_code
from cases.actions.policies import save_policy
from cases.dsa import resubmit
from cases.models import (
    Agency,
    AgencyMember,
    ApiToken,
    Breaker,
    Case,
    CaseView,
    CyberTipExchange,
    CyberTipFile,
    CyberTipReport,
    DailyMetric,
    Decision,
    DestructionRequest,
    Enforcement,
    EnrolmentCode,
    IntegrityAlert,
    LegalDocument,
    LegalHold,
    LegalMessage,
    LegalRequest,
    Platform,
    Policy,
    PolicyVersion,
    QAReview,
    ReasonCode,
    ReviewQueue,
    RoutingRule,
    Rule,
    RuleFiring,
    RuleVersion,
    StatementOfReasons,
    SubjectNote,
    ViewingPreference,
)
from cases.web.permissions import client_ip
from detection.models import Account, AccountLink, EvidenceOnHold, Group, Item, Membership, Signal, UserReport
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from reviewconsole.audit.recorder import audit


def delete_items(user, item_ids, *, ip=None):
    """Delete items and everything that hangs on them, one audit row per item, all or nothing.

    Refused as a whole (EvidenceOnHold, nothing deleted) when any of them is under legal hold.
    The audit rows name the item by id: a row pointing at the item would forbid its deletion.
    """
    with transaction.atomic():
        items = list(Item.objects.select_for_update().filter(pk__in=list(item_ids)).order_by("pk"))
        Item.objects.filter(pk__in=[item.pk for item in items]).delete()  # EvidenceOnHold if any is held
        for item in items:
            audit(user, Event.ITEM_DELETED, object_type="item", object_id=item.pk, ip=ip,
                  details={"via": "admin", "kind": item.kind, "status": item.status, "account": item.account_id,
                           "group": item.group_id, "external_id": item.external_id, "sha256": item.sha256,
                           "md5": item.md5, "size": item.size, "storage_path": item.storage_path,
                           "received_at": item.created_at.isoformat()})
    return len(items)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["account"]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["external_id", "screen_name", "display_name", "age_band", "status", "created_at"]
    list_filter = ["status", "age_band"]
    search_fields = ["external_id", "screen_name", "display_name", "email"]


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ["external_id", "name", "member_count", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["external_id", "name"]
    inlines = [MembershipInline]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["pk", "kind", "status", "account", "group", "detected_format", "created_at", "scanned_at"]
    search_fields = ["md5", "sha256", "external_id", "account__external_id"]
    raw_id_fields = ["account", "group"]
    # Evidence is never shown here: admins see hashes and state, reviewers see renditions.
    readonly_fields = ["md5", "sha256", "pdq", "pdq_quality", "phash", "dhash", "storage_path", "size",
                       "scan_attempts", "scanned_at", "created_at", "purged_at", "verified_at"]
    list_filter = ["status", "kind", "detected_format", ("purged_at", admin.EmptyFieldListFilter)]

    def has_delete_permission(self, request, obj=None):
        # Held evidence cannot be deleted here (nor through the ORM: Item.delete refuses too).
        return super().has_delete_permission(request, obj) and not (obj and obj.on_hold)

    def delete_model(self, request, obj):
        try:
            delete_items(request.user, [obj.pk], ip=client_ip(request))
        except EvidenceOnHold as exc:  # held since the page checked: the admin's 403, nothing written
            raise PermissionDenied(str(exc))

    def delete_queryset(self, request, queryset):
        try:
            delete_items(request.user, queryset.values_list("pk", flat=True), ip=client_ip(request))
        except EvidenceOnHold as exc:
            self.message_user(request, f"Nothing deleted: {exc}", level="error")


@admin.register(Signal)
class SignalAdmin(admin.ModelAdmin):
    list_display = ["pk", "kind", "detector", "label", "score", "severity", "case", "created_at"]
    list_filter = ["kind", "detector"]
    search_fields = ["label", "explanation"]
    raw_id_fields = ["item", "account", "group", "case"]


class RoutingRuleInline(admin.TabularInline):
    model = RoutingRule
    extra = 0


@admin.register(ReviewQueue)
class ReviewQueueAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "senior_only", "sla_minutes", "position"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [RoutingRuleInline]


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    list_display = ["position", "signal_kind", "detector", "min_score", "min_severity", "queue", "enabled"]
    list_filter = ["queue", "signal_kind", "enabled"]
    list_editable = ["enabled"]


@admin.register(ViewingPreference)
class ViewingPreferenceAdmin(admin.ModelAdmin):
    list_display = ["user", "category", "blur", "tone", "detail", "warning_screen"]
    list_filter = ["blur", "tone", "detail", "warning_screen"]


@admin.register(SubjectNote)
class SubjectNoteAdmin(admin.ModelAdmin):
    list_display = ["created_at", "author", "account", "group", "case"]
    raw_id_fields = ["account", "group", "case", "author"]
    search_fields = ["text"]


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ["pk", "subject", "queue", "status", "priority", "assigned_to", "resolution", "created_at"]
    list_filter = ["status", "queue", "resolution"]
    search_fields = ["account__external_id", "group__external_id", "summary"]
    raw_id_fields = ["account", "group", "assigned_to"]


@admin.register(ReasonCode)
class ReasonCodeAdmin(admin.ModelAdmin):
    list_display = ["code", "label", "actions", "active", "position"]
    list_filter = ["active"]
    search_fields = ["code", "label"]


class PolicyVersionInline(admin.TabularInline):
    model = PolicyVersion
    extra = 0
    can_delete = False
    readonly_fields = ["version", "effects", "changed_by", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    """Policies are edited here; reportable categories always report and preserve, whatever is ticked."""

    list_display = ["title", "code", "category", "ban", "remove", "report", "hold", "bank", "notify_user",
                    "version", "active", "position"]
    list_filter = ["category", "active", "report"]
    search_fields = ["code", "title"]
    readonly_fields = ["version", "updated_at"]
    inlines = [PolicyVersionInline]

    def save_model(self, request, obj, form, change):
        save_policy(request.user, obj, ip=client_ip(request))

    def has_delete_permission(self, request, obj=None):
        return False  # decisions name the policy they applied: switch it off instead


class EnrolmentCodeForm(forms.ModelForm):
    class Meta:
        model = EnrolmentCode
        fields = ["user"]


@admin.register(EnrolmentCode)
class EnrolmentCodeAdmin(admin.ModelAdmin):
    """Adding one issues a new one-time code for the person and shows it once; nothing else is editable."""

    form = EnrolmentCodeForm
    list_display = ["user", "issued_by", "issued_at", "expires_at", "used_at"]
    readonly_fields = ["issued_by", "issued_at", "expires_at", "used_at"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        code = issue_enrolment_code(request.user, obj.user, ip=client_ip(request))
        issued = EnrolmentCode.objects.filter(user=obj.user).latest("pk")
        for field in ("id", "code_hash", "issued_by_id", "issued_at", "expires_at", "used_at"):
            setattr(obj, field, getattr(issued, field))  # admin logs and redirects with the row just issued
        self.message_user(request, f"Enrolment code for {obj.user.get_username()}: {code} — give it to them in "
                                   "person or by phone; it is shown only now and works once.")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RuleVersionInline(admin.TabularInline):
    model = RuleVersion
    fields = ["version", "mode", "effect", "policy", "queue", "priority", "conditions", "note", "changed_by",
              "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Rule)
class RuleAdmin(ReadOnlyAdmin):
    """Rules are read here; they are written, backtested, turned on and rolled back on the Rules pages,
    which check the second factor and keep every version."""

    list_display = ["title", "code", "mode", "version", "position", "qa_percent", "qa_percent_new",
                    "breaker_per_hour", "updated_at"]
    list_filter = ["mode"]
    search_fields = ["code", "title"]
    inlines = [RuleVersionInline]  # never deleted either: its decisions name it


@admin.register(RuleFiring)
class RuleFiringAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "rule", "rule_version", "case", "outcome", "why", "decision", "rolled_back_at"]
    list_filter = ["outcome", "rule"]
    list_select_related = ["rule", "rule_version", "rule_version__rule"]
    raw_id_fields = ["case", "signal", "decision", "bank_hash"]


@admin.register(Breaker)
class BreakerAdmin(ReadOnlyAdmin):
    list_display = ["label", "scope", "tripped_at", "resumed_at", "resumed_by"]
    list_filter = ["scope"]


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ["pk", "case", "action", "reason", "decided_by", "created_at"]
    list_filter = ["action", "reason"]
    search_fields = ["case__account__external_id", "note"]


@admin.register(Platform)
class PlatformAdmin(admin.ModelAdmin):
    list_display = ["name", "webhook_url", "enabled"]
    list_filter = ["enabled"]


@admin.register(Enforcement)
class EnforcementAdmin(admin.ModelAdmin):
    list_display = ["pk", "action", "target", "platform", "status", "attempts", "next_attempt_at", "dispatched_at",
                    "confirmed_at"]
    list_filter = ["status", "action", "platform"]
    search_fields = ["target"]
    readonly_fields = ["decision", "platform", "action", "target", "payload", "attempts", "last_error",
                       "dispatched_at", "confirmed_at", "confirmation", "created_at"]
    actions = ["retry_now"]

    @admin.action(description="Retry delivery now", permissions=["change"])
    def retry_now(self, request, queryset):
        ids = retry_delivery(request.user, queryset.values_list("pk", flat=True), ip=client_ip(request))
        self.message_user(request, f"{len(ids)} deliveries queued again.")

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(StatementOfReasons)
class StatementOfReasonsAdmin(ReadOnlyAdmin):
    """Statements are made from decisions and never edited: what the user was told stays as it was. A
    statement the Transparency Database refused can be sent again once its cause (a policy text, a
    setting) is fixed."""

    list_display = ["pk", "restriction", "target", "category", "decision", "dsa_status", "dsa_attempts",
                    "dsa_submitted_at", "created_at"]
    list_filter = ["dsa_status", "restriction", "category", "ground"]
    search_fields = ["target", "uid", "dsa_uuid"]
    raw_id_fields = ["decision", "case"]
    actions = ["submit_again"]

    @admin.action(description="Submit to the DSA Transparency Database again", permissions=["resubmit"])
    def submit_again(self, request, queryset):
        count = resubmit(request.user, queryset.values_list("pk", flat=True), ip=client_ip(request))
        self.message_user(request, f"{count} refused statements will be submitted again.")

    def has_resubmit_permission(self, request):
        return request.user.has_perm("cases.change_statementofreasons")


class CyberTipFileInline(admin.TabularInline):
    model = CyberTipFile
    extra = 0
    raw_id_fields = ["item"]
    readonly_fields = ["ncmec_file_id", "uploaded_md5", "uploaded_at", "fileinfo_sent_at"]


class CyberTipExchangeInline(admin.TabularInline):
    model = CyberTipExchange
    extra = 0
    fields = ["created_at", "step", "http_status", "response_code", "request_id", "error"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(CyberTipReport)
class CyberTipReportAdmin(admin.ModelAdmin):
    list_display = ["pk", "case", "status", "ncmec_report_id", "incident_type", "created_by", "finished_at"]
    list_filter = ["status", "incident_type"]
    search_fields = ["ncmec_report_id", "case__account__external_id"]
    raw_id_fields = ["case", "decision", "created_by", "approved_by"]
    readonly_fields = ["ncmec_report_id", "xml_sent", "submitted_at", "finish_sent_at", "finished_at", "receipt",
                       "attempts", "next_attempt_at", "last_error"]
    inlines = [CyberTipFileInline, CyberTipExchangeInline]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UserReport)
class UserReportAdmin(admin.ModelAdmin):
    list_display = ["pk", "reporter", "reason", "account", "group", "item", "created_at"]
    list_filter = ["reason"]
    search_fields = ["reporter", "comment", "account__external_id"]
    raw_id_fields = ["account", "group", "item"]


class LegalHoldForm(forms.ModelForm):
    """A hold may be extended, never shortened: it ends early only by being lifted with a reason."""

    class Meta:
        model = LegalHold
        fields = ["item", "reason", "report", "legal_request", "note", "placed_by", "placed_at", "until"]

    def clean_until(self):
        until = self.cleaned_data["until"]
        current = (LegalHold.objects.filter(pk=self.instance.pk).values_list("until", flat=True).first()
                   if self.instance.pk else None)
        if current and until < current:
            raise forms.ValidationError(
                f"A hold can be extended, never shortened: it runs until {current:%Y-%m-%d %H:%M} at least. "
                "To end it early, lift it with a reason (evidence destruction).")
        return until


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):
    form = LegalHoldForm
    list_display = ["item", "reason", "until", "placed_by", "placed_at", "lifted_at"]
    list_filter = ["reason", ("lifted_at", admin.EmptyFieldListFilter)]
    search_fields = ["item__sha256", "note"]
    raw_id_fields = ["item", "report", "placed_by", "lifted_by"]
    readonly_fields = ["lifted_by", "lifted_at", "lift_reason"]

    def get_readonly_fields(self, request, obj=None):
        # Moving a hold to another item would release the one it protects.
        return [*super().get_readonly_fields(request, obj), *(["item"] if obj else [])]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.placed_by = request.user
        with transaction.atomic():
            if change:  # checked again under a lock: a concurrent edit cannot slip a shorter date past the form
                current = LegalHold.objects.select_for_update().values_list("until", flat=True).get(pk=obj.pk)
                if obj.until < current:
                    raise PermissionDenied("a legal hold can be extended, never shortened")
            super().save_model(request, obj, form, change)
            details = {"reason": obj.reason, "until": obj.until.isoformat(), "note": obj.note}
            if change:
                details["changes"] = {
                    name: [_json_value(form.initial.get(name)), _json_value(form.cleaned_data.get(name))]
                    for name in form.changed_data}
            event = Event.EVIDENCE_HOLD_CHANGED if change else Event.EVIDENCE_HOLD_PLACED
            audit(request.user, event, item=obj.item, object_type="legalhold", object_id=obj.pk,
                  ip=client_ip(request), details=details)

    def has_delete_permission(self, request, obj=None):
        return False  # lifted with a reason (evidence destruction), never deleted


def _json_value(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "pk"):
        return value.pk
    return value


@admin.register(DestructionRequest)
class DestructionRequestAdmin(ReadOnlyAdmin):
    """Two-senior destructions are recorded and decided on the console's pages, never edited here."""

    list_display = ["pk", "item", "status", "requested_by", "requested_at", "decided_by", "decided_at"]
    list_filter = ["status"]
    search_fields = ["reference"]


@admin.register(IntegrityAlert)
class IntegrityAlertAdmin(admin.ModelAdmin):
    list_display = ["item", "problem", "detected_at", "resolved_at"]
    list_filter = [("resolved_at", admin.EmptyFieldListFilter)]
    raw_id_fields = ["item"]
    readonly_fields = ["item", "problem", "found_sha256", "detected_at"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_label", "action", "case", "item", "object_type", "object_id", "ip"]
    list_filter = ["action"]
    search_fields = ["actor_label", "action", "object_id"]
    date_hierarchy = "created_at"


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    # Tokens are issued with `manage.py create_api_token NAME`, which shows the secret once.

    def has_add_permission(self, request):
        return False


@admin.register(CaseView)
class CaseViewAdmin(ReadOnlyAdmin):
    list_display = ["case", "user", "seen_at"]


@admin.register(CyberTipFile)
class CyberTipFileAdmin(ReadOnlyAdmin):
    list_display = ["report", "item", "ncmec_file_id", "uploaded_at", "fileinfo_sent_at"]


@admin.register(CyberTipExchange)
class CyberTipExchangeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "report", "step", "http_status", "response_code", "request_id"]
    list_filter = ["step", "response_code"]
    search_fields = ["request_id"]


@admin.register(QAReview)
class QAReviewAdmin(ReadOnlyAdmin):
    list_display = ["decision", "sampled_at", "reviewer", "action", "agrees", "reviewed_at"]
    list_filter = ["agrees"]


@admin.register(DailyMetric)
class DailyMetricAdmin(ReadOnlyAdmin):
    """Derived figures: recomputed by `rollup_metrics`, so read-only here."""

    list_display = ["day", "metric", "key", "value"]
    list_filter = ["metric"]
    date_hierarchy = "day"


class AgencyMemberInline(admin.TabularInline):
    model = AgencyMember
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Agency)
class AgencyAdmin(admin.ModelAdmin):
    """Agencies and their officers. An officer is a user tied to one agency: they see only the portal."""

    list_display = ["name", "jurisdiction", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "jurisdiction"]
    inlines = [AgencyMemberInline]


@admin.register(AgencyMember)
class AgencyMemberAdmin(admin.ModelAdmin):
    list_display = ["user", "agency", "badge"]
    list_filter = ["agency"]
    search_fields = ["user__username", "badge"]
    autocomplete_fields = ["user"]


@admin.register(LegalRequest)
class LegalRequestAdmin(ReadOnlyAdmin):
    """Handled on the legal requests pages, where every step is audited; read-only here."""

    list_display = ["pk", "agency", "kind", "reference", "status", "due_at", "created_at"]
    list_filter = ["kind", "status", "agency"]
    search_fields = ["reference"]


@admin.register(LegalDocument)
class LegalDocumentAdmin(ReadOnlyAdmin):
    list_display = ["name", "request", "side", "size", "created_at"]
    exclude = ["storage_path"]


@admin.register(LegalMessage)
class LegalMessageAdmin(ReadOnlyAdmin):
    list_display = ["request", "side", "author", "created_at"]


@admin.register(AccountLink)
class AccountLinkAdmin(ReadOnlyAdmin):
    """Phone and device hashes per account, kept in step with the facts the platform sends."""

    list_display = ["account", "kind", "value"]
    list_filter = ["kind"]
    search_fields = ["value", "account__external_id"]
