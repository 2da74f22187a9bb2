"""The hash-quality loop: each bank entry's record (matches, confirmations, dismissals, automatic
actions), flags, deconfirming and reconfirming, the breaker's quarantine, and feedback to NCMEC."""

import csv
import io
import re
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from detection import hash_quality
from detection.hash_quality import (
    EntryError,
    count_matches,
    deconfirm_entry,
    entries_of_signals,
    entries_that_act,
    entry_standing,
    quarantine_entry,
    reconfirm_entry,
    record_outcome,
    send_feedback,
)
from detection.models import (
    Account,
    Bank,
    BankHash,
    BankHashOutcome,
    EntryOutcome,
    EntryStatus,
    HashExchange,
    Item,
    Signal,
    SignalKind,
)
from reviewconsole.audit.models import AuditEvent
from tests.conftest import verify_2fa
from tests.factories import case_with_match, encoded, known_bank, scanned_item
from tests.fake_ncmec import PASSWORD, REASONS, USER, FakeNCMECHashAPI

pytestmark = pytest.mark.django_db
CONFIRMED, DISMISSED = EntryOutcome.CONFIRMED, EntryOutcome.DISMISSED
AUTO, OVERTURNED = EntryOutcome.AUTO_ACTIONED, EntryOutcome.OVERTURNED
REASON = "Matches a benign stock photo every time."


def bank_with(count=3, name="partner", **fields):
    bank = Bank.objects.create(name=name, **fields)
    BankHash.objects.bulk_create([BankHash(bank=bank, hash_type="md5", value=f"{i:032x}", label=f"ref-{i}")
                                  for i in range(count)])
    return bank, list(bank.hashes.order_by("pk"))


def match(*entry_ids, item=None, hashes=(), video=None):
    """A hash-match signal as detection.match_signals builds it (unsaved: only its details matter)."""
    details = {"bank": "partner", "entry_id": entry_ids[0] if entry_ids else None, "basis": "exact",
               "hashes": [{"type": "md5", "entry_id": pk, "distance": 0} for pk in (*entry_ids, *hashes)]}
    if video:
        details["video"] = video
    return Signal(kind=SignalKind.HASH_MATCH, detector="hash_match", label="match", score=1, details=details,
                  item=item, dedupe_key="x")


def fresh(entry):
    entry.refresh_from_db()
    return entry


def signed_in(client, users, role="senior", verified=True):
    client.force_login(users[role])
    if verified:
        verify_2fa(client, users[role])
    return client


# Which entries a signal rests on ---------------------------------------------------------------

def test_entries_are_read_from_every_shape_of_match_signal():
    video = {"method": "vpdq", "frames": [{"t": 0, "entry_id": 31}, {"t": 1, "entry_id": 32}],
             "image_frames": [{"t": 4, "entry_id": 40}]}
    signals = [
        match(1, hashes=(2, 3)),
        match(20, video=video),
        Signal(kind=SignalKind.CLASSIFIER, details={"entry_id": 99}),  # not a hash match: rests on no entry
        Signal(kind=SignalKind.HASH_MATCH, details={"entry_id": "7", "hashes": "junk", "video": {"frames": [5]}}),
        Signal(kind=SignalKind.HASH_MATCH, details={"entry_id": True, "hashes": [{"entry_id": None}, "x"]}),
    ]
    assert entries_of_signals(signals) == {1, 2, 3, 20, 31, 32, 40}
    assert entries_of_signals([]) == set()


def test_a_real_scan_names_every_entry_that_agreed():
    known_bank([1])
    item = scanned_item(encoded(1))
    signals = list(Signal.objects.filter(item=item, kind=SignalKind.HASH_MATCH))
    entries = set(BankHash.objects.filter(bank__name="known").values_list("pk", flat=True))
    assert signals and entries_of_signals(signals) == entries  # PDQ, pHash, dHash and MD5 all agree


# Matches ---------------------------------------------------------------------------------------

def test_counting_matches_adds_one_per_signal_in_one_update():
    _, (a, b, c) = bank_with()
    with CaptureQueriesContext(connection) as queries:
        counted = count_matches([match(a.pk, hashes=(b.pk,)), match(b.pk), match(b.pk, hashes=(b.pk,)),
                                 Signal(kind=SignalKind.TEXT, details={"entry_id": c.pk})])
    assert counted == 2
    assert len([q for q in queries if q["sql"].startswith("UPDATE")]) == 1
    assert (fresh(a).match_count, fresh(b).match_count, fresh(c).match_count) == (1, 3, 0)
    assert a.last_matched_at and b.last_matched_at and c.last_matched_at is None
    assert count_matches([]) == 0 and count_matches([match(10**9)]) == 1  # a deleted entry is no error


def test_counting_inside_the_callers_transaction_goes_with_it():
    _, (a, *_rest) = bank_with()
    with pytest.raises(RuntimeError), transaction.atomic():
        count_matches([match(a.pk)])
        raise RuntimeError("triage failed")
    assert fresh(a).match_count == 0


def test_a_deconfirmed_entry_still_counts_its_matches():
    _, (a, *_rest) = bank_with()
    deconfirm_entry(None, a.pk, REASON)
    count_matches([match(a.pk)])
    assert fresh(a).match_count == 1 and a.status == EntryStatus.DECONFIRMED


# Outcomes --------------------------------------------------------------------------------------

def test_an_outcome_is_one_row_per_entry_and_moves_its_counter():
    _, (a, b, c) = bank_with()
    assert sorted(record_outcome([match(a.pk, hashes=(b.pk,)), match(b.pk)], CONFIRMED)) == [a.pk, b.pk]
    rows = BankHashOutcome.objects.filter(outcome=CONFIRMED)
    assert sorted(rows.values_list("bank_hash_id", flat=True)) == [a.pk, b.pk]
    assert (fresh(a).confirm_count, fresh(b).confirm_count, fresh(c).confirm_count) == (1, 1, 0)
    record_outcome([match(c.pk)], AUTO)
    record_outcome([match(c.pk)], OVERTURNED)  # kept as a row; it moves no counter
    c = fresh(c)
    assert (c.auto_action_count, c.confirm_count, c.dismiss_count) == (1, 0, 0)
    assert c.outcomes.filter(outcome=OVERTURNED).count() == 1
    assert record_outcome([Signal(kind=SignalKind.TEXT, details={})], DISMISSED) == []
    with pytest.raises(ValueError):
        record_outcome([match(a.pk)], "liked")


def decided_case(users, seed=1, policy="csam-known"):
    case, item = case_with_match(seed=seed, account=f"acct-{seed}")
    case = claim_case(users["specialist"], case.pk)
    decision, _ = decide(users["specialist"], case.pk, policy=policy, version=case.version)
    return case, item, decision


def test_an_outcome_is_recorded_once_per_entry_decision_and_outcome(users):
    case, item, decision = decided_case(users)
    signals = case.signals.filter(kind=SignalKind.HASH_MATCH)
    entries = entries_of_signals(signals)
    record_outcome(signals, CONFIRMED, decision_id=decision.pk)
    before = dict(BankHash.objects.filter(pk__in=entries).values_list("pk", "confirm_count"))
    assert record_outcome(signals, CONFIRMED, decision_id=decision.pk) == []  # a retried decision
    assert dict(BankHash.objects.filter(pk__in=entries).values_list("pk", "confirm_count")) == before
    rows = BankHashOutcome.objects.filter(decision=decision, outcome=CONFIRMED)
    assert rows.count() == len(entries) and set(rows.values_list("item_id", flat=True)) == {item.pk}
    # The same decision overturned later is another outcome.
    assert sorted(record_outcome(signals, OVERTURNED, decision_id=decision.pk)) == sorted(entries)


def test_without_a_decision_the_same_item_is_the_same_outcome():
    _, (a, *_rest) = bank_with()
    known_bank([2])
    item = scanned_item(encoded(2))
    other = scanned_item(encoded(2), account="acct-2")
    assert record_outcome([match(a.pk, item=item)], DISMISSED) == [a.pk]
    assert record_outcome([match(a.pk, item=item)], DISMISSED) == []
    assert record_outcome([match(a.pk, item=other)], DISMISSED) == [a.pk]
    assert fresh(a).dismiss_count == 2


def test_an_entry_deleted_before_its_outcome_is_skipped():
    _, (a, b, _c) = bank_with()
    b.delete()
    assert record_outcome([match(a.pk, hashes=(b.pk,))], CONFIRMED) == [a.pk]


# Flags -----------------------------------------------------------------------------------------

def outcomes(entry, *kinds):
    """Outcomes one after another, each about its own item (without a decision, the item tells them apart)."""
    for kind in kinds:
        _one(entry, kind)
    return fresh(entry)


def _one(entry, kind):
    account, _ = Account.objects.get_or_create(external_id="acct-flags")
    item = Item.objects.create(account=account, md5="0" * 32, sha256="0" * 64, status="scanned")
    record_outcome([match(entry.pk, item=item)], kind)


def test_an_entry_dismissed_again_and_again_is_flagged_and_still_active(settings):
    settings.BANK_ENTRY_FLAG_DISMISSALS, settings.BANK_ENTRY_FLAG_SHARE = 3, 0.5
    _, (a, b, c) = bank_with()
    a = outcomes(a, DISMISSED, CONFIRMED, DISMISSED)
    assert a.status_reason == "" and not hash_quality.is_flagged(a)  # two dismissals: not yet
    a = outcomes(a, DISMISSED, DISMISSED)
    assert a.status == EntryStatus.ACTIVE and a.status_reason == "dismissed 4 of 5 times" and hash_quality.is_flagged(a)
    b = outcomes(b, DISMISSED, DISMISSED, DISMISSED, CONFIRMED, CONFIRMED, AUTO, CONFIRMED)
    assert not hash_quality.is_flagged(b)  # three dismissals, but under half of seven outcomes
    c = outcomes(c, DISMISSED, DISMISSED, DISMISSED)
    assert c.status_reason == "dismissed 3 of 3 times"
    c = outcomes(c, CONFIRMED, CONFIRMED, CONFIRMED, CONFIRMED)  # confirmations outweigh: the flag lifts
    assert c.status_reason == "" and c.dismiss_count == 3 and c.confirm_count == 4
    assert entry_standing([a.pk, b.pk, c.pk]) == {a.pk: ("flagged", "dismissed 4 of 5 times")}


def test_a_reconfirmed_entry_counts_its_dismissals_afresh(users):
    _, (a, *_rest) = bank_with()
    a = outcomes(a, DISMISSED, DISMISSED, DISMISSED)
    assert hash_quality.is_flagged(a)
    a = reconfirm_entry(users["senior"], a.pk, "Checked by hand: it is known material.")
    assert a.status == EntryStatus.ACTIVE and a.status_reason == "" and a.status_changed_at
    a = outcomes(a, DISMISSED, DISMISSED)
    assert not hash_quality.is_flagged(a) and a.dismiss_count == 5
    a = outcomes(a, DISMISSED)
    assert a.status_reason.startswith("dismissed 3 of 3 times since ")


def test_a_breaker_note_on_an_active_entry_is_not_a_flag():
    _, (a, *_rest) = bank_with()
    BankHash.objects.filter(pk=a.pk).update(status_reason="breaker resumed: checked", status_changed_at=timezone.now())
    assert not hash_quality.is_flagged(fresh(a)) and entry_standing([a.pk]) == {}


# Deconfirm, reconfirm, quarantine ---------------------------------------------------------------

def test_deconfirming_and_reconfirming_are_audited_and_idempotent(users):
    bank, (a, *_rest) = bank_with()
    entry = deconfirm_entry(users["senior"], a.pk, "  Not   known material: a stock photo. ", ip="10.0.0.9")
    assert entry.status == EntryStatus.DECONFIRMED and entry.status_reason == "Not known material: a stock photo."
    event = AuditEvent.objects.get(action="bank.entry_deconfirmed")
    assert event.actor == users["senior"] and event.object_id == str(bank.pk) and event.ip == "10.0.0.9"
    assert event.details["entry"] == a.pk and event.details["before"] == {"status": "active", "reason": ""}
    assert event.details["reason"] == "Not known material: a stock photo." and "record" in event.details
    deconfirm_entry(users["senior"], a.pk, "Pressed twice by mistake.")
    assert AuditEvent.objects.filter(action="bank.entry_deconfirmed").count() == 1
    assert entries_that_act([a.pk]) == set() and entry_standing([a.pk])[a.pk][0] == "deconfirmed"
    reconfirm_entry(users["admin"], a.pk, "Reviewed again: it is known material.")
    reconfirm_entry(users["admin"], a.pk, "Reviewed again: it is known material.")
    event = AuditEvent.objects.get(action="bank.entry_reconfirmed")
    assert event.actor == users["admin"] and event.details["before"]["status"] == "deconfirmed"
    assert fresh(a).status == EntryStatus.ACTIVE and entries_that_act([a.pk]) == {a.pk}


@pytest.mark.parametrize("reason", ["", "   ", "no"])
def test_a_status_change_needs_a_reason(users, reason):
    _, (a, *_rest) = bank_with()
    with pytest.raises(EntryError):
        deconfirm_entry(users["senior"], a.pk, reason)
    with pytest.raises(EntryError):
        deconfirm_entry(users["senior"], 10**9, REASON)
    assert fresh(a).status == EntryStatus.ACTIVE and not AuditEvent.objects.filter(action__startswith="bank.").exists()


def test_the_breaker_quarantines_an_active_entry_once_and_a_senior_lifts_it(users):
    bank, (a, b, _c) = bank_with()
    entry = quarantine_entry(a.pk, "entry acted 400 times in the last hour", {"last_hour": 400, "limit": 100})
    assert entry.status == EntryStatus.QUARANTINED and entry.status_reason.startswith("entry acted 400")
    event = AuditEvent.objects.get(action="bank.entry_quarantined")
    assert event.actor is None and event.actor_label == "system" and event.details["counts"]["last_hour"] == 400
    quarantine_entry(a.pk, "again", {})
    assert AuditEvent.objects.filter(action="bank.entry_quarantined").count() == 1
    deconfirm_entry(users["senior"], b.pk, REASON)
    assert quarantine_entry(b.pk, "fired", {}).status == EntryStatus.DECONFIRMED  # acts on nothing already
    assert quarantine_entry(10**9, "gone", {}) is None
    assert entries_that_act([a.pk, b.pk]) == set()
    reconfirm_entry(users["senior"], a.pk, "Looked at the firings: all correct.")
    assert fresh(a).status == EntryStatus.ACTIVE
    event = AuditEvent.objects.get(action="bank.entry_reconfirmed")
    assert event.details["before"] == {"status": "quarantined", "reason": "entry acted 400 times in the last hour"}


# Pages -----------------------------------------------------------------------------------------

ROLE_STATUS = {"senior": 302, "admin": 302, "reviewer": 403, "specialist": 403, "nobody": 403}


@pytest.mark.parametrize("role", [*ROLE_STATUS, "anonymous"])
@pytest.mark.parametrize("action", ["deconfirm", "reconfirm"])
def test_only_seniors_and_admins_change_an_entrys_status(client, users, role, action):
    bank, (a, *_rest) = bank_with()
    if action == "reconfirm":
        deconfirm_entry(None, a.pk, REASON)
    if role != "anonymous":
        signed_in(client, users, role)
    response = client.post(f"/banks/{bank.pk}/entries/{a.pk}/{action}/", {"reason": "Checked this entry by hand."})
    if role == "anonymous":
        assert response.status_code == 302 and "/login/" in response["Location"]
    else:
        assert response.status_code == ROLE_STATUS[role]
    allowed = role in ("senior", "admin")
    expected = {("deconfirm", True): "deconfirmed", ("reconfirm", True): "active",
                ("deconfirm", False): "active", ("reconfirm", False): "deconfirmed"}[(action, allowed)]
    assert fresh(a).status == expected


@pytest.mark.parametrize("role", [*ROLE_STATUS, "anonymous"])
def test_only_seniors_and_admins_export_and_send_feedback(client, users, role):
    bank, _ = bank_with()
    if role != "anonymous":
        signed_in(client, users, role)
    export = client.get(f"/banks/{bank.pk}/feedback/export/")
    send = client.post(f"/banks/{bank.pk}/feedback/send/")
    if role == "anonymous":
        assert "/login/" in export["Location"] and "/login/" in send["Location"]
    elif role in ("senior", "admin"):
        assert export.status_code == 200 and send.status_code == 302
    else:
        assert export.status_code == 403 and send.status_code == 403
    assert AuditEvent.objects.filter(action="bank.feedback_exported").exists() == (role in ("senior", "admin"))


@pytest.mark.parametrize("url", ["entries/{entry}/deconfirm/", "entries/{entry}/reconfirm/", "feedback/send/"])
def test_changes_need_a_verified_second_factor(client, users, url):
    bank, (a, *_rest) = bank_with()
    signed_in(client, users, "senior", verified=False)
    response = client.post(f"/banks/{bank.pk}/" + url.format(entry=a.pk), {"reason": REASON})
    assert response.status_code == 302 and response["Location"].startswith("/account/verify/?next=")
    assert fresh(a).status == EntryStatus.ACTIVE and not AuditEvent.objects.filter(action__startswith="bank.").exists()
    assert client.get(f"/banks/{bank.pk}/feedback/export/")["Location"].startswith("/account/verify/")


def test_deconfirming_from_the_page(client, users):
    bank, (a, *_rest) = bank_with()
    signed_in(client, users)
    assert client.get(f"/banks/{bank.pk}/entries/{a.pk}/deconfirm/").status_code == 405
    response = client.post(f"/banks/{bank.pk}/entries/{a.pk}/deconfirm/", {"reason": "no"}, follow=True)
    assert "at least 5 characters" in response.content.decode() and fresh(a).status == EntryStatus.ACTIVE
    response = client.post(f"/banks/{bank.pk}/entries/{a.pk}/deconfirm/", {"reason": REASON}, follow=True)
    page = response.content.decode()
    assert "deconfirmed: its matches are still recorded" in page and fresh(a).status == EntryStatus.DECONFIRMED
    assert AuditEvent.objects.get(action="bank.entry_deconfirmed").ip == "127.0.0.1"
    page = client.post(f"/banks/{bank.pk}/entries/{a.pk}/deconfirm/", {"reason": REASON}, follow=True).content.decode()
    assert "was already deconfirmed" in page
    other = Bank.objects.create(name="other")
    assert client.post(f"/banks/{other.pk}/entries/{a.pk}/reconfirm/", {"reason": REASON}).status_code == 404


def test_the_bank_page_shows_each_entrys_record_and_filters_by_status(client, users):
    bank, (a, b, c) = bank_with()
    count_matches([match(a.pk), match(a.pk), match(b.pk)])
    a = outcomes(a, DISMISSED, DISMISSED, DISMISSED, AUTO)
    record_outcome([match(a.pk)], OVERTURNED)
    deconfirm_entry(users["senior"], b.pk, "Not known material: a stock photo.")
    quarantine_entry(c.pk, "entry acted 400 times in the last hour", {})
    signed_in(client, users)
    page = client.get(f"/banks/{bank.pk}/").content.decode()
    assert "2 matches · 0 confirmed · 3 dismissed · 1 automatic · 1 overturned" in re.sub(r"<[^>]+>", "", page)
    assert "dismissed 3 of 4 times" in page and "flagged" in page and "stock photo" in page
    assert "quarantined" in page and "acted 400 times" in page and "Send feedback now" not in page
    assert f"/banks/{bank.pk}/entries/{a.pk}/deconfirm/" in page and f"/entries/{b.pk}/reconfirm/" in page
    for status, expected in (("flagged", [a.pk]), ("deconfirmed", [b.pk]), ("quarantined", [c.pk]),
                             ("", [c.pk, b.pk, a.pk]), ("bogus", [c.pk, b.pk, a.pk])):
        response = client.get(f"/banks/{bank.pk}/?status={status}")
        assert [e.pk for e in response.context["entries"]] == expected, status
    response = client.get(f"/banks/{bank.pk}/?status=flagged&q=ref-")
    assert [e.pk for e in response.context["entries"]] == [a.pk] and response.context["matched"] == 1


def test_the_status_filter_follows_the_pages(client, users):
    bank, entries = bank_with(count=120)
    for entry in entries[::2]:
        deconfirm_entry(None, entry.pk, REASON)
    signed_in(client, users)
    first = client.get(f"/banks/{bank.pk}/?status=deconfirmed")
    assert first.context["matched"] == 60 and len(first.context["entries"]) == 50
    second = client.get(f"/banks/{bank.pk}/" + first.context["older"])
    assert "status=deconfirmed" in first.context["older"] and len(second.context["entries"]) == 10
    assert all(e.status == EntryStatus.DECONFIRMED for e in second.context["entries"])


def test_the_bank_page_costs_the_same_queries_with_outcomes(client, users):
    bank, entries = bank_with(count=60)
    signed_in(client, users)
    client.get(f"/banks/{bank.pk}/")
    with CaptureQueriesContext(connection) as empty:
        client.get(f"/banks/{bank.pk}/")
    for entry in entries:
        record_outcome([match(entry.pk)], OVERTURNED)
        record_outcome([match(entry.pk)], DISMISSED)
    with CaptureQueriesContext(connection) as full:
        client.get(f"/banks/{bank.pk}/")
    assert len(full) <= len(empty) + 1 and len(full) <= 16  # +1: the summary of unsent feedback


# The outcomes as CSV ---------------------------------------------------------------------------

def test_the_outcomes_export_is_audited_and_spreadsheet_safe(client, users):
    bank, (a, b, _c) = bank_with()
    BankHash.objects.filter(pk=a.pk).update(label="=HYPERLINK(\"http://x\")")
    record_outcome([match(a.pk)], CONFIRMED)
    record_outcome([match(b.pk)], DISMISSED)
    BankHashOutcome.objects.filter(bank_hash=b).update(created_at=timezone.now() - timedelta(days=10))
    Bank.objects.create(name="other")
    signed_in(client, users)
    response = client.get(f"/banks/{bank.pk}/feedback/export/")
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    assert response["Cache-Control"] == "no-store, private" and response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == 'attachment; filename="partner-outcomes.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == hash_quality.FEEDBACK_HEADER
    assert [(r[0], r[3], r[4], r[6], r[7]) for r in rows[1:]] == [
        (str(a.pk), "'=HYPERLINK(\"http://x\")", "confirmed", "active", ""),
        (str(b.pk), "ref-1", "dismissed", "active", "")]
    event = AuditEvent.objects.get(action="bank.feedback_exported")
    assert event.actor == users["senior"] and event.details["outcomes"] == 2 and event.details["since"] is None
    since = (timezone.now() - timedelta(days=2)).date().isoformat()
    response = client.get(f"/banks/{bank.pk}/feedback/export/?since={since}")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r[0] for r in rows[1:]] == [str(a.pk)]
    assert AuditEvent.objects.filter(action="bank.feedback_exported").latest("pk").details["outcomes"] == 1


# Feedback to NCMEC -----------------------------------------------------------------------------

@pytest.fixture
def ncmec(settings):
    with FakeNCMECHashAPI() as fake:
        settings.NCMEC_HASH_API_URL = fake.url
        settings.NCMEC_HASH_API_USER, settings.NCMEC_HASH_API_PASSWORD = USER, PASSWORD
        settings.NCMEC_HASH_API_TIMEOUT = 5
        settings.NCMEC_FEEDBACK_REASON = "Not CSAM"
        now = int(time.time())
        fake.add("img1", now, md5="1" * 32, pdq="a" * 64)
        fake.add("img2", now, member=7, md5="2" * 32)
        fake.add("img3", now, md5="3" * 32)
        yield fake


def exchange_bank():
    bank = Bank.objects.create(name="ncmec", source="ncmec")
    HashExchange.objects.create(bank=bank, api="ncmec")
    entries = {key: BankHash.objects.create(bank=bank, hash_type=hash_type, value=value, label=label)
               for key, hash_type, value, label in [
                   ("md5", "md5", "1" * 32, "ncmec:42-img1"), ("pdq", "pdq", "a" * 64, "ncmec:42-img1"),
                   ("shared", "md5", "2" * 32, "ncmec:7-img2 ncmec:42-img3"),
                   ("sha", "sha256", "5" * 64, "ncmec:42-img1"), ("ours", "md5", "6" * 32, "added-by-hand")]}
    return bank, entries


NOT_CSAM = next(guid for guid, name in REASONS.items() if name == "Not CSAM")


def test_feedback_goes_to_ncmec_once_per_entry_and_is_marked_sent(ncmec):
    bank, e = exchange_bank()
    record_outcome([match(e["md5"].pk)], CONFIRMED)
    record_outcome([match(e["pdq"].pk)], CONFIRMED)
    _one(e["pdq"], DISMISSED)  # the newest judgement of the PDQ entry is what NCMEC hears
    record_outcome([match(e["shared"].pk)], DISMISSED)
    for key in ("sha", "ours"):  # no feedback type for SHA-256; no NCMEC reference: export only
        record_outcome([match(e[key].pk)], CONFIRMED)
    record_outcome([match(e["md5"].pk)], AUTO)  # a rule's action judges nothing
    result = send_feedback(bank.pk)
    assert result == {"bank": "ncmec", "sent": 4, "entries": 3, "affirmative": 1, "negative": 2, "failed": 0}
    assert ncmec.feedback == {
        (42, "img1", "MD5"): ("affirmative", []), (42, "img1", "PDQ"): ("negative", [NOT_CSAM]),
        (7, "img2", "MD5"): ("negative", [NOT_CSAM]), (42, "img3", "MD5"): ("negative", [NOT_CSAM])}
    sent = BankHashOutcome.objects.filter(sent_at__isnull=False)
    assert sent.count() == 4 and not sent.exclude(send_error="").exists()
    assert set(BankHashOutcome.objects.filter(sent_at__isnull=True).values_list("bank_hash_id", "outcome")) == {
        (e["sha"].pk, "confirmed"), (e["ours"].pk, "confirmed"), (e["md5"].pk, "auto_actioned")}
    event = AuditEvent.objects.get(action="bank.feedback_sent")
    assert event.actor is None and event.details["sent"] == 4 and event.details["api"] == "ncmec"
    # A second run, or the job delivered twice, sends nothing more.
    calls = len(ncmec.feedback_calls)
    assert send_feedback(bank.pk) == {"bank": "ncmec", "sent": 0}
    assert len(ncmec.feedback_calls) == calls and AuditEvent.objects.filter(action="bank.feedback_sent").count() == 1


def test_a_server_error_is_recorded_and_the_next_run_retries(ncmec):
    bank, e = exchange_bank()
    record_outcome([match(e["md5"].pk)], CONFIRMED)
    record_outcome([match(e["shared"].pk)], CONFIRMED)
    ncmec.fail_next(500)
    result = send_feedback(bank.pk)
    assert result["sent"] == 0 and result["failed"] == 1 and result["error"] == "NCMEC answered HTTP 500"
    failed = BankHashOutcome.objects.get(bank_hash=e["md5"])
    assert failed.sent_at is None and failed.send_error == "NCMEC answered HTTP 500"
    assert BankHashOutcome.objects.get(bank_hash=e["shared"]).send_error == ""  # the run stopped before it
    assert AuditEvent.objects.get(action="bank.feedback_sent").details["failed"] == 1
    result = send_feedback(bank.pk)
    assert result["sent"] == 2 and result["failed"] == 0
    assert not BankHashOutcome.objects.filter(sent_at__isnull=True).exists()
    assert not BankHashOutcome.objects.exclude(send_error="").exists()
    assert (42, "img1", "MD5") in ncmec.feedback and (42, "img3", "MD5") in ncmec.feedback


def test_a_dropped_connection_or_refused_credentials_stop_the_run(ncmec, settings):
    bank, e = exchange_bank()
    record_outcome([match(e["md5"].pk)], CONFIRMED)
    record_outcome([match(e["shared"].pk)], CONFIRMED)
    ncmec.fail_next("drop")
    assert "could not reach NCMEC" in send_feedback(bank.pk)["error"]
    settings.NCMEC_HASH_API_PASSWORD = "wrong"
    result = send_feedback(bank.pk)
    assert result["failed"] == 1 and "refused the credentials" in result["error"]
    assert not ncmec.feedback and not BankHashOutcome.objects.filter(sent_at__isnull=False).exists()
    settings.NCMEC_HASH_API_PASSWORD = PASSWORD
    assert send_feedback(bank.pk)["sent"] == 2


def test_an_entry_ncmec_no_longer_holds_does_not_hold_up_the_others(ncmec):
    bank, e = exchange_bank()
    gone = BankHash.objects.create(bank=bank, hash_type="md5", value="9" * 32, label="ncmec:42-deleted")
    record_outcome([match(gone.pk)], CONFIRMED)
    record_outcome([match(e["md5"].pk)], CONFIRMED)
    result = send_feedback(bank.pk)
    assert result["sent"] == 1 and result["failed"] == 1 and "HTTP 404" in result["error"]
    assert BankHashOutcome.objects.get(bank_hash=gone).send_error.endswith("(HTTP 404)")
    assert (42, "img1", "MD5") in ncmec.feedback


def test_the_newest_judgement_supersedes_older_unsent_ones(ncmec, settings):
    bank, e = exchange_bank()
    record_outcome([match(e["md5"].pk)], DISMISSED)
    BankHashOutcome.objects.update(send_error="NCMEC answered HTTP 500")
    _one(e["md5"], CONFIRMED)
    broken = BankHash.objects.create(bank=bank, hash_type="md5", value="8" * 32, label="ncmec:not-a-reference")
    record_outcome([match(broken.pk)], CONFIRMED)
    settings.BANK_FEEDBACK_BATCH = 1  # the untried confirmation first; the failed dismissal is outside the batch
    assert send_feedback(bank.pk)["sent"] == 2
    assert ncmec.feedback == {(42, "img1", "MD5"): ("affirmative", [])}
    assert not BankHashOutcome.objects.filter(bank_hash=e["md5"], sent_at__isnull=True).exists()
    result = send_feedback(bank.pk)
    assert result["failed"] == 1 and "no NCMEC entry named" in result["error"]
    assert "no NCMEC entry named" in BankHashOutcome.objects.get(bank_hash=broken).send_error


def test_negative_feedback_needs_a_reason_ncmec_offers(ncmec, settings):
    bank, e = exchange_bank()
    record_outcome([match(e["md5"].pk)], DISMISSED)
    record_outcome([match(e["shared"].pk)], CONFIRMED)
    settings.NCMEC_FEEDBACK_REASON = ""  # NCMEC offers two: which one is ours to say
    result = send_feedback(bank.pk)
    assert result["sent"] == 1 and result["failed"] == 1
    error = BankHashOutcome.objects.get(bank_hash=e["md5"]).send_error
    assert "set NCMEC_FEEDBACK_REASON" in error and "Not CSAM" in error and "Poor hash quality" in error
    settings.NCMEC_FEEDBACK_REASON = NOT_CSAM.upper()  # by id as well as by name
    assert send_feedback(bank.pk)["negative"] == 1
    assert ncmec.feedback[(42, "img1", "MD5")] == ("negative", [NOT_CSAM])
    ncmec.reasons = {NOT_CSAM: "Not CSAM"}
    settings.NCMEC_FEEDBACK_REASON = ""  # with one reason offered, that one
    _one(e["md5"], DISMISSED)
    assert send_feedback(bank.pk)["negative"] == 1


def test_without_credentials_or_an_exchange_nothing_is_sent(ncmec, settings):
    bank, e = exchange_bank()
    record_outcome([match(e["md5"].pk)], CONFIRMED)
    settings.NCMEC_HASH_API_USER = ""
    result = send_feedback(bank.pk)
    assert result["sent"] == 0 and "NCMEC_HASH_API_USER" in result["error"]
    assert "NCMEC_HASH_API_USER" in BankHashOutcome.objects.get().send_error
    plain, (a, *_rest) = bank_with()
    record_outcome([match(a.pk)], CONFIRMED)
    assert "skipped" in send_feedback(plain.pk) and "skipped" in send_feedback(10**9)
    assert not ncmec.feedback


def test_the_periodic_run_sends_every_exchange_bank_with_feedback_waiting(ncmec):
    bank, e = exchange_bank()
    record_outcome([match(e["md5"].pk)], CONFIRMED)
    assert [r["sent"] for r in hash_quality.send_pending_feedback()] == [1]
    assert hash_quality.send_pending_feedback() == []


def test_the_bank_page_sends_feedback_through_a_job_and_shows_failures(client, users, ncmec, redis_conn,
                                                                        django_capture_on_commit_callbacks):
    import django_rq

    bank, e = exchange_bank()
    record_outcome([match(e["md5"].pk)], CONFIRMED)
    record_outcome([match(e["shared"].pk)], DISMISSED)
    signed_in(client, users)
    page = client.get(f"/banks/{bank.pk}/").content.decode()
    assert "Send feedback now" in page and "2 outcomes recorded, 0 sent back to NCMEC, 2 waiting" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/banks/{bank.pk}/feedback/send/")
    assert response.status_code == 302
    jobs = django_rq.get_queue("default").get_jobs()
    assert [(j.func_name, j.args) for j in jobs] == [("detection.hash_quality.send_feedback", (bank.pk,))]
    ncmec.fail_next(500)
    jobs[0].perform()
    page = client.get(f"/banks/{bank.pk}/").content.decode()
    assert "1 outcome could not be sent and will be tried again: NCMEC answered HTTP 500" in page
    plain, _ = bank_with()
    response = client.post(f"/banks/{plain.pk}/feedback/send/", follow=True)
    assert "has no exchange that takes feedback" in response.content.decode()


# Admin -----------------------------------------------------------------------------------------

def test_outcomes_are_read_only_in_admin(client, users):
    _, (a, *_rest) = bank_with()
    record_outcome([match(a.pk)], DISMISSED)
    outcome = BankHashOutcome.objects.get()
    signed_in(client, users, "admin")
    assert client.get("/admin/detection/bankhashoutcome/").status_code == 200
    assert client.get("/admin/detection/bankhashoutcome/?sent_at__isnull=True").status_code == 200
    assert client.get(f"/admin/detection/bankhashoutcome/{outcome.pk}/change/").status_code == 200
    assert client.get("/admin/detection/bankhashoutcome/add/").status_code == 403
    assert client.post(f"/admin/detection/bankhashoutcome/{outcome.pk}/delete/", {"post": "yes"}).status_code == 403
    response = client.post(f"/admin/detection/bankhash/{a.pk}/change/", {
        "bank": a.bank_id, "hash_type": "md5", "value": a.value, "label": "x", "media_key": "", "status": "deconfirmed",
        "dismiss_count": 0})
    assert response.status_code == 302 and fresh(a).status == EntryStatus.ACTIVE and a.dismiss_count == 1
