"""Tags on accounts and groups: who may set and remove which, idempotence, audit, and where they show."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from cases import subjects
from cases.actions import ActionError
from cases.actions.tags import tag_subject, untag_subject
from cases.models import SubjectTag, TagKind
from detection import intake
from detection.models import Account, Group
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa

pytestmark = pytest.mark.django_db

INVESTIGATORS = ["reviewer", "specialist", "senior", "analyst", "admin"]
SENIORS = ["senior", "admin"]
SENIOR_TAGS = [TagKind.SENIOR_ONLY, TagKind.LEGAL_HOLD, TagKind.TRUSTED_FLAGGER]


@pytest.fixture
def account(db):
    return intake.upsert_account("acct-t", {"screen_name": "tee"})[0]


@pytest.fixture
def group(db):
    return intake.upsert_group("grp-t", {"name": "Tee group"}, members=["acct-t"])[0]


def login(client, user):
    client.force_login(user)
    verify_2fa(client, user)


def tagged(action, user=None):
    rows = AuditEvent.objects.filter(action=action)
    return rows.filter(actor=user) if user else rows


class TestTagAction:
    @pytest.mark.parametrize("role", INVESTIGATORS)
    def test_any_investigator_may_mark_a_possible_minor_victim(self, users, account, role):
        row, created = tag_subject(users[role], account, TagKind.POSSIBLE_MINOR_VICTIM, "says 14 in bio", ip="10.0.0.1")
        assert created and row.set_by == users[role] and row.note == "says 14 in bio"
        event = tagged("subject.tagged", users[role]).get()
        assert event.object_type == "account" and event.object_id == str(account.pk)
        assert event.details["tag"] == "possible_minor_victim" and event.ip == "10.0.0.1"

    def test_a_second_add_changes_nothing(self, users, account):
        first, _ = tag_subject(users["reviewer"], account, TagKind.POSSIBLE_MINOR_VICTIM)
        again, created = tag_subject(users["analyst"], account, TagKind.POSSIBLE_MINOR_VICTIM, "another note")
        assert not created and again.pk == first.pk and again.set_by == users["reviewer"]
        assert SubjectTag.objects.count() == 1 and tagged("subject.tagged").count() == 1

    @pytest.mark.parametrize("role", ["reviewer", "specialist", "analyst"])
    @pytest.mark.parametrize("tag", SENIOR_TAGS)
    def test_only_seniors_set_the_tags_that_change_how_a_subject_is_actioned(self, users, account, role, tag):
        with pytest.raises(ActionError, match="senior"):
            tag_subject(users[role], account, tag)
        assert not SubjectTag.objects.exists() and not tagged("subject.tagged").exists()

    @pytest.mark.parametrize("role", SENIORS)
    @pytest.mark.parametrize("tag", SENIOR_TAGS)
    def test_seniors_set_and_remove_them(self, users, group, role, tag):
        row, created = tag_subject(users[role], group, tag)
        assert created and row.group == group
        removed, changed = untag_subject(users[role], row.pk, ip="10.0.0.2")
        assert changed and removed.removed_by == users[role] and removed.removed_at
        event = tagged("subject.tag_removed", users[role]).get()
        assert event.object_type == "group" and event.details["tag_id"] == row.pk

    @pytest.mark.parametrize("role", ["reviewer", "analyst"])
    def test_only_seniors_remove_them(self, users, account, role):
        row, _ = tag_subject(users["senior"], account, TagKind.SENIOR_ONLY)
        with pytest.raises(ActionError):
            untag_subject(users[role], row.pk)
        row.refresh_from_db()
        assert row.removed_at is None and not tagged("subject.tag_removed").exists()

    def test_removing_twice_changes_nothing_and_a_new_add_is_a_new_row(self, users, account):
        row, _ = tag_subject(users["reviewer"], account, TagKind.POSSIBLE_MINOR_VICTIM)
        assert untag_subject(users["analyst"], row.pk)[1]
        assert not untag_subject(users["analyst"], row.pk)[1]
        assert tagged("subject.tag_removed").count() == 1
        again, created = tag_subject(users["reviewer"], account, TagKind.POSSIBLE_MINOR_VICTIM)
        assert created and again.pk != row.pk
        assert SubjectTag.objects.filter(removed_at__isnull=True).count() == 1

    @pytest.mark.parametrize("role", ["nobody", "liaison", "officer"])
    def test_people_who_do_not_investigate_may_not_tag(self, users, account, role):
        with pytest.raises(ActionError):
            tag_subject(users[role], account, TagKind.POSSIBLE_MINOR_VICTIM)

    def test_bad_input_is_refused_in_words(self, users, account):
        with pytest.raises(ActionError):
            tag_subject(users["senior"], account, "nonsense")
        with pytest.raises(ActionError):
            tag_subject(users["senior"], account, TagKind.POSSIBLE_MINOR_VICTIM, "x" * 501)
        with pytest.raises(ActionError):
            untag_subject(users["senior"], 999999)
        assert not SubjectTag.objects.exists()

    def test_live_tags_of_many_subjects_take_one_query(self, users, django_assert_num_queries):
        accounts = [intake.upsert_account(f"many-{i}", {})[0] for i in range(20)]
        groups = [intake.upsert_group(f"many-g-{i}", {})[0] for i in range(5)]
        for subject in accounts + groups:
            tag_subject(users["reviewer"], subject, TagKind.POSSIBLE_MINOR_VICTIM)
        with django_assert_num_queries(1):
            found = subjects.live_tags(accounts, groups)
            names = {t.set_by.get_username() for tags in found.values() for t in tags}
        assert len(found) == 25 and names == {"rita"}


class TestTagViews:
    def post(self, client, subject, data):
        name = "cases:account_tags" if isinstance(subject, Account) else "cases:group_tags"
        return client.post(reverse(name, args=[subject.pk]), data)

    @pytest.mark.parametrize("role", INVESTIGATORS)
    def test_it_tags_and_goes_back_to_the_subject_page(self, client, users, account, group, role):
        login(client, users[role])
        for subject in (account, group):
            response = self.post(client, subject, {"tag": "possible_minor_victim", "note": "n"})
            page = reverse("cases:account" if subject is account else "cases:group", args=[subject.pk])
            assert response.status_code == 302 and response["Location"] == page
        assert SubjectTag.objects.filter(set_by=users[role]).count() == 2

    @pytest.mark.parametrize("role", ["nobody", "liaison", "officer"])
    def test_it_refuses_everyone_else(self, client, users, account, role):
        login(client, users[role])
        response = self.post(client, account, {"tag": "possible_minor_victim"})
        assert response.status_code in (302, 403)
        if response.status_code == 302:  # officers are kept to their portal
            assert response["Location"] == reverse("cases:portal")
        assert not SubjectTag.objects.exists()

    def test_anonymous_users_are_sent_to_sign_in(self, client, account):
        response = self.post(client, account, {"tag": "possible_minor_victim"})
        assert response.status_code == 302 and "login" in response["Location"]
        assert not SubjectTag.objects.exists()

    def test_a_refusal_is_a_message(self, client, users, account):
        login(client, users["reviewer"])
        response = self.post(client, account, {"tag": "senior_only"})
        assert response.status_code == 302
        assert any("senior" in str(m) for m in get_messages(response.wsgi_request))
        assert not SubjectTag.objects.exists()
        body = client.get(reverse("cases:account", args=[account.pk])).content.decode()
        assert "Only a senior" in body

    def test_get_is_not_allowed_and_csrf_is_checked(self, users, account):
        strict = Client(enforce_csrf_checks=True)
        login(strict, users["senior"])
        assert strict.get(reverse("cases:account_tags", args=[account.pk])).status_code == 405
        assert strict.post(reverse("cases:account_tags", args=[account.pk]),
                           {"tag": "possible_minor_victim"}).status_code == 403
        assert not SubjectTag.objects.exists()

    def test_a_tag_is_removed_only_through_its_own_subject(self, client, users, account, group):
        row, _ = tag_subject(users["senior"], account, TagKind.POSSIBLE_MINOR_VICTIM)
        login(client, users["senior"])
        assert self.post(client, group, {"remove": row.pk}).status_code == 404
        row.refresh_from_db()
        assert row.removed_at is None
        assert self.post(client, account, {"remove": row.pk}).status_code == 302
        row.refresh_from_db()
        assert row.removed_by == users["senior"]

    @pytest.mark.parametrize("bad", [{"remove": "abc"}, {"remove": "9" * 40}, {"tag": ""}, {},
                                     {"tag": "x" * 5000}, {"tag": "possible_minor_victim", "note": "n" * 600}])
    def test_bad_input_gets_a_message_never_a_500(self, client, users, account, bad):
        login(client, users["senior"])
        response = self.post(client, account, bad)
        assert response.status_code == 302
        assert any(m.level_tag == "error" for m in get_messages(response.wsgi_request))
        assert not SubjectTag.objects.exists()

    def test_tags_show_with_who_set_them_on_the_subject_page(self, client, users, account, group):
        tag_subject(users["senior"], group, TagKind.LEGAL_HOLD, "preservation request MP-1")
        login(client, users["analyst"])
        body = client.get(reverse("cases:group", args=[group.pk])).content.decode()
        assert "Legal hold" in body and "sena" in body and "preservation request MP-1" in body
        # an analyst sees no button to remove a senior's tag
        assert 'name="remove"' not in body
        assert 'value="legal_hold"' not in body  # nor may pick it

    def test_seniors_may_pick_every_tag(self, client, users, account):
        login(client, users["senior"])
        body = client.get(reverse("cases:account", args=[account.pk])).content.decode()
        for tag in TagKind.values:
            assert f'value="{tag}"' in body


def test_the_tags_partial_renders_a_list(users, account):
    from django.template.loader import render_to_string

    tag_subject(users["reviewer"], account, TagKind.POSSIBLE_MINOR_VICTIM)
    html = render_to_string("cases/_tags.html", {"tags": subjects.live_tags([account])[("account", account.pk)]})
    assert "Possible minor victim" in html and "rita" in html
    assert render_to_string("cases/_tags.html", {"tags": []}).strip() == ""
    assert Group.objects.count() == 0


def test_the_trusted_flagger_tag_is_the_accounts_standing_as_a_reporter(users, account):
    from detection.models import Reporter
    from detection.reporters import report_weight
    assert report_weight(account.external_id).standing == "normal"
    tag, _ = tag_subject(users["senior"], account, TagKind.TRUSTED_FLAGGER, note="NGO hotline analyst")
    assert report_weight(account.external_id).standing == "trusted"
    assert Reporter.objects.get(external_id=account.external_id).trusted_by == users["senior"]
    assert AuditEvent.objects.filter(action="reporter.trusted").count() == 1
    untag_subject(users["senior"], tag.pk)
    assert report_weight(account.external_id).standing == "normal"
    assert AuditEvent.objects.filter(action="reporter.untrusted").count() == 1


# ------------------------------------------------------------------------------------------ what tags do

def claimed_case(user, seed=81, account="acct-tagged"):
    from cases.actions.claims import claim_case
    from tests.factories import case_with_match
    case, _ = case_with_match(seed=seed, account=account)
    return claim_case(user, case.pk)


def test_a_subject_tagged_senior_only_waits_for_a_senior(users):
    from cases.actions.decisions import decide, second_review
    case = claimed_case(users["reviewer"])
    tag_subject(users["senior"], case.account, TagKind.SENIOR_ONLY, note="police request open")
    decision, _ = decide(users["reviewer"], case.pk, policy="csam-known", version=case.version)
    assert decision.approval == "pending" and "do not action without a senior" in \
        decision.options["second_review_reason"]
    with pytest.raises(ActionError, match="only a senior may approve"):
        second_review(users["specialist"], decision.pk, approve=True)
    decision = second_review(users["senior"], decision.pk, approve=True)
    assert decision.approval == "approved"
    case.refresh_from_db()
    assert case.closed_at is not None


def test_a_senior_decides_a_senior_only_subject_at_once(users):
    from cases.actions.decisions import decide
    case = claimed_case(users["senior"])
    tag_subject(users["senior"], case.account, TagKind.SENIOR_ONLY)
    decision, _ = decide(users["senior"], case.pk, policy="csam-known", version=case.version)
    assert decision.approval != "pending"


def test_a_possible_minor_victim_tag_refuses_offender_policies(users):
    from cases.actions.decisions import decide
    case = claimed_case(users["specialist"])
    tag_subject(users["reviewer"], case.account, TagKind.POSSIBLE_MINOR_VICTIM, note="says she is 14")
    with pytest.raises(ActionError, match="possible minor victim"):
        decide(users["specialist"], case.pk, policy="csam-known", version=case.version)


@pytest.mark.parametrize("tag, why", [(TagKind.SENIOR_ONLY, "do not action without a senior"),
                                      (TagKind.POSSIBLE_MINOR_VICTIM, "possible minor victim")])
def test_automation_leaves_tagged_subjects_to_people(users, tag, why):
    from cases.actions.rules import apply_rules
    from cases.models import Decision, RuleFiring
    from detection.models import Bank
    from tests.factories import case_with_match
    from tests.test_rules import make_rule
    case, _ = case_with_match(seed=82, account="acct-auto")
    Bank.objects.filter(name="known").update(trust="verified")
    tag_subject(users["senior"], case.account, tag)
    make_rule(users["senior"])
    assert apply_rules([case.pk]) == {"held_back": 1}
    assert why in RuleFiring.objects.get(case=case).why
    assert not Decision.objects.exists()
