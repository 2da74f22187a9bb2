"""The classifier interface: an RGB Pillow image in, a `Result` out, no database and no settings.

The registry that loads the classifiers settings name is `detection.classifiers`; the job that reads
items and writes signals is `detection.classify`.
"""

from dataclasses import dataclass, field


class ConfigurationError(ValueError):
    """A classifier was configured with options it cannot work with."""


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
            raise ConfigurationError(f"{type(self).__name__}: threshold must be between 0 and 1, not {threshold}")
        self.threshold = threshold

    def classify(self, image):
        """Judge one RGB image. Returns a Result; raises DetectorError if it cannot."""
        raise NotImplementedError

    def result(self, score, label, detections=()):
        return Result(detector=self.name, title=self.title, model=self.model, version=self.version, score=float(score),
                      label=label, threshold=self.threshold, detections=tuple(detections))
