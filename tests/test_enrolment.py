"""Enrolling an authenticator needs a one-time code an administrator issued, not just the password."""

import pytest
from django.core.management import call_command
from django_otp.plugins.otp_totp.models import TOTPDevice

from cases.actions.enrolment import issue_enrolment_code, use_enrolment_code
from cases.models import EnrolmentCode
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa

pytestmark = pytest.mark.django_db


def test_a_password_alone_never_reaches_the_secret(client, users):
    client.force_login(users["officer"])  # whoever learned a new officer's password
    page = client.get("/account/two-factor/").content.decode()
    assert "enrolment code" in page and "<svg" not in page and not TOTPDevice.objects.exists()
    page = client.post("/account/two-factor/", {"enrolment_code": "AAAA-BBBB-CCCC-DDDD"}, follow=True)
    assert "not valid" in page.content.decode() and "<svg" not in page.content.decode()
    assert AuditEvent.objects.filter(action="account.enrolment_code_refused", actor=users["officer"]).exists()


def test_a_code_works_once_for_its_own_person_and_expires(users, settings):
    code = issue_enrolment_code(users["admin"], users["officer"])
    assert not use_enrolment_code(users["specialist"], code)  # not someone else's
    assert use_enrolment_code(users["officer"], code)
    assert not use_enrolment_code(users["officer"], code)  # once
    second = issue_enrolment_code(users["admin"], users["officer"])
    third = issue_enrolment_code(users["admin"], users["officer"])
    assert not use_enrolment_code(users["officer"], second)  # a newer code retires older ones
    EnrolmentCode.objects.update(expires_at="2000-01-01T00:00:00Z")
    assert not use_enrolment_code(users["officer"], third)
    assert not EnrolmentCode.objects.filter(code_hash__in=[code, second, third]).exists()  # only hashes stored
    assert AuditEvent.objects.filter(action="account.enrolment_code_issued", actor=users["admin"]).count() == 3


def test_the_admin_issues_a_code_and_sees_it_once(client, users):
    client.force_login(users["admin"])
    verify_2fa(client, users["admin"])
    response = client.post("/admin/cases/enrolmentcode/add/", {"user": users["officer"].pk}, follow=True)
    text = response.content.decode()
    assert "Enrolment code for olive:" in text
    code = text.split("Enrolment code for olive: ")[1].split(" ")[0]
    assert use_enrolment_code(users["officer"], code)
    listing = client.get("/admin/cases/enrolmentcode/").content.decode()
    assert code not in listing


def test_the_command_prints_a_code(users, capsys):
    call_command("issue_enrolment_code", "olive")
    code = capsys.readouterr().out.strip()
    assert len(code) == 19 and use_enrolment_code(users["officer"], code)


def test_the_demo_enrols_without_codes(client, users, settings):
    settings.TWO_FACTOR_ENROLMENT_CODE_REQUIRED = False
    client.force_login(users["specialist"])
    assert "<svg" in client.get("/account/two-factor/").content.decode()
