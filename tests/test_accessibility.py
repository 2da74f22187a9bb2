"""Accessibility in a real headless Chromium: axe-core on each role's pages, visible keyboard focus,
and the revealed image's "Hide now" and "Larger" controls.

axe-core's script ships inside the axe-playwright-python wheel and is injected into the page under
test: nothing is fetched at run time.
"""
# ruff: noqa: F811 -- the tests take the `browser` fixture imported from test_browser by name

import re

import pytest

from tests.test_browser import (  # the Chromium fixture and sign-in helpers
    SHOTS,
    browser,  # noqa: F401 -- a fixture
    sign_in,
    sign_in_with_second_factor,
    verify_second_factor,
)

axe_sync = pytest.importorskip("axe_playwright_python.sync_playwright")
expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

BLOCKING = ("serious", "critical")


def axe_problems(page):
    """Every axe violation of impact serious or critical on the page, in words a person can act on."""
    results = axe_sync.Axe().run(page)
    lines = []
    for violation in results.response["violations"]:
        if violation["impact"] not in BLOCKING:
            continue
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']} <{violation['helpUrl']}>")
        for node in violation["nodes"][:8]:
            lines.append(f"    {', '.join(map(str, node['target']))}: {node['html'][:160]}")
            for part in node.get("any", []) + node.get("all", []) + node.get("none", []):
                lines.append(f"        - {part['message']}")
        if len(violation["nodes"]) > 8:
            lines.append(f"    … and {len(violation['nodes']) - 8} more")
    return lines


def check(page, name):
    """Screenshot the page (var/screenshots/a11y-<name>.png), then fail on serious or critical violations."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SHOTS / f"a11y-{name}.png"), full_page=True)
    problems = axe_problems(page)
    assert not problems, f"axe found serious or critical problems on {name} ({page.url}):\n" + "\n".join(problems)


UNNAMED_DIALOGS = """() => Array.from(document.querySelectorAll("dialog")).filter((d) => {
    const by = d.getAttribute("aria-labelledby"), label = (d.getAttribute("aria-label") || "").trim();
    return !label && !(by && by.split(/\\s+/).some((id) => (document.getElementById(id)?.textContent || "").trim()));
}).map((d) => d.id)"""


def new_page(browser, width=1400, height=900):
    return browser.new_context(viewport={"width": width, "height": height}).new_page()


def account_risk_on(case):
    """An account-risk panel (with its meters) on the case page, as the analysis job would store it."""
    from detection.detectors import risk
    from detection.jobs.analysis import account_facts, build_signal

    assessment = risk.account_features(account_facts(case.account))
    signal = build_signal("account", case.account, assessment, 0.0)
    signal.case = case
    signal.save()


def test_the_login_page_has_no_serious_accessibility_problems(browser, live_server):
    page = new_page(browser)
    page.goto(f"{live_server.url}/login/")
    check(page, "login")


def test_a_reviewers_queue_and_claimed_case_have_no_serious_accessibility_problems(browser, live_server, users):
    from cases.actions.claims import claim_case
    from tests.factories import case_with_match

    case, _ = case_with_match(seed=31, account="acct-31")
    case_with_match(seed=32, account="acct-32")
    account_risk_on(case)
    claim_case(users["reviewer"], case.pk)
    page = new_page(browser)
    sign_in(page, live_server, "rita", "pw-rita")
    check(page, "queue")
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    assert page.is_visible(".actionbar")  # the page of a case the reviewer holds, with its decisions
    check(page, "case")
    # Every meter and every dialog has a name (axe checks only an explicit role="meter" or role="dialog").
    meters = page.locator("meter")
    assert meters.count() >= 2
    for n in range(meters.count()):
        expect(meters.nth(n)).to_have_accessible_name(re.compile(r"\w"))
    assert page.evaluate(UNNAMED_DIALOGS) == []
    page.keyboard.press("?")  # the help overlay is a dialog with a name
    page.wait_for_selector("dialog#help[open]")
    expect(page.locator("dialog#help")).to_have_accessible_name("Keyboard")
    check(page, "case-help")
    page.keyboard.press("Escape")
    page.keyboard.press("e")
    page.wait_for_selector("dialog#act-escalate[open]")
    check(page, "case-escalate")


def test_a_specialists_preferences_and_reports_have_no_serious_accessibility_problems(browser, live_server, users):
    page = new_page(browser)
    sign_in(page, live_server, "sam", "pw-sam")
    page.goto(f"{live_server.url}/account/viewing/")
    check(page, "viewing-preferences")
    unlabelled = page.evaluate("""() => Array.from(document.querySelectorAll("form select, form input"))
        .filter((el) => el.type !== "hidden")
        .filter((el) => !el.labels.length && !el.ariaLabel && !el.getAttribute("aria-labelledby"))
        .map((el) => el.name)""")
    assert unlabelled == [], f"controls without a label: {unlabelled}"
    verify_second_factor(page, live_server, users["specialist"])
    page.goto(f"{live_server.url}/reports/")
    check(page, "reports")


def test_a_seniors_metrics_have_no_serious_accessibility_problems(browser, live_server, users):
    from cases import metrics
    from tests.factories import case_with_match

    case_with_match(seed=33, account="acct-33")
    metrics.rollup_recent()
    page = new_page(browser)
    sign_in(page, live_server, "sena", "pw-sena")
    verify_second_factor(page, live_server, users["senior"])  # metrics need the second factor
    page.goto(f"{live_server.url}/metrics/")
    check(page, "metrics")


def test_the_legal_queue_and_the_portal_have_no_serious_accessibility_problems(browser, live_server, users):
    from datetime import timedelta

    from django.utils import timezone

    from cases.actions import legal
    from tests.conftest import PDF

    for kind, reference in (("emergency", "EM-1"), ("subpoena", "SUB-1")):
        legal.submit_request(users["officer"], kind=kind, reference=reference,
                             identifiers=[{"type": "account", "id": "acct-1"}], description="Please.",
                             due_at=timezone.now() + timedelta(days=10), document=PDF, document_name="p.pdf")
    liaison = new_page(browser)
    sign_in_with_second_factor(liaison, live_server, users["liaison"], "pw-lia", "/legal/")
    check(liaison, "legal-queue")
    officer = new_page(browser)
    sign_in_with_second_factor(officer, live_server, users["officer"], "pw-olive", "/le/")
    check(officer, "portal")


def test_keyboard_focus_is_visible(browser, live_server, users):
    page = new_page(browser)
    sign_in(page, live_server, "rita", "pw-rita")
    seen = []
    for _ in range(15):  # through the top bar and on into the page, up to "Claim next case"
        page.keyboard.press("Tab")
        seen.append(page.evaluate("""() => {
            const el = document.activeElement, style = getComputedStyle(el);
            return {tag: el.tagName, text: el.textContent.trim().slice(0, 30), inMain: !!el.closest("main"),
                    outline: style.outlineStyle, width: style.outlineWidth, colour: style.outlineColor};
        }"""))
        if seen[-1]["inMain"]:
            break
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "a11y-focus.png"))
    assert seen[0]["tag"] in ("A", "BUTTON") and seen[-1]["inMain"], seen
    assert all(f["outline"] not in ("none", "") and f["width"] != "0px" for f in seen), seen
    # The ring is 3:1 or better on its background: light on the dark top bar, dark teal on the page.
    assert seen[0]["colour"] == "rgb(156, 195, 199)" and seen[-1]["colour"] == "rgb(61, 122, 128)", seen


def test_hide_now_and_larger_on_a_revealed_image(browser, live_server, users):
    from cases.actions.claims import claim_case
    from reviewconsole.audit.models import AuditEvent
    from tests.factories import case_with_match

    case, _ = case_with_match(seed=34, account="acct-34")
    claim_case(users["specialist"], case.pk)
    page = new_page(browser)
    reveals = []
    page.on("response", lambda r: reveals.append(r) if "/reveal/" in r.url else None)
    sign_in(page, live_server, "sam", "pw-sam")
    verify_second_factor(page, live_server, users["specialist"])
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    page.wait_for_load_state("networkidle")
    img = page.locator(".evidence-card .thumb img").first
    blurred = img.get_attribute("src")
    assert not page.is_visible("[data-hide]") and not page.is_visible("[data-larger]")

    page.keyboard.press("v")
    page.wait_for_selector("dialog#reveal-warning[open]")
    page.keyboard.press("Enter")
    page.wait_for_selector(".thumb.revealed")
    assert img.get_attribute("src").startswith("blob:")
    assert page.is_visible("[data-hide]") and page.is_visible("[data-larger]")
    check(page, "case-revealed")
    page.keyboard.press("h")  # hide now: the blurred rendition is back at once
    page.wait_for_selector(".thumb:not(.revealed)")
    assert img.get_attribute("src") == blurred
    assert not page.is_visible("[data-hide]") and page.is_enabled("[data-reveal]")

    page.keyboard.press("v")  # warned once this session: no second warning
    page.wait_for_selector(".thumb.revealed")
    page.focus("#subject-note")
    page.keyboard.type("h")  # typing a note: an "h" is a letter, not "hide"
    assert page.input_value("#subject-note") == "h" and page.is_visible(".thumb.revealed")
    page.click("[data-larger]")
    assert page.get_attribute("[data-larger]", "aria-pressed") == "true"
    page.wait_for_function("() => document.querySelector('.thumb img').getBoundingClientRect().width > 320")
    width = img.bounding_box()["width"]
    natural = page.evaluate("() => document.querySelector('.thumb img').naturalWidth")
    assert 320 < width <= 900 and width <= natural, (width, natural)
    page.screenshot(path=str(SHOTS / "a11y-case-larger.png"), full_page=True)
    page.click("[data-hide]")
    page.wait_for_selector(".thumb:not(.revealed)")
    assert img.get_attribute("src") == blurred and img.bounding_box()["width"] <= 320

    # Two reveals, two POSTs, two audit rows; Larger asked the server for nothing.
    assert [r.request.method for r in reveals] == ["POST", "POST"]
    assert all(r.headers["cache-control"].startswith("no-store") for r in reveals)
    assert AuditEvent.objects.filter(action="evidence.revealed", actor=users["specialist"]).count() == 2
