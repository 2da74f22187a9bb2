"""Daily metrics rollup, the dashboard, the transparency report and reviewer workload."""

import csv
import io
from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from cases import metrics
from cases.actions.claims import claim_case
from cases.actions.decisions import decide, second_review
from cases.actions.qa import record_qa
from cases.models import Case, DailyMetric, Decision, QAReview
from cases.web import charts
from detection import intake
from detection.models import Signal
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa
from tests.factories import ban_only, case_with_match, triage_all

pytestmark = pytest.mark.django_db


def today():
    return timezone.now().astimezone(UTC).date()


@pytest.fixture
def activity(users):
    """Two cases found by matching (one banned, one reported), one from a user report (dismissed)."""
    banned, _ = case_with_match(seed=1, account="acct-1")
    reported, _ = case_with_match(seed=2, account="acct-2")
    intake.submit_report(reporter="u-9", reason="csam", account_id="acct-3")
    (from_report,) = triage_all()
    for subject_case, action, reason, user in ((banned, "ban", ban_only().code, "reviewer"),
                                       (reported, "report", "csam-known", "specialist"),
                                       (from_report, "dismiss", "false-positive", "reviewer")):
        case = claim_case(users[user], subject_case.pk)
        decision, _ = decide(users[user], case.pk, action=action, reason_code=reason, version=case.version)
        if decision.approval == "pending":  # a known match not reported: a specialist confirms
            second_review(users["specialist"], decision.pk, approve=True)
    return {"banned": banned, "reported": reported, "from_report": from_report}


def figures(day=None):
    return {(m, k): v for m, k, v in metrics.compute_day(day or today())}


def test_a_day_is_counted_from_the_live_tables(activity):
    got = figures()
    assert got[("items_received", "")] == 2
    assert got[("items_scanned", "scanned")] == 2
    assert got[("signals", "hash_match")] == 2 and got[("signals", "user_report")] == 1
    assert got[("matches", "known")] == 2
    assert sum(v for (m, _), v in got.items() if m == "cases_opened") == 3
    assert got[("cases_found", "proactive")] == 2 and got[("cases_found", "reported")] == 1
    assert got[("decisions", "ban")] == got[("decisions", "report")] == got[("decisions", "dismiss")] == 1
    assert got[("accounts_actioned", "")] == 2  # ban and report; the dismissal actions nothing
    assert got[("accounts_banned", "")] == 2  # a report to NCMEC bans the account too
    assert sum(v for (m, _), v in got.items() if m == "ttd_hist") == 3
    assert 0 < got[("ttd_p50", "")] <= got[("ttd_p90", "")]


def test_nothing_is_counted_on_another_day(activity):
    assert figures(today() - timedelta(days=3)) == {}


def test_an_undone_decision_is_not_counted(activity, users):
    decision = Decision.objects.get(action="ban")
    Decision.objects.filter(pk=decision.pk).update(undone_at=timezone.now())
    assert ("decisions", "ban") not in figures()


def test_decisions_past_the_queue_sla_are_breaches(activity):
    case = activity["banned"]
    Case.objects.filter(pk=case.pk).update(created_at=timezone.now() - timedelta(days=3))
    got = figures()
    assert got[("sla_breaches", case.queue.slug)] == 1


def test_rollup_replaces_a_day_and_catches_up_missed_days(activity):
    assert metrics.days_to_roll() == [today()]  # nothing rolled yet: from the first activity
    metrics.rollup_recent()
    first = DailyMetric.objects.count()
    assert first > 10
    metrics.rollup_day(today())  # again: the same rows, not twice as many
    assert DailyMetric.objects.count() == first
    DailyMetric.objects.create(day=today() - timedelta(days=5), metric="items_received", value=1)
    assert metrics.days_to_roll() == [today() - timedelta(days=1), today()]


def test_percentiles_from_histograms_are_within_ten_percent():
    durations = [30, 45, 60, 90, 200, 400, 1000, 3600, 7200, 86400]
    histogram = {}
    for d in durations:
        histogram[metrics.ttd_bucket(d)] = histogram.get(metrics.ttd_bucket(d), 0) + 1
    exact = sorted(durations)
    for q in (0.5, 0.9):
        truth = exact[int(q * len(exact)) - 1]
        estimate = metrics.histogram_percentile(histogram, q)
        assert truth <= estimate <= truth * 1.1 + 1e-9
    assert metrics.histogram_percentile({}, 0.5) is None


def test_dashboard_series_bucket_days_into_weeks_and_months(activity):
    metrics.rollup_recent()
    for period in ("day", "week", "month"):
        data = metrics.dashboard(period)
        assert len(data["labels"]) == metrics.PERIODS[period]
        assert data["cases_opened"][-1] == 3
        assert data["decisions"]["ban"][-1] == 1
        assert data["proactive_share"][-1] == pytest.approx(66.7)


def login(client, user):
    client.force_login(user)
    verify_2fa(client, user)
    return client


def test_dashboard_page_draws_svg_charts_without_external_requests(client, users, activity):
    metrics.rollup_recent()
    response = login(client, users["senior"]).get("/metrics/?period=week")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('<svg viewBox="0 0 ') == 14  # the charts (legend swatches are <svg class="swatch" ...>)
    assert 'style="' not in body.split("<main>")[1]  # no inline style: the CSP refuses them
    assert "http://" not in body.split("<main>")[1] and "https://" not in body.split("<main>")[1]
    assert "Decisions by action" in body and "Intake to decision" in body


def test_dashboard_ignores_a_bad_period(client, users):
    response = login(client, users["senior"]).get("/metrics/?period=<script>")
    assert response.status_code == 200 and b"<script>" not in response.content.split(b"<main>")[1]


def test_chart_labels_are_escaped():
    svg = charts.stacked_bars("<b>t</b>", ["<x>"], {"<i>": [3]})
    assert "<b>" not in svg and "&lt;x&gt;" in svg and "&lt;i&gt;" in svg


def test_transparency_report_and_csv(client, users, activity):
    metrics.rollup_recent()
    year = today().year
    page = login(client, users["senior"]).get(f"/metrics/transparency/?year={year}")
    assert page.status_code == 200
    month = next(m for m in page.context["months"] if m["month"].month == today().month)
    assert month["accounts_actioned"] == 2 and month["proactive_share"] == pytest.approx(66.7)
    response = client.get(f"/metrics/transparency.csv?year={year}")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 12
    row = next(r for r in rows if r["month"] == today().strftime("%Y-%m"))
    assert row["accounts_actioned"] == "2" and row["reports_filed"] == "0" and row["proactive"] == "2"
    assert AuditEvent.objects.filter(action="metrics.transparency_exported", actor=users["senior"]).exists()


@pytest.mark.parametrize("year", ["abc", "1900", "99999"])
def test_transparency_clamps_a_bad_year(client, users, year):
    response = login(client, users["senior"]).get(f"/metrics/transparency/?year={year}")
    assert response.status_code == 200 and 2000 <= response.context["year"] <= today().year


def test_reviewer_workload_with_qa_agreement(client, users, activity):
    decision = Decision.objects.get(action="ban")
    qa = QAReview.objects.create(decision=decision)
    record_qa(users["senior"], qa.pk, action="ban")
    response = login(client, users["senior"]).get("/metrics/reviewers/?days=7")
    rows = {r["name"]: r for r in response.context["rows"]}
    assert rows["rita"]["total"] == 2 and rows["rita"]["ban"] == 1 and rows["rita"]["dismiss"] == 1
    assert rows["rita"]["qa_reviewed"] == 1 and rows["rita"]["qa_rate"] == 100
    assert rows["sam"]["report"] == 1 and rows["sam"]["qa_rate"] is None
    assert login(client, users["reviewer"]).get("/metrics/reviewers/").status_code == 403


def test_rollup_command(activity):
    from django.core.management import call_command

    out = io.StringIO()
    call_command("rollup_metrics", "--days", "3", stdout=out)
    assert "rolled up 3 days" in out.getvalue()
    assert DailyMetric.objects.filter(day=today(), metric="decisions").count() == 3
    with pytest.raises(Exception, match="not a date"):
        call_command("rollup_metrics", "--since", "yesterday")


def test_signals_of_the_day_are_counted_once_each(activity):
    assert sum(v for (m, _), v in figures().items() if m == "signals") == Signal.objects.count()


def test_groups_that_fold_into_one_key_are_added_up(activity):
    from detection.models import Signal as S
    # Two kinds of proactive first signal on one day: one "proactive" figure, not two rows.
    case = activity["banned"]
    S.objects.filter(case=case).update(kind="classifier")
    got = figures()
    assert got[("cases_found", "proactive")] == 2
    metrics.rollup_day(today())  # the unique (day, metric, key) holds
