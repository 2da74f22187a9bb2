"""Video and animation: sampled and hashed frame by frame, matched by vPDQ rules, reviewed as a
filtered contact sheet, and every hostile file rejected with a reason."""

import io
from functools import lru_cache

import av
import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from cases.actions.triage import attach_signals
from detection import intake, matching
from detection.banks import import_hashes, import_vpdq
from detection.detectors.hashing import RejectedFile, digests
from detection.detectors.video import Limits, contact_sheet, sample_animation, sample_frames, sample_video
from detection.detectors.vpdq import parse_vpdq_lines, video_frame_entries
from detection.jobs.scan import scan_item
from detection.models import Bank, BankHash, BankKind, Item, ItemKind, ItemStatus, Signal
from reviewconsole.devtools import synthetic
from tests.conftest import drain, verify_2fa
from tests.factories import known_bank, scanned_item

pytestmark = pytest.mark.django_db

BANK_SEEDS = tuple(range(700, 716))  # a 16-second bank video: a new scene every second


@lru_cache(maxsize=64)
def synthetic_video(seeds=(500, 501, 502, 503), fps=4, size=(160, 120), codec="mpeg4", fmt="mp4"):
    """A tiny video showing one synthetic image a second (a seed each), made once per run."""
    out = io.BytesIO()
    container = av.open(out, "w", format=fmt)
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    for seed in seeds:
        frame = av.VideoFrame.from_ndarray(_still(seed, size), format="rgb24")
        for _ in range(fps):
            for packet in stream.encode(frame):
                container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return out.getvalue()


@lru_cache(maxsize=256)
def _still(seed, size):
    return np.asarray(synthetic.make_image(seed, size=(320, 240)).resize(size))  # every size, one picture


@lru_cache(maxsize=8)
def audio_only():
    out = io.BytesIO()
    container = av.open(out, "w", format="mp4")
    stream = container.add_stream("aac", rate=8000)
    samples = np.zeros((1, 8000), dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
    frame.sample_rate = 8000
    for packet in [*stream.encode(frame), *stream.encode()]:
        container.mux(packet)
    container.close()
    return out.getvalue()


@lru_cache(maxsize=16)
def animation(seeds=(600, 600, 601, 601, 602, 602), fmt="GIF", size=(160, 120), duration=500):
    frames = [synthetic.make_image(seed, size=size) for seed in seeds]
    out = io.BytesIO()
    frames[0].save(out, format=fmt, save_all=True, append_images=frames[1:], duration=duration, loop=0)
    return out.getvalue()


def vpdq_file(data, order="cpp"):
    """The per-frame file Meta's vPDQ would write for a video: frame,quality,hash,timestamp."""
    lines = []
    for number, (t, pdq, quality) in enumerate(video_frame_entries(data)):
        lines.append(f"{number},{quality},{pdq},{t:.3f}" if order == "cpp" else f"{pdq},{quality},{t:.3f}")
    return "\n".join(lines) + "\n"


def video_bank(name="videos", data=None, key="bank-clip"):
    summary = import_vpdq(name, io.StringIO(vpdq_file(data or synthetic_video(BANK_SEEDS, fps=2))), media_key=key)
    matching.invalidate()
    return summary


def scanned_video(data, **kwargs):
    return scanned_item(data, kind=ItemKind.VIDEO, original_name="clip.mp4", **kwargs)


# Sampling ------------------------------------------------------------------------------------

def test_frames_are_sampled_once_a_second_and_tiled():
    frames = sample_frames(synthetic_video())
    assert len(frames) == 4 and frames[0].size == (160, 120)
    sheet = contact_sheet(frames)
    assert sheet.size == (640, 120)


def test_a_scene_change_between_seconds_is_sampled_too():
    # Ten quarter-seconds of one image, then another: the cut at 2.5 s falls between samples.
    data = synthetic_video(seeds=(510,) * 10 + (511,) * 6, fps=1, size=(96, 96))  # 16 frames at 4 fps
    sampled = sample_video(_retimed(data))
    times = [(f.t, f.scene_change) for f in sampled.frames]
    assert (2.5, True) in times
    assert [t for t, scene in times if not scene] == [0.0, 1.0, 2.0, 3.0]


@lru_cache(maxsize=4)
def _retimed(data):
    """The same frames at 4 fps: each image lasts a quarter second."""
    source = av.open(io.BytesIO(data))
    out = io.BytesIO()
    container = av.open(out, "w", format="mp4")
    stream = container.add_stream("mpeg4", rate=4)
    stream.width, stream.height, stream.pix_fmt = 96, 96, "yuv420p"
    for frame in source.decode(video=0):
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    source.close()
    return out.getvalue()


def test_samples_of_a_long_video_spread_over_all_of_it_within_the_cap():
    sampled = sample_video(synthetic_video(seeds=tuple(range(520, 540)), fps=1, size=(64, 48)), Limits(max_frames=8))
    assert len(sampled.frames) <= 8
    assert sampled.frames[-1].t >= 15  # not just the first eight seconds


def test_animated_gif_webp_and_png_frames_are_timed_by_their_durations():
    for fmt in ("GIF", "WEBP", "PNG"):
        sampled = sample_animation(animation(fmt=fmt))
        assert [f.t for f in sampled.frames] == [0.0, 1.0, 2.0], fmt  # 500 ms frames, a scene a second
        assert sampled.frames[0].image.size == (160, 120)
    cuts = sample_animation(animation(seeds=(600, 601, 602, 603)))
    assert [(f.t, f.scene_change) for f in cuts.frames] == [(0.0, False), (0.5, True), (1.0, False), (1.5, True)]
    assert sample_animation(synthetic.encode(synthetic.make_image(1))) is None  # a still has no frames


def test_an_animated_gif_is_scanned_frame_by_frame_and_keeps_its_still_hashes():
    item = scanned_item(animation(), original_name="loop.gif")
    assert item.status == ItemStatus.SCANNED and item.pdq and item.detected_format == "GIF"
    assert [f["t"] for f in item.frame_hashes] == [0.0, 1.0, 2.0]
    assert all(len(f["pdq"]) == 64 and f["quality"] >= 50 for f in item.frame_hashes)
    still = scanned_item(synthetic.encode(synthetic.make_image(2)))
    assert still.frame_hashes == []


def test_a_video_scan_stores_its_frame_hashes():
    item = scanned_video(synthetic_video())
    assert item.status == ItemStatus.SCANNED
    assert item.detected_format == "MP4/MOV" and (item.width, item.height) == (160, 120)
    assert [f["t"] for f in item.frame_hashes] == [0.0, 1.0, 2.0, 3.0]


# Matching ------------------------------------------------------------------------------------

def test_a_reencoded_resized_copy_of_a_bank_video_matches_by_vpdq_rules():
    assert video_bank()["added"] == 16
    copy = synthetic_video(BANK_SEEDS, fps=3, size=(240, 180), codec="libx264")
    item = scanned_video(copy)
    (signal,) = Signal.objects.filter(item=item)
    assert signal.kind == "hash_match" and signal.label == "Video match, bank videos"
    assert signal.dedupe_key == f"item:{item.pk}:bank:{signal.details['bank_id']}"
    video = signal.details["video"]
    assert video["media_key"] == "bank-clip" and video["query_total"] == 16 and video["target_total"] == 16
    assert video["query_matched"] >= 13 and video["target_matched"] >= 13
    assert "Video matches bank 'videos' entry video 'bank-clip'" in signal.explanation
    assert "sampled frames" in signal.explanation and "bank frames" in signal.explanation
    assert {f["t"] for f in video["frames"]} <= {float(t) for t in range(16)}
    assert signal.details["hashes"][0]["type"] == "pdq"  # what the reviewer's caption reads


def test_a_video_sharing_only_two_of_sixteen_scenes_is_no_video_match():
    video_bank()
    other = synthetic_video(BANK_SEEDS[:2] + tuple(range(800, 814)), fps=2)
    item = scanned_video(other)
    assert not Signal.objects.filter(item=item).exists()


def test_a_short_clip_of_a_long_bank_video_fails_the_target_share():
    video_bank()
    item = scanned_video(synthetic_video(BANK_SEEDS[:6], fps=2))  # every query frame matches, 6 of 16 bank frames
    assert not Signal.objects.filter(item=item).exists()


def test_the_banks_video_percent_decides():
    video_bank()
    Bank.objects.filter(name="videos").update(video_match_percent=30)
    matching.invalidate()
    item = scanned_video(synthetic_video(BANK_SEEDS[:6], fps=2))
    assert Signal.objects.get(item=item).details["video"]["target_matched"] == 6


def test_a_video_showing_a_known_image_gives_a_frame_match_signal():
    known_bank([20], name="images")
    data = synthetic_video((810, 811, 20, 20, 812), fps=2, size=(640, 480), codec="libx264")
    item = scanned_video(data)
    (signal,) = Signal.objects.filter(item=item)
    assert signal.label == "Known image in video match, bank images"
    # Both seconds show the same picture: identical frame hashes count once, as in vPDQ.
    assert [f["t"] for f in signal.details["video"]["image_frames"]] == [2.0]
    assert "at 0:02" in signal.explanation


def test_the_whole_file_md5_and_the_frames_of_one_bank_give_one_signal():
    data = synthetic_video(BANK_SEEDS, fps=2)
    video_bank(data=data)
    import_hashes("videos", io.StringIO(digests(data)[0] + "\n"), hash_type="md5")
    matching.invalidate()
    item = scanned_video(data)
    (signal,) = Signal.objects.filter(item=item)
    assert "MD5 identical" in signal.explanation and "Video matches bank 'videos'" in signal.explanation
    assert signal.details["video"]["query_matched"] == 16 and signal.score == 1.0


def test_an_allow_listed_video_raises_no_signal():
    video_bank(name="allowed", key="harmless-clip")
    Bank.objects.filter(name="allowed").update(kind=BankKind.ALLOW)
    video_bank(name="videos")
    matching.invalidate()
    item = scanned_video(synthetic_video(BANK_SEEDS, fps=2))
    assert not Signal.objects.filter(item=item).exists()


# vPDQ files ----------------------------------------------------------------------------------

def test_vpdq_lines_in_each_of_metas_orders_parse_alike():
    pdq = "e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c"
    lines = [f"0,100,{pdq},0.000", f"1,{pdq.upper()},98,1.5", f"{pdq},80,2"]
    assert [frame for _, frame, _ in parse_vpdq_lines(lines)] == [(0.0, pdq, 100), (1.5, pdq, 98), (2.0, pdq, 80)]


def test_vpdq_import_reports_bad_lines_and_keeps_the_good_ones(tmp_path, capsys):
    good = vpdq_file(synthetic_video(BANK_SEEDS[:4], fps=2)).splitlines()
    bad = ["0,100,nothex,0.0", "1,100," + "a" * 63 + ",1.0", f"2,140,{'b' * 64},2.0", f"3,90,{'c' * 64},-1",
           "x" * 600, f"4,low,{'d' * 64},3.0", "just,two"]
    path = tmp_path / "clip-17.vpdq"
    path.write_text("\n".join(good[:2] + bad + good[2:] + [good[0]]) + "\n")
    call_command("import_hashes", "vids", str(path), "--type", "vpdq", verbosity=0)
    out, err = capsys.readouterr()
    assert "video clip-17: 4 frames added, 1 already present" in out and "7 rejected of 12 read" in out
    reported = err.splitlines()
    assert len(reported) == 7 and reported[0].startswith("line 3:") and reported[-1].startswith("line 9:")
    assert "line 7: line too long" in reported
    rows = BankHash.objects.filter(bank__name="vids")
    assert rows.count() == 4 and {r.media_key for r in rows} == {"clip-17"}
    assert sorted(r.frame_seconds for r in rows) == [0.0, 1.0, 2.0, 3.0]


def test_a_vpdq_file_without_one_usable_frame_is_an_error(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# nothing here\nnot,a,frame,line\n")
    with pytest.raises(CommandError, match="no usable frame"):
        call_command("import_hashes", "vids", str(path), "--type", "vpdq", "--label", "clip", verbosity=0)
    with pytest.raises(CommandError, match="media key"):
        call_command("import_hashes", "vids", str(path), "--type", "vpdq", "--label", "k" * 65, verbosity=0)


def test_low_quality_frames_are_left_out_of_a_bank_video():
    flat = "0" * 64
    summary = import_vpdq("vids", io.StringIO(f"0,10,{flat},0.0\n1,100,{'f' * 64},1.0\n"), media_key="m")
    assert (summary["added"], summary["low_quality"]) == (1, 1)


# Hostile files -------------------------------------------------------------------------------

def _corrupt(data, at, length=64):
    return data[:at] + b"\xff" * length + data[at + length:]


def _patched_gif_screen(data, width, height):
    return data[:6] + width.to_bytes(2, "little") + height.to_bytes(2, "little") + data[10:]


HOSTILE_VIDEOS = {
    "empty": (lambda: b"", "empty file"),
    "not a video": (lambda: b"not a video at all", "unsupported video"),
    "truncated mp4": (lambda: synthetic_video()[:900], "video"),
    "garbage after ftyp": (lambda: b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8, "video"),
    "audio only": (audio_only, "no video stream"),
    "huge dimensions": (lambda: synthetic_video((530,), fps=1, size=(4160, 32), codec="libx264"), "video too large"),
    "broken mov": (lambda: _corrupt(synthetic_video(fmt="mov"), 20, 400), "video"),
    "broken webm": (lambda: _corrupt(synthetic_video(codec="libvpx", fmt="webm"), 4, 200), "video"),
    "too long": (lambda: synthetic_video(seeds=(531,) * 1000, fps=1, size=(32, 32), codec="libx264"), "too long"),
}


@pytest.mark.parametrize("name", HOSTILE_VIDEOS)
def test_hostile_or_broken_video_is_rejected_with_a_reason(name):
    make, reason = HOSTILE_VIDEOS[name]
    with pytest.raises(RejectedFile, match=reason):
        sample_video(make())


def test_a_video_past_the_decode_budget_is_rejected(settings):
    with pytest.raises(RejectedFile, match="decode budget: more than 10 frames"):
        sample_video(synthetic_video(), Limits(max_decoded_frames=10))
    with pytest.raises(RejectedFile, match="decode budget: more than 0 s"):
        sample_video(synthetic_video(), Limits(max_wall_seconds=0))


@lru_cache(maxsize=1)
def _many_frames():
    frames = []
    for n in range(2000):  # each differs from the last, so the encoder cannot merge them
        frame = Image.new("L", (4, 4))
        frame.putpixel((n % 4, n // 4 % 4), 255)
        frames.append(frame)
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=40)
    return out.getvalue()


HOSTILE_ANIMATIONS = {
    "thousands of frames": (_many_frames, "too many frames"),
    "huge logical screen": (lambda: _patched_gif_screen(animation(size=(32, 32)), 9000, 9000), "too large"),
    "screen x frames bomb": (lambda: _patched_gif_screen(animation(size=(32, 32)), 400, 400), "too large to decode"),
    "broken apng frame": (lambda: _corrupt(animation(fmt="PNG"), len(animation(fmt="PNG")) // 2), "PNG"),
    "truncated webp": (lambda: animation(fmt="WEBP")[:len(animation(fmt="WEBP")) * 2 // 3], "WEBP"),
}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_every_hostile_file_ends_rejected_and_the_worker_goes_on(redis_conn, settings):
    settings.VIDEO_MAX_ANIMATION_PIXELS = 400_000  # 400x400 x 3 frames is over, though 400x400 alone is not
    items = {}
    for name, (make, _) in HOSTILE_VIDEOS.items():
        items[name] = intake.submit_file(make(), account_id="a-1", kind=ItemKind.VIDEO, original_name=name)
    for name, (make, _) in HOSTILE_ANIMATIONS.items():
        items[name] = intake.submit_file(make(), account_id="a-1", kind=ItemKind.IMAGE, original_name=name)
    good = intake.submit_file(synthetic_video(), account_id="a-1", kind=ItemKind.VIDEO, original_name="ok.mp4")
    drain()
    for name, (_, reason) in {**HOSTILE_VIDEOS, **HOSTILE_ANIMATIONS}.items():
        item = Item.objects.get(pk=items[name].pk)
        assert item.status == ItemStatus.REJECTED, name
        assert reason.lower() in item.reject_reason.lower(), (name, item.reject_reason)
    assert Item.objects.get(pk=good.pk).status == ItemStatus.SCANNED
    assert len(Item.objects.get(pk=good.pk).frame_hashes) == 4


def test_a_truncated_video_upload_ends_rejected_with_a_reason():
    item = intake.submit_file(synthetic_video()[:900], account_id="a-1", kind="video")
    assert scan_item(item.pk) == "rejected"
    assert "video" in Item.objects.get(pk=item.pk).reject_reason


def test_a_truncated_webm_keeps_the_frames_before_the_cut():
    # Cutting the tail off a known video must not hide the rest of it from matching.
    data = synthetic_video(BANK_SEEDS, fps=1, codec="libvpx", fmt="webm")
    sampled = sample_video(data[:len(data) // 2])
    assert 3 <= len(sampled.frames) < 16


# Review --------------------------------------------------------------------------------------

def _blurred_and_revealed(client, users, item):
    signal = Signal.objects.create(item=item, account=item.account, kind="user_report", detector="user_report",
                                   label="User report", score=0.5, severity=80, explanation="reported",
                                   dedupe_key=f"video-test-{item.pk}")
    (case,) = attach_signals([signal.pk])
    client.force_login(users["specialist"])
    blurred = Image.open(io.BytesIO(client.get(f"/evidence/{item.pk}/blurred.jpg?case={case.pk}").content))
    verify_2fa(client, users["specialist"])
    response = client.post(f"/evidence/{item.pk}/reveal/")
    return blurred, response


def test_a_video_is_reviewed_as_a_filtered_contact_sheet(client, users):
    item = intake.submit_file(synthetic_video(), account_id="a-1", kind="video", original_name="clip.mp4")
    assert scan_item(item.pk) == "scanned"
    item.refresh_from_db()
    blurred, response = _blurred_and_revealed(client, users, item)
    assert blurred.mode == "L" and blurred.size[0] > blurred.size[1]  # a greyscale sheet of frames
    assert response["Content-Type"] == "image/jpeg"  # a still sheet: never the video, never sound
    assert Image.open(io.BytesIO(response.content)).mode == "RGB"
    assert ItemStatus.SCANNED == Item.objects.get(pk=item.pk).status


def test_an_animation_is_reviewed_as_a_filtered_contact_sheet(client, users):
    item = scanned_item(animation(seeds=tuple(range(610, 620)), duration=1000), original_name="loop.gif")
    blurred, response = _blurred_and_revealed(client, users, item)
    assert blurred.mode == "L" and blurred.size == (640, 360)  # 4 x 3 tiles of 160 x 120
    revealed = Image.open(io.BytesIO(response.content))
    assert revealed.mode == "RGB" and revealed.size == (640, 360)
    # The blurred sheet is not the revealed one: the blur is applied on the server.
    sharp = np.asarray(revealed.convert("L").resize(blurred.size), dtype=np.int16)
    assert np.abs(np.diff(np.asarray(blurred, dtype=np.int16), axis=1)).mean() < np.abs(np.diff(sharp, axis=1)).mean()
