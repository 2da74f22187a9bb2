"""Statements of reasons (DSA Art. 17): one per restricted target, safe words, delivered with enforcement."""

import json

import pytest
from django.db import IntegrityError

from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.dispatch import dispatch_enforcement
from cases.models import (
    Enforcement,
    Ground,
    Platform,
    Policy,
    PolicyCategory,
    Restriction,
    Source,
    StatementOfReasons,
)
from cases.statements import create_missing_statements, create_statements, statement_for
from detection import intake
from tests.factories import ban_only, case_with_match, policy, remove_only, triage_all
from tests.webhook_server import WebhookServer

# What must never reach an offender about how child-exploitation material was found.
DETECTION_WORDS = ("bank", "hash", "pdq", "md5", "phash", "dhash", "distance", "score", "classifier", "rule ",
                   "threshold", "match")


def decided(user, code, *, days=None, **kwargs):
    case, item = case_with_match(**kwargs)
    case = claim_case(user, case.pk)
    decision, _ = decide(user, case.pk, policy=code, version=case.version, ban_days=days)
    return decision, item


@pytest.mark.django_db
class TestStatements:
    def test_it_makes_one_statement_per_restricted_target_whatever_the_platforms(self, users):
        Platform.objects.create(name="chat", webhook_url="https://chat.example.org/hook")
        Platform.objects.create(name="web", webhook_url="https://web.example.org/hook")
        decision, item = decided(users["specialist"], "csam-known")
        rows = list(Enforcement.objects.filter(decision=decision))
        assert {e.action for e in rows} == {"ban_account", "remove_content"} and len(rows) == 4
        found = create_statements(rows)
        assert len(found) == 2 and StatementOfReasons.objects.count() == 2
        ban = StatementOfReasons.objects.get(action="ban_account")
        assert ban.restriction == Restriction.ACCOUNT_TERMINATED and ban.permanent and ban.target == "acct-1"
        removal = StatementOfReasons.objects.get(action="remove_content")
        assert removal.restriction == Restriction.CONTENT_REMOVED and removal.content_type == "image"
        assert removal.case_id == decision.case_id and removal.policy_code == "csam-known"

    def test_making_them_again_makes_nothing_more(self, users):
        decision, _ = decided(users["specialist"], "csam-known")
        rows = list(Enforcement.objects.filter(decision=decision))
        first = create_statements(rows)
        again = create_statements(rows)
        assert first == again and StatementOfReasons.objects.count() == 2
        assert create_missing_statements() == 0
        with pytest.raises(IntegrityError):
            StatementOfReasons.objects.create(**{
                f.attname: getattr(first[next(iter(first))], f.attname)
                for f in StatementOfReasons._meta.concrete_fields if f.attname not in ("id", "uid")})

    def test_the_decision_makes_its_statements_and_the_cron_net_any_that_are_missing(self, users):
        decided(users["specialist"], "csam-known")
        assert StatementOfReasons.objects.count() == 2  # made in the decision's transaction
        StatementOfReasons.objects.all().delete()  # as if made by code from before statements existed
        assert create_missing_statements() == 2
        assert create_missing_statements() == 0

    def test_a_child_exploitation_statement_says_nothing_of_how_it_was_found(self, users):
        policy_row = Policy.objects.get(code="csam-known")
        assert not policy_row.show_detection_detail and policy_row.legal_ground.startswith("18 U.S.C. 2256")
        decision, _ = decided(users["specialist"], "csam-known")
        create_missing_statements()
        for statement in StatementOfReasons.objects.filter(decision=decision):
            words = json.dumps(statement.as_json()).lower()
            for word in DETECTION_WORDS:
                assert word not in words.replace("automated detection", ""), (word, statement.facts)
            assert statement.ground == Ground.ILLEGAL_CONTENT and "2011/93/EU" in statement.legal_ground
            assert statement.automated_detection and not statement.automated_decision
            assert statement.source == Source.OWN_INITIATIVE

    def test_a_reportable_policy_cannot_show_detection_detail(self, users):
        row = Policy.objects.get(code="grooming")
        row.show_detection_detail = True
        row.save()
        row.refresh_from_db()
        assert row.show_detection_detail is False
        with pytest.raises(IntegrityError):
            Policy.objects.filter(pk=row.pk).update(show_detection_detail=True)

    def test_a_platform_rule_statement_may_name_what_was_found_when_the_policy_allows(self, users):
        policy("nudity-detail", category=PolicyCategory.ADULT_NUDITY, remove="flagged", show_detection_detail=True)
        decision, _ = decided(users["specialist"], "nudity-detail")
        (statement,) = create_statements(Enforcement.objects.filter(decision=decision)).values()
        assert statement.ground == Ground.INCOMPATIBLE_CONTENT and statement.terms_ground.startswith("Terms of")
        assert "What was found:" in statement.facts and not statement.legal_ground

    def test_a_timed_ban_is_a_suspension_until_its_end(self, users):
        decision, _ = decided(users["specialist"], ban_only().code, days=7)
        (statement,) = create_statements(Enforcement.objects.filter(decision=decision)).values()
        assert statement.restriction == Restriction.ACCOUNT_SUSPENDED and statement.until == decision.ban_until
        assert not statement.permanent and statement.as_json()["until"] == decision.ban_until.isoformat()

    def test_a_user_report_is_a_notice_and_not_automated_detection(self, users):
        intake.submit_report(reporter="u-1", reason="other", account_id="acct-9")
        (case,) = triage_all()
        case = claim_case(users["specialist"], case.pk)
        decision, _ = decide(users["specialist"], case.pk, policy=ban_only().code, version=case.version)
        (statement,) = create_statements(Enforcement.objects.filter(decision=decision)).values()
        assert statement.source == Source.NOTICE and not statement.automated_detection
        assert "reported by a user" in statement.facts

    def test_protection_and_undone_decisions_get_none(self, users):
        decision, _ = decided(users["specialist"], remove_only().code)
        rows = list(Enforcement.objects.filter(decision=decision))
        rows[0].status = "cancelled"
        assert create_statements(rows) == {}
        rows[0].action, rows[0].status = "protect_account", "pending"
        assert statement_for(rows[0]) is None

    def test_every_statement_says_how_to_appeal(self, users, settings):
        settings.STATEMENT_APPEAL_URL = "https://chat.example.org/appeal"
        decision, _ = decided(users["specialist"], remove_only().code)
        (statement,) = create_statements(Enforcement.objects.filter(decision=decision)).values()
        redress = statement.as_json()["redress"]
        assert redress["url"] == "https://chat.example.org/appeal"
        assert [o["type"] for o in redress["options"]] == [
            "internal_complaint", "out_of_court_dispute_settlement", "judicial_redress"]

    def test_existing_policies_got_their_texts(self):
        for code in ("csam-known", "grooming", "distribution-group", "adult-nudity"):
            row = Policy.objects.get(code=code)
            assert row.user_facing_facts, code
        assert Policy.objects.get(code="adult-nudity").terms_ground
        assert "2422" in Policy.objects.get(code="grooming").legal_ground


@pytest.mark.django_db
def test_the_webhook_and_the_pull_api_carry_the_statement(users, api):
    with WebhookServer() as hook:
        Platform.objects.create(name="chat", webhook_url=hook.url)
        decision, _ = decided(users["specialist"], ban_only().code)
        (enforcement,) = Enforcement.objects.filter(decision=decision)
        assert dispatch_enforcement(enforcement.pk) == "delivered"
        body = json.loads(hook.received[0]["body"])
    statement = StatementOfReasons.objects.get(decision=decision)
    assert body["statement_of_reasons"]["id"] == statement.puid
    assert body["statement_of_reasons"]["restriction"] == "account_terminated"
    results = api.get("/api/v1/enforcements?status=all").json()["results"]
    assert results[0]["statement_of_reasons"]["id"] == statement.puid


@pytest.mark.django_db
def test_the_case_page_shows_the_statement(client, users):
    decision, _ = decided(users["specialist"], "csam-known")
    create_missing_statements()
    client.force_login(users["senior"])
    page = client.get(f"/cases/{decision.case_id}/").content.decode()
    assert "Statements of reasons" in page and "Account terminated" in page
    assert "child sexual abuse material" in page
