"""Cluster cases: opened from a pivot, previewed member by member, proposed, approved by a second senior,
carried out as one audited decision per member, idempotently, and never against a possible child victim."""

import pytest
from django.urls import reverse

from cases.actions import ActionError, clusters
from cases.actions.claims import claim_case
from cases.actions.policies import save_policy
from cases.actions.tags import tag_subject
from cases.jobs import finish_cluster_actions
from cases.models import (
    Case,
    CaseStatus,
    Cluster,
    ClusterAction,
    ClusterOutcome,
    CyberTipReport,
    Decision,
    Enforcement,
    LegalHold,
    Policy,
)
from detection import intake
from detection.models import Account, Group, Item, ItemStatus, SignalKind, SubjectStatus
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa
from tests.factories import encoded, known_bank, scanned_item, triage_all

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(users, monkeypatch):
    """Item 0 from acct-1 in grp-1 matches the known bank; the very same file came from acct-2, acct-3 (a
    teen), acct-4 (tagged possible minor victim) and acct-5 (whose case a specialist is reviewing);
    acct-6 sent a near copy no detector flagged (found by the PDQ pivot, distance 9)."""
    intake.upsert_account("acct-3", {"age_band": "13-15"})
    intake.upsert_group("grp-1", {"name": "Ring"}, members=["acct-1", "acct-2", "acct-3"])
    known_bank([1])
    item = scanned_item(encoded(1, "watermarked"), account="acct-1", group="grp-1")
    twins = {name: scanned_item(encoded(1, "watermarked"), account=name, group="grp-1" if name == "acct-2" else None)
             for name in ("acct-2", "acct-3", "acct-4", "acct-5")}
    cases = {c.account.external_id: c for c in triage_all() if c.account_id}
    near = Item.objects.create(account=Account.objects.create(external_id="acct-6"), md5="6" * 32,
                               sha256="6" * 64, status=ItemStatus.SCANNED)
    tag_subject(users["senior"], Account.objects.get(external_id="acct-4"), "possible_minor_victim", "school photo")
    claim_case(users["specialist"], cases["acct-5"].pk)
    monkeypatch.setattr("cases.web.clusters._near", lambda item: ([(near.pk, 9)], ""))
    return {"item": item, "twins": twins, "near": near, "cases": cases,
            "group": Group.objects.get(external_id="grp-1")}


def login(client, user, verified=True):
    client.force_login(user)
    if verified:
        verify_2fa(client, user)
    return client


def everyone(item):
    keys = [f"account:{a.pk}" for a in Account.objects.filter(external_id__in=[
        "acct-2", "acct-3", "acct-4", "acct-5", "acct-6"])]
    return keys + [f"account:{item.account_id}"]


def open_from_pivot(client, world, **extra):
    form = {"origin": "item", "item": world["item"].pk, "member": everyone(world["item"]), "title": "Ring around item",
            "note": "same picture", **extra}
    return client.post(reverse("cases:cluster_new"), form)


def member(cluster, external_id):
    return cluster.members.get(account__external_id=external_id)


def proposal(users, cluster, code="csam-known", names=None):
    names = names or ["acct-1", "acct-2", "acct-3", "acct-4", "acct-5", "acct-6"]
    ids = [member(cluster, n).pk for n in names]
    return clusters.propose(users["reviewer"], cluster.pk, policy_code=code, member_ids=ids,
                            note="They all shared the same known picture.")[0]


def approved(users, action):
    senior = users["senior"]
    clusters.review(senior, action.pk, approve=True, note="Checked the pivot.")
    clusters.carry_out_action(action.pk)
    action.refresh_from_db()
    return action


class TestOpening:
    def test_a_cluster_keeps_the_ticked_subjects_and_the_items_that_link_them(self, client, users, world):
        response = open_from_pivot(login(client, users["analyst"]), world)
        cluster = Cluster.objects.get()
        assert response.status_code == 302 and response["Location"] == reverse("cases:cluster", args=[cluster.pk])
        assert cluster.members.count() == 6 and cluster.origin_item == world["item"]
        assert member(cluster, "acct-2").items == [world["twins"]["acct-2"].pk]
        assert member(cluster, "acct-2").distance == 0
        assert member(cluster, "acct-6").items == [world["near"].pk] and member(cluster, "acct-6").distance == 9
        assert member(cluster, "acct-1").items == [world["item"].pk]
        row = AuditEvent.objects.get(action="cluster.opened")
        assert row.actor == users["analyst"] and row.details["accounts"] == 6 and row.item_id == world["item"].pk

    def test_subjects_outside_the_pivot_are_refused(self, client, users, world):
        stranger = Account.objects.create(external_id="stranger")
        response = open_from_pivot(login(client, users["reviewer"]), world, member=[f"account:{stranger.pk}"])
        assert response.status_code == 302 and not Cluster.objects.exists()
        assert response["Location"] == reverse("cases:item_pivot", args=[world["item"].pk])

    @pytest.mark.parametrize("form", [
        {"member": []},
        {"title": ""},
        {"title": "x" * 201},
        {"member": ["account:" + "9" * 40]},
        {"member": [f"account:{n}" for n in range(600)]},
        {"origin": "network"},
        {"item": "abc"},
        {"item": "99999999"},
    ])
    def test_bad_forms_open_nothing(self, client, users, world, form):
        response = open_from_pivot(login(client, users["reviewer"]), world, **form)
        assert response.status_code in (302, 404) and not Cluster.objects.exists()

    def test_officers_and_people_without_a_role_cannot_open_one(self, client, users, world):
        for role in ("nobody", "liaison"):
            assert open_from_pivot(login(client, users[role]), world).status_code == 403
        assert not Cluster.objects.exists()

    def test_from_a_group_the_group_and_its_members_who_sent_flagged_items(self, client, users, world):
        login(client, users["reviewer"]).post(reverse("cases:cluster_new"), {
            "origin": "group", "group": world["group"].pk, "title": "Ring group"})
        cluster = Cluster.objects.get()
        subjects = {(m.kind, m.subject.external_id) for m in cluster.members.all()}
        # acct-3 is a member but sent nothing flagged in the group: not a member of the cluster.
        assert subjects == {("group", "grp-1"), ("account", "acct-1"), ("account", "acct-2")}
        assert cluster.members.get(group__isnull=False).items


class TestPreview:
    def test_each_member_says_what_would_happen_or_why_it_is_left_out(self, client, users, world):
        open_from_pivot(login(client, users["reviewer"]), world)
        cluster = Cluster.objects.get()
        response = client.get(reverse("cases:cluster", args=[cluster.pk]), {"policy": "csam-known"})
        body = response.content.decode()
        rows = {r["member"].subject.external_id: r for r in response.context["preview_rows"]}
        assert "possible minor victim" in rows["acct-4"]["skipped"]
        assert "minor (13-15)" in rows["acct-3"]["skipped"]
        assert "being reviewed by sam" in rows["acct-5"]["skipped"]
        assert not rows["acct-2"]["skipped"] and f"case #{world['cases']['acct-2'].pk}" in rows["acct-2"]["does"]
        assert "new case in the investigations queue" in rows["acct-6"]["does"]
        assert "bans the account" in rows["acct-6"]["does"] and "CyberTipline" in rows["acct-6"]["does"]
        assert response.context["will_act"] == 3 and "Propose to a senior" in body
        # Looking changes nothing.
        assert not Decision.objects.filter(options__cluster=cluster.pk).exists()

    def test_only_the_ticked_members_are_previewed(self, client, users, world):
        open_from_pivot(login(client, users["reviewer"]), world)
        cluster = Cluster.objects.get()
        response = client.get(reverse("cases:cluster", args=[cluster.pk]),
                              {"policy": "csam-known", "member": [member(cluster, "acct-2").pk]})
        assert [r["member"].subject.external_id for r in response.context["preview_rows"]] == ["acct-2"]

    def test_the_child_victim_policy_is_never_offered_in_bulk(self, client, users, world):
        open_from_pivot(login(client, users["reviewer"]), world)
        cluster = Cluster.objects.get()
        response = client.get(reverse("cases:cluster", args=[cluster.pk]))
        codes = {p.code for p in response.context["policies"]}
        assert codes and not any(Policy.objects.get(code=c).category == "minor_victim" for c in codes)
        victim = Policy.objects.filter(category="minor_victim").first()
        response = client.get(reverse("cases:cluster", args=[cluster.pk]), {"policy": victim.code})
        assert response.context["preview_rows"] is None and response.context["preview_error"]

    def test_new_material_needs_the_item_revealed_first(self, users, world):
        cluster = clusters.open_cluster(users["specialist"], origin="item", origin_item=world["item"], title="t",
                                        members=[{"account": world["near"].account, "items": [world["near"].pk]}])
        new_material = Policy.objects.filter(category="new_csam").first()
        with pytest.raises(ActionError, match="reveal item"):
            clusters.preview(users["specialist"], cluster, new_material)
        AuditEvent.objects.create(actor=users["specialist"], actor_label="sam", action="evidence.revealed",
                                  item=world["item"])
        assert clusters.preview(users["specialist"], cluster, new_material)

    def test_analysts_see_the_cluster_but_cannot_propose(self, client, users, world):
        open_from_pivot(login(client, users["analyst"]), world)
        cluster = Cluster.objects.get()
        response = client.get(reverse("cases:cluster", args=[cluster.pk]), {"policy": "csam-known"})
        assert response.status_code == 200 and response.context["preview_rows"] is None
        assert "Propose to a senior" not in response.content.decode()
        client.post(reverse("cases:cluster_propose", args=[cluster.pk]), {
            "policy": "csam-known", "member": [m.pk for m in cluster.members.all()], "note": "x"})
        assert not ClusterAction.objects.exists()


class TestDualControl:
    def test_a_proposal_does_nothing_until_a_different_senior_approves(self, client, users, world):
        open_from_pivot(login(client, users["reviewer"]), world)
        cluster = Cluster.objects.get()
        action = proposal(users, cluster)
        assert action.status == "pending" and not Decision.objects.filter(options__cluster=cluster.pk).exists()
        assert Account.objects.filter(status=SubjectStatus.BANNED).count() == 0
        with pytest.raises(ActionError, match="someone other"):
            clusters.review(users["reviewer"], action.pk, approve=True)
        with pytest.raises(ActionError, match="senior"):
            clusters.review(users["specialist"], action.pk, approve=True)
        assert AuditEvent.objects.filter(action="cluster.action_proposed").count() == 1

    def test_approving_needs_a_verified_second_factor(self, client, users, world):
        cluster = clusters.open_cluster(users["reviewer"], origin="item", origin_item=world["item"], title="t",
                                        members=[{"account": world["twins"]["acct-2"].account,
                                                  "items": [world["twins"]["acct-2"].pk], "distance": 0}])
        action = proposal(users, cluster, names=["acct-2"])
        login(client, users["senior"], verified=False)
        response = client.post(reverse("cases:cluster_action_review", args=[action.pk]), {"verdict": "approve"})
        assert response.status_code == 302 and "verify" in response["Location"]
        action.refresh_from_db()
        assert action.status == "pending"

    def test_approval_decides_each_member_once_with_its_own_case_report_and_holds(self, client, users, world):
        open_from_pivot(login(client, users["reviewer"]), world)
        cluster = Cluster.objects.get()
        action = proposal(users, cluster)
        login(client, users["senior"])
        response = client.post(reverse("cases:cluster_action_review", args=[action.pk]),
                               {"verdict": "approve", "note": "ok"})
        assert response.status_code == 302
        clusters.carry_out_action(action.pk)
        clusters.carry_out_action(action.pk)  # a retried job repeats nothing
        action.refresh_from_db()
        assert action.status == "done" and action.finished_at
        outcomes = {o.member.subject.external_id: o for o in action.outcomes.select_related("member__account")}
        assert {n for n, o in outcomes.items() if not o.skipped} == {"acct-1", "acct-2", "acct-6"}
        assert {n for n, o in outcomes.items() if o.skipped} == {"acct-3", "acct-4", "acct-5"}
        for name in ("acct-1", "acct-2", "acct-6"):
            decision = outcomes[name].decision
            assert decision.decided_by == users["reviewer"] and decision.second_reviewer == users["senior"]
            assert decision.approval == "approved" and decision.policy.code == "csam-known"
            assert decision.case.status == CaseStatus.CLOSED
            assert Account.objects.get(external_id=name).status == SubjectStatus.BANNED
            assert Enforcement.objects.filter(decision=decision, action="ban_account", target=name).count() == 1
            report = CyberTipReport.objects.get(decision=decision)
            assert report.files.exists() and LegalHold.objects.filter(report=report).exists()
            assert AuditEvent.objects.filter(action="case.report", object_id=str(decision.pk),
                                             actor=users["senior"]).count() == 1
        assert Decision.objects.filter(options__cluster_action=action.pk).count() == 3
        # acct-6 had no case: it got one in the investigations queue, with its linked item as evidence.
        new_case = outcomes["acct-6"].case
        assert new_case.queue.slug == "investigations" and new_case.summary.startswith(f"Cluster #{cluster.pk}")
        signal = new_case.signals.get()
        assert signal.kind == SignalKind.INVESTIGATION and signal.item == world["near"]
        assert "reviewer" in signal.explanation or "rita" in signal.explanation
        assert set(CyberTipReport.objects.get(case=new_case).files.values_list("item", flat=True)) == {
            world["near"].pk}
        # Those left out are untouched.
        for name in ("acct-3", "acct-4", "acct-5"):
            assert Account.objects.get(external_id=name).status == SubjectStatus.ACTIVE
        assert Case.objects.get(pk=world["cases"]["acct-5"].pk).status == CaseStatus.CLAIMED
        finished = AuditEvent.objects.get(action="cluster.action_finished")
        assert finished.details["decided"] == 3 and len(finished.details["skipped"]) == 3

    def test_a_member_who_changed_after_the_proposal_is_left_out(self, users, world):
        cluster = clusters.open_cluster(users["reviewer"], origin="item", origin_item=world["item"], title="t",
                                        members=[{"account": world["twins"]["acct-2"].account,
                                                  "items": [world["twins"]["acct-2"].pk], "distance": 0}])
        action = proposal(users, cluster, names=["acct-2"])
        tag_subject(users["specialist"], Account.objects.get(external_id="acct-2"), "possible_minor_victim", "new")
        action = approved(users, action)
        outcome = action.outcomes.get()
        assert "possible minor victim" in outcome.skipped and outcome.decision is None
        assert Account.objects.get(external_id="acct-2").status == SubjectStatus.ACTIVE

    def test_a_policy_changed_since_the_proposal_must_be_proposed_again(self, users, world):
        cluster = clusters.open_cluster(users["reviewer"], origin="item", origin_item=world["item"], title="t",
                                        members=[{"account": world["twins"]["acct-2"].account, "items": []}])
        action = proposal(users, cluster, code="spam-account" if Policy.objects.filter(
            code="spam-account").exists() else "csam-known", names=["acct-2"])
        policy = action.policy
        policy.notify_user = not policy.notify_user
        save_policy(users["admin"], policy)
        with pytest.raises(ActionError, match="policy changed"):
            clusters.review(users["senior"], action.pk, approve=True)

    def test_a_rejection_needs_a_reason_and_does_nothing(self, client, users, world):
        open_from_pivot(login(client, users["reviewer"]), world)
        cluster = Cluster.objects.get()
        action = proposal(users, cluster)
        with pytest.raises(ActionError, match="why"):
            clusters.review(users["senior"], action.pk, approve=False)
        clusters.review(users["senior"], action.pk, approve=False, note="Two of these are victims.")
        assert clusters.carry_out_action(action.pk) == {"done": 0, "skipped": 0}
        action.refresh_from_db()
        assert action.status == "rejected" and not ClusterOutcome.objects.exists()
        with pytest.raises(ActionError):
            clusters.review(users["senior"], action.pk, approve=True)

    def test_a_double_submitted_proposal_is_one_proposal(self, users, world):
        cluster = clusters.open_cluster(users["reviewer"], origin="item", origin_item=world["item"], title="t",
                                        members=[{"account": world["twins"]["acct-2"].account,
                                                  "items": [world["twins"]["acct-2"].pk]}])
        first = proposal(users, cluster, names=["acct-2"])
        assert proposal(users, cluster, names=["acct-2"]) == first
        assert ClusterAction.objects.count() == 1

    def test_a_proposal_that_would_act_on_no_one_is_refused(self, users, world):
        cluster = clusters.open_cluster(users["reviewer"], origin="item", origin_item=world["item"], title="t",
                                        members=[{"account": world["twins"]["acct-4"].account,
                                                  "items": [world["twins"]["acct-4"].pk]}])
        with pytest.raises(ActionError, match="none of the chosen"):
            proposal(users, cluster, names=["acct-4"])

    @pytest.mark.parametrize("form", [
        {"member": ["abc"]}, {"member": []}, {"note": ""}, {"policy": "nope"}, {"ban_days": "13"},
        {"ban_days": "x"}, {"member": ["999999"]},
    ])
    def test_bad_proposals_are_refused(self, client, users, world, form):
        open_from_pivot(login(client, users["reviewer"]), world)
        cluster = Cluster.objects.get()
        data = {"policy": "csam-known", "member": [m.pk for m in cluster.members.all()], "note": "ring", **form}
        response = client.post(reverse("cases:cluster_propose", args=[cluster.pk]), data)
        assert response.status_code == 302 and not ClusterAction.objects.exists()


class TestNothingLost:
    def test_an_approved_action_whose_job_was_lost_is_carried_out_by_the_cron(self, users, world, monkeypatch):
        cluster = clusters.open_cluster(users["reviewer"], origin="item", origin_item=world["item"], title="t",
                                        members=[{"account": world["twins"]["acct-2"].account,
                                                  "items": [world["twins"]["acct-2"].pk]}])
        action = proposal(users, cluster, names=["acct-2"])
        clusters.review(users["senior"], action.pk, approve=True)
        # The job never ran (a flushed Redis); a minute later the net finds it.
        ClusterAction.objects.filter(pk=action.pk).update(
            reviewed_at=action.proposed_at.replace(year=action.proposed_at.year - 1))
        sent = []
        monkeypatch.setattr("cases.jobs.enqueue", lambda path, *args, **kw: sent.append((path, args)))
        assert finish_cluster_actions() == 1
        assert sent == [("cases.jobs.carry_out_cluster_action", (action.pk,))]
        clusters.carry_out_action(action.pk)
        assert finish_cluster_actions() == 0

    def test_a_half_done_action_finishes_the_rest_only(self, users, world):
        open_cluster = clusters.open_cluster(users["reviewer"], origin="item", origin_item=world["item"], title="t",
                                             members=[{"account": world["twins"][n].account,
                                                       "items": [world["twins"][n].pk]} for n in ("acct-2",)]
                                             + [{"account": world["item"].account, "items": [world["item"].pk]}])
        action = proposal(users, open_cluster, names=["acct-1", "acct-2"])
        clusters.review(users["senior"], action.pk, approve=True)
        first = member(open_cluster, "acct-1")
        clusters._decide_member(action.pk, first.pk)  # the worker died after the first member
        assert Decision.objects.filter(options__cluster_action=action.pk).count() == 1
        clusters.carry_out_action(action.pk)
        assert Decision.objects.filter(options__cluster_action=action.pk).count() == 2
        assert ClusterOutcome.objects.filter(action=action).count() == 2


def test_items_held_only_by_senior_only_cases_are_not_linked_by_someone_who_cannot_see_them(client, users, world):
    from cases import routing
    from cases.models import Case as CaseModel
    hidden = world["twins"]["acct-2"]
    CaseModel.objects.filter(pk=world["cases"]["acct-2"].pk).update(queue=routing.get_queue(routing.ESCALATIONS))
    open_from_pivot(login(client, users["reviewer"]), world)
    assert member(Cluster.objects.get(), "acct-2").items == []
    Cluster.objects.all().delete()
    open_from_pivot(login(client, users["senior"]), world)
    assert member(Cluster.objects.get(), "acct-2").items == [hidden.pk]
