"""Search: one box finds each kind of thing, for the roles that may search, audited, and never shows
evidence unblurred or to a role that may not see it. PDQ near search goes through a real RQ worker
that holds the index of stored items, and falls back to exact matches when no worker answers."""

import subprocess
import time
from datetime import timedelta

import django_rq
import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from cases import search as finder
from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.models import Agency, Case, CyberTipReport, LegalRequest, ReviewQueue
from detection import intake, retro
from detection.jobs.retro import NEAR_FRESH_SECONDS
from detection.models import Item
from reviewconsole.audit.models import AuditEvent
from tests.conftest import PYTHON, ROOT, worker_env
from tests.factories import case_with_match, encoded, scanned_item

URL = reverse("cases:search")
ALLOWED = ["reviewer", "specialist", "senior", "analyst", "admin"]
REFUSED = ["nobody", "liaison", "officer"]


@pytest.fixture(autouse=True)
def _no_index_worker(settings):
    # Unless a test starts one, no worker holds the index: the near search gives up quickly.
    settings.SEARCH_NEAR_TIMEOUT = 0.2


def as_user(client, user):
    client.force_login(user)
    return client


def get(client, q, **params):
    return client.get(URL, {"q": q, **params})


def random_pdq(rng):
    return bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex()


def flip(value, bits, rng):
    v = np.unpackbits(np.frombuffer(bytes.fromhex(value), dtype=np.uint8))
    v[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(v).tobytes().hex()


def hash_only(account, pdq, turned=None):
    """A scanned hash-only item with this PDQ; `turned` is its second stored orientation (the rest random)."""
    rng = np.random.default_rng(abs(hash(account)) % 2**32)
    others = [random_pdq(rng) for _ in range(7)]
    if turned:
        others[0] = turned
    item = intake.submit_hashes({"pdq": pdq, "pdq_quality": 90, "pdq_orientations": [pdq, *others]},
                                account_id=account)
    item = Item.objects.get(pk=item.pk)
    assert item.status == "scanned"  # matched in the intake request
    return item


def searched(user, q, kind=None):
    return finder.search(user, q, kind)


def found_pks(result, kind):
    return [hit.obj.pk for hit in result.results[kind].hits] if kind in result.results else []


# Each kind ------------------------------------------------------------------------------------

@pytest.fixture
def world(users):
    case, item = case_with_match(seed=3, account="acct-case")
    alice, _ = intake.upsert_account("ext-alice", {"screen_name": "alice_smith", "display_name": "Alice S",
                                                    "email": "Alice@Example.org", "phone": "+44 7700 900123",
                                                    "facts": {"phone_hash": "ph-abc123"}})
    malice, _ = intake.upsert_account("ext-malice", {"screen_name": "malice", "display_name": "Bob"})
    group, _ = intake.upsert_group("grp-1", {"name": "Garden friends"})
    with_ip = scanned_item(encoded(5), account="acct-ip", ip="203.0.113.7")
    return {"case": case, "item": item, "alice": alice, "malice": malice, "group": group, "with_ip": with_ip}


def test_a_case_is_found_by_its_id_in_every_form(users, world):
    pk = world["case"].pk
    for q in (str(pk), f"#{pk}", f"case {pk}", f"Case #{pk}"):
        assert found_pks(searched(users["reviewer"], q), "cases") == [pk], q
    assert set(searched(users["reviewer"], f"#{pk}").results) == {"cases"}  # "#12" is a case, nothing else


def test_accounts_and_groups_are_found_by_internal_and_external_id(users, world):
    alice, group = world["alice"], world["group"]
    assert alice.pk in found_pks(searched(users["analyst"], str(alice.pk)), "accounts")
    assert found_pks(searched(users["analyst"], "ext-alice"), "accounts")[0] == alice.pk
    assert group.pk in found_pks(searched(users["analyst"], str(group.pk)), "groups")
    assert found_pks(searched(users["analyst"], "grp-1"), "groups") == [group.pk]


def test_external_ids_are_found_by_prefix_after_the_exact_one(users, world):
    from detection import intake
    others = [intake.upsert_account(f"ext-alice-{n}", {})[0] for n in (2, 1)]
    result = searched(users["analyst"], "ext-alice")
    assert found_pks(result, "accounts")[:3] == [world["alice"].pk, others[1].pk, others[0].pk]
    assert [hit.why for hit in result.results["accounts"].hits[:2]] == ["external id", "external id prefix"]
    assert found_pks(searched(users["analyst"], "ext-ali"), "accounts")[:3] == [world["alice"].pk, others[1].pk,
                                                                               others[0].pk]


def test_names_are_found_by_substring_and_similarity_prefix_first(users, world):
    result = searched(users["analyst"], "alice")
    assert found_pks(result, "accounts")[:2] == [world["alice"].pk, world["malice"].pk]
    assert found_pks(searched(users["analyst"], "@ALICE_smith"), "accounts") == [world["alice"].pk]
    assert found_pks(searched(users["analyst"], "garden"), "groups") == [world["group"].pk]
    assert found_pks(searched(users["analyst"], "zzzqqq"), "accounts") == []


def test_a_kind_is_cut_off_at_its_limit_and_says_so(users, db):
    made = [intake.upsert_account(f"bulk-{n}", {"screen_name": f"bulkname{n:03d}"})[0] for n in range(finder.LIMIT + 3)]
    result = searched(users["analyst"], "bulkname")
    accounts = result.results["accounts"]
    assert len(accounts.hits) == finder.LIMIT and accounts.truncated
    # The name itself comes first (on PostgreSQL its similar neighbours follow).
    assert found_pks(searched(users["analyst"], "bulkname052"), "accounts")[0] == made[52].pk


def test_email_phone_and_link_keys_find_the_account(users, world):
    alice = world["alice"]
    assert found_pks(searched(users["analyst"], " alice@example.ORG "), "accounts") == [alice.pk]
    assert found_pks(searched(users["analyst"], "+44 7700 900123"), "accounts") == [alice.pk]
    assert found_pks(searched(users["analyst"], "ph-abc123"), "accounts") == [alice.pk]


def test_items_are_found_by_id_md5_sha256_and_ip(users, world):
    item = world["item"]
    assert item.pk in found_pks(searched(users["analyst"], str(item.pk)), "items")
    assert found_pks(searched(users["analyst"], item.md5.upper()), "items") == [item.pk]
    result = searched(users["analyst"], item.sha256)
    assert found_pks(result, "items") == [item.pk] and {"sha256", "pdq"} <= set(result.understood)
    assert found_pks(searched(users["analyst"], "203.0.113.7"), "items") == [world["with_ip"].pk]
    for typed in (f"item {item.pk}", f"Item #{item.pk}", f"item{item.pk}"):
        result = searched(users["analyst"], typed)
        assert found_pks(result, "items") == [item.pk] and set(result.results) == {"items"}, typed


def test_a_pdq_finds_exact_matches_in_the_database_when_no_worker_answers(users, db, redis_conn):
    rng = np.random.default_rng(3)
    pdq = random_pdq(rng)
    exact = hash_only("acct-p1", pdq)
    rotated = hash_only("acct-p2", flip(pdq, 40, rng), turned=flip(pdq, 4, rng))
    hits, complete = finder.near_items(bytes.fromhex(pdq), timeout=0.1)
    assert hits == [(exact.pk, 0)] and complete is False
    assert django_rq.get_queue(retro.queue_name()).count == 0  # the unanswered question was withdrawn
    result = searched(users["analyst"], pdq)
    assert found_pks(result, "items") == [exact.pk] and rotated.pk not in found_pks(result, "items")
    assert "only items whose PDQ is exactly" in result.results["items"].notes[0]


def test_a_ncmec_report_id_finds_the_report_for_those_who_may_see_it(users, db):
    case, _ = case_with_match(seed=7, account="acct-r")
    case = claim_case(users["specialist"], case.pk)
    decide(users["specialist"], case.pk, action="report", reason_code="csam-known", version=case.version)
    report = CyberTipReport.objects.get(case=case)
    CyberTipReport.objects.filter(pk=report.pk).update(ncmec_report_id="98765")
    assert found_pks(searched(users["specialist"], "98765"), "reports") == [report.pk]
    assert "reports" not in searched(users["reviewer"], "98765").results  # reviewers see no reports
    assert "reports" not in searched(users["analyst"], "98765").results


def test_a_legal_request_number_finds_it_for_those_who_handle_them(users, db):
    agency = Agency.objects.create(name="Metro Police 2")
    request = LegalRequest.objects.create(agency=agency, submitted_by=users["officer"], kind="subpoena",
                                          reference="DOCKET-2026-17", description="x",
                                          due_at=timezone.now() + timedelta(days=3))
    assert found_pks(searched(users["admin"], "docket-2026-17"), "legal") == [request.pk]
    assert "legal" not in searched(users["senior"], "DOCKET-2026-17").results


# Near search through a real worker ------------------------------------------------------------

pipeline = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def retro_worker(redis_conn, tmp_path):
    env = worker_env() | {"DJANGO_SETTINGS_MODULE": "reviewconsole.settings"}
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115  read when a test fails
    worker = subprocess.Popen([PYTHON, "manage.py", "rqworker", "retro"], env=env, cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT)
    yield worker
    worker.terminate()
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()
    log.close()
    print((tmp_path / "worker.log").read_text()[-4000:])


@pipeline
def test_a_pdq_finds_near_copies_in_any_orientation_through_the_worker(users, retro_worker):
    rng = np.random.default_rng(11)
    pdq = random_pdq(rng)
    exact = hash_only("acct-n1", pdq)
    near = hash_only("acct-n2", flip(pdq, 9, rng))
    turned = hash_only("acct-n3", random_pdq(rng), turned=flip(pdq, 20, rng))  # a rotated copy
    far = hash_only("acct-n4", flip(pdq, 60, rng))
    # The first question waits for the worker to start (it loads the index then).
    hits, complete = finder.near_items(bytes.fromhex(pdq), timeout=60)
    assert hits == [(exact.pk, 0), (near.pk, 9), (turned.pk, 20)] and complete is True
    assert far.pk not in dict(hits)
    hits, complete = finder.near_items(bytes.fromhex(pdq), radius=10, limit=1, timeout=10)
    assert hits == [(exact.pk, 0)] and complete is False  # near.pk was left out by the limit
    started = time.monotonic()
    result = finder.search(users["analyst"], pdq, near_timeout=10)
    assert time.monotonic() - started < 5
    items = result.results["items"]
    assert [(h.obj.pk, h.distance) for h in items.hits] == [(exact.pk, 0), (near.pk, 9), (turned.pk, 20)]
    assert not items.notes and items.hits[1].why == "PDQ distance 9"
    later = hash_only("acct-n5", flip(pdq, 3, rng))  # stored after the index was built
    time.sleep(NEAR_FRESH_SECONDS + 0.1)  # a search looks for new items at most this often
    hits, _ = finder.near_items(bytes.fromhex(pdq), timeout=10)
    assert (later.pk, 3) in hits


# The page: roles, evidence, audit, bad input ----------------------------------------------------

@pytest.mark.parametrize("role", ALLOWED)
def test_investigating_roles_may_search_and_every_search_is_audited(client, users, world, role):
    response = get(as_user(client, users[role]), "alice")
    assert response.status_code == 200
    assert response.context["search_query"] == "alice"
    assert 'value="alice"' in response.content.decode()
    assert reverse("cases:account", args=[world["alice"].pk]) in response.content.decode()
    (event,) = AuditEvent.objects.filter(action="search.performed")
    assert event.actor == users[role] and event.details["query"] == "alice"
    assert event.details["counts"]["accounts"] == 2 and "name" in event.details["searched_as"]


@pytest.mark.parametrize("role", REFUSED)
def test_other_roles_may_not_search(client, users, world, role):
    response = get(as_user(client, users[role]), "alice")
    assert response.status_code in (302, 403)
    if response.status_code == 302:  # an officer is sent back to the portal
        assert response.url == reverse("cases:portal")
    assert not AuditEvent.objects.filter(action="search.performed").exists()


def test_anonymous_visitors_are_sent_to_sign_in(client, world):
    response = get(client, "alice")
    assert response.status_code == 302 and reverse("login") in response.url
    assert not AuditEvent.objects.filter(action="search.performed").exists()


def test_a_case_id_a_reviewer_may_open_goes_straight_to_the_case(client, users, world):
    pk = world["case"].pk
    response = get(as_user(client, users["reviewer"]), f"#{pk}")
    assert response.status_code == 302 and response.url == reverse("cases:detail", args=[pk])
    assert AuditEvent.objects.get(action="search.performed").details["counts"] == {"cases": 1}


def test_an_analyst_sees_a_case_as_text_with_its_subject_linked(client, users, world):
    case = world["case"]
    response = get(as_user(client, users["analyst"]), f"#{case.pk}")
    body = response.content.decode()
    assert response.status_code == 200 and f"Case #{case.pk}" in body
    assert reverse("cases:detail", args=[case.pk]) not in body
    assert reverse("cases:account", args=[case.account_id]) in body


def test_items_are_blurred_thumbnails_with_no_reveal_control(client, users, world):
    item = world["item"]
    for role in ("specialist", "analyst"):
        body = get(as_user(client, users[role]), item.md5).content.decode()
        assert f'src="{reverse("cases:evidence_blurred", args=[item.pk])}?listing=1"' in body
        assert reverse("cases:item_pivot", args=[item.pk]) in body
        assert reverse("cases:evidence_reveal", args=[item.pk]) not in body and "data-reveal" not in body


def test_a_hash_only_item_says_no_media_is_held(client, users, db):
    item = hash_only("acct-h", random_pdq(np.random.default_rng(5)))
    body = get(as_user(client, users["analyst"]), str(item.pk)).content.decode()
    assert "no media is held" in body
    assert reverse("cases:evidence_blurred", args=[item.pk]) not in body


def test_an_item_held_only_by_a_senior_only_case_is_not_shown_to_a_reviewer_or_analyst(client, users, world):
    case, item = world["case"], world["item"]
    Case.objects.filter(pk=case.pk).update(queue=ReviewQueue.objects.get(slug="escalations"))
    for role in ("reviewer", "analyst"):
        response = get(as_user(client, users[role]), item.md5)
        body = response.content.decode()
        assert response.status_code == 200
        assert reverse("cases:evidence_blurred", args=[item.pk]) not in body
        assert reverse("cases:item_pivot", args=[item.pk]) not in body
        assert case.pk not in found_pks(searched(users[role], str(case.pk)), "cases")
        assert not found_pks(searched(users[role], f"#{case.pk}"), "cases")
    body = get(as_user(client, users["senior"]), item.md5).content.decode()
    assert reverse("cases:evidence_blurred", args=[item.pk]) in body
    counts = [e.details["counts"]["items"] for e in AuditEvent.objects.filter(action="search.performed")
              .order_by("pk")]
    assert counts == [0, 0, 1]  # what was shown, not what the database held


@pytest.mark.parametrize("q, message", [
    ("x" * 257, "too long"),
    ("abc\x00def", "control characters"),
    ("line\nbreak", "control characters"),
    ("tab\there", "control characters"),
])
def test_bad_queries_get_a_400_with_a_clear_message(client, users, db, q, message):
    response = get(as_user(client, users["reviewer"]), q)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert "\x00" not in response.context["search_query"] and len(response.context["search_query"]) <= 256
    assert not AuditEvent.objects.filter(action="search.performed").exists()


def test_a_name_with_an_emoji_sequence_is_searched_not_refused(client, users, db):
    account, _ = intake.upsert_account("ext-emoji", {"display_name": "fam \U0001F468\u200d\U0001F469 club"})
    response = get(as_user(client, users["analyst"]), "\U0001F468\u200d\U0001F469 club")
    assert response.status_code == 200
    assert reverse("cases:account", args=[account.pk]) in response.content.decode()


def test_an_unknown_kind_gets_a_400(client, users, db):
    response = get(as_user(client, users["reviewer"]), "alice", kind="everything")
    assert response.status_code == 400 and "Unknown kind" in response.content.decode()


def test_a_kind_limits_the_search_to_it(client, users, world):
    response = get(as_user(client, users["analyst"]), "alice", kind="groups")
    assert response.status_code == 200
    assert set(AuditEvent.objects.get(action="search.performed").details["counts"]) == {"groups"}


def test_an_empty_search_shows_the_box_and_records_nothing(client, users, db):
    response = as_user(client, users["analyst"]).get(URL)
    assert response.status_code == 200 and "search-q" in response.content.decode()
    assert not AuditEvent.objects.filter(action="search.performed").exists()


@pytest.mark.django_db
def test_a_large_cold_index_is_built_by_a_job_of_its_own_while_searches_fall_back(monkeypatch, settings, tmp_path):
    """A search job has 60 seconds; building the index of 10 M stored items takes minutes. A search that
    finds the index cold and large hands the build to a long job and answers nothing (the web lists exact
    matches meanwhile); once built, searches answer from it."""
    from detection import retro
    from detection.jobs import retro as retro_jobs

    settings.VAR_DIR = tmp_path  # no cache on disk
    rng = np.random.default_rng(12)
    pdq = random_pdq(rng)
    exact = hash_only("acct-w1", pdq)
    retro.forget_index()
    monkeypatch.setattr(retro_jobs, "WARM_INLINE_ITEMS", 0)  # as if there were millions of items
    kicks = []
    monkeypatch.setattr(retro_jobs, "kick", lambda key, path, *a, **kw: kicks.append((key, path, kw)))
    assert retro_jobs.near_search(bytes.fromhex(pdq), 31, 10) is None
    assert kicks == [(retro_jobs.WARM_KEY, retro_jobs.WARM_JOB, {"queue": retro.queue_name(),
                                                                  "job_timeout": retro.JOB_TIMEOUT})]
    assert retro_jobs.warm_index() >= 1  # the long job
    hits = retro_jobs.near_search(bytes.fromhex(pdq), 31, 10)
    assert hits["hits"][0][0] == exact.pk and len(kicks) == 1
    retro.forget_index()
