"""CyberTipline fidelity: the rules NCMEC documents that its schema does not check.

XML 1.0 text everywhere, NCMEC's length and email rules, no future times, no blank escalation,
every banned member of a group case, earlier report ids, the time and IP of a text-only report,
the first ban's date, the reporter address, and what counts as "viewed by the ESP".
"""

from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

import pytest
from django.core.checks import run_checks
from django.utils import timezone

from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.cybertip import documents, filing
from cases.cybertip.checks import cybertip_reporter
from cases.cybertip.client import CyberTipClient
from cases.models import CyberTipReport, Decision, ViewingPreference
from detection import intake
from detection.models import Account, Group, Item
from reviewconsole.audit.models import AuditEvent
from tests.factories import case_with_match, encoded, known_bank, scanned_item, triage_all
from tests.fake_cybertip import PASSWORD, USER, FakeCyberTipline

Status = CyberTipReport.Status
pytestmark = pytest.mark.django_db

# Every character XML 1.0 forbids, amid markup characters that must merely be escaped.
FORBIDDEN = "".join(map(chr, [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])) + "\ud800\udfff\ufffe\uffff"
HOSTILE = "x\x00<b>\x0b&\x1b]]>\"'\x0c\ud83d\ufffe\uffff\x1fy"
# What a database can hold (no NUL, no lone surrogate), still full of control characters.
STORABLE = "Bio\x01\x02\x08\x0b\x0c\x0e\x1b\x1f <&> \ufffe\uffff end"
NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def fake(settings):
    with FakeCyberTipline() as server:
        settings.CYBERTIP_URL = server.url
        settings.CYBERTIP_USERNAME, settings.CYBERTIP_PASSWORD = USER, PASSWORD
        settings.CYBERTIP_TIMEOUT = 1
        settings.CYBERTIP_REQUIRE_APPROVAL = False
        yield server


def reported(users, seed=1, account="acct-1", reveal=True, **decide_kwargs):
    case, item = case_with_match(seed=seed, account=account)
    if reveal:
        AuditEvent.objects.create(actor=users["specialist"], actor_label="sam", action="evidence.revealed", item=item)
    case = claim_case(users["specialist"], case.pk)
    decide(users["specialist"], case.pk, action="report", reason_code="csam-known", version=case.version,
           **decide_kwargs)
    return CyberTipReport.objects.get(case=case), item


def sent_report(fake, report):
    report.refresh_from_db()
    return ET.fromstring(fake.reports[report.ncmec_report_id]["xml"])


def all_text(root):
    """Every text and attribute value of a parsed document."""
    for element in root.iter():
        yield element.text or ""
        yield from element.attrib.values()


def report_data(**fields):
    values = dict(incident_type="Child Sex Trafficking", incident_at=NOW - timedelta(hours=1), platform="Chat",
                  reporter_first_name="T", reporter_last_name="S", reporter_email="safety@chat.example.com",
                  esp_identifier="acct-9", now=NOW)
    return documents.ReportData(**{**values, **fields})


def file_data(**fields):
    values = dict(report_id="90001", file_id="f" * 32, file_name="item-1.jpg", original_name="IMG.jpg",
                  uploaded_at=NOW - timedelta(hours=1), viewed=False, publicly_available=None, classification="",
                  annotations=[], md5="0" * 32, sha1="0" * 40, sha256="0" * 64, now=NOW)
    return documents.FileData(**{**values, **fields})


# 1. XML 1.0 text ---------------------------------------------------------------------------------

class TestXmlText:
    @pytest.mark.parametrize("char", list(FORBIDDEN))
    def test_each_forbidden_character_is_replaced(self, char):
        cleaned = documents.xml_text(f"a{char}b")
        assert char not in cleaned and len(cleaned) == 3
        ET.fromstring(ET.tostring(ET.Element("x", {"v": cleaned}), encoding="utf-8"))

    def test_allowed_characters_are_kept(self):
        text = "tab\tnew\nline\rDEL\x7f emoji \U0001f600 accents é <&>"
        assert documents.xml_text(text) == text

    def test_text_and_attribute_values_are_cleaned_where_they_enter_the_tree(self):
        root = ET.Element("root")
        documents._add(root, "child", HOSTILE, note=HOSTILE, skipped=None)
        parsed = ET.fromstring(documents._serialise(root))
        child = parsed.find("child")
        assert child.text.startswith("x\ufffd<b> &") and child.get("note") == child.text
        assert not set(child.text) & set(FORBIDDEN) and "skipped" not in child.attrib

    def test_a_report_with_hostile_values_in_every_platform_field_is_well_formed_and_valid(self):
        data = report_data(
            escalate_reason=HOSTILE, room_name=HOSTILE, esp_identifier=HOSTILE, screen_name=HOSTILE,
            display_name=HOSTILE, profile_bio=HOSTILE, emails=[HOSTILE, f"bad{HOSTILE}@example.com"],
            phones=[HOSTILE], uploads=[documents.Upload(ip=HOSTILE, at=NOW), documents.Upload(ip="203.0.113.9\x1b"),
                                       documents.Upload(ip="203.0.113.7", at=NOW - timedelta(hours=2))],
            group_identifier=HOSTILE, prior_reports=[HOSTILE, "90001"], additional_info=HOSTILE, notes=[HOSTILE],
            company_template=HOSTILE, legal_url=HOSTILE, reporter_first_name=HOSTILE, reporter_last_name=HOSTILE,
            disabled_at=NOW - timedelta(days=1),
        )
        document = documents.report_xml(data)
        root = ET.fromstring(document)  # would raise on any forbidden character
        assert documents.validate(document) == []
        assert not any(set(text) & set(FORBIDDEN) for text in all_text(root))
        user = root.find("personOrUserReported")
        assert user.findtext("profileBio").startswith("x\ufffd<b> &")
        assert [e.findtext("ipAddress") for e in user.findall("ipCaptureEvent")] == ["203.0.113.7"]
        assert [e.text for e in user.findall("priorCTReports")] == ["90001"]
        assert user.find("personOrUserReportedPerson/email") is None  # neither address is well formed
        info = root.findtext("additionalInfo")
        assert "not a well-formed email address" in info and "not a valid address" in info

    def test_file_details_with_hostile_names_and_ip_are_well_formed_and_valid(self):
        document = documents.file_details_xml(file_data(file_name=HOSTILE, original_name=HOSTILE,
                                                        upload_ip=HOSTILE, notes=[HOSTILE]))
        root = ET.fromstring(document)
        assert documents.validate(document) == []
        assert not any(set(text) & set(FORBIDDEN) for text in all_text(root))
        assert root.find("ipCaptureEvent") is None
        assert any("not a valid address" in e.text for e in root.findall("additionalInfo"))

    def test_hostile_platform_values_are_filed_end_to_end(self, users, fake):
        report, item = reported(users)
        Account.objects.filter(external_id="acct-1").update(
            bio=STORABLE, screen_name=STORABLE, display_name=STORABLE, email=f"a{STORABLE}@example.com",
            phone="+1\x1b555 0100")
        Item.objects.filter(pk=item.pk).update(original_name=f"IMG\x1b\x0b{STORABLE}.jpg")
        CyberTipReport.objects.filter(pk=report.pk).update(additional_info=STORABLE, escalate_reason=STORABLE)
        assert filing.file_report(report.pk) == Status.FILED
        root = sent_report(fake, report)
        user = root.find("personOrUserReported")
        assert user.findtext("profileBio") == documents.xml_text(STORABLE)
        assert user.findtext("screenName") == user.findtext("displayName") == documents.xml_text(STORABLE)
        assert user.findtext("personOrUserReportedPerson/phone") == "+1\ufffd555 0100"
        assert root.findtext("incidentSummary/escalateToHighPriority") == documents.xml_text(STORABLE).strip()
        (details,) = [ET.fromstring(d) for d in fake.fileinfo]
        assert details.findtext("originalFileName").startswith("IMG\ufffd ")
        for document in [report.xml_sent.encode(), *fake.fileinfo]:
            assert documents.validate(document) == []

    def test_the_fake_service_answers_4110_to_malformed_xml(self, fake):
        client = CyberTipClient(fake.url, USER, PASSWORD, timeout=1)
        answer = client.submit(b"<?xml version='1.0'?><report><additionalInfo>a\x01b</additionalInfo></report>")
        assert answer.code == 4110 and not fake.reports


# 2. NCMEC's limits -------------------------------------------------------------------------------

LONG_EMAIL = "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".com"  # well formed, 313 characters


class TestLimits:
    @pytest.mark.parametrize("email, kept", [
        ("user@example.com", True), (" user@example.com ", True), ("user at example.com", False),
        ("user@", False), ("a@b", False), (LONG_EMAIL, False), ("", False),
    ])
    def test_only_well_formed_emails_of_at_most_255_characters_are_sent(self, email, kept):
        root = ET.fromstring(documents.report_xml(report_data(emails=[email])))
        sent = [e.text for e in root.iter("email") if e.text != "safety@chat.example.com"]
        assert sent == (["user@example.com"] if kept else [])
        if not kept and email:
            assert "left out of <email>" in root.findtext("additionalInfo")

    def test_a_phone_longer_than_50_is_left_out_with_a_note(self):
        root = ET.fromstring(documents.report_xml(report_data(phones=["+1 555 0100", "9" * 51])))
        assert [p.text for p in root.iter("phone")] == ["+1 555 0100"]
        assert "longer than 50" in root.findtext("additionalInfo")

    def test_identifiers_and_names_are_cut_to_255(self):
        long = "n" * 300
        document = documents.report_xml(report_data(esp_identifier=long, screen_name=long, display_name=long,
                                                    group_identifier=long, room_name=long))
        assert documents.validate(document) == []
        root = ET.fromstring(document)
        for path in ["personOrUserReported/espIdentifier", "personOrUserReported/screenName",
                     "personOrUserReported/displayName", "personOrUserReported/groupIdentifier",
                     "internetDetails/chatImIncident/chatRoomName"]:
            assert root.findtext(path) == "n" * 255, path
        assert "espIdentifier was cut to its first 255 of 300 characters" in root.findtext("additionalInfo")
        details = documents.file_details_xml(file_data(original_name=long))
        assert documents.validate(details) == []
        assert ET.fromstring(details).findtext("originalFileName") == "n" * 255

    @pytest.mark.parametrize("fragment, problem", [
        ("<email>not an address</email>", "not a well-formed"),
        (f"<email>{LONG_EMAIL}</email>", "longer than 255"),
        ("<phone>" + "1" * 51 + "</phone>", "<phone> is longer than 50"),
    ])
    def test_validation_refuses_what_the_service_refuses(self, fragment, problem):
        document = documents.report_xml(report_data()).replace(
            b"<email>safety@chat.example.com</email>", fragment.encode())
        assert any(problem in p for p in documents.validate(document))

    def test_validation_refuses_an_over_long_identifier(self):
        document = documents.report_xml(report_data()).replace(b">acct-9<", b">" + b"i" * 256 + b"<")
        assert any("<espIdentifier> is longer than 255" in p for p in documents.validate(document))

    def test_an_invalid_email_does_not_fail_the_report(self, users, fake):
        report, _ = reported(users)
        Account.objects.filter(external_id="acct-1").update(email="someone at example dot com",
                                                            phone="+44 20 7946 0000")
        assert filing.file_report(report.pk) == Status.FILED
        root = sent_report(fake, report)
        who = root.find("personOrUserReported/personOrUserReportedPerson")
        assert who.find("email") is None and who.findtext("phone") == "+44 20 7946 0000"
        assert "'someone at example dot com'" in root.findtext("additionalInfo")


# 3. No future times --------------------------------------------------------------------------------

class TestTimes:
    def test_future_times_are_clamped_to_now_with_an_offset(self):
        ahead = NOW + timedelta(hours=3)
        root = ET.fromstring(documents.report_xml(report_data(
            incident_at=ahead, uploads=[documents.Upload(ip="203.0.113.7", at=ahead)])))
        assert root.findtext("incidentSummary/incidentDateTime") == "2024-06-01T12:00:00+00:00"
        assert root.findtext("personOrUserReported/ipCaptureEvent/dateTime") == "2024-06-01T12:00:00+00:00"
        details = ET.fromstring(documents.file_details_xml(file_data(uploaded_at=ahead, upload_ip="203.0.113.7")))
        assert details.findtext("uploadedToEspTimestamp") == "2024-06-01T12:00:00+00:00"
        assert details.findtext("ipCaptureEvent/dateTime") == "2024-06-01T12:00:00+00:00"

    def test_past_times_are_kept_and_naive_ones_get_an_offset(self):
        root = ET.fromstring(documents.report_xml(report_data(incident_at=datetime(2024, 5, 1, 8, 30))))
        assert root.findtext("incidentSummary/incidentDateTime") == "2024-05-01T08:30:00+00:00"

    @pytest.mark.parametrize("value, problem", [
        ("2999-01-01T00:00:00+00:00", "in the future"), ("2024-01-01T00:00:00", "no UTC offset"),
        ("yesterday", "not an ISO 8601"),
    ])
    def test_validation_refuses_future_or_zoneless_times(self, value, problem):
        document = documents.report_xml(report_data()).replace(
            b"2024-06-01T11:00:00+00:00", value.encode())
        assert any(problem in p for p in documents.validate(document))

    def test_a_platform_clock_ahead_of_ours_does_not_block_the_filing(self, users, fake):
        report, item = reported(users)
        Item.objects.filter(pk=item.pk).update(uploaded_at=timezone.now() + timedelta(hours=2), ip="203.0.113.7")
        assert filing.file_report(report.pk) == Status.FILED
        now = timezone.now()
        root = sent_report(fake, report)
        (details,) = [ET.fromstring(d) for d in fake.fileinfo]
        for moment in [root.findtext("incidentSummary/incidentDateTime"),
                       root.findtext("personOrUserReported/ipCaptureEvent/dateTime"),
                       details.findtext("uploadedToEspTimestamp"), details.findtext("ipCaptureEvent/dateTime")]:
            parsed = datetime.fromisoformat(moment)
            assert parsed.tzinfo is not None and parsed <= now


# 4. Escalation never blank -------------------------------------------------------------------------

class TestEscalation:
    @pytest.mark.parametrize("reason", ["", "   ", "\n\t", "\x00\x0b", None])
    def test_a_blank_reason_leaves_the_element_out(self, reason):
        root = ET.fromstring(documents.report_xml(report_data(escalate_reason=reason)))
        assert root.find("incidentSummary/escalateToHighPriority") is None

    def test_a_reason_is_sent_trimmed(self):
        root = ET.fromstring(documents.report_xml(report_data(escalate_reason="  Child at immediate risk \n")))
        assert root.findtext("incidentSummary/escalateToHighPriority") == "Child at immediate risk"

    def test_validation_refuses_a_blank_escalation(self):
        blank = b"<platform>Chat</platform><escalateToHighPriority> </escalateToHighPriority>"
        document = documents.report_xml(report_data()).replace(b"<platform>Chat</platform>", blank)
        assert any("escalateToHighPriority" in p for p in documents.validate(document))


# 5. Group cases --------------------------------------------------------------------------------------

def group_case_reported(users, group_name="Weekend trades"):
    known_bank([11, 12, 13])
    intake.upsert_group("g-9", {"name": group_name})
    items = [scanned_item(encoded(11), account="m-1", group="g-9", ip="198.51.100.1"),
             scanned_item(encoded(12), account="m-2", group="g-9", ip="198.51.100.2"),
             scanned_item(encoded(13), account="m-2", group="g-9", ip="198.51.100.2"),
             scanned_item(encoded(77), account="innocent", group="g-9")]
    intake.submit_report(reporter="u", reason="csam", group_id="g-9")
    cases = {c.group.external_id if c.group else c.account.external_id: c for c in triage_all()}
    for item in items:
        AuditEvent.objects.create(actor=users["specialist"], actor_label="sam", action="evidence.revealed",
                                  item=item)
    case = claim_case(users["specialist"], cases["g-9"].pk)
    members = list(Account.objects.filter(external_id__in=["m-1", "m-2", "innocent"]).values_list("pk", flat=True))
    decide(users["specialist"], case.pk, action="report", reason_code="distribution-group", version=case.version,
           member_ids=members)
    return CyberTipReport.objects.get(case=case)


class TestGroupCase:
    def test_the_first_banned_member_is_the_reported_user_and_the_others_are_named(self, users, fake):
        report = group_case_reported(users, group_name=f"Weekend{STORABLE}")
        assert Group.objects.get(external_id="g-9").status == "banned"
        data = filing.gather_report(report)
        assert data.esp_identifier == "m-2"  # most matched material first
        assert filing.file_report(report.pk) == Status.FILED
        root = sent_report(fake, report)
        (user,) = root.findall("personOrUserReported")  # the schema allows one
        assert user.findtext("espIdentifier") == "m-2"
        assert user.findtext("groupIdentifier").startswith("g-9 (Weekend")
        assert user.find("accountPermanentlyDisabled").get("disabledDate")
        # Only the reported person's own IPs are theirs.
        assert {e.findtext("ipAddress") for e in user.findall("ipCaptureEvent")} <= {"198.51.100.2"}
        info = root.findtext("additionalInfo")
        assert "Other members of group g-9 banned by the same decision" in info and "m-1" in info
        assert "innocent" not in info and user.find("associatedAccount") is None
        assert root.findtext("internetDetails/chatImIncident/chatRoomName") == documents.xml_text(f"Weekend{STORABLE}")

    def test_a_group_identifier_keeps_the_platform_id_within_255(self, users):
        group = Group(external_id="g-" + "1" * 100, name="n" * 400)
        identifier = filing._group_identifier(group)
        assert identifier.startswith("g-" + "1" * 100 + " (n") and len(identifier) == 255


# 6. Earlier reports ----------------------------------------------------------------------------------

class TestPriorReports:
    def test_a_later_report_on_the_same_account_names_the_earlier_report_ids(self, users, fake):
        first, _ = reported(users, seed=1)
        assert filing.file_report(first.pk) == Status.FILED
        assert sent_report(fake, first).find("personOrUserReported/priorCTReports") is None
        unfinished, _ = reported(users, seed=2)  # submitted, then stopped before finish: NCMEC deletes it
        fake.fail_next("finish", ("code", 4100))
        assert filing.file_report(unfinished.pk) == Status.FAILED
        later, _ = reported(users, seed=3)
        assert filing.file_report(later.pk) == Status.FILED
        first.refresh_from_db()
        prior = [e.text for e in sent_report(fake, later).findall("personOrUserReported/priorCTReports")]
        assert prior == [first.ncmec_report_id]

    def test_a_member_banned_in_a_group_report_has_it_as_a_prior_report(self, users, fake):
        group_report = group_case_reported(users)
        assert filing.file_report(group_report.pk) == Status.FILED
        later, _ = reported(users, seed=5, account="m-1")
        group_report.refresh_from_db()
        assert filing.gather_report(later).prior_reports == [group_report.ncmec_report_id]


# 7. Text-only reports ----------------------------------------------------------------------------------

class TestTextOnly:
    def test_the_message_time_and_ip_are_sent(self, users, fake):
        sent_at = timezone.now().replace(microsecond=0) - timedelta(days=2)
        message = intake.submit_text("hey, how old are you?", account_id="groomer", uploaded_at=sent_at,
                                     ip="198.51.100.23")
        intake.submit_report(reporter="u", reason="grooming", item_id=message.pk)
        (case,) = triage_all()
        case = claim_case(users["specialist"], case.pk)
        decide(users["specialist"], case.pk, action="report", reason_code="grooming", version=case.version)
        report = CyberTipReport.objects.get()
        assert filing.file_report(report.pk) == Status.FILED
        assert fake.calls == ["submit", "finish"]
        root = sent_report(fake, report)
        assert root.findtext("incidentSummary/incidentDateTime") == sent_at.isoformat()
        (event,) = root.findall("personOrUserReported/ipCaptureEvent")
        assert event.findtext("ipAddress") == "198.51.100.23" and event.findtext("dateTime") == sent_at.isoformat()


# 8. The first ban's date ------------------------------------------------------------------------------

class TestDisabledDate:
    def test_it_is_the_earliest_ban_decision(self, users, fake):
        first, _ = reported(users, seed=1)
        long_ago = timezone.now().replace(microsecond=0) - timedelta(days=30)
        Decision.objects.filter(pk=first.decision_id).update(created_at=long_ago)
        later, _ = reported(users, seed=2)
        disabled = filing.gather_report(later).disabled_at
        assert disabled == long_ago
        root = ET.fromstring(documents.report_xml(filing.gather_report(later)))
        assert root.find("personOrUserReported/accountPermanentlyDisabled").get("disabledDate") == \
            long_ago.isoformat()

    def test_it_is_the_account_banned_at_when_that_is_earlier(self, users):
        report, _ = reported(users)
        earlier = timezone.now() - timedelta(days=3)
        Account.objects.filter(external_id="acct-1").update(banned_at=earlier)
        assert filing.gather_report(report).disabled_at == earlier

    def test_an_account_that_is_not_banned_is_not_said_to_be_disabled(self, users):
        report, _ = reported(users)
        Account.objects.filter(external_id="acct-1").update(status="active")
        root = ET.fromstring(documents.report_xml(filing.gather_report(report)))
        assert root.find("personOrUserReported/accountPermanentlyDisabled") is None


# 9. The reporter address ------------------------------------------------------------------------------

class TestReporterEmail:
    @pytest.mark.parametrize("email, username, errors", [
        ("safety@example.org", "esp-user", 1), ("", "esp-user", 1), ("not an address", "esp-user", 1),
        ("cybertip@chat.example.com", "esp-user", 0), ("safety@example.org", "", 0),
    ])
    def test_the_system_check(self, settings, email, username, errors):
        settings.CYBERTIP_REPORTER_EMAIL, settings.CYBERTIP_USERNAME = email, username
        found = cybertip_reporter()
        assert len(found) == errors and all(e.id == "cases.E001" for e in found)
        registered = run_checks(include_deployment_checks=True, tags=["cybertip"])
        assert [e.id for e in registered] == [e.id for e in found]

    def test_production_settings_stop_the_filing_instead_of_sending_the_placeholder(self, users, fake, settings):
        settings.DEBUG, settings.TESTING = False, False
        settings.CYBERTIP_REPORTER_EMAIL = "safety@example.org"
        report, _ = reported(users)
        assert filing.file_report(report.pk) == Status.FAILED
        report.refresh_from_db()
        assert "placeholder safety@example.org" in report.last_error and report.get_status_display() == \
            "Stopped: needs attention"
        assert not fake.calls and AuditEvent.objects.filter(action="cybertip.failed").exists()
        settings.CYBERTIP_REPORTER_EMAIL = "cybertip@chat.example.com"
        assert filing.retry(users["senior"], report.pk)
        assert filing.file_report(report.pk) == Status.FILED
        assert sent_report(fake, report).findtext("reporter/reportingPerson/email") == "cybertip@chat.example.com"

    def test_ncmec_production_service_refuses_the_placeholder_whatever_the_settings(self, settings):
        settings.CYBERTIP_URL = "https://report.cybertip.org/ispws"
        assert "placeholder" in documents.reporter_email_problem("safety@example.org")
        assert documents.reporter_email_problem("cybertip@chat.example.com") is None

    def test_an_empty_reporter_email_stops_any_filing(self, users, fake, settings):
        settings.CYBERTIP_REPORTER_EMAIL = " "
        report, _ = reported(users)
        assert filing.file_report(report.pk) == Status.FAILED
        assert "empty" in CyberTipReport.objects.get(pk=report.pk).last_error and not fake.calls


# 10. Viewed by the ESP ---------------------------------------------------------------------------------

class TestViewedByEsp:
    def viewed(self, report, item):
        report.files.update(ncmec_file_id="f" * 32)
        report.ncmec_report_id = "90001"
        details = ET.fromstring(documents.file_details_xml(filing.gather_file(report, report.files.get(item=item))))
        return details.findtext("fileViewedByEsp"), [e.text for e in details.findall("additionalInfo")]

    def test_a_reveal_by_a_person_counts(self, users):
        report, item = reported(users, reveal=True)
        assert self.viewed(report, item) == ("true", [])

    def test_a_blurred_or_filtered_view_or_a_system_event_does_not(self, users):
        report, item = reported(users, reveal=False)
        AuditEvent.objects.create(actor=users["specialist"], actor_label="sam", action="evidence.viewed_blurred",
                                  item=item)
        AuditEvent.objects.create(actor_label="system", action="evidence.revealed", item=item)
        assert self.viewed(report, item) == ("false", [])

    @pytest.mark.parametrize("change", [{"kind": "video"}, {"frame_hashes": [{"t": 0, "pdq": "0" * 64,
                                                                                "quality": 100}]}])
    def test_a_revealed_video_or_animation_is_a_sheet_of_frames_not_the_whole_file(self, users, change):
        report, item = reported(users, reveal=True)
        Item.objects.filter(pk=item.pk).update(**change)
        viewed, notes = self.viewed(report, item)
        assert viewed == "false" and "not every frame" in notes[0]

    def test_no_blur_always_keeps_another_filter(self, users):
        unfiltered = ViewingPreference(blur="none", tone="colour", detail="full", warning_screen=False)
        assert unfiltered.problem_for(users["specialist"]) and unfiltered.problem_for(None)
        for tone, detail in [("greyscale", "full"), ("sepia", "full"), ("colour", "reduced")]:
            assert ViewingPreference(blur="none", tone=tone, detail=detail).problem_for(users["specialist"]) is None
