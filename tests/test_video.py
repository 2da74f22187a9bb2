"""Video evidence: decoded safely, reviewed as a filtered, muted contact sheet, hostile files rejected."""

import io

import av
import numpy as np
import pytest
from PIL import Image

from cases import intake
from cases.actions import attach_signals
from cases.models import Item, ItemStatus, Signal
from detection import synthetic
from detection.hashing import RejectedFile
from detection.jobs import scan_item
from detection.video import contact_sheet, sample_frames
from tests.conftest import verify_2fa

pytestmark = pytest.mark.django_db


def synthetic_video(seconds=4, fps=4, size=(160, 120)):
    out = io.BytesIO()
    container = av.open(out, "w", format="mp4")
    stream = container.add_stream("mpeg4", rate=fps)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    for n in range(seconds * fps):
        img = synthetic.make_image(500 + n // fps, size=size)
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return out.getvalue()


def test_frames_are_sampled_once_a_second_and_tiled():
    frames = sample_frames(synthetic_video(seconds=4))
    assert len(frames) == 4 and frames[0].size == (160, 120)
    sheet = contact_sheet(frames)
    assert sheet.size == (640, 120)


@pytest.mark.parametrize("data, reason", [
    (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200, "video"),
    (b"not a video at all", "video"),
])
def test_hostile_or_broken_video_is_rejected(data, reason):
    with pytest.raises(RejectedFile, match=reason):
        sample_frames(data)


def test_a_truncated_video_upload_ends_rejected_with_a_reason():
    item = intake.submit_file(synthetic_video()[:900], account_id="a-1", kind="video")
    assert scan_item(item.pk) == "rejected"
    assert "video" in Item.objects.get(pk=item.pk).reject_reason


def test_a_video_is_reviewed_as_a_filtered_contact_sheet(client, users):
    item = intake.submit_file(synthetic_video(), account_id="a-1", kind="video", original_name="clip.mp4")
    assert scan_item(item.pk) == "scanned"
    item.refresh_from_db()
    assert item.detected_format == "MP4/MOV" and item.width == 160
    signal = Signal.objects.create(item=item, account=item.account, kind="user_report", detector="user_report",
                                   label="User report", score=0.5, severity=80, explanation="reported",
                                   dedupe_key="video-test")
    (case,) = attach_signals([signal.pk])
    client.force_login(users["specialist"])
    blurred = Image.open(io.BytesIO(client.get(f"/evidence/{item.pk}/blurred.jpg?case={case.pk}").content))
    assert blurred.mode == "L" and blurred.size[0] > blurred.size[1]  # a greyscale sheet of frames
    verify_2fa(client, users["specialist"])
    response = client.post(f"/evidence/{item.pk}/reveal/")
    assert response["Content-Type"] == "image/jpeg"  # a still sheet: never the video, never sound
    assert Image.open(io.BytesIO(response.content)).mode == "RGB"
    assert ItemStatus.SCANNED == Item.objects.get(pk=item.pk).status
