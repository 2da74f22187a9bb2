"""Workers sharing one bank index: snapshots mapped from files, the delta beside them, and bank changes
announced over Redis pub/sub with the poll as the fallback."""

import io
import subprocess
import time

import numpy as np
import pytest

from detection import matching
from detection.banks import import_hashes
from detection.detectors.index import HammingIndex, LayeredIndex, to_hex
from detection.models import Bank, BankHash
from tests.conftest import PYTHON, ROOT, worker_env

RADIUS = 31


def brute(bits, alive, queries, radius=RADIUS):
    """{(query, row): distance} over the live rows, by exhaustive XOR and popcount."""
    found = {}
    for q, query in enumerate(queries):
        dist = np.unpackbits(bits ^ query, axis=1).sum(axis=1)
        for row in np.flatnonzero((dist <= radius) & alive).tolist():
            found[(q, row)] = int(dist[row])
    return found


def hits(result):
    qidx, rows, dist = result
    return dict(zip(zip(qidx.tolist(), rows.tolist(), strict=True), dist.tolist(), strict=True))


def near_queries(bits, rng, count):
    """Rows with 0..40 bits flipped (some beyond the radius), and a few random hashes."""
    picked = np.unpackbits(bits[rng.integers(0, len(bits), count)], axis=1)
    for row, d in zip(picked, rng.integers(0, 41, count), strict=True):
        row[rng.choice(256, d, replace=False)] ^= 1
    return np.concatenate([np.packbits(picked, axis=1), rng.integers(0, 256, (10, 32), dtype=np.uint8)])


@pytest.fixture
def bank_bits():
    return np.random.default_rng(4242).integers(0, 256, (12_000, 32), dtype=np.uint8)


class TestMappedIndex:
    def test_mapped_in_memory_and_brute_force_agree_with_rows_removed_and_added(self, bank_bits, tmp_path):
        rng = np.random.default_rng(1)
        base_rows, extra = 9_000, bank_bits[9_000:]
        memory = HammingIndex(256, brute_force_rows=2_000, max_delta=500)
        memory.add(bank_bits[:8_000])
        memory.add(bank_bits[8_000:base_rows])  # merged into the tables, not rebuilt
        removed = rng.choice(base_rows, 300, replace=False)
        memory.remove(removed)
        memory.save(tmp_path)
        mapped = LayeredIndex(256, base=HammingIndex.load(tmp_path), brute_force_rows=2_000, max_delta=500)
        assert mapped.base.tables is not None and not mapped.base.tables.ids.flags.writeable
        for index in (memory, mapped):
            index.add(extra[:100])  # a small delta, scanned
            index.add(extra[100:])  # past brute_force_rows: tables of its own in the mapped case
        later = np.concatenate([rng.choice(base_rows, 50, replace=False), base_rows + rng.choice(len(extra), 50)])
        for index in (memory, mapped):
            index.remove(later)
        alive = np.ones(len(bank_bits), dtype=bool)
        alive[removed] = alive[later] = False
        assert (mapped.alive == alive).all() and (memory.alive == alive).all()
        queries = near_queries(bank_bits, rng, 300)
        expected = brute(bank_bits, alive, queries)
        assert len(expected) > 200
        assert hits(memory.search(queries, RADIUS)) == expected
        assert hits(mapped.search(queries, RADIUS)) == expected
        one_by_one = {}
        for q in range(0, len(queries), 7):
            one_by_one.update({(q, row): d for (_, row), d in hits(mapped.search(queries[q:q + 1], RADIUS)).items()})
        assert one_by_one == {key: d for key, d in expected.items() if key[0] % 7 == 0}
        radii = rng.integers(0, 40, len(queries))
        per_query = {key: d for key, d in brute(bank_bits, alive, queries, 40).items() if d <= radii[key[0]]}
        assert hits(mapped.search(queries, radii)) == per_query
        assert (mapped.vectors([5, base_rows + 5]) == bank_bits[[5, base_rows + 5]]).all()

    def test_a_mapped_index_is_read_only_and_removals_stay_in_the_process(self, bank_bits, tmp_path):
        index = HammingIndex(256, brute_force_rows=2_000)
        index.add(bank_bits[:5_000])
        index.save(tmp_path)
        loaded = HammingIndex.load(tmp_path)
        with pytest.raises(ValueError, match="read-only"):
            loaded.add(bank_bits[:1])
        loaded.remove([3])
        assert not loaded.alive[3] and HammingIndex.load(tmp_path).alive[3]  # copy-on-write, the file unchanged
        assert hits(loaded.search(bank_bits[3:4], 0)) == {}

    def test_64_bit_rows_without_tables(self, tmp_path):
        rng = np.random.default_rng(2)
        bits = rng.integers(0, 256, (500, 8), dtype=np.uint8)
        index = HammingIndex(64)
        index.add(bits[:400])
        index.save(tmp_path, prefix="phash.")
        mapped = LayeredIndex(64, base=HammingIndex.load(tmp_path, prefix="phash."))
        mapped.add(bits[400:])
        qidx, rows, dist = mapped.search(bits[[10, 450]], 0)
        assert rows.tolist() == [10, 450] and dist.tolist() == [0, 0]

    @pytest.mark.parametrize("damage", ["truncate ids", "drop words", "garbage meta"])
    def test_damaged_files_are_refused(self, bank_bits, tmp_path, damage):
        index = HammingIndex(256, brute_force_rows=2_000)
        index.add(bank_bits[:5_000])
        index.save(tmp_path)
        if damage == "truncate ids":
            data = (tmp_path / "ids.npy").read_bytes()
            (tmp_path / "ids.npy").write_bytes(data[:len(data) // 2])
        elif damage == "drop words":
            (tmp_path / "words.npy").unlink()
        else:
            (tmp_path / "index.json").write_text("{")
        with pytest.raises((ValueError, OSError)):
            HammingIndex.load(tmp_path)


# -- the bank index over snapshots -----------------------------------------------------------------

def random_pdq(seed, count):
    return to_hex(np.random.default_rng(seed).integers(0, 256, (count, 32), dtype=np.uint8))


def add_bank(name, values):
    import_hashes(name, io.StringIO("\n".join(values)), fmt="txt", hash_type="pdq")
    return Bank.objects.get(name=name)


def look_now(index):
    index.checked_at = float("-inf")
    index.refresh()


@pytest.fixture
def snapshots(settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path
    monkeypatch.setattr(matching, "CACHE_MIN_ROWS", 1)
    monkeypatch.setattr(matching, "SNAPSHOT_RETRY_SECONDS", 0)
    return tmp_path


def rows_read(monkeypatch, index):
    """Count the rows an index reads from the database from now on."""
    read = []
    monkeypatch.setattr(index, "_add_page", lambda page, add=index._add_page: read.append(len(page)) or add(page))
    return read


@pytest.mark.django_db
class TestSnapshots:
    def test_a_start_maps_the_snapshot_and_reads_only_the_rows_added_since(self, snapshots, monkeypatch):
        values = random_pdq(1, 230)
        add_bank("known", values[:200])
        writer = matching.BankIndex()
        writer.refresh()
        link = snapshots / "bank-index" / matching.database_key()
        assert link.is_symlink() and (link / "meta.json").exists()
        add_bank("known", values[200:])
        index = matching.BankIndex()
        read = rows_read(monkeypatch, index)
        index.refresh()
        rows = index.types["pdq"]
        assert rows.base_rows == 200 and len(rows) == 230 and sum(read) == 30
        assert not rows.index.base._words.head.flags.writeable  # mapped, not copied
        for value in (values[3], values[210]):
            assert [m.value for m in index.match_perceptual("pdq", value)] == [value]

    def test_the_writer_moves_to_its_snapshot_and_frees_its_own_rows(self, snapshots):
        add_bank("known", random_pdq(2, 50))
        index = matching.BankIndex()
        index.refresh()
        assert index.types["pdq"].base_rows == 0
        look_now(index)
        assert index.types["pdq"].base_rows == 50 and index.types["pdq"].index.delta_rows == 0

    def test_a_new_snapshot_once_the_delta_outgrows_its_share_and_the_others_move_to_it(self, snapshots,
                                                                                      monkeypatch):
        monkeypatch.setattr(matching, "SNAPSHOT_SHARE", 0.1)
        values = random_pdq(3, 130)
        add_bank("known", values[:100])
        first, second = matching.BankIndex(), matching.BankIndex()
        first.refresh()
        second.refresh()
        assert second.types["pdq"].base_rows == 100
        add_bank("known", values[100:105])  # 5 %: stays in the delta
        look_now(second)
        assert second.types["pdq"].base_rows == 100 and second.types["pdq"].index.delta_rows == 5
        add_bank("known", values[105:])  # 30 %: a new snapshot
        look_now(second)
        look_now(first)  # moves to the snapshot the other one wrote
        assert first.types["pdq"].base_rows == 130 and first.types["pdq"].index.delta_rows == 0
        assert [m.value for m in first.match_perceptual("pdq", values[120])] == [values[120]]
        kept = list((snapshots / "bank-index-snapshots" / matching.database_key()).iterdir())
        assert len([p for p in kept if not p.name.startswith(".")]) <= 2

    def test_deleted_and_late_rows_are_reconciled_without_reading_the_bank_again(self, snapshots, monkeypatch):
        values = random_pdq(4, 400)
        bank = add_bank("known", values[:300])
        add_bank("other", values[300:399])
        gap = BankHash.objects.get(value=values[150]).pk
        BankHash.objects.filter(pk=gap).delete()  # an id the snapshot will not have
        matching.BankIndex().refresh()
        gone = list(BankHash.objects.filter(value__in=values[10:12]).values_list("pk", flat=True))
        BankHash.objects.filter(pk__in=gone).delete()
        BankHash.objects.create(bank=bank, hash_type="pdq", value=values[399], id=gap)  # committed late
        index = matching.BankIndex()
        read = rows_read(monkeypatch, index)
        index.refresh()
        rows = index.types["pdq"]
        assert rows.base_rows == 398 and sum(read) == 1  # the late row only
        assert int(rows.index.alive.sum()) == 397 == BankHash.objects.filter(hash_type="pdq").count()
        live = {m.value for v in values for m in index.match_perceptual("pdq", v)}
        assert live == set(values) - {values[10], values[11], values[150]}
        queries = near_queries(np.frombuffer(bytes.fromhex("".join(values)), np.uint8).reshape(-1, 32),
                               np.random.default_rng(5), 200)
        stored = dict(BankHash.objects.filter(hash_type="pdq").values_list("value", "pk"))
        bits = np.frombuffer(bytes.fromhex("".join(stored)), np.uint8).reshape(-1, 32)
        expected = {(q, stored_value) for (q, row), _ in brute(bits, np.ones(len(bits), bool), queries).items()
                    for stored_value in [list(stored)[row]]}
        found = index.match_many("pdq", [(q, "", to_hex(queries[q:q + 1])[0]) for q in range(len(queries))])
        matched = index.matches_for("pdq", found)
        assert {(q, m.value) for q, ms in matched.items() for m in ms} == expected

    def test_a_snapshot_of_another_era_is_not_used(self, snapshots, monkeypatch):
        values = random_pdq(6, 100)
        add_bank("known", values)
        matching.BankIndex().refresh()
        BankHash.objects.filter(value__in=values[:5]).delete()  # 5 % of its rows: past SNAPSHOT_MAX_DRIFT
        index = matching.BankIndex()
        index._reset()
        assert index._load_cache() == 0
        index.refresh()
        assert index.types["pdq"].base_rows == 0 and len(index.types["pdq"]) == 95

    def test_a_broken_link_is_tried_once_not_at_every_look(self, snapshots, monkeypatch):
        monkeypatch.setattr(matching, "CACHE_MIN_ROWS", 10_000)  # no new snapshot to heal it with
        add_bank("known", random_pdq(9, 20))
        link = snapshots / "bank-index" / matching.database_key()
        link.parent.mkdir(parents=True)
        link.symlink_to(snapshots / "gone")
        index = matching.BankIndex()
        index.refresh()
        rows = index.types["pdq"]
        look_now(index)
        assert index.types["pdq"] is rows and len(rows) == 20

    def test_a_second_writer_waits_its_turn(self, snapshots):
        add_bank("known", random_pdq(7, 20))
        index = matching.BankIndex()
        index._reset()
        index._load_banks()
        index._load_rows()
        store = snapshots / "bank-index-snapshots" / matching.database_key()
        store.mkdir(parents=True)
        with matching._exclusive(store / ".lock") as locked:
            assert locked
            assert index._save_cache() is None
        assert index._save_cache() is not None


# -- announcing bank changes -----------------------------------------------------------------------

class Listener:
    stale = False

    def mark_stale(self):
        self.stale = True


def wait_for(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def subscriber(redis_conn, settings):
    subscriber = matching.Subscriber(settings.REDIS_URL, matching._channel()).start()
    listener = Listener()
    subscriber.listeners.add(listener)
    assert subscriber.subscribed.wait(5)
    assert wait_for(lambda: listener.stale, 1)  # a (re)subscription marks stale: changes may have been missed
    listener.stale = False
    yield subscriber, listener
    subscriber.stop()


class TestAnnouncements:
    def test_an_announced_change_marks_a_listening_index_within_a_second(self, subscriber):
        _, listener = subscriber
        started = time.monotonic()
        assert matching.announce_change()
        assert wait_for(lambda: listener.stale, 1.0)
        assert time.monotonic() - started < 1.0

    def test_the_subscriber_comes_back_after_losing_its_connection(self, subscriber, redis_conn):
        thread, listener = subscriber
        redis_conn.client_kill_filter(_type="pubsub")
        assert wait_for(lambda: listener.stale, 5)  # resubscribed, and said so
        assert thread.subscribed.wait(5)
        listener.stale = False
        assert matching.announce_change()
        assert wait_for(lambda: listener.stale, 1.0)

    def test_another_process_hears_it(self, redis_conn):
        script = (
            "import time, django; django.setup()\n"
            "from detection import matching\n"
            "index = matching.BankIndex()\n"
            "subscriber = matching.listen(index)\n"
            "assert subscriber.subscribed.wait(10)\n"
            "time.sleep(0.2); index.stale = False\n"
            "print(matching._channel(), flush=True)\n"
            "deadline = time.monotonic() + 5\n"
            "while not index.stale and time.monotonic() < deadline: time.sleep(0.002)\n"
            "print('stale' if index.stale else 'missed', time.monotonic(), flush=True)\n"
        )
        env = worker_env() | {"DJANGO_SETTINGS_MODULE": "reviewconsole.settings"}
        child = subprocess.Popen([PYTHON, "-c", script], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == matching._channel()
            announced = time.monotonic()
            assert matching.announce_change()
            outcome, seen = child.stdout.readline().split()
            assert outcome == "stale" and float(seen) - announced < 1.0
        finally:
            child.kill()
            child.wait()

    @pytest.mark.django_db(transaction=True, serialized_rollback=True)
    def test_a_bank_change_is_announced_once_committed(self, subscriber, users):
        from detection.banks import create_bank

        _, listener = subscriber
        create_bank(users["admin"], name="fresh")
        assert wait_for(lambda: listener.stale, 1.0)

    @pytest.mark.django_db
    def test_when_the_announcement_is_lost_the_poll_still_sees_the_change(self, settings, monkeypatch):
        monkeypatch.setattr(matching, "INDEX_CHECK_SECONDS", 0.3)
        values = random_pdq(8, 2)
        add_bank("known", values[:1])
        index = matching.BankIndex()
        index.refresh()
        settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: announcing fails
        monkeypatch.setattr(matching, "_publisher", None)
        assert not matching.announce_change()
        add_bank("known", values[1:])
        index.refresh()
        assert index.match_perceptual("pdq", values[1]) == []  # not told, and not looked yet
        time.sleep(0.35)
        index.refresh()
        assert [m.value for m in index.match_perceptual("pdq", values[1])] == [values[1]]

    def test_a_subscriber_that_cannot_reach_redis_keeps_trying_quietly(self, caplog):
        down = matching.Subscriber("redis://127.0.0.1:1/0", "nowhere").start()
        try:
            assert not down.subscribed.wait(0.5) and down.running()
        finally:
            down.stop()
        assert len([r for r in caplog.records if "lost the bank channel" in r.message]) == 1
