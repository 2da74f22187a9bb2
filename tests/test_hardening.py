"""Findings of the outside security audit: each test failed before its fix."""

import io
import os
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from PIL import Image, ImageFilter, ImageStat

from cases.models import ViewingPreference
from cases.renditions import blurred
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa
from tests.factories import case_with_match
from tests.test_views import ROLES, ROUTES, login, route_url, world  # noqa: F401 - `world` is a fixture


def sharpness(img):
    edges = img.convert("L").filter(ImageFilter.FIND_EDGES)
    return ImageStat.Stat(edges.crop((2, 2, edges.width - 2, edges.height - 2))).var[0]


# A. A rendition without blur is a reveal.

@pytest.fixture
def no_blur(db, users, client):
    case, item = case_with_match()
    ViewingPreference.objects.create(user=users["specialist"], category="", blur="none", tone="greyscale")
    client.force_login(users["specialist"])
    return case, item


def test_no_blur_without_a_second_factor_serves_the_blurred_default(settings, client, users, no_blur):
    settings.REQUIRE_2FA_FOR_REVEAL = True
    case, item = no_blur
    response = client.get(f"/evidence/{item.pk}/blurred.jpg?case={case.pk}")
    assert response.status_code == 200
    assert response.content == blurred(item, ViewingPreference())  # the organisation's (built-in) default
    actions = list(AuditEvent.objects.filter(item=item, actor=users["specialist"]).values_list("action", flat=True))
    assert actions == [Event.EVIDENCE_VIEWED_BLURRED]


def test_no_blur_with_a_second_factor_is_audited_and_counted_as_a_reveal(settings, client, users, no_blur):
    from cases.wellness import exposure_today
    settings.REQUIRE_2FA_FOR_REVEAL = True
    case, item = no_blur
    verify_2fa(client, users["specialist"])
    response = client.get(f"/evidence/{item.pk}/blurred.jpg?case={case.pk}")
    assert response.status_code == 200
    shown = Image.open(io.BytesIO(response.content))
    assert sharpness(shown) > 3 * sharpness(Image.open(io.BytesIO(blurred(item, ViewingPreference()))))
    event = AuditEvent.objects.get(item=item, actor=users["specialist"])
    assert event.action == Event.EVIDENCE_REVEALED and event.details == {"rendition": "filtered-unblurred"}
    assert exposure_today(users["specialist"]).reveals == 1


def test_listing_thumbnails_stay_blurred_whatever_the_reviewers_own_filter(settings, client, users, no_blur):
    """Search results, subject pages and pivots show many pictures: their thumbnails take the
    organisation's blurred default even for a specialist whose own filter (with a second factor) has none."""
    settings.REQUIRE_2FA_FOR_REVEAL = True
    case, item = no_blur
    verify_2fa(client, users["specialist"])
    response = client.get(f"/evidence/{item.pk}/blurred.jpg?listing=1")
    assert response.status_code == 200 and response.content == blurred(item, ViewingPreference())
    actions = list(AuditEvent.objects.filter(item=item, actor=users["specialist"]).values_list("action", flat=True))
    assert actions == [Event.EVIDENCE_VIEWED_BLURRED]


def test_a_reviewer_never_gets_an_organisation_default_without_blur(client, users):
    case, item = case_with_match()
    ViewingPreference.objects.create(user=None, category="", blur="none", tone="sepia")
    client.force_login(users["reviewer"])
    response = client.get(f"/evidence/{item.pk}/blurred.jpg?case={case.pk}")
    assert response.content == blurred(item, ViewingPreference())
    assert not AuditEvent.objects.filter(action=Event.EVIDENCE_REVEALED).exists()


def test_a_filtered_unblurred_view_is_not_viewed_by_the_esp(client, users, no_blur):
    from cases.cybertip.filing import viewed_by_esp
    case, item = no_blur
    verify_2fa(client, users["specialist"])
    client.get(f"/evidence/{item.pk}/blurred.jpg?case={case.pk}")
    assert viewed_by_esp(item)[0] is False


# B and C. Content-Security-Policy on every page; no-store on every signed-in page.

POLICY = {"default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob:",
          "frame-ancestors 'none'", "form-action 'self'"}


@pytest.mark.parametrize("role", ROLES)
def test_every_route_answers_with_the_content_security_policy(users, world, role):  # noqa: F811
    from django.db import transaction
    from django.test import Client

    missing = []
    for name, (method, args, _) in ROUTES.items():
        with transaction.atomic():
            response = getattr(login(Client(), users, role), method)(route_url(name, args, world))
            directives = {d.strip() for d in response.get("Content-Security-Policy", "").split(";")}
            # A legal document is a PDF download under its own, stricter policy (cases.web.legal: sandbox).
            document = response.get("Content-Type") == "application/pdf" and directives == {"sandbox"}
            # The network view is an SVG image that loads nothing and runs nothing (cases.web.subjects).
            drawing = (response.get("Content-Type", "").startswith("image/svg+xml")
                       and directives == {"default-src 'none'", "sandbox"})
            if not (POLICY <= directives or document or drawing):
                missing.append((name, response.status_code, response.get("Content-Security-Policy")))
            transaction.set_rollback(True)
    assert not missing


@pytest.mark.parametrize("role, path", [
    ("reviewer", "/queue/"), ("reviewer", "case"), ("specialist", "report"), ("liaison", "legal"),
    ("liaison", "/legal/"),
])
def test_pages_with_case_data_are_not_stored(client, users, world, role, path):  # noqa: F811
    from django.urls import reverse
    path = {"case": reverse("cases:detail", args=[world["case"].pk]),
            "report": reverse("cases:report", args=[world["report"].pk]),
            "legal": reverse("cases:legal_request", args=[world["legal"].pk])}.get(path, path)
    response = login(client, users, role).get(path)
    assert response.status_code == 200, path
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]


def test_static_files_stay_cacheable(client, users, db):
    client.force_login(users["reviewer"])
    response = client.get("/static/console/console.css")
    assert "no-store" not in response.get("Cache-Control", "")


# D. DEMO never with production settings.

def test_check_deploy_fails_with_demo_on(settings):
    from django.core.checks import run_checks
    settings.DEMO = True
    assert "reviewconsole.E001" in {m.id for m in run_checks(include_deployment_checks=True)}
    settings.DEMO = False
    assert "reviewconsole.E001" not in {m.id for m in run_checks(include_deployment_checks=True)}


def test_load_demo_refuses_without_debug_or_testing(settings, db):
    settings.DEBUG = False
    settings.TESTING = False
    with pytest.raises(CommandError, match="DEBUG or TESTING"):
        call_command("load_demo", verbosity=0)
    from django.contrib.auth import get_user_model
    assert not get_user_model().objects.exists()


# E. Login throttling counts the real client, not what it says in X-Forwarded-For.

def fail_logins(client, count, forwarded):
    for n in range(count):
        client.post("/login/", {"username": "rita", "password": "wrong"},
                    HTTP_X_FORWARDED_FOR=forwarded(n), REMOTE_ADDR="203.0.113.9")


def locked(client, forwarded):
    response = client.post("/login/", {"username": "rita", "password": "pw-rita"},
                           HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="203.0.113.9")
    return response.status_code == 429 or "locked" in response.content.decode().lower()


def test_rotating_x_forwarded_for_does_not_escape_the_lockout(settings, client, users):
    settings.TRUSTED_PROXY_COUNT = 0
    fail_logins(client, settings.AXES_FAILURE_LIMIT, lambda n: f"198.51.100.{n}")
    assert locked(client, "198.51.100.250")


def test_behind_a_proxy_only_the_address_it_appended_counts(settings, client, users):
    settings.TRUSTED_PROXY_COUNT = 1
    # The client prepends what it likes; our proxy appends the address it saw (192.0.2.7).
    fail_logins(client, settings.AXES_FAILURE_LIMIT, lambda n: f"198.51.100.{n}, 192.0.2.7")
    assert locked(client, "198.51.100.250, 192.0.2.7")
    assert not locked(client, "192.0.2.8")  # another client behind the same proxy is not locked out


# B (browser). No CSP violation on the case page while revealing.

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"), reason="no Chromium")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_no_csp_violation_on_the_case_page_while_revealing(live_server, users, monkeypatch):
    from tests.test_browser import sign_in, verify_second_factor
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    case_with_match(seed=31, account="acct-31")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    headless=True, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            messages = []
            page.on("console", lambda message: messages.append(message.text))  # noqa: PLW0108
            sign_in(page, live_server, "sam", "pw-sam")
            verify_second_factor(page, live_server, users["specialist"])
            page.keyboard.press("n")  # claim the most urgent case
            page.wait_for_url(f"{live_server.url}/cases/*/")
            page.wait_for_load_state("networkidle")
            page.keyboard.press("v")
            page.wait_for_selector("dialog#reveal-warning[open]")
            page.keyboard.press("Enter")
            page.wait_for_selector(".thumb.revealed")
            page.wait_for_load_state("networkidle")
            assert page.evaluate("document.querySelector('.thumb.revealed img').src").startswith("blob:")
            assert page.evaluate("document.querySelector('.thumb.revealed img').naturalWidth") > 0
        finally:
            browser.close()
    violations = [m for m in messages if "Content Security Policy" in m or "Content-Security-Policy" in m]
    assert not violations, violations
