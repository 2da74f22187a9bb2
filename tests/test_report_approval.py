""""Approve and file" on a CyberTipline report page saves the details shown beside it, in one transaction.

A senior's edits (incident type, annotations, escalation, each file's industry classification,
annotations and availability) are saved and the report approved together, or neither happens. Files
left without an industry classification are named on the page, and approving them unclassified takes
an explicit confirmation, which the approval's audit row records.
"""

import os
import re
import shutil
from pathlib import Path
from unittest import mock

import pytest

from cases.actions import ActionError
from cases.actions import cybertip as cybertip_actions
from cases.actions.claims import claim_case
from cases.actions.cybertip import UnclassifiedFiles, save_and_approve
from cases.actions.decisions import decide
from cases.models import CyberTipFile, CyberTipReport
from detection import intake
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from tests.conftest import ROOT, verify_2fa
from tests.factories import case_with_match, encoded
from tests.test_browser import verify_second_factor

Status = CyberTipReport.Status
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "var" / "screenshots"


@pytest.fixture(autouse=True)
def _approval_required(settings):
    settings.CYBERTIP_REQUIRE_APPROVAL = True


def reported(users, seed=1, extra_files=0):
    """A report awaiting approval, drafted the real way: a specialist decides a case as known material.

    `extra_files` more files (items of the same account) are added to it, as a larger case would have.
    """
    case, _ = case_with_match(seed=seed, account=f"acct-{seed}")
    case = claim_case(users["specialist"], case.pk)
    decide(users["specialist"], case.pk, action="report", reason_code="csam-known", version=case.version)
    report = CyberTipReport.objects.get(case=case)
    for n in range(extra_files):
        item = intake.submit_file(encoded(seed * 100 + n + 1), account_id=f"acct-{seed}",
                                  original_name=f"upload-{n + 2}.jpg")
        CyberTipFile.objects.create(report=report, item=item)
    assert report.status == Status.AWAITING_APPROVAL
    return report


def snapshot(report):
    report = CyberTipReport.objects.get(pk=report.pk)
    return (report.status, report.incident_type, report.annotations, report.escalate_reason,
            [(f.classification, f.annotations, f.publicly_available) for f in report.files.all()])


def form_for(report):
    """The details form as the page posts it: the report's details filled in, every file left blank."""
    form = {"incident_type": "Child Sex Trafficking", "annotations": ["sextortion", "bogus"],
            "escalate_reason": "the child says they are being met tonight"}
    for report_file in report.files.all():
        form[f"file-{report_file.pk}-classification"] = ""
        form[f"file-{report_file.pk}-annotations"] = []
        form[f"file-{report_file.pk}-public"] = ""
    return form


def as_senior(client, users):
    client.force_login(users["senior"])
    verify_2fa(client, users["senior"])
    return client


def approve_url(report):
    return f"/reports/{report.pk}/approve/"


def status_region(page):
    """The text of the page's role="status" notice about unclassified files."""
    found = re.search(r'<div role="status" aria-labelledby="unclassified-title">(.*?)</div>', page, re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))) if found else ""


@pytest.fixture
def enqueued(monkeypatch):
    """Filing jobs actually handed to the queue (enqueue hands them over only after the outermost commit)."""
    sent = []

    def enqueue_now(path, *args, **kwargs):
        if path == "cases.cybertip.filing.file_report":
            sent.append((path, args))
        return True

    monkeypatch.setattr("reviewconsole.queueing.enqueue_now", enqueue_now)
    return sent


@pytest.mark.django_db
class TestApproveAndFile:
    def test_approving_saves_the_edits_made_on_the_page(self, client, users, enqueued,
                                                        django_capture_on_commit_callbacks):
        report = reported(users)
        (report_file,) = report.files.all()
        form = form_for(report) | {
            f"file-{report_file.pk}-classification": "A1", f"file-{report_file.pk}-annotations": ["viral"],
            f"file-{report_file.pk}-public": "no"}
        as_senior(client, users)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(approve_url(report), form, follow=True, REMOTE_ADDR="10.0.0.21")
        assert "queued for filing" in response.content.decode()
        assert snapshot(report) == (Status.QUEUED, "Child Sex Trafficking", ["sextortion"],
                                    "the child says they are being met tonight", [("A1", ["viral"], False)])
        report.refresh_from_db()
        assert report.approved_by == users["senior"] and report.approved_at
        edited = AuditEvent.objects.get(action=Event.CYBERTIP_EDITED)
        approved = AuditEvent.objects.get(action=Event.CYBERTIP_APPROVED)
        assert edited.actor == approved.actor == users["senior"] and approved.ip == "10.0.0.21"
        assert approved.details == {"files": 1, "unclassified": []}
        assert enqueued == [("cases.cybertip.filing.file_report", (report.pk,))]
        page = response.content.decode()
        assert "Queued for filing" in page and "Approve and file" not in page

    def test_the_page_posts_the_details_form_to_approve(self, client, users):
        report = reported(users)
        page = as_senior(client, users).get(f"/reports/{report.pk}/").content.decode()
        form = page[page.index('<form method="post" action="/reports/'):]
        form = form[:form.index("</form>")]
        assert f'action="/reports/{report.pk}/edit/"' in form
        assert f'formaction="{approve_url(report)}"' in form and ">Approve and file</button>" in form
        assert 'name="incident_type"' in form and f'name="file-{report.files.get().pk}-classification"' in form

    @pytest.mark.parametrize("broken", ["incident", "classification", "public"])
    def test_an_invalid_edit_approves_nothing_and_keeps_the_input(self, client, users, broken,
                                                                  django_capture_on_commit_callbacks):
        report = reported(users, extra_files=1)
        first, second = report.files.all()
        form = form_for(report)
        form |= {f"file-{first.pk}-classification": "A2", f"file-{first.pk}-annotations": ["infant"],
                 f"file-{second.pk}-classification": "B1", "confirm_unclassified": "yes"}
        if broken == "incident":
            form["incident_type"], expected = "Nonsense", "Choose one of NCMEC"
        elif broken == "classification":
            form[f"file-{second.pk}-classification"], expected = "C3", "Choose a classification"
        else:
            form[f"file-{second.pk}-public"], expected = "maybe", "Choose a classification"
        before = snapshot(report)
        as_senior(client, users)
        with django_capture_on_commit_callbacks() as callbacks:
            response = client.post(approve_url(report), form)
        assert response.status_code == 400
        page = response.content.decode()
        assert expected in page and 'role="alert"' in page
        assert snapshot(report) == before and not callbacks
        assert not AuditEvent.objects.filter(action__in=[Event.CYBERTIP_EDITED, Event.CYBERTIP_APPROVED]).exists()
        # What the senior entered is still on the page, not the saved values.
        assert 'value="the child says they are being met tonight"' in page
        assert '<option value="A2" selected>A2</option>' in page
        assert f'name="file-{first.pk}-annotations" value="infant" checked' in page
        assert 'name="annotations" value="sextortion" checked' in page

    def test_an_invalid_save_also_keeps_the_input(self, client, users):
        report = reported(users)
        form = form_for(report) | {"incident_type": "Nonsense"}
        response = as_senior(client, users).post(f"/reports/{report.pk}/edit/", form)
        page = response.content.decode()
        assert response.status_code == 400 and "Choose one of NCMEC" in page
        assert 'value="the child says they are being met tonight"' in page
        assert snapshot(report)[0] == Status.AWAITING_APPROVAL and not report.files.get().classification


@pytest.mark.django_db
class TestUnclassifiedFiles:
    def test_the_page_names_the_files_without_classification(self, client, users):
        report = reported(users, extra_files=3)
        files = list(report.files.all())
        CyberTipFile.objects.filter(pk=files[1].pk).update(classification="B2")
        page = as_senior(client, users).get(f"/reports/{report.pk}/").content.decode()
        notice = status_region(page)
        assert "3 of 4 files have no industry classification" in notice
        for report_file in (files[0], files[2], files[3]):
            assert f"Item {report_file.item_id}" in notice
            assert f'href="#file-{report_file.pk}"' in page and f'id="file-{report_file.pk}"' in page
        assert f"Item {files[1].item_id}" not in notice
        assert "File without classifying these files" in page

    def test_approval_without_the_confirmation_is_refused_with_the_list(self, client, users, enqueued,
                                                                        django_capture_on_commit_callbacks):
        report = reported(users, extra_files=3)
        files = list(report.files.all())
        # The senior classifies two files in this very form; two are left.
        form = form_for(report) | {f"file-{files[0].pk}-classification": "A1",
                                         f"file-{files[2].pk}-classification": "B1"}
        before = snapshot(report)
        as_senior(client, users)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(approve_url(report), form)
        page = response.content.decode()
        assert response.status_code == 400
        assert f"2 of 4 files have no industry classification (items {files[1].item_id}, {files[3].item_id})" in page
        notice = status_region(page)
        assert "2 of 4 files have no industry classification" in notice
        assert f"Item {files[1].item_id}" in notice and f"Item {files[3].item_id}" in notice
        assert f"Item {files[0].item_id}" not in notice
        assert 'name="confirm_unclassified" value="yes" >' in page  # offered, not ticked
        assert snapshot(report) == before and not enqueued
        assert not AuditEvent.objects.filter(action__in=[Event.CYBERTIP_EDITED, Event.CYBERTIP_APPROVED]).exists()

    def test_with_the_confirmation_it_is_approved_and_the_audit_names_the_files(
            self, client, users, enqueued, django_capture_on_commit_callbacks):
        report = reported(users, extra_files=3)
        files = list(report.files.all())
        form = form_for(report) | {f"file-{files[0].pk}-classification": "A1",
                                         f"file-{files[2].pk}-classification": "B1",
                                         "confirm_unclassified": "yes"}
        as_senior(client, users)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(approve_url(report), form, follow=True)
        assert "queued for filing" in response.content.decode()
        assert [f[0] for f in snapshot(report)[4]] == ["A1", "", "B1", ""]
        assert snapshot(report)[0] == Status.QUEUED
        approved = AuditEvent.objects.get(action=Event.CYBERTIP_APPROVED)
        assert approved.details == {
            "files": 4, "unclassified_confirmed": True,
            "unclassified": [{"file": f.pk, "item": f.item_id} for f in (files[1], files[3])]}
        assert len(enqueued) == 1

    def test_a_fully_classified_report_needs_no_confirmation(self, client, users):
        report = reported(users, extra_files=1)
        form = form_for(report)
        for report_file in report.files.all():
            form[f"file-{report_file.pk}-classification"] = "A2"
        page = as_senior(client, users).get(f"/reports/{report.pk}/").content.decode()
        assert "2 of 2 files have no industry classification" in page
        client.post(approve_url(report), form)
        assert snapshot(report)[0] == Status.QUEUED
        assert AuditEvent.objects.get(action=Event.CYBERTIP_APPROVED).details == {"files": 2, "unclassified": []}

    def test_the_action_refuses_unconfirmed_unclassified_files(self, users):
        report = reported(users, extra_files=1)
        details = {"incident_type": "Child Sex Trafficking", "annotations": [], "escalate_reason": ""}
        files = {f.pk: {"classification": "", "annotations": [], "publicly_available": None}
                 for f in report.files.all()}
        with pytest.raises(UnclassifiedFiles) as refused:
            save_and_approve(users["senior"], report, details, files)
        assert [f.pk for f in refused.value.files] == list(files) and refused.value.total == 2
        assert snapshot(report)[:2] == (Status.AWAITING_APPROVAL, report.incident_type)


@pytest.mark.django_db
class TestAtomic:
    def details(self, report):
        return ({"incident_type": "Child Sex Trafficking", "annotations": ["sextortion"], "escalate_reason": "now"},
                {f.pk: {"classification": "A1", "annotations": ["viral"], "publicly_available": True}
                 for f in report.files.all()})

    def test_a_failure_in_approve_after_the_edit_leaves_the_edit_unsaved(self, users,
                                                                        django_capture_on_commit_callbacks):
        report = reported(users)
        before = snapshot(report)
        real_audit = cybertip_actions.audit

        def audit_failing_at_approval(user, event, **kwargs):
            if event == Event.CYBERTIP_APPROVED:
                raise RuntimeError("the audit log is unavailable")
            return real_audit(user, event, **kwargs)

        with mock.patch("cases.actions.cybertip.audit", audit_failing_at_approval), \
                django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError):
            save_and_approve(users["senior"], report, *self.details(report))
        assert snapshot(report) == before and not callbacks
        assert not AuditEvent.objects.filter(action__in=[Event.CYBERTIP_EDITED, Event.CYBERTIP_APPROVED]).exists()

    def test_the_same_failure_through_the_page_saves_nothing(self, client, users):
        report = reported(users)
        before = snapshot(report)
        form = form_for(report) | {f"file-{report.files.get().pk}-classification": "A1"}
        as_senior(client, users)
        with mock.patch("cases.actions.cybertip.approve", return_value=False):
            response = client.post(approve_url(report), form)
        assert response.status_code == 400 and "nothing was saved" in response.content.decode()
        assert snapshot(report) == before
        with mock.patch.object(CyberTipReport.objects, "filter", side_effect=RuntimeError("db gone")), \
                pytest.raises(RuntimeError):
            client.post(approve_url(report), form)
        assert snapshot(report) == before

    def test_a_report_approved_meanwhile_keeps_its_details(self, client, users):
        report = reported(users)
        as_senior(client, users)
        cybertip_actions.approve(users["admin"], report)
        before = snapshot(report)
        form = form_for(report) | {"confirm_unclassified": "yes"}
        response = client.post(approve_url(report), form)
        assert response.status_code == 400 and "Only a report awaiting approval" in response.content.decode()
        assert snapshot(report) == before
        assert AuditEvent.objects.filter(action=Event.CYBERTIP_APPROVED).count() == 1

    def test_the_action_raises_action_error_for_an_invalid_edit(self, users):
        report = reported(users)
        details, files = self.details(report)
        details["incident_type"] = "Nonsense"
        with pytest.raises(ActionError, match="incident types"):
            save_and_approve(users["senior"], report, details, files, unclassified_confirmed=True)
        assert snapshot(report)[0] == Status.AWAITING_APPROVAL


@pytest.mark.django_db
class TestWhoAndHow:
    def test_a_specialist_saves_but_cannot_approve(self, client, users):
        report = reported(users)
        client.force_login(users["specialist"])
        page = client.get(f"/reports/{report.pk}/").content.decode()
        assert "Approve and file" not in page and "File without classifying" not in page
        assert "1 of 1 file has no industry classification" in status_region(page)
        assert client.post(approve_url(report), form_for(report)).status_code == 403
        assert snapshot(report)[0] == Status.AWAITING_APPROVAL

    def test_a_post_without_the_details_still_needs_the_unclassified_files_confirmed(self, client, users):
        # Scripts and pages from before this form have no edits to lose, but leaving files unclassified
        # stays a conscious act: refused without the confirmation, audited with it.
        report = reported(users)
        as_senior(client, users).post(approve_url(report))
        assert snapshot(report)[0] == Status.AWAITING_APPROVAL and not AuditEvent.objects.filter(
            action=Event.CYBERTIP_APPROVED).exists()
        client.post(approve_url(report), {"confirm_unclassified": "yes"})
        assert snapshot(report)[0] == Status.QUEUED
        (report_file,) = report.files.all()
        assert AuditEvent.objects.get(action=Event.CYBERTIP_APPROVED).details == {
            "files": 1, "unclassified": [{"file": report_file.pk, "item": report_file.item_id}],
            "unclassified_confirmed": True}


# In a real browser ------------------------------------------------------------------------------

def _chromium():
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


@pytest.fixture
def browser(monkeypatch):
    if not _chromium():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop in this thread
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=_chromium(), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


def sign_in(page, live_server, username, password):
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/queue/")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_a_senior_classifies_annotates_and_approves_in_the_browser(browser, live_server, users):
    report = reported(users, seed=31, extra_files=1)
    first, second = report.files.all()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server, "sena", "pw-sena")
    verify_second_factor(page, live_server, users["senior"])  # approving needs the second factor
    page.goto(f"{live_server.url}/reports/{report.pk}/")
    notice = page.get_by_role("status").filter(has_text="no industry classification")
    assert "2 of 2 files have no industry classification" in notice.inner_text()

    page.select_option(f"select[name=file-{first.pk}-classification]", "A1")
    page.check(f"input[name=file-{first.pk}-annotations][value=viral]")
    page.get_by_role("button", name="Approve and file").click()
    page.wait_for_load_state("networkidle")
    # One file is still unclassified: refused, named, and the senior's choices are still on the page.
    assert "1 of 2 files has no industry classification (item" in page.get_by_role("alert").inner_text()
    assert f"Item {second.item_id}" in notice.inner_text()
    assert page.input_value(f"select[name=file-{first.pk}-classification]") == "A1"
    assert page.is_checked(f"input[name=file-{first.pk}-annotations][value=viral]")
    assert CyberTipReport.objects.get(pk=report.pk).status == Status.AWAITING_APPROVAL

    page.get_by_label("File without classifying these files").check()
    page.locator("#approve").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "report-approve.png"), full_page=True)
    page.get_by_role("button", name="Approve and file").click()
    page.wait_for_url(f"{live_server.url}/reports/{report.pk}/")
    page.wait_for_load_state("networkidle")
    assert "Queued for filing" in page.locator("h1").inner_text()
    row = page.locator("table.cases tbody tr").first
    assert "A1" in row.inner_text()
    page.screenshot(path=str(SHOTS / "report-approved.png"), full_page=True)

    report.refresh_from_db()
    assert report.status == Status.QUEUED and report.approved_by == users["senior"]
    assert [(f.classification, f.annotations) for f in report.files.all()] == [("A1", ["viral"]), ("", [])]
    assert AuditEvent.objects.get(action=Event.CYBERTIP_APPROVED).details["unclassified"] == [
        {"file": second.pk, "item": second.item_id}]
