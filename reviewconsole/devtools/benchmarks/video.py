"""Benchmark: what scanning a video costs, in milliseconds per second of video (decode, sampling, PDQ).

Videos are synthetic H.264 clips (a slow pan over generated pictures, a new picture every few
seconds, so that the decoder sees motion and cuts). Decoding uses FFmpeg's own threads, as a worker
does; figures are wall time and CPU time of this process.
"""

import io
import time

import av
import numpy as np
from tqdm import tqdm

from detection.detectors.video import Limits, frame_hashes, sample_video
from reviewconsole.devtools import synthetic

SCENE_SECONDS = 3


def make_clip(seconds, size, fps=25, seed=40_000):
    """An H.264 MP4 panning across a new synthetic picture every SCENE_SECONDS."""
    width, height = size
    out = io.BytesIO()
    container = av.open(out, "w", format="mp4")
    stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "26"})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    scene = None
    for n in range(seconds * fps):
        if n % (SCENE_SECONDS * fps) == 0:
            scene = np.asarray(synthetic.make_image(seed + n, size=(width + width // 2, height)))
        offset = (n % (SCENE_SECONDS * fps)) * (width // 2) // (SCENE_SECONDS * fps)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[:, offset:offset + width]), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return out.getvalue()


def run(out, seconds=20, sizes=((640, 360), (1280, 720)), repeats=3, **options):
    limits = Limits()
    out(f"video scan cost: {seconds} s H.264 clips at 25 fps, limits {limits.max_frames} frames sampled, "
        f"best of {repeats}")
    for size in sizes:
        data = make_clip(seconds, size)
        best = None
        for _ in tqdm(range(repeats), desc=f"{size[0]}x{size[1]}", unit="run"):
            wall, cpu = time.perf_counter(), time.process_time()
            sampled = sample_video(data, limits)
            sampled_at, sampled_cpu = time.perf_counter(), time.process_time()
            hashes = frame_hashes(sampled.frames)
            done, done_cpu = time.perf_counter(), time.process_time()
            run_figures = (sampled_at - wall, done - sampled_at, done - wall, done_cpu - cpu, sampled_cpu - cpu)
            best = run_figures if best is None or run_figures[2] < best[2] else best
        decode, pdq, total, cpu, _ = best
        per = 1000 / seconds
        out(f"  {size[0]}x{size[1]} ({len(data) // 1024} KiB, {len(hashes)} frames sampled): "
            f"{total * per:.1f} ms wall per second of video (decode+sample {decode * per:.1f}, "
            f"PDQ {pdq * per:.1f}), {cpu * per:.1f} ms CPU; {total * 1000:.0f} ms for the clip")
