"""The whole pipeline with a real Redis and real RQ workers: intake -> scan -> signal -> case.

These are transactional tests: jobs are enqueued only after a commit, as in production.
"""

import os
import signal
import subprocess
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from cases.models import Case
from detection import intake
from detection.models import Item, ItemStatus, Signal
from reviewconsole.devtools import synthetic
from tests.conftest import PYTHON, ROOT, drain, worker_env
from tests.factories import known_bank

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.usefixtures("redis_conn")]


def altered(seed, edit="watermarked"):
    return synthetic.encode(synthetic.EDITS[edit](synthetic.make_image(seed)))


def test_an_api_upload_ends_as_a_ranked_case(api):
    known_bank([11])
    response = api.post("/api/v1/items", {"account": "acct-9", "file": SimpleUploadedFile("a.jpg", altered(11))})
    assert response.status_code == 202
    drain()
    body = api.get(f"/api/v1/items/{response.json()['id']}").json()
    assert body["status"] == "scanned" and body["case"] is not None
    case = Case.objects.get(pk=body["case"])
    assert case.queue.slug == "known-material" and case.priority >= 75


def test_unrelated_images_make_no_case(api):
    known_bank([11])
    for seed in (500, 501, 502):
        intake.submit_file(synthetic.encode(synthetic.make_image(seed)), account_id="acct-1")
    drain()
    assert Item.objects.filter(status=ItemStatus.SCANNED).count() == 3
    assert not Case.objects.exists()


def test_bad_files_are_rejected_and_the_worker_carries_on(image_bytes):
    bad = [b"", b"\xff\xd8\xff\xe0garbage", image_bytes(1)[:3000], b"GIF89a<script>x</script>", b"MZ\x90\x00exe"]
    for data in bad:
        intake.submit_file(data or b"\x00", account_id="acct-1")
    good = intake.submit_file(image_bytes(2), account_id="acct-1")
    drain()
    statuses = dict(Item.objects.values_list("pk", "status"))
    assert statuses.pop(good.pk) == ItemStatus.SCANNED
    assert set(statuses.values()) == {ItemStatus.REJECTED}
    assert all(Item.objects.filter(status=ItemStatus.REJECTED).values_list("reject_reason", flat=True))


def test_a_scan_run_twice_stores_its_findings_once():
    known_bank([12])
    item = intake.submit_file(altered(12), account_id="acct-1")
    drain()
    from django_rq import get_queue
    get_queue("scan").enqueue("detection.jobs.scan.scan_item", item.pk)
    drain()
    assert Signal.objects.filter(item=item).count() == 1
    assert Case.objects.count() == 1


def test_a_report_becomes_a_case_through_the_triage_queue():
    intake.submit_report(reporter="u1", reason="grooming", account_id="acct-5")
    drain()
    (case,) = Case.objects.all()
    assert case.queue.slug == "user-reports" and case.account.external_id == "acct-5"


def test_after_a_redis_flush_the_sweep_recovers_every_pending_item(redis_conn):
    known_bank([13])
    items = [intake.submit_file(altered(13), account_id=f"acct-{n}") for n in range(3)]
    intake.submit_report(reporter="u", reason="csam", account_id="acct-7")
    redis_conn.flushdb()  # every queued job is gone
    drain()
    assert Item.objects.filter(status=ItemStatus.QUEUED).count() == 3
    call_command("sweep", "--older-than", "0", verbosity=0)
    drain()
    assert all(Item.objects.get(pk=i.pk).status == ItemStatus.SCANNED for i in items)
    assert Case.objects.count() == 4
    assert not Signal.objects.filter(triaged_at__isnull=True).exists()


def test_intake_survives_redis_being_down(monkeypatch, image_bytes, caplog):
    import redis

    def down(*args, **kwargs):
        raise redis.exceptions.ConnectionError("connection refused")

    monkeypatch.setattr("reviewconsole.queueing._queue", down)
    item = intake.submit_file(image_bytes(3), account_id="acct-1")
    assert Item.objects.get(pk=item.pk).status == ItemStatus.QUEUED  # committed; the sweep hands it on
    assert "the sweep will retry" in caplog.text
    monkeypatch.undo()
    call_command("sweep", "--older-than", "0", verbosity=0)
    drain()
    assert Item.objects.get(pk=item.pk).status == ItemStatus.SCANNED


SLOW_WORKER = """
import sys, time, django
django.setup()
import detection.detectors.hashing as hashing
real = hashing.hash_image
def slow(*a, **k):
    open(sys.argv[1], "w").write("started")
    time.sleep(60)
    return real(*a, **k)
hashing.hash_image = slow
import detection.jobs.scan
detection.jobs.hash_image = slow
from django.conf import settings
import django_rq
django_rq.get_worker(*settings.WORKER_QUEUES).work(burst=True)
"""


def test_a_worker_killed_mid_scan_loses_nothing_and_the_item_is_scanned_once(tmp_path, settings):
    known_bank([14])
    item = intake.submit_file(altered(14), account_id="acct-1")
    marker = tmp_path / "started"
    env = worker_env() | {"DJANGO_SETTINGS_MODULE": "reviewconsole.settings"}
    worker = subprocess.Popen([PYTHON, "-c", SLOW_WORKER, str(marker)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the worker never started the scan"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    item.refresh_from_db()
    assert item.status == ItemStatus.QUEUED and item.scan_attempts == 1
    call_command("sweep", "--older-than", "0", verbosity=0)
    drain()
    assert Item.objects.get(pk=item.pk).status == ItemStatus.QUEUED  # the dead scan's claim still holds
    settings.SCAN_LEASE_SECONDS = 0  # ...until its lease lapses
    call_command("sweep", "--older-than", "0", verbosity=0)
    drain()
    item.refresh_from_db()
    assert item.status == ItemStatus.SCANNED and item.scan_attempts == 2
    assert Signal.objects.filter(item=item).count() == 1
    assert Case.objects.count() == 1


def test_a_file_that_keeps_killing_workers_is_rejected_after_the_attempt_limit(settings):
    item = intake.submit_file(altered(15), account_id="acct-1")
    Item.objects.filter(pk=item.pk).update(scan_attempts=settings.SCAN_MAX_ATTEMPTS)
    drain()
    item.refresh_from_db()
    assert item.status == ItemStatus.REJECTED and "attempts" in item.reject_reason


def test_the_cron_module_registers_the_sweep():
    import importlib

    from rq import cron

    import reviewconsole.cron as module
    importlib.reload(module)
    names = [job["func"].__name__ for job in cron._job_data_registry]
    cron._job_data_registry.clear()
    assert "sweep_job" in names
