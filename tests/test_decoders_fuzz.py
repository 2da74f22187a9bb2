"""Decoder faults: a malformed file is rejected alone, with a reason, and its batch goes on.

Then the decoders are fuzzed: synthetic JPEG, PNG, GIF, WebP and MP4 files are mutated (bit flips,
truncations, duplicated and overwritten runs of bytes; a seeded random.Random, so that any failure
can be replayed from its seed and round) and every outcome must be a result or RejectedFile.
"""

import io
import random
import time
import zlib
from dataclasses import replace
from functools import lru_cache

import av
import django_rq
import numpy as np
import pytest
from django.conf import settings
from PIL import Image
from rq.timeouts import JobTimeoutException

from detection import intake
from detection.detectors import hashing
from detection.detectors.hashing import RejectedFile, check_polyglot, hash_image, open_image
from detection.detectors.video import Limits, frame_hashes, sample_animation, sample_frames, sample_video
from detection.jobs import scan as jobs
from detection.models import Item, ItemKind, ItemStatus
from reviewconsole.devtools import synthetic
from tests.conftest import drain

FUZZ_SEED = 20261201
FUZZ_ROUNDS = 250  # mutations of each sample
FUZZ_SECONDS = 6.0  # a cap for slow or busy machines; the rounds take about 2.5 s
LIMITS = Limits(max_frames=8, max_wall_seconds=2.0, max_animation_pixels=20_000_000)
MAX_PIXELS, MAX_FRAMES = 4_000_000, 50


# Synthetic files and the malformed ones made from them ----------------------------------------

@lru_cache(maxsize=8)
def still(fmt, size=(64, 48)):
    return synthetic.encode(synthetic.make_image(11, size=size), fmt=fmt)


@lru_cache(maxsize=8)
def animation(fmt, size=(48, 32)):
    frames = [synthetic.make_image(seed, size=size) for seed in (12, 13, 14)]
    out = io.BytesIO()
    frames[0].save(out, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


@lru_cache(maxsize=2)
def video(size=(64, 48)):
    out = io.BytesIO()
    container = av.open(out, "w", format="mp4")
    stream = container.add_stream("mpeg4", rate=4)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    for seed in (15, 16):
        frame = av.VideoFrame.from_ndarray(np.asarray(synthetic.make_image(seed, size=size)), format="rgb24")
        for _ in range(2):
            for packet in stream.encode(frame):
                container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return out.getvalue()


def gif_images(data):
    """Offsets of the image descriptors of a GIF, found by walking its blocks."""
    pos = 13 + ((3 << ((data[10] & 7) + 1)) if data[10] & 0x80 else 0)
    found = []
    while data[pos] != 0x3B:
        if data[pos] == 0x21:
            pos += 2
        else:
            found.append(pos)
            flags = data[pos + 9]
            pos += 10 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0) + 1
        while data[pos]:
            pos += 1 + data[pos]
        pos += 1
    return found


def malformed_gif():
    """An animated GIF cut off just before its second frame's LZW code size: Pillow, counting the
    frames, indexes the empty read and raises IndexError."""
    data = animation("GIF")
    second = gif_images(data)[1]
    flags = data[second + 9]
    return data[:second + 10 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)]


def malformed_mp4():
    """An MP4 whose sample description box is renamed: PyAV finds a video stream with no codec
    context, and reading its width raised AttributeError."""
    return video().replace(b"stsd", b"xtsd", 1)


def test_the_malformed_files_trip_the_libraries_themselves():
    with pytest.raises(IndexError), Image.open(io.BytesIO(malformed_gif())) as img:
        img.n_frames  # noqa: B018 - the property reads every frame header
    with av.open(io.BytesIO(malformed_mp4())) as container:
        assert container.streams.video[0].codec_context is None


def test_decoder_faults_become_rejections_with_a_reason():
    with pytest.raises(RejectedFile, match=r"^could not decode: IndexError"):
        hash_image(malformed_gif())
    with pytest.raises(RejectedFile, match="video stream has no codec we can decode"):
        sample_video(malformed_mp4())


def test_a_fault_the_checks_did_not_foresee_still_ends_rejected(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("palette entry")

    monkeypatch.setattr(hashing, "trim", broken)
    with pytest.raises(RejectedFile, match=r"could not decode: KeyError: 'palette entry'") as caught:
        hash_image(still("PNG"))
    assert isinstance(caught.value.__cause__, KeyError)  # the original is kept for the log


def test_a_job_timeout_raised_inside_a_decoder_is_not_a_rejection(monkeypatch):
    def out_of_time(*args, **kwargs):
        raise JobTimeoutException("Task exceeded maximum timeout value (20 seconds)")

    monkeypatch.setattr(hashing, "trim", out_of_time)
    with pytest.raises(JobTimeoutException):
        hash_image(still("JPEG"))


# The scan: one bad file never holds up its batch ----------------------------------------------

def _submit_batch():
    return {
        "good": intake.submit_file(still("JPEG", (640, 480)), account_id="fuzz-1", original_name="good.jpg"),
        "gif": intake.submit_file(malformed_gif(), account_id="fuzz-1", original_name="bad.gif"),
        "mp4": intake.submit_file(malformed_mp4(), account_id="fuzz-1", kind=ItemKind.VIDEO,
                                  original_name="bad.mp4"),
    }


def _assert_outcome(items):
    found = {name: Item.objects.get(pk=item.pk) for name, item in items.items()}
    assert found["good"].status == ItemStatus.SCANNED and len(found["good"].pdq) == 64
    assert found["gif"].status == ItemStatus.REJECTED
    assert found["gif"].reject_reason.startswith("could not decode: IndexError"), found["gif"].reject_reason
    assert found["mp4"].status == ItemStatus.REJECTED
    assert "no codec" in found["mp4"].reject_reason, found["mp4"].reject_reason


@pytest.mark.django_db
def test_a_batch_scans_its_good_file_and_rejects_the_malformed_ones_in_one_run(monkeypatch, redis_conn):
    items = _submit_batch()
    batches = []
    real = jobs.scan_claimed

    def recording(claimed, token, deadline=None):
        batches.append(sorted(item.pk for item in claimed))
        return real(claimed, token, deadline)

    monkeypatch.setattr(jobs, "scan_claimed", recording)
    assert jobs.scan_pending() == {"scanned": 1, "rejected": 2, "skipped": 0}
    assert batches == [sorted(item.pk for item in items.values())]  # one claim, nothing left queued
    _assert_outcome(items)


@pytest.mark.django_db
def test_any_exception_from_hashing_one_file_rejects_that_file_alone(monkeypatch, redis_conn):
    good = intake.submit_file(still("JPEG", (640, 480)), account_id="fuzz-2")
    bad = intake.submit_file(still("PNG", (640, 480)), account_id="fuzz-2")
    real = jobs.hash_image

    def flaky(data, **kwargs):
        if data == still("PNG", (640, 480)):
            raise AttributeError("'NoneType' object has no attribute 'palette'")
        return real(data, **kwargs)

    monkeypatch.setattr(jobs, "hash_image", flaky)  # past the detectors' own guard: the job's net
    assert jobs.scan_pending() == {"scanned": 1, "rejected": 1, "skipped": 0}
    assert Item.objects.get(pk=good.pk).status == ItemStatus.SCANNED
    rejected = Item.objects.get(pk=bad.pk)
    assert (rejected.status, rejected.reject_reason) == (
        ItemStatus.REJECTED, "could not decode: AttributeError: 'NoneType' object has no attribute 'palette'")


@pytest.mark.django_db
def test_a_job_timeout_still_ends_the_job_and_leaves_the_claim_to_lapse(monkeypatch, redis_conn):
    item = intake.submit_file(still("JPEG", (640, 480)), account_id="fuzz-3")

    def out_of_time(data, **kwargs):
        raise JobTimeoutException("Task exceeded maximum timeout value")

    monkeypatch.setattr(jobs, "hash_image", out_of_time)
    with pytest.raises(JobTimeoutException):
        jobs.scan_pending()
    item.refresh_from_db()
    assert (item.status, item.scan_attempts) == (ItemStatus.QUEUED, 1)  # retried alone once the lease lapses


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_worker_scans_the_good_file_and_rejects_the_malformed_ones(redis_conn):
    items = _submit_batch()  # each commit kicks the scan job
    drain()  # a real worker, in burst mode, until every queue is empty
    _assert_outcome(items)
    for name in settings.WORKER_QUEUES:
        assert django_rq.get_queue(name).failed_job_registry.count == 0, name  # no job died


# Fuzzing ------------------------------------------------------------------------------------

def mutate(rng, data):
    """1 to 3 mutations: bit flips, a truncation, a run of bytes duplicated elsewhere, or overwritten."""
    data, done = bytearray(data), []
    for _ in range(rng.randint(1, 3)):
        if len(data) < 16:
            break
        op = rng.randrange(4)
        if op == 0:
            spots = [rng.randrange(len(data)) for _ in range(rng.randint(1, 8))]
            for spot in spots:
                data[spot] ^= 1 << rng.randrange(8)
            done.append(f"flip {spots}")
        elif op == 1:
            cut = rng.randrange(1, len(data))
            del data[cut:]
            done.append(f"truncate at {cut}")
        elif op == 2:
            start = rng.randrange(len(data))
            chunk = data[start:start + rng.randint(1, 512)]
            at = rng.randrange(len(data))
            data[at:at] = chunk
            done.append(f"duplicate {len(chunk)} bytes from {start} at {at}")
        else:
            at = rng.randrange(len(data))
            noise = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
            data[at:at + len(noise)] = noise
            done.append(f"overwrite {len(noise)} bytes at {at}")
    return bytes(data), done


def fixed_crcs(data):
    """The PNG with every chunk's CRC made right again, so that mutations reach the decoder."""
    out, pos = bytearray(data), 8
    while pos + 12 <= len(out):
        length = int.from_bytes(out[pos:pos + 4], "big")
        end = pos + 12 + length
        if end > len(out):
            break
        out[end - 4:end] = zlib.crc32(bytes(out[pos + 4:end - 4])).to_bytes(4, "big")
        pos = end
    return bytes(out)


def run_image(data):
    check_polyglot(data, hashing.sniff_format(data) or "JPEG")
    open_image(data, max_pixels=MAX_PIXELS, max_frames=MAX_FRAMES)
    hashes = hash_image(data, max_pixels=MAX_PIXELS, max_frames=MAX_FRAMES)
    sampled = sample_animation(data, LIMITS, max_pixels=MAX_PIXELS, max_source_frames=MAX_FRAMES)
    return hashes, sampled and frame_hashes(sampled.frames)


def run_video(data):
    sampled = sample_video(data, LIMITS)
    return frame_hashes(sampled.frames), sample_frames(data, count=2, limits=replace(LIMITS, max_frames=2))


SAMPLES = {
    "JPEG": (lambda: still("JPEG"), None, run_image),
    "PNG": (lambda: still("PNG"), None, run_image),
    "PNG, CRCs fixed": (lambda: still("PNG"), fixed_crcs, run_image),
    "GIF": (lambda: animation("GIF"), None, run_image),
    "WebP": (lambda: animation("WEBP"), None, run_image),
    "APNG, CRCs fixed": (lambda: animation("PNG"), fixed_crcs, run_image),
    "MP4": (video, None, run_video),
}


def test_fuzzed_files_end_as_a_result_or_a_rejection():
    rng = random.Random(FUZZ_SEED)
    deadline = time.monotonic() + FUZZ_SECONDS
    outcomes = {kind: {"result": 0, "rejected": 0} for kind in SAMPLES}
    escaped = []
    for round_number in range(FUZZ_ROUNDS):
        if time.monotonic() > deadline:
            break
        for kind, (make, fix, run) in SAMPLES.items():  # round-robin: a cut-short run still covers every format
            data, mutations = mutate(rng, make())
            if fix:
                data = fix(data)
            try:
                run(data)
                outcomes[kind]["result"] += 1
            except RejectedFile:
                outcomes[kind]["rejected"] += 1
            except Exception as exc:  # noqa: BLE001 - what the test is looking for
                escaped.append(f"{kind}, seed {FUZZ_SEED} round {round_number}: {mutations}: "
                               f"{type(exc).__name__}: {exc}")
    assert not escaped, "\n".join(escaped[:20])
    assert all(sum(counts.values()) for counts in outcomes.values()), outcomes
    # The mutations are not all refused at the door: the decoders themselves are exercised.
    assert sum(counts["result"] for counts in outcomes.values()) >= 20, outcomes
