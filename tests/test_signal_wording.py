"""How hash-match signals are worded and ranked, and how the risk meter reads at its threshold."""

import io
import re

import pytest
from django.conf import settings
from django.urls import reverse

from cases import routing
from cases.actions.triage import attach_signals
from detection import match_signals as scan  # the signal wording lives with the matches
from detection import matching
from detection.banks import import_hashes
from detection.classifiers import DEFAULT_SEVERITY
from detection.detectors.hashing import digests
from detection.matching import HashMatch
from detection.models import Account, Bank, BankHash, Signal, SignalKind
from detection.termlists import CATEGORY_SEVERITY
from tests.conftest import verify_2fa
from tests.factories import case_with_match, encoded, known_bank, scanned_item, triage_all

pytestmark = pytest.mark.django_db


def only_signal(item):
    (signal,) = Signal.objects.filter(item=item, kind=SignalKind.HASH_MATCH)
    return signal


def entry(bank, hash_type, seed=None):
    return BankHash.objects.get(bank__name=bank, hash_type=hash_type, **({"label": f"seed-{seed}"} if seed else {}))


# Exact or near, with the distance ---------------------------------------------------------------

def test_a_pdq_hit_at_distance_0_reads_as_an_exact_match():
    known_bank([61], types=("pdq",))
    signal = only_signal(scanned_item(encoded(61)))
    pdq = entry("known", "pdq", 61)
    assert signal.label == "Exact match (PDQ distance 0), bank known"
    assert signal.explanation.startswith(
        f"Exact match (PDQ distance 0) in bank 'known': PDQ distance 0 of 256 bits ≤ threshold 31 "
        f"(entry 'seed-61' (#{pdq.pk}))")
    assert "Near" not in signal.label + signal.explanation
    assert signal.details["basis"] == "pdq" and signal.details["hashes"][0]["distance"] == 0
    assert signal.severity == 90 and signal.score == pytest.approx(0.95)


def test_a_pdq_hit_at_a_distance_reads_as_a_near_match_with_the_distance():
    case, item = case_with_match(seed=62)  # a watermarked copy: its PDQ differs by some bits
    signal = only_signal(item)
    (pdq,) = [h for h in signal.details["hashes"] if h["type"] == "pdq"]
    assert 0 < pdq["distance"] <= 31
    headline = f"Near match (PDQ distance {pdq['distance']} of 256)"
    assert signal.label == f"{headline}, bank known" and case.summary == signal.label
    assert signal.explanation.startswith(f"{headline} in bank 'known': PDQ distance {pdq['distance']} of 256 bits")
    assert "Exact" not in signal.label + signal.explanation
    assert signal.details["basis"] == "pdq" and signal.severity == 90
    # Closer scores higher, but below the PDQ hit at distance 0 and below any exact file match.
    assert 0.70 <= signal.score < 0.95 + 2 * scan.CORROBORATION


@pytest.mark.parametrize("types, words", [
    (("sha256",), "SHA-256"),
    (("md5",), "MD5"),
    (("md5", "sha256"), "SHA-256 and MD5"),
])
def test_an_md5_or_sha256_hit_reads_as_an_exact_file_match(types, words):
    data = encoded(63)
    md5, sha256 = digests(data)
    lines = [f"{md5},md5,ref md5" if t == "md5" else f"{sha256},sha256,ref sha" for t in types]
    import_hashes("files", io.StringIO("hash,type,label\n" + "\n".join(lines)), fmt="csv")
    matching.invalidate()
    signal = only_signal(scanned_item(data))
    assert signal.label == f"Exact file match ({words}), bank files"
    assert signal.explanation.startswith(f"Exact file match ({words}) in bank 'files': ")
    first = "SHA-256" if "sha256" in types else "MD5"
    label = "ref sha" if "sha256" in types else "ref md5"
    first_entry = BankHash.objects.get(bank__name="files", hash_type=first.lower().replace("-", ""))
    assert f"{first} identical (entry '{label}' (#{first_entry.pk}))" in signal.explanation
    assert signal.details["basis"] == "exact" and signal.score == 1.0 and signal.severity == 90


def test_an_exact_file_match_with_perceptual_agreement_keeps_the_file_wording():
    known_bank([64])  # pdq, phash, dhash and md5 of the same picture
    signal = only_signal(scanned_item(encoded(64)))
    assert signal.label == "Exact file match (MD5), bank known" and signal.score == 1.0
    assert [h["type"] for h in signal.details["hashes"]] == ["md5", "pdq", "phash", "dhash"]


# Weak hashes alone -----------------------------------------------------------------------------

def test_a_dhash_only_hit_ranks_below_a_pdq_hit_of_the_same_bank_and_says_so():
    known_bank([65], types=("pdq",))
    known_bank([66], types=("dhash",))  # the same bank: its severity is 90 for both
    pdq_signal = only_signal(scanned_item(encoded(65), account="acct-pdq"))
    weak = only_signal(scanned_item(encoded(66), account="acct-dhash"))
    assert pdq_signal.details["bank_id"] == weak.details["bank_id"]
    assert weak.label == "Weak match (dHash only, distance 0 of 64), bank known"
    assert weak.explanation.startswith("dHash only: a weak perceptual hash; confirm by viewing. "
                                       "Weak match (dHash only, distance 0 of 64) in bank 'known': ")
    assert f"(entry 'seed-66' (#{entry('known', 'dhash', 66).pk}))" in weak.explanation
    assert weak.details["basis"] == "weak" and weak.details["caveat"].startswith("dHash only")
    # Lower severity and lower score than the PDQ hit, even at distance 0.
    assert weak.severity == round(90 * scan.WEAK_SEVERITY_SHARE) < pdq_signal.severity == 90
    assert weak.score < 0.70 <= pdq_signal.score
    assert weak.priority < pdq_signal.priority
    cases = {case.account.external_id: case for case in triage_all()}
    assert cases["acct-dhash"].priority < cases["acct-pdq"].priority
    assert cases["acct-dhash"].queue.slug == cases["acct-pdq"].queue.slug == routing.KNOWN_MATERIAL


def test_a_bank_severity_still_decides_for_weak_matches():
    known_bank([67], types=("dhash",))
    Bank.objects.filter(name="known").update(severity=40)
    weak = only_signal(scanned_item(encoded(67)))
    assert weak.severity == round(40 * scan.WEAK_SEVERITY_SHARE)


def ranked(matches, severity=90):
    """(severity, score, label) of the one signal these matches of one bank give."""
    bank = Bank.objects.create(name=f"rank-{Bank.objects.count()}", severity=severity)
    item = scanned_item(encoded(99))  # matches no bank: only its rows are needed
    matches = [HashMatch(bank_id=bank.pk, bank_hash_id=n, hash_type=t, value="", distance=d, threshold=limit)
               for n, (t, d, limit) in enumerate(matches, start=1)]
    (signal,) = scan.build_match_signals(item, matches, {bank.pk: bank}, labels={})
    return signal


def test_every_hash_type_ranks_by_its_reliability():
    exact = ranked([("sha256", 0, 0)])
    pdq_0 = ranked([("pdq", 0, 31)])
    pdq_near = ranked([("pdq", 16, 31)])
    pdq_edge = ranked([("pdq", 31, 31)])
    pdq_loose = ranked([("pdq", 80, 80)])  # the loosest threshold a bank may set
    both_weak = ranked([("phash", 0, 6), ("dhash", 0, 6)])
    phash = ranked([("phash", 0, 6)])
    dhash = ranked([("dhash", 0, 6)])
    dhash_edge = ranked([("dhash", 6, 6)])
    order = [exact, pdq_0, pdq_near, pdq_edge, both_weak, phash, dhash, dhash_edge]
    assert [s.score for s in order] == sorted((s.score for s in order), reverse=True)
    assert len({s.score for s in order}) == len(order)
    assert [s.priority for s in order] == sorted((s.priority for s in order), reverse=True)
    assert exact.score == 1.0 and pdq_0.score < 1.0  # only a digest proves the very file
    assert min(pdq_edge.score, pdq_loose.score) >= 0.70 > both_weak.score
    assert {s.severity for s in (exact, pdq_0, pdq_edge, pdq_loose)} == {90}
    assert {s.severity for s in (both_weak, phash, dhash)} == {68}
    assert both_weak.label.startswith("Weak match (pHash and dHash only, distances 0 and 0 of 64), bank rank-")
    assert both_weak.explanation.startswith("pHash and dHash only: weak perceptual hashes; confirm by viewing.")
    # Every PDQ or exact match outranks the strongest classifier finding at its default severity.
    classifier_top = max([spec.get("severity", DEFAULT_SEVERITY) for spec in settings.CLASSIFIERS]
                         + [DEFAULT_SEVERITY])
    assert routing.priority([pdq_edge]) > classifier_top and routing.priority([pdq_loose]) > classifier_top
    assert routing.priority([exact]) > max(CATEGORY_SEVERITY.values())


def test_a_long_bank_name_does_not_overflow_the_label():
    long_bank = Bank.objects.create(name="b" * 100)
    item = scanned_item(encoded(98))
    (signal,) = scan.build_match_signals(
        item, [HashMatch(bank_id=long_bank.pk, bank_hash_id=1, hash_type="pdq", value="", distance=16, threshold=31)],
        {long_bank.pk: long_bank}, labels={})
    assert len(signal.label) == 128 and signal.label.startswith("Near match (PDQ distance 16 of 256), bank bbb")


# Entries named by their label ----------------------------------------------------------------------

def test_labelled_entries_are_named_by_their_label_and_unlabelled_ones_by_number():
    known_bank([68], types=("pdq",), name="labelled")
    labelled = entry("labelled", "pdq", 68)
    BankHash.objects.filter(pk=labelled.pk).update(label="case 412 item 9")
    signal = only_signal(scanned_item(encoded(68)))
    assert f"(entry 'case 412 item 9' (#{labelled.pk}))" in signal.explanation
    assert f"entry #{labelled.pk}" not in signal.explanation
    assert signal.details["entry_id"] == labelled.pk and signal.details["entry_label"] == "case 412 item 9"
    (evidence,) = signal.details["hashes"]
    assert evidence["entry_label"] == "case 412 item 9"
    assert f"(entry 'case 412 item 9' (#{labelled.pk}))" in evidence["text"]

    data = encoded(69)
    import_hashes("plain", io.StringIO(digests(data)[0] + "\n"), hash_type="md5")
    matching.invalidate()
    plain = only_signal(scanned_item(data))
    bare = BankHash.objects.get(bank__name="plain")
    assert f"MD5 identical (entry #{bare.pk})" in plain.explanation
    assert "entry_label" not in plain.details and "entry_label" not in plain.details["hashes"][0]


def test_a_long_label_is_shortened_in_the_text_and_kept_whole_in_the_details():
    known_bank([70], types=("pdq",))
    labelled = entry("known", "pdq", 70)
    BankHash.objects.filter(pk=labelled.pk).update(label="ref " + "x" * 200)
    signal = only_signal(scanned_item(encoded(70)))
    quoted = re.search(r"entry '([^']*)' \(#(\d+)\)", signal.explanation)
    assert quoted and len(quoted.group(1)) == scan.LABEL_CHARS and quoted.group(1).endswith("…")
    assert int(quoted.group(2)) == labelled.pk and signal.details["entry_label"] == "ref " + "x" * 200


# The risk meter at its threshold -----------------------------------------------------------------

def risk_case(score, threshold):
    account = Account.objects.create(external_id=f"risky-{score}-{threshold}")
    signal = Signal.objects.create(
        account=account, kind=SignalKind.BEHAVIOUR, detector="account_risk", label="Account risk",
        score=score, severity=60, explanation=f"Score {score:.2f} (threshold {threshold:.2f}).",
        details={"features": [], "score": score, "threshold": threshold, "summary": {}},
        dedupe_key=f"account:{account.pk}:account_risk:{int(score * 10)}")
    (case,) = attach_signals([signal.pk])
    return case, signal


def risk_panel(client, user, case):
    client.force_login(user)
    verify_2fa(client, user)
    response = client.get(reverse("cases:detail", args=[case.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    section = re.search(r'<section class="card risk[^"]*"[^>]*data-risk="account_risk".*?</section>', html, re.S)
    assert section
    return section.group(0)


def meter(panel):
    tag = re.search(r"<meter class=\"risk-meter\"[^>]*>", panel).group(0)
    return {name: value for name, value in re.findall(r'([\w-]+)="([^"]*)"', tag)}


def test_the_risk_meter_at_its_threshold_reads_as_over_it(client, users):
    case, signal = risk_case(0.6, 0.6)
    panel = risk_panel(client, users["reviewer"], case)
    assert "0.60 ≥ threshold 0.60" in panel and "over the threshold" in panel  # in words, not colour alone
    assert "below the threshold" not in panel and "risk-over" in panel
    attrs = meter(panel)
    # Lower is better (optimum below low), and the value lies above `high`: the worst region, not green.
    assert float(attrs["optimum"]) < float(attrs["low"]) <= float(attrs["high"]) < float(attrs["value"])
    assert (attrs["min"], attrs["max"], attrs["value"]) == ("0", "1000", "600")
    # An accessible name and a spoken value that says where the score stands.
    name = re.search(rf'id="{attrs["aria-labelledby"]}">([^<]+)<', panel).group(1)
    assert name == "Account risk"
    assert attrs["aria-valuetext"] == "0.60, over the threshold 0.60"
    assert re.search(rf'id="{attrs["aria-describedby"]}"[^>]*>0\.60 ≥ threshold 0\.60', panel)


def test_a_risk_score_below_its_threshold_reads_as_below_it(client, users):
    case, _ = risk_case(0.45, 0.6)
    panel = risk_panel(client, users["reviewer"], case)
    assert "0.45 &lt; threshold 0.60" in panel and "below the threshold" in panel and "over the" not in panel
    attrs = meter(panel)
    assert float(attrs["value"]) <= float(attrs["low"])  # the better region
    assert attrs["aria-valuetext"] == "0.45, below the threshold 0.60"


def test_frames_matching_by_pdq_lift_a_weak_still_match_of_the_same_bank_and_name_their_entry():
    from tests.test_video import animation  # noqa: PLC0415 -- its video helpers need PyAV

    gif = animation()
    probe = scanned_item(gif, account="probe")  # no bank yet: only its hashes are wanted
    (frame_one,) = [f for f in probe.frame_hashes if f["t"] == 1.0]
    import_hashes("anim", io.StringIO(f"hash,type,label\n{probe.dhash},dhash,first frame\n"
                                      f"{frame_one['pdq']},pdq,frame one\n"), fmt="csv")
    matching.invalidate()
    signal = only_signal(scanned_item(gif, account="a-anim"))
    pdq_entry = BankHash.objects.get(bank__name="anim", hash_type="pdq")
    # The first frame's dHash alone would be weak; the frames' PDQ carries the match.
    assert signal.label == "Known image in video match, bank anim" and signal.severity == 90
    assert signal.details["basis"] == "video" and "caveat" not in signal.details
    assert "confirm by viewing" not in signal.explanation
    assert "Weak match" not in signal.explanation
    assert signal.explanation.startswith("1 sampled frame of the video matches bank 'anim' image entry: ")
    assert "First frame: dHash distance 0 of 64 bits ≤ threshold 6 (entry 'first frame' (#" in signal.explanation
    assert f"(entry 'frame one' (#{pdq_entry.pk}))" in signal.explanation
    assert f"entry #{pdq_entry.pk}" not in signal.explanation
