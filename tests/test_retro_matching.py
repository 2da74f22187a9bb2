"""Retroactive matching: hashes that enter a bank find the items stored before them, and an actioned
account's media finds every other account and group that shared it.

Item populations are generated (random hashes, planted near-duplicates in random orientations) and
the results compared with a brute-force search over every stored orientation.
"""

import io
from datetime import timedelta

import numpy as np
import pytest
from django.db import transaction
from django.utils import timezone

from cases.models import Case
from cases.sweep import sweep
from detection import intake, retro
from detection.banks import ALLOW_BANK, add_item_hashes, import_hashes, import_vpdq, system_bank
from detection.detectors.hashing import DIHEDRAL, ORIENTATION_NAMES
from detection.jobs import retro as share_module
from detection.jobs.retro import retro_match, share_outward, share_pending
from detection.models import Bank, BankHash, Item, ItemKind, ItemStatus, RetroMatch, SharedMediaRequest, Signal
from reviewconsole.audit.models import AuditEvent
from reviewconsole.devtools import synthetic
from tests.conftest import drain
from tests.factories import known_bank, triage_all

THRESHOLD = 31


@pytest.fixture(autouse=True)
def _fresh_stored_index(settings):
    settings.RETRO_SETTLE_SECONDS = 0  # tests commit their items before the entries that find them
    retro.forget_index()
    yield
    retro.forget_index()


def random_hashes(rng, n):
    return [bytes(row).hex() for row in rng.integers(0, 256, (n, 32), dtype=np.uint8)]


def near(value, distance, rng):
    """`value` with exactly `distance` bits flipped."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(value), dtype=np.uint8))
    bits[rng.choice(256, distance, replace=False)] ^= 1
    return np.packbits(bits).tobytes().hex()


def distance(a, b):
    return (int(a, 16) ^ int(b, 16)).bit_count()


def hash_only_item(account, orientations, *, quality=90, md5=None, group=None, frames=None, kind=ItemKind.IMAGE):
    """A hash-only item as the platform sends one, scanned (the scan keeps its orientations)."""
    hashes = {"pdq": orientations[0], "pdq_quality": quality, "pdq_orientations": orientations} if orientations else {}
    if md5:
        hashes["md5"] = md5
    if frames:
        hashes["frames"] = frames
    item = Item.objects.get(pk=intake.submit_hashes(hashes, account_id=account, group_id=group, kind=kind).pk)
    assert item.status == ItemStatus.SCANNED  # matched in the intake request, its orientations kept
    return item


def import_list(bank, rows):
    """Add (type, value) rows to a bank through the import path (the txt/csv importer)."""
    text = "hash,type,label\n" + "\n".join(f"{value},{hash_type},ref-{n}" for n, (hash_type, value) in enumerate(rows))
    return import_hashes(bank, io.StringIO(text), fmt="csv")


def bank_signals(bank_name):
    bank = Bank.objects.get(name=bank_name)
    return Signal.objects.filter(dedupe_key__endswith=f":bank:{bank.pk}")


# The index alone -----------------------------------------------------------------------------

def test_the_stored_index_finds_exactly_what_brute_force_finds(monkeypatch):
    # Small segments, so that a search crosses a sealed segment with tables and a tail.
    monkeypatch.setattr(retro, "SEGMENT_ROWS", 40_000)
    rng = np.random.default_rng(7)
    items, rows = 7_000, 8
    vectors = rng.integers(0, 256, (items * rows, 32), dtype=np.uint8)
    owners = np.repeat(np.arange(1, items + 1), rows)
    queries = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    for q in range(200):  # planted in a random orientation of a random item, 0..34 bits away
        row = rng.integers(items) * rows + rng.integers(rows)
        vectors[row] = queries[q]
        flips = rng.choice(256, q % 35, replace=False)
        vectors[row, flips // 8] ^= (1 << (flips % 8)).astype(np.uint8)
    index = retro.StoredIndex(design_radius=THRESHOLD)
    index.add(owners[:30_000], vectors[:30_000])
    index.maintain()
    index.add(owners[30_000:], vectors[30_000:])
    index.maintain()
    assert len(index.segments) == 2
    radius = np.where(np.arange(300) % 2, THRESHOLD, 20)  # one radius per query, as banks differ
    qidx, found, dist = index.search(queries, radius)

    xor = np.bitwise_count(queries.view(np.uint64)[:, None, :] ^ vectors.view(np.uint64)[None, :, :]).sum(axis=2)
    expected = {}
    for q, row in zip(*np.nonzero(xor <= radius[:, None]), strict=True):
        key = (int(q), int(owners[row]))
        expected[key] = min(expected.get(key, 999), int(xor[q, row]))
    assert dict(zip(zip(qidx.tolist(), found.tolist(), strict=True), dist.tolist(), strict=True)) == expected
    assert len(expected) > 100


# New entries against stored items ----------------------------------------------------------------

def test_new_entries_find_every_stored_item_brute_force_finds(db):
    rng = np.random.default_rng(11)
    entries = random_hashes(rng, 40)
    stored = {}
    for n in range(80):
        orientations = random_hashes(rng, 8)
        if n < 50:  # planted: entry n % 40 in a random orientation, 0..40 bits away
            k = int(rng.integers(8))
            orientations[k] = near(entries[n % 40], int(rng.integers(0, 41)), rng)
        stored[hash_only_item(f"acct-{n % 7}", orientations).pk] = orientations
    # Too poor a picture to match at scan time, so not retroactively either.
    poor = hash_only_item("acct-poor", [entries[0]] + random_hashes(rng, 7), quality=20)
    # Scanned before orientations were kept: its PDQ alone is indexed.
    old = hash_only_item("acct-old", [near(entries[1], 3, rng)] + random_hashes(rng, 7))
    Item.objects.filter(pk=old.pk).update(pdq_orientations=None)
    stored[old.pk] = [old.pdq]
    # Identical files by MD5 only (no PDQ sent).
    digests = [bytes(rng.integers(0, 256, 16, dtype=np.uint8)).hex() for _ in range(3)]
    by_md5 = [hash_only_item("acct-md5", None, md5=d).pk for d in digests]

    import_list("partner", [("pdq", e) for e in entries] + [("md5", d) for d in digests[:2]])
    counts = retro_match(Bank.objects.get(name="partner").pk)

    expected = {pk for pk, orientations in stored.items()
                if any(distance(o, e) <= THRESHOLD for o in orientations for e in entries)} | set(by_md5[:2])
    assert len(expected) > 30
    assert set(bank_signals("partner").values_list("item_id", flat=True)) == expected
    assert poor.pk not in expected and counts["signals"] == len(expected)
    state = RetroMatch.objects.get(bank__name="partner")
    assert state.requested_at is None and state.matched_through == BankHash.objects.latest("pk").pk
    run = AuditEvent.objects.get(action="match.retroactive")
    assert (run.details["entries"], run.details["entries_pdq"], run.details["entries_md5"]) == (42, 40, 2)
    assert run.details["signals"] == len(expected) and run.details["finished"] is True


def test_a_retroactive_match_reads_like_a_scan_match_and_says_it_came_later(db):
    rng = np.random.default_rng(3)
    entry = random_hashes(rng, 1)[0]
    orientations = random_hashes(rng, 8)
    orientations[DIHEDRAL.index("mirrored")] = near(entry, 6, rng)
    item = hash_only_item("acct-1", orientations)
    import_list("partner", [("pdq", entry)])
    retro_match(Bank.objects.get(name="partner").pk)
    (signal,) = Signal.objects.filter(item=item)
    bank = Bank.objects.get(name="partner")
    assert signal.dedupe_key == f"item:{item.pk}:bank:{bank.pk}"  # the scan's key: a rescan adds nothing
    assert signal.detector == "hash_match" and signal.details["retroactive"] is True
    assert "PDQ distance 6 of 256 bits ≤ threshold 31" in signal.explanation
    assert "the copy is mirrored" in signal.explanation and "retroactive" in signal.explanation
    assert signal.details["hashes"][0]["transform"] == "mirrored"


def test_running_again_gives_no_second_signal(db):
    rng = np.random.default_rng(5)
    entry = random_hashes(rng, 1)[0]
    items = [hash_only_item(f"acct-{n}", [near(entry, n, rng)] + random_hashes(rng, 7)) for n in range(4)]
    import_list("partner", [("pdq", entry)])
    bank = Bank.objects.get(name="partner")
    assert retro_match(bank.pk)["signals"] == 4
    assert retro_match(bank.pk) is None  # nothing pending
    # Forced to go over the same entries again (as after a lost claim): the same signals, no more.
    RetroMatch.objects.filter(bank=bank).update(matched_through=0, requested_at=timezone.now())
    again = retro_match(bank.pk)
    assert again["signals"] == 0 and again["already_signalled"] == 4
    assert Signal.objects.filter(item__in=items).count() == 4


def test_an_allow_list_suppresses_retroactive_matches_as_at_scan_time(db):
    rng = np.random.default_rng(9)
    entry = random_hashes(rng, 1)[0]
    excused_md5 = "ab" * 16
    excused = hash_only_item("acct-1", [near(entry, 4, rng)] + random_hashes(rng, 7), md5=excused_md5)
    kept = hash_only_item("acct-2", [near(entry, 4, rng)] + random_hashes(rng, 7), md5="cd" * 16)
    allow = system_bank(ALLOW_BANK)
    import_list(allow.name, [("md5", excused_md5)])
    import_list("partner", [("pdq", entry)])
    counts = retro_match(Bank.objects.get(name="partner").pk)
    assert list(bank_signals("partner").values_list("item_id", flat=True)) == [kept.pk]
    assert counts["suppressed"] == 1
    suppressed = AuditEvent.objects.get(action="match.suppressed")
    assert suppressed.item_id == excused.pk and suppressed.details["allow_lists"] == [ALLOW_BANK]


def test_video_frames_are_matched_by_the_video_rule(db):
    rng = np.random.default_rng(13)
    bank_frames = random_hashes(rng, 5)
    frames = [{"t": float(n), "pdq": near(h, 5, rng), "quality": 90} for n, h in enumerate(bank_frames)]
    video = hash_only_item("acct-v", None, frames=frames, kind=ItemKind.VIDEO)
    other = hash_only_item("acct-w", None, kind=ItemKind.VIDEO,
                           frames=[{"t": 0.0, "pdq": near(bank_frames[0], 5, rng), "quality": 90},
                                   *({"t": float(n), "pdq": h, "quality": 90}
                                     for n, h in enumerate(random_hashes(rng, 6), 1))])
    lines = "\n".join(f"{n},90,{h},{n}.0" for n, h in enumerate(bank_frames))
    import_vpdq("videos", io.StringIO(lines), media_key="vid-1")
    retro_match(Bank.objects.get(name="videos").pk)
    (signal,) = bank_signals("videos")
    assert signal.item_id == video.pk and signal.details["basis"] == "video"
    assert signal.details["video"]["media_key"] == "vid-1" and "5 of 5 sampled frames" in signal.explanation
    assert not Signal.objects.filter(item=other).exists()  # one frame of six: not the same video


def test_a_reviewers_confirmed_items_reach_the_copies_stored_before(db):
    rng = np.random.default_rng(17)
    picture = random_hashes(rng, 8)
    confirmed = hash_only_item("acct-bad", picture)
    upside_down = DIHEDRAL.index("flipped upside down")
    flipped = list(picture)
    flipped[0], flipped[upside_down] = picture[upside_down], picture[0]
    copy = hash_only_item("acct-other", flipped)
    # The confirmed item was decided in a case: people have seen it, and it is not flagged again.
    Signal.objects.create(item=confirmed, account=confirmed.account, kind="classifier", detector="nudity",
                          label="nudity", score=0.9, severity=60, explanation="x", dedupe_key="confirmed")
    (case,) = triage_all()
    Case.objects.filter(pk=case.pk).update(closed_at=timezone.now())
    local = system_bank("local-confirmed")
    assert add_item_hashes(local, [confirmed], user=None, label_for=lambda item: f"item {item.pk}")
    counts = retro_match(local.pk)
    assert list(bank_signals("local-confirmed").values_list("item_id", flat=True)) == [copy.pk]
    assert counts["already_in_a_case"] == 1
    assert "the copy is flipped upside down" in Signal.objects.get(item=copy).explanation


def test_entries_wait_until_they_have_settled(db, settings):
    settings.RETRO_SETTLE_SECONDS = 3600
    rng = np.random.default_rng(19)
    entry = random_hashes(rng, 1)[0]
    hash_only_item("acct-1", [entry] + random_hashes(rng, 7))
    import_list("partner", [("pdq", entry)])
    bank = Bank.objects.get(name="partner")
    mark = RetroMatch.objects.get(bank=bank).matched_through
    assert retro_match(bank.pk) == {"entries": 0, "candidates": 0, "signals": 0, "index_rows": 8}
    state = RetroMatch.objects.get(bank=bank)
    assert state.requested_at is not None and state.matched_through == mark and not state.claim_token
    assert not Signal.objects.exists()


def test_the_index_takes_in_items_scanned_after_its_first_look(db):
    rng = np.random.default_rng(23)
    first, second = random_hashes(rng, 2)
    hash_only_item("acct-1", [first] + random_hashes(rng, 7))
    import_list("partner", [("pdq", first)])
    bank = Bank.objects.get(name="partner")
    assert retro_match(bank.pk)["signals"] == 1
    late = hash_only_item("acct-2", random_hashes(rng, 3) + [near(second, 9, rng)] + random_hashes(rng, 4))
    import_list("partner", [("pdq", second)])
    assert retro_match(bank.pk)["signals"] == 1
    assert Signal.objects.filter(item=late).exists() and len(retro.stored_index()) == 16


@pytest.mark.parametrize("small", [True, False])
def test_the_index_sees_items_committed_late_with_an_earlier_scan_time(db, monkeypatch, small):
    if not small:  # the large index's path: the count is checked every RECONCILE_SECONDS only
        monkeypatch.setattr(retro, "SMALL_ITEMS", 0)
        monkeypatch.setattr(retro, "RECONCILE_SECONDS", 0)
    rng = np.random.default_rng(43)
    first = hash_only_item("acct-1", random_hashes(rng, 8))
    index = retro.stored_index()
    index.refresh()
    # A scan that took its time stamp before the index looked, and committed after: inside the window
    # read again, it is read incrementally; older than the window, the count check reloads everything.
    late = hash_only_item("acct-2", random_hashes(rng, 8))
    Item.objects.filter(pk=late.pk).update(scanned_at=first.scanned_at - timedelta(seconds=60))
    index.refresh()
    later = hash_only_item("acct-3", random_hashes(rng, 8))
    Item.objects.filter(pk=later.pk).update(scanned_at=first.scanned_at - timedelta(hours=2))
    index.refresh()
    for item in (first, late, later):
        _, found, dist = index.search(np.frombuffer(bytes(Item.objects.get(pk=item.pk).pdq_orientations)[32:64],
                                                    dtype=np.uint8), 0)
        assert found.tolist() == [item.pk] and dist.tolist() == [0]
    assert len(index) == 24 and index.items_seen == 3


# Through real workers --------------------------------------------------------------------------

pipeline = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pipeline
@pytest.mark.usefixtures("redis_conn")
def test_a_picture_added_to_a_bank_later_finds_its_mirrored_copy_through_the_workers():
    image = synthetic.make_image(31)
    item = intake.submit_file(synthetic.encode(synthetic.GEOMETRIC_EDITS["mirrored"](image)), account_id="acct-9")
    drain()
    assert Item.objects.get(pk=item.pk).status == "scanned" and not Signal.objects.exists()

    known_bank([31])  # the original picture's hashes; the request commits with them
    drain()
    (signal,) = Signal.objects.filter(item=item)
    assert signal.case is not None and "the copy is mirrored" in signal.explanation
    assert Case.objects.get(account__external_id="acct-9").queue.slug == "known-material"
    assert AuditEvent.objects.get(action="match.retroactive").details["signals"] == 1


@pipeline
def test_retroactive_work_survives_a_redis_flush(redis_conn):
    rng = np.random.default_rng(29)
    entry = random_hashes(rng, 1)[0]
    item = intake.submit_hashes({"pdq": near(entry, 7, rng), "pdq_quality": 90}, account_id="acct-3")
    drain()
    import_list("partner", [("pdq", entry)])
    redis_conn.flushdb()  # the job went with it
    drain()
    assert not Signal.objects.exists()
    assert RetroMatch.objects.get(bank__name="partner").requested_at is not None  # the database still says so
    assert sweep(older_than=0)["retro"] == 1
    drain()
    (signal,) = Signal.objects.filter(item=item)
    assert signal.triaged_at is not None and signal.case is not None
    assert RetroMatch.objects.get(bank__name="partner").requested_at is None
    assert sweep(older_than=0)["retro"] == 0


# Sharing outward -----------------------------------------------------------------------------

def test_sharing_outward_flags_every_other_account_and_group_with_the_same_media(db):
    rng = np.random.default_rng(37)
    banned_pictures = [random_hashes(rng, 8) for _ in range(2)]
    source = hash_only_item("acct-banned", banned_pictures[0], md5="11" * 16)
    hash_only_item("acct-banned", banned_pictures[1])
    hash_only_item("acct-banned", [near(banned_pictures[0][0], 2, rng)] + random_hashes(rng, 7))  # its own copy
    mirrored = random_hashes(rng, 8)
    mirrored[DIHEDRAL.index("mirrored")] = near(banned_pictures[0][0], 12, rng)
    copy = hash_only_item("acct-b", mirrored)
    in_group = hash_only_item("acct-c", None, md5="11" * 16, group="group-1")
    far = hash_only_item("acct-d", [near(banned_pictures[1][0], 40, rng)] + random_hashes(rng, 7))
    Signal.objects.create(item=source, account=source.account, kind="hash_match", detector="hash_match",
                          label="known", score=1, severity=90, explanation="known", dedupe_key="known-source")

    counts = share_outward(source.account_id, decision_id=77, reason="known abuse material")
    signals = {s.item_id: s for s in Signal.objects.filter(detector="shared_media")}
    assert set(signals) == {copy.pk, in_group.pk}
    assert far.pk not in signals
    mirrored_signal = signals[copy.pk]
    assert "account 'acct-banned' was actioned for (known abuse material)" in mirrored_signal.explanation
    assert "PDQ distance 12 of 256 bits" in mirrored_signal.explanation
    assert "the copy is mirrored" in mirrored_signal.explanation and "decision #77" in mirrored_signal.explanation
    assert mirrored_signal.details["hashes"][0]["transform"] == "mirrored"
    assert mirrored_signal.severity == 80 and mirrored_signal.kind == "hash_match"
    assert signals[in_group.pk].group.external_id == "group-1" and signals[in_group.pk].score == 1.0
    assert (counts["signals"], counts["accounts"], counts["groups"]) == (2, 2, 1)
    audit_row = AuditEvent.objects.get(action="match.shared_outward")
    assert audit_row.details["decision"] == 77 and audit_row.details["signals"] == 2

    assert share_outward(source.account_id, decision_id=77, reason="known abuse material") == counts
    assert share_outward(source.account_id, decision_id=78, reason="again")["signals"] == 0
    assert Signal.objects.filter(detector="shared_media").count() == 2


def test_pending_requests_run_together_in_one_search_each_with_its_own_findings(db, monkeypatch):
    rng = np.random.default_rng(43)
    pairs = []
    for n in range(4):
        picture = random_hashes(rng, 8)
        banned = hash_only_item(f"acct-banned-{n}", picture, md5=f"{n:02d}" * 16)
        copy = hash_only_item(f"acct-copy-{n}", [near(picture[0], 5 + n, rng)] + random_hashes(rng, 7))
        pairs.append((banned, copy))
    same_file = hash_only_item("acct-same-file", None, md5="00" * 16)  # the first banned account's very file
    for n, (banned, _) in enumerate(pairs):
        retro.share_request(banned.account_id, decision_id=100 + n, reason="csam")
    retro.share_request(pairs[0][0].account_id, decision_id=200, reason="second decision")  # same account again
    SharedMediaRequest.objects.filter(decision_id=103).update(claim_token="another-run", claimed_at=timezone.now())
    searches = []
    search = retro.StoredIndex.search
    monkeypatch.setattr(retro.StoredIndex, "search",
                        lambda self, *args, **kwargs: searches.append(1) or search(self, *args, **kwargs))

    assert share_pending() == 4  # the request another run holds is left to it
    assert len(searches) == 1
    found = {s.item_id: s for s in Signal.objects.filter(detector="shared_media")}
    assert set(found) == {pairs[0][1].pk, pairs[1][1].pk, pairs[2][1].pk, same_file.pk}
    for n in range(3):
        assert found[pairs[n][1].pk].details["source_account"] == f"acct-banned-{n}"
        assert f"PDQ distance {5 + n} of 256 bits" in found[pairs[n][1].pk].explanation
    assert found[same_file.pk].details["match"] == "exact" and found[same_file.pk].details["decision_id"] == 100
    done = {r.decision_id: r.counts for r in SharedMediaRequest.objects.filter(done_at__isnull=False)}
    assert {d: c["signals"] for d, c in done.items()} == {100: 2, 101: 1, 102: 1, 200: 0}
    assert SharedMediaRequest.objects.get(decision_id=103).done_at is None
    rows = AuditEvent.objects.filter(action="match.shared_outward")
    assert sorted(r.details["decision"] for r in rows) == [100, 101, 102, 200]
    assert {r.details["batch"] for r in rows} == {4}


def test_a_request_that_fails_does_not_hold_back_the_others(db, monkeypatch):
    rng = np.random.default_rng(47)
    pairs = []
    for n in range(3):
        picture = random_hashes(rng, 8)
        banned = hash_only_item(f"acct-banned-{n}", picture)
        hash_only_item(f"acct-copy-{n}", [near(picture[0], 4, rng)] + random_hashes(rng, 7))
        retro.share_request(banned.account_id, decision_id=300 + n, reason="csam")
        pairs.append(banned)
    poisoned = pairs[1].account_id
    real = share_module._shared_finding

    def finding(other, exact_source, queries, sources, threshold):
        if any(item.account_id == poisoned for item in sources.values()):
            raise MemoryError("more media than a run can hold")
        return real(other, exact_source, queries, sources, threshold)

    monkeypatch.setattr(share_module, "_shared_finding", finding)
    assert share_pending() == 2
    assert sorted(r.decision_id for r in SharedMediaRequest.objects.filter(done_at__isnull=False)) == [300, 302]
    left = SharedMediaRequest.objects.get(decision_id=301)
    assert left.done_at is None and left.claim_token == ""  # released for a later run
    assert Signal.objects.filter(detector="shared_media").count() == 2


@pipeline
def test_a_shared_media_request_survives_a_redis_flush(redis_conn):
    rng = np.random.default_rng(41)
    picture = random_hashes(rng, 8)
    banned = intake.submit_hashes({"pdq": picture[0], "pdq_quality": 90, "pdq_orientations": picture},
                                  account_id="acct-banned")
    copy = intake.submit_hashes({"pdq": near(picture[0], 3, rng), "pdq_quality": 90}, account_id="acct-other")
    drain()
    with transaction.atomic():
        retro.request_share_outward(Item.objects.get(pk=banned.pk).account_id, decision_id=5, reason="csam")
    redis_conn.flushdb()
    drain()
    assert SharedMediaRequest.objects.get().done_at is None
    assert sweep(older_than=0)["retro"] == 1
    drain()
    (signal,) = Signal.objects.filter(detector="shared_media")
    assert signal.item_id == copy.pk and signal.case is not None
    assert SharedMediaRequest.objects.get().done_at is not None


def test_orientation_names_follow_the_scan(db):
    # The index and the explanations name orientations as the scan stored them.
    assert ORIENTATION_NAMES[:8] == DIHEDRAL and retro.queue_name() in ("retro", "default")
