"""The production recipe in deploy/: units that run real commands, an environment that passes
`check --deploy`, a TLS proxy that sends the headers the settings trust, and JSON logs."""

import importlib.util
import json
import logging
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.core.management import get_commands, load_command_class
from django.core.management.base import CommandError

from reviewconsole.logjson import JsonFormatter
from reviewconsole.management.commands import runconsole
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
INSTALL_DIR = "/opt/reviewconsole"
ENV_FILE = "/etc/reviewconsole/reviewconsole.env"
UNITS = sorted(DEPLOY.glob("*.service"))


def read_unit(path):
    """A systemd unit as {section: {key: [values]}}; a key may repeat (ExecStartPre, Environment)."""
    sections, section = {}, None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return sections


def read_env_file(path):
    """An EnvironmentFile: the values it sets, and every name it mentions (set or commented out)."""
    values, mentioned = {}, set()
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if commented := re.match(r"#\s*([A-Z][A-Z0-9_]*)=", line):
            mentioned.add(commented[1])
        if not line or line.startswith(("#", ";")):
            continue
        name, _, value = line.partition("=")
        values[name] = " ".join(shlex.split(value))
    return values, mentioned | set(values)


def names_read(*modules):
    """The environment variables these source files read, through os.environ or settings' helpers."""
    pattern = re.compile(r"""(?:environ\.get|environ\[|envbool|envint|envlist)\(?\s*["']([A-Z][A-Z0-9_]*)["']""")
    names = set()
    for module in modules:
        source = (ROOT / module).read_text()
        names |= set(pattern.findall(source))
        if "dj_database_url.config(" in source:
            names.add("DATABASE_URL")  # the variable dj_database_url.config() reads
    return names


def commands_of(unit, keys=("ExecStartPre", "ExecStart", "ExecReload")):
    service = read_unit(unit)["Service"]
    return [shlex.split(line) for key in keys for line in service.get(key, [])]


def parsed_manage_py(argv):
    """The options a `python manage.py COMMAND ...` line gives its command, parsed by the command itself."""
    assert argv[1] == "manage.py", argv
    name, app = argv[2], get_commands().get(argv[2])
    assert app, f"{name} is no manage.py command"
    assert app != "reviewconsole.devtools", f"{name} is a development command, not installed in production"
    return name, load_command_class(app, name).create_parser("manage.py", name).parse_args(argv[3:])


def production_env(tmp_path, **more):
    """The example environment file with a fresh secret, its paths moved under tmp_path, and nothing
    of this test run's own environment (TESTING, DEBUG, DATABASE_URL...)."""
    values, _ = read_env_file(DEPLOY / "reviewconsole.env.example")
    base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    return {**base, **values, "SECRET_KEY": secrets.token_urlsafe(50), "VAR_DIR": str(tmp_path / "var"),
            "EVIDENCE_ROOT": str(tmp_path / "evidence"), "PYTHONPATH": str(ROOT), **more}


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# The units ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("unit", UNITS, ids=lambda path: path.name)
def test_each_unit_runs_a_real_command_of_the_installed_console(unit):
    service = read_unit(unit)["Service"]
    assert service["User"] == ["reviewconsole"]
    assert service["WorkingDirectory"] == [INSTALL_DIR]
    assert service["EnvironmentFile"] == [ENV_FILE]
    for argv in commands_of(unit):
        if argv[0] == "/bin/kill":
            assert argv[1:] == ["-s", "HUP", "$MAINPID"]  # gunicorn's graceful reload
            continue
        assert argv[0].startswith(f"{INSTALL_DIR}/.venv/bin/"), argv
        program = os.path.basename(argv[0])
        if program == "gunicorn":
            config = argv[argv.index("--config") + 1]
            assert config.startswith("python:")
            assert importlib.util.find_spec(config.removeprefix("python:")), config
            continue
        assert program == "python", argv
        name, options = parsed_manage_py(argv)
        if name == "rqworker":
            assert options.args and set(options.args) <= set(settings.RQ_QUEUES), options.args
        if name == "rqcron":
            assert importlib.util.find_spec(options.config_path), options.config_path


def test_the_workers_between_them_serve_every_queue():
    served = []
    for unit in UNITS:
        for argv in commands_of(unit):
            if argv[2:3] == ["rqworker"]:
                served += parsed_manage_py(argv)[1].args
    assert sorted(served) == sorted(settings.RQ_QUEUES)  # each queue, once


def test_the_cron_unit_runs_the_schedule_runconsole_runs():
    (argv,) = commands_of(DEPLOY / "reviewconsole-cron.service")
    assert argv[2:4] == ["rqcron", "reviewconsole.cron"]


def test_every_unit_that_starts_with_the_machine_hangs_on_the_target():
    assert (DEPLOY / "reviewconsole.target").exists()
    for unit in UNITS:
        install = read_unit(unit).get("Install")
        if unit.name == "reviewconsole-migrate.service":
            assert install is None  # run by hand, once per upgrade
        else:
            assert install == {"WantedBy": ["reviewconsole.target"]}, unit.name
            assert read_unit(unit)["Unit"]["PartOf"] == ["reviewconsole.target"]
    assert "%i" in read_unit(DEPLOY / "reviewconsole-worker@.service")["Unit"]["Description"][0]


# The environment ----------------------------------------------------------------------------------

def test_the_example_environment_names_only_variables_the_console_reads():
    read = names_read("reviewconsole/settings.py", "reviewconsole/gunicorn_conf.py")
    _, mentioned = read_env_file(DEPLOY / "reviewconsole.env.example")
    assert {"SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "BEHIND_PROXY"} <= mentioned
    assert mentioned - read == set()
    for unit in UNITS:
        for line in read_unit(unit)["Service"].get("Environment", []):
            for assignment in shlex.split(line):
                assert assignment.partition("=")[0] in read, (unit.name, assignment)


def test_check_deploy_passes_with_the_example_environment_and_logs_are_json(tmp_path):
    script = """if True:
        import json, logging
        import django
        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from reviewconsole import gunicorn_conf
        call_command("check", deploy=True, fail_level="WARNING")
        try:
            raise ValueError("a broken thing")
        except ValueError:
            logging.getLogger("cases.deploy").exception("it broke", extra={"case_id": 7})
        print(json.dumps({"ssl_header": settings.SECURE_PROXY_SSL_HEADER, "proxies": settings.TRUSTED_PROXY_COUNT,
                          "scheme_headers": gunicorn_conf.secure_scheme_headers, "bind": gunicorn_conf.bind,
                          "max_upload": settings.MAX_UPLOAD_BYTES, "debug": settings.DEBUG}))
    """
    env = production_env(tmp_path, DJANGO_SETTINGS_MODULE="reviewconsole.settings")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["debug"] is False

    # The TLS proxy sends what the settings and gunicorn believe, from where they expect it.
    nginx = (DEPLOY / "nginx.conf").read_text()
    header, value = facts["ssl_header"]
    assert header == "HTTP_X_FORWARDED_PROTO" and value == "https"
    assert facts["scheme_headers"] == {"X-FORWARDED-PROTO": "https"}
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in nginx
    assert facts["proxies"] == 1
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in nginx
    assert f"server {facts['bind'][0]};" in nginx
    body_limit = re.search(r"client_max_body_size (\d+)m;", nginx)
    assert int(body_limit[1]) * 1024 * 1024 > facts["max_upload"]

    (line,) = [entry for entry in json_lines(done.stderr) if entry["logger"] == "cases.deploy"]
    assert line["level"] == "ERROR" and line["message"] == "it broke" and line["case_id"] == 7
    assert line["exc"].startswith("Traceback") and "ValueError: a broken thing" in line["exc"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])


def test_the_web_unit_serves_https_through_the_proxy_headers_with_json_access_logs(tmp_path):
    """The web unit's own commands, with the example environment (SQLite under tmp_path instead of
    PostgreSQL): static files collected, gunicorn up, plain HTTP sent to HTTPS, the proxy's header
    believed, one JSON line a request, and a clean stop on SIGTERM."""
    env = production_env(tmp_path, WEB_BIND="127.0.0.1:0", WEB_CONCURRENCY="1")
    del env["DATABASE_URL"]
    collect, serve = commands_of(DEPLOY / "reviewconsole-web.service", keys=("ExecStartPre", "ExecStart"))
    subprocess.run([sys.executable, *collect[1:]], cwd=ROOT, env=env, check=True, timeout=120)
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", *serve[1:]], cwd=ROOT, env=env, text=True,
                            stderr=subprocess.PIPE, start_new_session=True)
    lines, listening = [], threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if "Listening at: " in line:
                listening.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert listening.wait(60), "".join(lines)
        (started,) = [entry for entry in json_lines("".join(lines)) if "Listening at: " in entry["message"]]
        base = re.search(r"http://127\.0\.0\.1:\d+", started["message"])[0]
        url = f"{base}/static/console/console.css"

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        opener, host = urllib.request.build_opener(NoRedirect), {"Host": "console.example.org"}
        with pytest.raises(urllib.error.HTTPError) as plain:
            opener.open(urllib.request.Request(url, headers=host), timeout=10)
        assert plain.value.code == 301 and plain.value.headers["Location"].startswith("https://console.example.org/")
        request = urllib.request.Request(url, headers={**host, "X-Forwarded-Proto": "https"})
        with opener.open(request, timeout=10) as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/css")
            assert "max-age=" in response.headers["Strict-Transport-Security"]
    finally:
        proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        proc.wait(timeout=30)
        reader.join(timeout=5)
    assert proc.returncode == 0, "".join(lines)
    assert time.monotonic() - stopping < 10
    access = [entry for entry in json_lines("".join(lines)) if entry["logger"] == "gunicorn.access"]
    assert len(access) == 2 and all('"GET /static/console/console.css"' in entry["message"] for entry in access)
    assert [entry["message"].split('" ')[1].split()[0] for entry in access] == ["301", "200"]


# Logs ---------------------------------------------------------------------------------------------

def test_json_log_lines_carry_the_exception_and_extra_fields_on_one_line():
    record = logging.LogRecord("cases.jobs", logging.WARNING, __file__, 1, "item %s\nrejected", (5,), None)
    record.item_id = 5
    record.request = object()  # not JSON: logged as its str()
    (line,) = JsonFormatter().format(record).splitlines()
    entry = json.loads(line)
    assert {key: entry[key] for key in ("level", "logger", "message", "item_id")} == {
        "level": "WARNING", "logger": "cases.jobs", "message": "item 5\nrejected", "item_id": 5}
    assert entry["request"].startswith("<object object") and "exc" not in entry


# runconsole's web server --------------------------------------------------------------------------

def test_runconsole_serves_with_gunicorn_and_runserver_on_request(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    web = runconsole.web_command("gunicorn", "127.0.0.1:8001")
    assert web[:3] == [sys.executable, "-m", "gunicorn"]
    assert web[web.index("--config") + 1] == "python:reviewconsole.gunicorn_conf"
    assert web[web.index("--bind") + 1] == "127.0.0.1:8001" and web[web.index("--workers") + 1] == "2"
    assert runconsole.web_command("runserver", "127.0.0.1:8001")[-3:] == ["runserver", "127.0.0.1:8001", "--noreload"]

    monkeypatch.setenv("WEB_SERVER", "uwsgi")
    monkeypatch.setattr(runconsole, "PrivateRedis", lambda path: pytest.fail("started Redis for a bad WEB_SERVER"))
    with pytest.raises(CommandError, match="WEB_SERVER"):
        runconsole.Command().handle(addr="127.0.0.1:0", workers=1, no_demo=True)
