"""Automated decisions taken together: the same rows as one at a time, in far fewer statements."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.actions.rules import apply_rules, breakers
from cases.actions.tags import tag_subject
from cases.models import (
    Breaker,
    Case,
    CaseStatus,
    CyberTipReport,
    Decision,
    Enforcement,
    FiringOutcome,
    LegalHold,
    QAReview,
    RuleFiring,
    TagKind,
)
from detection.banks import LOCAL_BANK
from detection.models import Account, Bank, BankHash, BankHashOutcome, Item, SharedMediaRequest
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from tests.test_rules import make_rule, verified_case

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_breakers():
    breakers.reset()
    yield
    breakers.reset()


def known_cases(n):
    return [verified_case(seed=seed, account=f"acct-{seed}")[0] for seed in range(1, n + 1)]


def what_was_done(case_ids):
    """Every row the decisions of these cases wrote, with the ids of rows they created put in words,
    so that two runs that made the same rows compare equal."""
    decisions = {d.case_id: d for d in Decision.objects.filter(case__in=case_ids).select_related(
        "reason", "policy", "decided_by")}
    name = {}
    for case_id, decision in decisions.items():
        name[("decision", decision.pk)] = f"decision of case {case_id}"
    reports = {r.case_id: r for r in CyberTipReport.objects.filter(case__in=case_ids)}
    for case_id, report in reports.items():
        name[("report", report.pk)] = f"report of case {case_id}"
    entries = {e.pk: (e.hash_type, e.value, e.label) for e in BankHash.objects.filter(bank__name=LOCAL_BANK)}

    def words(details):
        out = {}
        for key, value in (details or {}).items():
            if key == "cybertip_report":
                out[key] = name[("report", value)]
            elif key == "decision":
                out[key] = name[("decision", value)]
            else:
                out[key] = value
        return out

    def about(event):
        if event.object_type == "decision":
            return name[("decision", int(event.object_id))]
        if event.object_type == "bank":
            return Bank.objects.get(pk=event.object_id).name
        return event.object_id

    done = {}
    for case_id in case_ids:
        case = Case.objects.select_related("account").get(pk=case_id)
        decision = decisions.get(case_id)
        row = {"case": (case.status, case.resolution, case.version, case.closed_at is not None),
               "account": (case.account.status, case.account.banned_at is not None),
               "items_removed": sorted(Item.objects.filter(signals__case=case, removed_at__isnull=False)
                                       .values_list("pk", flat=True)),
               "firings": sorted((f.rule_version_id, f.signal_id, f.bank_id, f.bank_hash_id, f.outcome, f.why,
                                  f.decision_id is not None) for f in RuleFiring.objects.filter(case=case)),
               "audit": sorted((a.action, a.actor_label, a.object_type, about(a),
                                sorted(words(a.details).items(), key=str))
                               for a in AuditEvent.objects.filter(case=case))}
        if decision is not None:
            options = dict(decision.options)
            options["bank_entries"] = sorted(entries[pk] for pk in options.get("bank_entries", []))
            row["decision"] = (decision.case_version, decision.action, decision.reason.code, decision.policy.code,
                               decision.policy_version, decision.rule_version_id, decision.note,
                               decision.decided_by.get_username(), sorted(options.items(), key=str))
            row["enforcements"] = sorted((e.action, e.target, sorted(e.payload.items()), e.status, e.platform_id,
                                          e.next_attempt_at - decision.created_at if e.next_attempt_at else None)
                                         for e in Enforcement.objects.filter(decision=decision))
            row["qa"] = QAReview.objects.filter(decision=decision).exists()
            row["outcomes"] = sorted((o.bank_hash_id, o.outcome, o.item_id)
                                     for o in BankHashOutcome.objects.filter(decision=decision))
            row["shared_media"] = sorted((r.account_id, r.reason) for r in
                                         SharedMediaRequest.objects.filter(decision_id=decision.pk))
        report = reports.get(case_id)
        if report is not None:
            row["report"] = (report.status, report.incident_type, report.additional_info,
                             report.created_by.get_username(),
                             sorted(report.files.values_list("item_id", flat=True)),
                             sorted((h.item_id, h.reason, h.note.replace(str(report.pk), "R"), h.lifted_at)
                                    for h in LegalHold.objects.filter(report=report)))
        done[case_id] = row
    return done


def test_a_batch_of_automated_decisions_writes_what_one_at_a_time_writes(users):
    cases = known_cases(4)
    make_rule(users["senior"], qa_percent_new=100)  # every decision sampled: the draw is not compared
    ids = [case.pk for case in cases]
    with transaction.atomic():
        mark = transaction.savepoint()
        assert apply_rules(ids) == {FiringOutcome.DECIDED: 4}
        together = what_was_done(ids)
        transaction.savepoint_rollback(mark)
    breakers.reset()
    assert not Decision.objects.exists()
    assert [apply_rules([pk]) for pk in ids] == [{FiringOutcome.DECIDED: 1}] * 4
    one_by_one = what_was_done(ids)
    for case_id in ids:
        for what, rows in one_by_one[case_id].items():
            assert together[case_id][what] == rows, (case_id, what)
    assert together == one_by_one
    for row in together.values():  # and it is what a decision under the policy does
        assert row["case"][0] == CaseStatus.CLOSED and row["account"][0] == "banned"
        assert row["report"][0] == CyberTipReport.Status.QUEUED and row["report"][4] and row["report"][5]
        assert {e[0] for e in row["enforcements"]} == {"ban_account", "remove_content"}
        assert row["outcomes"] and row["shared_media"] and row["qa"]
        assert [a[0] for a in row["audit"]].count("case.report") == 1
        assert dict(row["decision"][8])["bank_entries"]


def test_a_held_back_case_is_recorded_and_the_rest_of_the_batch_is_decided(users):
    cases = known_cases(4)
    Case.objects.filter(pk=cases[1].pk).update(possible_minor_victim="stated age 13")
    tag_subject(users["senior"], Account.objects.get(pk=cases[2].account_id), TagKind.SENIOR_ONLY, note="VIP")
    versions = {case.pk: Case.objects.get(pk=case.pk).version for case in cases}
    make_rule(users["senior"], qa_percent_new=0)
    assert apply_rules([case.pk for case in cases]) == {FiringOutcome.DECIDED: 2, FiringOutcome.HELD_BACK: 2}
    for held, why in ((cases[1], "child victim"), (cases[2], "senior")):
        firing = RuleFiring.objects.get(case=held)
        assert firing.outcome == FiringOutcome.HELD_BACK and why in firing.why
        case = Case.objects.get(pk=held.pk)
        assert case.status == CaseStatus.OPEN and case.version == versions[held.pk]  # a reviewer's page stays current
        assert AuditEvent.objects.filter(case=held, action=Event.RULE_FIRED, details__effect="held_back").count() == 1
        assert not Decision.objects.filter(case=held).exists()
    for decided in (cases[0], cases[3]):
        assert Case.objects.get(pk=decided.pk).status == CaseStatus.CLOSED
        assert CyberTipReport.objects.filter(case=decided).count() == 1
    assert apply_rules([case.pk for case in cases]) == {}  # a rule version acts on a case once


def test_a_concurrent_firing_on_one_case_does_not_lose_the_rest_of_the_batch(users, monkeypatch):
    cases = known_cases(3)
    rule = make_rule(users["senior"], qa_percent_new=0)
    version = rule.versions.first()
    from cases.actions import rules

    real_first_hit = rules.first_hit

    def first_hit_while_another_triage_fires(version_, case, signals, facts):
        hit = real_first_hit(version_, case, signals, facts)
        if case.pk == cases[1].pk and hit:
            # Another triage job of the same case fires the version between our reading and our deciding.
            RuleFiring.objects.create(rule_version=version, rule=rule, case=case, signal=hit[0],
                                      outcome=FiringOutcome.HELD_BACK, why="a person has the case")
        return hit

    monkeypatch.setattr(rules, "first_hit", first_hit_while_another_triage_fires)
    outcomes = apply_rules([case.pk for case in cases])
    assert outcomes == {FiringOutcome.DECIDED: 2, FiringOutcome.HELD_BACK: 1}
    assert not Decision.objects.filter(case=cases[1]).exists()
    assert Case.objects.get(pk=cases[1].pk).status == CaseStatus.OPEN
    assert RuleFiring.objects.filter(case=cases[1]).count() == 1
    assert not CyberTipReport.objects.filter(case=cases[1]).exists()
    for decided in (cases[0], cases[2]):
        assert Decision.objects.filter(case=decided).count() == 1
        assert CyberTipReport.objects.filter(case=decided).count() == 1
        assert AuditEvent.objects.filter(case=decided, object_type="decision").count() == 1


def test_a_case_a_person_decides_first_gets_one_decision(users, monkeypatch):
    cases = known_cases(2)
    make_rule(users["senior"], qa_percent_new=0)
    from cases.actions import rules

    real_first_hit = rules.first_hit
    reviewer = users["specialist"]

    def first_hit_while_a_person_decides(version_, case, signals, facts):
        hit = real_first_hit(version_, case, signals, facts)
        if case.pk == cases[0].pk and hit and not Decision.objects.filter(case=case).exists():
            claimed = claim_case(reviewer, case.pk)
            decide(reviewer, case.pk, policy="csam-known", version=claimed.version)
        return hit

    monkeypatch.setattr(rules, "first_hit", first_hit_while_a_person_decides)
    assert apply_rules([case.pk for case in cases]) == {FiringOutcome.DECIDED: 1, FiringOutcome.HELD_BACK: 1}
    assert Decision.objects.filter(case=cases[0]).get().decided_by == reviewer
    assert RuleFiring.objects.get(case=cases[0]).why == "a person has the case"
    assert Decision.objects.filter(case=cases[1]).get().rule_version_id is not None


def test_the_rule_breaker_counts_within_a_batch_as_one_at_a_time(users):
    cases = known_cases(4)
    rule = make_rule(users["senior"], breaker_per_hour=2, qa_percent_new=0)
    assert apply_rules([case.pk for case in cases]) == {FiringOutcome.DECIDED: 3, FiringOutcome.BREAKER: 1}
    breaker = Breaker.objects.get(scope="rule", object_id=rule.pk)
    assert "3 times in the last hour" in breaker.reason
    stopped = RuleFiring.objects.get(outcome=FiringOutcome.BREAKER)
    assert stopped.case.status == CaseStatus.OPEN and not Decision.objects.filter(case=stopped.case).exists()


def test_each_further_decision_of_a_batch_costs_a_few_statements(users):
    cases = known_cases(11)
    make_rule(users["senior"], qa_percent_new=0)
    with CaptureQueriesContext(connection) as one:
        assert apply_rules([cases[0].pk]) == {FiringOutcome.DECIDED: 1}
    with CaptureQueriesContext(connection) as ten:
        assert apply_rules([case.pk for case in cases[1:]]) == {FiringOutcome.DECIDED: 10}
    # One at a time, each decision took about 55 statements; together the tenth costs what the first did.
    assert (len(ten) - len(one)) / 9 <= 3, [q["sql"][:80] for q in ten.captured_queries]
    assert Account.objects.filter(status="banned").count() == 11
    assert AuditEvent.objects.filter(object_type="decision", action__startswith="case.").count() == 11
