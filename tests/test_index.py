"""The exact Hamming index and the bank index on top of it: recall against brute force, updates, bad input."""

import io
from math import comb

import numpy as np
import pytest

from detection import matching
from detection.banks import import_hashes
from detection.detectors import index as index_module
from detection.detectors.index import (
    HammingIndex,
    _Offsets,
    _Plan,
    _verify_one,
    choose_chunks,
    parse_hex,
    table_bytes,
    to_hex,
)
from detection.models import Bank, BankHash

RNG_SEED = 20240611


def flip(vector, count, rng):
    """A copy of a (nbytes,) uint8 vector with `count` distinct bits flipped."""
    out = vector.copy()
    for bit in rng.choice(len(vector) * 8, count, replace=False):
        out[bit // 8] ^= np.uint8(1 << (bit % 8))
    return out


def brute(bits, queries, radius):
    """Reference answer: {(query, row): distance} by exhaustive XOR and popcount."""
    found = {}
    for q, query in enumerate(queries):
        dist = np.unpackbits(bits ^ query, axis=1).sum(axis=1)
        for row in np.nonzero(dist <= (radius if np.ndim(radius) == 0 else radius[q]))[0]:
            found[(q, int(row))] = int(dist[row])
    return found


def as_dict(result):
    qidx, rows, dist = result
    return dict(zip(zip(qidx.tolist(), rows.tolist(), strict=True), dist.tolist(), strict=True))


@pytest.fixture(scope="module")
def random_bank():
    rng = np.random.default_rng(RNG_SEED)
    bits = rng.integers(0, 256, (50_000, 32), dtype=np.uint8)
    index = HammingIndex(256)
    index.add(bits)
    return bits, index


def planted_queries(bits, rng, distances=range(0, 40)):
    rows = rng.integers(0, len(bits), len(distances))
    return np.stack([flip(bits[row], d, rng) for row, d in zip(rows, distances, strict=True)]), rows


class TestRecall:
    def test_the_tables_are_used_at_this_size(self, random_bank):
        _, index = random_bank
        assert index.tables is not None and index.delta_rows == 0

    def test_planted_neighbours_at_every_distance_are_found(self, random_bank):
        bits, index = random_bank
        rng = np.random.default_rng(1)
        queries, rows = planted_queries(bits, rng)
        found = as_dict(index.search(queries, 31))
        assert found == brute(bits, queries, 31)
        for q, row in enumerate(rows.tolist()):
            assert ((q, row) in found) == (q <= 31)

    def test_single_and_batched_searches_agree_with_brute_force(self, random_bank):
        bits, index = random_bank
        rng = np.random.default_rng(2)
        queries = np.concatenate([planted_queries(bits, rng)[0], rng.integers(0, 256, (20, 32), dtype=np.uint8)])
        expected = brute(bits, queries, 31)
        assert as_dict(index.search(queries, 31)) == expected
        singles = {}
        for q in range(len(queries)):
            singles.update({(q, row): d for (_, row), d in as_dict(index.search(queries[q], 31)).items()})
        assert singles == expected

    @pytest.mark.parametrize("radius", [0, 1, 5, 15, 16, 30, 31, 32, 40])
    def test_every_radius_is_exact_at_its_edge(self, random_bank, radius):
        bits, index = random_bank
        rng = np.random.default_rng(radius)
        # Neighbours at exactly r (found) and r + 1 (not found), and random queries.
        queries = np.stack([flip(bits[i], radius + (i % 2), rng) for i in range(10)])
        found = as_dict(index.search(queries, radius))
        assert found == brute(bits, queries, radius)
        assert all(((q, q) in found) == (q % 2 == 0) for q in range(10))

    def test_a_radius_per_query(self, random_bank):
        bits, index = random_bank
        rng = np.random.default_rng(3)
        queries = np.stack([flip(bits[i], 10, rng) for i in range(6)])
        radii = np.array([9, 10, 31, 0, 10, 64])
        assert as_dict(index.search(queries, radii)) == brute(bits, queries, radii)

    def test_clustered_bank(self):
        rng = np.random.default_rng(4)
        centres = rng.integers(0, 256, (300, 32), dtype=np.uint8)
        members = [flip(centres[c], int(rng.integers(0, 12)), rng) for c in rng.integers(0, 300, 40_000)]
        bits = np.concatenate([centres, np.stack(members)])
        index = HammingIndex(256)
        index.add(bits)
        queries = np.stack([flip(centres[c], d, rng) for c, d in zip(range(0, 300, 10), range(0, 40), strict=False)])
        found = as_dict(index.search(queries, 31))
        assert found == brute(bits, queries, 31)
        assert len(found) > 1000  # whole clusters come back

    def test_64_bit_hashes(self):
        rng = np.random.default_rng(5)
        bits = rng.integers(0, 256, (40_000, 8), dtype=np.uint8)
        index = HammingIndex(64, design_radius=6)
        index.add(bits)
        assert index.tables is not None
        queries = np.stack([flip(bits[i], i % 9, rng) for i in range(30)])
        for radius in (0, 6, 8):
            assert as_dict(index.search(queries, radius)) == brute(bits, queries, radius)

    def test_a_small_bank_is_scanned_without_tables(self):
        rng = np.random.default_rng(6)
        bits = rng.integers(0, 256, (500, 32), dtype=np.uint8)
        index = HammingIndex(256)
        index.add(bits)
        queries = np.stack([flip(bits[i], i, rng) for i in range(40)])
        assert index.tables is None
        assert as_dict(index.search(queries, 31)) == brute(bits, queries, 31)

    def test_chunking_fits_the_memory_cap(self):
        for rows in (1_000, 1_000_000, 10_000_000):
            widths = choose_chunks(rows, 256, 31)
            assert sum(widths) == 256 and max(widths) <= 24
            assert table_bytes(widths, rows) <= 80 * rows + (1 << 22)


def skewed_bank(rng, centres=400, rows=40_000):
    """Like real banks: correlated, biased bits (a low-rank latent model) and near-duplicate clusters."""
    mixing = rng.normal(size=(12, 256))
    bias = rng.normal(scale=1.5, size=256)
    centre_bits = np.packbits(rng.normal(size=(centres, 12)) @ mixing + bias > 0, axis=1)
    noise = rng.random((rows, 256)) < rng.integers(0, 16, rows)[:, None] / 256
    return np.concatenate([centre_bits, centre_bits[rng.integers(0, centres, rows)] ^ np.packbits(noise, axis=1)])


class TestAdaptiveProbing:
    def test_each_query_probes_a_prefix_of_levels_in_every_chunk_and_enough_of_them(self):
        rng = np.random.default_rng(10)
        widths = [20] * 13
        plan = _Plan(widths, [2] * 13, np.arange(13, dtype=np.int64) << 20, np.zeros(13, dtype=np.int64))
        nprobes = len(plan.chunk)
        # Bucket sizes of every shape: uniform, heavy centres, empty rings, all equal (ties everywhere).
        counts = np.concatenate([rng.integers(0, 5, (20, nprobes)), rng.integers(0, 10_000, (20, nprobes)),
                                 np.where(plan.mask == 0, 5_000, 0)[None, :].repeat(5, 0),
                                 np.ones((5, nprobes), dtype=np.int64)])
        for radius in range(0, 39):
            chosen = plan.choose(counts, radius)
            for q in range(len(counts)):
                levels = np.full(13, -1)
                for j in range(13):
                    in_chunk = plan.chunk == j
                    taken = np.unique(np.bitwise_count(plan.mask[in_chunk][chosen[q, in_chunk]]))
                    # Whole rings, inner rings first: the chunk's probe radius is exactly the largest taken.
                    assert taken.tolist() == list(range(len(taken)))
                    assert chosen[q, in_chunk].sum() == sum(comb(20, k) for k in range(len(taken)))
                    levels[j] = len(taken) - 1
                assert (levels + 1).sum() > radius  # pigeonhole: some chunk is within its radius

    def test_choice_follows_the_crowding(self):
        plan = _Plan([20] * 13, [2] * 13, np.arange(13, dtype=np.int64) << 20, np.zeros(13, dtype=np.int64))
        counts = np.ones((1, len(plan.chunk)), dtype=np.int64)
        counts[0, plan.chunk == 4] = 1_000  # the query's value of chunk 4 falls among crowded buckets
        chosen = plan.choose(counts, 31)
        assert not chosen[0, plan.chunk == 4].any() and chosen[0, plan.chunk != 4].all()

    @pytest.mark.parametrize("radius", [8, 31, 32])
    def test_skewed_clustered_bank_at_every_distance(self, radius):
        rng = np.random.default_rng(11 + radius)
        bits = skewed_bank(rng)
        index = HammingIndex(256)
        index.add(bits)
        assert index.tables is not None
        rows = rng.integers(0, len(bits), radius + 2)
        # Neighbours planted at every distance 0..radius + 1, some random hashes, some bank rows as they are.
        queries = np.concatenate([np.stack([flip(bits[row], d, rng) for d, row in enumerate(rows.tolist())]),
                                  rng.integers(0, 256, (5, 32), dtype=np.uint8), bits[:5]])
        expected = brute(bits, queries, radius)
        assert len(expected) > 10 * len(queries)  # whole clusters come back
        assert as_dict(index.search(queries, radius)) == expected
        singles = {}
        for q in range(len(queries)):
            singles.update({(q, row): d for (_, row), d in as_dict(index.search(queries[q], radius)).items()})
        assert singles == expected
        for d, row in enumerate(rows.tolist()):
            assert ((d, row) in expected) == (d <= radius)

    def test_a_crowded_stretch_of_chunk_values_widens_the_offsets(self):
        rng = np.random.default_rng(12)
        bits = rng.integers(0, 256, (40_000, 32), dtype=np.uint8)
        bits[:70_000 // 2] = bits[0]  # 35,000 copies of one hash, then more added below
        index = HammingIndex(256, max_delta=1_000)
        index.add(bits)
        assert index.tables.offsets.full is None
        index.add(np.concatenate([bits[:1].repeat(33_000, 0), rng.integers(0, 256, (500, 32), dtype=np.uint8)]))
        assert index.tables.offsets.full is not None and index.delta_rows == 0  # merged, then widened
        everything = index.words.view(np.uint8)
        queries = np.stack([flip(everything[i], 20, rng) for i in (0, 39_000, 40_000, len(everything) - 1)])
        assert as_dict(index.search(queries, 31)) == brute(everything, queries, 31)

    def test_compact_offsets_round_trip(self, monkeypatch):
        monkeypatch.setattr(_Offsets, "STORE_STEP", 512)  # several slices per chunk
        rng = np.random.default_rng(14)
        widths = [4, 11, 12]
        offsets = _Offsets(widths)
        tables = [np.concatenate([[0], np.cumsum(rng.integers(0, 300, 2 ** w))]) for w in widths]
        for j, table in enumerate(tables):
            offsets.store(j, table)
        assert offsets.full is None
        for j, table in enumerate(tables):
            assert np.array_equal(offsets.table(j), table)
            keys = rng.integers(0, 2 ** widths[j], 500)
            lo, count = offsets.lookup(keys + offsets.base[j])
            assert np.array_equal(lo, table[keys]) and np.array_equal(count, table[keys + 1] - table[keys])
        tables[1][300:] += 70_000  # one block now spans more than two bytes can say
        offsets.store(1, tables[1])
        assert offsets.full is not None
        for j, table in enumerate(tables):
            assert np.array_equal(offsets.table(j), table)

    @pytest.mark.parametrize("nwords", [1, 2, 3, 4])
    def test_verification_of_whole_rows(self, nwords):
        rng = np.random.default_rng(15)
        words = np.concatenate([rng.integers(0, 2 ** 63, (50, nwords), dtype=np.uint64),
                                np.zeros((1, nwords), dtype=np.uint64),
                                np.full((1, nwords), 2 ** 64 - 1, dtype=np.uint64)])
        expected = np.unpackbits(words.view(np.uint8), axis=1).sum(axis=1)
        for radius in (0, 20, 130, 64 * nwords):  # every bit set included
            hit, dist = _verify_one(words, np.zeros(nwords, dtype=np.uint64), radius)
            assert hit.tolist() == np.flatnonzero(expected <= radius).tolist()
            assert dist.tolist() == expected[hit].tolist()

    @pytest.mark.parametrize("block_candidates", [1, 10 ** 9])
    def test_batches_of_every_size_agree_with_brute_force(self, monkeypatch, block_candidates):
        # A query meeting many candidates is searched alone, one meeting few in blocks of up to eight.
        monkeypatch.setattr(index_module, "BLOCK_CANDIDATES", block_candidates)
        rng = np.random.default_rng(16)
        bits = rng.integers(0, 256, (40_000, 32), dtype=np.uint8)
        bits[20_000:] = bits[:20_000] ^ (rng.random((20_000, 32)) < 0.02).astype(np.uint8)  # near pairs
        index = HammingIndex(256)
        index.add(bits)
        queries, _ = planted_queries(bits, rng, distances=list(range(0, 34)) * 2)
        assert as_dict(index.search(queries, 31)) == brute(bits, queries, 31)

    def test_rows_keep_their_numbers_while_stored_sorted(self):
        rng = np.random.default_rng(13)
        bits = rng.integers(0, 256, (40_000, 32), dtype=np.uint8)
        index = HammingIndex(256, max_delta=100)
        index.add(bits[:35_000])
        index.add(bits[35_000:])  # merged into the tables, stored at their own numbers
        assert index.delta_rows == 0
        assert np.array_equal(index.vectors([5, 0, 39_999, 35_000]), bits[[5, 0, 39_999, 35_000]])
        assert np.array_equal(index.words.view(np.uint8), bits)
        found = as_dict(index.search(bits[[7, 36_000]], 0))
        assert found == {(0, 7): 0, (1, 36_000): 0}
        index.remove([7])
        assert as_dict(index.search(bits[[7]], 0)) == {}


class TestUpdates:
    def test_added_rows_match_at_once_and_after_merging(self):
        rng = np.random.default_rng(7)
        bits = rng.integers(0, 256, (40_000, 32), dtype=np.uint8)
        index = HammingIndex(256, max_delta=1_000)
        index.add(bits[:35_000])
        index.add(bits[35_000:35_500])  # stays in the delta
        assert index.delta_rows == 500
        queries = np.stack([flip(bits[i], 20, rng) for i in (3, 35_100, 35_499, 39_000)])
        assert as_dict(index.search(queries, 31)) == brute(bits[:35_500], queries, 31)
        index.add(bits[35_500:])  # past max_delta: merged into the tables without a rebuild
        assert index.delta_rows == 0 and index.tables.built_rows == 35_000
        assert as_dict(index.search(queries, 31)) == brute(bits, queries, 31)

    def test_growing_past_the_capacity_rebuilds(self):
        rng = np.random.default_rng(8)
        bits = rng.integers(0, 256, (80_000, 32), dtype=np.uint8)
        index = HammingIndex(256, max_delta=100)
        index.add(bits[:33_000])
        for start in range(33_000, 80_000, 7_000):
            index.add(bits[start:start + 7_000])
        assert index.tables.built_rows > 33_000
        queries = np.stack([flip(bits[i], 25, rng) for i in range(0, 80_000, 4_000)])
        assert as_dict(index.search(queries, 31)) == brute(bits, queries, 31)

    def test_removed_rows_and_row_limits(self, random_bank):
        bits, _ = random_bank
        index = HammingIndex(256)
        index.add(bits)
        rng = np.random.default_rng(9)
        queries = np.stack([flip(bits[i], 12, rng) for i in range(4)])
        index.remove([1])
        limits = np.full(len(bits), 31, dtype=np.int16)
        limits[2] = 11  # e.g. its bank's threshold is lower than the query radius
        limits[3] = -1  # e.g. its bank is disabled
        found = as_dict(index.search(queries, 31, row_limit=limits))
        assert (0, 0) in found and (1, 1) not in found and (2, 2) not in found and (3, 3) not in found
        limits[2] = 12
        assert (2, 2) in as_dict(index.search(queries, 31, row_limit=limits))


class TestBadInput:
    def test_parse_hex_names_the_bad_value(self):
        assert parse_hex(["ab" * 32], 256).shape == (1, 32)
        with pytest.raises(ValueError, match="64 hex digits"):
            parse_hex(["ab" * 31], 256)
        with pytest.raises(ValueError, match="not a hex hash"):
            parse_hex(["ab" * 32, "zz" * 32], 256)
        with pytest.raises(ValueError):
            parse_hex([None], 256)

    def test_wrong_shapes_are_refused(self, random_bank):
        _, index = random_bank
        with pytest.raises(ValueError):
            index.search(np.zeros((2, 8), dtype=np.uint8), 31)
        with pytest.raises(ValueError):
            index.add(np.zeros((2, 31), dtype=np.uint8))
        with pytest.raises(ValueError):
            index.search(np.zeros((2, 32), dtype=np.uint8), [1, 2, 3])
        with pytest.raises(ValueError):
            HammingIndex(100)

    def test_hex_round_trip(self):
        value = "0123456789abcdef" * 4
        assert to_hex(parse_hex([value], 256)) == [value]


# -- the bank index, reading rows from the database ------------------------------------------

def random_pdq(seed, count):
    rng = np.random.default_rng(seed)
    return to_hex(rng.integers(0, 256, (count, 32), dtype=np.uint8))


def near(value, bits, seed=0):
    vector = parse_hex([value], 256)[0]
    return to_hex([flip(vector, bits, np.random.default_rng(seed))])[0]


def add_bank(name, values, hash_type="pdq"):
    summary = import_hashes(name, io.StringIO("\n".join(values)), fmt="txt", hash_type=hash_type)
    assert summary["added"] == len(values)
    return Bank.objects.get(name=name)


def query(pdq="", **extra):
    return {"md5": "", "sha256": "", "pdq": pdq, "pdq_usable": True, "phash": "", "dhash": "", **extra}


def look_now(index):
    index.checked_at = float("-inf")
    index.refresh()


@pytest.mark.django_db
class TestBankIndex:
    def test_new_rows_are_added_without_reloading(self):
        values = random_pdq(10, 50)
        add_bank("known", values[:40])
        index = matching.BankIndex()
        index.refresh()
        rows = index.types["pdq"]
        assert len(rows) == 40
        assert index.match_perceptual("pdq", values[45]) == []
        add_bank("known", values[40:])
        look_now(index)
        assert index.types["pdq"] is rows and len(rows) == 50
        (match,) = index.match_perceptual("pdq", near(values[45], 9))
        assert (match.value, match.distance, match.transform) == (values[45], 9, "")
        assert match.bank_hash_id == BankHash.objects.get(value=values[45]).pk

    def test_new_rows_wait_for_the_check_interval(self):
        values = random_pdq(11, 2)
        add_bank("known", values[:1])
        index = matching.BankIndex()
        index.refresh()
        add_bank("known", values[1:])
        index.refresh()  # within INDEX_CHECK_SECONDS of the last look: nothing read
        assert index.match_perceptual("pdq", values[1]) == []
        look_now(index)
        assert len(index.match_perceptual("pdq", values[1])) == 1

    def test_thresholds_and_disabling_apply_without_reloading_rows(self):
        values = random_pdq(12, 30)
        bank = add_bank("known", values)
        other = add_bank("other", random_pdq(13, 30))
        index = matching.BankIndex()
        index.refresh()
        rows = index.types["pdq"]
        probe = near(values[7], 20)
        assert [m.distance for m in index.match_perceptual("pdq", probe)] == [20]
        bank.pdq_threshold = 19
        bank.save()
        look_now(index)
        assert index.match_perceptual("pdq", probe) == []
        bank.pdq_threshold = 20
        bank.save()
        Bank.objects.filter(pk=bank.pk).update(enabled=False)  # even without touching updated_at
        look_now(index)
        assert index.match_perceptual("pdq", probe) == []
        assert bank.pk not in index.banks and other.pk in index.banks
        assert index.types["pdq"] is rows

    def test_each_bank_keeps_its_own_threshold(self):
        value = random_pdq(14, 1)[0]
        strict = add_bank("strict", [value])
        loose = add_bank("loose", [value])
        Bank.objects.filter(pk=strict.pk).update(pdq_threshold=10)
        Bank.objects.filter(pk=loose.pk).update(pdq_threshold=40)
        index = matching.BankIndex()
        index.refresh()
        assert {m.bank_id: m.threshold for m in index.match_perceptual("pdq", near(value, 8))} == {
            strict.pk: 10, loose.pk: 40}
        assert [m.bank_id for m in index.match_perceptual("pdq", near(value, 35))] == [loose.pk]

    def test_deleted_rows_never_match(self):
        values = random_pdq(15, 5)
        add_bank("known", values)
        index = matching.BankIndex()
        index.refresh()
        BankHash.objects.filter(value=values[2]).delete()
        assert index.match_perceptual("pdq", values[2]) == []  # checked against the database
        assert index.types["pdq"].index.alive.sum() == 4

    def test_rows_edited_in_place_match_as_edited(self):
        values = random_pdq(16, 3)
        add_bank("known", values)
        index = matching.BankIndex()
        index.refresh()
        replacement = random_pdq(17, 1)[0]
        BankHash.objects.filter(value=values[0]).update(value=replacement)
        assert index.match_perceptual("pdq", values[0]) == []
        assert [m.value for m in index.match_perceptual("pdq", replacement)] == [replacement]

    def test_a_malformed_bank_row_is_skipped(self):
        values = random_pdq(18, 2)
        bank = add_bank("known", values)
        BankHash.objects.create(bank=bank, hash_type="pdq", value="not-hex")
        index = matching.BankIndex()
        index.refresh()
        assert len(index.types["pdq"]) == 2
        assert len(index.match_perceptual("pdq", values[1])) == 1
        rows = index.types["pdq"]
        index.reconciled_at = float("-inf")  # the count check knows about the skipped row: no reload
        look_now(index)
        assert index.types["pdq"] is rows

    def test_the_count_check_reloads_when_rows_were_missed(self):
        values = random_pdq(24, 4)
        bank = add_bank("known", values[:3])
        gap = BankHash.objects.get(value=values[1]).pk
        BankHash.objects.filter(pk=gap).delete()
        index = matching.BankIndex()
        index.refresh()
        rows = index.types["pdq"]
        # A row committed late with an id below the newest one seen (concurrent imports on PostgreSQL).
        BankHash.objects.create(bank=bank, hash_type="pdq", value=values[3], id=gap)
        look_now(index)
        assert index.match_perceptual("pdq", values[3]) == []
        index.reconciled_at = float("-inf")
        look_now(index)
        assert index.types["pdq"] is not rows
        assert len(index.match_perceptual("pdq", values[3])) == 1

    def test_phash_and_dhash_use_their_own_index(self):
        rng = np.random.default_rng(19)
        values = to_hex(rng.integers(0, 256, (20, 8), dtype=np.uint8))
        add_bank("known", values, hash_type="phash")
        ((matches, banks),) = matching.find_matches_many([query(phash=values[3], dhash=values[4])])
        assert [(m.hash_type, m.value, m.distance) for m in matches] == [("phash", values[3], 0)]
        assert list(banks) == [matches[0].bank_id]


@pytest.mark.django_db
class TestFindMatchesMany:
    def test_the_best_orientation_wins_and_is_named(self):
        values = random_pdq(20, 3)
        add_bank("known", values)
        rotated = near(values[0], 3)
        variants = [("original", near(values[0], 25)), ("rotate90", rotated), ("mirror", near(values[0], 12))]
        results = matching.find_matches_many([
            query(near(values[0], 25), pdq_variants=variants),
            query(near(values[1], 5), pdq_variants=[("original", near(values[1], 5)), ("rotate180", values[2])]),
            query(""),
        ])
        (first,), _ = results[0]
        assert (first.value, first.distance, first.transform) == (values[0], 3, "rotate90")
        second = {m.value: (m.distance, m.transform) for m in results[1][0]}
        assert second == {values[1]: (5, ""), values[2]: (0, "rotate180")}
        assert results[2] == ([], {})

    def test_unusable_pdq_is_not_matched_in_any_orientation(self):
        values = random_pdq(21, 1)
        add_bank("known", values)
        ((matches, _),) = matching.find_matches_many([
            query(values[0], pdq_usable=False, pdq_variants=[("rotate90", values[0])])])
        assert matches == []

    def test_a_malformed_query_hash_is_a_clear_error(self):
        add_bank("known", random_pdq(22, 1))
        with pytest.raises(ValueError, match="hex"):
            matching.find_matches_many([query("xyz")])
        with pytest.raises(ValueError, match="64 hex digits"):
            matching.find_matches_many([query("ab" * 16)])

    def test_exact_and_perceptual_matches_together(self):
        values = random_pdq(23, 2)
        bank = add_bank("known", values)
        md5 = "0" * 31 + "1"
        import_hashes("known", io.StringIO(md5), fmt="txt", hash_type="md5")
        ((matches, banks),) = matching.find_matches_many([query(values[1], md5=md5)])
        assert sorted((m.hash_type, m.distance) for m in matches) == [("md5", 0), ("pdq", 0)]
        assert banks == {bank.pk: Bank.objects.get(pk=bank.pk)}


@pytest.mark.django_db
class TestCache:
    def test_a_cold_start_reads_the_saved_arrays_while_they_match_the_database(self, settings, tmp_path,
                                                                                monkeypatch):
        settings.VAR_DIR = tmp_path
        monkeypatch.setattr(matching, "CACHE_MIN_ROWS", 1)
        values = random_pdq(30, 6)
        add_bank("known", values[:5])
        matching.BankIndex().refresh()
        saved = next((tmp_path / "bank-index").iterdir())
        assert (saved / "meta.json").exists()
        add_bank("known", values[5:])  # newer than the cache: read from the database
        index = matching.BankIndex()
        used = []
        monkeypatch.setattr(index, "_load_cache", lambda load=index._load_cache: used.append(load()) or used[-1])
        index.refresh()
        assert used == [5] and len(index.types["pdq"]) == 6
        assert [m.value for m in index.match_perceptual("pdq", values[5])] == [values[5]]
        assert [m.value for m in index.match_perceptual("pdq", values[0])] == [values[0]]

    def test_saved_arrays_that_no_longer_match_are_not_used(self, settings, tmp_path, monkeypatch):
        settings.VAR_DIR = tmp_path
        monkeypatch.setattr(matching, "CACHE_MIN_ROWS", 1)
        values = random_pdq(31, 4)
        add_bank("known", values)
        matching.BankIndex().refresh()
        BankHash.objects.filter(value=values[1]).delete()
        index = matching.BankIndex()
        index._reset()
        assert index._load_cache() == 0
        index.refresh()
        assert len(index.types["pdq"]) == 3

    def test_a_corrupt_cache_is_ignored(self, settings, tmp_path, monkeypatch):
        settings.VAR_DIR = tmp_path
        monkeypatch.setattr(matching, "CACHE_MIN_ROWS", 1)
        values = random_pdq(32, 3)
        add_bank("known", values)
        matching.BankIndex().refresh()
        saved = next((tmp_path / "bank-index").iterdir())
        (saved / "pdq.words.npy").write_bytes(b"garbage")
        index = matching.BankIndex()
        index._reset()
        assert index._load_cache() == 0
        index.refresh()
        assert len(index.types["pdq"]) == 3
        assert len(index.match_perceptual("pdq", values[2])) == 1
