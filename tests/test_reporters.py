"""Reporters: what a new report weighs (muted, trusted, poor record, normal) through the real API, their
standing recounted from their reports' cases, and the seniors' page to mute or trust them."""

import json

import pytest
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cases import leads
from cases.actions import ActionError
from cases.actions.claims import claim_case
from cases.actions.decisions import decide, undo
from cases.actions.reporters import mute_reporter, refresh_reporter_standing, trust_reporter
from cases.jobs import refresh_reporters
from cases.models import Case
from detection.models import Reporter, Signal, UserReport
from detection.reporters import report_weight
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent
from tests.factories import ban_only, triage_all

ALLOWED = ("senior", "admin")
REFUSED = ("reviewer", "specialist", "analyst", "nobody", "liaison", "officer")


def report(api, reporter, account, reason="grooming"):
    response = api.post("/api/v1/reports", json.dumps({"reporter": reporter, "account": account, "reason": reason}),
                        content_type="application/json")
    assert response.status_code == 202, response.content
    return UserReport.objects.get(pk=response.json()["id"])


def signal_of(user_report):
    return Signal.objects.get(dedupe_key=f"report:{user_report.pk}")


# ------------------------------------------------------------------------------------------------ weight

def test_a_reporter_never_seen_weighs_normally(api):
    signal = signal_of(report(api, "u-new", "a-1"))
    assert signal.score == 0.5 and signal.details["standing"] == "normal" and not signal.details["muted"]
    assert "no earlier reports decided; weighs normally" in signal.explanation
    (case,) = triage_all()
    assert case.signals.get() == signal


def test_a_trusted_flaggers_report_weighs_more(api):
    Reporter.objects.create(external_id="u-trusted", trusted_at=timezone.now(), reports=3, upheld=3)
    trusted = signal_of(report(api, "u-trusted", "a-1"))
    normal = signal_of(report(api, "u-other", "a-2"))
    assert trusted.score > normal.score and trusted.details["weight"] == 1.5
    assert "trusted flagger; reporter's earlier reports: 3 of 3 upheld; weighs more" in trusted.explanation
    cases = {c.account.external_id: c for c in triage_all()}
    assert cases["a-1"].priority > cases["a-2"].priority


def test_a_reporter_whose_reports_are_mostly_dismissed_weighs_less(api):
    Reporter.objects.create(external_id="u-poor", reports=14, upheld=2, dismissed=12)
    signal = signal_of(report(api, "u-poor", "a-1"))
    assert signal.score == 0.25 and signal.details["standing"] == "poor"
    assert "reporter's earlier reports: 2 of 14 upheld; weighs less" in signal.explanation
    (case,) = triage_all()  # it still opens a case: only muting stops that
    assert case.account.external_id == "a-1"


@pytest.mark.parametrize("reports, upheld, standing", [
    (5, 0, "poor"), (5, 1, "normal"),  # 20 % is not under 20 %
    (4, 0, "normal"),  # too few decided to judge
    (10, 1, "poor"), (0, 0, "normal"),
])
def test_a_poor_record_needs_five_decided_and_under_a_fifth_upheld(db, reports, upheld, standing):
    Reporter.objects.create(external_id="u", reports=reports, upheld=upheld, dismissed=reports - upheld)
    assert report_weight("u").standing == standing


def test_a_muted_reporters_report_is_kept_but_weighs_nothing_and_opens_no_case(api):
    Reporter.objects.create(external_id="u-muted", muted_at=timezone.now(), mute_reason="floods", reports=9, upheld=0)
    user_report = report(api, "u-muted", "a-1", reason="nudity")
    signal = signal_of(user_report)
    assert signal.score == 0 and signal.details["muted"] and "muted by a senior" in signal.explanation
    assert signal.triaged_at is not None and signal.case is None
    assert triage_all() == [] and not Case.objects.exists()
    received = AuditEvent.objects.get(action=Event.REPORT_RECEIVED, object_id=str(user_report.pk))
    assert received.details["standing"] == "muted"


@pytest.mark.parametrize("reason", ["csam", "child_exploitation", "grooming", "sextortion", "trafficking"])
def test_a_muted_reporters_report_about_a_childs_safety_still_opens_a_case(api, reason):
    Reporter.objects.create(external_id="u-muted", muted_at=timezone.now(), mute_reason="floods", reports=9, upheld=0)
    signal = signal_of(report(api, "u-muted", "a-1", reason=reason))
    assert signal.details["muted"] and 0 < signal.score < 0.25
    assert "still opens a case, at the lowest weight" in signal.explanation
    (case,) = triage_all()
    assert case.account.external_id == "a-1" and case.signals.get() == signal


def test_a_muted_reporters_report_joins_a_case_already_open(api):
    report(api, "u-1", "a-1")
    (case,) = triage_all()
    Reporter.objects.create(external_id="u-muted", muted_at=timezone.now())
    signal = signal_of(report(api, "u-muted", "a-1", reason="other"))
    assert signal.triaged_at is None  # triage attaches it
    triage_all()
    signal.refresh_from_db()
    assert signal.case == case and signal.score == 0


# --------------------------------------------------------------------------------------------- standing

def decided_reports(api, users):
    """u-a's reports: one upheld (ban), one dismissed, one undecided. u-b's: one dismissed."""
    report(api, "u-a", "acct-ban")
    report(api, "u-a", "acct-dismiss")
    report(api, "u-b", "acct-dismiss")
    report(api, "u-a", "acct-open")
    cases = {c.account.external_id: c for c in triage_all()}
    rita = users["reviewer"]
    for account, policy in (("acct-ban", ban_only().code), ("acct-dismiss", "benign")):
        case = claim_case(rita, cases[account].pk)
        decide(rita, case.pk, policy=policy, version=case.version)
    return cases


def test_standing_is_recounted_from_the_cases_the_reports_fed(api, users):
    decided_reports(api, users)
    assert refresh_reporters() == 2
    a, b = Reporter.objects.get(external_id="u-a"), Reporter.objects.get(external_id="u-b")
    assert (a.reports, a.upheld, a.dismissed) == (2, 1, 1) and a.standing_at is not None
    assert (b.reports, b.upheld, b.dismissed) == (1, 0, 1)
    assert refresh_reporter_standing() == 0  # a second run changes nothing
    assert Reporter.objects.get(external_id="u-a").reports == 2


def test_an_undone_decision_stops_counting(api, users, settings):
    settings.UNDO_SECONDS = 60
    report(api, "u-a", "acct-1")
    (case,) = triage_all()
    case = claim_case(users["reviewer"], case.pk)
    decision, _ = decide(users["reviewer"], case.pk, policy="benign", version=case.version)
    refresh_reporter_standing()
    assert Reporter.objects.get(external_id="u-a").dismissed == 1
    undo(users["reviewer"], decision.pk)
    refresh_reporter_standing()
    assert Reporter.objects.get(external_id="u-a").reports == 0


def test_the_refresh_runs_every_ten_minutes():
    import importlib

    from rq import cron

    import reviewconsole.cron as module
    cron._job_data_registry.clear()
    importlib.reload(module)
    jobs = [job for job in cron._job_data_registry if job["func"] is refresh_reporters]
    cron._job_data_registry.clear()
    assert len(jobs) == 1 and jobs[0]["interval"] == 600


# ----------------------------------------------------------------------------------- mute, trust, page

@pytest.fixture
def reporter(db):
    return Reporter.objects.create(external_id="u-7", reports=10, upheld=1, dismissed=9)


def post_verb(client, reporter, verb, **data):
    return client.post(reverse("cases:reporter_action", args=[reporter.pk]), {"verb": verb, **data}, follow=True)


def test_muting_needs_a_reason_and_is_audited(client, users, reporter):
    client.force_login(users["senior"])
    response = post_verb(client, reporter, "mute", reason="  ")
    assert "Say why" in response.content.decode()
    reporter.refresh_from_db()
    assert reporter.muted_at is None and not AuditEvent.objects.filter(action=Event.REPORTER_MUTED).exists()
    post_verb(client, reporter, "mute", reason="reports every post of a rival")
    post_verb(client, reporter, "mute", reason="again")  # a double click records nothing more
    reporter.refresh_from_db()
    assert reporter.muted_by == users["senior"] and reporter.mute_reason == "reports every post of a rival"
    event = AuditEvent.objects.get(action=Event.REPORTER_MUTED)
    assert event.details == {"reporter": "u-7", "reason": "reports every post of a rival"}
    assert event.object_type == "reporter" and event.object_id == str(reporter.pk)
    post_verb(client, reporter, "unmute")
    reporter.refresh_from_db()
    assert reporter.muted_at is None and reporter.mute_reason == ""
    assert AuditEvent.objects.filter(action=Event.REPORTER_UNMUTED).count() == 1


def test_trusting_and_untrusting_are_audited(client, users, reporter):
    client.force_login(users["admin"])
    post_verb(client, reporter, "trust")
    reporter.refresh_from_db()
    assert reporter.trusted_by == users["admin"] and report_weight("u-7").standing == "trusted"
    post_verb(client, reporter, "untrust")
    reporter.refresh_from_db()
    assert reporter.trusted_at is None and report_weight("u-7").standing == "poor"
    assert [e.action for e in AuditEvent.objects.order_by("pk")] == [Event.REPORTER_TRUSTED, Event.REPORTER_UNTRUSTED]


@pytest.mark.parametrize("data", [{"verb": "delete"}, {}, {"verb": "x" * 5000}])
def test_a_bad_verb_gets_a_clear_message(client, users, reporter, data):
    client.force_login(users["senior"])
    response = client.post(reverse("cases:reporter_action", args=[reporter.pk]), data, follow=True)
    assert response.status_code == 200 and "Choose mute, unmute, trust or untrust" in response.content.decode()
    assert not AuditEvent.objects.exists()


def test_an_unknown_reporter_is_404(client, users, db):
    client.force_login(users["senior"])
    assert client.post(reverse("cases:reporter_action", args=[424242]), {"verb": "trust"}).status_code == 404


def test_the_actions_refuse_a_non_senior(users, reporter):
    with pytest.raises(ActionError):
        mute_reporter(users["specialist"], reporter.pk, reason="no")
    with pytest.raises(ActionError):
        trust_reporter(users["reviewer"], reporter.pk)


@pytest.mark.parametrize("role", REFUSED + ("anonymous",))
def test_reporter_pages_refuse_everyone_else(users, reporter, role):
    client = Client()
    if role != "anonymous":
        client.force_login(users[role])
    for response in (client.get(reverse("cases:reporters")),
                     client.post(reverse("cases:reporter_action", args=[reporter.pk]), {"verb": "trust"})):
        location = response.get("Location", "")
        if role == "anonymous":
            assert response.status_code == 302 and "/login/" in location
        else:
            assert response.status_code == 403 or (role == "officer" and location.endswith("/le/"))
    reporter.refresh_from_db()
    assert reporter.trusted_at is None and not AuditEvent.objects.exists()


@pytest.mark.parametrize("role", ALLOWED)
def test_the_reporters_page_sorts_by_dismissed_share_and_filters(client, users, role):
    Reporter.objects.create(external_id="u-half", reports=4, upheld=2, dismissed=2)
    Reporter.objects.create(external_id="u-worst", reports=10, upheld=1, dismissed=9)
    Reporter.objects.create(external_id="u-none", reports=0)
    Reporter.objects.create(external_id="u-muted", reports=2, upheld=2, muted_at=timezone.now(), mute_reason="x")
    Reporter.objects.create(external_id="u-trusted", reports=1, upheld=1, trusted_at=timezone.now())
    client.force_login(users[role])
    html = client.get(reverse("cases:reporters")).content.decode()
    order = [name for name in ("u-worst", "u-half", "u-muted", "u-none") if f'data-reporter="{name}"' in html]
    assert sorted(order, key=html.index) == ["u-worst", "u-half", "u-muted", "u-none"]  # no record goes last
    assert "90 %" in html
    muted = client.get(reverse("cases:reporters"), {"show": "muted"}).content.decode()
    assert 'data-reporter="u-muted"' in muted and 'data-reporter="u-worst"' not in muted
    trusted = client.get(reverse("cases:reporters"), {"show": "trusted"}).content.decode()
    assert 'data-reporter="u-trusted"' in trusted and 'data-reporter="u-muted"' not in trusted
    poor = client.get(reverse("cases:reporters"), {"show": "poor"}).content.decode()
    assert 'data-reporter="u-worst"' in poor and 'data-reporter="u-half"' not in poor
    # Nonsense parameters fall back rather than fail.
    nonsense = {"show": "x" * 3000, "sort": "drop", "page": "-1", "q": "z" * 900}
    response = client.get(reverse("cases:reporters"), nonsense)
    assert response.status_code == 200


# ------------------------------------------------------------------------------------ on the case page

def test_the_case_page_partial_shows_each_reporters_standing(api):
    Reporter.objects.create(external_id="u-poor", reports=14, upheld=2, dismissed=12)
    Reporter.objects.create(external_id="u-trusted", trusted_at=timezone.now())
    report(api, "u-poor", "a-1")
    report(api, "u-trusted", "a-1")
    report(api, "u-new", "a-1")
    (case,) = triage_all()
    standings = leads.reporter_standings(case)
    assert [s["report"].reporter for s in standings] == ["u-poor", "u-trusted", "u-new"]
    assert [s["weight"].standing for s in standings] == ["poor", "trusted", "normal"]
    html = render_to_string("cases/_reporter_standing.html", {"reporter_standings": standings})
    assert "2 of 14 upheld; weighs less" in html and "trusted flagger" in html and "u-new" in html
    assert render_to_string("cases/_reporter_standing.html", {"reporter_standings": []}).strip() == ""


def test_a_muted_reporters_report_adds_nothing_to_a_cases_priority(api):
    from cases.routing import priority
    report(api, "u-1", "a-1")
    (case,) = triage_all()
    before = priority(case.signals.all())
    Reporter.objects.create(external_id="u-muted", muted_at=timezone.now())
    report(api, "u-muted", "a-1", reason="other")
    triage_all()
    assert case.signals.count() == 2 and priority(case.signals.all()) == before
