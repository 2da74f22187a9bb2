"""Reading settings from the environment: the small helpers settings.py uses."""

import os


def envbool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def envint(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def envlist(name, default=""):
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]
