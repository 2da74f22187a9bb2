"""Subject pages (accounts, groups): timeline and paging, pivots, the network picture, and who may see what."""

import xml.etree.ElementTree as ET
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cases import search, subjects
from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.actions.notes import add_note
from cases.actions.tags import tag_subject
from cases.models import Case, CyberTipReport, Decision, Enforcement, ReasonCode, ReviewQueue, SubjectNote
from cases.web import subjects as subject_views
from cases.web.permissions import can_view_item, visible_item_ids
from detection import intake
from detection.models import Account, Group, Item, ItemKind, ItemStatus, Signal, SubjectStatus
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa
from tests.factories import encoded, known_bank, scanned_item, triage_all

pytestmark = pytest.mark.django_db

ALLOWED = ["reviewer", "specialist", "senior", "analyst", "admin"]
REFUSED = ["nobody", "liaison", "officer"]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def world(users):
    """acct-1 in two groups with acct-2 (one shared group, and a shared phone) and acct-3 (two shared
    groups); acct-4 sent the very same file; acct-1 reported acct-9 and was reported; a decided case."""
    intake.upsert_account("acct-1", {"screen_name": "alpha", "bio": "hello there", "facts": {"phone_hash": "ph-1"}})
    intake.upsert_account("acct-2", {"facts": {"phone_hash": "ph-1"}})
    intake.upsert_group("grp-1", {"name": "Group one"}, members=["acct-1", "acct-2", "acct-3"])
    intake.upsert_group("grp-2", {"name": "Group two"}, members=["acct-1", "acct-3"])
    known_bank([1])
    item = scanned_item(encoded(1, "watermarked"), account="acct-1", group="grp-1")
    twin = scanned_item(encoded(1, "watermarked"), account="acct-4")
    intake.submit_report(reporter="acct-1", reason="other", account_id="acct-9")
    intake.submit_report(reporter="someone", reason="csam", account_id="acct-1")
    cases = {c.account.external_id: c for c in triage_all() if c.account_id}
    case = cases["acct-1"]
    claim_case(users["specialist"], case.pk)
    case.refresh_from_db()
    decide(users["specialist"], case.pk, action="report", reason_code="csam-known", version=case.version)
    add_note(users["reviewer"], case, "Seen before in grp-1")
    tag_subject(users["reviewer"], Account.objects.get(external_id="acct-1"), "possible_minor_victim", "age band")
    return {"account": Account.objects.get(external_id="acct-1"), "group": Group.objects.get(external_id="grp-1"),
            "item": item, "twin": twin, "case": case, "other_case": cases["acct-4"]}


def login(client, user):
    client.force_login(user)
    verify_2fa(client, user)


def refused(response, role):
    """403; officers are kept to their portal by the middleware before any view runs."""
    if role == "officer" and response.status_code == 302:
        return response["Location"] == reverse("cases:portal")
    return response.status_code == 403


def urls(world):
    a, g = world["account"].pk, world["group"].pk
    return [reverse("cases:account", args=[a]), reverse("cases:group", args=[g]),
            reverse("cases:account_network", args=[a]), reverse("cases:group_network", args=[g]),
            reverse("cases:item_pivot", args=[world["item"].pk])]


class TestWhoMaySee:
    @pytest.mark.parametrize("role", ALLOWED)
    def test_it_shows_every_page_to_investigators(self, client, users, world, role):
        login(client, users[role])
        for url in urls(world):
            response = client.get(url)
            assert response.status_code == 200, (role, url)

    @pytest.mark.parametrize("role", REFUSED)
    def test_it_refuses_everyone_else(self, client, users, world, role):
        login(client, users[role])
        for url in urls(world):
            assert refused(client.get(url), role), (role, url)

    def test_it_sends_anonymous_users_to_sign_in(self, client, world):
        for url in urls(world):
            response = client.get(url)
            assert response.status_code == 302 and "login" in response["Location"], url

    @pytest.mark.parametrize("role", REFUSED)
    def test_it_refuses_tags_to_everyone_else(self, client, users, world, role):
        login(client, users[role])
        for name, pk in (("cases:account_tags", world["account"].pk), ("cases:group_tags", world["group"].pk)):
            response = client.post(reverse(name, args=[pk]), {"tag": "possible_minor_victim"})
            assert refused(response, role)
        assert not AuditEvent.objects.filter(action="subject.tagged", actor=users[role]).exists()

    def test_it_answers_404_for_a_missing_subject(self, client, users, world):
        login(client, users["analyst"])
        assert client.get(reverse("cases:account", args=[999999])).status_code == 404
        assert client.get(reverse("cases:group_network", args=[999999])).status_code == 404
        assert client.get(reverse("cases:item_pivot", args=[999999])).status_code == 404

    def test_it_audits_every_view(self, client, users, world):
        login(client, users["analyst"])
        for url in urls(world):
            client.get(url)
        actions = list(AuditEvent.objects.filter(actor=users["analyst"]).values_list("action", flat=True))
        assert actions.count("subject.viewed") == 2
        assert actions.count("subject.pivot_viewed") == 1
        assert actions.count("subject.network_viewed") == 2


class TestEvidence:
    def test_images_are_only_blurred_renditions(self, client, users, world):
        login(client, users["senior"])
        body = client.get(reverse("cases:account", args=[world["account"].pk])).content.decode()
        item = world["item"]
        assert reverse("cases:evidence_blurred", args=[item.pk]) in body
        assert reverse("cases:evidence_reveal", args=[item.pk]) not in body
        assert "data-reveal" not in body

    def test_an_item_held_only_by_a_senior_case_is_not_shown_to_others(self, client, users, world):
        Case.objects.filter(account=world["account"]).update(queue=ReviewQueue.objects.get(slug="escalations"))
        item = world["item"]
        for role in ("reviewer", "analyst"):
            login(client, users[role])
            body = client.get(reverse("cases:account", args=[world["account"].pk])).content.decode()
            assert reverse("cases:evidence_blurred", args=[item.pk]) not in body, role
            assert "a case you may not view" in body
            # ... nor the senior-only case itself, what was decided on it, or the pivot from its item
            assert 'class="tl tl-case"' not in body and 'class="tl tl-decision"' not in body
            assert 'class="tl tl-enforcement"' not in body
            assert client.get(reverse("cases:item_pivot", args=[item.pk])).status_code == 403
        login(client, users["senior"])
        body = client.get(reverse("cases:account", args=[world["account"].pk])).content.decode()
        assert reverse("cases:evidence_blurred", args=[item.pk]) in body

    def test_bulk_visibility_agrees_with_can_view_item(self, users, world):
        Case.objects.filter(account__external_id="acct-4").update(
            queue=ReviewQueue.objects.get(slug="escalations"))
        extra = Item.objects.create(account=Account.objects.get(external_id="acct-2"), md5="0" * 32,
                                    sha256="0" * 64, status=ItemStatus.SCANNED)
        items = list(Item.objects.all())
        for role in ALLOWED + REFUSED:
            user = users[role]
            expected = {i.pk for i in items if can_view_item(user, i)}
            assert visible_item_ids(user, items) == expected, role
        assert extra.pk in visible_item_ids(users["analyst"], items)

    def test_a_hash_only_item_says_no_media_is_held(self, client, users, world):
        item = Item.objects.create(account=world["account"], hash_only=True, md5="1" * 32, sha256="",
                                   status=ItemStatus.SCANNED)
        login(client, users["analyst"])
        body = client.get(reverse("cases:account", args=[world["account"].pk])).content.decode()
        assert "No media held" in body
        assert reverse("cases:evidence_blurred", args=[item.pk]) not in body


class TestTimeline:
    def rows(self, user, subject, **kwargs):
        flags = {"review": user.has_perm("cases.review_case"), "senior": user.has_perm("cases.review_escalated"),
                 "reveal": user.has_perm("cases.reveal_evidence")}
        return subjects.timeline(subject, flags, **kwargs)

    def test_it_holds_everything_about_the_account(self, users, world):
        rows, _ = self.rows(users["senior"], world["account"])
        kinds = {row["kind"] for row in rows}
        assert {"item", "signal", "case", "decision", "enforcement", "cybertip", "note", "tag", "report_by",
                "report_against", "hold"} <= kinds
        by = next(r["obj"] for r in rows if r["kind"] == "report_by")
        assert by.account.external_id == "acct-9"
        against = next(r["obj"] for r in rows if r["kind"] == "report_against")
        assert against.reporter == "someone"
        times = [r["at"] for r in rows]
        assert times == sorted(times, reverse=True)

    def test_it_shows_legal_requests_linked_to_the_subject(self, users, world):
        from cases.models import Agency, LegalRequest

        request_obj = LegalRequest.objects.create(
            agency=Agency.objects.get(name="Metro Police"), submitted_by=users["officer"], kind="preservation",
            reference="MP-1", description="preserve", due_at=timezone.now() + timedelta(days=3))
        request_obj.accounts.add(world["account"])
        rows, _ = self.rows(users["analyst"], world["account"])
        assert any(r["kind"] == "legal" and r["obj"].pk == request_obj.pk for r in rows)

    def test_a_member_ban_from_a_group_case_is_on_the_member_timeline(self, users, world):
        intake.submit_report(reporter="x", reason="other", group_id="grp-1")
        (case,) = [c for c in triage_all() if c.group_id]
        decision = Decision.objects.create(case=case, case_version=case.version, action="ban",
                                           reason=ReasonCode.objects.first(), decided_by=users["senior"])
        member = Enforcement.objects.create(decision=decision, action="ban_account", target="acct-2")
        Enforcement.objects.create(decision=decision, action="ban_account", target="acct-3")
        rows, _ = self.rows(users["analyst"], Account.objects.get(external_id="acct-2"))
        assert [r["obj"].pk for r in rows if r["kind"] == "enforcement"] == [member.pk]
        group_rows, _ = self.rows(users["analyst"], world["group"])
        assert len([r for r in group_rows if r["kind"] == "enforcement"]) == 2

    @pytest.mark.parametrize("role", ["reviewer", "analyst"])
    def test_cybertip_reports_are_hidden_without_reveal(self, client, users, world, role):
        assert CyberTipReport.objects.filter(case=world["case"]).exists()
        rows, _ = self.rows(users[role], world["account"])
        assert not any(r["kind"] == "cybertip" for r in rows)
        login(client, users[role])
        body = client.get(reverse("cases:account", args=[world["account"].pk])).content.decode()
        report = CyberTipReport.objects.get(case=world["case"])
        assert reverse("cases:report", args=[report.pk]) not in body
        assert "CyberTipline report" not in body.replace("CyberTipline reports are listed only", "")

    @pytest.mark.parametrize("role", ["specialist", "senior", "admin"])
    def test_cybertip_reports_are_shown_with_reveal(self, client, users, world, role):
        login(client, users[role])
        body = client.get(reverse("cases:account", args=[world["account"].pk])).content.decode()
        report = CyberTipReport.objects.get(case=world["case"])
        assert reverse("cases:report", args=[report.pk]) in body

    def test_the_decision_names_who_decided(self, client, users, world):
        login(client, users["analyst"])
        body = client.get(reverse("cases:account", args=[world["account"].pk])).content.decode()
        assert "by sam" in body  # the specialist's username

    def test_profile_marks_what_the_text_detectors_found(self, client, users, world):
        account = world["account"]
        Signal.objects.create(account=account, kind="text", detector="terms", label="Text: test", score=0.9,
                              explanation="x", dedupe_key="t-1", details={"fields": [
                                  {"field": "bio", "label": "Bio", "text": "hello there",
                                   "spans": [{"start": 6, "end": 11}]}]})
        login(client, users["analyst"])
        body = client.get(reverse("cases:account", args=[account.pk])).content.decode()
        assert "hello <mark>there</mark>" in body

    def test_it_pages_through_many_entries_without_losing_or_repeating_one(self, users, world):
        account = world["account"]
        start = timezone.now() - timedelta(days=1)
        Item.objects.bulk_create([Item(account=account, md5=f"{i:032x}", sha256=f"{i:064x}",
                                       status=ItemStatus.SCANNED, kind=ItemKind.IMAGE) for i in range(180)])
        # Many rows at the very same instant: the cursor must break ties by kind and id.
        Item.objects.filter(account=account, md5__startswith="0000").update(created_at=start)
        expected = sum(1 for r in _all_rows(self, users["senior"], account))
        seen, cursor, pages = [], None, 0
        while True:
            rows, cursor = self.rows(users["senior"], account, before=cursor)
            pages += 1
            assert len(rows) <= subjects.PAGE
            seen += [(r["kind"], r["obj"].pk) for r in rows]
            if not cursor:
                break
        assert len(seen) == len(set(seen)) == expected
        assert pages == -(-expected // subjects.PAGE)

    def test_a_bad_cursor_is_a_clear_400(self, client, users, world):
        login(client, users["analyst"])
        url = reverse("cases:account", args=[world["account"].pk])
        for bad in ("x", "1:nope:2", "1:item", "9" * 30 + ":item:1", "1:item:-1", "a" * 500, "1:item:1:2"):
            response = client.get(url, {"before": bad})
            assert response.status_code == 400, bad
            assert b"not valid" in response.content
        assert client.get(url, {"members_after": "x"}).status_code == 400
        group_url = reverse("cases:group", args=[world["group"].pk])
        assert client.get(group_url, {"members_after": "-1"}).status_code == 400

    def test_the_page_links_to_the_next_page(self, client, users, world):
        account = world["account"]
        Item.objects.bulk_create([Item(account=account, md5=f"{i:032x}", sha256=f"{i:064x}",
                                       status=ItemStatus.SCANNED) for i in range(60)])
        login(client, users["analyst"])
        body = client.get(reverse("cases:account", args=[account.pk])).content.decode()
        assert "?before=" in body
        cursor = body.split("?before=")[1].split('"')[0].replace("%3A", ":")
        response = client.get(reverse("cases:account", args=[account.pk]), {"before": cursor})
        assert response.status_code == 200 and "Back to the newest" in response.content.decode()


def _all_rows(test, user, account):
    rows, _ = test.rows(user, account, page=100000)
    return rows


class TestQueryCounts:
    def page_queries(self, client, url):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        self.last = [q["sql"][:60] for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"]]
        return len(ctx.captured_queries)

    def test_the_account_page_costs_the_same_for_ten_thousand_items(self, client, users, world):
        login(client, users["senior"])
        account = world["account"]
        url = reverse("cases:account", args=[account.pk])
        self.page_queries(client, url)  # warm the per-process caches (content types, session)
        few = self.page_queries(client, url)
        few_sql = self.last
        items = Item.objects.bulk_create([Item(account=account, md5=f"{i:032x}", sha256=f"{i:064x}",
                                               status=ItemStatus.SCANNED, kind=ItemKind.IMAGE)
                                          for i in range(10_000)])
        Signal.objects.bulk_create([Signal(item=item, account=account, kind="classifier", detector="c",
                                           label="Classifier", score=.5, explanation="e", dedupe_key=f"k{item.pk}")
                                    for item in items[:500]])
        Signal.objects.filter(dedupe_key__startswith="k").update(created_at=timezone.now() - timedelta(days=1))
        many = self.page_queries(client, url)
        assert many == few, (few, many, Counter(few_sql) - Counter(self.last), Counter(self.last) - Counter(few_sql))
        assert many < 60
        older = self.page_queries(client, url + "?before=" + subjects.encode_cursor(timezone.now(), "item", 10**9))
        assert older <= many + 2

    def test_the_group_page_costs_the_same_for_many_members(self, client, users, world):
        login(client, users["senior"])
        group = world["group"]
        url = reverse("cases:group", args=[group.pk])
        self.page_queries(client, url)  # warm the per-process caches (content types, session)
        few = self.page_queries(client, url)
        intake.upsert_group("grp-1", {}, members=[f"m-{i}" for i in range(150)])
        many = self.page_queries(client, url)
        assert many == few, (few, many)

    def test_the_network_is_bounded(self, client, users, world):
        login(client, users["senior"])
        url = reverse("cases:group_network", args=[world["group"].pk]) + "?hops=2"
        self.page_queries(client, url)
        few = self.page_queries(client, url)
        intake.upsert_group("grp-1", {}, members=[f"m-{i}" for i in range(150)])
        many = self.page_queries(client, url)
        assert many <= few + 1 and many < 25


class TestPivots:
    def test_same_media_leads_to_the_other_account(self, client, users, world):
        login(client, users["analyst"])
        response = client.get(reverse("cases:item_pivot", args=[world["item"].pk]))
        body = response.content.decode()
        assert reverse("cases:account", args=[world["twin"].account_id]) in body
        assert "the same file" in body
        pivot = subjects.item_pivot(world["item"])
        entry = next(e for e in pivot["accounts"] if e["subject"].pk == world["twin"].account_id)
        assert entry["distance"] == 0 and entry["open_case"] == world["other_case"]

    def test_similar_media_comes_from_the_pdq_neighbours(self, world):
        near_item = Item.objects.create(account=Account.objects.get_or_create(external_id="acct-7")[0],
                                        md5="7" * 32, sha256="7" * 64, status=ItemStatus.SCANNED)
        pivot = subjects.item_pivot(world["item"], near=[(near_item.pk, 12), {"item_id": world["twin"].pk,
                                                                              "distance": 3}])
        entry = next(e for e in pivot["accounts"] if e["subject"].external_id == "acct-7")
        assert entry["distance"] == 12 and not entry["exact"]
        twin = next(e for e in pivot["accounts"] if e["subject"].pk == world["twin"].account_id)
        assert twin["distance"] == 0  # identical beats similar
        assert [e["subject"].external_id for e in pivot["accounts"]][-1] == "acct-7"

    def test_the_view_asks_the_index_for_the_stored_orientations(self, client, users, world, monkeypatch):
        calls = []
        near_item = Item.objects.create(account=Account.objects.get_or_create(external_id="acct-8")[0],
                                        md5="8" * 32, sha256="8" * 64, status=ItemStatus.SCANNED)

        def fake(vectors, radius, limit, timeout):
            calls.append((vectors, radius, limit))
            return search.NearHits([(near_item.pk, 9)], True)

        monkeypatch.setattr(subject_views, "near_items", fake)
        login(client, users["analyst"])
        body = client.get(reverse("cases:item_pivot", args=[world["item"].pk])).content.decode()
        assert calls and calls[0][1] == 31 and calls[0][0] == subjects.vectors_of(world["item"])
        assert len(calls[0][0]) % 32 == 0 and len(calls[0][0]) > 32  # every stored orientation, not one PDQ
        assert "PDQ distance 9" in body and "acct-8" in body
        assert "did not answer" not in body

    def test_without_the_index_worker_exact_pdq_matches_still_show_and_it_says_so(self, client, users, world):
        # No worker holds the index in this test: near_items falls back to exact PDQ matches in the database.
        copy = Item.objects.create(account=Account.objects.get_or_create(external_id="acct-5")[0],
                                   md5="5" * 32, sha256="5" * 64, pdq=world["item"].pdq, pdq_quality=100,
                                   status=ItemStatus.SCANNED)
        login(client, users["analyst"])
        body = client.get(reverse("cases:item_pivot", args=[world["item"].pk])).content.decode()
        assert reverse("cases:account", args=[copy.account_id]) in body
        assert "PDQ distance 0" in body and "did not answer in time" in body

    def test_a_bad_item_id_is_404(self, client, users, world):
        login(client, users["analyst"])
        assert client.get("/items/abc/similar/").status_code == 404

    def test_co_members_are_ranked_by_shared_groups(self, world):
        ranked = [(a.external_id, a.shared) for a in subjects.co_members(world["account"])]
        assert ranked == [("acct-3", 2), ("acct-2", 1)]

    def test_linked_accounts_share_a_phone(self, client, users, world):
        linked = subjects.linked_accounts(world["account"])
        assert [entry["account"].external_id for entry in linked] == ["acct-2"]
        login(client, users["analyst"])
        body = client.get(reverse("cases:account", args=[world["account"].pk])).content.decode()
        assert "shares phone hash" in body

    def test_a_group_lists_its_members_with_their_status(self, client, users, world):
        Account.objects.filter(external_id="acct-3").update(status=SubjectStatus.BANNED)
        login(client, users["analyst"])
        body = client.get(reverse("cases:group", args=[world["group"].pk])).content.decode()
        for name in ("acct-1", "acct-2", "acct-3"):
            assert name in body
        assert "banned" in body

    def test_members_are_paged(self, users, world):
        intake.upsert_group("grp-1", {}, members=[f"m-{i}" for i in range(120)])
        seen, after = [], 0
        while after is not None:
            rows, after = subjects.members_page(world["group"], after or 0)
            seen += [m.account_id for m in rows]
            if after is None:
                break
        assert len(seen) == len(set(seen)) == 123


class TestNetwork:
    def get_svg(self, client, url):
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Type"].startswith("image/svg+xml")
        assert "no-store" in response["Cache-Control"]
        return response, ET.fromstring(response.content)

    def test_it_is_a_well_formed_svg_of_links_and_no_script(self, client, users, world):
        login(client, users["analyst"])
        response, root = self.get_svg(client, reverse("cases:account_network", args=[world["account"].pk]))
        assert root.tag == f"{SVG}svg"
        assert not list(root.iter(f"{SVG}script")) and b"<script" not in response.content.lower()
        assert b"javascript:" not in response.content.lower() and b"http://" not in response.content.replace(
            b'xmlns="http://www.w3.org/2000/svg"', b"")
        for element in root.iter():
            for name, value in element.attrib.items():
                assert not name.lower().startswith("on"), name
                assert "url(" not in value
        links = [a.get("href") for a in root.iter(f"{SVG}a")]
        assert reverse("cases:account", args=[world["account"].pk]) in links
        assert reverse("cases:group", args=[world["group"].pk]) in links
        assert reverse("cases:account", args=[Account.objects.get(external_id="acct-2").pk]) in links  # linked
        assert all(link.startswith("/") for link in links)
        shapes = {child.tag for a in root.iter(f"{SVG}a") for child in a}
        assert f"{SVG}circle" in shapes and f"{SVG}rect" in shapes

    def test_two_hops_reach_further_and_banned_is_said_in_words(self, client, users, world):
        Account.objects.filter(external_id="acct-3").update(status=SubjectStatus.BANNED)
        Account.objects.filter(external_id="acct-1").update(status=SubjectStatus.ACTIVE)  # decided, unbanned
        login(client, users["analyst"])
        url = reverse("cases:account_network", args=[world["account"].pk])
        _, one = self.get_svg(client, url)
        _, two = self.get_svg(client, url + "?hops=2")
        assert len(list(two.iter(f"{SVG}a"))) > len(list(one.iter(f"{SVG}a")))
        text = " ".join(t.text or "" for t in two.iter(f"{SVG}text"))
        assert "BANNED" in text and "ACTIONED" in text  # acct-3 banned; acct-1's case was decided

    def test_it_is_capped_and_says_how_many_were_left_out(self, client, users, world):
        intake.upsert_group("grp-1", {}, members=[f"m-{i:03}" for i in range(100)])
        login(client, users["analyst"])
        response, root = self.get_svg(client, reverse("cases:group_network", args=[world["group"].pk]))
        assert len(list(root.iter(f"{SVG}a"))) == subjects.NETWORK_CAP
        assert b"more not shown" in response.content

    def test_the_layout_is_deterministic(self, client, users, world):
        login(client, users["analyst"])
        url = reverse("cases:group_network", args=[world["group"].pk]) + "?hops=2"
        assert client.get(url).content == client.get(url).content

    def test_hostile_names_stay_text(self, client, users, world):
        Account.objects.filter(external_id="acct-2").update(screen_name='<script>x</script>\x01"&')
        login(client, users["analyst"])
        _, root = self.get_svg(client, reverse("cases:account_network", args=[world["account"].pk]))
        assert not list(root.iter(f"{SVG}script"))

    def test_bad_hops_is_a_400(self, client, users, world):
        login(client, users["analyst"])
        url = reverse("cases:account_network", args=[world["account"].pk])
        for bad in ("3", "0", "x", "1" * 300):
            assert client.get(url, {"hops": bad}).status_code == 400

    def test_the_page_embeds_it_with_a_text_alternative(self, client, users, world):
        login(client, users["analyst"])
        body = client.get(reverse("cases:account", args=[world["account"].pk])).content.decode()
        assert f'<img src="{reverse("cases:account_network", args=[world["account"].pk])}"' in body
        assert "Within one hop" in body and reverse("cases:group", args=[world["group"].pk]) in body


class TestCasePageAndQueue:
    def test_the_case_page_links_the_subject_and_shows_tags(self, client, users, world):
        case = world["other_case"]
        tag_subject(users["reviewer"], case.account, "possible_minor_victim")
        login(client, users["reviewer"])
        body = client.get(reverse("cases:detail", args=[case.pk])).content.decode()
        assert reverse("cases:account", args=[case.account_id]) in body
        assert "Possible minor victim" in body and "rita" in body

    def test_the_case_page_of_a_group_links_its_members(self, client, users, world):
        intake.submit_report(reporter="x", reason="other", group_id="grp-1")
        (case,) = [c for c in triage_all() if c.group_id]
        login(client, users["reviewer"])
        body = client.get(reverse("cases:detail", args=[case.pk])).content.decode()
        assert reverse("cases:group", args=[case.group_id]) in body

    def test_the_queue_shows_tags_without_a_query_per_row(self, client, users, world):
        login(client, users["reviewer"])
        with CaptureQueriesContext(connection) as ctx:
            body = client.get(reverse("cases:queue")).content.decode()
        base = len(ctx.captured_queries)
        case = world["other_case"]
        assert reverse("cases:account", args=[case.account_id]) in body
        for i in range(5):
            intake.submit_report(reporter="x", reason="other", account_id=f"q-{i}")
        triage_all()
        for account in Account.objects.filter(external_id__startswith="q-"):
            tag_subject(users["reviewer"], account, "possible_minor_victim")
        with CaptureQueriesContext(connection) as ctx:
            body = client.get(reverse("cases:queue")).content.decode()
        assert body.count("Possible minor victim") == 5
        assert len(ctx.captured_queries) <= base + 1


def test_notes_appear_on_the_subject_page(client, users, world):
    login(client, users["analyst"])
    body = client.get(reverse("cases:account", args=[world["account"].pk])).content.decode()
    assert SubjectNote.objects.filter(account=world["account"]).exists()
    assert "Seen before in grp-1" in body


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_pages_work_in_a_browser_with_no_serious_accessibility_problems(live_server, users, monkeypatch):
    """In headless Chromium under the real CSP: the network picture loads as an image, the pages pass axe,
    the keyboard reaches the tag form with a visible focus ring, and adding a tag comes back with it shown."""
    import shutil
    from pathlib import Path

    from tests.test_accessibility import axe_problems, new_page
    from tests.test_browser import CHROMIUM, SHOTS, playwright, sign_in

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    intake.upsert_account("web-1", {"screen_name": "webby", "facts": {"phone_hash": "ph-w"}})
    intake.upsert_account("web-2", {"facts": {"phone_hash": "ph-w"}})
    intake.upsert_group("web-g", {"name": "Web group"}, members=["web-1", "web-2"])
    known_bank([41])
    item = scanned_item(encoded(41, "watermarked"), account="web-1", group="web-g")
    scanned_item(encoded(41, "watermarked"), account="web-3")
    triage_all()
    account = Account.objects.get(external_id="web-1")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = new_page(browser)
        csp_errors = []
        page.on("console", lambda msg: csp_errors.append(msg.text) if "Content Security Policy" in msg.text else None)
        sign_in(page, live_server, "rita", "pw-rita")
        SHOTS.mkdir(parents=True, exist_ok=True)
        for name, path in (("account", reverse("cases:account", args=[account.pk])),
                           ("group", reverse("cases:group", args=[Group.objects.get(external_id="web-g").pk])),
                           ("pivot", reverse("cases:item_pivot", args=[item.pk]))):
            page.goto(live_server.url + path)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(SHOTS / f"subject-{name}.png"), full_page=True)
            assert not axe_problems(page), (name, axe_problems(page))
            if name != "pivot":
                width = page.evaluate("() => document.querySelector('.network img').naturalWidth")
                assert width > 0, "the network picture did not load as an image"
        assert not csp_errors, csp_errors
        page.goto(live_server.url + reverse("cases:account", args=[account.pk]))
        page.focus("#tag-choice")
        page.keyboard.press("Tab")
        page.keyboard.type("known to us")
        page.keyboard.press("Tab")
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), outline
        page.keyboard.press("Enter")
        page.wait_for_load_state("networkidle")
        assert "Tagged" in page.inner_text(".messages")
        assert "Possible minor victim" in page.inner_text(".subject-head")
        browser.close()


def test_co_members_leave_out_huge_groups(db, settings, monkeypatch):
    from cases import subjects as subject_queries
    from detection import intake
    monkeypatch.setattr(subject_queries, "CO_MEMBER_GROUP_MAX", 3)
    intake.upsert_group("small", {}, members=["me", "friend"])
    intake.upsert_group("huge", {}, members=["me", "x1", "x2", "x3", "friend"])
    me = Account.objects.get(external_id="me")
    assert [(a.external_id, a.shared) for a in subject_queries.co_members(me)] == [("friend", 1)]
