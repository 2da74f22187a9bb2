"""Video and animation frames are trimmed of their bars and turned in all eight orientations, as
stills are: a known picture shown pillarboxed, mirrored or rotated inside a video still matches."""

import io
from functools import lru_cache

import av
import numpy as np
import pytest
from PIL import Image

from detection import matching
from detection.banks import import_vpdq
from detection.detectors.hashing import DIHEDRAL, hamming_hex, hash_image
from detection.detectors.video import Frame, frame_hashes, sample_video
from detection.detectors.vpdq import video_frame_entries
from detection.models import ItemKind, Signal
from reviewconsole.devtools import synthetic
from tests.factories import encoded, known_bank, scanned_item

pytestmark = pytest.mark.django_db

KNOWN = 20  # the known picture, banked as a still
WIDE = (640, 360)  # an ordinary 16:9 video
# Each geometric edit and the orientation the explanation names for it.
TURNS = {
    "mirrored": "mirrored", "flipped": "flipped upside down", "rotated_90": "rotated 90° clockwise",
    "rotated_180": "rotated 180°", "rotated_270": "rotated 90° counter-clockwise", "transposed": "transposed",
}


def boxed(img, size=WIDE):
    """The picture fitted into a frame of `size` with black bars, as a video editor places a photo."""
    canvas = Image.new("RGB", size, (0, 0, 0))
    fitted = img.copy()
    fitted.thumbnail(size, Image.Resampling.LANCZOS)
    canvas.paste(fitted, ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2))
    return canvas


@lru_cache(maxsize=64)
def scene(seed, size=WIDE):
    """A full-frame picture; made at one size and resized, so that every size shows the same one."""
    return synthetic.make_image(seed, size=WIDE).resize(size, Image.Resampling.BILINEAR)


def picture(seed=KNOWN, edit=None):
    img = synthetic.make_image(seed)
    return synthetic.GEOMETRIC_EDITS[edit](img) if edit else img


@lru_cache(maxsize=32)
def encode_video(pictures, fps=4, seconds=2, size=WIDE):
    """H.264 MP4 showing each of `pictures` (ids into _PICTURES) for `seconds`."""
    out = io.BytesIO()
    container = av.open(out, "w", format="mp4")
    stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "26"})
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    for key in pictures:
        frame = av.VideoFrame.from_ndarray(np.asarray(_PICTURES[key](size)), format="rgb24")
        for _ in range(fps * seconds):
            for packet in stream.encode(frame):
                container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return out.getvalue()


_PICTURES = {
    "scene-a": lambda size: scene(810, size),
    "scene-b": lambda size: scene(811, size),
    "known": lambda size: boxed(picture(), size),
    "unrelated": lambda size: boxed(picture(seed=830), size),
    **{f"known-{edit}": (lambda size, edit=edit: boxed(picture(edit=edit), size)) for edit in TURNS},
}


def video_with(middle):
    """Two seconds of a scene, two of `middle`, two of another scene: a known picture at 0:02-0:04."""
    return encode_video(("scene-a", middle, "scene-b"))


def scanned_video(data, **kwargs):
    return scanned_item(data, kind=ItemKind.VIDEO, original_name="clip.mp4", **kwargs)


def only_signal(item):
    (signal,) = Signal.objects.filter(item=item)
    return signal


def shown_at(seconds):
    return {f"0:0{s}" for s in seconds}


# Frame hashes --------------------------------------------------------------------------------

def test_frame_hashes_keep_their_keys_and_add_the_trimmed_orientations_of_usable_frames():
    sampled = sample_video(video_with("known"))
    plain = frame_hashes(sampled.frames)
    oriented = frame_hashes(sampled.frames, orientations=True, min_quality=50, size=(1280, 720))
    # t, pdq and quality are what they were: vPDQ's hash of the frame as it is, which banks store.
    assert [{k: f[k] for k in ("t", "pdq", "quality")} for f in oriented] == plain
    for frame in oriented:
        assert len(frame["variants"]) == len(DIHEDRAL) and all(len(v) == 64 for v in frame["variants"])
    boxed_frames = [f for f in oriented if 2 <= f["t"] < 4]
    # The picture is 480 of 640 wide: 80 px bars each side, 160 px in the 1280 px source.
    assert boxed_frames and all(f.get("outer_trimmed", f.get("trimmed"))[::2] == [160, 160] for f in boxed_frames)
    assert all("trimmed" not in f for f in oriented if f["t"] < 2)


def test_a_frame_of_unusable_quality_gets_no_orientations():
    flat = Frame(t=0.0, image=Image.new("RGB", (320, 180), (90, 90, 90)))
    (frame,) = frame_hashes([flat], orientations=True, min_quality=50)
    assert frame["quality"] < 50 and "variants" not in frame and "outer_variants" not in frame


def test_bank_videos_are_still_made_of_the_frames_as_they_are():
    data = video_with("known")
    entries = video_frame_entries(data)
    assert entries == [(f["t"], f["pdq"], f["quality"]) for f in frame_hashes(sample_video(data).frames)]


# A known still inside a video ---------------------------------------------------------------------

def test_a_known_picture_pillarboxed_in_a_16_9_video_matches_its_still_bank_entry():
    known_bank([KNOWN], name="images", types=("pdq",))
    item = scanned_video(video_with("known"))
    # As it is, the frame is far from the still: only trimming makes them agree.
    frame = next(f for f in item.frame_hashes if f["t"] == 2.0)
    assert hamming_hex(frame["pdq"], hash_image(encoded(KNOWN)).pdq) > 31
    signal = only_signal(item)
    assert signal.label == "Known image in video match, bank images" and signal.severity == 90
    hits = signal.details["video"]["image_frames"]
    assert hits and all(2 <= h["t"] < 4 for h in hits)
    (evidence,) = signal.details["hashes"]
    assert evidence["distance"] <= 31 and "transform" not in evidence
    left, top, right, bottom = evidence["trimmed"]
    assert left == right == 80 and top == bottom == 0
    best = min(hits, key=lambda h: h["distance"])
    assert signal.explanation.startswith("1 sampled frame of the video matches bank 'images' image entry: "
                                         if len(hits) == 1 else f"{len(hits)} sampled frames of the video match ")
    at = f"0:0{int(best['t'])}"
    assert f"at {at} (entry 'seed-{KNOWN}'" in signal.explanation
    assert (f"Frame at {at}: compared after removing a pillarbox (80, 0, 80, 0 px left, top, right, bottom)."
            in signal.explanation)
    assert "pillarbox" in evidence["text"] and f"at {at}" in evidence["text"]


@pytest.mark.parametrize("edit", TURNS)
def test_a_turned_or_mirrored_known_picture_in_a_video_matches_with_the_orientation_named(edit):
    known_bank([KNOWN], name="images", types=("pdq",))
    signal = only_signal(scanned_video(video_with(f"known-{edit}")))
    words = TURNS[edit]
    (evidence,) = signal.details["hashes"]
    assert evidence["transform"] == words and evidence["distance"] <= 31
    assert f"the copy is {words}" in evidence["text"]
    at = next(f"0:0{int(h['t'])}" for h in signal.details["video"]["image_frames"]
              if h["distance"] == evidence["distance"])
    assert at in shown_at((2, 3))
    assert f"Frame at {at}: the copy is {words}, compared after removing a pillarbox (" in signal.explanation
    assert all(h.get("transform") == words for h in signal.details["video"]["image_frames"])


def test_an_unrelated_picture_framed_the_same_way_does_not_match():
    known_bank([KNOWN, 21, 22, 23], name="images", types=("pdq",))
    item = scanned_video(video_with("unrelated"))
    assert any("trimmed" in f or "outer_trimmed" in f for f in item.frame_hashes)  # it was trimmed and turned
    assert not Signal.objects.filter(item=item).exists()


def test_every_frame_and_orientation_of_a_batch_is_searched_at_once(monkeypatch):
    known_bank([KNOWN], name="images", types=("pdq",))
    searches = []
    real = matching.find_matches_many

    def counted(queries, **options):
        searches.append(queries)
        return real(queries, **options)

    monkeypatch.setattr(matching, "find_matches_many", counted)
    item = scanned_video(encode_video(("scene-a", "known-mirrored", "scene-b", "known-rotated_90")))
    assert Signal.objects.filter(item=item).count() == 1
    # One search for the file, one for all its frames with every orientation.
    assert len(searches) == 2
    frame_queries = searches[1]
    assert len(frame_queries) >= len({f["pdq"] for f in item.frame_hashes})
    assert all(len(q.get("pdq_variants") or []) in (0, len(DIHEDRAL)) for q in frame_queries)


# Animations and bank videos ----------------------------------------------------------------------

@lru_cache(maxsize=4)
def animated_gif(middle_edit="mirrored", size=(320, 180)):
    frames = [scene(600, size), scene(601, size), boxed(picture(edit=middle_edit), size), scene(602, size)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=1000, loop=0)
    return out.getvalue()


def test_a_mirrored_known_picture_in_an_animated_gif_matches():
    known_bank([KNOWN], name="images", types=("pdq",))
    item = scanned_item(animated_gif(), original_name="loop.gif")
    signal = only_signal(item)
    assert signal.label == "Known image in video match, bank images"
    assert [h["t"] for h in signal.details["video"]["image_frames"]] == [2.0]
    assert "Frame at 0:02: the copy is mirrored, compared after removing a pillarbox (" in signal.explanation
    # Its first frame, hashed as a still, matches nothing: the frames found it.
    assert signal.details["basis"] == "video"


def test_a_mirrored_copy_of_a_bank_video_matches_by_vpdq_rules():
    size, seeds = (160, 120), tuple(range(700, 716))
    for seed in seeds:
        _PICTURES[f"s{seed}"] = lambda sz, seed=seed: scene(seed, sz)
        _PICTURES[f"m{seed}"] = lambda sz, seed=seed: synthetic.mirrored(scene(seed, sz))
    original = encode_video(tuple(f"s{seed}" for seed in seeds), fps=2, seconds=1, size=size)
    lines = [f"{n},{q},{pdq},{t:.3f}" for n, (t, pdq, q) in enumerate(video_frame_entries(original))]
    import_vpdq("videos", io.StringIO("\n".join(lines) + "\n"), media_key="bank-clip")
    matching.invalidate()
    copy = encode_video(tuple(f"m{seed}" for seed in seeds), fps=3, seconds=1, size=(240, 180))
    signal = only_signal(scanned_video(copy))
    assert signal.label == "Video match, bank videos"
    video = signal.details["video"]
    assert video["media_key"] == "bank-clip" and video["query_matched"] >= 13 and video["target_matched"] >= 13
    assert all(f.get("transform") == "mirrored" for f in video["frames"])
    assert ": the copy is mirrored." in signal.explanation and "removing" not in signal.explanation
