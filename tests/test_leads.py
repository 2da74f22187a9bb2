"""Leads' tools: the live roster (claims, exposure, who is signed in), releasing signed-out reviewers' claims,
and the audit search with its CSV export."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cases import leads
from cases.actions import ActionError
from cases.actions.claims import claim_case, release_case, release_signed_out
from cases.models import Case, CaseStatus
from detection import intake
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from reviewconsole.audit.recorder import audit
from tests.conftest import make_user, verify_2fa
from tests.factories import triage_all

ALLOWED = ("senior", "admin")
REFUSED = ("reviewer", "specialist", "analyst", "nobody", "liaison", "officer")


def reported_cases(n):
    """`n` open cases, each from one user report on its own account (no files: nothing to see)."""
    for k in range(n):
        intake.submit_report(reporter=f"u-{k}", reason="other", account_id=f"acct-{k}")
    return sorted(triage_all(), key=lambda c: c.pk)


def signed_in(user):
    """A browser of `user` with a live session: the roster counts them as signed in."""
    browser = Client()
    browser.force_login(user)
    browser.get(reverse("home"))  # the session policy stamps its times on the first request
    return browser


def as_role(client, users, role):
    if role != "anonymous":
        client.force_login(users[role])
    return client


def refused(response, role):
    location = response.get("Location", "")
    if role == "anonymous":
        return response.status_code == 302 and "/login/" in location
    if role == "officer" and response.status_code == 302:
        return location.endswith("/le/")  # fenced into the portal
    return response.status_code == 403


def claim_values(html):
    return re.findall(r'name="claim" value="(\d+:\d+)"', html)


# ------------------------------------------------------------------------------------------ permissions

VIEWS = [("get", "cases:roster", {}), ("post", "cases:release_signed_out", {}), ("get", "cases:audit", {}),
         ("get", "cases:audit_csv", {})]


@pytest.mark.parametrize("view", VIEWS, ids=[name for _, name, _ in VIEWS])
@pytest.mark.parametrize("role", REFUSED + ("anonymous",))
def test_lead_pages_refuse_everyone_but_seniors_and_admins(client, users, role, view):
    method, name, data = view
    response = getattr(as_role(client, users, role), method)(reverse(name), data)
    assert refused(response, role), (role, name, response.status_code, response.get("Location"))
    assert not AuditEvent.objects.filter(action__in=[Event.AUDIT_SEARCHED, Event.AUDIT_EXPORTED,
                                                     Event.CASES_RELEASED_SIGNED_OUT]).exists()


@pytest.mark.parametrize("role", ALLOWED)
def test_seniors_and_admins_open_the_roster_and_the_audit_search(client, users, role):
    client.force_login(users[role])
    assert client.get(reverse("cases:roster")).status_code == 200
    assert client.get(reverse("cases:audit")).status_code == 200
    response = client.post(reverse("cases:release_signed_out"))
    assert response.status_code == 302 and response["Location"] == reverse("cases:roster")
    verify_2fa(client, users[role])
    response = client.get(reverse("cases:audit_csv"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    b"".join(response.streaming_content)


def test_the_release_action_itself_refuses_a_non_senior(users):
    with pytest.raises(ActionError):
        release_signed_out(users["reviewer"], {}, signed_in=set())


# ----------------------------------------------------------------------------------------------- roster

def test_the_roster_shows_who_holds_what_since_when_and_who_is_signed_in(client, users):
    first, second, free = reported_cases(3)
    rita, sam = users["reviewer"], users["specialist"]
    claim_case(rita, first.pk)
    claim_case(sam, second.pk)
    signed_in(sam)
    claimed_at = AuditEvent.objects.get(action=Event.CASE_CLAIMED, case=first).created_at

    data = leads.roster(signed_in=leads.signed_in_user_ids())
    by_case = {c.case.pk: c for c in data.claims}
    assert set(by_case) == {first.pk, second.pk}  # the unclaimed case is nobody's
    assert by_case[first.pk].case.assigned_to == rita and by_case[first.pk].since == claimed_at
    assert not by_case[first.pk].signed_in and by_case[second.pk].signed_in
    assert by_case[first.pk].case.lease_expires_at > timezone.now() and not by_case[first.pk].lease_expired
    assert [c.case.pk for c in data.signed_out_claims] == [first.pk]
    people = {r.user.username: r for r in data.reviewers}
    assert people["rita"].holding == 1 and not people["rita"].signed_in
    assert people["sam"].holding == 1 and people["sam"].signed_in

    client.force_login(users["senior"])
    html = client.get(reverse("cases:roster")).content.decode()
    assert f'data-case="{first.pk}"' in html and f'data-case="{second.pk}"' in html
    assert f'data-case="{free.pk}"' not in html
    assert "signed out" in html and "signed in" in html
    assert claim_values(html) == [f"{first.pk}:{Case.objects.get(pk=first.pk).version}"]
    assert reverse("cases:take_over", args=[first.pk]) in html


def test_the_roster_shows_exposure_today_and_a_break_due(client, users, settings):
    settings.EXPOSURE_REVEALS_PER_DAY = 2
    (case,) = reported_cases(1)
    sam = users["specialist"]
    claim_case(sam, case.pk)
    for _ in range(2):
        audit(sam, Event.EVIDENCE_REVEALED, case=case)
    row = next(r for r in leads.roster(signed_in=set()).reviewers if r.user == sam)
    assert row.reveals == 2 and row.over_budget
    client.force_login(users["senior"])
    assert "break due" in client.get(reverse("cases:roster")).content.decode()


def test_an_expired_or_idle_session_counts_as_signed_out(users, settings):
    browser = signed_in(users["reviewer"])
    assert users["reviewer"].pk in leads.signed_in_user_ids()
    session = browser.session
    session["policy_seen"] -= settings.SESSION_IDLE_SECONDS + 5
    session.save()
    assert users["reviewer"].pk not in leads.signed_in_user_ids()
    browser.post(reverse("logout"))
    assert users["reviewer"].pk not in leads.signed_in_user_ids()


def test_a_senior_reassigns_a_claimed_case_from_the_roster(client, users):
    (case,) = reported_cases(1)
    claim_case(users["reviewer"], case.pk)
    client.force_login(users["senior"])
    html = client.get(reverse("cases:roster")).content.decode()
    assert f'value="{users["specialist"].pk}"' in html  # a reviewer to hand it to
    client.post(reverse("cases:take_over", args=[case.pk]), {"reassign": "1", "to": users["specialist"].pk})
    case.refresh_from_db()
    assert case.assigned_to == users["specialist"] and case.status == CaseStatus.CLAIMED
    event = AuditEvent.objects.get(action=Event.CASE_REASSIGNED)
    assert event.details == {"from": "rita", "to": "sam"} and event.actor == users["senior"]


def test_a_senior_takes_a_case_over_from_the_roster(client, users):
    (case,) = reported_cases(1)
    claim_case(users["reviewer"], case.pk)
    client.force_login(users["senior"])
    client.post(reverse("cases:take_over", args=[case.pk]))
    case.refresh_from_db()
    assert case.assigned_to == users["senior"]
    assert AuditEvent.objects.filter(action=Event.CASE_TAKEN_OVER, case=case).exists()
    # The roster now dates the claim from the take-over.
    (claim,) = leads.roster(signed_in=set()).claims
    assert claim.since == AuditEvent.objects.get(action=Event.CASE_TAKEN_OVER).created_at


def test_release_gives_back_only_signed_out_reviewers_claims(client, users):
    gone, present = reported_cases(2)
    claim_case(users["reviewer"], gone.pk)  # rita signed out (no live session)
    claim_case(users["specialist"], present.pk)
    signed_in(users["specialist"])
    client.force_login(users["senior"])
    html = client.get(reverse("cases:roster")).content.decode()
    # Even a hand-made form naming the signed-in reviewer's case does not release it.
    values = claim_values(html) + [f"{present.pk}:{Case.objects.get(pk=present.pk).version}"]
    response = client.post(reverse("cases:release_signed_out"), {"claim": values}, follow=True)
    assert "Released 1 case" in response.content.decode()
    gone.refresh_from_db()
    present.refresh_from_db()
    assert gone.status == CaseStatus.OPEN and gone.assigned_to is None
    assert present.status == CaseStatus.CLAIMED and present.assigned_to == users["specialist"]
    summary = AuditEvent.objects.get(action=Event.CASES_RELEASED_SIGNED_OUT)
    assert summary.details == {"released": [gone.pk], "skipped": [present.pk]} and summary.actor == users["senior"]
    (released,) = AuditEvent.objects.filter(action=Event.CASE_RELEASED)
    assert released.case_id == gone.pk and released.details["holder"] == "rita"


def test_release_skips_a_case_claimed_again_meanwhile(client, users):
    (case,) = reported_cases(1)
    claim_case(users["reviewer"], case.pk)
    client.force_login(users["senior"])
    values = claim_values(client.get(reverse("cases:roster")).content.decode())
    assert values
    # Meanwhile rita gives it back and another reviewer (also signed out by now) claims it.
    release_case(users["reviewer"], case.pk)
    claim_case(make_user("rob", "reviewer"), case.pk)
    client.post(reverse("cases:release_signed_out"), {"claim": values})
    case.refresh_from_db()
    assert case.status == CaseStatus.CLAIMED and case.assigned_to.username == "rob"
    assert AuditEvent.objects.get(action=Event.CASES_RELEASED_SIGNED_OUT).details["released"] == []
    assert not AuditEvent.objects.filter(action=Event.CASE_RELEASED, actor=users["senior"]).exists()


@pytest.mark.parametrize("values", [["x:1"], ["1"], ["1:"], ["1:2:3"], [":"]])
def test_release_refuses_a_damaged_form_clearly(client, users, values):
    client.force_login(users["senior"])
    response = client.post(reverse("cases:release_signed_out"), {"claim": values}, follow=True)
    assert response.status_code == 200 and "form is damaged" in response.content.decode()
    assert not AuditEvent.objects.filter(action=Event.CASES_RELEASED_SIGNED_OUT).exists()


# ----------------------------------------------------------------------------------------- audit search

@pytest.fixture
def log(users):
    """A small audit log: who viewed and revealed which item from where, and some other work."""
    (case,) = reported_cases(1)
    item = intake.submit_text("hello there", account_id="acct-0")
    rows = {
        "rita_blurred": audit(users["reviewer"], Event.EVIDENCE_VIEWED_BLURRED, case=case, item=item,
                              ip="10.0.0.1"),
        "sam_revealed": audit(users["specialist"], Event.EVIDENCE_REVEALED, case=case, item=item, ip="10.0.0.2"),
        "sam_note": audit(users["specialist"], Event.SUBJECT_NOTE_ADDED, object_type="account", object_id="77",
                          ip="10.0.0.2"),
        "system": audit(None, Event.RULE_FIRED, object_type="rule", object_id="3"),
    }
    return case, item, rows


def search(client, **params):
    response = client.get(reverse("cases:audit"), params)
    return response, [int(pk) for pk in re.findall(r'data-event="(\d+)"', response.content.decode())]


def test_the_audit_search_filters_by_each_field(client, users, log):
    case, item, rows = log
    client.force_login(users["senior"])
    pk = {name: row.pk for name, row in rows.items()}
    assert set(search(client, actor="sam")[1]) == {pk["sam_revealed"], pk["sam_note"]}
    assert search(client, actor="system", event="rule.fired")[1] == [pk["system"]]
    assert pk["system"] in search(client, actor="system")[1] and pk["sam_note"] not in search(client, actor="system")[1]
    assert search(client, event="evidence.revealed")[1] == [pk["sam_revealed"]]
    assert set(search(client, event=["evidence.revealed", "rule.fired"])[1]) == {pk["sam_revealed"], pk["system"]}
    assert set(search(client, preset="viewed")[1]) == {pk["rita_blurred"], pk["sam_revealed"]}
    assert search(client, preset="viewed", ip="10.0.0.1")[1] == [pk["rita_blurred"]]
    on_case = search(client, case=case.pk)[1]
    assert pk["rita_blurred"] in on_case and pk["sam_note"] not in on_case
    assert search(client, object_type="account", object_id="77")[1] == [pk["sam_note"]]
    assert set(search(client, item=item.pk, preset="viewed")[1]) == {pk["rita_blurred"], pk["sam_revealed"]}
    assert search(client, item=item.pk + 1000)[1] == []
    today = timezone.localdate()
    assert pk["system"] in search(client, since=today.isoformat(), until=today.isoformat())[1]
    assert search(client, until=(today - timedelta(days=1)).isoformat())[1] == []


def test_every_search_is_audited_with_its_filter(client, users, log):
    client.force_login(users["senior"])
    search(client, actor="sam", preset="viewed", ip="10.0.0.2")
    event = AuditEvent.objects.filter(action=Event.AUDIT_SEARCHED).get()
    assert event.actor == users["senior"]
    assert event.details["filter"] == {"actor": "sam", "preset": "viewed", "ip": "10.0.0.2",
                                       "events": ["evidence.viewed_blurred", "evidence.revealed"]}


def test_the_audit_search_pages_by_keyset_without_gaps_or_repeats(client, users):
    now = timezone.now()
    made = [AuditEvent.objects.create(actor_label="system", action=Event.RULE_FIRED,
                                      created_at=now - timedelta(seconds=k // 3)) for k in range(130)]  # ties
    client.force_login(users["senior"])
    seen, params = [], {"event": "rule.fired"}
    for _ in range(5):
        response, page = search(client, **params)
        assert response.status_code == 200 and len(page) <= leads.AUDIT_PAGE
        seen += page
        cursor = response.context["next"]
        if cursor is None:
            break
        params = {"event": "rule.fired", "after": cursor}
    assert sorted(seen) == sorted(e.pk for e in made) and len(seen) == len(set(seen)) == 130
    ordered = list(AuditEvent.objects.filter(pk__in=seen).order_by("-created_at", "-id").values_list("pk", flat=True))
    assert seen == ordered


@pytest.mark.parametrize("params, field", [
    ({"event": "no.such"}, "event"),
    ({"case": "abc"}, "case"),
    ({"item": "-3"}, "item"),
    ({"ip": "999.1.1.1"}, "ip"),
    ({"since": "2026-13-01"}, "since"),
    ({"since": "2026-05-02", "until": "2026-05-01"}, "since"),
    ({"preset": "everything"}, "preset"),
    ({"actor": "x" * 300}, "actor"),
    ({"after": "garbage"}, "after"),
    ({"after": "99999999999999999999999999.1"}, "after"),
    ({"object_id": "y" * 150, "object_type": "z" * 150, "actor": "a" * 150, "ip": "1" * 150,
      "case": "1" * 18, "event": ["q" * 150] * 30}, ""),
])
def test_bad_audit_filters_get_a_clear_400(client, users, params, field):
    client.force_login(users["senior"])
    response = client.get(reverse("cases:audit"), params)
    assert response.status_code == 400
    assert field in response.context["error"] and response.context["error"] in response.content.decode()
    assert not AuditEvent.objects.filter(action=Event.AUDIT_SEARCHED).exists()


def test_the_audit_page_shows_no_evidence(client, users, log):
    client.force_login(users["senior"])
    html = client.get(reverse("cases:audit"), {"preset": "viewed"}).content.decode()
    assert "<img" not in html and "/evidence/" not in html


# ------------------------------------------------------------------------------------------- CSV export

def csv_rows(response):
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_csv_export_needs_the_second_factor(client, users, log):
    client.force_login(users["senior"])
    response = client.get(reverse("cases:audit_csv"), {"preset": "viewed"})
    assert response.status_code == 302 and reverse("two_factor_verify") in response["Location"]
    assert not AuditEvent.objects.filter(action=Event.AUDIT_EXPORTED).exists()


def test_the_csv_export_streams_the_same_filter_and_is_audited(client, users, log):
    _, _, rows = log
    client.force_login(users["senior"])
    verify_2fa(client, users["senior"])
    response = client.get(reverse("cases:audit_csv"), {"preset": "viewed", "ip": "10.0.0.2"})
    assert response.status_code == 200 and response.streaming and response["Cache-Control"] == "no-store"
    header, *body = csv_rows(response)
    assert header[:3] == ["time", "actor", "event"]
    assert [(r[1], r[2], r[7]) for r in body] == [("sam", "evidence.revealed", "10.0.0.2")]
    exported = AuditEvent.objects.get(action=Event.AUDIT_EXPORTED)
    assert exported.actor == users["senior"] and exported.details["filter"]["ip"] == "10.0.0.2"


def test_the_csv_export_escapes_formulas(client, users):
    for label in ("=HYPERLINK(\"http://x\")", "+1+1", "-2", "@SUM(A1)"):
        audit(None, Event.RULE_FIRED, actor_label=label, object_id="=1+2", details={"x": "y"})
    client.force_login(users["admin"])
    verify_2fa(client, users["admin"])
    _, *body = csv_rows(client.get(reverse("cases:audit_csv"), {"event": "rule.fired"}))
    assert len(body) == 4
    for row in body:
        assert all(not cell.startswith(("=", "+", "-", "@")) for cell in row), row
        assert row[1].startswith("'") and row[6] == "'=1+2"


def test_the_csv_export_stops_at_its_cap_and_says_so(client, users, monkeypatch):
    monkeypatch.setattr(leads, "AUDIT_CSV_MAX_ROWS", 3)
    for k in range(5):
        audit(None, Event.RULE_FIRED, object_id=str(k))
    client.force_login(users["senior"])
    verify_2fa(client, users["senior"])
    _, *body = csv_rows(client.get(reverse("cases:audit_csv"), {"event": "rule.fired"}))
    assert len(body) == 4 and "Stopped at 3 rows" in body[-1][0]
    assert AuditEvent.objects.get(action=Event.AUDIT_EXPORTED).details["cap"] == 3


def test_the_csv_export_refuses_a_bad_filter(client, users):
    client.force_login(users["senior"])
    verify_2fa(client, users["senior"])
    response = client.get(reverse("cases:audit_csv"), {"ip": "nope"})
    assert response.status_code == 400 and not AuditEvent.objects.filter(action=Event.AUDIT_EXPORTED).exists()
