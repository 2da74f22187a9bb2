"""The classifiers that settings name (`CLASSIFIERS`), loaded once a process by dotted path.

Settings name each classifier with its options, for example::

    CLASSIFIERS = [{"path": "detection.detectors.nudity.NudeNetDetector", "threshold": 0.5, "severity": 60}]

`path` and `severity` belong to the job (severity ranks the case); every other key goes to the
classifier's constructor. A bare dotted path is accepted too.
"""

import json
import threading
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from detection.detectors.classifier import ConfigurationError, ImageClassifier

JOB_KEYS = {"path", "severity"}
DEFAULT_SEVERITY = 60


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
            try:
                classifier = cls(**options)
            except ConfigurationError as exc:
                raise ImproperlyConfigured(str(exc)) from exc
            _loaded[key] = Configured(classifier, int(spec.get("severity", DEFAULT_SEVERITY)))
        return _loaded[key]


def configured():
    """Every classifier named in settings.CLASSIFIERS, in order."""
    return [load(spec) for spec in getattr(settings, "CLASSIFIERS", [])]


def forget():
    """Drop loaded classifiers (tests that swap models; a process normally keeps them for life)."""
    with _lock:
        _loaded.clear()
