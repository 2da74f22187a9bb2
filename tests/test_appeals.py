"""Appeals (DSA Art. 20): the API, who may decide, what an overturn reverses and keeps, and the figures."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from cases import metrics
from cases.actions import ActionError
from cases.actions.appeals import claim_appeal, claim_next_appeal, decide_appeal
from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.models import (
    Appeal,
    AppealStatus,
    CyberTipReport,
    Enforcement,
    EnforcementStatus,
    QAReview,
    SubjectNote,
)
from cases.statements import statement_for
from detection.models import Account, BankHash, SubjectStatus
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa
from tests.factories import ban_only, case_with_match

pytestmark = pytest.mark.django_db


def decided(user, code="csam-known", *, seed=1, account="acct-1"):
    case, _ = case_with_match(seed=seed, account=account)
    case = claim_case(user, case.pk)
    decision, _ = decide(user, case.pk, policy=code, version=case.version)
    return decision


def ban_of(decision):
    return decision.enforcements.get(action="ban_account")


def post(api, body):
    return api.post("/api/v1/appeals", data=json.dumps(body), content_type="application/json")


def appeal_of(decision, text="I did not post this."):
    from cases.actions.appeals import submit_appeal
    appeal, _ = submit_appeal(ban_of(decision), text=text)
    return appeal


# The API -----------------------------------------------------------------------------------------

def test_an_appeal_is_received_by_enforcement_id_and_a_retry_returns_it(api, users):
    decision = decided(users["specialist"], ban_only().code)
    body = {"enforcement": ban_of(decision).pk, "statement": "I was hacked.", "attachment": "Screenshot text"}
    first = post(api, body)
    assert first.status_code == 201, first.content
    assert first.json()["status"] == "received"
    again = post(api, body)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    appeal = Appeal.objects.get()
    assert appeal.appellant == "acct-1" and appeal.queue.slug == "appeals" and appeal.attachment == "Screenshot text"
    assert AuditEvent.objects.filter(action="appeal.received", object_id=str(appeal.pk)).count() == 1


def test_an_appeal_may_name_the_statement_of_reasons(api, users):
    decision = decided(users["specialist"], ban_only().code)
    statement = statement_for(ban_of(decision))
    response = post(api, {"statement_of_reasons": statement.puid, "statement": "Please look again."})
    assert response.status_code == 201
    assert Appeal.objects.get().statement_of_reasons == statement


@pytest.mark.parametrize("body, field", [
    ({"statement": "x"}, "__all__"),
    ({"enforcement": 1, "statement_of_reasons": "sor-x", "statement": "x"}, "__all__"),
    ({"enforcement": "one", "statement": "x"}, "enforcement"),
    ({"enforcement": 1}, "statement"),
    ({"enforcement": 1, "statement": "   "}, "statement"),
    ({"enforcement": 1, "statement": "x" * 5001}, "statement"),
    ({"enforcement": 1, "statement": "nul \x00"}, "statement"),
    ({"enforcement": 0, "statement": "x"}, "enforcement"),
])
def test_bad_input_is_a_400_naming_the_field(api, body, field):
    response = post(api, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert not Appeal.objects.exists()


def test_an_unknown_enforcement_or_statement_is_a_404(api):
    assert post(api, {"enforcement": 999999, "statement": "x"}).status_code == 404
    assert post(api, {"statement_of_reasons": "sor-00000000-0000-0000-0000-000000000000",
                      "statement": "x"}).status_code == 404
    assert post(api, {"statement_of_reasons": "not-a-uuid", "statement": "x"}).status_code == 404


def test_the_api_needs_a_token(client):
    response = client.post("/api/v1/appeals", data="{}", content_type="application/json")
    assert response.status_code == 401


def test_a_second_appeal_of_the_same_decision_is_refused_while_one_is_open(api, users):
    decision = decided(users["specialist"], ban_only().code)
    assert post(api, {"enforcement": ban_of(decision).pk, "statement": "First."}).status_code == 201
    response = post(api, {"enforcement": ban_of(decision).pk, "statement": "Second, different."})
    assert response.status_code == 409 and "still being reviewed" in response.json()["error"]


def test_too_many_appeals_from_one_account_are_limited(api, users, settings):
    settings.APPEAL_LIMIT_PER_30_DAYS = 2
    codes = []
    for seed in (1, 2, 3):
        decision = decided(users["specialist"], ban_only().code, seed=seed, account=f"acct-{seed}")
        codes.append(post(api, {"enforcement": ban_of(decision).pk, "account": "same-person",
                                "statement": f"Appeal {seed}"}).status_code)
    assert codes == [201, 201, 429]
    assert Appeal.objects.count() == 2


def test_an_undone_decision_or_a_non_restriction_cannot_be_appealed(api, users):
    decision = decided(users["specialist"], ban_only().code)
    decision.enforcements.update(status=EnforcementStatus.CANCELLED)
    assert post(api, {"enforcement": ban_of(decision).pk, "statement": "x"}).status_code == 409


# Who decides -------------------------------------------------------------------------------------

def test_the_original_decider_may_not_decide_the_appeal(users):
    appeal = appeal_of(decided(users["specialist"], ban_only().code))
    with pytest.raises(ActionError, match="took part"):
        claim_appeal(users["specialist"], appeal.pk)
    assert claim_next_appeal(users["specialist"]) is None
    assert claim_next_appeal(users["reviewer"]).pk == appeal.pk


def test_the_second_reviewer_may_not_decide_the_appeal(users):
    decision = decided(users["specialist"], ban_only().code)
    decision.second_reviewer = users["reviewer"]
    decision.save(update_fields=["second_reviewer"])
    appeal = appeal_of(decision)
    with pytest.raises(ActionError, match="took part"):
        claim_appeal(users["reviewer"], appeal.pk)


def test_appeals_of_reportable_decisions_go_to_seniors_only(users):
    appeal = appeal_of(decided(users["specialist"]))
    with pytest.raises(ActionError, match="senior"):
        claim_appeal(users["reviewer"], appeal.pk)
    assert claim_next_appeal(users["reviewer"]) is None
    assert claim_appeal(users["senior"], appeal.pk).assigned_to == users["senior"]


def test_deciding_needs_the_claim_and_a_reason(users):
    appeal = appeal_of(decided(users["specialist"], ban_only().code))
    with pytest.raises(ActionError, match="Claim"):
        decide_appeal(users["reviewer"], appeal.pk, outcome="upheld", reason="Fine.")
    claim_appeal(users["reviewer"], appeal.pk)
    with pytest.raises(ActionError, match="reason"):
        decide_appeal(users["reviewer"], appeal.pk, outcome="upheld", reason="  ")


# Outcomes ----------------------------------------------------------------------------------------

def test_upholding_changes_nothing_but_the_appeal_and_tells_the_user(users):
    decision = decided(users["specialist"], ban_only().code)
    appeal = appeal_of(decision)
    before = set(decision.enforcements.values_list("pk", "status"))
    claim_appeal(users["reviewer"], appeal.pk)
    appeal, created = decide_appeal(users["reviewer"], appeal.pk, outcome="upheld", reason="Clear spam.")
    again, created_again = decide_appeal(users["reviewer"], appeal.pk, outcome="upheld", reason="Clear spam.")
    assert created and not created_again and again.pk == appeal.pk
    assert appeal.status == AppealStatus.UPHELD and appeal.decided_by == users["reviewer"]
    notice = Enforcement.objects.get(action="appeal_outcome")
    assert notice.target == "acct-1" and notice.payload["appeal"]["outcome"] == "upheld"
    assert "Clear spam" not in json.dumps(notice.payload)  # the reviewer's words stay inside
    assert set(decision.enforcements.exclude(action="appeal_outcome").values_list("pk", "status")) == before
    assert Account.objects.get(external_id="acct-1").status == SubjectStatus.BANNED
    assert AuditEvent.objects.filter(action="appeal.upheld").count() == 1


def test_overturning_reverses_through_the_outbox_and_removes_the_bank_entries(users, settings):
    settings.UNDO_SECONDS = 0
    decision = decided(users["specialist"])
    decision.refresh_from_db()
    entries = decision.options["bank_entries"]
    assert BankHash.objects.filter(pk__in=entries).exists()
    decision.enforcements.update(status=EnforcementStatus.DELIVERED)
    CyberTipReport.objects.filter(decision=decision).update(status=CyberTipReport.Status.FILED,
                                                            ncmec_report_id="777")
    appeal = appeal_of(decision)
    claim_appeal(users["senior"], appeal.pk)
    appeal, _ = decide_appeal(users["senior"], appeal.pk, outcome="overturned", reason="Not what it seemed.")
    decide_appeal(users["senior"], appeal.pk, outcome="overturned", reason="Not what it seemed.")  # double submit
    assert appeal.status == AppealStatus.OVERTURNED
    assert Enforcement.objects.filter(decision=decision, action="unban_account").count() == 1
    assert Enforcement.objects.filter(decision=decision, action="restore_content").count() == 1
    assert not BankHash.objects.filter(pk__in=entries).exists()
    assert Account.objects.get(external_id="acct-1").status == SubjectStatus.ACTIVE
    # The filed report stays filed; the outcome is recorded against it and on the subject.
    report = CyberTipReport.objects.get(decision=decision)
    assert report.status == CyberTipReport.Status.FILED
    assert appeal.outcome["reports_kept"] == [report.pk]
    assert AuditEvent.objects.filter(action="appeal.report_kept", object_id=str(report.pk)).exists()
    assert SubjectNote.objects.filter(account__external_id="acct-1", text__contains="stay filed").exists()
    # It counts against the decision in QA, and the case stays closed as overturned.
    qa = QAReview.objects.get(decision=decision)
    assert qa.agrees is False and qa.reviewed_at is not None
    decision.case.refresh_from_db()
    assert decision.case.closed_at is not None and decision.case.resolution == "overturned on appeal"
    notice = Enforcement.objects.get(action="appeal_outcome")
    assert notice.payload["appeal"]["outcome"] == "overturned"
    assert AuditEvent.objects.filter(action="appeal.overturned").count() == 1


def test_overturning_cancels_what_was_not_delivered_and_an_unsubmitted_report(users, settings):
    decision = decided(users["specialist"])
    appeal = appeal_of(decision)
    claim_appeal(users["senior"], appeal.pk)
    decide_appeal(users["senior"], appeal.pk, outcome="overturned", reason="Mistaken match.")
    assert not decision.enforcements.filter(action="ban_account", status=EnforcementStatus.PENDING).exists()
    assert CyberTipReport.objects.get(decision=decision).status == CyberTipReport.Status.CANCELLED


def test_the_outcome_notice_is_pulled_with_its_appeal(api, users):
    decision = decided(users["specialist"], ban_only().code)
    appeal = appeal_of(decision)
    claim_appeal(users["reviewer"], appeal.pk)
    decide_appeal(users["reviewer"], appeal.pk, outcome="upheld", reason="Stands.")
    rows = api.get("/api/v1/enforcements?status=all").json()["results"]
    notice = next(r for r in rows if r["action"] == "appeal_outcome")
    assert notice["appeal"]["id"] == appeal.pk and notice["appeal"]["outcome"] == "upheld"


# Pages -------------------------------------------------------------------------------------------

def test_the_appeal_page_shows_statement_decision_and_blurred_evidence(client, users):
    appeal = appeal_of(decided(users["specialist"], ban_only().code), text="My cousin used my phone.")
    client.force_login(users["reviewer"])
    page = client.get(reverse("cases:appeal", args=[appeal.pk])).content.decode()
    assert "My cousin used my phone." in page and "blurred.jpg" in page and "Statement of reasons" in page
    assert client.get(reverse("cases:appeals")).status_code == 200
    client.post(reverse("cases:appeal_next"))
    response = client.post(reverse("cases:appeal_decide", args=[appeal.pk]),
                           {"outcome": "overturned", "reason": "Cousin, believable."})
    assert response.status_code == 302
    assert Appeal.objects.get().status == AppealStatus.OVERTURNED


# Figures -----------------------------------------------------------------------------------------

def test_the_transparency_report_counts_appeals_and_automated_decisions(client, users):
    decision = decided(users["specialist"], ban_only().code)
    upheld = appeal_of(decision)
    other = appeal_of(decided(users["specialist"], ban_only().code, seed=2, account="acct-2"))
    for appeal, outcome in ((upheld, "upheld"), (other, "overturned")):
        claim_appeal(users["reviewer"], appeal.pk)
        decide_appeal(users["reviewer"], appeal.pk, outcome=outcome, reason="Looked again.")
    today = timezone.now().date()
    metrics.rollup_day(today)
    month = metrics.transparency(today.year)[today.month - 1]
    assert month["appeals_received"] == 2 and month["appeals_upheld"] == 1 and month["appeals_overturned"] == 1
    assert month["appeal_median_hours"] is not None
    assert month["decisions_human"] == 2 and month["decisions_automated"] == 0
    client.force_login(users["senior"])
    verify_2fa(client, users["senior"])
    assert "Appeals received" in client.get(reverse("cases:transparency")).content.decode()
    csv = client.get(reverse("cases:transparency_csv")).content.decode()
    assert "appeals_received" in csv.splitlines()[0]


def test_an_old_decision_is_past_the_appeal_window(api, users, settings):
    decision = decided(users["specialist"], ban_only().code)
    type(decision).objects.filter(pk=decision.pk).update(created_at=timezone.now() - timedelta(days=400))
    assert post(api, {"enforcement": ban_of(decision).pk, "statement": "x"}).status_code == 409


def test_an_overturn_works_while_the_subject_has_another_open_case(users):
    """The account was reported again after its ban: its new open case stays as it is, the decided one
    stays closed as overturned (a subject has one open case at a time)."""
    from cases import routing
    from cases.models import Case

    decision = decided(users["specialist"], ban_only().code)
    account = decision.case.account
    newer = Case.objects.create(account=account, queue=routing.get_queue(routing.USER_REPORTS))
    appeal = appeal_of(decision)
    claim_appeal(users["reviewer"], appeal.pk)
    appeal, _ = decide_appeal(users["reviewer"], appeal.pk, outcome="overturned", reason="Hacked account.")
    assert appeal.status == AppealStatus.OVERTURNED
    assert Account.objects.get(pk=account.pk).status == SubjectStatus.ACTIVE
    assert list(Case.objects.filter(account=account, closed_at__isnull=True)) == [newer]


def test_a_rule_rollback_leaves_the_case_closed_when_the_subject_has_another_open_case(users):
    from django.utils import timezone as tz

    from cases import routing
    from cases.actions.decisions import reverse_decision
    from cases.models import Case

    decision = decided(users["specialist"], ban_only().code)
    newer = Case.objects.create(account=decision.case.account, queue=routing.get_queue(routing.USER_REPORTS))
    result = reverse_decision(users["senior"], decision, tz.now(), why="rolled back")
    assert result["reopened"] == 0
    assert list(Case.objects.filter(account=decision.case.account, closed_at__isnull=True)) == [newer]
