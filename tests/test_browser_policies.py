"""Policy flows in a real headless Chromium: a possible child victim, and a case under a legal request."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.test_browser import SHOTS, browser, playwright, sign_in  # noqa: F401  (browser is a fixture)

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_a_possible_child_victim_gets_the_victim_policy_by_keyboard(browser, live_server, users):  # noqa: F811
    from cases.models import CyberTipReport, Enforcement
    from tests.test_policies import teen_reported_by_a_flagged_adult

    teen_case, adult_case = teen_reported_by_a_flagged_adult()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, live_server, "sam", "pw-sam")
    page.keyboard.press("n")  # the child's case comes first: it was raised in priority
    page.wait_for_url(f"{live_server.url}/cases/{teen_case.pk}/")
    banner = page.locator("section.banner-victim")
    assert "may belong to a child victim" in banner.inner_text()
    assert banner.locator(f"a[href='/cases/{adult_case.pk}/']").count() == 1
    page.screenshot(path=str(SHOTS / "child-victim.png"), full_page=True)

    page.keyboard.press("1")  # the offender policy: its dialog says no, and cannot be submitted
    page.wait_for_selector("dialog#policy-csam-known[open]")
    assert "offender policies do not apply" in page.inner_text("dialog#policy-csam-known")
    assert page.locator("dialog#policy-csam-known button[type=submit]").count() == 0
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog#policy-csam-known", state="hidden")
    page.wait_for_function("!document.querySelector('dialog[open]')")
    for _ in range(3):  # a loaded machine can drop the key while the closing dialog hands back focus
        page.keyboard.press("5")  # "A child is the victim"
        try:
            page.wait_for_selector("dialog#policy-minor-victim[open]", timeout=5000)
            break
        except playwright.TimeoutError:
            continue
    page.wait_for_selector("dialog#policy-minor-victim[open]", timeout=1000)
    page.screenshot(path=str(SHOTS / "victim-dialog.png"))
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: f"/cases/{teen_case.pk}/" not in url)
    teen_case.refresh_from_db()
    assert teen_case.closed_at and teen_case.account.status == "active"
    assert set(Enforcement.objects.filter(decision__case=teen_case).values_list("action", flat=True)) == {
        "protect_account"}
    assert CyberTipReport.objects.filter(case=teen_case).exists()


def test_a_case_under_a_legal_request_says_so(browser, live_server, users):  # noqa: F811
    from cases.actions import legal
    from tests.factories import case_with_match
    from tests.test_legal import PDF

    case, _ = case_with_match(seed=31, account="acct-31")
    request_obj = legal.submit_request(users["officer"], kind="preservation", reference="P-9",
                                       identifiers=[{"type": "account", "id": "acct-31"}], description="Keep.",
                                       due_at=timezone.now() + timedelta(days=3), document=PDF, document_name="p.pdf")
    legal.verify(users["liaison"], request_obj, note="confirmed by phone")
    legal.link_subjects(users["liaison"], request_obj)
    legal.place_holds(users["liaison"], request_obj)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    sign_in(page, live_server, "rita", "pw-rita")
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    banner = page.locator("section.banner-legal")
    text = banner.inner_text()
    assert "Law enforcement is involved" in text and "Metro Police" in text and "preservation hold" in text
    page.screenshot(path=str(SHOTS / "legal-banner.png"), full_page=True)
