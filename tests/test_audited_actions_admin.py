"""State changes made from admin, the bank pages, the platform API and the scan: each is one
transaction with its audit row, so a failure part-way leaves neither the change nor the row."""

import hashlib
import json
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.admin.sites import site
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory
from django.utils import timezone

from cases import admin as cases_admin
from cases.actions import enforcement as enforcement_actions
from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.models import Enforcement, EnforcementStatus, LegalHold, Platform
from detection import admin as detection_admin
from detection import banks as bank_actions
from detection import (
    intake,
    match_signals,  # where a suppressed match is audited
)
from detection.banks import ALLOW_BANK
from detection.jobs.scan import scan_item
from detection.models import (
    Account,
    Bank,
    BankHash,
    BankKind,
    EvidenceOnHold,
    Item,
    ItemKind,
    ItemStatus,
    Signal,
    TextTerm,
)
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa
from tests.factories import ban_only, case_with_match, encoded, known_bank

pytestmark = pytest.mark.django_db


class Boom(RuntimeError):
    pass


def fail_on_call(number, real):
    """A stand-in for the audit recorder that writes the first rows and fails on call `number`."""
    calls = []

    def recorder(*args, **kwargs):
        calls.append(args)
        if len(calls) == number:
            raise Boom("audit failed")
        return real(*args, **kwargs)

    return recorder


def events(name):
    return AuditEvent.objects.filter(action=name)


@pytest.fixture
def admin_client(client, users):
    client.force_login(users["admin"])
    verify_2fa(client, users["admin"])
    return client


@pytest.fixture
def queued(monkeypatch):
    """What reached the dispatch queue (the enqueue itself, not the after-commit callback)."""
    sent = []

    def enqueue_now(path, *args, queue="default", **kwargs):
        if queue == "dispatch":
            sent.append((path, args, queue))
        return True

    monkeypatch.setattr("reviewconsole.queueing.enqueue_now", enqueue_now)
    return sent


# 1. Retry delivery now (Enforcement admin) ---------------------------------------------------

def banned(users):
    Platform.objects.create(name="chat", webhook_url="http://127.0.0.1:9/hook")
    case, _ = case_with_match()
    case = claim_case(users["specialist"], case.pk)
    decision, _ = decide(users["specialist"], case.pk, policy=ban_only().code, version=case.version)
    return decision, Enforcement.objects.get(decision=decision, action="ban_account")


def failed(*enforcements):
    Enforcement.objects.filter(pk__in=[e.pk for e in enforcements]).update(
        status=EnforcementStatus.FAILED, attempts=5, last_error="HTTP 500: down",
        next_attempt_at=timezone.now() + timedelta(hours=1))


class TestRetryDelivery:
    def test_the_admin_action_resets_audits_and_queues_after_commit(self, users, admin_client, queued,
                                                                   django_capture_on_commit_callbacks):
        decision, enforcement = banned(users)
        failed(enforcement)
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post("/admin/cases/enforcement/",
                                         {"action": "retry_now", "_selected_action": [enforcement.pk]})
        assert response.status_code == 302
        enforcement.refresh_from_db()
        assert enforcement.status == EnforcementStatus.PENDING and enforcement.next_attempt_at is None
        event = events("enforcement.retried").get()
        assert event.actor == users["admin"] and event.case == decision.case
        assert event.object_type == "enforcement" and event.object_id == str(enforcement.pk)
        assert event.details["previous_status"] == "failed" and event.details["last_error"] == "HTTP 500: down"
        assert queued == [("cases.dispatch.dispatch_enforcement", (enforcement.pk,), "dispatch")]

    def test_nothing_is_queued_before_the_commit(self, users, queued, django_capture_on_commit_callbacks):
        _, enforcement = banned(users)
        failed(enforcement)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert enforcement_actions.retry_delivery(users["admin"], [enforcement.pk]) == [enforcement.pk]
            assert queued == []
        assert len(callbacks) == 1 and queued == []
        callbacks[0]()
        assert queued == [("cases.dispatch.dispatch_enforcement", (enforcement.pk,), "dispatch")]

    def test_delivered_and_cancelled_rows_are_left_alone(self, users, queued, django_capture_on_commit_callbacks):
        decision, enforcement = banned(users)
        delivered = Enforcement.objects.create(decision=decision, action="ban_account", target="x-delivered",
                                               platform=enforcement.platform, status=EnforcementStatus.DELIVERED)
        cancelled = Enforcement.objects.create(decision=decision, action="ban_account", target="x-cancelled",
                                               platform=enforcement.platform, status=EnforcementStatus.CANCELLED)
        with django_capture_on_commit_callbacks(execute=True):
            ids = enforcement_actions.retry_delivery(users["admin"], [enforcement.pk, delivered.pk, cancelled.pk])
        assert ids == [enforcement.pk]
        assert Enforcement.objects.get(pk=cancelled.pk).status == EnforcementStatus.CANCELLED
        assert Enforcement.objects.get(pk=delivered.pk).status == EnforcementStatus.DELIVERED
        assert events("enforcement.retried").count() == 1 and len(queued) == 1

    def test_a_failure_part_way_resets_nothing_and_queues_nothing(self, users, queued,
                                                                django_capture_on_commit_callbacks):
        decision, first = banned(users)
        second = Enforcement.objects.create(decision=decision, action="ban_account", target="acct-2",
                                            platform=first.platform)
        failed(first, second)
        with django_capture_on_commit_callbacks(execute=True) as callbacks, \
                mock.patch.object(enforcement_actions, "audit", fail_on_call(2, enforcement_actions.audit)), \
                pytest.raises(Boom):
            enforcement_actions.retry_delivery(users["admin"], [first.pk, second.pk])
        assert callbacks == [] and queued == []
        assert set(Enforcement.objects.values_list("status", flat=True)) == {EnforcementStatus.FAILED}
        assert not Enforcement.objects.filter(next_attempt_at__isnull=True).exists()
        assert not events("enforcement.retried").exists()


# 2. The platform confirms an enforcement (API) ------------------------------------------------

class TestConfirmEnforcement:
    def url(self, enforcement):
        return f"/api/v1/enforcements/{enforcement.pk}/confirm"

    def test_the_confirmation_and_its_audit_row_are_written_together(self, api, users):
        decision, enforcement = banned(users)
        response = api.post(self.url(enforcement), json.dumps({"result": "failed", "detail": "account gone"}),
                            content_type="application/json")
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == enforcement.pk and body["confirmed_at"] and body["case"] == decision.case_id
        enforcement.refresh_from_db()
        assert enforcement.confirmation == {"result": "failed", "detail": "account gone"}
        event = events("enforcement.confirmed").get()
        assert event.actor is None and event.actor_label == "api:platform" and event.case == decision.case
        assert event.object_id == str(enforcement.pk) and event.details == enforcement.confirmation

    def test_a_failed_audit_leaves_the_enforcement_unconfirmed(self, api, users):
        _, enforcement = banned(users)
        with mock.patch.object(enforcement_actions, "audit", side_effect=Boom("audit failed")):
            response = api.post(self.url(enforcement), json.dumps({"result": "applied"}),
                                content_type="application/json")
        assert response.status_code == 500 and "error" in response.json()  # JSON, logged, never HTML
        enforcement.refresh_from_db()
        assert enforcement.confirmed_at is None and enforcement.confirmation == {}
        assert not events("enforcement.confirmed").exists()
        # Nothing half-written: the platform's retry goes through as a first confirmation.
        response = api.post(self.url(enforcement), json.dumps({"result": "applied"}), content_type="application/json")
        assert response.status_code == 200 and events("enforcement.confirmed").count() == 1

    def test_the_action_refuses_a_bad_result_and_an_unknown_id(self, users):
        from cases.actions import ActionError
        from cases.models import ApiToken

        token, _ = ApiToken.issue("p2")
        _, enforcement = banned(users)
        with pytest.raises(ActionError):
            enforcement_actions.confirm_enforcement(token, enforcement.pk, result="maybe")
        with pytest.raises(Enforcement.DoesNotExist):
            enforcement_actions.confirm_enforcement(token, 999_999, result="applied")
        assert not events("enforcement.confirmed").exists()


# 3. Deleting items in admin ------------------------------------------------------------------

def bare_item(n, account="acct-del"):
    """An item made in admin, not through intake (whose audit rows would protect it from deletion)."""
    owner, _ = Account.objects.get_or_create(external_id=account)
    text = f"note {n}"
    return Item.objects.create(account=owner, kind=ItemKind.TEXT, text=text, size=len(text),
                               md5=hashlib.md5(text.encode()).hexdigest(),
                               sha256=hashlib.sha256(text.encode()).hexdigest())


def hold(item, days=30):
    return LegalHold.objects.create(item=item, reason=LegalHold.Reason.MANUAL,
                                    until=timezone.now() + timedelta(days=days))


class TestItemDeletion:
    def test_deleting_one_item_is_audited(self, users, admin_client):
        item = bare_item(1)
        response = admin_client.post(f"/admin/detection/item/{item.pk}/delete/", {"post": "yes"})
        assert response.status_code == 302 and not Item.objects.filter(pk=item.pk).exists()
        event = events("item.deleted").get()
        assert event.actor == users["admin"] and event.object_type == "item" and event.object_id == str(item.pk)
        assert event.item is None and event.details["sha256"] == item.sha256 and event.details["via"] == "admin"

    def test_the_bulk_action_audits_every_item(self, users, admin_client):
        items = [bare_item(1), bare_item(2)]
        response = admin_client.post("/admin/detection/item/", {
            "action": "delete_selected", "_selected_action": [i.pk for i in items], "post": "yes"})
        assert response.status_code == 302 and not Item.objects.exists()
        assert set(events("item.deleted").values_list("object_id", flat=True)) == {str(i.pk) for i in items}

    def test_a_failed_audit_deletes_nothing(self, admin_client):
        items = [bare_item(1), bare_item(2)]
        with mock.patch.object(cases_admin, "audit", fail_on_call(2, cases_admin.audit)), pytest.raises(Boom):
            admin_client.post("/admin/detection/item/", {
                "action": "delete_selected", "_selected_action": [i.pk for i in items], "post": "yes"})
        assert Item.objects.count() == 2 and not events("item.deleted").exists()
        with mock.patch.object(cases_admin, "audit", side_effect=Boom("audit failed")), pytest.raises(Boom):
            admin_client.post(f"/admin/detection/item/{items[0].pk}/delete/", {"post": "yes"})
        assert Item.objects.count() == 2 and not events("item.deleted").exists()

    def test_held_evidence_is_still_refused_and_nothing_is_written(self, users, admin_client):
        free, held = bare_item(1), bare_item(2)
        hold(held)
        assert admin_client.get(f"/admin/detection/item/{held.pk}/delete/").status_code == 403
        with pytest.raises(EvidenceOnHold):
            cases_admin.delete_items(users["admin"], [free.pk, held.pk])
        assert Item.objects.count() == 2 and not events("item.deleted").exists()

    def test_a_hold_placed_after_the_page_loaded_turns_the_delete_into_a_403(self, users):
        held = bare_item(1)
        hold(held)
        request = RequestFactory().post("/", REMOTE_ADDR="10.0.0.1")
        request.user = users["admin"]
        with pytest.raises(PermissionDenied):
            site._registry[Item].delete_model(request, held)
        assert Item.objects.filter(pk=held.pk).exists() and not events("item.deleted").exists()


# 4. Text terms switched on and off in admin --------------------------------------------------

def terms(*words):
    return [TextTerm.objects.create(category="grooming", term=w, weight=0.5) for w in words]


class TestTextTerms:
    def test_disabling_and_enabling_by_action_is_audited_per_term(self, users, admin_client):
        first, second = terms("alpha word", "beta word")
        response = admin_client.post("/admin/detection/textterm/", {
            "action": "disable_terms", "_selected_action": [first.pk, second.pk]})
        assert response.status_code == 302
        assert not TextTerm.objects.filter(pk__in=[first.pk, second.pk], enabled=True).exists()
        rows = events("text_term.changed")
        assert rows.count() == 2 and all(e.details["changes"] == {"enabled": [True, False]} for e in rows)
        assert {e.object_id for e in rows} == {str(first.pk), str(second.pk)}
        assert all(e.actor == users["admin"] for e in rows)
        admin_client.post("/admin/detection/textterm/", {"action": "enable_terms", "_selected_action": [first.pk]})
        assert TextTerm.objects.get(pk=first.pk).enabled
        assert events("text_term.changed").filter(object_id=str(first.pk)).count() == 2

    def test_the_list_column_is_audited(self, users, admin_client):
        (term,) = terms("gamma word")
        response = admin_client.post("/admin/detection/textterm/", {
            "form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000", "form-0-id": str(term.pk), "_save": "Save"})  # enabled unticked
        assert response.status_code == 302, response.content.decode()[:2000]
        assert not TextTerm.objects.get(pk=term.pk).enabled
        event = events("text_term.changed").get()
        assert event.details["changes"] == {"enabled": [True, False]} and event.details["term"] == "gamma word"

    def test_a_failure_part_way_switches_nothing(self, admin_client):
        first, second = terms("delta word", "epsilon word")
        with mock.patch.object(detection_admin, "audit", fail_on_call(2, detection_admin.audit)), \
                pytest.raises(Boom):
            admin_client.post("/admin/detection/textterm/", {
                "action": "disable_terms", "_selected_action": [first.pk, second.pk]})
        assert TextTerm.objects.filter(pk__in=[first.pk, second.pk], enabled=True).count() == 2
        assert not events("text_term.changed").exists()
        with mock.patch.object(detection_admin, "audit", side_effect=Boom("audit failed")), pytest.raises(Boom):
            admin_client.post("/admin/detection/textterm/", {
                "form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-MIN_NUM_FORMS": "0",
                "form-MAX_NUM_FORMS": "1000", "form-0-id": str(first.pk), "_save": "Save"})
        assert TextTerm.objects.get(pk=first.pk).enabled

    def test_adding_and_deleting_a_term_in_admin_is_audited(self, admin_client):
        response = admin_client.post("/admin/detection/textterm/add/", {
            "category": "trade", "term": "zeta word", "match": "word", "weight": "0.4", "enabled": "on"})
        assert response.status_code == 302
        term = TextTerm.objects.get(term="zeta word")
        assert events("text_term.created").get().object_id == str(term.pk)
        admin_client.post(f"/admin/detection/textterm/{term.pk}/delete/", {"post": "yes"})
        assert not TextTerm.objects.filter(pk=term.pk).exists()
        assert events("text_term.deleted").get().details["term"] == "zeta word"


# 5. Legal holds: extended in admin, never shortened -------------------------------------------

def hold_form(hold, until, **changes):
    until = timezone.localtime(until)
    placed = timezone.localtime(hold.placed_at)
    return {"reason": hold.reason, "note": hold.note, "report": "", "legal_request": "", "placed_by": "",
            "placed_at_0": placed.strftime("%Y-%m-%d"), "placed_at_1": placed.strftime("%H:%M:%S"),
            "until_0": until.strftime("%Y-%m-%d"), "until_1": until.strftime("%H:%M:%S"), **changes}


def whole_seconds(moment):
    return moment.replace(microsecond=0)


class TestLegalHoldUntil:
    def test_a_hold_cannot_be_shortened(self, admin_client):
        item = bare_item(1)
        held = hold(item)
        before = held.until
        response = admin_client.post(f"/admin/cases/legalhold/{held.pk}/change/",
                                     hold_form(held, before - timedelta(days=10)))
        assert response.status_code == 200
        assert "never shortened" in str(response.context["adminform"].form.errors["until"])
        assert LegalHold.objects.get(pk=held.pk).until == before
        assert not events("evidence.hold_changed").exists()

    def test_a_hold_can_be_extended_and_the_change_is_audited(self, users, admin_client):
        item = bare_item(1)
        held = hold(item)
        later = whole_seconds(held.until + timedelta(days=60))
        response = admin_client.post(f"/admin/cases/legalhold/{held.pk}/change/", hold_form(held, later))
        assert response.status_code == 302, response.content.decode()[:2000]
        assert LegalHold.objects.get(pk=held.pk).until == later
        event = events("evidence.hold_changed").get()
        assert event.actor == users["admin"] and event.item == item
        assert event.details["until"] == later.isoformat() and event.details["changes"]["until"][1] == later.isoformat()

    def test_the_held_item_cannot_be_swapped_for_another(self, admin_client):
        item, other = bare_item(1), bare_item(2)
        held = hold(item)
        assert admin_client.get(f"/admin/cases/legalhold/{held.pk}/change/").status_code == 200
        admin_client.post(f"/admin/cases/legalhold/{held.pk}/change/", hold_form(held, held.until, item=other.pk))
        assert LegalHold.objects.get(pk=held.pk).item == item

    def test_a_failed_audit_leaves_the_hold_as_it_was(self, admin_client):
        held = hold(bare_item(1))
        before = held.until
        with mock.patch.object(cases_admin, "audit", side_effect=Boom("audit failed")), pytest.raises(Boom):
            admin_client.post(f"/admin/cases/legalhold/{held.pk}/change/",
                              hold_form(held, whole_seconds(before + timedelta(days=60))))
        assert LegalHold.objects.get(pk=held.pk).until == before


# 6. Banks: created, changed and emptied through actions ---------------------------------------

def bank_form(**changes):
    return {"name": "partner-list", "description": "From a partner", "kind": "known", "source": "file",
            "enabled": "on", "severity": 80, "pdq_threshold": 31, "phash_threshold": 6, "dhash_threshold": 6,
            "video_match_percent": 80, **changes}


@pytest.fixture
def senior_client(client, users):
    client.force_login(users["senior"])
    verify_2fa(client, users["senior"])
    return client


class TestBanks:
    def test_create_change_and_remove_an_entry_each_write_their_row(self, users, senior_client):
        response = senior_client.post("/banks/new/", bank_form())
        bank = Bank.objects.get(name="partner-list")
        assert response.status_code == 302 and response["Location"] == f"/banks/{bank.pk}/"
        created = events("bank.created").get()
        assert created.actor == users["senior"] and created.details == {"name": "partner-list", "kind": "known",
                                                                        "enabled": True}
        form = {k: v for k, v in bank_form(severity=55).items() if k != "name"}
        assert senior_client.post(f"/banks/{bank.pk}/edit/", form).status_code == 302
        assert Bank.objects.get(pk=bank.pk).severity == 55
        assert events("bank.changed").get().details["changes"] == {"severity": [80, 55]}
        senior_client.post(f"/banks/{bank.pk}/edit/", form)  # nothing changed: nothing written
        assert events("bank.changed").count() == 1
        entry = BankHash.objects.create(bank=bank, hash_type="md5", value="0" * 32, label="ref-1")
        assert senior_client.post(f"/banks/{bank.pk}/entries/{entry.pk}/delete/").status_code == 302
        assert not BankHash.objects.filter(pk=entry.pk).exists()
        assert events("bank.entry_removed").get().details["label"] == "ref-1"

    def test_a_failed_audit_creates_no_bank(self, senior_client):
        with mock.patch.object(bank_actions, "audit", side_effect=Boom("audit failed")), pytest.raises(Boom):
            senior_client.post("/banks/new/", bank_form())
        assert not Bank.objects.filter(name="partner-list").exists()

    def test_a_failed_audit_changes_no_setting_and_removes_no_entry(self, senior_client):
        known_bank([1], types=("md5",))
        bank = Bank.objects.get(name="known")
        entry = bank.hashes.get()
        form = {k: v for k, v in bank_form(severity=55, enabled="").items() if k != "name" and v != ""}
        with mock.patch.object(bank_actions, "audit", side_effect=Boom("audit failed")), pytest.raises(Boom):
            senior_client.post(f"/banks/{bank.pk}/edit/", form)
        fresh = Bank.objects.get(pk=bank.pk)
        assert fresh.severity == bank.severity and fresh.enabled and fresh.updated_at == bank.updated_at
        with mock.patch.object(bank_actions, "audit", side_effect=Boom("audit failed")), pytest.raises(Boom):
            senior_client.post(f"/banks/{bank.pk}/entries/{entry.pk}/delete/")
        assert BankHash.objects.filter(pk=entry.pk).exists()
        assert Bank.objects.get(pk=bank.pk).updated_at == bank.updated_at
        assert not AuditEvent.objects.filter(action__startswith="bank.").exists()

    def test_deleting_banks_in_admin_is_audited_and_all_or_nothing(self, users, admin_client):
        known_bank([1], name="one", types=("md5",))
        known_bank([2], name="two", types=("md5",))
        pks = list(Bank.objects.values_list("pk", flat=True))
        with mock.patch.object(bank_actions, "audit", fail_on_call(2, bank_actions.audit)), pytest.raises(Boom):
            admin_client.post("/admin/detection/bank/", {"action": "delete_selected", "_selected_action": pks,
                                                         "post": "yes"})
        assert Bank.objects.count() == 2 and BankHash.objects.count() == 2 and not events("bank.deleted").exists()
        response = admin_client.post("/admin/detection/bank/", {"action": "delete_selected", "_selected_action": pks,
                                                                "post": "yes"})
        assert response.status_code == 302 and not Bank.objects.exists() and not BankHash.objects.exists()
        assert {e.details["name"] for e in events("bank.deleted")} == {"one", "two"}
        assert all(e.details["via"] == "admin" and e.details["entries"] == 1 for e in events("bank.deleted"))


# 7. The allow-list's trace goes through the recorder, inside the scan's transaction -----------

def allow_listed():
    known_bank([1])
    known_bank([1], name=ALLOW_BANK, types=("md5",))
    Bank.objects.filter(name=ALLOW_BANK).update(kind=BankKind.ALLOW)


class TestSuppressedMatches:
    def test_the_trace_is_an_audit_row_of_the_system(self):
        allow_listed()
        item = intake.submit_file(encoded(1), account_id="a1")
        assert scan_item(item.pk) == "scanned"
        trace = events("match.suppressed").get(item=item)
        assert trace.actor is None and trace.actor_label == "system" and trace.object_id == str(item.pk)
        assert trace.details["allow_lists"] == [ALLOW_BANK] and {s["bank"] for s in trace.details["suppressed"]} == {
            "known"}

    def test_a_failed_trace_stores_no_findings(self):
        allow_listed()
        item = intake.submit_file(encoded(1), account_id="a1")
        with mock.patch.object(match_signals, "audit", side_effect=Boom("audit failed")), pytest.raises(Boom):
            scan_item(item.pk)
        item.refresh_from_db()
        assert item.status == ItemStatus.QUEUED and item.scanned_at is None and item.pdq == ""
        assert not Signal.objects.filter(item=item).exists() and not events("match.suppressed").exists()
