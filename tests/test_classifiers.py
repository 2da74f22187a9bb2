"""Classifiers for new imagery: the real NudeNet model from its wheel, and the pipeline driven by a fake.

Pipeline tests are transactional, with a real Redis and a real RQ worker (drain()).
"""

import io
import socket
import zlib
from datetime import timedelta
from pathlib import Path

import av
import numpy as np
import pytest
import skimage
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from PIL import Image
from rq.timeouts import JobTimeoutException

from cases.models import Case, CaseStatus, Decision, Enforcement
from cases.sweep import sweep
from detection import classifiers, intake
from detection.detectors.classifier import Detection, DetectorError, ImageClassifier
from detection.detectors.nudity import NudeNetDetector, model_path
from detection.jobs import classify
from detection.models import Item, ItemKind, Signal, SignalKind
from reviewconsole.devtools import synthetic
from reviewconsole.storage import root
from tests.conftest import drain
from tests.factories import encoded, known_bank, scanned_item, triage_all

NUDENET = {"path": "detection.detectors.nudity.NudeNetDetector", "threshold": 0.5, "severity": 60}
FAKE = "tests.test_classifiers.FakeClassifier"


class FakeClassifier(ImageClassifier):
    """Scores every image `score`, or its mean red level with `by_red`; fails with `fail`."""

    name = "fake"
    title = "Fake classifier"
    model = "Fake model"
    version = "1.0"
    calls = []

    def __init__(self, *, threshold=0.5, score=0.9, by_red=False, fail=False):
        super().__init__(threshold=threshold)
        self.score, self.by_red, self.fail = score, by_red, fail

    def classify(self, image):
        FakeClassifier.calls.append(image.size)
        if self.fail:
            raise DetectorError("fake model crashed")
        score = float(np.asarray(image)[:, :, 0].mean() / 255) if self.by_red else self.score
        box = (0.1, 0.2, 0.3, 0.4)
        return self.result(score, "FAKE_CLASS", [Detection("FAKE_CLASS", score, box),
                                                 Detection("OTHER", 0.1, box)])


@pytest.fixture
def fake(settings):
    """Use the fake classifier with these options: fake(score=0.3), fake(fail=True) ..."""
    FakeClassifier.calls.clear()

    def use(**options):
        settings.CLASSIFIERS = [{"path": FAKE, "severity": 60, **options}]
        return classifiers.configured()[0].classifier

    use()
    yield use
    classifiers.forget()


# The real model ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nudenet_run():
    """Load NudeNet once with the network cut off, and judge a synthetic image and a real photograph."""
    def refuse(*args, **kwargs):
        raise AssertionError("the classifier tried to reach the network")

    classifiers.forget()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        detector = classifiers.load(NUDENET).classifier
        synthetic_result = detector.classify(synthetic.make_image(5, size=(1024, 768)))
        photo = Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB")
        photo_result = detector.classify(photo)
    yield detector, synthetic_result, photo_result
    classifiers.forget()


def test_nudenet_loads_its_model_from_the_installed_wheel(nudenet_run):
    detector, _, _ = nudenet_run
    assert isinstance(detector, NudeNetDetector)
    assert detector.path == model_path() and detector.path.is_file()
    assert "site-packages" in detector.path.parts and detector.path.parent.name == "nudenet"
    assert detector.version == "3.4.2" and detector.model == "NudeNet 320n" and detector.name == "nudenet"
    # One worker, one core: onnxruntime would otherwise start a thread per core.
    assert detector._detector.onnx_session.get_session_options().intra_op_num_threads == 1


def test_nudenet_finds_no_nudity_in_a_synthetic_image(nudenet_run):
    detector, result, _ = nudenet_run
    assert (result.detector, result.model, result.version, result.threshold) == ("nudenet", "NudeNet 320n", "3.4.2",
                                                                                  0.5)
    assert 0 <= result.score < 0.5 and not result.passed
    for detection in result.detections:
        assert detection.score >= 0.2 and len(detection.box) == 4
        assert all(0 <= v <= 1 for v in detection.box)


def test_nudenet_sees_a_person_in_a_benign_photograph_but_no_nudity(nudenet_run):
    _, _, result = nudenet_run
    assert not result.passed and result.score < 0.5
    assert "FACE_FEMALE" in {d.label for d in result.detections}
    assert [d.score for d in result.detections] == sorted((d.score for d in result.detections), reverse=True)


@pytest.mark.parametrize("mode, size", [("RGB", (1, 1)), ("RGB", (1, 2000)), ("RGB", (3000, 2)), ("L", (50, 50)),
                                        ("RGBA", (50, 50))])
def test_nudenet_judges_degenerate_shapes_and_modes_without_failing(nudenet_run, mode, size):
    detector, _, _ = nudenet_run
    result = detector.classify(Image.new(mode, size))
    assert result.score == 0 and not result.passed


def test_nudenet_scores_only_the_exposed_classes_that_matter(nudenet_run):
    detector, _, _ = nudenet_run
    detector._detector, real = _Canned([{"class": "FACE_FEMALE", "score": 0.95, "box": [0, 0, 10, 10]},
                                        {"class": "BUTTOCKS_EXPOSED", "score": 0.61, "box": [32, 24, 64, 48]},
                                        {"class": "FEET_EXPOSED", "score": 0.9, "box": [0, 0, 5, 5]}]), \
        detector._detector
    try:
        result = detector.classify(Image.new("RGB", (640, 480), (90, 120, 150)))
    finally:
        detector._detector = real
    assert result.score == pytest.approx(0.61) and result.label == "BUTTOCKS_EXPOSED" and result.passed
    assert [d.label for d in result.detections] == ["FACE_FEMALE", "FEET_EXPOSED", "BUTTOCKS_EXPOSED"]
    assert result.detections[2].box == pytest.approx((0.1, 0.1, 0.2, 0.2))  # fractions of the 320x240 input


def test_nudenet_errors_become_detector_errors(nudenet_run):
    detector, _, _ = nudenet_run
    detector._detector, real = _Canned(RuntimeError("onnxruntime: bad input")), detector._detector
    try:
        with pytest.raises(DetectorError, match="bad input"):
            detector.classify(Image.new("RGB", (64, 64)))
    finally:
        detector._detector = real


def _png_claiming(width, height):
    """A tiny PNG whose header claims a huge size (a decompression bomb's calling card)."""
    data = bytearray(synthetic.encode(Image.new("RGB", (8, 8)), fmt="PNG"))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


class _Canned:
    def __init__(self, answer):
        self.answer = answer

    def detect(self, image):
        assert image.dtype == np.uint8 and image.shape[2] == 3 and max(image.shape[:2]) <= 320
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


# The interface -----------------------------------------------------------------------------------

@pytest.mark.usefixtures("fake")
def test_a_classifier_is_loaded_once_per_process_and_options_reach_it(settings):
    first = classifiers.configured()[0]
    assert classifiers.configured()[0] is first and first.severity == 60
    settings.CLASSIFIERS = [FAKE]  # a bare dotted path works too
    (bare,) = classifiers.configured()
    assert bare is not first and bare.classifier.threshold == 0.5 and bare.severity == classifiers.DEFAULT_SEVERITY


@pytest.mark.parametrize("spec, message", [
    ({"path": "detection.detectors.nowhere.Missing"}, "cannot import"),
    ({"threshold": 0.5}, "dotted 'path'"),
    ({"path": FAKE, "threshold": 1.5}, "between 0 and 1"),
])
def test_bad_classifier_settings_fail_clearly(spec, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        classifiers.load(spec)


# The pipeline ------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_a_classifier_finding_opens_a_new_content_case_and_actions_nothing(fake):
    fake(score=0.83)
    item = intake.submit_file(encoded(300), account_id="acct-c1")
    drain()
    item.refresh_from_db()
    assert item.classified_at is not None
    (signal,) = Signal.objects.filter(item=item)
    assert (signal.kind, signal.detector, signal.score, signal.severity) == (SignalKind.CLASSIFIER, "fake", 0.83, 60)
    assert signal.label == "Fake classifier 0.83"
    assert signal.explanation == "Fake model (version 1.0): FAKE_CLASS 0.83 ≥ threshold 0.50"
    assert signal.details["model"] == "Fake model" and signal.details["version"] == "1.0"
    assert signal.details["threshold"] == 0.5 and signal.details["top_class"] == "FAKE_CLASS"
    assert signal.details["detections"][0] == {"class": "FAKE_CLASS", "score": 0.83, "box": [0.1, 0.2, 0.3, 0.4]}
    assert signal.dedupe_key == f"item:{item.pk}:classifier:fake"
    (case,) = Case.objects.all()
    assert case.queue.slug == "new-content" and case.status == CaseStatus.OPEN
    assert case.priority == round(60 * 0.83) and signal.case == case
    assert not Decision.objects.exists() and not Enforcement.objects.exists()
    assert case.account.status == "active"
    assert max(FakeClassifier.calls[0]) <= 2 * classify.IMAGE_SIDE  # decoded small, not at 640x480


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_a_classifier_finding_raises_a_report_case_and_moves_it_to_new_content(fake):
    intake.submit_report(reporter="u1", reason="other", account_id="acct-c2")
    drain()
    (case,) = Case.objects.all()
    before = case.priority
    assert case.queue.slug == "user-reports"
    intake.submit_file(encoded(301), account_id="acct-c2")
    drain()
    case.refresh_from_db()
    assert case.queue.slug == "new-content" and case.priority > before and case.status == CaseStatus.OPEN
    assert case.signals.count() == 2 and not Decision.objects.exists() and not Enforcement.objects.exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_below_the_threshold_there_is_no_signal_but_the_item_is_classified(fake):
    fake(score=0.3)
    item = intake.submit_file(encoded(302), account_id="acct-c3")
    drain()
    item.refresh_from_db()
    assert item.classified_at is not None and FakeClassifier.calls
    assert not Signal.objects.exists() and not Case.objects.exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_known_material_is_not_classified_again(fake):
    known_bank([303])
    item = intake.submit_file(encoded(303, "watermarked"), account_id="acct-c4")
    drain()
    item.refresh_from_db()
    assert item.classified_at is not None and FakeClassifier.calls == []
    assert list(Signal.objects.values_list("kind", flat=True)) == [SignalKind.HASH_MATCH]
    assert Case.objects.get().queue.slug == "known-material"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_classifying_twice_stores_one_signal(fake):
    item = scanned_item(encoded(304), account="acct-c5")
    assert classify.classify_item(item.pk) == "flagged"
    assert classify.classify_item(item.pk) == "skipped"  # already classified
    Item.objects.filter(pk=item.pk).update(classified_at=None)  # an admin asks for it again
    assert classify.classify_item(item.pk) == "flagged"
    assert Signal.objects.filter(item=item, kind=SignalKind.CLASSIFIER).count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_runs_never_hold_the_same_item(fake):
    items = [scanned_item(encoded(305 + n), account="acct-c6") for n in range(3)]
    first = classify.claim_items(2)
    second = classify.claim_items(10)
    assert len(first) == 2 and len(second) == 1 and not {i.pk for i in first} & {i.pk for i in second}
    assert {i.pk for i in [*first, *second]} == {i.pk for i in items}
    # A lapsed claim is taken over, and the first run's late store then changes nothing.
    Item.objects.filter(pk__in=[i.pk for i in first]).update(scan_started_at=timezone.now() - timedelta(hours=1))
    third = classify.claim_items(10)
    assert {i.pk for i in third} == {i.pk for i in first}
    outcomes, _ = classify.classify_claimed(first)
    assert set(outcomes.values()) == {"skipped"}
    outcomes, signal_ids = classify.classify_claimed(third)
    assert set(outcomes.values()) == {"flagged"} and len(signal_ids) == 2


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_a_failing_classifier_is_retried_later_then_given_up(fake, settings, caplog):
    fake(fail=True)
    bad = scanned_item(encoded(310), account="acct-c7")
    drain()
    bad.refresh_from_db()
    assert bad.classified_at is None and classify.attempts_of(bad.scan_token) == 1
    assert "attempt 1 of 3 failed: DetectorError: fake model crashed" in caplog.text
    for attempt in (2, 3):
        # The claim lapses; the sweep sees the item waiting and wakes a job.
        Item.objects.filter(pk=bad.pk).update(scan_started_at=timezone.now() - timedelta(hours=1),
                                              scanned_at=timezone.now() - timedelta(hours=1))
        assert sweep(older_than=60)["classify"] == 1
        drain()
        bad.refresh_from_db()
        assert len(FakeClassifier.calls) == attempt
    assert bad.classified_at is not None and bad.scan_token == ""  # given up, and the claim released
    assert "attempt 3 of 3 failed" in caplog.text
    assert not Signal.objects.exists()
    assert sweep(older_than=0)["classify"] == 0  # nothing left to retry: no endless loop


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_job_timeout_is_not_mistaken_for_a_classifier_error(fake, monkeypatch):
    item = scanned_item(encoded(318), account="acct-c17")

    def out_of_time(self, image):
        raise JobTimeoutException("job exceeded its timeout")

    monkeypatch.setattr(FakeClassifier, "classify", out_of_time)
    with pytest.raises(JobTimeoutException):
        classify.classify_item(item.pk)
    item.refresh_from_db()
    assert item.classified_at is None and classify.attempts_of(item.scan_token) == 1  # retried once lapsed


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_item_whose_runs_never_finish_is_given_up_without_running_the_classifier(fake, settings, caplog):
    item = scanned_item(encoded(311), account="acct-c8")
    for _ in range(settings.CLASSIFY_MAX_ATTEMPTS):
        assert classify.claim_items(1)  # a run starts, then its worker dies
        Item.objects.filter(pk=item.pk).update(scan_started_at=timezone.now() - timedelta(hours=1))
    outcomes, _ = classify.classify_claimed(classify.claim_items(1))
    assert outcomes == {item.pk: "given_up"} and FakeClassifier.calls == []
    item.refresh_from_db()
    assert item.classified_at is not None and "none finished" in caplog.text


@pytest.mark.parametrize("damage", ["garbage", "truncated", "bomb", "missing"])
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_damaged_original_ends_classified_with_an_error_and_others_in_the_batch_go_on(fake, settings, damage,
                                                                                       caplog):
    fake(score=0.9)
    broken = scanned_item(encoded(312), account="acct-c9")
    good = scanned_item(encoded(313), account="acct-c9")
    path = root() / broken.storage_path
    if damage == "garbage":
        path.write_bytes(b"\xff\xd8\xff\xe0 this is no longer a jpeg")
    elif damage == "truncated":
        path.write_bytes(encoded(312)[:2000])
    elif damage == "bomb":
        path.write_bytes(_png_claiming(60_000, 60_000))
    else:
        path.unlink()
    runs = 0
    while runs < settings.CLASSIFY_MAX_ATTEMPTS:
        runs += 1
        outcomes, _ = classify.classify_claimed(classify.claim_items(10))
        Item.objects.filter(pk=broken.pk).update(scan_started_at=timezone.now() - timedelta(hours=1))
        if outcomes.get(broken.pk) == "given_up":
            break
    broken.refresh_from_db()
    good.refresh_from_db()
    assert broken.classified_at is not None and good.classified_at is not None
    assert list(Signal.objects.values_list("item_id", flat=True)) == [good.pk]
    if damage == "missing":  # maybe a storage hiccup: retried before giving up
        assert runs == 3 and "attempt 3 of 3 failed: FileNotFoundError" in caplog.text
    else:  # decoding again cannot help
        assert runs == 1 and f"item {broken.pk}: not classified:" in caplog.text


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("redis_conn")
def test_after_a_redis_flush_the_sweep_restarts_classification(fake, redis_conn):
    item = scanned_item(encoded(314), account="acct-c10")  # its classification kick is in Redis...
    redis_conn.flushdb()  # ...and lost
    drain()
    item.refresh_from_db()
    assert item.classified_at is None
    assert sweep(older_than=0)["classify"] == 1
    drain()
    item.refresh_from_db()
    assert item.classified_at is not None and Signal.objects.filter(item=item, kind=SignalKind.CLASSIFIER).exists()
    assert Case.objects.get().queue.slug == "new-content"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_with_no_classifier_configured_items_wait_and_the_sweep_leaves_them(settings):
    settings.CLASSIFIERS = []
    item = scanned_item(encoded(315), account="acct-c11")
    assert classify.classify_pending()["classified"] == 0
    item.refresh_from_db()
    assert item.classified_at is None and sweep(older_than=0)["classify"] == 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_text_items_and_rejected_files_are_not_classified(fake):
    text = intake.submit_text("hello there", account_id="acct-c12")
    rejected = scanned_item(b"GIF89a<script>x</script>", account="acct-c12")
    assert rejected.status == "rejected"
    assert classify.claim_items(10) == {}
    assert FakeClassifier.calls == [] and not classify.pending().filter(pk=text.pk).exists()


# Video and animation -----------------------------------------------------------------------------

def _video(seeds, fps=2, size=(160, 120)):
    out = io.BytesIO()
    container = av.open(out, "w", format="mp4")
    stream = container.add_stream("mpeg4", rate=fps)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    for seed in seeds:
        frame = av.VideoFrame.from_ndarray(np.asarray(synthetic.make_image(seed, size=size)), format="rgb24")
        for packet in [p for _ in range(fps) for p in stream.encode(frame)]:
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return out.getvalue()


def _animation(colours):
    frames = [Image.new("RGB", (120, 90), colour) for colour in colours]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=500, loop=0)
    return out.getvalue()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_video_is_judged_by_its_strongest_sampled_frame(fake, settings):
    fake(by_red=True, threshold=0.1)
    data = _video(range(320, 330))
    item = scanned_item(data, account="acct-c13", kind=ItemKind.VIDEO, original_name="clip.mp4")
    assert item.status == "scanned"
    frames = classify.video_frames(data)
    assert 1 < len(frames) <= settings.CLASSIFY_VIDEO_FRAMES
    expected = max(float(np.asarray(f)[:, :, 0].mean() / 255) for f in frames)
    assert classify.classify_item(item.pk) == "flagged"
    signal = Signal.objects.get(item=item)
    assert signal.score == round(expected, 3) and signal.details["frames"]["count"] == len(frames)
    assert f"strongest of {len(frames)} sampled frames" in signal.explanation


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_animation_is_judged_by_its_strongest_frame(fake):
    fake(by_red=True, threshold=0.5)
    item = scanned_item(_animation([(10, 10, 10), (20, 20, 20), (250, 0, 0), (30, 30, 30), (40, 40, 40)]),
                        account="acct-c14")
    assert item.status == "scanned"
    assert classify.classify_item(item.pk) == "flagged"
    signal = Signal.objects.get(item=item)
    assert signal.score > 0.9 and signal.details["frames"]["count"] > 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_real_nudenet_runs_in_the_pipeline_and_flags_nothing_benign(settings):
    settings.CLASSIFIERS = [NUDENET]
    item = scanned_item(encoded(316), account="acct-c15")
    assert classify.classify_item(item.pk) == "classified"
    assert not Signal.objects.filter(item=item).exists()


@pytest.mark.django_db
def test_the_case_page_shows_the_model_threshold_and_detections(fake, client, users):
    fake(score=0.83)
    item = scanned_item(encoded(317), account="acct-c16")
    classify.classify_item(item.pk)
    (case,) = triage_all()
    client.force_login(users["reviewer"])
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "Fake classifier 0.83" in page and "Fake model (version 1.0): FAKE_CLASS 0.83 ≥ threshold 0.50" in page
    assert "Fake model 1.0 · threshold 0.50" in page and "never acted on automatically" in page
    assert "<code>FAKE_CLASS</code></td><td>0.83</td><td>10, 20, 30, 40</td>" in page
