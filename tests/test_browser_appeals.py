"""An appeal in a real headless Chromium: the platform sends a user's appeal of a child-exploitation ban by
the API, a senior who took no part in the decision reviews it next to the blurred evidence and overturns it;
the ban is reversed through the outbox and the filed report stays filed."""

import json

import pytest

from tests.test_accessibility import check
from tests.test_browser import SHOTS, browser, playwright, verify_second_factor  # noqa: F401
from tests.test_browser_investigations import sign_in

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_an_appeal_from_the_api_to_a_seniors_overturn(browser, live_server, users, settings):  # noqa: F811
    import requests

    from cases.actions.claims import claim_case
    from cases.actions.decisions import decide
    from cases.models import ApiToken, Appeal, CyberTipReport, Enforcement, EnforcementStatus
    from tests.factories import case_with_match

    settings.UNDO_SECONDS = 0
    case, item = case_with_match(seed=71, account="acct-appeal")
    case = claim_case(users["specialist"], case.pk)
    decision, _ = decide(users["specialist"], case.pk, policy="csam-known", version=case.version)
    decision.enforcements.update(status=EnforcementStatus.DELIVERED)
    CyberTipReport.objects.filter(decision=decision).update(status=CyberTipReport.Status.FILED,
                                                            ncmec_report_id="9001")
    _, key = ApiToken.issue("platform")
    ban = decision.enforcements.get(action="ban_account")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    response = requests.post(f"{live_server.url}/api/v1/appeals", headers=headers,
                             data=json.dumps({"enforcement": ban.pk, "statement": "That photo is of my dog. "
                                              "Please look again."}),
                             timeout=10)
    assert response.status_code == 201, response.text
    appeal_id = response.json()["id"]

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    sign_in(page, live_server, "sena", "/queue/")
    verify_second_factor(page, live_server, users["senior"])
    page.goto(f"{live_server.url}/appeals/")
    check(page, "appeals-queue")
    page.click("text=Review next appeal")
    page.wait_for_url(f"{live_server.url}/appeals/{appeal_id}/")
    assert "That photo is of my dog." in page.inner_text("main")
    assert page.locator(f"img[src*='/evidence/{item.pk}/blurred.jpg']").count() == 1
    check(page, "appeal")
    page.check("input[value=overturned]")
    page.fill("#appeal-reason", "The match was to a different picture; the dog photo breaks no rule.")
    page.click("text=Record the outcome")
    page.wait_for_url(f"{live_server.url}/appeals/{appeal_id}/")
    assert "Overturned" in page.inner_text("h1")
    check(page, "appeal-overturned")

    assert Appeal.objects.get().status == "overturned"
    assert Enforcement.objects.filter(decision=decision, action="unban_account").exists()
    assert Enforcement.objects.filter(decision=decision, action="appeal_outcome").exists()
    assert CyberTipReport.objects.get(decision=decision).status == CyberTipReport.Status.FILED
    assert SHOTS.exists()
