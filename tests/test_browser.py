"""Reviewer flow in a real headless Chromium: sign in, claim by key, reveal, ban by key."""

import io
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageFilter, ImageStat

from tests.conftest import ROOT
from tests.factories import case_with_match

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "var" / "screenshots"

if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
    pytest.skip(f"browser tests skipped: no Chromium at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls in these tests are safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


def image_of(data):
    return Image.open(io.BytesIO(data))


def sharpness(img):
    edges = img.convert("L").filter(ImageFilter.FIND_EDGES)
    return ImageStat.Stat(edges.crop((2, 2, edges.width - 2, edges.height - 2))).var[0]  # PIL leaves borders


def sign_in(page, live_server, username, password):
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/queue/")


def verify_second_factor(page, live_server, user):
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    page.goto(f"{live_server.url}/account/verify/?next=/queue/")
    page.fill("input[name=token]", str(totp(device.bin_key)).zfill(6))
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/queue/")


def test_claim_reveal_and_confirm_known_material_by_keyboard(browser, live_server, users):
    from cases.models import Case, CaseStatus
    from reviewconsole.audit.models import AuditEvent

    case, item = case_with_match(seed=21, account="acct-21")
    case_with_match(seed=22, account="acct-22")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    responses = []
    page.on("response", lambda response: responses.append(response))  # noqa: PLW0108 (Playwright wraps the callable)
    sign_in(page, live_server, "sam", "pw-sam")
    verify_second_factor(page, live_server, users["specialist"])
    page.screenshot(path=str(SHOTS / "queue.png"), full_page=True)

    page.keyboard.press("n")  # claim the most urgent case
    page.wait_for_url(f"{live_server.url}/cases/*/")
    claimed = int(page.url.rstrip("/").split("/")[-1])
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SHOTS / "case.png"), full_page=True)

    # Before any reveal, every image the page loaded is the greyscale blurred rendition.
    images = [r for r in responses if r.request.resource_type == "image"]
    assert images and all("/blurred.jpg" in r.url for r in images)
    before = [image_of(r.body()) for r in images]
    assert all(img.mode == "L" for img in before)  # greyscale derivatives, decoded from what was served
    assert not AuditEvent.objects.filter(action="evidence.revealed").exists()

    page.keyboard.press("v")  # reveal the selected item: the first time, a warning asks first
    page.wait_for_selector("dialog#reveal-warning[open]")
    assert not [r for r in responses if "/reveal/" in r.url]
    page.keyboard.press("Enter")
    page.wait_for_selector(".thumb.revealed")
    revealed = [r for r in responses if "/reveal/" in r.url]
    assert len(revealed) == 1 and revealed[0].status == 200
    # Pixel proof: every image served before the reveal was far blurrier than the unblurred rendition.
    from cases.renditions import revealed as unblurred
    shown = Case.objects.get(pk=claimed).signals.exclude(item=None).first().item
    full = sharpness(image_of(unblurred(shown)))
    assert all(sharpness(img) * 5 < full for img in before), (full, [sharpness(i) for i in before])
    assert revealed[0].headers["cache-control"].startswith("no-store")
    assert AuditEvent.objects.filter(action="evidence.revealed", actor=users["specialist"]).count() == 1
    page.screenshot(path=str(SHOTS / "case-revealed.png"), full_page=True)

    page.keyboard.press("1")  # the first policy, known material: its dialog says what it does
    page.wait_for_selector("dialog#policy-csam-known[open]")
    assert "drafts a CyberTipline report" in page.inner_text("dialog#policy-csam-known")
    page.screenshot(path=str(SHOTS / "policy-dialog.png"))
    page.keyboard.press("Enter")  # confirm
    page.wait_for_url(lambda url: url.endswith("/") and f"/cases/{claimed}/" not in url)

    from cases.models import CyberTipReport, Enforcement
    done = Case.objects.get(pk=claimed)
    assert done.status == CaseStatus.CLOSED and done.resolution == "report"
    assert done.account.status == "banned"
    assert {e.action for e in Enforcement.objects.filter(decision__case=done)} == {"ban_account", "remove_content"}
    report = CyberTipReport.objects.get(case=done)
    assert report.status == "awaiting_approval" and report.files.get().item.holds.exists()
    assert "Recorded: Known child sexual abuse material" in page.content()
    # ...and the next case is already open and claimed.
    assert Case.objects.filter(status=CaseStatus.CLAIMED, assigned_to=users["specialist"]).count() == 1


def test_help_overlay_opens_with_question_mark(browser, live_server, users):
    page = browser.new_page()
    sign_in(page, live_server, "rita", "pw-rita")
    page.keyboard.press("?")
    page.wait_for_selector("dialog#help[open]")
    page.keyboard.press("Escape")
    assert not page.is_visible("dialog#help")


def test_report_to_ncmec_by_keyboard_then_review_the_report(browser, live_server, users):
    from cases.models import CyberTipReport

    case, item = case_with_match(seed=23, account="acct-23")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, live_server, "sam", "pw-sam")
    page.keyboard.press("n")
    page.wait_for_url(f"{live_server.url}/cases/{case.pk}/")
    page.keyboard.press("1")
    page.wait_for_selector("dialog#policy-csam-known[open]")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/queue/")
    report = CyberTipReport.objects.get(case=case)
    assert report.status == "awaiting_approval" and report.files.count() == 1
    page.goto(f"{live_server.url}/reports/{report.pk}/")
    page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
    assert "Awaiting senior approval" in page.content()
    assert page.is_visible("select[name=incident_type]")


def test_metrics_dashboard_draws_charts_and_downloads_the_transparency_csv(browser, live_server, users):
    from cases import metrics
    from tests.factories import triage_all

    case_with_match(seed=23, account="acct-23")
    from detection import intake
    intake.submit_report(reporter="u-1", reason="grooming", account_id="acct-24")
    triage_all()
    metrics.rollup_recent()
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    requests = []
    page.on("request", lambda request: requests.append(request.url))  # noqa: PLW0108
    sign_in(page, live_server, "sena", "pw-sena")
    verify_second_factor(page, live_server, users["senior"])  # metrics need the second factor
    page.click("nav >> text=Metrics")
    page.wait_for_url(f"{live_server.url}/metrics/")
    assert page.locator("figure.chart > svg").count() == 14
    page.click("text=By week")
    assert "period=week" in page.url
    assert page.locator("figure.chart", has_text="How cases were found").locator("> svg rect").count() == 2
    page.screenshot(path=str(SHOTS / "metrics.png"), full_page=True)
    page.click("text=Transparency report")
    with page.expect_download() as download:
        page.click("text=Download CSV")
    assert download.value.suggested_filename.startswith("transparency-")
    assert all(url.startswith(live_server.url) for url in requests), "the metrics pages fetch nothing from outside"


def sign_in_with_second_factor(page, live_server, user, password, lands_on):
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/account/verify/**")
    page.fill("input[name=token]", str(totp(device.bin_key)).zfill(6))
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}{lands_on}")


def test_an_officer_files_a_request_and_reads_the_liaison_answer(browser, live_server, users):
    from cases.models import LegalRequest
    from tests.conftest import PDF

    officer = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in_with_second_factor(officer, live_server, users["officer"], "pw-olive", "/le/")
    assert officer.locator("nav").inner_text().count("Queue") == 0  # the console is not theirs to see
    officer.click("text=File a new request")
    officer.select_option("select[name=kind]", "emergency")
    officer.fill("input[name=reference]", "2026-EM-7")
    officer.fill("textarea[name=identifiers]", "account: acct-1")
    officer.fill("textarea[name=description]", "A child is at risk; we need the account's last login IP.")
    officer.fill("input[name=due_date]", "2099-01-01")
    officer.set_input_files("input[name=document]", files=[
        {"name": "emergency.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    officer.click("button[type=submit]")
    officer.wait_for_url(f"{live_server.url}/le/*/")
    request_obj = LegalRequest.objects.get(reference="2026-EM-7")
    officer.screenshot(path=str(SHOTS / "portal-request.png"), full_page=True)

    liaison = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in_with_second_factor(liaison, live_server, users["liaison"], "pw-lia", "/legal/")
    assert "2026-EM-7" in liaison.locator("table.cases tbody tr").first.inner_text()  # emergencies first
    liaison.click("text=2026-EM-7")
    liaison.fill("input[name=note]", "Confirmed by call-back to the duty sergeant")
    liaison.click("button:has-text('Verified')")
    liaison.wait_for_selector("textarea[name=text]")
    liaison.fill("textarea[name=text]", "Last login: 203.0.113.7 at 09:14 UTC.")
    liaison.click("text=Send response")
    liaison.screenshot(path=str(SHOTS / "legal-request.png"), full_page=True)
    request_obj.refresh_from_db()
    assert request_obj.status == "responded"

    officer.reload()
    assert "203.0.113.7" in officer.content()
    assert officer.goto(f"{live_server.url}/queue/").url.endswith("/le/")
