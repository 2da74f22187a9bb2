"""Claims end when the reviewer stops looking: on undo, sign-out and session expiry; seniors take over."""

import pytest

from cases.actions import ActionError
from cases.actions.claims import claim_case, claim_next_case, take_over
from cases.actions.decisions import decide, undo
from cases.models import Case, CaseStatus
from reviewconsole.audit.models import AuditEvent
from tests.conftest import make_user, verify_2fa
from tests.factories import case_with_match

pytestmark = pytest.mark.django_db


def two_cases():
    first, _ = case_with_match(seed=1, account="acct-1")
    second, _ = case_with_match(seed=2, account="acct-2")
    return first, second


def held_by(user):
    return set(Case.objects.filter(assigned_to=user, status=CaseStatus.CLAIMED).values_list("pk", flat=True))


def test_undo_gives_back_the_next_case_the_decision_opened(client, users, settings):
    settings.UNDO_SECONDS = 60
    first, second = two_cases()
    client.force_login(users["specialist"])
    claimed = claim_case(users["specialist"], first.pk)
    client.post(f"/cases/{first.pk}/decide/", {"policy": "csam-known", "version": claimed.version})
    assert held_by(users["specialist"]) == {second.pk}  # the page moved on to the next case
    decision = Case.objects.get(pk=first.pk).decisions.get()
    client.post(f"/decisions/{decision.pk}/undo/")
    assert held_by(users["specialist"]) == {first.pk}  # back on the undone case, and only that
    assert Case.objects.get(pk=second.pk).status == CaseStatus.OPEN
    assert AuditEvent.objects.filter(action="case.released", case=second, details__why="decision undone").exists()


def test_signing_out_gives_back_every_claim(client, users):
    first, _ = two_cases()
    claim_case(users["reviewer"], first.pk)
    client.force_login(users["reviewer"])
    response = client.post("/logout/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert held_by(users["reviewer"]) == set() and Case.objects.get(pk=first.pk).status == CaseStatus.OPEN
    assert AuditEvent.objects.get(action="case.released", case=first).details == {"why": "signed out"}
    assert client.get("/logout/").status_code == 405  # a link cannot sign anyone out


def test_an_expired_session_gives_back_its_claims(client, users, settings):
    first, _ = two_cases()
    claim_case(users["reviewer"], first.pk)
    client.force_login(users["reviewer"])
    client.get("/queue/")
    session = client.session
    session["policy_seen"] = session["policy_seen"] - settings.SESSION_IDLE_SECONDS - 5
    session.save()
    response = client.get("/queue/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert held_by(users["reviewer"]) == set()
    assert AuditEvent.objects.get(action="case.released", case=first).details == {"why": "session expired"}


def test_a_senior_takes_over_or_reassigns_a_claimed_case(client, users):
    first, _ = two_cases()
    claim_case(users["reviewer"], first.pk)
    client.force_login(users["senior"])
    verify_2fa(client, users["senior"])
    page = client.get(f"/cases/{first.pk}/").content.decode()
    assert "Take over" in page and "Reassign" in page
    client.post(f"/cases/{first.pk}/take-over/")
    case = Case.objects.get(pk=first.pk)
    assert case.assigned_to == users["senior"] and case.status == CaseStatus.CLAIMED
    event = AuditEvent.objects.get(action="case.taken_over")
    assert event.details == {"from": "rita", "to": "sena"}
    client.post(f"/cases/{first.pk}/take-over/", {"reassign": "1", "to": users["specialist"].pk})
    assert Case.objects.get(pk=first.pk).assigned_to == users["specialist"]
    assert AuditEvent.objects.get(action="case.reassigned").details == {"from": "sena", "to": "sam"}
    # The reviewer who lost the claim can no longer decide on the version they saw.
    with pytest.raises(ActionError):
        decide(users["reviewer"], first.pk, policy="benign", version=case.version)


def test_only_seniors_take_over_and_only_to_someone_who_reviews_the_queue(client, users):
    first, _ = two_cases()
    claim_case(users["reviewer"], first.pk)
    with pytest.raises(ActionError, match="senior"):
        take_over(users["specialist"], first.pk)
    client.force_login(users["specialist"])
    assert client.post(f"/cases/{first.pk}/take-over/").status_code == 403
    with pytest.raises(ActionError, match="does not review"):
        take_over(users["senior"], first.pk, to_user=make_user("outsider"))
    assert Case.objects.get(pk=first.pk).assigned_to == users["reviewer"]


def test_a_case_waiting_for_a_second_reviewer_is_not_taken_over(users):
    first, _ = two_cases()
    claimed = claim_case(users["reviewer"], first.pk)
    decision, _ = decide(users["reviewer"], first.pk, policy="benign", version=claimed.version)
    assert decision.approval == "pending"
    with pytest.raises(ActionError, match="second reviewer"):
        take_over(users["senior"], first.pk)


def test_undo_outside_the_page_also_releases(users, settings):
    settings.UNDO_SECONDS = 60
    first, second = two_cases()
    claimed = claim_case(users["specialist"], first.pk)
    decision, _ = decide(users["specialist"], first.pk, policy="csam-known", version=claimed.version)
    assert claim_next_case(users["specialist"]).pk == second.pk
    undo(users["specialist"], decision.pk)
    assert held_by(users["specialist"]) == {first.pk}
