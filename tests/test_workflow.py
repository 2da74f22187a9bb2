"""Queues with SLAs and ageing priority, and the reviewer's daily exposure budget."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cases import routing
from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.models import Case
from cases.wellness import exposure_today
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa
from tests.factories import case_with_match

pytestmark = pytest.mark.django_db


def reveal_events(user, n):
    for _ in range(n):
        AuditEvent.objects.create(actor=user, actor_label=user.username, action="evidence.revealed")


def test_exposure_counts_reveals_and_minutes_on_cases(users):
    user = users["specialist"]
    case, _ = case_with_match()
    claim_case(user, case.pk)
    reveal_events(user, 3)
    # A fixed hour of the day, so that "25 minutes ago" is today whenever the suite runs (even at 00:10).
    noon = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    AuditEvent.objects.filter(action="case.claimed").update(created_at=noon - timedelta(minutes=25))
    AuditEvent.objects.filter(action="evidence.revealed").update(created_at=noon - timedelta(minutes=1))
    exposure = exposure_today(user, now=noon)
    assert exposure.reveals == 3 and 24 <= exposure.minutes <= 26
    assert exposure_today(users["reviewer"], now=noon).reveals == 0


def test_past_the_budget_the_next_case_does_not_open_by_itself(client, users, settings):
    settings.EXPOSURE_REVEALS_PER_DAY = 2
    user = users["specialist"]
    case, _ = case_with_match(seed=1, account="a-1")
    case_with_match(seed=2, account="a-2")
    case = claim_case(user, case.pk)
    reveal_events(user, 2)
    client.force_login(user)
    response = client.post(f"/cases/{case.pk}/decide/", {"action": "ban", "reason": "csam-known",
                                                         "version": case.version})
    assert response.status_code == 302 and response["Location"] == "/queue/"
    page = client.get("/queue/").content.decode()
    assert "take a break" in page
    assert Case.objects.filter(assigned_to=user, status="claimed").count() == 0


def test_under_the_budget_the_next_case_opens(client, users):
    user = users["specialist"]
    case, _ = case_with_match(seed=1, account="a-1")
    other, _ = case_with_match(seed=2, account="a-2")
    case = claim_case(user, case.pk)
    client.force_login(user)
    response = client.post(f"/cases/{case.pk}/decide/", {"action": "ban", "reason": "csam-known",
                                                         "version": case.version})
    assert response["Location"] == f"/cases/{other.pk}/"


def test_waiting_cases_gain_priority_with_age(settings):
    settings.PRIORITY_AGING_PER_HOUR = 5
    case, _ = case_with_match()
    base = case.base_priority
    assert case.priority == base
    Case.objects.filter(pk=case.pk).update(created_at=timezone.now() - timedelta(hours=3))
    assert routing.age_priorities() == 1
    case.refresh_from_db()
    assert case.priority == min(100, base + 15) and case.base_priority == base
    assert routing.age_priorities() == 0  # nothing changed since


def test_an_old_low_case_overtakes_a_new_one(settings, users):
    from detection import intake
    from tests.factories import triage_all
    settings.PRIORITY_AGING_PER_HOUR = 10
    intake.submit_report(reporter="u", reason="nudity", account_id="old")
    (old,) = triage_all()
    Case.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=6))
    intake.submit_report(reporter="u", reason="grooming", account_id="new")
    triage_all()
    routing.age_priorities()
    from cases.actions.claims import claim_next_case
    assert claim_next_case(users["reviewer"]).pk == old.pk


def test_the_queue_overview_shows_sla_breaches_and_work_done_today(client, users):
    case, _ = case_with_match(seed=1, account="a-1")
    Case.objects.filter(pk=case.pk).update(created_at=timezone.now() - timedelta(hours=2))  # SLA 60 min
    done, _ = case_with_match(seed=2, account="a-2")
    done = claim_case(users["specialist"], done.pk)  # cleared: a known match dismissed without a second look
    decide(users["specialist"], done.pk, action="dismiss", reason_code="benign", version=done.version)
    client.force_login(users["reviewer"])
    response = client.get("/queue/")
    page = response.content.decode()
    assert "past SLA" in page
    (known,) = [q for q in response.context["queues"] if q.slug == "known-material"]
    assert known.stats["breaches"] == 1 and known.stats["handled_today"] == 1


def test_the_queue_page_runs_a_bounded_number_of_queries(client, users, django_assert_max_num_queries):
    for n in range(5):
        case_with_match(seed=n + 1, account=f"a-{n}")
    client.force_login(users["reviewer"])
    with django_assert_max_num_queries(20):
        assert client.get("/queue/").status_code == 200


def test_notes_on_a_subject_follow_it_into_later_cases(client, users):
    from cases.models import SubjectNote
    case, _ = case_with_match()
    client.force_login(users["reviewer"])
    client.post(f"/cases/{case.pk}/note/", {"text": "Same photos seen in group X last month"})
    client.post(f"/cases/{case.pk}/note/", {"text": "   "})
    assert SubjectNote.objects.count() == 1
    assert AuditEvent.objects.filter(action="subject.note_added").count() == 1
    case = claim_case(users["reviewer"], case.pk)
    decide(users["reviewer"], case.pk, action="dismiss", reason_code="benign", version=case.version)
    later, _ = case_with_match(seed=2, account="acct-1")
    assert "Same photos seen in group X" in client.get(f"/cases/{later.pk}/").content.decode()


def test_reviewers_see_who_else_has_the_case_open(client, users):
    case, _ = case_with_match()
    client.force_login(users["specialist"])
    client.get(f"/cases/{case.pk}/")
    client.post(f"/cases/{case.pk}/viewing/")  # what console.js sends as the page loads: a GET writes nothing
    client.force_login(users["reviewer"])
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "Also viewing: sam" in page
    assert client.post(f"/cases/{case.pk}/viewing/").json() == {"others": ["sam"]}


def test_a_case_can_be_handed_to_a_named_senior(users):
    from cases.actions import ActionError
    from cases.actions.claims import claim_next_case
    case, _ = case_with_match()
    case = claim_case(users["reviewer"], case.pk)
    with pytest.raises(ActionError, match="senior"):
        decide(users["reviewer"], case.pk, action="escalate", reason_code="age-unclear", note="x",
               version=case.version, escalate_to=users["specialist"].pk)
    decide(users["reviewer"], case.pk, action="escalate", reason_code="age-unclear", note="please look",
           version=case.version, escalate_to=users["senior"].pk)
    case.refresh_from_db()
    assert case.queue.slug == "escalations" and case.assigned_to == users["senior"] and case.status == "claimed"
    assert claim_next_case(users["senior"]).pk == case.pk


@pytest.fixture
def undo_window(settings):
    settings.UNDO_SECONDS = 10
    return settings


def test_a_ban_can_be_undone_within_the_window(users, undo_window):
    from cases.actions.decisions import undo
    from cases.dispatch import dispatch_enforcement
    from cases.models import Enforcement, Platform
    Platform.objects.create(name="chat", webhook_url="http://127.0.0.1:9/hook")
    case, item = case_with_match()
    case = claim_case(users["reviewer"], case.pk)
    decision, _ = decide(users["reviewer"], case.pk, action="ban", reason_code="csam-known", version=case.version)
    enforcement = Enforcement.objects.get(action="ban_account")
    assert dispatch_enforcement(enforcement.pk) == "skipped"  # nothing leaves inside the window
    undo(users["reviewer"], decision.pk)
    case.refresh_from_db()
    assert case.status == "claimed" and case.closed_at is None and case.assigned_to == users["reviewer"]
    assert case.account.status == "active" and item.holds.filter(lifted_at__isnull=True).count() == 0
    assert set(Enforcement.objects.values_list("status", flat=True)) == {"cancelled"}
    from cases.models import CyberTipReport
    assert CyberTipReport.objects.get(decision=decision).status == "cancelled"
    assert AuditEvent.objects.filter(action="case.undo").exists()
    # The case can be decided again, differently (a known match dismissed by a reviewer not cleared to
    # view it waits for a specialist).
    again, _ = decide(users["reviewer"], case.pk, action="dismiss", reason_code="benign", version=case.version)
    assert again.approval == "pending"


def test_undo_after_the_window_is_refused(users, undo_window):
    from cases.actions import ActionError
    from cases.actions.decisions import undo
    from cases.models import Decision
    case, _ = case_with_match()
    case = claim_case(users["reviewer"], case.pk)
    decision, _ = decide(users["reviewer"], case.pk, action="remove", reason_code="csam-known",
                         version=case.version)
    Decision.objects.filter(pk=decision.pk).update(created_at=timezone.now() - timedelta(seconds=11))
    with pytest.raises(ActionError, match="closed"):
        undo(users["reviewer"], decision.pk)
    with pytest.raises(ActionError, match="your own"):
        undo(users["specialist"], decision.pk)


def test_undoing_a_report_cancels_it_and_lifts_its_holds(users, undo_window):
    from cases.actions.decisions import undo
    from cases.models import CyberTipReport, LegalHold
    case, item = case_with_match()
    case = claim_case(users["specialist"], case.pk)
    decision, _ = decide(users["specialist"], case.pk, action="report", reason_code="csam-known",
                         version=case.version)
    assert LegalHold.active().filter(item=item).exists()
    undo(users["specialist"], decision.pk)
    assert CyberTipReport.objects.get().status == "cancelled"
    assert not LegalHold.active().filter(item=item).exists()
    item.refresh_from_db()
    assert item.removed_at is None


def test_the_undo_offer_follows_the_reviewer_and_works_from_the_page(client, users, undo_window):
    case, _ = case_with_match()
    case = claim_case(users["reviewer"], case.pk)
    client.force_login(users["reviewer"])
    response = client.post(f"/cases/{case.pk}/decide/", {"action": "dismiss", "reason": "benign",
                                                         "version": case.version}, follow=True)
    page = response.content.decode()
    assert "Undo" in page and "/undo/" in page
    decision_id = response.context["undo_offer"]["decision"]
    response = client.post(f"/decisions/{decision_id}/undo/")
    assert response["Location"] == f"/cases/{case.pk}/"
    assert Case.objects.get(pk=case.pk).status == "claimed"


def test_admin_routing_rules_decide_the_queue():
    from cases.models import ReviewQueue, RoutingRule
    from detection import intake
    from tests.factories import triage_all
    RoutingRule.objects.create(queue=ReviewQueue.objects.get(slug="escalations"), signal_kind="user_report",
                               min_severity=70, position=0)
    intake.submit_report(reporter="u", reason="grooming", account_id="serious")
    intake.submit_report(reporter="u", reason="nudity", account_id="mild")
    queues_by_account = {c.account.external_id: c.queue.slug for c in triage_all()}
    assert queues_by_account == {"serious": "escalations", "mild": "user-reports"}


def test_a_group_case_bans_the_members_who_shared_matched_material(client, users):
    from cases.models import Enforcement
    from detection import intake
    from detection.models import Account
    from reviewconsole.devtools import synthetic
    from tests.factories import known_bank, scanned_item, triage_all
    known_bank([1, 2])
    for seed, account in ((1, "m-1"), (2, "m-2")):
        scanned_item(synthetic.encode(synthetic.make_image(seed)), account=account, group="g-1")
    scanned_item(synthetic.encode(synthetic.make_image(77)), account="innocent", group="g-1")
    intake.submit_report(reporter="u", reason="csam", group_id="g-1")
    cases = {c.group.external_id if c.group else c.account.external_id: c for c in triage_all()}
    group_case = claim_case(users["reviewer"], cases["g-1"].pk)
    client.force_login(users["reviewer"])
    page = client.get(f"/cases/{group_case.pk}/").content.decode()
    assert "Also ban these members of the group who shared matched material" in page and "innocent" not in page
    members_box = page.split("Also ban these members")[1].split("</fieldset>")[0]
    assert 'name="members" value' in members_box and "checked" not in members_box  # never pre-ticked
    members = list(Account.objects.filter(external_id__in=["m-1", "m-2", "innocent"]).values_list("pk", flat=True))
    client.post(f"/cases/{group_case.pk}/decide/", {"action": "ban", "reason": "distribution-group",
                                                   "version": group_case.version, "members": members})
    banned = set(Account.objects.filter(status="banned").values_list("external_id", flat=True))
    assert banned == {"m-1", "m-2"}  # the innocent member was not in the preview, so not banned
    assert set(Enforcement.objects.values_list("action", "target")) == {
        ("ban_group", "g-1"), ("ban_account", "m-1"), ("ban_account", "m-2")}


def test_dual_control_needs_a_second_reviewer_before_anything_happens(client, users, settings):
    from cases.actions import ActionError
    from cases.actions.claims import claim_next_case
    from cases.actions.decisions import second_review
    from cases.models import Decision, Enforcement
    settings.DUAL_CONTROL_ACTIONS = ["report"]
    case, _ = case_with_match()
    case = claim_case(users["reviewer"], case.pk)
    decision, _ = decide(users["reviewer"], case.pk, action="ban", reason_code="csam-known", version=case.version)
    case.refresh_from_db()
    assert decision.approval == "pending" and case.status == "awaiting_second" and case.closed_at is None
    assert case.account.status == "active" and not Enforcement.objects.exists()
    assert claim_next_case(users["specialist"]) is None  # not claimable as ordinary work
    with pytest.raises(ActionError, match="someone else"):
        second_review(users["reviewer"], decision.pk, approve=True)
    client.force_login(users["specialist"])
    assert f"Case #{case.pk}" in client.get("/queue/").content.decode()
    assert "Approve and carry out" in client.get(f"/cases/{case.pk}/").content.decode()
    client.post(f"/decisions/{decision.pk}/second-review/", {"approve": "1"})
    case.refresh_from_db()
    assert case.status == "closed" and case.account.status == "banned"
    assert Decision.objects.get().second_reviewer == users["specialist"]
    assert {e.action for e in Enforcement.objects.all()} == {"ban_account", "remove_content"}
    with pytest.raises(ActionError):
        second_review(users["senior"], decision.pk, approve=True)  # once only


def test_a_second_reviewer_can_send_it_back_and_big_group_bans_need_one(users, settings):
    from cases.actions.decisions import second_review
    from detection import intake
    from detection.models import Group
    from tests.factories import triage_all
    settings.DUAL_CONTROL_GROUP_MEMBERS = 100
    intake.upsert_group("big", {"name": "Big", "member_count": 500})
    intake.submit_report(reporter="u", reason="csam", group_id="big")
    (case,) = triage_all()
    case = claim_case(users["reviewer"], case.pk)
    decision, _ = decide(users["reviewer"], case.pk, action="ban", reason_code="distribution-group",
                         version=case.version)
    assert decision.approval == "pending"
    second_review(users["senior"], decision.pk, approve=False, note="not enough evidence yet")
    case.refresh_from_db()
    assert case.status == "open" and Group.objects.get(external_id="big").status == "active"
    assert AuditEvent.objects.filter(action="case.report.rejected").exists()


def test_qa_samples_decisions_for_a_blind_second_look(client, users, settings):
    from cases.models import QAReview
    settings.QA_SAMPLE_RATE = 1.0
    case, _ = case_with_match()
    case = claim_case(users["reviewer"], case.pk)
    decision, _ = decide(users["reviewer"], case.pk, action="ban", reason_code="csam-known", version=case.version)
    qa = QAReview.objects.get(decision=decision)
    client.force_login(users["senior"])
    verify_2fa(client, users["senior"])  # QA needs the second factor
    page = client.get("/qa/").content.decode()
    assert f"Case #{case.pk}" in page and "csam-known" not in page and "Known child sexual abuse" not in page
    client.post(f"/qa/{qa.pk}/", {"action": "dismiss"})
    qa.refresh_from_db()
    assert qa.reviewer == users["senior"] and qa.agrees is False
    client.post(f"/qa/{qa.pk}/", {"action": "ban"})  # the first judgement stands
    assert QAReview.objects.get(pk=qa.pk).agrees is False
    agreement = client.get("/qa/agreement/")
    assert agreement.context["by_reviewer"] == [{"name": "rita", "n": 1, "rate": 0}]
    client.force_login(users["reviewer"])
    verify_2fa(client, users["reviewer"])  # past the second factor, a reviewer is still refused
    assert client.get("/qa/").status_code == 403


def test_nobody_judges_their_own_decision_in_qa(users, settings):
    from cases.actions import ActionError
    from cases.actions.qa import record_qa
    from cases.models import QAReview
    settings.QA_SAMPLE_RATE = 1.0
    case, _ = case_with_match()
    case = claim_case(users["senior"], case.pk)
    decision, _ = decide(users["senior"], case.pk, action="dismiss", reason_code="benign", version=case.version)
    with pytest.raises(ActionError, match="someone else"):
        record_qa(users["senior"], QAReview.objects.get(decision=decision).pk, action="dismiss")
