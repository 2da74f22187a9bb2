"""Review-side changes through audited actions: notes, viewing preferences, CyberTipline report edits,
and a case page whose GET changes nothing.

Each action is checked twice: its audit row exists, and a failure part-way (the recorder or a later
write raising) leaves nothing half-written.
"""

from unittest import mock

import pytest

from cases.actions import ActionError
from cases.actions.claims import claim_case
from cases.actions.cybertip import edit_report
from cases.actions.decisions import decide
from cases.actions.notes import add_note
from cases.actions.preferences import save_viewing_preferences
from cases.models import INCIDENT_TYPES, Case, CaseView, CyberTipFile, CyberTipReport, SubjectNote, ViewingPreference
from reviewconsole.audit.models import AuditEvent
from tests.factories import case_with_match

pytestmark = pytest.mark.django_db


def broken_recorder(*args, **kwargs):
    raise RuntimeError("the audit log is unavailable")


# Notes on a subject -----------------------------------------------------------------------------

def test_a_note_is_written_with_its_audit_row(users):
    case, _ = case_with_match()
    note = add_note(users["reviewer"], case, "  Same photos seen in group X  ", ip="10.0.0.7")
    assert SubjectNote.objects.get() == note and note.text == "Same photos seen in group X"
    assert note.account_id == case.account_id and note.case == case and note.author == users["reviewer"]
    row = AuditEvent.objects.get(action="subject.note_added")
    assert (row.actor, row.case, row.object_type, row.object_id, row.ip) == \
        (users["reviewer"], case, "subjectnote", str(note.pk), "10.0.0.7")


def test_a_note_whose_audit_row_fails_is_not_kept(users):
    case, _ = case_with_match()
    with mock.patch("cases.actions.notes.audit", broken_recorder), pytest.raises(RuntimeError):
        add_note(users["reviewer"], case, "A note nobody would know was written")
    assert not SubjectNote.objects.exists()
    assert not AuditEvent.objects.filter(action="subject.note_added").exists()


@pytest.mark.parametrize("text", ["", "   ", "x" * 4001])
def test_an_empty_or_overlong_note_is_refused(users, text):
    case, _ = case_with_match()
    with pytest.raises(ActionError, match="at most 4000"):
        add_note(users["reviewer"], case, text)
    assert not SubjectNote.objects.exists() and not AuditEvent.objects.filter(action="subject.note_added").exists()


def test_the_note_form_goes_through_the_action(client, users):
    case, _ = case_with_match()
    client.force_login(users["reviewer"])
    client.post(f"/cases/{case.pk}/note/", {"text": "Seen before"}, REMOTE_ADDR="10.0.0.8")
    assert AuditEvent.objects.get(action="subject.note_added").ip == "10.0.0.8"
    response = client.post(f"/cases/{case.pk}/note/", {"text": " "}, follow=True)
    assert "A note needs some text" in response.content.decode()
    assert SubjectNote.objects.count() == 1
    with mock.patch("cases.actions.notes.audit", broken_recorder), pytest.raises(RuntimeError):
        client.post(f"/cases/{case.pk}/note/", {"text": "Lost with its audit row"})
    assert SubjectNote.objects.count() == 1


# Viewing preferences ----------------------------------------------------------------------------

def own(user):
    return {(p.category, p.blur, p.tone, p.detail, p.warning_screen)
            for p in ViewingPreference.objects.filter(user=user)}


def choice(blur="strong", tone="greyscale", detail="full", warning_screen=False):
    return {"blur": blur, "tone": tone, "detail": detail, "warning_screen": warning_screen}


def test_preferences_are_saved_together_with_one_audit_row(users):
    user = users["reviewer"]
    ViewingPreference.objects.create(user=user, category="new-content", blur="light")
    save_viewing_preferences(user, {"": choice(blur="light", tone="sepia"),
                                    "known-material": choice(detail="reduced", warning_screen=True),
                                    "new-content": None}, ip="10.0.0.9")
    assert own(user) == {("", "light", "sepia", "full", False),
                         ("known-material", "strong", "greyscale", "reduced", True)}
    row = AuditEvent.objects.get(action="account.viewing_preferences")
    assert (row.actor, row.object_type, row.object_id, row.ip) == (user, "user", str(user.pk), "10.0.0.9")
    assert row.details["inherit"] == ["new-content"] and row.details["own"]["all"]["tone"] == "sepia"


@pytest.mark.parametrize("bad", [
    {"known-material": choice(blur="invisible")},  # not a value of the list
    {"known-material": choice(blur="none", tone="colour")},  # no blur and no other filter
    {"user-reports": choice(blur="none")},  # a reviewer not cleared to reveal may not turn blur off
    {"known-material": {"tone": "sepia", "detail": "full"}},  # a list left out
    {"no-such-queue": choice()},
    {"": None},  # "all categories" has nothing to inherit from
])
def test_an_invalid_choice_anywhere_changes_nothing(users, bad):
    user = users["reviewer"]
    ViewingPreference.objects.create(user=user, category="", blur="light")
    ViewingPreference.objects.create(user=user, category="new-content", tone="sepia")
    before = own(user)
    # The valid choices come first: under the old loop they were written before the bad one was seen.
    choices = {"": choice(tone="colour", detail="reduced"), "new-content": None, **bad}
    with pytest.raises(ActionError):
        save_viewing_preferences(user, choices)
    assert own(user) == before
    assert not AuditEvent.objects.filter(action="account.viewing_preferences").exists()


def test_preferences_whose_audit_row_fails_are_not_kept(users):
    user = users["reviewer"]
    ViewingPreference.objects.create(user=user, category="new-content", tone="sepia")
    before = own(user)
    with mock.patch("cases.actions.preferences.audit", broken_recorder), pytest.raises(RuntimeError):
        save_viewing_preferences(user, {"": choice(blur="light"), "new-content": None,
                                        "known-material": choice(warning_screen=True)})
    assert own(user) == before
    assert not AuditEvent.objects.filter(action="account.viewing_preferences").exists()


def preferences_form(**overrides):
    form = {"all-blur": "light", "all-tone": "sepia", "all-detail": "full",
            "known-material-mode": "own", "known-material-blur": "strong", "known-material-tone": "greyscale",
            "known-material-detail": "reduced"}
    for slug in ("new-content", "text-surfaces", "user-reports"):
        form.update({f"{slug}-mode": "inherit", f"{slug}-blur": "strong", f"{slug}-tone": "greyscale",
                     f"{slug}-detail": "full"})
    return form | overrides


def test_the_preferences_page_shows_the_error_and_writes_nothing(client, users):
    user = users["reviewer"]
    client.force_login(user)
    # The "all" row is valid and comes first; the invalid value is in a later category.
    response = client.post("/account/viewing/", preferences_form(**{"known-material-tone": "ultraviolet"}),
                           follow=True)
    assert "Choose a value from each list." in response.content.decode()
    assert not ViewingPreference.objects.filter(user=user).exists()
    assert not AuditEvent.objects.filter(action="account.viewing_preferences").exists()
    response = client.post("/account/viewing/", preferences_form(), follow=True, REMOTE_ADDR="10.0.0.10")
    assert "Viewing preferences saved." in response.content.decode()
    assert {p.category for p in ViewingPreference.objects.filter(user=user)} == {"", "known-material"}
    assert AuditEvent.objects.get(action="account.viewing_preferences").ip == "10.0.0.10"


# CyberTipline report edits ----------------------------------------------------------------------

@pytest.fixture
def report(users, settings):
    settings.CYBERTIP_REQUIRE_APPROVAL = True
    case, _ = case_with_match()
    case = claim_case(users["specialist"], case.pk)
    decide(users["specialist"], case.pk, action="report", reason_code="csam-known", version=case.version)
    return CyberTipReport.objects.get(case=case)


def snapshot(report):
    report = CyberTipReport.objects.get(pk=report.pk)
    return ((report.incident_type, report.annotations, report.escalate_reason),
            [(f.classification, f.annotations, f.publicly_available) for f in report.files.all()])


def changes_for(report):
    details = {"incident_type": "Child Sex Trafficking", "annotations": ["sextortion"],
               "escalate_reason": "child at risk"}
    files = {f.pk: {"classification": "A1", "annotations": ["viral"], "publicly_available": False}
             for f in report.files.all()}
    return details, files


def test_a_report_edit_is_written_with_its_audit_row(users, report):
    details, files = changes_for(report)
    edit_report(users["specialist"], report, details, files, ip="10.0.0.11")
    assert snapshot(report) == (("Child Sex Trafficking", ["sextortion"], "child at risk"),
                                [("A1", ["viral"], False)])
    row = AuditEvent.objects.get(action="cybertip.edited")
    assert (row.actor, row.case_id, row.object_id, row.ip) == \
        (users["specialist"], report.case_id, str(report.pk), "10.0.0.11")
    assert set(row.details["changed"]) == {"incident_type", "annotations", "escalate_reason"}
    assert row.details["files"] == {str(pk): ["classification", "annotations", "publicly_available"]
                                    for pk in files}


def test_a_report_edit_whose_audit_row_fails_is_not_kept(users, report):
    before = snapshot(report)
    with mock.patch("cases.actions.cybertip.audit", broken_recorder), pytest.raises(RuntimeError):
        edit_report(users["specialist"], report, *changes_for(report))
    assert snapshot(report) == before
    assert not AuditEvent.objects.filter(action="cybertip.edited").exists()


def test_a_report_edit_failing_at_its_files_leaves_the_report_unchanged(users, report):
    before = snapshot(report)
    # The report row is saved first; the file's save fails after it.
    with mock.patch.object(CyberTipFile, "save", side_effect=RuntimeError("disk full")), \
            pytest.raises(RuntimeError):
        edit_report(users["specialist"], report, *changes_for(report))
    assert snapshot(report) == before
    assert not AuditEvent.objects.filter(action="cybertip.edited").exists()


@pytest.mark.parametrize("break_it", ["submitted", "incident", "classification", "public", "foreign_file"])
def test_a_refused_report_edit_changes_nothing(users, report, break_it):
    details, files = changes_for(report)
    (file_pk,) = files
    if break_it == "submitted":
        CyberTipReport.objects.filter(pk=report.pk).update(ncmec_report_id="12345")
    elif break_it == "incident":
        details["incident_type"] = "Nonsense"
    elif break_it == "classification":
        files[file_pk]["classification"] = "Z9"
    elif break_it == "public":
        files[file_pk]["publicly_available"] = "maybe"
    else:
        files[file_pk + 1000] = dict(files[file_pk])
    before = snapshot(report)
    with pytest.raises(ActionError):
        edit_report(users["specialist"], report, details, files)
    assert snapshot(report) == before
    assert not AuditEvent.objects.filter(action="cybertip.edited").exists()


def test_the_report_edit_form_goes_through_the_action(client, users, report):
    (report_file,) = report.files.all()
    client.force_login(users["specialist"])
    form = {"incident_type": "Child Sex Trafficking", "annotations": ["sextortion", "bogus"],
            f"file-{report_file.pk}-classification": "B1", f"file-{report_file.pk}-public": "yes"}
    response = client.post(f"/reports/{report.pk}/edit/", form, follow=True, REMOTE_ADDR="10.0.0.12")
    assert "Report details saved." in response.content.decode()
    assert snapshot(report) == (("Child Sex Trafficking", ["sextortion"], ""), [("B1", [], True)])
    assert AuditEvent.objects.get(action="cybertip.edited").ip == "10.0.0.12"
    with mock.patch("cases.actions.cybertip.audit", broken_recorder), pytest.raises(RuntimeError):
        client.post(f"/reports/{report.pk}/edit/", {**form, "incident_type": INCIDENT_TYPES[0]})
    assert snapshot(report)[0][0] == "Child Sex Trafficking"
    response = client.post(f"/reports/{report.pk}/edit/", {"incident_type": "Nonsense"}, follow=True)
    assert "Choose one of NCMEC" in response.content.decode()
    assert AuditEvent.objects.filter(action="cybertip.edited").count() == 1


# The case page: a GET changes nothing; presence is reported by POST -----------------------------

def test_opening_the_case_page_writes_no_presence_row(client, users):
    case, _ = case_with_match()
    client.force_login(users["specialist"])
    before = Case.objects.values().get(pk=case.pk)
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert not CaseView.objects.exists()
    assert Case.objects.values().get(pk=case.pk) == before
    assert f'data-viewing="/cases/{case.pk}/viewing/"' in page  # the page reports itself by POST


def test_who_else_is_viewing_comes_from_the_presence_post(client, users):
    case, _ = case_with_match()
    client.force_login(users["specialist"])
    assert client.post(f"/cases/{case.pk}/viewing/").json() == {"others": []}
    client.force_login(users["reviewer"])
    assert "Also viewing: sam" in client.get(f"/cases/{case.pk}/").content.decode()
    assert client.post(f"/cases/{case.pk}/viewing/").json() == {"others": ["sam"]}
    client.force_login(users["specialist"])
    assert client.post(f"/cases/{case.pk}/viewing/").json() == {"others": ["rita"]}
    assert client.get(f"/cases/{case.pk}/viewing/").status_code == 405
