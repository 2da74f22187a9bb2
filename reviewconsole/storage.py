"""The private evidence store: original bytes under EVIDENCE_ROOT, which no URL maps to."""

import os
import uuid
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.utils import timezone


def root():
    return Path(settings.EVIDENCE_ROOT)


def save_original(data, folder="originals"):
    """Write bytes durably to a new file and return its path relative to the evidence root."""
    now = timezone.now()
    relative = Path(folder) / f"{now:%Y}" / f"{now:%m}" / uuid.uuid4().hex
    target = root() / relative
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_suffix(".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return str(relative)


@lru_cache(maxsize=8)
def _resolved(root_path):
    return Path(root_path).resolve()


def read_original(relative):
    base = _resolved(str(root()))  # resolved once per root: it is read for every scan
    path = (base / relative).resolve()
    if base not in path.parents:
        raise FileNotFoundError(relative)
    return path.read_bytes()


def delete_original(relative):
    try:
        (root() / relative).unlink()
    except FileNotFoundError:
        pass


def derivative_path(item_id, name):
    path = root() / "derivatives" / str(item_id // 1000) / f"{item_id}-{name}"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
