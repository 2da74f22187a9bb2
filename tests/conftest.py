"""Shared fixtures: a real Redis (private unless REDIS_URL is set), users per role, images, helpers."""

import os
import sys
from functools import lru_cache
from pathlib import Path

import django_rq
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group as Role
from django.db import connection

from cases.models import ApiToken
from detection import matching
from reviewconsole.devtools import synthetic
from reviewconsole.redis_server import PrivateRedis

ROOT = Path(__file__).resolve().parent.parent
_redis_server = None


def pytest_configure(config):
    global _redis_server  # noqa: PLW0603
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.UNDO_SECONDS = 0  # tests of the undo window set their own
    settings.QA_SAMPLE_RATE = 0  # tests of QA sampling set their own
    if not os.environ.get("REDIS_URL"):
        _redis_server = PrivateRedis(settings.PRIVATE_REDIS_SOCKET).start()


def pytest_unconfigure(config):
    if _redis_server:
        _redis_server.stop()


@pytest.fixture(autouse=True)
def _fresh_index():
    matching.invalidate()
    yield
    matching.invalidate()


@pytest.fixture(autouse=True)
def _evidence_root(tmp_path, settings):
    settings.EVIDENCE_ROOT = tmp_path / "evidence"


@pytest.fixture
def redis_conn():
    conn = django_rq.get_connection("default")
    conn.flushdb()
    yield conn
    conn.flushdb()


def drain():
    """Run a real RQ worker in burst mode, in this process, until every queue is empty."""
    worker = django_rq.get_worker(*settings.WORKER_QUEUES)
    worker.work(burst=True, logging_level="WARNING")
    return worker


def worker_env():
    """Environment for a worker subprocess that must see this test run's database and Redis."""
    db = connection.settings_dict
    env = dict(os.environ, TESTING="1", EVIDENCE_ROOT=str(settings.EVIDENCE_ROOT), PYTHONPATH=str(ROOT))
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        env["DATABASE_URL"] = f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
    return env


PYTHON = sys.executable


@lru_cache(maxsize=512)
def _image(seed, fmt, size, edit):
    img = synthetic.make_image(seed, size=size)
    if edit:
        img = synthetic.EDITS[edit](img)
    return synthetic.encode(img, fmt=fmt)


@pytest.fixture
def image_bytes():
    def make(seed=1, fmt="JPEG", size=(640, 480), edit=None):
        return _image(seed, fmt, tuple(size), edit)

    return make


def make_user(username, role=None, **flags):
    user = get_user_model().objects.create_user(username, password="pw-" + username, **flags)
    if role:
        user.groups.add(Role.objects.get(name=role))
    return user


@pytest.fixture
def users(db):
    return {
        "reviewer": make_user("rita", "reviewer"),
        "specialist": make_user("sam", "specialist"),
        "senior": make_user("sena", "senior"),
        "analyst": make_user("ana", "analyst"),
        "admin": make_user("ada", is_staff=True, is_superuser=True),
        "nobody": make_user("nora"),
        "liaison": make_user("lia", "liaison"),
        "officer": make_officer("olive", "Metro Police"),
    }


def make_officer(username, agency_name):
    """A law-enforcement officer: a user tied to an agency, with no console role."""
    from cases.models import Agency, AgencyMember

    agency, _ = Agency.objects.get_or_create(name=agency_name)
    user = make_user(username)
    AgencyMember.objects.create(user=user, agency=agency, badge=f"B-{username}")
    return user


PDF = (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
       b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")


@pytest.fixture
def api_token(db):
    _, key = ApiToken.issue("platform")
    return key


@pytest.fixture
def api(client, api_token):
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {api_token}"
    return client


def verify_2fa(client, user):
    """Give this client's session a verified second factor, as the verify page would."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device, _ = TOTPDevice.objects.get_or_create(user=user, name="test", defaults={"confirmed": True})
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device
