"""Reviewer pages and evidence: every URL against every role, and the safety of evidence renditions."""

import io

import pytest
from PIL import Image, ImageStat

from cases.actions.claims import claim_case
from cases.models import Case, CaseStatus, Decision
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa
from tests.factories import case_with_match

pytestmark = pytest.mark.django_db
ROLES = ["anonymous", "nobody", "reviewer", "specialist", "senior", "analyst", "admin", "liaison", "officer"]


@pytest.fixture
def world(users):
    from cases.actions.decisions import decide
    case, item = case_with_match()
    reported, _ = case_with_match(seed=2, account="acct-2")
    reported = claim_case(users["specialist"], reported.pk)
    decide(users["specialist"], reported.pk, action="report", reason_code="csam-known", version=reported.version)
    report = reported.cybertip_reports.get()
    from cases.models import QAReview
    qa = QAReview.objects.create(decision=report.decision)
    from detection.models import Bank
    bank = Bank.objects.get(name="known")
    legal = submit_legal_request(users["officer"])
    destruction = request_destruction(users["senior"], report.files.get().item)
    from cases.actions.rules import save_rule
    from cases.models import Breaker, Rule
    rule = save_rule(users["senior"], Rule(code="known", title="Known"), effect="apply_policy",
                     policy_code="csam-known", mode="shadow",
                     conditions_list=[{"field": "signal.kind", "op": "eq", "value": "hash_match"}])
    breaker = Breaker.objects.create(scope="rule", object_id=rule.pk, label="rule known", reason="test")
    from detection.models import Group, Reporter
    group = Group.objects.create(external_id="grp-world", name="World group")
    reporter = Reporter.objects.create(external_id="reporter-world")
    from cases.actions import clusters
    cluster = clusters.open_cluster(users["senior"], origin="item", origin_item=item, title="World ring",
                                    members=[{"account": case.account, "items": [item.pk], "distance": 0}])
    cluster_action, _ = clusters.propose(users["reviewer"], cluster.pk, policy_code="csam-known",
                                         member_ids=[cluster.members.get().pk], note="One ring.")
    from cases.actions.appeals import submit_appeal
    ban = report.decision.enforcements.get(action="ban_account")
    appeal, _ = submit_appeal(ban, text="Please look again.")
    return {"appeal": appeal, "cluster": cluster, "cluster_action": cluster_action, "rule": rule, "breaker": breaker,
            "case": case, "item": item, "report": report,
            "account": case.account, "group": group, "reporter": reporter,
            "decision": report.decision, "qa": qa, "bank": bank, "entry": bank.hashes.first(), "legal": legal,
            "legal_doc": legal.documents.get(),
            "destruction": destruction}


def request_destruction(senior, item):
    """A senior's destruction request waiting for a second senior (the senior verified, as on the page)."""
    from django.contrib.auth import get_user_model

    from cases.actions import preservation
    senior = get_user_model().objects.get(pk=senior.pk)
    senior.is_verified = lambda: True
    return preservation.request_destruction(senior, item, reason="The court ordered this file destroyed.",
                                            reference="Court order 2026-77")


def submit_legal_request(officer, reference="DR-1", kind="subpoena"):
    from datetime import timedelta

    from django.utils import timezone

    from cases.actions import legal
    from tests.conftest import PDF
    return legal.submit_request(officer, kind=kind, reference=reference,
                                identifiers=[{"type": "account", "id": "acct-1"}], description="Records please.",
                                due_at=timezone.now() + timedelta(days=10), document=PDF, document_name="order.pdf")


def login(client, users, role, verified=True):
    if role != "anonymous":
        client.force_login(users[role])
        if verified:
            verify_2fa(client, users[role])
    return client


REVIEWERS = {"reviewer", "specialist", "senior", "admin"}
CLEARED = {"specialist", "senior", "admin"}
FILERS = {"senior", "admin"}
OFFICERS = {"officer"}
LIAISONS = {"liaison", "admin"}
INVESTIGATORS = REVIEWERS | {"analyst"}
SIGNED_IN = REVIEWERS | {"nobody", "liaison", "officer", "analyst"}
EVERYONE = SIGNED_IN | {"anonymous"}

# Every route the console serves to people (the API has its own token tests), with its method,
# its arguments, and the roles allowed in. A new route fails test_every_route_is_in_the_matrix.
ROUTES = {
    "cases:queue": ("get", {}, REVIEWERS),
    "cases:claim_next": ("post", {}, REVIEWERS),
    "cases:detail": ("get", {"pk": "case"}, REVIEWERS),
    "cases:claim": ("post", {"pk": "case"}, REVIEWERS),
    "cases:release": ("post", {"pk": "case"}, REVIEWERS),
    "cases:decide": ("post", {"pk": "case"}, REVIEWERS),
    "cases:viewing": ("post", {"pk": "case"}, REVIEWERS),
    "cases:undo": ("post", {"decision_id": "decision"}, REVIEWERS),
    "cases:second_review": ("post", {"decision_id": "decision"}, REVIEWERS),
    "cases:note": ("post", {"pk": "case"}, REVIEWERS),
    "cases:evidence_blurred": ("get", {"item_id": "item"}, INVESTIGATORS),
    "cases:evidence_reveal": ("post", {"item_id": "item"}, CLEARED),
    "cases:evidence_destroy": ("post", {"item_id": "item"}, FILERS),
    "cases:destruction_requests": ("get", {}, FILERS),
    "cases:destruction_approve": ("post", {"pk": "destruction"}, FILERS),
    "cases:destruction_reject": ("post", {"pk": "destruction"}, FILERS),
    "cases:reports": ("get", {}, CLEARED),
    # Appeals: the queue for reviewers; this one (of a reportable decision) for seniors only.
    "cases:appeals": ("get", {}, REVIEWERS),
    "cases:appeal_next": ("post", {}, REVIEWERS),
    "cases:appeal": ("get", {"pk": "appeal"}, FILERS),
    "cases:appeal_claim": ("post", {"pk": "appeal"}, FILERS),
    "cases:appeal_release": ("post", {"pk": "appeal"}, FILERS),
    "cases:appeal_decide": ("post", {"pk": "appeal"}, FILERS),
    "cases:qa": ("get", {}, FILERS),
    "cases:qa_review": ("post", {"pk": "qa"}, FILERS),
    "cases:qa_agreement": ("get", {}, FILERS),
    "cases:metrics": ("get", {}, FILERS),
    "cases:transparency": ("get", {}, FILERS),
    "cases:transparency_csv": ("get", {}, FILERS),
    "cases:reviewers": ("get", {}, FILERS),
    "cases:report": ("get", {"pk": "report"}, CLEARED),
    "cases:report_edit": ("post", {"pk": "report"}, CLEARED),
    "cases:take_over": ("post", {"pk": "case"}, FILERS),
    "cases:report_approve": ("post", {"pk": "report"}, FILERS),
    "cases:report_retry": ("post", {"pk": "report"}, FILERS),
    "cases:report_retract": ("post", {"pk": "report"}, FILERS),
    "cases:portal": ("get", {}, OFFICERS),
    "cases:portal_new": ("get", {}, OFFICERS),
    "cases:portal_request": ("get", {"pk": "legal"}, OFFICERS),
    "cases:portal_message": ("post", {"pk": "legal"}, OFFICERS),
    "cases:portal_document": ("get", {"pk": "legal", "doc_id": "legal_doc"}, OFFICERS),
    "cases:legal_queue": ("get", {}, LIAISONS),
    "cases:legal_request": ("get", {"pk": "legal"}, LIAISONS),
    "cases:legal_verify": ("post", {"pk": "legal"}, LIAISONS),
    "cases:legal_link": ("post", {"pk": "legal"}, LIAISONS),
    "cases:legal_hold": ("post", {"pk": "legal"}, LIAISONS),
    "cases:legal_respond": ("post", {"pk": "legal"}, LIAISONS),
    "cases:legal_close": ("post", {"pk": "legal"}, LIAISONS),
    "cases:legal_reject": ("post", {"pk": "legal"}, LIAISONS),
    "cases:legal_document": ("get", {"pk": "legal", "doc_id": "legal_doc"}, LIAISONS),
    "home": ("get", {}, SIGNED_IN),
    "viewing_preferences": ("get", {}, REVIEWERS),
    "two_factor_setup": ("get", {}, SIGNED_IN),
    "two_factor_verify": ("get", {}, SIGNED_IN),
    "login": ("get", {}, EVERYONE),
    "logout": ("post", {}, EVERYONE),
    "admin:index": ("get", {}, {"admin"}),
    "admin:audit_auditevent_changelist": ("get", {}, {"admin"}),
    "rq_home": ("get", {}, {"admin"}),
    # Hash banks: seniors and admins only (the hashes of known material are need-to-know).
    # Automation rules: seniors and admins (the rules permission).
    "cases:rules": ("get", {}, FILERS),
    "cases:rule_new": ("get", {}, FILERS),
    "cases:rule": ("get", {"pk": "rule"}, FILERS),
    "cases:rule_edit": ("post", {"pk": "rule"}, FILERS),
    "cases:rule_backtest": ("post", {"pk": "rule"}, FILERS),
    "cases:rule_rollback": ("post", {"pk": "rule"}, FILERS),
    "cases:breaker_resume": ("post", {"pk": "breaker"}, FILERS),
    # Investigations: search, subject pages and pivots for every investigator (never officers); the leads'
    # roster, reporters and the audit search for seniors.
    "cases:search": ("get", {}, INVESTIGATORS),
    "cases:account": ("get", {"pk": "account"}, INVESTIGATORS),
    "cases:account_network": ("get", {"pk": "account"}, INVESTIGATORS),
    "cases:account_tags": ("post", {"pk": "account"}, INVESTIGATORS),
    "cases:group": ("get", {"pk": "group"}, INVESTIGATORS),
    "cases:group_network": ("get", {"pk": "group"}, INVESTIGATORS),
    "cases:group_tags": ("post", {"pk": "group"}, INVESTIGATORS),
    "cases:item_pivot": ("get", {"pk": "item"}, INVESTIGATORS),
    "cases:clusters": ("get", {}, INVESTIGATORS),
    "cases:cluster_new": ("post", {}, INVESTIGATORS),
    "cases:cluster": ("get", {"pk": "cluster"}, INVESTIGATORS),
    "cases:cluster_propose": ("post", {"pk": "cluster"}, INVESTIGATORS),
    "cases:cluster_action_review": ("post", {"pk": "cluster_action"}, INVESTIGATORS),
    "cases:roster": ("get", {}, FILERS),
    "cases:release_signed_out": ("post", {}, FILERS),
    "cases:reporters": ("get", {}, FILERS),
    "cases:reporter_action": ("post", {"pk": "reporter"}, FILERS),
    "cases:audit": ("get", {}, FILERS),
    "cases:audit_csv": ("get", {}, FILERS),
    "cases:referrals": ("get", {}, FILERS),
    "cases:referrals_csv": ("get", {}, FILERS),
    "banks:list": ("get", {}, FILERS),
    "banks:new": ("get", {}, FILERS),
    "banks:detail": ("get", {"pk": "bank"}, FILERS),
    "banks:edit": ("post", {"pk": "bank"}, FILERS),
    "banks:import": ("post", {"pk": "bank"}, FILERS),
    "banks:export": ("get", {"pk": "bank"}, FILERS),
    "banks:entry_delete": ("post", {"pk": "bank", "entry_id": "entry"}, FILERS),
    "banks:entry_deconfirm": ("post", {"pk": "bank", "entry_id": "entry"}, FILERS),
    "banks:entry_reconfirm": ("post", {"pk": "bank", "entry_id": "entry"}, FILERS),
    "banks:feedback_export": ("get", {"pk": "bank"}, FILERS),
    "banks:feedback_send": ("post", {"pk": "bank"}, FILERS),
}


# Routes for machines, not people: the same answer whatever the role (health checks answer anyone, the
# Prometheus scrape only its bearer token), so they are tested in test_monitoring, not in the matrix.
MACHINE_ROUTES = {"healthz", "readyz", "prometheus_metrics"}


def route_url(name, args, world):
    from django.urls import reverse
    if name == "rq_home":
        return "/django-rq/"
    return reverse(name, kwargs={key: world[value].pk for key, value in args.items()})


def check_route(client, users, world, role, name):
    """None if `role` is let in to route `name` exactly when it should be, else what went wrong."""
    method, args, allowed = ROUTES[name]
    response = getattr(login(client, users, role), method)(route_url(name, args, world))
    location = response.get("Location", "")
    if role in allowed:
        # 400: let in, and the (empty) form refused as invalid, which is not a permission answer.
        ok = response.status_code in (200, 302, 400) and ("/login/" not in location or name == "logout")
    elif role == "anonymous":
        ok = response.status_code == 302 and "login" in location
    else:
        fenced = role == "officer" and location.endswith("/le/")  # an officer is sent back to the portal
        ok = response.status_code == 403 or (response.status_code == 302 and "login" in location) or fenced
    return None if ok else f"{name}: {method.upper()} gave {response.status_code} {location}".strip()


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(users, world, role):
    """Every route for one role; each request in a savepoint that is rolled back, so none sees another's effects."""
    from django.db import transaction
    from django.test import Client

    failures = []
    for name in ROUTES:
        with transaction.atomic():
            failures.append(check_route(Client(), users, world, role, name))
            transaction.set_rollback(True)
    assert not [f for f in failures if f], (role, [f for f in failures if f])


def test_every_route_is_in_the_matrix():
    from django.urls import URLPattern, URLResolver, get_resolver

    def names(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace in ("cases", "banks"):
                    yield from names(pattern.url_patterns, f"{pattern.namespace}:")
            elif isinstance(pattern, URLPattern) and pattern.name:
                yield prefix + pattern.name

    assert set(names(get_resolver().url_patterns)) <= set(ROUTES) | MACHINE_ROUTES


def test_the_queue_lists_cases_by_priority(client, users, world):
    response = login(client, users, "reviewer").get("/queue/")
    assert response.status_code == 200
    assert f"#{world['case'].pk}" in response.content.decode()


def test_claim_next_opens_the_case(client, users, world):
    response = login(client, users, "reviewer").post("/queue/claim/")
    assert response.status_code == 302 and response["Location"] == f"/cases/{world['case'].pk}/"


def test_claim_next_with_nothing_waiting_returns_to_the_queue(client, users):
    response = login(client, users, "reviewer").post("/queue/claim/", follow=True)
    assert "No cases are waiting" in response.content.decode()


def test_the_case_page_explains_the_signal(client, users, world):
    claim_case(users["reviewer"], world["case"].pk)
    page = login(client, users, "reviewer").get(f"/cases/{world['case'].pk}/").content.decode()
    assert "PDQ distance" in page and "threshold 31" in page and "bank" in page
    # Decisions are policies, numbered; reportable ones say what the law requires.
    assert "Known child sexual abuse material" in page and "drafts a CyberTipline report" in page
    assert "The law requires the report and the preservation" in page
    assert f"/evidence/{world['item'].pk}/blurred.jpg" in page


def test_deciding_through_the_page_opens_the_next_case(client, users, world):
    case = claim_case(users["reviewer"], world["case"].pk)
    other, _ = case_with_match(seed=2, account="acct-2")
    response = login(client, users, "reviewer").post(
        f"/cases/{case.pk}/decide/", {"action": "ban", "reason": "csam-known", "version": case.version})
    assert response.status_code == 302 and response["Location"] == f"/cases/{other.pk}/"
    assert Case.objects.get(pk=case.pk).status == CaseStatus.CLOSED


def test_a_double_submitted_decision_is_recorded_once(client, users, world):
    case = claim_case(users["reviewer"], world["case"].pk)
    login(client, users, "reviewer")
    form = {"action": "ban", "reason": "csam-known", "version": case.version}
    client.post(f"/cases/{case.pk}/decide/", form)
    response = client.post(f"/cases/{case.pk}/decide/", form, follow=True)
    assert "Already recorded" in response.content.decode()
    assert Decision.objects.filter(case=case).count() == 1


@pytest.mark.parametrize("form", [{}, {"version": "x"}, {"version": "1", "action": "ban"},
                                  {"version": "1", "action": "ban", "reason": "benign"}])
def test_bad_decision_forms_change_nothing(client, users, world, form):
    claim_case(users["reviewer"], world["case"].pk)
    response = login(client, users, "reviewer").post(f"/cases/{world['case'].pk}/decide/", form, follow=True)
    assert response.status_code == 200
    assert not Decision.objects.filter(case=world["case"]).exists()


def test_a_senior_only_case_is_hidden_from_reviewers(client, users, world):
    Case.objects.filter(pk=world["case"].pk).update(queue=world["case"].queue.__class__.objects.get(slug="escalations"))
    assert login(client, users, "reviewer").get(f"/cases/{world['case'].pk}/").status_code == 403


def variance(data):
    return ImageStat.Stat(Image.open(io.BytesIO(data)).convert("L")).var[0]


def test_the_blurred_rendition_is_greyscale_blurred_uncacheable_and_audited(client, users, world):
    response = login(client, users, "reviewer").get(f"/evidence/{world['item'].pk}/blurred.jpg")
    assert response["Content-Type"] == "image/jpeg"
    assert "no-store" in response["Cache-Control"] and response["X-Content-Type-Options"] == "nosniff"
    img = Image.open(io.BytesIO(response.content))
    assert img.mode == "L" and max(img.size) <= 320
    revealed = client.post(f"/evidence/{world['item'].pk}/reveal/")  # reviewer: refused
    assert revealed.status_code == 403
    assert AuditEvent.objects.filter(action="evidence.viewed_blurred", actor=users["reviewer"]).count() == 1
    assert not AuditEvent.objects.filter(action="evidence.revealed").exists()


def test_reveal_is_audited_and_sharper_than_the_blur(client, users, world):
    login(client, users, "specialist")
    blurred = client.get(f"/evidence/{world['item'].pk}/blurred.jpg").content
    response = client.post(f"/evidence/{world['item'].pk}/reveal/")
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert Image.open(io.BytesIO(response.content)).mode == "RGB"
    assert variance(response.content) > 2 * variance(blurred)
    event = AuditEvent.objects.get(action="evidence.revealed")
    assert event.actor == users["specialist"] and event.item == world["item"]


def test_reveal_by_get_is_not_allowed(client, users, world):
    assert login(client, users, "specialist").get(f"/evidence/{world['item'].pk}/reveal/").status_code == 405


def test_if_the_audit_row_cannot_be_written_nothing_is_shown(client, users, world, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr("cases.web.review.record_evidence_view", broken)
    client.raise_request_exception = False
    response = login(client, users, "specialist").post(f"/evidence/{world['item'].pk}/reveal/")
    assert response.status_code == 500
    assert response.get("Content-Type") != "image/jpeg"


def test_evidence_of_an_item_in_no_case_is_blurred_for_investigators_and_never_revealed(client, users, image_bytes):
    """An account's page shows everything it sent, flagged or not: blurred, audited, never revealed without a case."""
    from tests.factories import scanned_item
    item = scanned_item(image_bytes(77))
    for role in ("nobody", "liaison"):
        assert login(client, users, role).get(f"/evidence/{item.pk}/blurred.jpg").status_code == 403
    response = login(client, users, "analyst").get(f"/evidence/{item.pk}/blurred.jpg")
    assert response.status_code == 200 and response["Cache-Control"].startswith("no-store")
    assert AuditEvent.objects.filter(action="evidence.viewed_blurred", item=item, actor=users["analyst"]).exists()
    assert login(client, users, "senior").post(f"/evidence/{item.pk}/reveal/").status_code == 403


def test_originals_are_not_under_static_or_media(settings):
    evidence = str(settings.EVIDENCE_ROOT)
    assert not evidence.startswith(str(settings.STATIC_ROOT))
    assert all(not evidence.startswith(str(d)) for d in settings.STATICFILES_DIRS)


def test_the_audit_log_is_append_only(users, world):
    event = AuditEvent.objects.first()
    with pytest.raises(ValueError):
        event.save()
    with pytest.raises(ValueError):
        event.delete()


def test_admin_pages_open_for_every_model(client, users, world):
    from django.contrib import admin
    login(client, users, "admin")
    for model in admin.site._registry:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url
    assert client.get("/admin/audit/auditevent/add/").status_code == 403


def test_admin_rejects_a_malformed_bank_hash(client, users):
    from detection.models import Bank, BankHash
    bank = Bank.objects.create(name="b")
    login(client, users, "admin")
    response = client.post("/admin/detection/bankhash/add/", {"bank": bank.pk, "hash_type": "pdq", "value": "zz"})
    assert response.status_code == 200 and "not a pdq hash" in response.content.decode()
    assert not BankHash.objects.exists()


def test_login_is_throttled_after_repeated_failures(client, users, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/login/", {"username": "rita", "password": "wrong"})
    response = client.post("/login/", {"username": "rita", "password": "pw-rita"})
    assert response.status_code == 429


def test_an_api_token_opens_no_reviewer_page(client, api_token, world):
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {api_token}"
    for name, (method, args, allowed) in ROUTES.items():
        if "anonymous" in allowed:
            continue
        response = getattr(client, method)(route_url(name, args, world))
        assert response.status_code == 302 and "login" in response["Location"], name


def test_a_report_decision_shows_the_draft_on_the_case(client, users, world):
    from cases.actions.decisions import decide
    case = claim_case(users["specialist"], world["case"].pk)
    decide(users["specialist"], case.pk, action="report", reason_code="csam-known", version=case.version)
    page = login(client, users, "specialist").get(f"/cases/{case.pk}/").content.decode()
    assert "CyberTipline" in page and "awaiting senior approval" in page and "ban_account" in page


def test_the_case_page_query_count_does_not_grow_with_evidence(client, users):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from reviewconsole.devtools import synthetic
    from tests.factories import known_bank, scanned_item, triage_all
    known_bank(range(1, 11))
    counts = []
    for account, seeds in (("small", range(1, 3)), ("busy", range(3, 11))):
        for seed in seeds:
            scanned_item(synthetic.encode(synthetic.EDITS["resized"](synthetic.make_image(seed))), account=account)
        (case,) = triage_all()
        login(client, users, "reviewer")
        client.get(f"/cases/{case.pk}/")  # first view creates the presence row
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/cases/{case.pk}/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1] and counts[1] <= 40, counts


def test_reveal_needs_a_verified_second_factor(client, users, world):
    login(client, users, "specialist", verified=False)
    page = client.get(f"/cases/{world['case'].pk}/").content.decode()
    assert "Verify to reveal" in page and "data-reveal=" not in page
    response = client.post(f"/evidence/{world['item'].pk}/reveal/")
    assert response.status_code == 403 and b"Two-factor" in response.content
    assert not AuditEvent.objects.filter(action="evidence.revealed").exists()


def test_admin_and_job_dashboard_need_a_verified_second_factor(client, users):
    login(client, users, "admin", verified=False)
    assert client.get("/admin/").status_code == 302
    assert "/account/verify/" in client.get("/django-rq/")["Location"]
    verify_2fa(client, users["admin"])
    assert client.get("/admin/").status_code == 200 and client.get("/django-rq/").status_code == 200


def test_enrolling_and_verifying_a_totp_device(client, users):
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from cases.actions.enrolment import issue_enrolment_code
    client.force_login(users["specialist"])
    page = client.get("/account/two-factor/").content.decode()
    assert "<svg" not in page and "enrolment code" in page  # the password alone does not enrol
    code = issue_enrolment_code(users["admin"], users["specialist"])
    client.post("/account/two-factor/", {"enrolment_code": code.lower()})
    page = client.get("/account/two-factor/").content.decode()
    assert "<svg" in page
    device = TOTPDevice.objects.get(user=users["specialist"], confirmed=False)
    assert client.post("/account/two-factor/", {"token": "000000"}).status_code == 200
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    response = client.post("/account/two-factor/", {"token": str(totp(device.bin_key)).zfill(6)})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    client.logout()
    client.force_login(users["specialist"])
    assert client.post("/account/verify/", {"token": "123"}).status_code == 200
    device.refresh_from_db()
    assert device.throttling_failure_count == 1  # failures slow down guessing
    token = str(totp(device.bin_key)).zfill(6)
    device.last_t, device.throttling_failure_count, device.throttling_failure_timestamp = -1, 0, None
    device.save()
    response = client.post("/account/verify/", {"token": token, "next": "/queue/"})
    assert response.status_code == 302 and response["Location"] == "/queue/"
    assert AuditEvent.objects.filter(action="account.two_factor_verified").exists()


def test_sessions_end_when_idle(client, users, settings):
    settings.SESSION_IDLE_SECONDS = -1
    client.force_login(users["reviewer"])
    client.get("/queue/")
    response = client.get("/queue/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_sessions_end_after_the_absolute_limit(client, users, settings):
    settings.SESSION_MAX_SECONDS = -1
    client.force_login(users["reviewer"])
    response = client.get("/queue/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_disabling_a_user_ends_their_sessions(client, users):
    client.force_login(users["reviewer"])
    assert client.get("/queue/").status_code == 200
    users["reviewer"].is_active = False
    users["reviewer"].save()
    response = client.get("/queue/")
    assert response.status_code == 302 and "/login/" in response["Location"]
