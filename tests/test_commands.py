"""Management commands: ingest, import_hashes, create_api_token, sweep, load_demo, check --deploy."""

import io
import os
import subprocess

import pytest
from django.core.management import CommandError, call_command

from cases.models import ApiToken
from detection.models import Bank, BankHash, Item
from tests.conftest import PYTHON, ROOT

pytestmark = pytest.mark.django_db
PDQ = "f" * 64


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_ingest_stores_files_as_items(tmp_path, image_bytes):
    paths = []
    for n in range(2):
        path = tmp_path / f"{n}.jpg"
        path.write_bytes(image_bytes(n))
        paths.append(str(path))
    out, _ = run("ingest", *paths, "--account", "a-1", "--group", "g-1")
    assert Item.objects.filter(account__external_id="a-1", group__external_id="g-1").count() == 2
    assert out.count("queued") == 2


def test_ingest_refuses_missing_files(tmp_path):
    with pytest.raises(CommandError, match="not a file"):
        run("ingest", str(tmp_path / "nope.jpg"), "--account", "a-1")
    assert not Item.objects.exists()


def test_import_hashes_from_txt_creates_the_bank(tmp_path):
    path = tmp_path / "h.txt"
    path.write_text(f"# comment\n{PDQ}\n{'0' * 64}\n\n{PDQ}\n")
    out, _ = run("import_hashes", "bank-a", str(path), "--type", "pdq")
    assert "2 added, 1 already present" in out
    assert Bank.objects.get(name="bank-a").hashes.count() == 2


def test_import_hashes_from_csv_with_types_and_labels(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text(f"hash,type,label\n{PDQ},pdq,ref-1\n{'a' * 32},md5,ref-2\n{'b' * 16},phash,ref-3\n")
    run("import_hashes", "bank-b", str(path))
    assert set(BankHash.objects.values_list("hash_type", "label")) == {("pdq", "ref-1"), ("md5", "ref-2"),
                                                                       ("phash", "ref-3")}


@pytest.mark.parametrize("content", [
    "not-a-hash\n", "ABCDEF\n", "g" * 64 + "\n", "f" * 63 + "\n", "x" * 10000 + "\n", "\x00\x01\x02\n",
])
def test_import_hashes_rejects_bad_lines_and_keeps_good_ones(tmp_path, content):
    path = tmp_path / "h.txt"
    path.write_bytes((content + PDQ + "\n").encode("utf-8", errors="replace"))
    out, err = run("import_hashes", "bank-c", str(path), "--type", "pdq")
    assert "1 added" in out and "1 rejected" in out and "line 1" in err
    assert BankHash.objects.count() == 1


def test_import_hashes_with_nothing_valid_fails(tmp_path):
    path = tmp_path / "h.txt"
    path.write_text("nope\n")
    with pytest.raises(CommandError, match="no valid hash"):
        run("import_hashes", "bank-d", str(path), "--type", "pdq")


def test_import_hashes_refuses_bad_arguments(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        run("import_hashes", "bank-e", str(tmp_path / "missing.txt"), "--type", "pdq")
    path = tmp_path / "h.txt"
    path.write_text(PDQ)
    with pytest.raises(CommandError, match="--type"):
        run("import_hashes", "bank-e", str(path))
    csv = tmp_path / "h.csv"
    csv.write_text(f"{PDQ},sha1\n")
    with pytest.raises(CommandError):
        run("import_hashes", "bank-e", str(csv))


def test_create_api_token_prints_a_working_secret_once(client):
    out, _ = run("create_api_token", "platform-a")
    key = out.strip()
    assert ApiToken.objects.get().key_hash == ApiToken.hash_key(key) and key not in ApiToken.objects.get().prefix
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    assert client.get("/api/v1/cases").status_code == 200
    with pytest.raises(CommandError):
        run("create_api_token", "platform-a")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_sweep_reports_what_it_re_enqueued(image_bytes, redis_conn, settings):
    from detection import intake
    intake.submit_file(image_bytes(1), account_id="a-1")
    redis_conn.flushdb()  # the hand-off is lost; the row still says the item is pending
    out, _ = run("sweep", "--older-than", "0")
    assert "re-enqueued 1 items to scan" in out
    import django_rq
    assert django_rq.get_queue("scan").count == settings.SCAN_SLOTS  # every scan slot woken once


def test_load_demo_loads_once_with_users_bank_items_and_reports(monkeypatch):
    from reviewconsole.devtools import demo
    monkeypatch.setattr(demo, "KNOWN_SEEDS", range(1, 4))
    monkeypatch.setattr(demo, "SHARED_KNOWN", range(1, 3))
    monkeypatch.setattr(demo, "EXACT_COPIES", range(3, 4))
    monkeypatch.setattr(demo, "UNRELATED", range(100, 104))
    monkeypatch.setattr(demo, "GEOMETRIC_COPIES", {1: "mirrored"})
    out, _ = run("load_demo")
    assert "demo data loaded" in out and "analyst" in out and "demo-specialist-pass" in out
    assert "officer" in out and "Demo County Police" in out
    assert Bank.objects.get(name="demo-known").hashes.count() == 15
    assert Item.objects.count() == 2 + 1 + 4 + 2 + 1
    from cases.models import LegalRequest
    assert LegalRequest.objects.get().agency.name == "Demo County Police"
    out, _ = run("load_demo")
    assert "already present" in out


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "TESTING", "DEMO", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(SECRET_KEY="k" * 60 + "-production-like-secret", ALLOWED_HOSTS="console.example.org",
               VAR_DIR=str(tmp_path))
    result = subprocess.run([PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_settings_refuse_to_start_without_a_secret_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "TESTING", "DEMO", "SECRET_KEY")}
    env["VAR_DIR"] = str(tmp_path)
    result = subprocess.run([PYTHON, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr
