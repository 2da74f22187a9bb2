"""Recovery after a worker dies: claims renewed by a heartbeat, short leases, a quick lapse check.

A live batch renews its claims, so a lease of a few heartbeats frees a dead worker's items soon
after its death, and cron's lease check wakes the scans. The last test kills a real worker in the
middle of a batch and times the console, running on its own with default settings, to the rescan.

These are transactional tests: the heartbeat's thread and the worker processes see only committed rows.
"""

import io
import logging
import os
import signal
import subprocess
import threading
import time
from datetime import timedelta

import django_rq
import pytest
from django.conf import settings as django_settings
from django.db.models import Count
from django.utils import timezone
from PIL import ImageDraw

from cases.sweep import rescan_lapsed, sweep
from detection import intake, matching
from detection.banks import import_hashes
from detection.detectors.hashing import digests
from detection.jobs import classify, lease
from detection.jobs import scan as jobs
from detection.models import Item, ItemStatus
from reviewconsole.devtools import synthetic
from tests.conftest import PYTHON, ROOT, worker_env
from tests.factories import encoded, scanned_item

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.usefixtures("redis_conn")]

LONG_AGO = timedelta(seconds=3600)


def stamps(items):
    return dict(Item.objects.filter(pk__in=[i.pk for i in items]).values_list("pk", "scan_started_at"))


def heartbeats_running():
    return [t for t in threading.enumerate() if t.name == "lease-heartbeat"]


def test_the_heartbeat_renews_its_own_claim_only_and_stops_with_the_batch(settings):
    settings.SCAN_LEASE_SECONDS = 0.6  # a heartbeat every 0.2 s
    for n in range(5):
        intake.submit_file(encoded(500 + n), account_id="acct-r1")
    mine, token = jobs.claim_items(3)
    theirs, _ = jobs.claim_items(2)  # another worker's live claim
    taken = mine[2]
    everything = [*mine, *theirs]
    old = timezone.now() - LONG_AGO
    Item.objects.filter(pk__in=[i.pk for i in everything]).update(scan_started_at=old)
    # Our lease on this one lapsed and another scan took it over: it is that scan's now.
    Item.objects.filter(pk=taken.pk).update(scan_token="another-scan")
    with lease.renewed(jobs.held(mine, token), settings.SCAN_LEASE_SECONDS):
        time.sleep(0.7)
        during = stamps(everything)
    assert all(during[i.pk] > old for i in mine[:2])  # renewed
    assert all(during[i.pk] == old for i in [taken, *theirs])  # never someone else's
    assert not heartbeats_running()  # stopped with the batch...
    after = stamps(everything)
    time.sleep(0.5)
    assert stamps(everything) == after  # ...and renews nothing afterwards


def test_a_long_batch_keeps_its_claim_while_each_file_is_hashed(settings, monkeypatch):
    settings.SCAN_LEASE_SECONDS = 0.6
    items = [intake.submit_file(encoded(510 + n), account_id="acct-r2") for n in range(2)]
    claimed, token = jobs.claim_items(10)
    claimed_at = stamps(items)
    seen = []
    real = jobs._hash_fields

    def slow(item):
        time.sleep(0.8)  # a long file: a few heartbeats long
        seen.append(stamps(items)[item.pk])
        return real(item)

    monkeypatch.setattr(jobs, "_hash_fields", slow)
    outcomes, _ = jobs.scan_claimed(claimed, token)
    assert outcomes == ["scanned", "scanned"]
    assert all(stamp > claimed_at[item.pk] for stamp, item in zip(seen, claimed, strict=True))
    assert not heartbeats_running()


def test_a_failing_heartbeat_is_logged_and_tried_again(caplog):
    class Rows:
        db, calls = "default", 0

        def all(self):
            return self

        def update(self, **fields):
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("the database went away")
            return 1

    rows = Rows()
    with caplog.at_level(logging.WARNING), lease.renewed(rows, 0.15):
        time.sleep(0.4)
    assert rows.calls >= 2 and "could not renew a claim's lease" in caplog.text


def test_a_classification_batch_renews_its_claims(settings, monkeypatch):
    settings.CLASSIFY_LEASE_SECONDS = 0.6
    settings.CLASSIFIERS = []  # the test drives the batch itself
    item = scanned_item(encoded(520), account="acct-r3")
    claimed = classify.claim_items(1)
    claimed_at = stamps([item])[item.pk]
    seen = []

    def slow(item, configured):
        time.sleep(0.8)
        seen.append(stamps([item])[item.pk])
        return []

    monkeypatch.setattr(classify, "classify_media", slow)
    assert classify.classify_claimed(claimed)[0] == {item.pk: "classified"}
    assert seen[0] > claimed_at and not heartbeats_running()


def test_a_failed_classification_waits_for_its_retry_not_just_the_lease(settings, monkeypatch):
    settings.CLASSIFIERS = []
    item = scanned_item(encoded(521), account="acct-r4")

    def broken(item, configured):
        raise RuntimeError("model file unreadable")

    monkeypatch.setattr(classify, "classify_media", broken)
    assert classify.classify_claimed(classify.claim_items(1))[0] == {item.pk: "failed"}
    assert classify.claim_items(1) == {}  # held past the lease...
    retry_at = stamps([item])[item.pk] + timedelta(seconds=settings.CLASSIFY_LEASE_SECONDS)
    expected = timezone.now() + timedelta(seconds=settings.CLASSIFY_RETRY_SECONDS)
    assert abs((retry_at - expected).total_seconds()) < 5  # ...until CLASSIFY_RETRY_SECONDS


def test_the_lease_check_wakes_scans_for_a_lapsed_claim_only(redis_conn):
    items = [intake.submit_file(encoded(530 + n), account_id="acct-r5") for n in range(2)]
    redis_conn.flushdb()  # forget the intake's kicks: what follows must come from the check
    Item.objects.filter(pk__in=[i.pk for i in items]).update(enqueued_at=timezone.now() - LONG_AGO)
    jobs.claim_items(10)  # a live claim on work that waited long: in flight, not lost
    scans = django_rq.get_queue("scan")
    assert not rescan_lapsed() and scans.count == 0
    Item.objects.filter(pk=items[0].pk).update(scan_started_at=timezone.now() - LONG_AGO)  # its worker died
    assert rescan_lapsed() and scans.count == django_settings.SCAN_SLOTS
    assert rescan_lapsed() and scans.count == django_settings.SCAN_SLOTS  # jobs already waiting: no more


def test_the_sweep_takes_a_lapsed_claim_whatever_the_items_age(redis_conn):
    item = intake.submit_file(encoded(540), account_id="acct-r6")
    jobs.claim_items(1)
    assert sweep()["items"] == 0  # fresh, and held by a live claim
    Item.objects.filter(pk=item.pk).update(scan_started_at=timezone.now() - LONG_AGO)
    assert sweep()["items"] == 1  # enqueued moments ago, but its worker died


def test_the_cron_module_checks_leases_on_the_scan_queue():
    import importlib

    from rq import cron

    import reviewconsole.cron as module
    importlib.reload(module)
    jobs_by_name = {job["func"].__name__: job for job in cron._job_data_registry}
    cron._job_data_registry.clear()
    check = jobs_by_name["rescan_lapsed"]
    assert check["queue_name"] == "scan" and check["interval"] == django_settings.LEASE_CHECK_SECONDS


# A worker killed in the middle of a batch, the console left to recover on its own ----------------

BIG = (2000, 1500)  # large, slow PNGs: a batch of them takes the worker a few seconds
RECOVERY_SECONDS = 60


def big_pngs(count):
    base = synthetic.make_image(550, size=BIG)
    images = []
    for n in range(count):
        img = base.copy()
        ImageDraw.Draw(img).rectangle([40 * n, 10, 40 * n + 30, 40], fill=(250, 20 * n % 256, 40))
        images.append(synthetic.encode(img, fmt="PNG"))
    return images


def start(argv, log_path):
    """A console process (in its own process group, as runconsole starts its children)."""
    env = worker_env() | {"DJANGO_SETTINGS_MODULE": "reviewconsole.settings"}
    with open(log_path, "ab") as log_file:
        return subprocess.Popen([PYTHON, str(ROOT / "manage.py"), *argv], env=env, cwd=ROOT,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)


def kill(proc):
    """SIGKILL the process and everything in its group (a forking worker's work horse too)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def wait_for(condition, seconds, step=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


# The console's own commands (reviewconsole.management.commands.runconsole), default settings.
WORKER = ["rqworker", *django_settings.WORKER_QUEUES, "--max-jobs", "5000", "--with-scheduler", "-v", "0"]
CRON = ["rqcron", "reviewconsole.cron", "--logging-level", "WARNING"]


def test_a_worker_killed_mid_batch_has_its_items_scanned_again_within_a_minute(tmp_path):
    images = big_pngs(10)
    import_hashes("known", io.StringIO("\n".join(digests(data)[0] for data in images)), hash_type="md5")
    matching.invalidate()
    items = [intake.submit_file(data, account_id="acct-r9") for data in images]
    ids = [item.pk for item in items]
    logs = tmp_path / "console.log"
    processes = [start(WORKER, logs)]
    try:
        held = Item.objects.filter(pk__in=ids, status=ItemStatus.QUEUED).exclude(scan_token="")
        assert wait_for(held.exists, 60), f"the worker never claimed the batch:\n{logs.read_text()[-3000:]}"
        kill(processes[0])
        killed_at = timezone.now()
        lost = set(held.values_list("pk", flat=True))
        assert lost, "the batch finished before the worker was killed"

        processes += [start(WORKER, logs), start(CRON, logs)]  # runconsole restarts the worker; cron runs on
        left = Item.objects.filter(pk__in=ids, status=ItemStatus.QUEUED)
        recovered = wait_for(lambda: not left.exists(), RECOVERY_SECONDS + 15, step=0.5)
        assert recovered, f"items still queued: {list(left.values_list('pk', flat=True))}\n{logs.read_text()[-3000:]}"
    finally:
        for proc in processes:
            kill(proc)
    rows = Item.objects.filter(pk__in=ids).annotate(found=Count("signals"))
    assert {(row.status, row.found) for row in rows} == {("scanned", 1)}  # every item once, one match each
    again = [row for row in rows if row.pk in lost]
    assert all(row.scan_attempts == 2 for row in again)  # the dead claim, then the one that finished
    seconds = max((row.scanned_at - killed_at).total_seconds() for row in again)
    print(f"\n{len(again)} items of the killed worker scanned again {seconds:.1f} s after the kill")
    assert seconds < RECOVERY_SECONDS
