"""Benchmark: the nudity classifier's model load time and milliseconds per image on one core.

Images are synthetic 1024x768 JPEGs (benign shapes and gradients). Each is timed twice: the model
alone on the decoded image, and as a classification job sees it (safe decode at the model's size,
then the model). The classifier runs with one onnxruntime thread, as in a worker.
"""

import statistics
import time

from tqdm import tqdm

from detection.detectors.nudity import NudeNetDetector
from detection.jobs.classify import image_frames
from reviewconsole.devtools import synthetic


def run(out, images=50, **options):
    started = time.perf_counter()
    import nudenet  # noqa: F401  what the first load in a process also pays
    import onnxruntime  # noqa: F401

    imports = time.perf_counter() - started
    started = time.perf_counter()
    detector = NudeNetDetector(threshold=0.5, threads=1)
    load = time.perf_counter() - started
    out(f"classifier: {detector.model} {detector.version} from {detector.path}")
    out(f"classifier: imports {imports * 1000:.0f} ms, model load {load * 1000:.0f} ms (once per worker process)")

    data = [synthetic.encode(synthetic.make_image(20_000 + n, size=(1024, 768)), quality=85)
            for n in tqdm(range(images), unit="img", desc="generating")]
    detector.classify(image_frames(data[0])[0])  # the first run allocates onnxruntime's buffers
    model_ms, job_ms, flagged = [], [], 0
    for blob in tqdm(data, unit="img", desc="classifying"):
        started = time.perf_counter()
        frame = image_frames(blob)[0]
        decoded = time.perf_counter()
        result = detector.classify(frame)
        done = time.perf_counter()
        model_ms.append((done - decoded) * 1000)
        job_ms.append((done - started) * 1000)
        flagged += result.passed
    out(f"classifier: model alone {statistics.median(model_ms):.1f} ms/image median "
        f"(p95 {_p95(model_ms):.1f}); decode + model {statistics.median(job_ms):.1f} ms/image median "
        f"(p95 {_p95(job_ms):.1f}) = {1000 / statistics.mean(job_ms):.1f} images/s on one core; "
        f"{flagged} of {images} benign synthetic images over threshold {detector.threshold:.2f}")


def _p95(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
