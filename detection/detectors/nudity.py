"""Nudity classifier: NudeNet's 320n detector, whose ONNX model ships inside the nudenet wheel."""

import importlib.metadata
from pathlib import Path

import numpy as np

from detection.detectors.classifier import Detection, DetectorError, ImageClassifier

# The classes whose exposure makes an image sexual content; faces, feet, bellies, armpits and
# covered parts are kept in the details but do not score.
SCORED_CLASSES = (
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
)
INPUT_SIDE = 320  # the 320n model's input; larger images are padded square and scaled to it anyway


def model_path():
    import nudenet

    return Path(nudenet.__file__).resolve().parent / "320n.onnx"


class NudeNetDetector(ImageClassifier):
    name = "nudenet"
    title = "Nudity classifier"
    model = "NudeNet 320n"

    def __init__(self, *, threshold=0.5, classes=SCORED_CLASSES, threads=1):
        super().__init__(threshold=threshold)
        self.classes = tuple(classes)
        self.version = importlib.metadata.version("nudenet")
        self.path = model_path()
        self._detector = _load(self.path, threads)

    def classify(self, image):
        if image.mode != "RGB":
            image = image.convert("RGB")
        image = image.copy()
        # A good downscale here beats OpenCV's bilinear resize of a large image inside NudeNet.
        image.thumbnail((INPUT_SIDE, INPUT_SIDE))
        # NudeNet expects what cv2.imread returns: BGR, contiguous.
        bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
        try:
            raw = self._detector.detect(bgr)
        except Exception as exc:  # onnxruntime and OpenCV raise their own types
            raise DetectorError(f"{self.model} failed: {exc}") from exc
        width, height = image.size
        detections = sorted(
            (Detection(d["class"], float(d["score"]), _fraction(d["box"], width, height)) for d in raw),
            key=lambda d: -d.score,
        )
        scored = [d for d in detections if d.label in self.classes]
        top = scored[0] if scored else None
        return self.result(top.score if top else 0.0, top.label if top else "", detections)


def _fraction(box, width, height):
    x, y, w, h = box
    return (x / width, y / height, w / width, h / height)


def _load(path, threads):
    """A NudeDetector on a session we build: NudeDetector takes no session options, and onnxruntime
    would otherwise start a thread per core; one worker should use one core."""
    import nudenet
    import onnxruntime

    if not path.is_file():
        raise DetectorError(f"NudeNet model not found at {path}; reinstall the nudenet package")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise DetectorError(f"cannot load NudeNet model {path}: {exc}") from exc
    detector = nudenet.NudeDetector.__new__(nudenet.NudeDetector)
    detector.onnx_session = session
    detector.input_width = detector.input_height = INPUT_SIDE
    detector.input_name = session.get_inputs()[0].name
    return detector
