"""Uploads on a bank's page are imported by a background job, with progress, atomic with their audit.

Transactional tests with a real Redis and a burst worker: the job is enqueued only after a commit.
"""

from datetime import timedelta

import django_rq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from cases.sweep import sweep
from detection.banks import queue_import, run_import
from detection.models import Bank, BankHash, BankImport
from reviewconsole import storage
from reviewconsole.audit.models import AuditEvent
from tests.conftest import drain, verify_2fa
from tests.factories import hash_values

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.usefixtures("redis_conn")]


def signed_in(client, user):
    client.force_login(user)
    verify_2fa(client, user)
    return client


def hash_list(seeds, extra=()):
    return "\n".join(["hash,type,label", *(f"{hash_values(s)['md5']},md5,ref-{s}" for s in seeds), *extra]).encode()


def upload(client, bank, content, name="list.csv", **fields):
    return client.post(f"/banks/{bank.pk}/import/", {"file": SimpleUploadedFile(name, content), **fields})


def test_an_upload_is_queued_with_its_audit_row_then_imported_by_the_job(client, users):
    bank = Bank.objects.create(name="partner")
    content = hash_list([1, 2, 3, 1], extra=["nothex,md5,bad"])
    response = upload(signed_in(client, users["senior"]), bank, content)
    assert response.status_code == 302 and response["Location"] == f"/banks/{bank.pk}/"

    job = BankImport.objects.get()
    assert (job.status, job.requested_by, job.format, job.size) == ("queued", users["senior"], "csv", len(content))
    assert not bank.hashes.exists()  # nothing imported inside the request
    queued = AuditEvent.objects.get(action="bank.import_queued")
    assert queued.actor == users["senior"] and queued.details["import"] == job.pk
    # The file waits in the private evidence store, not under a URL.
    assert storage.read_original(job.file_path) == content
    stored = storage.root() / job.file_path
    assert stored.is_file() and stored.stat().st_mode & 0o777 == 0o600
    assert [(j.func_name, j.args) for j in django_rq.get_queue("default").get_jobs()] == [
        ("detection.banks.run_import", (job.pk,))]
    assert "Queued" in client.get(f"/banks/{bank.pk}/").content.decode()

    drain()
    job.refresh_from_db()
    assert (job.status, job.lines_read, job.imported, job.duplicates, job.error_count) == ("done", 5, 3, 1, 1)
    assert job.errors == ["line 6: not a md5 hash: expected 32 hex digits, got 'nothex'"]
    assert job.started_at and job.finished_at >= job.started_at and not job.error
    assert bank.hashes.count() == 3 and not stored.exists()  # imported: the list need not stay
    done = AuditEvent.objects.get(action="bank.imported")
    assert done.actor == users["senior"] and done.object_id == str(bank.pk)
    assert {k: done.details[k] for k in ("import", "read", "added", "duplicates", "error_count")} == {
        "import": job.pk, "read": 5, "added": 3, "duplicates": 1, "error_count": 1}
    page = client.get(f"/banks/{bank.pk}/").content.decode()
    assert "Done" in page and "line 6: not a md5 hash" in page


def test_running_the_job_twice_imports_nothing_twice(users):
    bank = Bank.objects.create(name="partner")
    job = queue_import(users["senior"], bank, hash_list(range(1, 21)), fmt="csv", hash_type=None)
    drain()
    assert run_import(job.pk) is None  # done: skipped
    job.refresh_from_db()
    assert (job.status, job.imported) == ("done", 20)
    assert bank.hashes.count() == 20 and AuditEvent.objects.filter(action="bank.imported").count() == 1


def test_an_import_stuck_running_past_its_lease_is_rerun_by_the_sweep_without_duplicates(users, settings):
    bank = Bank.objects.create(name="partner")
    job = queue_import(users["senior"], bank, hash_list(range(1, 11)), fmt="csv", hash_type=None)
    django_rq.get_queue("default").empty()
    # A worker died after committing the first half: its claim stays, the entries are in.
    BankHash.objects.bulk_create([BankHash(bank=bank, hash_type="md5", value=hash_values(s)["md5"])
                                  for s in range(1, 6)])
    started = timezone.now() - timedelta(seconds=60)
    BankImport.objects.filter(pk=job.pk).update(status="running", started_at=started)
    settings.BANK_IMPORT_LEASE_SECONDS = 3600
    assert sweep(older_than=0)["imports"] == 0  # still within its lease
    assert run_import(job.pk) is None  # and no second run takes it over
    settings.BANK_IMPORT_LEASE_SECONDS = 30
    assert sweep(older_than=0)["imports"] == 1
    drain()
    job.refresh_from_db()
    assert (job.status, job.lines_read, job.imported, job.duplicates) == ("done", 10, 5, 5)
    assert bank.hashes.count() == 10


def test_after_a_redis_flush_the_sweep_re_enqueues_a_queued_import(users, redis_conn, settings):
    bank = Bank.objects.create(name="partner")
    job = queue_import(users["senior"], bank, hash_list([1, 2]), fmt="csv", hash_type=None)
    redis_conn.flushdb()  # the job is gone; the row still says queued
    drain()
    assert BankImport.objects.get(pk=job.pk).status == "queued"
    settings.SWEEP_AFTER_SECONDS = 3600
    assert sweep()["imports"] == 0  # not waited long enough
    assert sweep(older_than=0)["imports"] == 1
    drain()
    job.refresh_from_db()
    assert (job.status, job.imported) == ("done", 2) and bank.hashes.count() == 2


def test_a_corrupt_upload_ends_failed_with_a_reason_and_an_audit_row(users):
    bank = Bank.objects.create(name="partner")
    binary = queue_import(users["senior"], bank, b"PK\x03\x04\x00\x00" + bytes(range(256)), fmt="csv", hash_type=None)
    lost = queue_import(users["senior"], bank, hash_list([1]), fmt="csv", hash_type=None)
    storage.delete_original(lost.file_path)
    drain()
    binary.refresh_from_db()
    lost.refresh_from_db()
    assert binary.status == "failed" and "binary file" in binary.error and binary.finished_at
    assert lost.status == "failed" and "could not be read" in lost.error
    assert not bank.hashes.exists() and not AuditEvent.objects.filter(action="bank.imported").exists()
    failed = AuditEvent.objects.filter(action="bank.import_failed").order_by("pk")
    assert [e.details["import"] for e in failed] == [binary.pk, lost.pk]
    assert run_import(binary.pk) is None  # a failed import stays failed


def test_a_specialist_may_not_upload_and_nothing_is_queued(client, users):
    bank = Bank.objects.create(name="partner")
    signed_in(client, users["specialist"])
    assert client.get(f"/banks/{bank.pk}/import/").status_code == 403
    assert upload(client, bank, hash_list([1])).status_code == 403
    assert not BankImport.objects.exists() and not django_rq.get_queue("default").get_jobs()
