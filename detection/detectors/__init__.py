"""Image classifiers for new, unknown material: named by dotted path in settings, loaded once a process.

A classifier is pure: an RGB Pillow image in, a `Result` out, no database. The job that reads items
and writes signals (detection.classify) sits above it. Settings name each classifier with its
options, for example::

    CLASSIFIERS = [{"path": "detection.detectors.nudity.NudeNetDetector", "threshold": 0.5, "severity": 60}]

`path` and `severity` belong to the job (severity ranks the case); every other key goes to the
classifier's constructor. A bare dotted path is accepted too.
"""

import json
import threading
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

JOB_KEYS = {"path", "severity"}
DEFAULT_SEVERITY = 60


class DetectorError(Exception):
    """A classifier could not judge an input (broken model, bad input, runtime failure)."""


@dataclass(frozen=True)
class Detection:
    """One thing the model saw: its class, confidence and box as fractions of the image (x, y, w, h)."""

    label: str
    score: float
    box: tuple = ()

    def as_dict(self):
        return {"class": self.label, "score": round(self.score, 3), "box": [round(v, 3) for v in self.box]}


@dataclass(frozen=True)
class Result:
    """A classifier's verdict on one image (or the strongest frame of a video)."""

    detector: str
    title: str
    model: str
    version: str
    score: float
    label: str
    threshold: float
    detections: tuple = field(default_factory=tuple)

    @property
    def passed(self):
        return self.score >= self.threshold


class ImageClassifier:
    """Base class: subclasses set `name`, `title`, `model` and `version`, and implement `classify`."""

    name = ""
    title = "Classifier"
    model = ""
    version = ""

    def __init__(self, *, threshold=0.5):
        if not 0 <= threshold <= 1:
            raise ImproperlyConfigured(f"{type(self).__name__}: threshold must be between 0 and 1, not {threshold}")
        self.threshold = threshold

    def classify(self, image):
        """Judge one RGB image. Returns a Result; raises DetectorError if it cannot."""
        raise NotImplementedError

    def result(self, score, label, detections=()):
        return Result(detector=self.name, title=self.title, model=self.model, version=self.version, score=float(score),
                      label=label, threshold=self.threshold, detections=tuple(detections))


@dataclass(frozen=True)
class Configured:
    """A loaded classifier with the job-level options that came with it in settings."""

    classifier: ImageClassifier
    severity: int


_loaded = {}
_lock = threading.Lock()


def _normalise(spec):
    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, dict) or not spec.get("path"):
        raise ImproperlyConfigured(f"CLASSIFIERS entries need a dotted 'path': {spec!r}")
    return spec


def load(spec):
    """The classifier a settings entry names, built once a process (models are slow to load)."""
    spec = _normalise(spec)
    key = json.dumps(spec, sort_keys=True, default=str)
    with _lock:
        if key not in _loaded:
            try:
                cls = import_string(spec["path"])
            except ImportError as exc:
                raise ImproperlyConfigured(f"cannot import classifier {spec['path']}: {exc}") from exc
            options = {k: v for k, v in spec.items() if k not in JOB_KEYS}
            _loaded[key] = Configured(cls(**options), int(spec.get("severity", DEFAULT_SEVERITY)))
        return _loaded[key]


def configured():
    """Every classifier named in settings.CLASSIFIERS, in order."""
    return [load(spec) for spec in getattr(settings, "CLASSIFIERS", [])]


def forget():
    """Drop loaded classifiers (tests that swap models; a process normally keeps them for life)."""
    with _lock:
        _loaded.clear()
