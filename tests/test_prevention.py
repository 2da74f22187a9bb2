"""Prevention facts as signals: how far an item travelled, invite links listed in public or reached
through referring apps, and first-contact blocks; the referrals page and the prevention metrics."""

import csv
import io
import json
from datetime import UTC

import pytest
from django.urls import reverse
from django.utils import timezone

from cases import metrics, routing
from cases.actions.claims import claim_case
from cases.actions.decisions import decide, second_review
from detection import intake
from detection.detectors import risk
from detection.jobs import analysis
from detection.models import Account, Group, Item, Signal, SignalKind, SubjectStatus
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa
from tests.factories import ban_only, encoded, hash_values, known_bank, scanned_item, triage_all

pytestmark = pytest.mark.django_db

PDQ = "f" * 64
SPREAD = {"forward_count": 312, "forward_chats": 140, "forwarded_many": True}
LISTINGS = [{"source": "https://www.links-directory.example/groups/42", "kind": "site",
             "seen_at": "2026-11-28T09:30:00Z"},
            {"source": "GroupFinder", "kind": "app", "seen_at": "2026-11-30T17:05:00Z"}]
REFERRALS = [{"app": "GroupFinder", "joins": 40}, {"app": "ChatMates", "joins": 6}]


def put(api, url, body):
    return api.put(url, json.dumps(body), content_type="application/json")


def post(api, url, body):
    return api.post(url, json.dumps(body), content_type="application/json")


def refused(response, field):
    assert response.status_code == 400, response.content[:300]
    fields = response.json()["fields"]
    assert field in fields, fields
    return fields[field][0]


# Intake ---------------------------------------------------------------------------------------

def test_an_item_carries_its_spread_through_every_intake_path(api, image_bytes):
    text = post(api, "/api/v1/items", {"account": "a-1", "text": "hello there", **SPREAD})
    hashed = post(api, "/api/v1/items", {"account": "a-1", "hashes": {"pdq": PDQ, "pdq_quality": 90},
                                         "forward_chats": 7})
    upload = api.post("/api/v1/items", {"account": "a-1", "file": io.BytesIO(image_bytes()),
                                        "forward_count": "12", "forwarded_many": "false"})
    batch = post(api, "/api/v1/items/batch", {"items": [
        {"account": "a-2", "hashes": {"md5": "a" * 32}, "forward_count": 5, "forward_chats": 3},
        {"account": "a-2", "hashes": {"md5": "b" * 32}}]})
    assert [r.status_code for r in (text, hashed, upload, batch)] == [202, 202, 202, 202]
    rows = {i.pk: (i.forward_count, i.forward_chats, i.forwarded_many) for i in Item.objects.all()}
    first, second = (r["id"] for r in batch.json()["items"])
    assert rows[text.json()["id"]] == (312, 140, True)
    assert rows[hashed.json()["id"]] == (None, 7, None)
    assert rows[upload.json()["id"]] == (12, None, False)
    assert rows[first] == (5, 3, None) and rows[second] == (None, None, None)
    shown = api.get(f"/api/v1/items/{text.json()['id']}").json()
    assert shown["spread"] == SPREAD


@pytest.mark.parametrize("field,value,message", [
    ("forward_count", -1, "greater than or equal to 0"),
    ("forward_count", 10**13, "less than or equal to"),
    ("forward_count", "12", "whole number"),
    ("forward_count", 2.5, "whole number"),
    ("forward_chats", True, "whole number"),
    ("forwarded_many", "yes", "true or false"),
    ("forwarded_many", 1, "true or false"),
])
def test_bad_spread_values_get_a_clear_400_on_single_and_batch_intake(api, field, value, message):
    single = post(api, "/api/v1/items", {"account": "a-1", "text": "hi", field: value})
    assert message in refused(single, field)
    batch = post(api, "/api/v1/items/batch", {"items": [
        {"account": "a-1", "hashes": {"md5": "a" * 32}, field: value},
        {"account": "a-1", "hashes": {"md5": "b" * 32}}]})
    assert batch.status_code == 202
    bad, good = batch.json()["items"]
    assert message in bad["fields"][field][0] and "id" in good
    assert Item.objects.count() == 1


def test_nan_and_bad_multipart_spread_values_are_refused(api, image_bytes):
    nan = api.post("/api/v1/items", '{"account": "a-1", "text": "hi", "forward_count": NaN}',
                   content_type="application/json")
    assert nan.status_code == 400 and "NaN" in nan.json()["error"]
    for field, value in (("forward_count", "NaN"), ("forward_chats", "-3"), ("forwarded_many", "maybe")):
        response = api.post("/api/v1/items", {"account": "a-1", "file": io.BytesIO(image_bytes()), field: value})
        refused(response, field)
    assert not Item.objects.exists()


def test_the_intake_action_refuses_bad_spread_itself():
    with pytest.raises(intake.Rejection) as exc:
        intake.submit_text("hi", account_id="a-1", spread={"forward_chats": -1})
    assert exc.value.field == "forward_chats"
    with pytest.raises(intake.Rejection):
        intake.submit_text("hi", account_id="a-1", spread={"shares": 3})
    assert not Item.objects.exists()


def test_group_prevention_facts_are_stored(api):
    response = put(api, "/api/v1/groups/g-1", {"facts": {
        "invite_listings": LISTINGS, "referral_joins": REFERRALS, "invite_join_share": 0.9}})
    assert response.status_code == 201
    assert Group.objects.get(external_id="g-1").facts["referral_joins"] == REFERRALS


@pytest.mark.parametrize("facts,message", [
    ({"invite_listings": {"source": "x"}}, "`invite_listings` must be a list of at most 50 objects"),
    ({"invite_listings": [LISTINGS[0]] * 51}, "at most 50"),
    ({"invite_listings": ["links.example"]}, "`invite_listings[0]` must be an object"),
    ({"invite_listings": [{**LISTINGS[0], "kind": "forum"}]}, "`invite_listings[0].kind` must be site or app"),
    ({"invite_listings": [{**LISTINGS[0], "source": " "}]}, "`invite_listings[0].source`"),
    ({"invite_listings": [{**LISTINGS[0], "source": "x" * 254}]}, "1 to 253 characters"),
    ({"invite_listings": [LISTINGS[0], {**LISTINGS[1], "seen_at": "yesterday"}]}, "`invite_listings[1].seen_at`"),
    ({"invite_listings": [{**LISTINGS[0], "url": "x"}]}, "unknown key `url`"),
    ({"invite_join_share": 1.5}, "`invite_join_share` must be a number from 0 to 1"),
    ({"invite_join_share": "0.5"}, "`invite_join_share` must be a number from 0 to 1"),
    ({"referral_joins": [{"app": "GroupFinder", "joins": -1}]}, "`referral_joins[0].joins` must be a whole number"),
    ({"referral_joins": [{"app": "GroupFinder", "joins": 1.5}]}, "`referral_joins[0].joins`"),
    ({"referral_joins": [{"app": 7, "joins": 1}]}, "`referral_joins[0].app`"),
    ({"referral_joins": [{"app": "a", "joins": 1}] * 51}, "at most 50"),
])
def test_bad_group_prevention_facts_get_a_clear_400(api, facts, message):
    response = put(api, "/api/v1/groups/g-1", {"facts": facts})
    assert message in refused(response, "facts")
    assert not Group.objects.exists()


def test_nan_in_group_facts_is_refused(api):
    response = api.put("/api/v1/groups/g-1", '{"facts": {"invite_join_share": NaN}}', content_type="application/json")
    assert response.status_code == 400 and not Group.objects.exists()


@pytest.mark.parametrize("value", [-1, "3", 2.5, True, 10**13])
@pytest.mark.parametrize("key", ["first_contact_blocks_30d", "first_contact_reports_30d", "group_adds_refused_30d"])
def test_bad_first_contact_facts_get_a_clear_400(api, key, value):
    response = put(api, "/api/v1/accounts/a-1", {"facts": {key: value}})
    assert f"`{key}` must be a whole number from 0 to" in refused(response, "facts")
    assert put(api, "/api/v1/accounts/a-1", {"facts": {key: 4}}).status_code == 201


def test_the_openapi_document_states_the_new_fields(api):
    doc = api.get("/api/v1/openapi.json").json()
    group_facts = doc["components"]["schemas"]["Group"]["properties"]["facts"]["anyOf"][0]["properties"]
    account_facts = doc["components"]["schemas"]["Account"]["properties"]["facts"]["anyOf"][0]["properties"]
    assert group_facts["invite_listings"]["maxItems"] == 50
    assert group_facts["invite_listings"]["items"]["properties"]["kind"] == {"enum": ["site", "app"]}
    assert {"first_contact_blocks_30d", "first_contact_reports_30d", "group_adds_refused_30d"} <= set(account_facts)
    multipart = doc["paths"]["/items"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"forward_count", "forward_chats", "forwarded_many"} <= set(multipart["properties"])


# Risk features (pure) ---------------------------------------------------------------------------

def feature(assessment, name):
    return next(f for f in assessment.features if f.name == name)


def test_public_listings_name_their_sources_and_count_each_once():
    facts = {"invite_listings": LISTINGS + [{"source": "links-directory.example", "kind": "site",
                                             "seen_at": "2026-12-01T08:00:00Z"}]}
    f = feature(risk.group_features(facts), "public_invite_listings")
    assert f.value == 2 and f.contribution == round(0.45 * 2 / 3, 4)
    assert f.explanation == ("invite link listed in public on 2 sources: links-directory.example (site, "
                             "2026-12-01), groupfinder (app, 2026-11-30)")


def test_a_public_listing_alone_stays_under_the_group_threshold_but_adds_to_other_evidence():
    listed = {"invite_listings": LISTINGS + [{"source": "third.example", "kind": "site", "seen_at": ""}]}
    assert risk.group_features(listed).score == 0.45  # under the group threshold, 0.5
    both = risk.group_features({**listed, "referral_joins": [{"app": "GroupFinder", "joins": 50}]})
    assert both.score == round(1 - 0.55 * 0.65, 4) >= 0.5
    assert [f.name for f in both.top(2)] == ["public_invite_listings", "referral_joins"]


def test_referral_joins_are_summed_by_app_and_named():
    f = feature(risk.group_features({"referral_joins": REFERRALS + [{"app": "groupfinder", "joins": 4}]}),
                "referral_joins")
    assert f.value == 50 and f.strength == 1.0
    assert f.explanation == "50 members joined through referring apps: groupfinder (44), chatmates (6)"


def test_invite_join_share_counts_only_above_its_floor():
    assert feature(risk.group_features({"invite_join_share": 0.5}), "invite_join_share").contribution == 0
    high = feature(risk.group_features({"invite_join_share": 0.95}), "invite_join_share")
    assert high.contribution == 0.2 and high.explanation == "95 % of members joined through an invite link"


def test_missing_or_malformed_source_facts_contribute_nothing():
    assessment = risk.group_features({"invite_listings": [{"source": "x"}, "junk", {"kind": "app"}],
                                      "referral_joins": "lots", "invite_join_share": float("nan")})
    assert feature(assessment, "public_invite_listings").contribution == 0
    assert feature(assessment, "referral_joins").value is None
    assert feature(assessment, "invite_join_share").display == "—"
    assert risk.group_features({}).score == 0


def test_source_names_fold_schemes_paths_and_case():
    assert risk.source_name("https://www.Links.Example/g/1?x=2") == "links.example"
    assert risk.source_name("  GroupFinder ") == "groupfinder"
    assert risk.source_name("   ") is None and risk.source_name(3) is None


def test_first_contact_blocks_and_reports_raise_an_account():
    facts = {"first_contact_blocks_30d": 10, "first_contact_reports_30d": 5, "group_adds_refused_30d": 10}
    assessment = risk.account_features(facts)
    blocks, reports, adds = (feature(assessment, n) for n in
                             ("first_contact_blocks", "first_contact_reports", "group_adds_refused"))
    assert (blocks.contribution, reports.contribution, adds.contribution) == (0.45, 0.5, 0.15)
    assert blocks.explanation == "blocked by 10 people it first messaged in 30 days"
    assert reports.explanation == "reported by 5 people it first messaged in 30 days"
    assert adds.explanation == "10 people refused being added to a group by it in 30 days"
    assert assessment.score >= 0.6  # the account threshold
    one = feature(risk.account_features({"first_contact_blocks_30d": 1}), "first_contact_blocks")
    assert one.explanation == "blocked by 1 person it first messaged in 30 days"
    assert feature(risk.account_features({}), "first_contact_blocks").display == "—"


def test_the_new_features_are_in_the_rules_table():
    assert {"public_invite_listings", "referral_joins", "invite_join_share"} <= set(risk.RULES[risk.GROUP_RISK])
    assert {"first_contact_blocks", "first_contact_reports", "group_adds_refused"} <= set(
        risk.RULES[risk.ACCOUNT_RISK])


# Analysis facts -----------------------------------------------------------------------------------

def test_analysis_reads_the_groups_sources_and_scores_them():
    group, _ = intake.upsert_group("g-1", {"facts": {"invite_listings": LISTINGS, "referral_joins": REFERRALS,
                                                     "invite_join_share": 0.9}})
    facts = analysis.group_facts(group)
    assert facts["invite_listings"] == LISTINGS and facts["referral_joins"] == REFERRALS
    (assessment,) = analysis.assess("group", group)
    signal = analysis.build_signal("group", group, assessment, 0.5)
    assert signal is not None and "groupfinder (app" in signal.explanation
    names = [f["name"] for f in signal.details["features"]]
    assert "public_invite_listings" in names
    assert signal.details["summary"]["invite_sources"][0].startswith("groupfinder")


def test_analysis_reads_first_contact_facts():
    account, _ = intake.upsert_account("a-1", {"facts": {"first_contact_blocks_30d": 12,
                                                          "first_contact_reports_30d": 6}})
    facts = analysis.account_facts(account)
    assert facts["first_contact_blocks_30d"] == 12 and facts["first_contact_reports_30d"] == 6
    account_risk, _ = analysis.assess("account", account)
    signal = analysis.build_signal("account", account, account_risk, 0.6)
    assert signal is not None and "blocked by 12 people it first messaged" in signal.explanation


def test_the_case_page_shows_the_new_features(client, users):
    group, _ = intake.upsert_group("g-1", {"facts": {"invite_listings": LISTINGS, "referral_joins": [
        {"app": "GroupFinder", "joins": 50}]}})
    analysis.analyse_subject("group", group.pk)
    (case,) = triage_all()
    client.force_login(users["senior"])
    page = client.get(reverse("cases:detail", args=[case.pk])).content.decode()
    assert "Invite link listed in public (sites or apps)" in page
    assert "50 members joined through referring apps: groupfinder (50)" in page


# Spread on known-material matches ------------------------------------------------------------------

def signal(kind=SignalKind.HASH_MATCH, severity=90, score=0.9, **details):
    return Signal(kind=kind, severity=severity, score=score, details=details)


@pytest.mark.parametrize("spread,points", [
    (None, 0), ({"chats": 0}, 0), ({"chats": 40}, 6), ({"chats": 100}, 15), ({"chats": 5000}, 15),
    ({"chats": None, "forwards": 20}, 3), ({"chats": None, "forwarded_many": True}, 4),
    ({"chats": 60, "forwarded_many": True}, 9),
])
def test_the_spread_raise_grows_with_the_chats_reached_and_saturates(spread, points):
    details = {"spread": spread} if spread else {}
    assert routing.spread_raise([signal(**details)])[0] == points
    assert routing.priority([signal(**details)]) == 81 + points


def test_the_spread_raise_is_for_known_material_only_and_capped_at_100():
    assert routing.priority([signal(kind=SignalKind.CLASSIFIER, spread={"chats": 500})]) == 81
    assert routing.priority([signal(score=1.0, spread={"chats": 500}), signal(), signal()]) == 100


def test_a_widely_forwarded_match_names_its_spread_and_ranks_higher():
    known_bank([1])
    spread = scanned_item(encoded(1, "watermarked"), account="far", spread=SPREAD)
    plain = scanned_item(encoded(1, "watermarked"), account="near")
    match = spread.signals.get(kind=SignalKind.HASH_MATCH)
    assert match.explanation.endswith(
        'Spread: forwarded to 140 chats (312 forwards); marked "forwarded many times" by the platform.')
    assert match.details["spread"] == {"forwards": 312, "chats": 140, "forwarded_many": True,
                                       "text": match.details["spread"]["text"]}
    assert "spread" not in plain.signals.get(kind=SignalKind.HASH_MATCH).details
    cases = {c.account.external_id: c for c in triage_all()}
    assert cases["far"].priority - cases["near"].priority == 15 or cases["far"].priority == 100


def test_a_hash_only_item_with_a_forward_count_names_it():
    known_bank([2], types=("pdq",))
    item = intake.submit_hashes({"pdq": hash_values(2)["pdq"], "pdq_quality": 100}, account_id="h-1",
                                spread={"forward_count": 1})
    from detection.jobs.scan import scan_item
    scan_item(item.pk)
    match = Signal.objects.get(item=item, kind=SignalKind.HASH_MATCH)
    assert "Spread: forwarded 1 time." in match.explanation


# Referrals page -------------------------------------------------------------------------------------

@pytest.fixture
def sources():
    """Two groups reached through GroupFinder, one of them listed on a site; one banned member."""
    intake.upsert_group("g-listed", {"name": "Listed", "facts": {"invite_listings": LISTINGS,
                                                                  "referral_joins": REFERRALS}},
                        members=["m-1", "m-2"])
    intake.upsert_group("g-other", {"name": "Other", "facts": {"referral_joins": [{"app": "groupfinder",
                                                                                     "joins": 3}]}},
                        members=["m-3"])
    intake.upsert_group("g-none", {"name": "Plain"}, members=["m-4"])
    Account.objects.filter(external_id__in=["m-1", "m-4"]).update(status=SubjectStatus.BANNED)
    Group.objects.filter(external_id="g-other").update(status=SubjectStatus.BANNED)


def test_sources_group_the_groups_and_actioned_accounts_that_came_through_them(sources):
    from cases import leads
    found = {(s.name, s.kind): s for s in leads.referral_sources()}
    assert set(found) == {("links-directory.example", "site"), ("groupfinder", "app"), ("chatmates", "app")}
    finder = found[("groupfinder", "app")]
    assert sorted(g.group.external_id for g in finder.groups) == ["g-listed", "g-other"]
    assert finder.referral_joins == 43 and finder.actioned_groups == 1 and len(finder.actioned_accounts) == 1
    listed = next(g for g in finder.groups if g.group.external_id == "g-listed")
    assert listed.how == "listed 2026-11-30, 40 joins" and listed.actioned_members == 1
    assert list(found)[0] == ("groupfinder", "app")  # the most actioned accounts and groups first
    assert {s.kind for s in leads.referral_sources("site")} == {"site"}


def test_the_referrals_page_for_seniors(client, users, sources):
    client.force_login(users["senior"])
    page = client.get(reverse("cases:referrals")).content.decode()
    assert "links-directory.example" in page and "groupfinder" in page and "Plain" not in page
    assert 'aria-current="page">Referrals' in page
    assert "chatmates" not in client.get(reverse("cases:referrals"), {"kind": "site"}).content.decode()
    assert client.get(reverse("cases:referrals"), {"kind": "<x>"}).status_code == 200


@pytest.mark.parametrize("role,status", [("reviewer", 403), ("specialist", 403), ("analyst", 403),
                                         ("senior", 200), ("admin", 200)])
def test_only_seniors_see_referrals(client, users, role, status):
    client.force_login(users[role])
    assert client.get(reverse("cases:referrals")).status_code == status


def test_the_referrals_csv_needs_the_second_factor_and_is_audited(client, users, sources):
    intake.upsert_group("g-formula", {"facts": {"referral_joins": [{"app": "=HYPERLINK(1)", "joins": 1}]}})
    client.force_login(users["senior"])
    response = client.get(reverse("cases:referrals_csv"))
    assert response.status_code == 302 and reverse("two_factor_verify") in response["Location"]
    assert not AuditEvent.objects.filter(action=Event.REFERRALS_EXPORTED).exists()
    verify_2fa(client, users["senior"])
    response = client.get(reverse("cases:referrals_csv"))
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    listed = [r for r in rows if r["source"] == "groupfinder" and r["group"] == "g-listed"]
    assert listed[0]["actioned_members"] == "1" and listed[0]["source_actioned_accounts"] == "1"
    assert any(r["source"] == "'=hyperlink(1)" for r in rows)
    event = AuditEvent.objects.get(action=Event.REFERRALS_EXPORTED)
    assert event.actor_label and event.details["sources"] == 4


def test_the_referrals_csv_is_for_seniors_only(client, users):
    client.force_login(users["reviewer"])
    verify_2fa(client, users["reviewer"])
    assert client.get(reverse("cases:referrals_csv")).status_code == 403


# Metrics --------------------------------------------------------------------------------------------

@pytest.fixture
def prevented(users):
    """A forwarded known picture banned; a publicly listed group banned; the account blocked on first contact."""
    known_bank([1])
    intake.upsert_account("acct-1", {"facts": {"first_contact_blocks_30d": 7, "first_contact_reports_30d": 2}})
    scanned_item(encoded(1, "watermarked"), account="acct-1", spread={"forward_count": 300, "forward_chats": 90})
    intake.upsert_group("g-1", {"facts": {"invite_listings": LISTINGS}})
    intake.upsert_group("g-2", {"facts": {}})
    for group in ("g-1", "g-2"):
        intake.submit_report(reporter="u-9", reason="csam", group_id=group)
    ban = ban_only().code
    for opened in triage_all():
        case = claim_case(users["senior"], opened.pk)
        decision, _ = decide(users["senior"], case.pk, policy=ban, version=case.version)
        if decision.approval == "pending":
            second_review(users["specialist"], decision.pk, approve=True)


def today():
    return timezone.now().astimezone(UTC).date()


def test_a_day_counts_spread_public_listings_and_first_contact_blocks(prevented):
    figures = {(m, k): v for m, k, v in metrics.compute_day(today())}
    assert figures[("spread", "forwards")] == 300 and figures[("spread", "counted")] == 1
    assert figures[("spread", "chats")] == 90
    assert figures[("groups_found", "public_listing")] == 1 and figures[("groups_actioned", "")] == 2
    assert figures[("first_contact", "blocks")] == 7 and figures[("first_contact", "accounts")] == 1


def test_the_dashboard_and_transparency_report_show_the_prevention_figures(client, users, prevented):
    metrics.rollup_day(today())
    totals = metrics.prevention(metrics.dashboard("day"))["totals"]
    assert totals["forwards_per_item"] == 300 and totals["public_listing_share"] == 50.0
    assert totals["first_contact_blocks"] == 7
    month = metrics.transparency(today().year)[today().month - 1]
    assert month["forwards_per_actioned_item"] == 300 and month["groups_public_listing_share"] == 50.0
    assert month["first_contact_blocks"] == 7
    client.force_login(users["senior"])
    verify_2fa(client, users["senior"])
    dashboard = client.get(reverse("cases:metrics")).content.decode()
    assert "Forwards per actioned item" in dashboard and "First-contact blocks" in dashboard
    report = client.get(reverse("cases:transparency")).content.decode()
    assert "Actioned groups found through public invite links" in report
    rows = list(csv.DictReader(io.StringIO(client.get(reverse("cases:transparency_csv")).content.decode())))
    this = rows[today().month - 1]
    assert this["forwards_per_actioned_item"] == "300.0" and this["first_contact_blocks"] == "7"


# Demo data ------------------------------------------------------------------------------------------

def test_the_demo_data_shows_each_prevention_signal(monkeypatch):
    from reviewconsole.devtools import demo
    monkeypatch.setattr(demo, "KNOWN_SEEDS", range(1, 4))
    monkeypatch.setattr(demo, "SHARED_KNOWN", range(1, 4))
    monkeypatch.setattr(demo, "EXACT_COPIES", range(3, 4))
    monkeypatch.setattr(demo, "UNRELATED", range(100, 101))
    monkeypatch.setattr(demo, "GEOMETRIC_COPIES", {1: "mirrored"})
    demo.load()
    assert Item.objects.get(external_id="demo-item-k1").forward_chats == 140
    assert Item.objects.filter(forwarded_many=True).count() == 2
    (group,) = analysis.assess("group", Group.objects.get(external_id="demo-grp-1"))
    assert feature(group, "public_invite_listings").value == 2 and feature(group, "referral_joins").value == 46
    account_risk, _ = analysis.assess("account", Account.objects.get(external_id="demo-acct-03"))
    assert account_risk.score >= 0.6
    assert feature(account_risk, "first_contact_blocks").strength == 1.0
