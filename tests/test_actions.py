"""Triage, claiming and deciding: the state changes, their audit rows and their idempotence."""

import pytest

from cases.actions import ActionError
from cases.actions.claims import claim_case, claim_next_case, release_case
from cases.actions.decisions import decide
from cases.actions.triage import attach_signals
from cases.models import Case, CaseStatus, CyberTipReport, Decision, Enforcement, ReviewQueue
from detection import intake
from detection.models import Signal, SubjectStatus
from reviewconsole.audit.models import AuditEvent
from reviewconsole.devtools import synthetic
from tests.factories import ban_only, case_with_match, known_bank, remove_only, scanned_item, triage_all

pytestmark = pytest.mark.django_db


def claimed_case(user, **kwargs):
    case, item = case_with_match(**kwargs)
    return claim_case(user, case.pk), item


class TestTriage:
    def test_signals_about_one_account_gather_in_one_case(self):
        known_bank([1, 2])
        for seed in (1, 2):
            scanned_item(synthetic.encode(synthetic.EDITS["resized"](synthetic.make_image(seed))), account="a-1")
        intake.submit_report(reporter="u", reason="csam", account_id="a-1")
        (case,) = {c.pk: c for c in triage_all()}.values()
        assert case.signals.count() == 3
        assert case.queue.slug == "known-material"
        assert Case.objects.count() == 1

    def test_a_report_alone_goes_to_user_reports_with_lower_priority(self):
        intake.submit_report(reporter="u", reason="nudity", account_id="a-2")
        (case,) = triage_all()
        assert case.queue.slug == "user-reports" and case.priority < 50

    def test_a_match_outranks_a_report(self):
        match_case, _ = case_with_match(account="a-1")
        intake.submit_report(reporter="u", reason="nudity", account_id="a-2")
        (report_case,) = triage_all()
        assert match_case.priority > report_case.priority

    def test_triage_twice_changes_nothing(self):
        case, _ = case_with_match()
        ids = list(Signal.objects.values_list("pk", flat=True))
        assert attach_signals(ids) == []
        assert Case.objects.count() == 1

    def test_a_new_signal_after_closing_opens_a_new_case(self, users):
        case, _ = case_with_match()
        claim_case(users["specialist"], case.pk)
        decide(users["specialist"], case.pk, action="dismiss", reason_code="benign", version=case.version + 1)
        intake.submit_report(reporter="u", reason="csam", account_id="acct-1")
        (new_case,) = triage_all()
        assert new_case.pk != case.pk


class TestClaiming:
    def test_it_claims_the_most_urgent_case_first(self, users):
        intake.submit_report(reporter="u", reason="nudity", account_id="low")
        triage_all()
        urgent, _ = case_with_match(account="high")
        assert claim_next_case(users["reviewer"]).pk == urgent.pk

    def test_two_reviewers_never_get_the_same_case(self, users):
        case_with_match(account="a-1")
        intake.submit_report(reporter="u", reason="csam", account_id="a-2")
        triage_all()
        first = claim_next_case(users["reviewer"])
        second = claim_next_case(users["specialist"])
        assert first.pk != second.pk
        assert claim_next_case(users["senior"]) is None

    def test_a_reviewer_gets_their_held_case_back(self, users):
        case, _ = case_with_match()
        assert claim_next_case(users["reviewer"]).pk == case.pk
        assert claim_next_case(users["reviewer"]).pk == case.pk
        assert AuditEvent.objects.filter(action="case.claimed").count() == 1

    def test_an_expired_lease_can_be_claimed_by_another(self, users, settings):
        settings.CASE_LEASE_SECONDS = -1
        case, _ = case_with_match()
        claim_next_case(users["reviewer"])
        assert claim_next_case(users["specialist"]).pk == case.pk

    def test_claiming_a_case_someone_holds_is_refused(self, users):
        case, _ = case_with_match()
        claim_case(users["reviewer"], case.pk)
        with pytest.raises(ActionError, match="claimed by rita"):
            claim_case(users["specialist"], case.pk)

    def test_escalations_are_for_seniors_only(self, users):
        case, _ = claimed_case(users["reviewer"])
        decide(users["reviewer"], case.pk, action="escalate", reason_code="age-unclear", note="unsure",
               version=case.version)
        assert claim_next_case(users["specialist"]) is None
        with pytest.raises(ActionError):
            claim_case(users["specialist"], case.pk)
        assert claim_next_case(users["senior"]).pk == case.pk

    def test_release_puts_the_case_back(self, users):
        case, _ = claimed_case(users["reviewer"])
        assert release_case(users["reviewer"], case.pk)
        assert Case.objects.get(pk=case.pk).status == CaseStatus.OPEN
        assert not release_case(users["specialist"], case.pk)


class TestDeciding:
    def test_confirming_known_material_with_the_ban_key_bans_removes_reports_and_preserves(self, users):
        # The outside review's first finding: "b", "1" used to close the case with a ban alone.
        case, item = claimed_case(users["reviewer"])
        decision, created = decide(users["reviewer"], case.pk, action="ban", reason_code="csam-known",
                                   version=case.version, ip="192.0.2.1")
        assert created and decision.policy.code == "csam-known" and decision.policy_version == 1
        case.refresh_from_db()
        assert case.status == CaseStatus.CLOSED and case.resolution == "report"
        assert case.account.status == SubjectStatus.BANNED
        assert {e.action for e in Enforcement.objects.all()} == {"ban_account", "remove_content"}
        report = CyberTipReport.objects.get(decision=decision)
        assert [f.item for f in report.files.all()] == [item]
        assert item.holds.filter(lifted_at__isnull=True).exists()
        event = AuditEvent.objects.get(action="case.report")
        assert event.actor == users["reviewer"] and str(event.ip) == "192.0.2.1"
        assert event.details["policy"] == "csam-known" and event.details["policy_version"] == 1

    def test_a_ban_only_policy_bans_and_closes(self, users):
        case, _ = claimed_case(users["specialist"])
        decide(users["specialist"], case.pk, policy=ban_only().code, version=case.version)
        case.refresh_from_db()
        assert case.status == CaseStatus.CLOSED and case.resolution == "ban"
        assert Enforcement.objects.get().action == "ban_account"
        assert not CyberTipReport.objects.exists()

    def test_remove_marks_the_flagged_items_removed(self, users):
        case, item = claimed_case(users["specialist"])
        decide(users["specialist"], case.pk, policy=remove_only().code, version=case.version)
        item.refresh_from_db()
        assert item.removed_at is not None
        assert Enforcement.objects.get().target == f"item:{item.pk}"

    def test_report_drafts_a_cybertip_report_bans_and_removes(self, users):
        case, item = claimed_case(users["specialist"])
        decide(users["specialist"], case.pk, action="report", reason_code="csam-known", version=case.version)
        report = CyberTipReport.objects.get()
        assert report.status == "awaiting_approval" and [f.item for f in report.files.all()] == [item]
        assert {e.action for e in Enforcement.objects.all()} == {"ban_account", "remove_content"}

    def test_a_plain_reviewers_report_always_waits_for_a_senior(self, users, settings):
        settings.CYBERTIP_REQUIRE_APPROVAL = False
        case, _ = claimed_case(users["reviewer"])
        decide(users["reviewer"], case.pk, policy="csam-known", version=case.version)
        assert CyberTipReport.objects.get().status == "awaiting_approval"

    def test_escalation_needs_a_note_and_moves_the_case(self, users):
        case, _ = claimed_case(users["reviewer"])
        with pytest.raises(ActionError, match="note"):
            decide(users["reviewer"], case.pk, action="escalate", reason_code="age-unclear", version=case.version)
        decide(users["reviewer"], case.pk, action="escalate", reason_code="age-unclear", note="check age",
               version=case.version)
        case.refresh_from_db()
        assert case.queue == ReviewQueue.objects.get(slug="escalations") and case.status == CaseStatus.OPEN

    def test_dismiss_closes_without_enforcement(self, users):
        case, _ = claimed_case(users["specialist"])
        decide(users["specialist"], case.pk, action="dismiss", reason_code="false-positive", version=case.version)
        assert not Enforcement.objects.exists()
        assert Case.objects.get(pk=case.pk).resolution == "dismiss"

    @pytest.mark.parametrize("action, reason", [("escalate", "benign"), ("ban", "nope"), ("explode", "benign"),
                                                (None, "")])
    def test_a_policy_or_escalation_reason_must_exist(self, users, action, reason):
        case, _ = claimed_case(users["reviewer"])
        with pytest.raises(ActionError):
            decide(users["reviewer"], case.pk, action=action, reason_code=reason, version=case.version)
        assert not Decision.objects.exists()

    def test_a_repeated_request_returns_the_same_decision(self, users):
        case, _ = claimed_case(users["reviewer"])
        first, created = decide(users["reviewer"], case.pk, action="ban", reason_code="csam-known",
                                version=case.version)
        again, created_again = decide(users["reviewer"], case.pk, action="ban", reason_code="csam-known",
                                      version=case.version)
        assert created and not created_again and first.pk == again.pk
        assert Decision.objects.count() == 1 and Enforcement.objects.count() == 2  # one ban, one removal
        assert CyberTipReport.objects.count() == 1

    def test_a_different_second_action_is_refused(self, users):
        case, _ = claimed_case(users["reviewer"])
        decide(users["reviewer"], case.pk, action="ban", reason_code="csam-known", version=case.version)
        with pytest.raises(ActionError, match="already"):
            decide(users["reviewer"], case.pk, action="dismiss", reason_code="benign", version=case.version)

    def test_only_the_claim_holder_decides(self, users):
        case, _ = claimed_case(users["reviewer"])
        with pytest.raises(ActionError, match="Claim"):
            decide(users["specialist"], case.pk, action="ban", reason_code="csam-known", version=case.version)

    def test_a_stale_version_is_refused(self, users):
        case, _ = claimed_case(users["reviewer"])
        with pytest.raises(ActionError, match="changed"):
            decide(users["reviewer"], case.pk, action="ban", reason_code="csam-known", version=case.version - 1)
