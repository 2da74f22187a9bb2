"""Automation rules in a real headless Chromium: write a rule, backtest it, turn it on, watch it
decide, preview and roll back — with the second factor, by keyboard, and without serious axe findings."""

import pytest

from tests.test_accessibility import check
from tests.test_browser import SHOTS, browser, playwright, sign_in, verify_second_factor  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_a_senior_writes_backtests_enables_and_rolls_back_a_rule(browser, live_server, users, settings):  # noqa: F811
    from cases.actions.rules import apply_rules
    from cases.models import Decision, Rule
    from detection.models import Bank
    from tests.factories import case_with_match

    settings.UNDO_SECONDS = 0
    case, _ = case_with_match(seed=41, account="acct-41")
    Bank.objects.filter(name="known").update(trust="verified")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    sign_in(page, live_server, "sena", "pw-sena")
    verify_second_factor(page, live_server, users["senior"])

    page.goto(f"{live_server.url}/rules/new/")
    page.fill("#code", "verified-known")
    page.fill("#title", "Verified known material")
    page.select_option("#field-0", "signal.kind")
    page.select_option("#op-0", "eq")
    page.fill("#value-0", "hash_match")
    page.select_option("#field-1", "bank.trust")
    page.select_option("#op-1", "eq")
    page.fill("#value-1", "verified")
    page.select_option("#policy", "csam-known")
    page.select_option("#mode", "shadow")
    check(page, "rule-edit")
    page.locator("form.rule-form button").click()
    rule = Rule.objects.get()
    page.wait_for_url(f"{live_server.url}/rules/{rule.pk}/")

    # Turning it on before a backtest is refused, in words.
    page.goto(f"{live_server.url}/rules/{rule.pk}/edit/")
    page.select_option("#mode", "on")
    page.locator("form.rule-form button").click()
    assert "Backtest these conditions" in page.inner_text(".messages")
    assert Rule.objects.get().mode == "shadow"

    page.goto(f"{live_server.url}/rules/{rule.pk}/")
    page.focus("#days")
    page.keyboard.press("Enter")  # submits the backtest form
    page.wait_for_selector("text=cases it would act on")
    assert "1</strong> cases it would act on" in page.content()
    check(page, "rule-backtest")

    page.goto(f"{live_server.url}/rules/{rule.pk}/edit/")
    page.select_option("#mode", "on")
    page.fill("#note", "backtested: one case, as expected")
    page.locator("form.rule-form button").click()
    page.wait_for_url(f"{live_server.url}/rules/{rule.pk}/")
    assert Rule.objects.get().mode == "on"

    apply_rules([case.pk])
    decision = Decision.objects.get()
    page.goto(f"{live_server.url}/rules/{rule.pk}/?preview=1")
    assert "1</strong> decisions would be rolled back" in page.content()
    page.fill("#rollback-note", "the list entry was wrong")
    page.check("input[name=confirm]")
    page.screenshot(path=str(SHOTS / "rule-rollback-preview.png"), full_page=True)
    page.locator("form[action$='/rollback/'] button").click()
    page.wait_for_selector("text=Rolled back 1 decisions")
    decision.refresh_from_db()
    assert decision.rolled_back_at is not None
    page.goto(f"{live_server.url}/rules/")
    check(page, "rules")
