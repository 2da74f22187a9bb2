"""CyberTipline filing against a fake service on loopback: documents, every error path, resumption."""

from datetime import timedelta
from xml.etree import ElementTree as ET

import pytest
from django.utils import timezone

from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.cybertip import documents, filing
from cases.cybertip.client import CyberTipClient
from cases.models import CyberTipExchange, CyberTipReport
from detection import intake
from reviewconsole.audit.models import AuditEvent
from tests.conftest import drain, verify_2fa
from tests.factories import case_with_match, triage_all
from tests.fake_cybertip import PASSWORD, USER, FakeCyberTipline

Status = CyberTipReport.Status


@pytest.fixture
def fake(settings):
    with FakeCyberTipline() as server:
        settings.CYBERTIP_URL = server.url
        settings.CYBERTIP_USERNAME, settings.CYBERTIP_PASSWORD = USER, PASSWORD
        settings.CYBERTIP_TIMEOUT = 1
        settings.CYBERTIP_REQUIRE_APPROVAL = False
        yield server


def reported(users, seed=1, reveal=False):
    case, item = case_with_match(seed=seed, account=f"acct-{seed}")
    if reveal:
        AuditEvent.objects.create(actor=users["specialist"], actor_label="sam", action="evidence.revealed", item=item)
    case = claim_case(users["specialist"], case.pk)
    decide(users["specialist"], case.pk, action="report", reason_code="csam-known", version=case.version)
    return CyberTipReport.objects.get(case=case), item


def run_again(report):
    CyberTipReport.objects.filter(pk=report.pk).update(next_attempt_at=None)
    return filing.file_report(report.pk)


pytestmark = pytest.mark.django_db


class TestDocuments:
    def test_the_report_document_is_in_schema_order_and_valid(self, users, fake):
        report, item = reported(users)
        document = documents.report_xml(filing.gather_report(report))
        assert documents.validate(document) == []
        root = ET.fromstring(document)
        assert [c.tag for c in root] == ["incidentSummary", "internetDetails", "reporter", "personOrUserReported",
                                         "additionalInfo"]
        assert root.findtext("incidentSummary/incidentType").startswith("Child Pornography")
        assert root.find("internetDetails/chatImIncident/chatClient") is not None
        reported_user = root.find("personOrUserReported")
        assert reported_user.findtext("espIdentifier") == "acct-1"
        assert reported_user.find("accountPermanentlyDisabled").get("disabledDate")

    def test_file_viewed_comes_from_the_audit_log(self, users, fake):
        report, item = reported(users)
        report.files.update(ncmec_file_id="f1")
        report.ncmec_report_id = "1"
        not_viewed = ET.fromstring(documents.file_details_xml(filing.gather_file(report, report.files.get())))
        assert not_viewed.findtext("fileViewedByEsp") == "false"
        AuditEvent.objects.create(actor_label="sam", action="evidence.revealed", item=item)
        viewed = ET.fromstring(documents.file_details_xml(filing.gather_file(report, report.files.get())))
        assert viewed.findtext("fileViewedByEsp") == "true"
        hashes = {h.get("hashType"): h.text for h in viewed.findall("originalFileHash")}
        assert hashes["MD5"] == item.md5 and hashes["SHA256"] == item.sha256 and len(hashes["SHA1"]) == 40
        assert viewed.findtext("details/nameValuePair/value") == item.pdq
        assert viewed.find("details").get("type") == "HASH"

    @pytest.mark.parametrize("document, problem", [
        (b"<report><reporter><reportingPerson><email>a@b</email></reportingPerson></reporter>"
         b"<incidentSummary><incidentType>Child Sex Tourism</incidentType><incidentDateTime>2026-01-01T00:00:00+00:00"
         b"</incidentDateTime></incidentSummary><internetDetails><chatImIncident/></internetDetails></report>",
         "out of schema order"),
        (b"<report><incidentSummary><incidentType>Bad things</incidentType><incidentDateTime>x</incidentDateTime>"
         b"</incidentSummary><internetDetails><chatImIncident/></internetDetails><reporter><reportingPerson>"
         b"<email>a@b</email></reportingPerson></reporter></report>", "not one of NCMEC"),
        (b"<report><incidentSummary><incidentType>Child Sex Tourism</incidentType></incidentSummary></report>",
         "requires"),
        (b"<fileDetails><reportId>1</reportId><fileId>f</fileId><fileViewedByEsp>false</fileViewedByEsp>"
         b"<exifViewedByEsp>true</exifViewedByEsp></fileDetails>", "exifViewedByEsp"),
        (b"<fileDetails><reportId>1</reportId><fileId>f</fileId><industryClassification>C3"
         b"</industryClassification></fileDetails>", "industryClassification"),
        (b"<fileDetails><reportId>1</reportId><fileId>f</fileId><bogus/></fileDetails>", "does not allow"),
        (b"<report", "malformed"),
    ])
    def test_validation_names_the_problem(self, document, problem):
        assert any(problem in p for p in documents.validate(document))


class TestFiling:
    def test_the_happy_path_files_one_report_with_its_file(self, users, fake):
        report, item = reported(users)
        assert filing.file_report(report.pk) == Status.FILED
        report.refresh_from_db()
        assert fake.finished == [report.ncmec_report_id]
        (ncmec_file,) = fake.reports[report.ncmec_report_id]["files"].values()
        assert ncmec_file == item.md5 == report.files.get().uploaded_md5
        assert "<reportDoneResponse>" in report.receipt and report.xml_sent.startswith("<?xml")
        steps = list(report.exchanges.values_list("step", flat=True))
        assert steps == ["submit", "upload", "fileinfo", "finish"]
        assert all(report.exchanges.values_list("request_id", flat=True))
        assert AuditEvent.objects.filter(action="cybertip.filed").exists()

    def test_a_text_only_case_is_reported_without_files(self, users, fake):
        intake.submit_report(reporter="u", reason="grooming", account_id="groomer")
        (case,) = triage_all()
        case = claim_case(users["specialist"], case.pk)
        decide(users["specialist"], case.pk, action="report", reason_code="grooming", version=case.version)
        report = CyberTipReport.objects.get()
        assert report.incident_type == "Online Enticement of Children for Sexual Acts"
        assert filing.file_report(report.pk) == Status.FILED
        assert fake.calls == ["submit", "finish"]

    def test_bad_credentials_stop_the_filing_with_the_service_message(self, users, fake, settings):
        settings.CYBERTIP_PASSWORD = "wrong"
        report, _ = reported(users)
        assert filing.file_report(report.pk) == Status.FAILED
        report.refresh_from_db()
        assert "code 2000" in report.last_error and not fake.reports

    def test_missing_credentials_wait_instead_of_failing(self, users, fake, settings):
        settings.CYBERTIP_USERNAME = ""
        report, _ = reported(users)
        assert filing.file_report(report.pk) == Status.QUEUED
        assert "not configured" in CyberTipReport.objects.get(pk=report.pk).last_error and not fake.calls

    @pytest.mark.parametrize("step, fault, outcome", [
        ("submit", ("code", 4100), Status.FAILED),
        ("submit", ("code", 4110), Status.FAILED),
        ("submit", ("code", 3000), Status.FAILED),
        ("submit", ("code", 7777), Status.FAILED),
        ("submit", ("code", 1000), "retry"),
        ("submit", 500, "retry"),
        ("upload", ("code", 1110), "retry"),
        ("upload", ("code", 1111), "retry"),
        ("upload", ("code", 4200), Status.FAILED),
        ("fileinfo", ("code", 4100), Status.FAILED),
        ("fileinfo", ("code", 1300), "retry"),
        ("finish", ("code", 1100), "retry"),
        ("finish", ("code", 5101), Status.FAILED),
    ])
    def test_every_error_code_path(self, users, fake, step, fault, outcome):
        report, _ = reported(users)
        fake.fail_next(step, fault)
        status = filing.file_report(report.pk)
        report.refresh_from_db()
        if outcome == "retry":
            assert status in (Status.QUEUED, Status.SUBMITTED) and report.next_attempt_at > timezone.now()
            assert filing.file_report(report.pk) == status  # not due yet: nothing sent
            assert run_again(report) == Status.FILED
            assert len(fake.finished) == 1 and len(fake.reports) == 1  # never submitted twice
        else:
            assert status == Status.FAILED and str(fault[1] if isinstance(fault, tuple) else fault) in report.last_error
            assert AuditEvent.objects.filter(action="cybertip.failed").exists()
            assert not fake.finished

    def test_a_report_the_service_deleted_is_filed_again(self, users, fake):
        report, _ = reported(users)
        fake.fail_next("finish", ("code", 5001))
        assert filing.file_report(report.pk) == Status.FILED
        assert len(fake.finished) == 1 and len(fake.reports) == 2

    @pytest.mark.parametrize("step", ["upload", "fileinfo", "finish"])
    def test_a_lost_answer_is_resumed_without_a_second_report(self, users, fake, step):
        report, _ = reported(users)
        fake.fail_next(step, "drop_after")
        assert filing.file_report(report.pk) in (Status.SUBMITTED, Status.QUEUED)
        assert run_again(report) == Status.FILED
        assert len(fake.reports) == 1 and len(fake.finished) == 1
        if step == "finish":
            assert "5102" in CyberTipReport.objects.get(pk=report.pk).receipt

    def test_a_lost_submit_answer_leaves_only_an_unfinished_orphan(self, users, fake):
        report, _ = reported(users)
        fake.fail_next("submit", "drop_after")
        assert filing.file_report(report.pk) == Status.QUEUED
        assert run_again(report) == Status.FILED
        # The service deletes an unfinished report after 24 hours; exactly one was finished.
        assert len(fake.finished) == 1 and len(fake.reports) == 2

    def test_a_timeout_is_retried(self, users, fake):
        report, _ = reported(users)
        fake.fail_next("upload", "timeout")
        assert filing.file_report(report.pk) == Status.SUBMITTED
        assert "Timeout" in CyberTipReport.objects.get(pk=report.pk).last_error
        assert run_again(report) == Status.FILED and len(fake.finished) == 1

    @pytest.mark.parametrize("crash_before", ["upload", "fileinfo", "finish"])
    def test_a_worker_crash_between_steps_resumes_at_the_next_step(self, users, fake, crash_before, monkeypatch):
        report, _ = reported(users)

        def die(*args, **kwargs):
            raise SystemExit("worker killed")

        monkeypatch.setattr(CyberTipClient, crash_before, die)
        with pytest.raises(SystemExit):
            filing.file_report(report.pk)
        monkeypatch.undo()
        calls_before = list(fake.calls)
        assert filing.file_report(report.pk) == Status.FILED
        assert len(fake.reports) == 1 and len(fake.finished) == 1
        assert "submit" not in fake.calls[len(calls_before):]
        assert fake.calls.count("upload") == 1 and fake.calls.count("fileinfo") == 1

    def test_bytes_that_changed_since_intake_are_not_sent(self, users, fake, settings):
        report, item = reported(users)
        (settings.EVIDENCE_ROOT / item.storage_path).write_bytes(b"tampered")
        assert filing.file_report(report.pk) == Status.FAILED
        assert "SHA-256" in CyberTipReport.objects.get(pk=report.pk).last_error
        assert "upload" not in fake.calls

    def test_it_gives_up_after_the_attempt_limit(self, users, fake, settings):
        settings.CYBERTIP_MAX_ATTEMPTS = 2
        report, _ = reported(users)
        for _ in range(2):
            fake.fail_next("submit", 500)
            run_again(report)
        assert run_again(report) == Status.FAILED
        assert "gave up" in CyberTipReport.objects.get(pk=report.pk).last_error


class TestRetract:
    def test_an_unfinished_report_can_be_retracted(self, users, fake):
        report, _ = reported(users)
        fake.fail_next("fileinfo", ("code", 4100))
        filing.file_report(report.pk)
        assert filing.retract(users["senior"], report.pk) == Status.RETRACTED
        report.refresh_from_db()
        assert fake.reports[report.ncmec_report_id]["state"] == "retracted"

    def test_retracting_a_finished_report_records_it_as_filed(self, users, fake):
        report, _ = reported(users)
        fake.fail_next("finish", "drop_after")
        filing.file_report(report.pk)
        assert filing.retract(users["senior"], report.pk) == Status.FILED


class TestApprovalAndPages:
    def test_a_senior_approves_before_filing(self, users, fake, settings, client):
        settings.CYBERTIP_REQUIRE_APPROVAL = True
        report, _ = reported(users)
        assert report.status == Status.AWAITING_APPROVAL
        assert filing.file_report(report.pk) == Status.AWAITING_APPROVAL and not fake.calls
        client.force_login(users["specialist"])
        assert client.post(f"/reports/{report.pk}/approve/").status_code == 403
        client.force_login(users["senior"])
        verify_2fa(client, users["senior"])  # approving needs the verified second factor
        client.post(f"/reports/{report.pk}/approve/")  # its file is unclassified: not without saying so
        report.refresh_from_db()
        assert report.status == Status.AWAITING_APPROVAL
        client.post(f"/reports/{report.pk}/approve/", {"confirm_unclassified": "yes"})
        report.refresh_from_db()
        assert report.status == Status.QUEUED and report.approved_by == users["senior"]
        assert filing.file_report(report.pk) == Status.FILED

    def test_the_report_pages_are_for_specialists_and_seniors(self, users, fake, client):
        report, _ = reported(users)
        filing.file_report(report.pk)
        for role, status in [("reviewer", 403), ("nobody", 403), ("specialist", 200), ("senior", 200)]:
            client.force_login(users[role])
            assert client.get("/reports/").status_code == status, role
            assert client.get(f"/reports/{report.pk}/").status_code == status, role
        page = client.get(f"/reports/{report.pk}/").content.decode()
        assert report.ncmec_report_id in CyberTipReport.objects.get(pk=report.pk).ncmec_report_id
        assert "reportDoneResponse" in page and "&lt;report" in page and "Request-ID" in page
        assert AuditEvent.objects.filter(action="cybertip.viewed").exists()

    def test_details_can_be_edited_until_submission(self, users, fake, settings, client):
        settings.CYBERTIP_REQUIRE_APPROVAL = True
        report, _ = reported(users)
        file_pk = report.files.get().pk
        client.force_login(users["specialist"])
        form = {"incident_type": "Child Sex Trafficking", "annotations": ["sextortion", "bogus"],
                f"file-{file_pk}-classification": "A1", f"file-{file_pk}-annotations": ["viral"],
                f"file-{file_pk}-public": "no"}
        client.post(f"/reports/{report.pk}/edit/", form)
        report.refresh_from_db()
        assert report.incident_type == "Child Sex Trafficking" and report.annotations == ["sextortion"]
        report_file = report.files.get()
        assert (report_file.classification, report_file.annotations, report_file.publicly_available) == \
            ("A1", ["viral"], False)
        client.post(f"/reports/{report.pk}/edit/", {"incident_type": "Nonsense"})
        assert CyberTipReport.objects.get(pk=report.pk).incident_type == "Child Sex Trafficking"
        filing.approve(users["senior"], report.pk)
        filing.file_report(report.pk)
        sent = ET.fromstring(fake.fileinfo[0])
        assert sent.findtext("industryClassification") == "A1" and sent.find("fileAnnotations/viral") is not None
        response = client.post(f"/reports/{report.pk}/edit/", form, follow=True)
        assert "can no longer be changed" in response.content.decode()

    def test_retry_from_the_page_resumes_a_stopped_filing(self, users, fake, client):
        report, _ = reported(users)
        fake.fail_next("fileinfo", ("code", 4100))
        assert filing.file_report(report.pk) == Status.FAILED
        client.force_login(users["senior"])
        verify_2fa(client, users["senior"])  # so does retrying
        client.post(f"/reports/{report.pk}/retry/")
        report.refresh_from_db()
        assert report.status == Status.SUBMITTED
        assert filing.file_report(report.pk) == Status.FILED and len(fake.reports) == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_a_report_decision_is_filed_through_the_queue(users, fake):
    report, _ = reported(users)
    drain()
    assert CyberTipReport.objects.get(pk=report.pk).status == Status.FILED
    assert CyberTipExchange.objects.filter(report=report).count() == 4


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_the_sweep_picks_up_a_filing_that_is_due(users, fake, redis_conn):
    from django.core.management import call_command
    report, _ = reported(users)
    redis_conn.flushdb()
    CyberTipReport.objects.filter(pk=report.pk).update(created_at=timezone.now() - timedelta(hours=1))
    call_command("sweep", "--older-than", "60", verbosity=0)
    drain()
    assert CyberTipReport.objects.get(pk=report.pk).status == Status.FILED
