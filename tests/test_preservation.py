"""Legal holds, retention purge, chain-of-custody checks and law-enforcement destruction."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from cases.actions import preservation
from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.cybertip import filing
from cases.models import CyberTipReport, IntegrityAlert, LegalHold
from detection.models import EvidenceOnHold, Item
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa
from tests.factories import case_with_match, scanned_item
from tests.fake_cybertip import PASSWORD, USER, FakeCyberTipline

pytestmark = pytest.mark.django_db


def reported(users):
    case, item = case_with_match()
    case = claim_case(users["specialist"], case.pk)
    decide(users["specialist"], case.pk, action="report", reason_code="csam-known", version=case.version)
    return CyberTipReport.objects.get(case=case), item


def age(item, days):
    Item.objects.filter(pk=item.pk).update(created_at=timezone.now() - timedelta(days=days))


class TestHolds:
    def test_a_report_holds_its_files_for_a_year(self, users):
        report, item = reported(users)
        (hold,) = LegalHold.active().filter(item=item)
        assert hold.reason == "cybertip" and hold.report == report
        assert hold.until - report.created_at >= timedelta(days=365) - timedelta(minutes=1)

    def test_submission_extends_the_hold_to_a_year_from_submission(self, users, settings):
        settings.CYBERTIP_REQUIRE_APPROVAL = False
        settings.CYBERTIP_HOLD_DAYS = 400
        with FakeCyberTipline() as fake:
            settings.CYBERTIP_URL, settings.CYBERTIP_USERNAME, settings.CYBERTIP_PASSWORD = fake.url, USER, PASSWORD
            report, item = reported(users)
            assert filing.file_report(report.pk) == "filed"
        report.refresh_from_db()
        (hold,) = LegalHold.active().filter(item=item)
        assert abs((hold.until - report.submitted_at) - timedelta(days=400)) < timedelta(seconds=5)

    def test_the_orm_refuses_to_delete_held_evidence(self, users):
        _, item = reported(users)
        with pytest.raises(EvidenceOnHold):
            item.delete()
        with pytest.raises(EvidenceOnHold):
            Item.objects.filter(pk=item.pk).delete()
        with pytest.raises(EvidenceOnHold):
            preservation.purge(item, reason="test")
        assert Item.objects.filter(pk=item.pk, purged_at__isnull=True).exists()

    def test_admin_refuses_to_delete_held_evidence(self, users, client):
        _, item = reported(users)
        client.force_login(users["admin"])
        verify_2fa(client, users["admin"])
        assert client.get(f"/admin/detection/item/{item.pk}/delete/").status_code == 403
        response = client.post("/admin/detection/item/", {"action": "delete_selected", "_selected_action": [item.pk],
                                                      "post": "yes"}, follow=True)
        assert "legal hold" in response.content.decode()
        assert Item.objects.filter(pk=item.pk).exists()

    def test_holds_are_lifted_never_deleted(self, users):
        _, item = reported(users)
        with pytest.raises(EvidenceOnHold):
            LegalHold.objects.get(item=item).delete()

    def test_an_expired_hold_no_longer_protects(self, users):
        _, item = reported(users)
        LegalHold.objects.update(until=timezone.now() - timedelta(seconds=1))
        assert not item.on_hold


class TestRetention:
    def test_old_evidence_without_hold_or_open_case_is_purged_and_recorded(self, image_bytes, settings,
                                                                           django_capture_on_commit_callbacks):
        item = scanned_item(image_bytes(5))
        path = settings.EVIDENCE_ROOT / item.storage_path
        age(item, settings.EVIDENCE_RETENTION_DAYS + 1)
        recent = scanned_item(image_bytes(6))
        with django_capture_on_commit_callbacks(execute=True):
            call_command("purge_evidence", verbosity=0)
        item.refresh_from_db()
        assert item.purged_at is not None and not path.exists()
        event = AuditEvent.objects.get(action="evidence.purged", item=item)
        assert event.details["sha256"] == item.sha256 and event.details["reason"].startswith("retention")
        assert Item.objects.get(pk=recent.pk).purged_at is None

    def test_held_and_open_case_evidence_survive_retention(self, users, settings):
        _, held = reported(users)
        _, in_open_case = case_with_match(seed=2, account="acct-2")
        for item in (held, in_open_case):
            age(item, settings.EVIDENCE_RETENTION_DAYS + 10)
        assert preservation.purge_expired() == 0
        assert not Item.objects.filter(purged_at__isnull=False).exists()

    def test_a_dry_run_destroys_nothing(self, image_bytes, settings):
        item = scanned_item(image_bytes(7))
        age(item, settings.EVIDENCE_RETENTION_DAYS + 1)
        assert preservation.purge_expired(dry_run=True) == 1
        assert Item.objects.get(pk=item.pk).purged_at is None

    def test_purged_evidence_shows_a_placeholder(self, users, client, settings):
        case, item = case_with_match()
        claim_case(users["specialist"], case.pk)
        decide(users["specialist"], case.pk, action="dismiss", reason_code="benign", version=case.version + 1)
        age(item, settings.EVIDENCE_RETENTION_DAYS + 1)
        assert preservation.purge_expired() == 1
        client.force_login(users["senior"])
        response = client.get(f"/evidence/{item.pk}/blurred.jpg")
        assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"


class TestChainOfCustody:
    def test_matching_bytes_are_marked_verified(self, image_bytes):
        item = scanned_item(image_bytes(8))
        assert preservation.verify() == (1, 0)
        assert Item.objects.get(pk=item.pk).verified_at is not None

    def test_changed_or_missing_bytes_raise_one_alert_each(self, users, client, settings):
        case, item = case_with_match()
        _, other = case_with_match(seed=2, account="acct-2")
        (settings.EVIDENCE_ROOT / item.storage_path).write_bytes(b"changed")
        (settings.EVIDENCE_ROOT / other.storage_path).unlink()
        call_command("verify_evidence", verbosity=0)
        call_command("verify_evidence", verbosity=0)  # a second run does not duplicate alerts
        assert set(IntegrityAlert.objects.values_list("item_id", "problem")) == {
            (item.pk, "SHA-256 of stored bytes differs from intake"), (other.pk, "evidence file missing")}
        assert AuditEvent.objects.filter(action="evidence.integrity_alert").count() == 2
        client.force_login(users["reviewer"])
        assert "Integrity alert" in client.get(f"/cases/{case.pk}/").content.decode()
        client.force_login(users["admin"])
        verify_2fa(client, users["admin"])
        assert "differs from intake" in client.get("/admin/cases/integrityalert/").content.decode()


class TestDestruction:
    def test_two_seniors_destroy_held_evidence_with_a_recorded_reason(self, users, client, settings,
                                                                      django_capture_on_commit_callbacks):
        from cases.models import DestructionRequest
        from tests.conftest import make_user

        report, item = reported(users)
        path = settings.EVIDENCE_ROOT / item.storage_path
        client.force_login(users["senior"])
        verify_2fa(client, users["senior"])
        client.post(f"/evidence/{item.pk}/destroy/", {"reason": "", "reference": "FBI request 2026-114"})
        assert not DestructionRequest.objects.exists()  # no reason, nothing happens
        reason = "FBI request 2026-114 asks us to destroy this file"
        client.post(f"/evidence/{item.pk}/destroy/", {"reason": reason, "reference": "FBI request 2026-114",
                                                      "next": f"/reports/{report.pk}/"})
        request = DestructionRequest.objects.get(item=item)
        assert Item.objects.get(pk=item.pk).purged_at is None  # one senior only asks
        second = make_user("sol", "senior")
        client.force_login(second)
        verify_2fa(client, second)
        with django_capture_on_commit_callbacks(execute=True):
            client.post(f"/destruction-requests/{request.pk}/approve/", {"next": f"/reports/{report.pk}/"})
        item.refresh_from_db()
        assert item.purged_at is not None and not path.exists()
        hold = LegalHold.objects.get(item=item)
        assert hold.lifted_by == second and "FBI request 2026-114" in hold.lift_reason and reason in hold.lift_reason
        assert AuditEvent.objects.filter(action="evidence.destruction_requested", actor=users["senior"]).exists()
        assert AuditEvent.objects.filter(action="evidence.destruction_approved", actor=second).exists()

    def test_only_those_who_file_reports_may_destroy(self, users, client):
        _, item = reported(users)
        for role in ("reviewer", "specialist"):
            client.force_login(users[role])
            verify_2fa(client, users[role])
            assert client.post(f"/evidence/{item.pk}/destroy/", {"reason": "x"}).status_code == 403
        assert Item.objects.get(pk=item.pk).purged_at is None


def test_a_hold_placed_in_admin_is_audited_and_protects(users, client, image_bytes):
    item = scanned_item(image_bytes(9))
    client.force_login(users["admin"])
    verify_2fa(client, users["admin"])
    until = (timezone.now() + timedelta(days=30)).strftime("%Y-%m-%d")
    response = client.post("/admin/cases/legalhold/add/", {
        "item": item.pk, "reason": "preservation", "note": "2703(f) letter", "placed_at_0": until,
        "placed_at_1": "00:00:00", "until_0": until, "until_1": "00:00:00"})
    assert response.status_code == 302, response.content.decode()[:2000]
    hold = LegalHold.objects.get(item=item)
    assert hold.placed_by == users["admin"]
    assert AuditEvent.objects.filter(action="evidence.hold_placed", item=item, actor=users["admin"]).exists()
    with pytest.raises(EvidenceOnHold):
        item.delete()
