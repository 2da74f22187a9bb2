"""Group and account risk, teen contact: the feature maths, the analysis jobs and the case page panel."""

import hashlib
import json
import math
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from cases.actions.triage import attach_signals
from cases.models import Case
from cases.sweep import sweep
from detection import intake
from detection.detectors import risk
from detection.jobs import analysis
from detection.models import (
    Account,
    Group,
    Item,
    ItemStatus,
    Membership,
    Signal,
    SignalKind,
    SubjectStatus,
    TermCategory,
    TextTerm,
    UserReport,
)
from detection.termlists import forget_terms
from tests.conftest import drain, verify_2fa
from tests.factories import encoded, known_bank

GARBAGE = ["12", "", -1, -0.5, math.nan, math.inf, -math.inf, 10**400, 1e13, True, False, None, [3], {"n": 3}]
GROUP_KEYS = ["members", "matched_members", "reporters", "reported_members", "invite_link_resets_7d",
              "member_joins_7d", "media_post_share", "teen_members", "adult_members"]
ACCOUNT_KEYS = ["items", "matched_items", "flagged_items", "reporters", "groups", "flagged_groups",
                "prior_enforcement", "linked_accounts", "linked_enforced"]
TEEN_KEYS = ["teen_non_contacts_initiated_7d", "non_contacts_initiated_7d", "blocked_by_teens_30d",
             "reported_by_teens_30d"]


def feature(assessment, name):
    (found,) = [f for f in assessment.features if f.name == name]
    return found


# Pure feature maths --------------------------------------------------------------------------

@pytest.mark.parametrize("name, facts, contribution", [
    ("matched_members", {"matched_members": 0}, 0),
    ("matched_members", {"matched_members": 1.5}, 0.4),
    ("matched_members", {"matched_members": 3}, 0.8),
    ("matched_members", {"matched_members": 300}, 0.8),
    ("reports", {"reporters": 5}, 0.25),
    ("reports", {"reporters": 10}, 0.5),
    ("reports", {"reporters": 50}, 0.5),
    ("invite_resets", {"invite_link_resets_7d": 0}, 0),
    ("invite_resets", {"invite_link_resets_7d": 2.5}, 0.175),
    ("invite_resets", {"invite_link_resets_7d": 5}, 0.35),
    ("invite_resets", {"invite_link_resets_7d": 500}, 0.35),
    ("member_growth", {"members": 20, "member_joins_7d": 10}, 0.35),  # doubled in a week
    ("member_growth", {"members": 10, "member_joins_7d": 5}, 0.175),  # doubled, but only 5 joins
    ("member_growth", {"members": 1010, "member_joins_7d": 10}, 0.0035),  # 1 % growth
    ("member_growth", {"member_joins_7d": 0}, 0),
    ("media_share", {"media_post_share": 0.5}, 0),
    ("media_share", {"media_post_share": 0.7}, 0.125),
    ("media_share", {"media_post_share": 0.9}, 0.25),
    ("media_share", {"media_post_share": 1}, 0.25),
    ("age_mix", {"teen_members": 10, "adult_members": 30}, 0.35),  # teens a quarter: saturated
    ("age_mix", {"teen_members": 1, "adult_members": 39}, 0.035),
    ("age_mix", {"teen_members": 40, "adult_members": 0}, 0),
    ("age_mix", {"teen_members": 0, "adult_members": 40}, 0),
    ("age_mix", {"teen_members": 1, "adult_members": 1}, 0),  # too few of known age
])
def test_each_group_feature_rises_to_its_weight_at_saturation(name, facts, contribution):
    assessment = risk.group_features(facts)
    assert feature(assessment, name).contribution == pytest.approx(contribution, abs=1e-4)
    assert assessment.score == pytest.approx(contribution, abs=1e-4)  # the only feature with a value


@pytest.mark.parametrize("name, key, value, contribution", [
    ("matched_items", "matched_items", 1, 0.25),
    ("matched_items", "matched_items", 2, 0.5),
    ("flagged_items", "flagged_items", 3, 0.3),
    ("reports", "reporters", 5, 0.4),
    ("flagged_groups", "flagged_groups", 1, 0.2),
    ("prior_enforcement", "prior_enforcement", 2, 0.5),
    ("linked_enforced", "linked_enforced", 1, 0.6),
    ("linked_accounts", "linked_accounts", 5, 0.1),
])
def test_each_account_feature_rises_to_its_weight_at_saturation(name, key, value, contribution):
    assert feature(risk.account_features({key: value}), name).contribution == pytest.approx(contribution)
    assert feature(risk.account_features({key: value * 10}), name).contribution == pytest.approx(
        risk.RULES[risk.ACCOUNT_RISK][name].weight)


def test_features_combine_as_independent_evidence_and_never_pass_one():
    facts = {"matched_members": 3, "reporters": 10, "invite_link_resets_7d": 5}
    assert risk.group_features(facts).score == pytest.approx(1 - 0.2 * 0.5 * 0.65)
    everything = {key: 10**9 for key in GROUP_KEYS} | {"media_post_share": 1, "teen_members": 10**9,
                                                      "adult_members": 10**9}
    assert 0.9 < risk.group_features(everything).score <= 1


def test_explanations_are_plain_words():
    assessment = risk.group_features({"members": 40, "matched_members": 12, "invite_link_resets_7d": 5,
                                      "teen_members": 12, "adult_members": 25})
    assert feature(assessment, "matched_members").explanation == (
        "12 of 40 members (30 %) shared known material, here or elsewhere")
    assert feature(assessment, "invite_resets").explanation == "invite link reset 5 times in 7 days"
    assert feature(assessment, "age_mix").explanation == (
        "12 teens with 25 adults: teens are 32 % of members of known age")
    assert feature(assessment, "media_share").explanation == "no data on media share"
    text = assessment.explanation(0.5)
    assert text.startswith(f"Score {assessment.score:.2f} (threshold 0.50): 12 of 40 members")


@pytest.mark.parametrize("value", GARBAGE, ids=repr)
def test_garbage_facts_are_ignored_without_a_crash(value):
    for assessment in (risk.group_features(dict.fromkeys(GROUP_KEYS, value)),
                       risk.account_features(dict.fromkeys(ACCOUNT_KEYS, value)),
                       risk.teen_contact(dict.fromkeys(TEEN_KEYS, value) | {"age_band": "18+"})):
        assert assessment.score == 0
        assert all(f.value is None and f.contribution == 0 for f in assessment.features)
        json.dumps(assessment.details(0.5), allow_nan=False)  # storable on PostgreSQL too


@pytest.mark.parametrize("facts", [None, "facts", [1, 2], 3, {}])
def test_facts_that_are_not_an_object_score_zero(facts):
    assert risk.group_features(facts).score == 0
    assert risk.account_features(facts).score == 0
    assert risk.teen_contact(facts).score == 0


def test_a_share_above_one_is_not_a_share():
    assert feature(risk.group_features({"media_post_share": 1.5}), "media_share").value is None
    assert feature(risk.group_features({"media_post_share": 95}), "media_share").value is None


@pytest.mark.parametrize("band, group", [
    ("13-15", risk.TEEN), ("16-17", risk.TEEN), ("under 13", risk.TEEN), (" 13 - 17 ", risk.TEEN),
    ("18+", risk.ADULT), ("18-24", risk.ADULT), ("25-34", risk.ADULT), ("65+", risk.ADULT),
    ("16+", risk.UNKNOWN), ("13-19", risk.UNKNOWN), ("", risk.UNKNOWN), ("adult", risk.UNKNOWN),
    (None, risk.UNKNOWN), (18, risk.UNKNOWN), ("9" * 500, risk.UNKNOWN),
])
def test_age_bands(band, group):
    assert risk.age_group(band) == group


def test_an_adult_starting_chats_with_many_teen_strangers_scores_high():
    facts = {"age_band": "18+", "teen_non_contacts_initiated_7d": 10, "non_contacts_initiated_7d": 12,
             "blocked_by_teens_30d": 3, "reported_by_teens_30d": 2}
    assessment = risk.teen_contact(facts)
    assert assessment.score > 0.95
    assert feature(assessment, "teen_share").explanation == (
        "10 of the 12 strangers it contacted (83 %) are teens")
    assert feature(assessment, "teen_non_contacts").contribution == pytest.approx(0.6)
    assert feature(assessment, "blocked_by_teens").contribution == pytest.approx(0.6)
    assert feature(assessment, "reported_by_teens").contribution == pytest.approx(0.7)


@pytest.mark.parametrize("band", ["13-15", "16-17", "", "16+"])
def test_teens_and_unknown_ages_are_not_scored_for_contacting_teens(band):
    facts = {"age_band": band, "teen_non_contacts_initiated_7d": 50, "blocked_by_teens_30d": 9}
    assessment = risk.teen_contact(facts)
    assert assessment.score == 0
    assert all("not scored" in f.explanation for f in assessment.features)


def test_the_teen_share_needs_enough_strangers_to_mean_anything():
    few = risk.teen_contact({"age_band": "18+", "teen_non_contacts_initiated_7d": 2, "non_contacts_initiated_7d": 2})
    assert feature(few, "teen_share").contribution == 0
    inconsistent = risk.teen_contact({"age_band": "18+", "teen_non_contacts_initiated_7d": 9,
                                      "non_contacts_initiated_7d": 3})
    assert feature(inconsistent, "teen_share").value is None


# The analysis job ------------------------------------------------------------------------------

def _item(account, group=None, n=[0]):  # noqa: B006 -- a counter for distinct digests
    n[0] += 1
    digest = hashlib.sha256(f"item-{n[0]}".encode()).hexdigest()
    return Item.objects.create(account=account, group=group, md5=digest[:32], sha256=digest,
                               status=ItemStatus.SCANNED)


def matched(account, group=None):
    """A hash-match signal on an item of the account, as a scan would store it."""
    item = _item(account, group)
    return Signal.objects.create(item=item, account=account, group=group, kind=SignalKind.HASH_MATCH,
                                 detector="hash_match", label="Exact match, bank known", score=1.0, severity=90,
                                 explanation="MD5 identical", dedupe_key=f"item:{item.pk}:bank:1")


def make_group(external_id="g-1", members=(), **fields):
    group, _ = intake.upsert_group(external_id, fields, members=list(members))
    return group


def risk_signals(detector=None):
    signals = Signal.objects.filter(kind=SignalKind.BEHAVIOUR, detector__in=risk.DETECTORS)
    return signals.filter(detector=detector) if detector else signals


@pytest.mark.django_db
class TestAnalysis:
    def test_a_group_whose_members_shared_known_material_and_were_reported_becomes_a_group_case(self, redis_conn):
        group = make_group(members=[f"m-{n}" for n in range(6)], member_count=40)
        members = list(group.members.order_by("external_id"))
        matched(members[0], group)
        matched(members[1])  # shared elsewhere: still a member with known material
        UserReport.objects.create(reporter="r-1", account=members[2], reason="csam")
        UserReport.objects.create(reporter="r-2", group=group, reason="csam")
        new = analysis.analyse_subject("group", group.pk)
        (signal,) = risk_signals("group_risk")
        assert new == [signal.pk]
        assert signal.group == group and signal.account is None and signal.severity == 70
        features = {f["name"]: f for f in signal.details["features"]}
        assert features["matched_members"]["value"] == 2
        assert features["matched_members"]["explanation"] == (
            "2 of 40 members (5 %) shared known material, here or elsewhere")
        assert features["reports"]["value"] == 2
        assert signal.details["threshold"] == 0.5 and signal.details["version"] == risk.VERSION
        assert signal.explanation.startswith(f"Score {signal.score:.2f} (threshold 0.50): 2 of 40 members")
        (case,) = attach_signals(new)
        assert case.group == group and case.account is None and case.queue.slug == "new-content"

    def test_rescoring_the_same_facts_stores_one_signal_and_a_rise_stores_another(self, redis_conn):
        group = make_group(facts={"invite_link_resets_7d": 5, "member_joins_7d": 30, "media_post_share": 0.9})
        first = analysis.analyse_subject("group", group.pk)
        assert len(first) == 1
        attach_signals(first)
        assert analysis.analyse_subject("group", group.pk) == []
        assert analysis.analyse_subject("group", group.pk) == []
        assert risk_signals().count() == 1
        group.facts["teen_members"], group.facts["adult_members"] = 10, 10
        group.save()
        second = analysis.analyse_subject("group", group.pk)
        assert len(second) == 1 and second != first
        assert sorted(s.details["bucket"] for s in risk_signals()) == [6, 7]

    def test_a_signal_stored_but_never_triaged_is_handed_on_again(self, redis_conn):
        group = make_group(facts={"invite_link_resets_7d": 5, "member_joins_7d": 30, "media_post_share": 0.9})
        first = analysis.analyse_subject("group", group.pk)
        assert analysis.analyse_subject("group", group.pk) == first  # still untriaged: offered again
        assert risk_signals().count() == 1

    def test_analysis_marks_the_subject_analysed_until_it_changes(self, redis_conn):
        group = make_group()
        assert group.analysed_at is None
        analysis.analyse_subject("group", group.pk)
        group.refresh_from_db()
        assert group.analysed_at is not None
        assert not Group.objects.filter(analysis.pending()).exists()
        group.name = "renamed"
        group.save()
        assert Group.objects.filter(analysis.pending()).get() == group

    def test_teen_only_and_adult_only_groups_have_no_age_mix(self, redis_conn):
        for name, band in (("teens", "13-15"), ("adults", "18+")):
            group = make_group(name, members=[f"{name}-{n}" for n in range(8)])
            Account.objects.filter(groups=group).update(age_band=band)
            assessment = risk.group_features(analysis.group_facts(group))
            mix = feature(assessment, "age_mix")
            assert mix.contribution == 0 and mix.explanation == f"only {name} among members of known age"
        mixed = make_group("mixed", members=["x-1", "x-2", "x-3", "x-4"])
        Account.objects.filter(external_id__in=["x-1", "x-2", "x-3"]).update(age_band="25-34")
        Account.objects.filter(external_id="x-4").update(age_band="16-17")
        facts = analysis.group_facts(mixed)
        assert (facts["teen_members"], facts["adult_members"]) == (1, 3)
        assert feature(risk.group_features(facts), "age_mix").contribution == pytest.approx(0.35)

    def test_the_platforms_counts_are_used_when_it_knows_more_members(self, redis_conn):
        group = make_group(members=["a", "b"], member_count=500, facts={
            "teen_members": 120, "adult_members": "many", "member_joins_7d": 300})
        facts = analysis.group_facts(group)
        assert facts["members"] == 500 and facts["teen_members"] == 120 and facts["adult_members"] == 0
        assert facts["member_joins_7d"] == 300

    def test_joins_are_counted_from_memberships_when_the_platform_sends_none(self, redis_conn):
        group = make_group(members=[f"j-{n}" for n in range(12)])
        Membership.objects.filter(group=group).update(joined_at=timezone.now() - timedelta(days=1))
        Membership.objects.filter(group=group, account__external_id="j-0").update(
            joined_at=timezone.now() - timedelta(days=30))
        assert analysis.group_facts(group)["member_joins_7d"] == 11

    def test_an_account_with_matched_items_reports_and_flagged_groups(self, redis_conn, users):
        account, _ = intake.upsert_account("acct-r", {"age_band": "25-34"})
        matched(account)
        matched(account)
        _item(account)
        banned = make_group("banned-group", members=["acct-r"])
        Group.objects.filter(pk=banned.pk).update(status=SubjectStatus.BANNED)
        for n in range(3):
            UserReport.objects.create(reporter=f"r-{n}", account=account, reason="grooming")
        UserReport.objects.create(reporter="r-0", account=account, reason="grooming")  # same reporter again
        facts = analysis.account_facts(account)
        assert facts == {
            "items": 3, "matched_items": 2, "flagged_items": 0, "reporters": 3, "groups": 1, "flagged_groups": 1,
            "prior_enforcement": 0, "banned": False, "linked_accounts": 0, "linked_enforced": 0}
        new = analysis.analyse_subject("account", account.pk)
        (signal,) = risk_signals("account_risk")
        assert new == [signal.pk] and signal.account == account
        assert "2 of 3 items matched known material" in signal.explanation

    def test_known_material_alone_does_not_raise_account_risk(self, redis_conn):
        account, _ = intake.upsert_account("acct-m", {})
        for _ in range(5):
            matched(account)
        assert analysis.analyse_subject("account", account.pk) == []  # the matches have signals of their own

    def test_prior_enforcement_counts_decisions_that_stood(self, redis_conn, users):
        from cases.actions.claims import claim_case
        from cases.actions.decisions import decide
        from tests.factories import case_with_match

        case, item = case_with_match(seed=31, account="acct-e")
        case = claim_case(users["reviewer"], case.pk)
        decide(users["reviewer"], case.pk, action="remove", reason_code="csam-known", version=case.version)
        facts = analysis.account_facts(item.account)
        assert facts["prior_enforcement"] == 1 and facts["matched_items"] == 1

    def test_a_banned_subject_raises_no_new_signal_but_is_analysed(self, redis_conn):
        group = make_group(facts={"invite_link_resets_7d": 5, "member_joins_7d": 30, "media_post_share": 0.9})
        Group.objects.filter(pk=group.pk).update(status=SubjectStatus.BANNED)
        assert analysis.analyse_subject("group", group.pk) == []
        assert Group.objects.get(pk=group.pk).analysed_at is not None

    def test_a_subject_that_no_longer_exists_is_skipped(self, redis_conn):
        assert analysis.analyse_subject("group", 999_999) == []
        assert analysis.analyse_subject("account", 999_999) == []

    def test_one_failing_subject_does_not_stop_the_batch(self, redis_conn, monkeypatch, caplog):
        groups = [make_group(f"b-{n}", facts={"invite_link_resets_7d": 5, "member_joins_7d": 30,
                                              "media_post_share": 0.9}) for n in range(3)]
        real = analysis.group_facts

        def flaky(group, now=None):
            if group.external_id == "b-1":
                raise RuntimeError("database hiccup")
            return real(group, now)

        monkeypatch.setattr(analysis, "group_facts", flaky)
        assert analysis.analyse_subjects("group", [g.pk for g in groups]) == 2
        assert "analysis of group" in caplog.text
        assert [g.external_id for g in Group.objects.filter(analysis.pending())] == ["b-1"]

    def test_an_adult_reported_by_teens_raises_teen_contact(self, redis_conn):
        adult, _ = intake.upsert_account("adult-1", {"age_band": "18+"})
        for n in range(2):
            intake.upsert_account(f"teen-{n}", {"age_band": "13-15"})
            UserReport.objects.create(reporter=f"teen-{n}", account=adult, reason="grooming")
        UserReport.objects.create(reporter="someone", account=adult, reason="grooming")
        assert analysis.teen_facts(adult)["reported_by_teens_30d"] == 2
        analysis.analyse_subject("account", adult.pk)
        (signal,) = risk_signals("teen_contact")
        assert signal.severity == 85 and signal.score == pytest.approx(0.7)
        assert "reported by 2 teens in 30 days" in signal.explanation

    def test_the_text_surfaces_are_scored_in_the_same_analysis(self, redis_conn):
        TextTerm.objects.create(category=TermCategory.TRADE, term="zebra trade list", weight=0.9)
        forget_terms()
        account, _ = intake.upsert_account("bio-1", {"bio": "ask me for the ZEBRA trade list"})
        new = analysis.analyse_subject("account", account.pk)
        (text,) = Signal.objects.filter(account=account, kind=SignalKind.TEXT)
        assert text.pk in new


@pytest.mark.django_db
class TestLinkedAccounts:
    """Runs on SQLite and on PostgreSQL alike (the suite runs on both)."""

    def make(self, external_id, **facts):
        account, _ = intake.upsert_account(external_id, {"facts": facts})
        return account

    def linked(self, account):
        return sorted(analysis.linked_accounts(account).values_list("external_id", flat=True))

    def test_accounts_sharing_a_device_or_phone_hash_are_linked(self):
        a = self.make("a", device_hashes=["d1", "d2"], phone_hash="p1")
        self.make("b", device_hashes=["d2"])
        self.make("c", phone_hash="p1")
        self.make("d", device_hashes=["d9"], phone_hash="p9")
        self.make("e", device_hashes="d1")  # not a list: not a device list
        self.make("f", device_hashes=[["d1"]])
        self.make("g", device_hashes={"d1": True})
        self.make("h", device_hashes=["D1"])  # hashes are compared exactly
        self.make("i")
        assert self.linked(a) == ["b", "c"]

    def test_an_account_without_link_keys_links_to_none(self):
        self.make("x", device_hashes=[], phone_hash="")
        for facts in ({}, {"device_hashes": [1, None, True]}, {"phone_hash": 42}, {"phone_hash": "p" * 500}):
            assert self.linked(self.make(f"k-{len(str(facts))}-{id(facts)}", **facts)) == []

    def test_hostile_hash_values_are_parameters_not_sql(self):
        hostile = "x') OR 1=1 --"
        a = self.make("a", device_hashes=[hostile, "q\"'%_"], phone_hash="' OR '1'='1")
        self.make("b", device_hashes=["other"])
        twin = self.make("twin", device_hashes=["q\"'%_"])
        assert self.linked(a) == [twin.external_id]

    def test_a_banned_linked_account_is_ban_evasion_evidence(self, redis_conn):
        a = self.make("a", device_hashes=["d1"])
        banned = self.make("banned", device_hashes=["d1"])
        Account.objects.filter(pk=banned.pk).update(status=SubjectStatus.BANNED)
        self.make("matched", phone_hash="p")  # not linked to a
        facts = analysis.account_facts(a)
        assert facts["linked_accounts"] == 1 and facts["linked_enforced"] == 1
        analysis.analyse_subject("account", a.pk)
        (signal,) = risk_signals("account_risk")
        assert "1 account on the same device or phone banned or with known material" in signal.explanation

    def test_links_follow_the_facts_the_platform_sends_next(self):
        a = self.make("a", device_hashes=["d1"])
        self.make("b", device_hashes=["d1"])
        assert self.linked(a) == ["b"]
        self.make("b", device_hashes=["d2"])  # b moved to another device
        assert self.linked(a) == []
        intake.upsert_account("b", {"bio": "no facts sent: links stay as they were"})
        self.make("a", device_hashes=["d2"])
        assert self.linked(a) == ["b"]

    def test_many_device_hashes_are_capped(self):
        a = self.make("a", device_hashes=[f"d{n}" for n in range(500)])
        self.make("early", device_hashes=["d3"])
        self.make("late", device_hashes=["d499"])
        assert self.linked(a) == ["early"]


# The pipeline: API -> queue -> analysis -> signal -> case -> page ------------------------------

def _put(api, url, body):
    return api.put(url, json.dumps(body), content_type="application/json")


def _page(client, user, case):
    client.force_login(user)
    verify_2fa(client, user)
    return client.get(reverse("cases:detail", args=[case.pk]))


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_group_put_through_the_api_becomes_a_case_with_its_features_on_the_page(api, client, users,
                                                                                  redis_conn):
    known_bank([41, 42])
    for seed, member in ((41, "m-1"), (42, "m-2")):
        intake.submit_file(encoded(seed, "watermarked"), account_id=member, group_id="g-api")
    intake.submit_report(reporter="r-1", reason="csam", account_id="m-3")
    drain()
    response = _put(api, "/api/v1/groups/g-api", {
        "name": "Swap", "member_count": 40, "members": ["m-1", "m-2", "m-3", "t-1"],
        "facts": {"invite_link_resets_7d": 4, "media_post_share": 0.8}})
    assert response.status_code == 200
    drain()
    group = Group.objects.get(external_id="g-api")
    # Scored when the members' matches came in, and again, higher, once the facts arrived.
    signal = risk_signals("group_risk").order_by("-score").first()
    assert {s.case_id for s in risk_signals("group_risk")} == {signal.case_id}
    case = Case.objects.get(group=group)
    assert signal.case == case and group.analysed_at is not None
    for role in ("reviewer", "specialist", "senior", "admin"):
        page = _page(client, users[role], case)
        assert page.status_code == 200, role
        html = page.content.decode()
        assert 'data-risk="group_risk"' in html
        assert "2 of 40 members (5 %) shared known material, here or elsewhere" in html
        assert "invite link reset 4 times in 7 days" in html
        assert "With known material" in html and f"{signal.score:.2f} ≥ threshold 0.50" in html
    client.logout()
    client.force_login(users["nobody"])
    assert client.get(reverse("cases:detail", args=[case.pk])).status_code == 403
    # A member's own case shows no group risk panel.
    member_case = Case.objects.get(account__external_id="m-1")
    assert 'data-risk="group_risk"' not in _page(client, users["reviewer"], member_case).content.decode()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_adult_contacting_many_teen_strangers_becomes_a_high_severity_case(api, client, users, redis_conn):
    facts = {"teen_non_contacts_initiated_7d": 14, "non_contacts_initiated_7d": 16, "blocked_by_teens_30d": 1}
    assert _put(api, "/api/v1/accounts/adult-7", {"age_band": "18+", "facts": facts}).status_code == 201
    assert _put(api, "/api/v1/accounts/teen-7", {"age_band": "16-17", "facts": facts}).status_code == 201
    drain()
    (signal,) = risk_signals()
    assert signal.detector == "teen_contact" and signal.account.external_id == "adult-7"
    assert signal.severity == 85 and signal.label == "Adult contacting teens: " + (
        "teens outside its contacts it started chats with (7 days)")
    case = Case.objects.get(account=signal.account)
    html = _page(client, users["reviewer"], case).content.decode()
    assert 'data-risk="teen_contact"' in html and "no message content is read" in html
    assert "started chats with 14 teens outside its contacts in 7 days" in html
    assert not Case.objects.filter(account__external_id="teen-7").exists()
    # The same PUT again: re-analysed, nothing new.
    _put(api, "/api/v1/accounts/adult-7", {"age_band": "18+", "facts": facts})
    drain()
    assert risk_signals().count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_after_a_redis_flush_the_sweep_analyses_every_pending_subject(api, redis_conn):
    _put(api, "/api/v1/groups/g-flush", {"facts": {"invite_link_resets_7d": 5, "member_joins_7d": 30,
                                                    "media_post_share": 0.9}})
    _put(api, "/api/v1/accounts/adult-flush", {"age_band": "18+", "facts": {"teen_non_contacts_initiated_7d": 20}})
    redis_conn.flushdb()  # the analysis jobs are gone
    drain()
    assert Group.objects.filter(analysis.pending()).count() == 1
    assert Account.objects.filter(analysis.pending()).count() == 1
    assert sweep(older_than=3600)["subjects"] == 0  # not waited long enough yet
    assert sweep(older_than=0)["subjects"] == 2
    drain()
    assert not Group.objects.filter(analysis.pending()).exists()
    assert not Account.objects.filter(analysis.pending()).exists()
    assert {s.detector for s in risk_signals()} == {"group_risk", "teen_contact"}
    assert Case.objects.count() == 2
    call_command("sweep", "--older-than", "0", verbosity=0)  # nothing pending: nothing more
    drain()
    assert risk_signals().count() == 2


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_members_new_match_rescores_the_group(api, redis_conn):
    _put(api, "/api/v1/groups/g-late", {"name": "Quiet", "member_count": 40, "members": ["q-1", "q-2", "q-3"]})
    drain()
    assert not risk_signals("group_risk").exists()  # nothing known about the members yet
    known_bank([43, 44])
    for seed, member in ((43, "q-1"), (44, "q-2")):
        intake.submit_file(encoded(seed, "watermarked"), account_id=member)  # shared elsewhere, not in the group
    drain()
    (signal,) = risk_signals("group_risk")
    assert signal.group.external_id == "g-late" and "2 of 40 members" in signal.explanation
    assert not Group.objects.filter(analysis.pending()).exists()
