"""The outside security audit's access findings, one class per finding; each test failed before its fix.

1. Held evidence was destroyed by one senior with a password only and a one-letter reason.
3. The senior who decided "report" approved their own CyberTipline report without a second factor.
4. A specialist refused a senior-only case could still read and edit its CyberTipline report.
5. An admin with a password only read the RQ statistics JSON under the admin site.
6. Metrics, QA, report approval and retraction, and evidence destruction asked for no second factor.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from cases.actions import ActionError, preservation
from cases.actions import cybertip as cybertip_actions
from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.models import Case, CyberTipReport, LegalHold, ReviewQueue
from detection.models import Item
from reviewconsole.audit.models import AuditEvent
from tests.conftest import make_user, verify_2fa
from tests.factories import case_with_match, scanned_item

pytestmark = pytest.mark.django_db
Status = CyberTipReport.Status
REASON = "The court ordered the destruction of this file after the trial."
REFERENCE = "FBI request 2026-114"


@pytest.fixture(autouse=True)
def _approval_required(settings):
    settings.CYBERTIP_REQUIRE_APPROVAL = True


@pytest.fixture
def second_senior(users):
    return make_user("sol", "senior")


def reported(users, decider="specialist", seed=1):
    """A report awaiting approval, with its file under the CyberTipline hold, decided by `decider`."""
    case, item = case_with_match(seed=seed, account=f"acct-{seed}")
    case = claim_case(users[decider], case.pk)
    decide(users[decider], case.pk, policy="csam-known", version=case.version)
    report = CyberTipReport.objects.get(case=case)
    assert report.status == Status.AWAITING_APPROVAL and LegalHold.active().filter(item=item).exists()
    return report, item


def signed_in(client, user, verified=True):
    client.force_login(user)
    if verified:
        verify_2fa(client, user)
    return client


def as_verified(user):
    """The user as django_otp's middleware leaves request.user after the second factor was verified."""
    user.is_verified = lambda: True
    return user


def intact(item, settings):
    """The evidence is still there: not purged, its file on disk, its holds in force."""
    item = Item.objects.get(pk=item.pk)
    return (item.purged_at is None and (settings.EVIDENCE_ROOT / item.storage_path).exists()
            and LegalHold.active().filter(item=item).exists())


def destruction_form(report, **fields):
    return {"reason": REASON, "reference": REFERENCE, "next": f"/reports/{report.pk}/", **fields}


class TestDestroyingHeldEvidence:
    """Finding 1: two seniors with verified second factors, and a recorded legal basis."""

    def test_a_password_only_senior_destroys_nothing(self, users, client, settings,
                                                     django_capture_on_commit_callbacks):
        report, item = reported(users)
        signed_in(client, users["senior"], verified=False)
        with django_capture_on_commit_callbacks(execute=True):
            for form in ({"reason": "x"}, destruction_form(report)):
                response = client.post(f"/evidence/{item.pk}/destroy/", form)
                assert response.status_code == 302 and "/account/verify/" in response["Location"]
        assert intact(item, settings)
        assert not AuditEvent.objects.filter(action__startswith="evidence.destruction").exists()

    def test_one_verified_senior_only_records_a_request(self, users, client, settings,
                                                        django_capture_on_commit_callbacks):
        from cases.models import DestructionRequest

        report, item = reported(users)
        signed_in(client, users["senior"])
        with django_capture_on_commit_callbacks(execute=True):
            client.post(f"/evidence/{item.pk}/destroy/", destruction_form(report))
        assert intact(item, settings)
        request = DestructionRequest.objects.get(item=item)
        assert request.status == "pending" and request.requested_by == users["senior"]
        assert request.reference == REFERENCE and request.reason == REASON
        event = AuditEvent.objects.get(action="evidence.destruction_requested")
        assert event.actor == users["senior"] and event.details["requested_by"] == "sena"
        page = client.get(f"/reports/{report.pk}/").content.decode()
        assert "waiting for a second senior" in page

    @pytest.mark.parametrize("form", [{"reason": "x"}, {"reason": "too short: see ref"},
                                      {"reference": ""}, {"reference": "ref"}, {"legal_request": "999999",
                                                                                "reference": ""}])
    def test_a_request_needs_its_legal_basis_and_a_reason(self, users, client, settings, form):
        from cases.models import DestructionRequest

        report, item = reported(users)
        signed_in(client, users["senior"])
        response = client.post(f"/evidence/{item.pk}/destroy/", destruction_form(report, **form), follow=True)
        assert response.status_code == 200
        assert not DestructionRequest.objects.exists() and intact(item, settings)

    def test_the_requester_cannot_approve_their_own_request(self, users, client, settings):
        from cases.models import DestructionRequest

        report, item = reported(users)
        signed_in(client, users["senior"])
        client.post(f"/evidence/{item.pk}/destroy/", destruction_form(report))
        request = DestructionRequest.objects.get(item=item)
        client.post(f"/destruction-requests/{request.pk}/approve/")
        assert DestructionRequest.objects.get(pk=request.pk).status == "pending" and intact(item, settings)
        with pytest.raises(ActionError, match="second senior"):
            preservation.approve_destruction(as_verified(users["senior"]), request.pk)

    def test_a_second_senior_without_a_second_factor_cannot_approve(self, users, client, settings, second_senior):
        from cases.models import DestructionRequest

        report, item = reported(users)
        signed_in(client, users["senior"])
        client.post(f"/evidence/{item.pk}/destroy/", destruction_form(report))
        request = DestructionRequest.objects.get(item=item)
        signed_in(client, second_senior, verified=False)
        response = client.post(f"/destruction-requests/{request.pk}/approve/")
        assert response.status_code == 302 and "/account/verify/" in response["Location"]
        assert DestructionRequest.objects.get(pk=request.pk).status == "pending" and intact(item, settings)
        with pytest.raises(ActionError, match="second factor"):
            preservation.approve_destruction(second_senior, request.pk)  # a user no middleware verified

    def test_a_second_verified_senior_approves_and_only_then_the_evidence_goes(
            self, users, client, settings, second_senior, django_capture_on_commit_callbacks):
        from cases.models import DestructionRequest

        report, item = reported(users)
        path = settings.EVIDENCE_ROOT / item.storage_path
        signed_in(client, users["senior"])
        client.post(f"/evidence/{item.pk}/destroy/", destruction_form(report))
        request = DestructionRequest.objects.get(item=item)
        signed_in(client, second_senior)
        assert f"/destruction-requests/{request.pk}/approve/" in client.get("/destruction-requests/").content.decode()
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(f"/destruction-requests/{request.pk}/approve/",
                                   {"next": f"/reports/{report.pk}/"})
        assert response.status_code == 302 and response["Location"] == f"/reports/{report.pk}/"
        item.refresh_from_db()
        assert item.purged_at is not None and not path.exists()
        request.refresh_from_db()
        assert request.status == "approved" and request.decided_by == second_senior
        hold = LegalHold.objects.get(item=item)
        assert hold.lifted_by == second_senior and "sena" in hold.lift_reason and "sol" in hold.lift_reason
        approved = AuditEvent.objects.get(action="evidence.destruction_approved")
        assert approved.actor == second_senior and approved.item == item
        assert approved.details["requested_by"] == "sena" and approved.details["approved_by"] == "sol"
        assert approved.details["reference"] == REFERENCE and approved.details["holds_lifted"] == 1
        purged = AuditEvent.objects.get(action="evidence.purged", item=item)
        assert "sena" in purged.details["reason"] and "sol" in purged.details["reason"]

    def test_a_verified_legal_request_is_a_basis(self, users, client, settings, second_senior):
        from cases.actions import legal
        from cases.models import DestructionRequest
        from tests.test_views import submit_legal_request

        report, item = reported(users)
        legal_request = submit_legal_request(users["officer"])
        signed_in(client, users["senior"])
        client.post(f"/evidence/{item.pk}/destroy/",
                    destruction_form(report, reference="", legal_request=str(legal_request.pk)))
        assert not DestructionRequest.objects.exists()  # not yet verified by a liaison
        legal.verify(users["liaison"], legal_request, note="called the agency back")
        client.post(f"/evidence/{item.pk}/destroy/",
                    destruction_form(report, reference="", legal_request=str(legal_request.pk)))
        request = DestructionRequest.objects.get(item=item)
        assert request.legal_request == legal_request
        preservation.approve_destruction(as_verified(second_senior), request.pk)
        assert Item.objects.get(pk=item.pk).purged_at is not None

    def test_a_second_senior_may_reject_and_nothing_is_destroyed(self, users, client, settings, second_senior):
        from cases.models import DestructionRequest

        report, item = reported(users)
        signed_in(client, users["senior"])
        client.post(f"/evidence/{item.pk}/destroy/", destruction_form(report))
        request = DestructionRequest.objects.get(item=item)
        signed_in(client, second_senior)
        client.post(f"/destruction-requests/{request.pk}/reject/", {"note": "no court order attached"})
        request.refresh_from_db()
        assert request.status == "rejected" and request.decided_by == second_senior and intact(item, settings)
        event = AuditEvent.objects.get(action="evidence.destruction_rejected")
        assert event.details["requested_by"] == "sena" and event.details["rejected_by"] == "sol"
        client.post(f"/destruction-requests/{request.pk}/approve/")  # decided: approving now changes nothing
        assert intact(item, settings)

    def test_a_hold_placed_after_the_request_stops_its_approval(self, users, second_senior):
        report, item = reported(users)
        request = preservation.request_destruction(as_verified(users["senior"]), item, reason=REASON,
                                                   reference=REFERENCE)
        LegalHold.objects.create(item=item, reason=LegalHold.Reason.PRESERVATION, note="2703(f) letter",
                                 until=timezone.now() + timedelta(days=90))
        with pytest.raises(ActionError, match="hold"):
            preservation.approve_destruction(as_verified(second_senior), request.pk)
        assert Item.objects.get(pk=item.pk).purged_at is None

    def test_a_specialist_cannot_request_or_approve(self, users, client, settings):
        report, item = reported(users)
        request = preservation.request_destruction(as_verified(users["senior"]), item, reason=REASON,
                                                   reference=REFERENCE)
        signed_in(client, users["specialist"])
        assert client.post(f"/evidence/{item.pk}/destroy/", destruction_form(report)).status_code == 403
        assert client.post(f"/destruction-requests/{request.pk}/approve/").status_code == 403
        with pytest.raises(ActionError):
            preservation.approve_destruction(as_verified(users["specialist"]), request.pk)
        assert intact(item, settings)

    def test_the_retention_purge_of_unheld_evidence_is_unchanged(self, image_bytes, settings):
        item = scanned_item(image_bytes(5))
        Item.objects.filter(pk=item.pk).update(
            created_at=timezone.now() - timedelta(days=settings.EVIDENCE_RETENTION_DAYS + 1))
        assert preservation.purge_expired() == 1
        assert Item.objects.get(pk=item.pk).purged_at is not None


class TestApprovingAReport:
    """Finding 3: a verified second factor, and someone other than the decider."""

    def test_the_decider_cannot_approve_their_own_report(self, users, client):
        report, _ = reported(users, decider="senior")
        signed_in(client, users["senior"])
        response = client.post(f"/reports/{report.pk}/approve/", {"confirm_unclassified": "yes"}, follow=True)
        assert "different senior" in response.content.decode()
        assert CyberTipReport.objects.get(pk=report.pk).status == Status.AWAITING_APPROVAL
        with pytest.raises(ActionError, match="different senior"):
            cybertip_actions.approve(users["senior"], report.pk, unclassified_confirmed=True)
        details = {"incident_type": report.incident_type, "annotations": [], "escalate_reason": ""}
        with pytest.raises(ActionError, match="different senior"):
            cybertip_actions.save_and_approve(users["senior"], report, details, {}, unclassified_confirmed=True)
        assert CyberTipReport.objects.get(pk=report.pk).status == Status.AWAITING_APPROVAL
        assert not AuditEvent.objects.filter(action="cybertip.approved").exists()
        page = client.get(f"/reports/{report.pk}/").content.decode()
        assert "Approve and file" not in page

    def test_approval_needs_a_verified_second_factor(self, users, client):
        report, _ = reported(users)
        signed_in(client, users["senior"], verified=False)
        response = client.post(f"/reports/{report.pk}/approve/", {"confirm_unclassified": "yes"})
        assert response.status_code == 302 and "/account/verify/" in response["Location"]
        assert CyberTipReport.objects.get(pk=report.pk).status == Status.AWAITING_APPROVAL
        verify_2fa(client, users["senior"])
        client.post(f"/reports/{report.pk}/approve/", {"confirm_unclassified": "yes"})
        report.refresh_from_db()
        assert report.status == Status.QUEUED and report.approved_by == users["senior"]

    def test_retry_and_retraction_need_a_verified_second_factor(self, users, client, settings):
        settings.CYBERTIP_URL, settings.CYBERTIP_TIMEOUT = "http://127.0.0.1:9/", 1
        report, _ = reported(users)
        CyberTipReport.objects.filter(pk=report.pk).update(status=Status.FAILED, ncmec_report_id="42")
        signed_in(client, users["senior"], verified=False)
        for verb in ("retry", "retract"):
            response = client.post(f"/reports/{report.pk}/{verb}/")
            assert response.status_code == 302 and "/account/verify/" in response["Location"], verb
        assert CyberTipReport.objects.get(pk=report.pk).status == Status.FAILED
        assert not AuditEvent.objects.filter(action__in=["cybertip.retried", "cybertip.retract"]).exists()
        verify_2fa(client, users["senior"])
        client.post(f"/reports/{report.pk}/retry/")
        assert CyberTipReport.objects.get(pk=report.pk).status == Status.SUBMITTED


class TestReportsFollowTheirCase:
    """Finding 4: a report is seen and changed only by those who may see its case."""

    def test_a_specialist_refused_the_case_cannot_read_list_or_edit_its_report(self, users, client):
        report, _ = reported(users)
        Case.objects.filter(pk=report.case_id).update(queue=ReviewQueue.objects.get(slug="escalations"))
        signed_in(client, users["specialist"])
        assert client.get(f"/cases/{report.case_id}/").status_code == 403
        assert client.get(f"/reports/{report.pk}/").status_code == 403
        assert f"/reports/{report.pk}/" not in client.get("/reports/").content.decode()
        response = client.post(f"/reports/{report.pk}/edit/", {"incident_type": "Child Sex Trafficking"})
        assert response.status_code == 403
        assert CyberTipReport.objects.get(pk=report.pk).incident_type != "Child Sex Trafficking"
        assert not AuditEvent.objects.filter(action__in=["cybertip.viewed", "cybertip.edited"]).exists()
        signed_in(client, users["senior"])
        assert client.get(f"/reports/{report.pk}/").status_code == 200
        assert f"/reports/{report.pk}/" in client.get("/reports/").content.decode()

    def test_a_specialist_still_reads_the_report_of_a_case_they_may_see(self, users, client):
        report, _ = reported(users)
        signed_in(client, users["specialist"])
        assert client.get(f"/reports/{report.pk}/").status_code == 200
        assert f"/reports/{report.pk}/" in client.get("/reports/").content.decode()


class TestStaffRoutes:
    """Finding 5: everything under /admin/ (the RQ statistics JSON too) and /django-rq/ needs the second factor."""

    @pytest.mark.usefixtures("redis_conn")
    def test_the_rq_statistics_under_admin_need_a_verified_second_factor(self, users, client):
        signed_in(client, users["admin"], verified=False)
        for url in ("/admin/django_rq/dashboard/stats.json", "/admin/django_rq/dashboard/",
                    "/admin/cases/case/", "/django-rq/stats.json"):
            response = client.get(url)
            assert response.status_code == 302 and "/account/verify/" in response["Location"], url
        verify_2fa(client, users["admin"])
        response = client.get("/admin/django_rq/dashboard/stats.json")
        assert response.status_code == 200 and "queues" in response.json()


class TestSecondFactorPages:
    """Finding 6: metrics and QA need the verified second factor."""

    @pytest.mark.parametrize("url", ["/metrics/", "/metrics/transparency/", "/metrics/transparency.csv",
                                     "/metrics/reviewers/", "/qa/", "/qa/agreement/", "/destruction-requests/"])
    def test_a_password_only_senior_is_sent_to_verify(self, users, client, url):
        signed_in(client, users["senior"], verified=False)
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/account/verify/?next="), url
        verify_2fa(client, users["senior"])
        assert client.get(url).status_code == 200, url
