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

REPORTABLE_CODES = ["csam-known", "csam-new", "sexualised-minor", "grooming", "sextortion", "distribution-group"]


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
            assert policy.ban != "none" and policy.action == "report"
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
        assert {e.action for e in Enforcement.objects.filter(decision=decision)} >= {"ban_account", "remove_content"}
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
