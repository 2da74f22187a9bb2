"""Automation rules in the real pipeline: an API upload through real RQ workers ends decided by a rule.

Transactional tests: jobs are enqueued only after a commit, as in production.
"""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from cases.actions.rules import _spec_of, backtest, current_version, save_rule
from cases.jobs import apply_rules_recent
from cases.models import Case, CaseStatus, Decision, Enforcement, FiringOutcome, Rule, RuleFiring, RuleMode
from detection.models import Bank
from reviewconsole.devtools import synthetic
from tests.conftest import drain, make_user
from tests.factories import known_bank

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.usefixtures("redis_conn")]

CONDITIONS = [{"field": "signal.kind", "op": "eq", "value": "hash_match"},
              {"field": "bank.trust", "op": "eq", "value": "verified"}]


def rule_on(senior):
    rule = Rule(code="verified-known", title="Verified known material", qa_percent_new=0)
    save_rule(senior, rule, conditions_list=CONDITIONS, effect="apply_policy", policy_code="csam-known",
              mode=RuleMode.SHADOW)
    backtest(senior, rule, _spec_of(current_version(rule)), days=1)
    save_rule(senior, rule, conditions_list=CONDITIONS, effect="apply_policy", policy_code="csam-known",
              mode=RuleMode.ON)
    return rule


def upload(api, seed, account, edit="watermarked"):
    data = synthetic.encode(synthetic.EDITS[edit](synthetic.make_image(seed)))
    response = api.post("/api/v1/items", {"file": SimpleUploadedFile("x.jpg", data, "image/jpeg"),
                                          "account": account})
    assert response.status_code == 202


def test_an_upload_matching_a_verified_bank_is_decided_by_the_rule_and_enforced(api, settings):
    settings.UNDO_SECONDS = 0
    known_bank([21])
    Bank.objects.filter(name="known").update(trust="verified")
    rule = rule_on(make_user("sena", "senior"))
    upload(api, 21, "acct-ring-1")
    upload(api, 22, "acct-benign")  # not in any bank
    drain()
    decision = Decision.objects.get()
    assert decision.rule_version.rule == rule and decision.case.account.external_id == "acct-ring-1"
    assert decision.case.status == CaseStatus.CLOSED
    assert Enforcement.objects.filter(decision=decision, action="ban_account").exists()
    assert not Case.objects.filter(account__external_id="acct-benign").exists()


def test_cases_whose_triage_lost_the_rules_are_decided_by_the_periodic_run(api, settings, redis_conn):
    known_bank([23])
    Bank.objects.filter(name="known").update(trust="verified")
    upload(api, 23, "acct-ring-2")
    drain()  # triaged before any rule existed
    assert Case.objects.count() == 1
    rule_on(make_user("sena", "senior"))
    assert apply_rules_recent(settle_seconds=0) == 1
    assert RuleFiring.objects.get().outcome == FiringOutcome.DECIDED
    assert apply_rules_recent(settle_seconds=0) == 0  # closed: nothing left to look at
    call_command("sweep", "--older-than", "0", verbosity=0)
    drain()
    assert Decision.objects.count() == 1
