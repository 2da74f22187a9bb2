"""Submitting statements of reasons to the DSA Transparency Database: batches, refusals, duplicates, outages."""

from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.dsa import resubmit, statements_job, submission, submit_statements
from cases.models import Decision, DsaStatus, Ground, Restriction, Source, StatementOfReasons
from cases.statements import create_missing_statements
from reviewconsole.audit.models import AuditEvent
from tests.factories import ban_only, case_with_match
from tests.fake_dsa import TOKEN, FakeTransparencyDatabase, validate


@pytest.fixture
def tdb(settings):
    with FakeTransparencyDatabase() as server:
        settings.DSA_TDB_URL = server.url
        settings.DSA_TDB_TOKEN = TOKEN
        settings.DSA_TDB_BACKOFF_SECONDS = 60
        yield server


def decided(user, code="csam-known", *, seed=1, account="acct-1", days=None):
    case, _ = case_with_match(seed=seed, account=account)
    case = claim_case(user, case.pk)
    decision, _ = decide(user, case.pk, policy=code, version=case.version, ban_days=days)
    return decision


def statement_calls(tdb):
    return [call for call in tdb.calls if call[0] == "statements"]


@pytest.mark.django_db
class TestSubmission:
    def test_it_submits_each_statement_with_the_databases_fields(self, users, tdb):
        decided(users["specialist"])
        counts = statements_job()
        # The decision made its two statements (ban, removal); the job only sends them.
        assert counts["made"] == 0 and counts["submitted"] == 2 and StatementOfReasons.objects.count() == 2
        assert statement_calls(tdb) == [("statements", 2, 201)]
        for statement in StatementOfReasons.objects.all():
            assert statement.dsa_status == DsaStatus.SUBMITTED and statement.dsa_uuid and statement.dsa_submitted_at
            sent = tdb.statements[statement.puid]
            assert sent["category"] == "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
            assert sent["category_specification"] == ["KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL"]
            assert sent["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
            assert sent["automated_detection"] == "Yes"
            assert sent["automated_decision"] == "AUTOMATED_DECISION_NOT_AUTOMATED"
            assert sent["source_type"] == "SOURCE_VOLUNTARY" and "GR" in sent["territorial_scope"]
            assert "acct-1" not in str(sent)  # no personal data: the target is never named
        ban = tdb.statements[StatementOfReasons.objects.get(action="ban_account").puid]
        removal = tdb.statements[StatementOfReasons.objects.get(action="remove_content").puid]
        assert ban["decision_account"] == "DECISION_ACCOUNT_TERMINATED" and ban["content_type"] == [
            "CONTENT_TYPE_OTHER"]
        assert removal["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_REMOVED"]
        assert removal["content_type"] == ["CONTENT_TYPE_IMAGE"]
        assert AuditEvent.objects.filter(action="dsa.statements_submitted").count() == 1

    def test_a_job_run_twice_submits_each_statement_once(self, users, tdb):
        decided(users["specialist"])
        statements_job()
        statements_job()
        assert statement_calls(tdb) == [("statements", 2, 201)] and len(tdb.statements) == 2

    def test_nothing_is_sent_without_a_token(self, users, tdb, settings):
        settings.DSA_TDB_TOKEN = ""
        decided(users["specialist"])
        assert statements_job()["made"] == 0 and StatementOfReasons.objects.count() == 2
        assert submit_statements()["submitted"] == 0
        assert tdb.calls == []
        assert set(StatementOfReasons.objects.values_list("dsa_status", flat=True)) == {DsaStatus.PENDING}

    def test_a_refused_statement_needs_attention_and_the_others_go(self, users, tdb):
        decided(users["specialist"])
        create_missing_statements()
        bad = StatementOfReasons.objects.get(action="ban_account")
        StatementOfReasons.objects.filter(pk=bad.pk).update(legal_ground="")  # the database requires one
        counts = submit_statements()
        assert counts["failed"] == 1 and counts["submitted"] == 1
        bad.refresh_from_db()
        assert bad.dsa_status == DsaStatus.FAILED and "illegal_content_legal_ground" in bad.dsa_last_error
        good = StatementOfReasons.objects.get(action="remove_content")
        assert good.dsa_status == DsaStatus.SUBMITTED and good.dsa_attempts == 1
        assert [c[2] for c in statement_calls(tdb)] == [422, 201]
        assert AuditEvent.objects.filter(action="dsa.statement_refused", object_id=str(bad.pk)).exists()
        assert submit_statements()["failed"] == 0 and len(statement_calls(tdb)) == 2  # not sent again
        # Fixed, then sent again from the admin's action, audited.
        StatementOfReasons.objects.filter(pk=bad.pk).update(legal_ground="18 U.S.C. 2258A")
        assert resubmit(users["admin"], [bad.pk, good.pk]) == 1
        assert AuditEvent.objects.filter(action="dsa.statements_resubmitted", actor=users["admin"]).exists()
        assert submit_statements()["submitted"] == 1

    def test_a_statement_the_database_already_has_counts_as_submitted(self, users, tdb):
        decided(users["specialist"])
        create_missing_statements()
        earlier = StatementOfReasons.objects.get(action="ban_account")
        tdb.statements[earlier.puid] = {"puid": earlier.puid, "uuid": "kept"}  # a run cut short after the send
        counts = submit_statements()
        assert counts["already"] == 1 and counts["submitted"] == 1
        assert [c[2] for c in statement_calls(tdb)] == [422, 201]
        assert set(StatementOfReasons.objects.values_list("dsa_status", flat=True)) == {DsaStatus.SUBMITTED}

    @pytest.mark.parametrize("fault", [503, "drop"])
    def test_an_outage_is_retried_with_backoff_and_loses_nothing(self, users, tdb, fault):
        decided(users["specialist"])
        tdb.fail_next(2, fault)
        assert statements_job()["retry"] == 2
        first = StatementOfReasons.objects.first()
        assert first.dsa_status == DsaStatus.PENDING and first.dsa_last_error
        assert ("HTTP 503" if fault == 503 else "connection") in first.dsa_last_error
        wait = (first.dsa_next_attempt_at - timezone.now()).total_seconds()
        assert 50 < wait <= 60
        assert submit_statements()["retry"] == 0 and len(tdb.calls) == 1  # not due yet
        StatementOfReasons.objects.update(dsa_next_attempt_at=timezone.now())
        submit_statements()
        first.refresh_from_db()
        assert 110 < (first.dsa_next_attempt_at - timezone.now()).total_seconds() <= 120  # doubled
        StatementOfReasons.objects.update(dsa_next_attempt_at=timezone.now())
        assert submit_statements()["submitted"] == 2
        assert len(tdb.statements) == 2

    def test_a_refused_token_waits_instead_of_failing_the_statements(self, users, tdb, settings):
        settings.DSA_TDB_TOKEN = "X|wrong"
        decided(users["specialist"])
        assert statements_job()["retry"] == 2
        statement = StatementOfReasons.objects.first()
        assert statement.dsa_status == DsaStatus.PENDING and "HTTP 401" in statement.dsa_last_error

    def test_an_internal_address_is_refused(self, users, tdb, settings):
        settings.DSA_TDB_URL = "http://169.254.169.254/api/v1"
        decided(users["specialist"])
        statements_job()
        statement = StatementOfReasons.objects.first()
        assert statement.dsa_status == DsaStatus.PENDING and "refused" in statement.dsa_last_error
        assert tdb.calls == []

    def test_an_undone_decision_is_withdrawn_not_sent(self, users, tdb):
        decision = decided(users["specialist"])
        create_missing_statements()
        Decision.objects.filter(pk=decision.pk).update(undone_at=timezone.now())
        assert submit_statements()["withdrawn"] == 2 and tdb.calls == []

    def test_nothing_leaves_before_the_undo_window_closes(self, users, tdb, settings):
        settings.UNDO_SECONDS = 600
        decided(users["specialist"])
        StatementOfReasons.objects.all().delete()
        create_missing_statements()
        assert submit_statements()["submitted"] == 0 and tdb.calls == []
        StatementOfReasons.objects.update(decided_at=timezone.now() - timedelta(seconds=601))
        assert submit_statements()["submitted"] == 2

    def test_batches_are_at_most_the_size_set(self, users, tdb):
        decided(users["specialist"], seed=1, account="acct-1")
        decided(users["specialist"], seed=2, account="acct-2")
        assert submit_statements(batch=3)["submitted"] == 4
        assert [c[1] for c in statement_calls(tdb)] == [3, 1]


def built(**fields):
    now = timezone.now()
    values = {"uid": "00000000-0000-4000-8000-000000000001", "action": "ban_account", "target": "t",
              "restriction": Restriction.ACCOUNT_TERMINATED, "content_type": "account", "content_date": now,
              "facts": "Facts.", "automated_detection": True, "automated_decision": False,
              "source": Source.OWN_INITIATIVE, "ground": Ground.ILLEGAL_CONTENT, "legal_ground": "Law",
              "category": "known_csam", "policy_code": "csam-known", "decided_at": now}
    return StatementOfReasons(**{**values, **fields})


@pytest.mark.parametrize("fields", [
    {},
    {"restriction": Restriction.ACCOUNT_SUSPENDED, "until": timezone.now() + timedelta(days=7)},
    {"restriction": Restriction.GROUP_TERMINATED, "content_type": "group", "category": "distribution_group"},
    {"restriction": Restriction.GROUP_SUSPENDED, "content_type": "group", "until": timezone.now() + timedelta(days=1)},
    {"restriction": Restriction.CONTENT_REMOVED, "content_type": "video", "category": "grooming"},
    {"restriction": Restriction.CONTENT_REMOVED, "content_type": "text", "category": "adult_nudity",
     "ground": Ground.INCOMPATIBLE_CONTENT, "legal_ground": "", "terms_ground": "Terms: nudity",
     "source": Source.NOTICE, "automated_decision": True},
    {"category": "other_violation", "ground": Ground.INCOMPATIBLE_CONTENT, "legal_ground": ""},
])
def test_every_kind_of_statement_fits_the_databases_schema(fields):
    assert validate(submission(built(**fields))) == {}


def test_the_fake_refuses_what_the_database_refuses():
    body = submission(built())
    assert "illegal_content_legal_ground" in validate({**body, "illegal_content_legal_ground": ""})
    assert "territorial_scope" in validate({**body, "territorial_scope": ["US"]})
    assert "automated_decision" in validate({**body, "automated_decision": "Yes"})
    assert "puid" in validate({**body, "puid": "has space"})
    assert "decision_account" in validate({k: v for k, v in body.items() if k != "decision_account"})


@pytest.mark.django_db
def test_a_timed_ban_is_sent_as_a_suspension_with_its_end(users, tdb):
    decision = decided(users["specialist"], ban_only().code, days=7)
    statements_job()
    (sent,) = tdb.statements.values()
    assert sent["decision_account"] == "DECISION_ACCOUNT_SUSPENDED"
    assert sent["end_date_account_restriction"] == decision.ban_until.astimezone(UTC).strftime("%Y-%m-%d")
    assert sent["decision_ground"] == "DECISION_GROUND_INCOMPATIBLE_CONTENT"
    assert sent["category"] == "STATEMENT_CATEGORY_OTHER_VIOLATION_TC"
