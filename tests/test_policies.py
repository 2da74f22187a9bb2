"""Decisions are policies: the default table, versions, what the law makes unskippable, guardrails, the alarm."""

import logging
from datetime import timedelta
from unittest import mock

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from cases.actions import ActionError
from cases.actions.claims import claim_case
from cases.actions.decisions import decide, second_review
from cases.actions.evidence import record_evidence_view
from cases.jobs import alert_unreported
from cases.models import (
    REPORTABLE,
    CaseStatus,
    CyberTipFile,
    CyberTipReport,
    Decision,
    Enforcement,
    Policy,
    PolicyVersion,
)
from cases.selectors import unreported_confirmations
from detection import intake
from reviewconsole.audit.models import AuditEvent
from tests.conftest import make_user, verify_2fa
from tests.factories import ban_only, case_with_match, triage_all

pytestmark = pytest.mark.django_db

REPORTABLE_CODES = ["csam-known", "csam-new", "sexualised-minor", "grooming", "sextortion", "distribution-group",
                    "minor-victim"]


def claimed(user, **kwargs):
    case, item = case_with_match(**kwargs)
    return claim_case(user, case.pk), item


def reported_case(user):
    """A case from a user report alone: no file, no known match."""
    intake.submit_report(reporter="u-1", reason="grooming", account_id="acct-9")
    (case,) = triage_all()
    return claim_case(user, case.pk)


def assert_every_reportable_decision_has_its_report():
    for decision in Decision.objects.filter(undone_at__isnull=True).exclude(approval="pending"):
        if decision.approval == "rejected" or decision.policy is None:
            continue
        if decision.policy.reportable:
            assert CyberTipReport.objects.filter(decision=decision).count() == 1, decision
            report = CyberTipReport.objects.get(decision=decision)
            for item_id in decision.case.signals.exclude(item=None).values_list("item", flat=True):
                assert report.files.filter(item_id=item_id).exists()
                assert report.holds.filter(item_id=item_id, lifted_at__isnull=True).exists()


class TestTheDefaultTable:
    def test_reportable_categories_report_preserve_and_never_notify(self):
        reportable = Policy.objects.filter(category__in=sorted(REPORTABLE))
        assert sorted(reportable.values_list("code", flat=True)) == sorted(REPORTABLE_CODES)
        for policy in reportable:
            assert policy.report and policy.hold and not policy.notify_user and policy.incident_type, policy
            assert policy.action == "report"
            assert (policy.ban == "none") == (policy.code == "minor-victim")  # a child is never banned
        assert Policy.objects.get(code="grooming").incident_type == "Online Enticement of Children for Sexual Acts"

    def test_the_rest_act_as_their_names_say(self):
        nudity = Policy.objects.get(code="adult-nudity")
        assert nudity.action == "remove" and nudity.notify_user and not nudity.report
        for code in ("false-positive", "benign", "insufficient-evidence"):
            assert Policy.objects.get(code=code).action == "dismiss"
        assert PolicyVersion.objects.filter(version=1).count() == Policy.objects.count()

    def test_saving_a_reportable_policy_without_report_or_hold_puts_them_back(self):
        policy = Policy.objects.get(code="csam-known")
        policy.report = policy.hold = False
        policy.save()
        policy.refresh_from_db()
        assert policy.report and policy.hold

    def test_the_database_refuses_a_reportable_policy_that_does_not_report(self):
        with pytest.raises(IntegrityError), transaction.atomic():
            Policy.objects.filter(code="sextortion").update(report=False)
        with pytest.raises(IntegrityError), transaction.atomic():
            Policy.objects.filter(code="csam-new").update(hold=False)


class TestVersions:
    def test_an_admin_edit_is_a_new_version_and_is_audited(self, client, users):
        client.force_login(users["admin"])
        verify_2fa(client, users["admin"])
        policy = Policy.objects.get(code="adult-nudity")
        form = {field: getattr(policy, field) for field in ("code", "title", "category", "description", "ban",
                                                           "remove", "bank", "incident_type", "position")}
        form.update({"notify_user": "", "active": "on", "report": "", "hold": "",
                     "versions-TOTAL_FORMS": "1", "versions-INITIAL_FORMS": "1", "versions-MIN_NUM_FORMS": "0",
                     "versions-MAX_NUM_FORMS": "1000",
                     "versions-0-id": PolicyVersion.objects.get(policy=policy).pk, "versions-0-policy": policy.pk})
        response = client.post(f"/admin/cases/policy/{policy.pk}/change/", form)
        assert response.status_code == 302, response.content.decode()[:2000]
        policy.refresh_from_db()
        assert policy.version == 2 and not policy.notify_user
        assert PolicyVersion.objects.get(policy=policy, version=2).effects["notify_user"] is False
        event = AuditEvent.objects.get(action="policy.changed")
        assert event.actor == users["admin"] and event.details["before"]["notify_user"] is True

    def test_a_title_edit_keeps_the_version(self, users):
        from cases.actions.policies import save_policy
        policy = Policy.objects.get(code="benign")
        policy.title = "Benign: nothing to act on"
        save_policy(users["admin"], policy)
        assert Policy.objects.get(pk=policy.pk).version == 1

    def test_a_decision_records_the_version_it_applied(self, users):
        from cases.actions.policies import save_policy
        policy = Policy.objects.get(code="csam-known")
        policy.bank = "none"
        save_policy(users["admin"], policy)
        case, _ = claimed(users["specialist"])
        decision, _ = decide(users["specialist"], case.pk, policy="csam-known", version=case.version)
        assert decision.policy_version == 2 and decision.options["effects"]["bank"] == "none"
        assert not decision.options.get("bank_entries")

    def test_policies_cannot_be_deleted_in_admin(self, client, users):
        client.force_login(users["admin"])
        verify_2fa(client, users["admin"])
        policy = Policy.objects.get(code="benign")
        assert client.get(f"/admin/cases/policy/{policy.pk}/delete/").status_code == 403


class TestNothingReportableClosesWithoutItsReport:
    @pytest.mark.parametrize("code", REPORTABLE_CODES)
    def test_each_reportable_policy_bans_removes_reports_and_holds(self, users, code):
        case, item = claimed(users["specialist"])
        if Policy.objects.get(code=code).needs_view:
            record_evidence_view(users["specialist"], item, revealed=True)
        decision, _ = decide(users["specialist"], case.pk, policy=code, version=case.version)
        case.refresh_from_db()
        assert case.status == CaseStatus.CLOSED and case.resolution == "report"
        report = CyberTipReport.objects.get(decision=decision)
        assert report.files.get().item == item and item.holds.filter(report=report).exists()
        banned = "protect_account" if code == "minor-victim" else "ban_account"
        expected = {banned, "remove_content"}
        assert {e.action for e in Enforcement.objects.filter(decision=decision)} == expected
        assert_every_reportable_decision_has_its_report()

    @pytest.mark.parametrize("verb", ["ban", "remove", "report"])
    @pytest.mark.parametrize("code", ["csam-known", "grooming", "distribution-group"])
    def test_a_verb_from_an_older_caller_cannot_skip_the_report(self, users, verb, code):
        case, _ = claimed(users["reviewer"])
        decision, _ = decide(users["reviewer"], case.pk, action=verb, reason_code=code, version=case.version)
        assert decision.action == "report" and CyberTipReport.objects.filter(decision=decision).exists()
        assert_every_reportable_decision_has_its_report()

    def test_a_text_only_case_is_reported_without_files(self, users):
        case = reported_case(users["reviewer"])
        decision, _ = decide(users["reviewer"], case.pk, policy="grooming", version=case.version)
        report = CyberTipReport.objects.get(decision=decision)
        assert report.incident_type == "Online Enticement of Children for Sexual Acts" and not report.files.exists()

    def test_a_report_that_cannot_be_drafted_takes_the_whole_decision_back(self, users):
        case, item = claimed(users["reviewer"])
        with mock.patch.object(CyberTipFile.objects, "bulk_create", side_effect=RuntimeError("disk full")), \
                pytest.raises(RuntimeError):
            decide(users["reviewer"], case.pk, policy="csam-known", version=case.version)
        case.refresh_from_db()
        assert not Decision.objects.exists() and not Enforcement.objects.exists()
        assert case.status == CaseStatus.CLAIMED and case.account.status == "active"
        item.refresh_from_db()
        assert item.removed_at is None and not item.holds.exists()

    def test_a_dual_control_report_files_when_approved(self, users, settings):
        settings.DUAL_CONTROL_ACTIONS = ["report"]
        case, _ = claimed(users["reviewer"])
        decision, _ = decide(users["reviewer"], case.pk, policy="csam-known", version=case.version)
        assert decision.approval == "pending" and not CyberTipReport.objects.exists()
        second_review(users["specialist"], decision.pk, approve=True)
        assert CyberTipReport.objects.filter(decision=decision).count() == 1
        assert_every_reportable_decision_has_its_report()

    def test_a_verb_may_not_weaken_a_policy(self, users):
        case, _ = claimed(users["specialist"])
        for action, code in (("ban", "benign"), ("dismiss", "csam-known"), ("remove", "false-positive")):
            with pytest.raises(ActionError, match="does not fit"):
                decide(users["specialist"], case.pk, action=action, reason_code=code, version=case.version)
        assert not Decision.objects.exists()

    def test_members_are_banned_only_under_a_policy_that_bans_members(self, users):
        case, _ = claimed(users["specialist"])
        with pytest.raises(ActionError, match="members"):
            decide(users["specialist"], case.pk, policy="benign", version=case.version, member_ids=[1])


class TestGuardrails:
    def test_a_reviewer_not_cleared_to_view_cannot_dismiss_a_known_match_alone(self, users, client):
        case, _ = claimed(users["reviewer"])
        decision, _ = decide(users["reviewer"], case.pk, policy="false-positive", version=case.version)
        case.refresh_from_db()
        assert decision.approval == "pending" and case.status == CaseStatus.AWAITING_SECOND
        assert "not cleared to view" in decision.options["second_review_reason"]
        event = AuditEvent.objects.get(action="case.dismiss.proposed")
        assert "not cleared" in event.details["why"]
        # Another reviewer who is not cleared either may not approve it; a specialist may.
        with pytest.raises(ActionError, match="may not approve"):
            second_review(make_user("rita2", "reviewer"), decision.pk, approve=True)
        second_review(users["specialist"], decision.pk, approve=True)
        case.refresh_from_db()
        assert case.status == CaseStatus.CLOSED and case.resolution == "dismiss"

    def test_downgrading_a_known_match_waits_too(self, users):
        case, _ = claimed(users["reviewer"])
        decision, _ = decide(users["reviewer"], case.pk, policy=ban_only().code, version=case.version)
        assert decision.approval == "pending" and not Enforcement.objects.exists()

    def test_a_specialist_dismisses_a_known_match_directly(self, users):
        case, _ = claimed(users["specialist"])
        decision, _ = decide(users["specialist"], case.pk, policy="false-positive", version=case.version)
        assert decision.approval == "" and Decision.objects.get().case.status == CaseStatus.CLOSED

    def test_a_reviewer_dismisses_a_case_with_no_known_match(self, users):
        case = reported_case(users["reviewer"])
        decision, _ = decide(users["reviewer"], case.pk, policy="benign", version=case.version)
        assert decision.approval == ""

    def test_new_material_is_confirmed_only_after_a_reveal(self, users):
        case, item = claimed(users["specialist"])
        with pytest.raises(ActionError, match="Reveal the evidence"):
            decide(users["specialist"], case.pk, policy="csam-new", version=case.version)
        assert not Decision.objects.exists()
        record_evidence_view(users["specialist"], item, revealed=False)  # a blurred look does not count
        with pytest.raises(ActionError, match="Reveal the evidence"):
            decide(users["specialist"], case.pk, policy="csam-new", version=case.version)
        record_evidence_view(users["specialist"], item, revealed=True)
        decision, _ = decide(users["specialist"], case.pk, policy="csam-new", version=case.version)
        assert decision.approval == "" and CyberTipReport.objects.filter(decision=decision).exists()

    def test_new_material_proposed_by_a_reviewer_waits_for_a_specialist_who_looks(self, users):
        case, item = claimed(users["reviewer"])
        decision, _ = decide(users["reviewer"], case.pk, policy="sexualised-minor", version=case.version)
        assert decision.approval == "pending" and "specialist" in decision.options["second_review_reason"]
        with pytest.raises(ActionError, match="Reveal"):
            second_review(users["specialist"], decision.pk, approve=True)
        record_evidence_view(users["specialist"], item, revealed=True)
        second_review(users["specialist"], decision.pk, approve=True)
        assert CyberTipReport.objects.filter(decision=decision).count() == 1

    def test_the_case_page_says_why_a_policy_would_wait(self, client, users):
        case, _ = claimed(users["reviewer"])
        client.force_login(users["reviewer"])
        page = client.get(f"/cases/{case.pk}/").content.decode()
        assert "not cleared to view" in page and "Propose:" in page


class TestConfirmedNotReported:
    def test_an_overdue_report_raises_the_alarm_with_its_reason(self, users, settings, client, caplog):
        settings.CYBERTIP_REPORT_DEADLINE_HOURS = 24
        case, _ = claimed(users["reviewer"])
        decision, _ = decide(users["reviewer"], case.pk, policy="csam-known", version=case.version)
        assert unreported_confirmations() == []  # not overdue yet
        Decision.objects.filter(pk=decision.pk).update(created_at=timezone.now() - timedelta(hours=25))
        (row,) = unreported_confirmations()
        assert row["decision"] == decision and row["reason"] == "the report waits for a senior's approval"
        assert row["hours"] == 25
        with caplog.at_level(logging.ERROR, logger="cases.jobs"):
            assert alert_unreported() == 1
        assert f"decision {decision.pk}" in caplog.text and "senior's approval" in caplog.text
        client.force_login(users["senior"])
        verify_2fa(client, users["senior"])
        page = client.get("/queue/").content.decode()
        assert "Confirmed, not reported: 1" in page and "senior&#x27;s approval" in page
        assert "Confirmed, not reported" in client.get("/metrics/").content.decode()
        client.force_login(users["reviewer"])
        assert "Confirmed, not reported" not in client.get("/queue/").content.decode()

    def test_a_failed_filing_says_why_and_a_filed_one_clears_the_alarm(self, users):
        case, _ = claimed(users["reviewer"])
        decision, _ = decide(users["reviewer"], case.pk, policy="csam-known", version=case.version)
        Decision.objects.filter(pk=decision.pk).update(created_at=timezone.now() - timedelta(days=2))
        report = CyberTipReport.objects.get(decision=decision)
        CyberTipReport.objects.filter(pk=report.pk).update(status="failed", last_error="4100: validation failed")
        assert unreported_confirmations()[0]["reason"] == "filing stopped: 4100: validation failed"
        CyberTipReport.objects.filter(pk=report.pk).update(status="filed")
        assert unreported_confirmations() == []

    def test_an_undone_or_pending_decision_is_not_an_alarm(self, users, settings):
        settings.UNDO_SECONDS = 60
        from cases.actions.decisions import undo
        case, _ = claimed(users["reviewer"])
        decision, _ = decide(users["reviewer"], case.pk, policy="csam-known", version=case.version)
        undo(users["reviewer"], decision.pk)
        Decision.objects.update(created_at=timezone.now() - timedelta(days=2))
        assert unreported_confirmations() == []


def teen_reported_by_a_flagged_adult():
    """The outside review's case: a 13-15-year-old reported for nudity by an adult whom the console
    flagged for contacting teens."""
    from detection.jobs.analysis import analyse_subject
    adult, _ = intake.upsert_account("adult-1", {"age_band": "25-34", "facts": {
        "teen_non_contacts_7d": 12, "strangers_contacted_7d": 14, "blocked_by_teens_30d": 4,
        "reported_by_teens_30d": 3}})
    intake.upsert_account("teen-1", {"age_band": "13-15"})
    analyse_subject("account", adult.pk)
    intake.submit_report(reporter="adult-1", reason="nudity", account_id="teen-1")
    cases = {c.account.external_id: c for c in triage_all()}
    return cases["teen-1"], cases.get("adult-1")


class TestChildVictims:
    def test_a_reported_teen_is_flagged_raised_in_priority_and_linked_to_the_adult(self, client, users):
        teen_case, adult_case = teen_reported_by_a_flagged_adult()
        assert adult_case is not None, "the adult's teen-contact signal opens a case of its own"
        teen_case.refresh_from_db()
        assert "reported or contacted by an adult flagged for contacting teens" in teen_case.possible_minor_victim
        assert teen_case.priority >= 85 and teen_case.summary.startswith("Possible child victim")
        client.force_login(users["specialist"])
        page = client.get(f"/cases/{teen_case.pk}/").content.decode()
        assert "This account may belong to a child victim" in page and f"case #{adult_case.pk}" in page
        adult_page = client.get(f"/cases/{adult_case.pk}/").content.decode()
        assert "may belong to child victims" in adult_page and f"case #{teen_case.pk}" in adult_page

    def test_no_offender_policy_applies_to_a_possible_child_victim(self, users):
        teen_case, _ = teen_reported_by_a_flagged_adult()
        case = claim_case(users["specialist"], teen_case.pk)
        for code in ("csam-known", "grooming", ban_only().code, "adult-nudity"):
            with pytest.raises(ActionError, match="child victim"):
                decide(users["specialist"], case.pk, policy=code, version=case.version)
        with pytest.raises(ActionError, match="child victim"):  # the old "b", "1" too
            decide(users["specialist"], case.pk, action="ban", reason_code="csam-known", version=case.version)
        assert not Decision.objects.exists() and not Enforcement.objects.exists()

    def test_the_victim_policy_protects_reports_the_child_as_victim_and_the_adult_as_reported(self, users):
        from cases.cybertip import documents, filing
        teen_case, _ = teen_reported_by_a_flagged_adult()
        case = claim_case(users["specialist"], teen_case.pk)
        decision, _ = decide(users["specialist"], case.pk, policy="minor-victim", version=case.version)
        assert decision.approval == ""
        teen = case.account
        teen.refresh_from_db()
        assert teen.status == "active"  # protected, never banned
        assert set(Enforcement.objects.values_list("action", flat=True)) == {"protect_account"}
        report = CyberTipReport.objects.get(decision=decision)
        data = filing.gather_report(report)
        assert [v.esp_identifier for v in data.victims] == ["teen-1"] and data.esp_identifier == "adult-1"
        xml = documents.report_xml(data)
        assert b"<victim><espIdentifier>teen-1</espIdentifier>" in xml
        assert b"<personOrUserReported>" in xml and b"adult-1" in xml
        documents.validate(xml)

    def test_an_adult_account_is_not_flagged(self, users):
        intake.upsert_account("grown", {"age_band": "18+"})
        intake.submit_report(reporter="x", reason="nudity", account_id="grown")
        (case,) = triage_all()
        assert case.possible_minor_victim == ""


class TestLegalRequests:
    def open_request_on(self, users, external_id="acct-1"):
        from cases.actions import legal
        from tests.test_legal import PDF
        return legal.submit_request(users["officer"], kind="preservation", reference="P-1",
                                    identifiers=[{"type": "account", "id": external_id}], description="Keep it.",
                                    due_at=timezone.now() + timedelta(days=5), document=PDF, document_name="p.pdf")

    def test_every_case_of_the_subject_shows_the_open_request(self, client, users):
        from cases.actions import legal
        case, _ = case_with_match()
        request_obj = self.open_request_on(users)
        legal.verify(users["liaison"], request_obj, note="called the agency back")
        legal.link_subjects(users["liaison"], request_obj)
        client.force_login(users["reviewer"])
        page = client.get(f"/cases/{case.pk}/").content.decode()
        assert "Law enforcement is involved" in page and "Metro Police" in page and "Do not contact the user" in page

    def test_a_decision_that_would_notify_the_user_holds_the_notification(self, users):
        from cases.actions import legal
        intake.upsert_account("adult-n", {"age_band": "18+"})
        intake.submit_report(reporter="x", reason="nudity", account_id="adult-n")
        (case,) = triage_all()
        request_obj = self.open_request_on(users, "adult-n")
        legal.verify(users["liaison"], request_obj, note="called the agency back")
        legal.link_subjects(users["liaison"], request_obj)
        case = claim_case(users["reviewer"], case.pk)
        decision, _ = decide(users["reviewer"], case.pk, policy="adult-nudity", version=case.version)
        event = AuditEvent.objects.get(action="case.remove")
        assert event.details["notification_withheld"] == {"legal_requests": [request_obj.pk]}
        assert all(e.payload["notify_user"] is False for e in Enforcement.objects.filter(decision=decision))


def test_a_reported_account_without_flagged_files_shows_its_own_items(client, users, image_bytes):
    from tests.factories import scanned_item
    item = scanned_item(image_bytes(41), account="teen-2")
    intake.upsert_account("teen-2", {"age_band": "13-15"})
    intake.submit_report(reporter="someone", reason="nudity", account_id="teen-2")
    (case,) = [c for c in triage_all() if c.account.external_id == "teen-2"]
    other = scanned_item(image_bytes(42), account="bystander")  # in no case at all
    client.force_login(users["reviewer"])
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert f"/evidence/{item.pk}/blurred.jpg" in page and "No detector flagged a file here" in page
    assert client.get(f"/evidence/{item.pk}/blurred.jpg?case={case.pk}").status_code == 200
    assert AuditEvent.objects.filter(action="evidence.viewed_blurred", item=item, actor=users["reviewer"]).exists()
    # Outside any case an item is blurred-only, for investigators (its account's page), never revealed.
    assert client.post(f"/evidence/{other.pk}/reveal/").status_code == 403
    client.force_login(users["liaison"])
    assert client.get(f"/evidence/{other.pk}/blurred.jpg").status_code == 403


def test_the_alarm_tile_counts_everything_but_loads_only_the_oldest(users):
    from cases.selectors import unreported_alarm
    for seed in (1, 2):
        case, _ = case_with_match(seed=seed, account=f"acct-{seed}")
        case = claim_case(users["reviewer"], case.pk)
        decide(users["reviewer"], case.pk, policy="csam-known", version=case.version)
    Decision.objects.update(created_at=timezone.now() - timedelta(days=2))
    alarm = unreported_alarm(limit=1)
    assert alarm["count"] == 2 and len(alarm["rows"]) == 1
    assert alarm["rows"][0]["decision"] == Decision.objects.order_by("created_at", "pk").first()
