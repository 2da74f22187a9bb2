"""Automation rules: versions, modes, guardrails, backtest, QA sampling, circuit breakers, rollback, pages."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from cases.actions import ActionError
from cases.actions.claims import claim_case
from cases.actions.cybertip import approve
from cases.actions.decisions import decide
from cases.actions.evidence import record_evidence_view
from cases.actions.rules import (
    AUTOMATION_USERNAME,
    apply_rules,
    backtest,
    breakers,
    resume_breaker,
    rollback_candidates,
    rollback_rule,
    save_rule,
)
from cases.models import (
    Breaker,
    Case,
    CaseStatus,
    CyberTipReport,
    Decision,
    Enforcement,
    EnforcementStatus,
    FiringOutcome,
    Policy,
    QAReview,
    Rule,
    RuleFiring,
    RuleMode,
)
from detection.models import Account, Bank, BankHash, EntryStatus, SubjectStatus
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa
from tests.factories import case_with_match, encoded, known_bank, scanned_item, triage_all

pytestmark = pytest.mark.django_db

KNOWN_VERIFIED = [{"field": "signal.kind", "op": "eq", "value": "hash_match"},
                  {"field": "bank.trust", "op": "eq", "value": "verified"},
                  {"field": "match.distance", "op": "le", "value": 20}]


@pytest.fixture(autouse=True)
def _fresh_breakers():
    breakers.reset()
    yield
    breakers.reset()


def make_rule(user, code="known-verified", conditions=KNOWN_VERIFIED, policy_code="csam-known", mode=RuleMode.ON,
              **fields):
    """A rule saved in shadow, backtested, then set to `mode`, as a senior would."""
    rule = Rule(code=code, title=code.replace("-", " ").capitalize(), **fields)
    save_rule(user, rule, conditions_list=conditions, effect="apply_policy", policy_code=policy_code,
              mode=RuleMode.SHADOW)
    if mode == RuleMode.ON:
        from cases.actions.rules import _spec_of, current_version
        backtest(user, rule, _spec_of(current_version(rule)), days=7)
    if mode != RuleMode.SHADOW:
        save_rule(user, rule, conditions_list=conditions, effect="apply_policy", policy_code=policy_code, mode=mode)
    return rule


def verified_case(seed=1, account="acct-1"):
    case, item = case_with_match(seed=seed, account=account)
    Bank.objects.filter(name="known").update(trust="verified")
    return case, item


def test_saving_a_rule_versions_it_and_audits_each_change(users):
    senior = users["senior"]
    rule = make_rule(senior, mode=RuleMode.SHADOW)
    assert rule.version == 1 and rule.versions.count() == 1
    save_rule(senior, rule, conditions_list=KNOWN_VERIFIED[:2], effect="apply_policy", policy_code="csam-known",
              mode=RuleMode.SHADOW, note="distance left to the bank's threshold")
    assert rule.version == 2
    assert rule.versions.first().conditions == KNOWN_VERIFIED[:2]
    events = list(AuditEvent.objects.filter(object_type="rule", object_id=str(rule.pk)).values_list("action",
                                                                                                    flat=True))
    assert events.count(Event.RULE_CREATED) == 1 and events.count(Event.RULE_CHANGED) == 1


@pytest.mark.parametrize("conditions, policy_code, message", [
    ([{"field": "nonsense", "op": "eq", "value": "x"}], "csam-known", "unknown field"),
    ([{"field": "signal.score", "op": "eq", "value": "high"}], "csam-known", "needs a number"),
    ([{"field": "bank.trust", "op": "gt", "value": "verified"}], "csam-known", "cannot be compared"),
    ([{"field": "bank.trust", "op": "eq", "value": "trusted"}], "csam-known", "is one of"),
    ([], "csam-known", "at least one condition"),
    (KNOWN_VERIFIED, "csam-new", "new material is confirmed only by a person"),
    (KNOWN_VERIFIED, "no-such-policy", "Choose the policy"),
])
def test_bad_rules_are_refused_with_a_reason(users, conditions, policy_code, message):
    with pytest.raises(ActionError, match=message):
        save_rule(users["senior"], Rule(code="r", title="R"), conditions_list=conditions, effect="apply_policy",
                  policy_code=policy_code, mode=RuleMode.SHADOW)
    assert not Rule.objects.exists()


def test_a_rule_is_turned_on_only_after_a_backtest_of_its_conditions(users):
    senior = users["senior"]
    rule = make_rule(senior, mode=RuleMode.SHADOW)
    with pytest.raises(ActionError, match="Backtest"):
        save_rule(senior, rule, conditions_list=KNOWN_VERIFIED, effect="apply_policy", policy_code="csam-known",
                  mode=RuleMode.ON)
    rule = make_rule(senior, code="other", mode=RuleMode.ON)
    assert rule.mode == RuleMode.ON
    # Changing the conditions needs a new backtest before it may stay on.
    with pytest.raises(ActionError, match="Backtest"):
        save_rule(senior, rule, conditions_list=KNOWN_VERIFIED[:1], effect="apply_policy", policy_code="csam-known",
                  mode=RuleMode.ON)


def test_shadow_mode_records_what_it_would_do_and_does_nothing(users):
    case, _ = verified_case()
    rule = make_rule(users["senior"], mode=RuleMode.SHADOW)
    assert apply_rules([case.pk]) == {"shadow": 1}
    case.refresh_from_db()
    assert case.status == CaseStatus.OPEN and not case.decisions.exists()
    assert RuleFiring.objects.get(rule=rule).outcome == FiringOutcome.SHADOW
    assert apply_rules([case.pk]) == {}  # once per version and case


def test_off_rules_do_nothing(users):
    case, _ = verified_case()
    make_rule(users["senior"], mode=RuleMode.OFF)
    assert apply_rules([case.pk]) == {}
    assert not RuleFiring.objects.exists()


def test_an_on_rule_decides_through_the_decision_path_with_the_rule_as_actor(users, settings):
    settings.UNDO_SECONDS = 0
    case, item = verified_case()
    rule = make_rule(users["senior"], qa_percent_new=0)
    assert apply_rules([case.pk]) == {"decided": 1}
    case.refresh_from_db()
    decision = case.decisions.get()
    assert case.status == CaseStatus.CLOSED and case.resolution == "report"
    assert decision.rule_version.rule == rule and decision.rule_version.version == rule.version
    assert decision.decided_by.username == AUTOMATION_USERNAME and not decision.decided_by.is_active
    assert decision.policy.code == "csam-known"
    assert Account.objects.get(pk=case.account_id).status == SubjectStatus.BANNED
    assert Enforcement.objects.filter(decision=decision, action="ban_account").exists()
    report = CyberTipReport.objects.get(decision=decision)
    assert report.status == CyberTipReport.Status.QUEUED  # no person viewed: filed with fileViewedByEsp=false
    row = AuditEvent.objects.get(action=Event.CASE_REPORT, object_id=str(decision.pk))
    assert row.actor is None and row.actor_label == f"rule {rule.code} v{rule.version}"
    assert row.details["automated"] is True and row.details["rule"] == rule.code
    assert apply_rules([case.pk]) == {}
    assert Decision.objects.count() == 1


def test_conditions_on_the_bank_keep_unverified_banks_from_acting(users):
    case, _ = case_with_match()  # the bank stays unverified
    make_rule(users["senior"])
    assert apply_rules([case.pk]) == {}
    assert Case.objects.get(pk=case.pk).status == CaseStatus.OPEN


def test_a_deconfirmed_entry_never_acts_though_its_match_is_recorded(users):
    case, _ = verified_case()
    BankHash.objects.update(status=EntryStatus.DECONFIRMED)
    make_rule(users["senior"])
    assert apply_rules([case.pk]) == {}
    assert case.signals.exists()


def test_rules_leave_possible_child_victims_and_held_cases_to_people(users):
    case, _ = verified_case()
    Case.objects.filter(pk=case.pk).update(possible_minor_victim="a minor (13-15) sent their own image")
    make_rule(users["senior"])
    assert apply_rules([case.pk]) == {"held_back": 1}
    assert "child victim" in RuleFiring.objects.get(case=case).why
    Case.objects.filter(pk=case.pk).update(possible_minor_victim="")
    other, _ = verified_case(seed=2, account="acct-2")
    claim_case(users["specialist"], other.pk)
    assert apply_rules([other.pk]) == {}
    assert not Decision.objects.exists()


def test_guardrail_holds_back_and_says_why(users):
    case, _ = verified_case()
    Case.objects.filter(pk=case.pk).update(possible_minor_victim="minor")
    rule = make_rule(users["senior"])
    from cases.actions.rules import decide_automatically
    version = rule.versions.first()
    case.refresh_from_db()
    signal = case.signals.first()
    outcome = decide_automatically(version, case, signal, {"rule_version": version, "rule": rule, "case": case,
                                                            "signal": signal, "bank_id": None, "bank_hash_id": None})
    assert outcome == FiringOutcome.HELD_BACK
    assert "child victim" in RuleFiring.objects.get().why
    assert Case.objects.get(pk=case.pk).status == CaseStatus.OPEN


def test_route_and_priority_rules(users):
    case, _ = verified_case()
    senior = users["senior"]
    rule = Rule(code="raise", title="Raise")
    save_rule(senior, rule, conditions_list=KNOWN_VERIFIED, effect="priority", priority=99, mode=RuleMode.SHADOW)
    from cases.actions.rules import _spec_of, current_version
    backtest(senior, rule, _spec_of(current_version(rule)), days=1)
    save_rule(senior, rule, conditions_list=KNOWN_VERIFIED, effect="priority", priority=99, mode=RuleMode.ON)
    assert apply_rules([case.pk]) == {"prioritised": 1}
    assert Case.objects.get(pk=case.pk).priority == 99


def test_qa_sampling_takes_the_new_rule_share(users):
    first, _ = verified_case()
    second, _ = verified_case(seed=2, account="acct-2")
    make_rule(users["senior"], qa_percent_new=100, qa_percent=0)
    apply_rules([first.pk])
    assert QAReview.objects.filter(decision__case=first).exists()
    Rule.objects.update(new_days=0)
    apply_rules([second.pk])
    assert not QAReview.objects.filter(decision__case=second).exists()


def test_backtest_shows_volume_agreement_and_disagreements(users):
    senior = users["senior"]
    agreed, _ = verified_case(seed=1, account="acct-1")
    differed, _ = verified_case(seed=2, account="acct-2")
    verified_case(seed=3, account="acct-3")  # open, undecided
    for case, code in ((agreed, "csam-known"), (differed, "false-positive")):
        claim_case(senior, case.pk)
        case.refresh_from_db()
        record_evidence_view(senior, case.signals.first().item, revealed=True)
        decide(senior, case.pk, version=case.version, policy=code)
    rule = make_rule(senior, mode=RuleMode.SHADOW)
    from cases.actions.rules import _spec_of, current_version
    result = backtest(senior, rule, _spec_of(current_version(rule)), days=7)
    assert result["would_act"] == 3 and result["decided_by_people"] == 2
    assert result["agree"] == 1 and result["disagree_count"] == 1 and result["undecided"] == 1
    assert result["disagree"][0]["case"].pk == differed.pk
    assert result["per_day"] == [(timezone.now().date().isoformat(), 3)]
    assert AuditEvent.objects.filter(action=Event.RULE_BACKTESTED, details__would_act=3).exists()


def test_the_rule_breaker_trips_and_cases_go_to_people_until_a_senior_resumes(users):
    senior = users["senior"]
    cases = [verified_case(seed=s, account=f"acct-{s}")[0] for s in range(1, 5)]
    rule = make_rule(senior, breaker_per_hour=2, qa_percent_new=0)
    breakers.CHECK_SECONDS = 0  # count after every decision in this test
    try:
        results = [apply_rules([case.pk]) for case in cases]
    finally:
        breakers.CHECK_SECONDS = 5.0
    assert results[:3] == [{"decided": 1}] * 3
    assert results[3] == {"breaker": 1}
    breaker = Breaker.objects.get(scope="rule", object_id=rule.pk)
    assert breaker.open and "3 times in the last hour" in breaker.reason
    assert AuditEvent.objects.filter(action=Event.BREAKER_TRIPPED).count() == 1
    assert Case.objects.get(pk=cases[3].pk).status == CaseStatus.OPEN
    with pytest.raises(ActionError):
        resume_breaker(senior, breaker.pk, note="")
    resume_breaker(senior, breaker.pk, note="a known viral image, checked")
    fifth, _ = verified_case(seed=5, account="acct-5")
    assert apply_rules([fifth.pk]) == {"decided": 1}  # counted afresh from the resume


def test_an_entry_that_floods_is_quarantined_by_its_breaker(users, settings):
    settings.BREAKER_ENTRY_MIN_PER_HOUR = 1
    senior = users["senior"]
    known_bank([7], types=("pdq",))
    Bank.objects.filter(name="known").update(trust="verified")
    edits = ["recompressed", None, "resized"]
    items = [scanned_item(encoded(7, edit), account=f"acct-{n}") for n, edit in enumerate(edits)]
    cases = triage_all()
    assert len(cases) == len(items) == 3
    make_rule(senior, conditions=KNOWN_VERIFIED[:2], qa_percent_new=0)
    breakers.CHECK_SECONDS = 0
    try:
        outcomes = [apply_rules([case.pk]) for case in cases]
    finally:
        breakers.CHECK_SECONDS = 5.0
    assert outcomes[:2] == [{"decided": 1}] * 2  # the second goes over the limit of one an hour
    entry = BankHash.objects.get(bank__name="known")
    assert entry.status == EntryStatus.QUARANTINED
    breaker = Breaker.objects.get(scope="entry", object_id=entry.pk, resumed_at__isnull=True)
    assert "2 times in the last hour" in breaker.reason
    assert outcomes[2] == {}  # a quarantined entry does not act at all; its case waits for people
    assert Case.objects.get(pk=cases[2].pk).status == CaseStatus.OPEN
    resume_breaker(senior, breaker.pk, note="the entry is right")
    assert BankHash.objects.get(pk=entry.pk).status == EntryStatus.ACTIVE


def test_rollback_reverses_what_the_rule_did_and_never_retracts_a_filed_report(users, settings):
    settings.UNDO_SECONDS = 0
    senior = users["senior"]
    first, _ = verified_case(seed=1, account="acct-1")
    second, _ = verified_case(seed=2, account="acct-2")
    rule = make_rule(senior, qa_percent_new=0)
    apply_rules([first.pk, second.pk])
    one, two = Decision.objects.filter(rule_version__rule=rule).order_by("pk")
    # The platform already banned the first account, and its report was filed; the second is pending.
    Enforcement.objects.filter(decision=one).update(status=EnforcementStatus.DELIVERED)
    CyberTipReport.objects.filter(decision=one).update(status=CyberTipReport.Status.FILED, ncmec_report_id="555")
    since, until = timezone.now() - timedelta(hours=1), timezone.now() + timedelta(minutes=1)
    assert rollback_candidates(rule, since, until).count() == 2
    totals = rollback_rule(senior, rule, since, until, note="the bank entry was wrong")
    assert totals["decisions"] == 2 and totals["reopened"] == 2
    assert totals["reports_kept"] == 1 and totals["reports_cancelled"] == 1
    assert Enforcement.objects.filter(decision=one, action="unban_account").exists()
    assert not Enforcement.objects.filter(decision=two, status=EnforcementStatus.PENDING, action="ban_account").exists()
    assert CyberTipReport.objects.get(decision=one).status == CyberTipReport.Status.FILED
    assert CyberTipReport.objects.get(decision=two).status == CyberTipReport.Status.CANCELLED
    for case in (first, second):
        case.refresh_from_db()
        assert case.status == CaseStatus.OPEN and case.closed_at is None
        assert Account.objects.get(pk=case.account_id).status == SubjectStatus.ACTIVE
    assert set(RuleFiring.objects.values_list("outcome", flat=True)) == {FiringOutcome.ROLLED_BACK}
    assert AuditEvent.objects.filter(action=Event.CASE_ROLLED_BACK).count() == 2
    assert AuditEvent.objects.get(action=Event.RULE_ROLLED_BACK).details["decisions"] == 2
    assert rollback_candidates(rule, since, until).count() == 0
    # A reopened case is not decided again by the same rule version.
    assert apply_rules([first.pk, second.pk]) == {}


def test_a_policy_may_hold_an_automated_report_until_a_specialist_has_viewed_it(users, settings):
    settings.UNDO_SECONDS = 0
    Policy.objects.filter(code="csam-known").update(view_before_filing=True)
    case, item = verified_case()
    make_rule(users["senior"], qa_percent_new=0)
    apply_rules([case.pk])
    report = CyberTipReport.objects.get()
    assert report.status == CyberTipReport.Status.AWAITING_APPROVAL
    with pytest.raises(ActionError, match="View every file"):
        approve(users["senior"], report)
    record_evidence_view(users["senior"], item, revealed=True)
    assert approve(users["senior"], report)


def test_rule_pages_are_for_rule_managers_only(client, users):
    rule = make_rule(users["senior"], mode=RuleMode.SHADOW)
    pages = [reverse("cases:rules"), reverse("cases:rule_new"), reverse("cases:rule", args=[rule.pk]),
             reverse("cases:rule_edit", args=[rule.pk])]
    for role, expected in (("reviewer", 403), ("specialist", 403), ("nobody", 403), ("liaison", 403),
                           ("senior", 200), ("admin", 200)):
        client.force_login(users[role])
        for page in pages:
            assert client.get(page).status_code == expected, (role, page)
    for name in ("cases:rule_backtest", "cases:rule_rollback"):
        client.force_login(users["reviewer"])
        assert client.post(reverse(name, args=[rule.pk])).status_code == 403


def test_saving_and_rolling_back_through_the_pages_need_the_second_factor(client, users, settings):
    settings.UNDO_SECONDS = 0
    senior = users["senior"]
    client.force_login(senior)
    form = {"code": "known-verified", "title": "Known, verified", "mode": "shadow", "effect": "apply_policy",
            "policy": "csam-known", "position": "0", "qa_percent": "2", "qa_percent_new": "20", "new_days": "14",
            "breaker_per_hour": "0", "field-0": "signal.kind", "op-0": "eq", "value-0": "hash_match",
            "field-1": "bank.trust", "op-1": "in", "value-1": "verified, local"}
    response = client.post(reverse("cases:rule_new"), form)
    assert response.status_code == 302 and "verify" in response["Location"]
    assert not Rule.objects.exists()
    verify_2fa(client, senior)
    response = client.post(reverse("cases:rule_new"), form)
    rule = Rule.objects.get()
    assert response.status_code == 302 and rule.versions.first().conditions[1]["value"] == ["verified", "local"]
    assert client.get(reverse("cases:rule_edit", args=[rule.pk])).status_code == 200
    response = client.post(reverse("cases:rule_edit", args=[rule.pk]), {**form, "mode": "on"})
    assert "Backtest" in response.content.decode()
    case, _ = verified_case()
    response = client.post(reverse("cases:rule_backtest", args=[rule.pk]), {"days": "7"})
    assert response.status_code == 200 and "cases it would act on" in response.content.decode()
    client.post(reverse("cases:rule_edit", args=[rule.pk]), {**form, "mode": "on"})
    assert Rule.objects.get().mode == "on"
    apply_rules([case.pk])
    page = client.get(reverse("cases:rule", args=[rule.pk]), {"preview": "1"})
    assert "1</strong> decisions would be rolled back" in page.content.decode()
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    until = (timezone.now() + timedelta(minutes=1)).isoformat()
    client.post(reverse("cases:rule_rollback", args=[rule.pk]), {"since": since, "until": until, "note": "x"})
    assert Decision.objects.get().rolled_back_at is None  # not confirmed
    client.post(reverse("cases:rule_rollback", args=[rule.pk]),
                {"since": since, "until": until, "note": "wrong", "confirm": "yes"})
    assert Decision.objects.get().rolled_back_at is not None
    assert client.get(reverse("cases:rules")).status_code == 200


def test_the_case_page_names_the_rule_behind_a_decision_and_what_shadow_rules_would_do(client, users, settings):
    settings.UNDO_SECONDS = 0
    decided, _ = verified_case(seed=1, account="acct-1")
    shadowed, _ = case_with_match(seed=2, account="acct-2")  # unverified bank: only the shadow rule fires
    make_rule(users["senior"], qa_percent_new=0)
    make_rule(users["senior"], code="any-bank", conditions=KNOWN_VERIFIED[:1], mode=RuleMode.SHADOW)
    apply_rules([decided.pk, shadowed.pk])
    client.force_login(users["senior"])
    page = client.get(reverse("cases:detail", args=[decided.pk])).content.decode()
    assert "automated</span> rule" in page and "known-verified</a> v2" in page
    page = client.get(reverse("cases:detail", args=[shadowed.pk])).content.decode()
    assert "Rule any-bank v1 · shadow: would have acted: “Known child sexual abuse material”" in page


def test_the_case_page_says_when_an_entry_behind_a_match_was_deconfirmed(client, users):
    case, _ = verified_case()
    from detection.hash_quality import deconfirm_entry
    entry = BankHash.objects.filter(bank__name="known", hash_type="pdq").get()
    deconfirm_entry(users["senior"], entry.pk, "matches a common stock photo")
    client.force_login(users["senior"])
    page = client.get(reverse("cases:detail", args=[case.pk])).content.decode()
    assert f"Entry #{entry.pk} · <strong>deconfirmed</strong>: matches a common stock photo" in page


def test_a_match_resting_on_any_deconfirmed_entry_is_left_to_people(users):
    case, _ = verified_case()
    signal = case.signals.get()
    assert {h["type"] for h in signal.details["hashes"]} >= {"pdq", "dhash"}  # the match rests on both
    BankHash.objects.filter(bank__name="known", hash_type="dhash").update(status=EntryStatus.DECONFIRMED)
    make_rule(users["senior"])
    assert apply_rules([case.pk]) == {}
    assert Case.objects.get(pk=case.pk).status == CaseStatus.OPEN
