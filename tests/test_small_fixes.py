"""Findings of an outside review: the legal portal's request kind and unmatched identifiers, the queue's
"Decided today", and a quiet Ctrl-C on `make run`."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest

from cases import selectors
from cases.actions import legal
from cases.actions.claims import claim_case
from cases.actions.decisions import decide, undo
from cases.models import Decision, LegalRequest
from tests.conftest import ROOT
from tests.factories import case_with_match
from tests.test_legal import file_request, form, signed_in

# 1. No pre-selected kind: an emergency only when chosen ------------------------------------------

@pytest.mark.django_db
def test_the_new_request_form_preselects_no_kind(client, users):
    page = signed_in(client, users["officer"]).get("/le/new/").content.decode()
    assert '<option value="" selected>Choose the kind of request</option>' in page
    assert 'value="emergency" selected' not in page and "selected" not in page.split("Choose the kind", 1)[1]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [None, ""])
def test_a_request_without_a_kind_is_refused_and_nothing_is_filed(client, users, kind):
    data = form()
    if kind is None:
        del data["kind"]
    else:
        data["kind"] = kind
    response = signed_in(client, users["officer"]).post("/le/new/", data)
    assert response.status_code == 200
    assert response.context["form"].errors["kind"] == ["Choose the kind of request."]
    assert "Choose the kind of request." in response.content.decode()
    assert not LegalRequest.objects.exists()


@pytest.mark.django_db
def test_a_preservation_request_gets_the_normal_sla(client, users):
    response = signed_in(client, users["officer"]).post("/le/new/", form(kind="preservation"))
    request_obj = LegalRequest.objects.get()
    assert response.status_code == 302 and request_obj.kind == "preservation"
    assert not request_obj.is_emergency
    assert legal.sla_deadline(request_obj) == request_obj.due_at  # not created_at + 1 hour
    assert request_obj.due_at - request_obj.created_at > timedelta(days=10)


# 2. Identifiers that match nothing, shown on the request's pages ----------------------------------

@pytest.mark.django_db
def test_unmatched_identifiers_show_on_both_request_pages(client, users):
    case_with_match(seed=1, account="acct-1")  # acct-1 exists; the others do not
    request_obj = file_request(users["officer"], identifiers=(("account", "acct-1"), ("account", "xyz"),
                                                              ("group", "g-<7>")))
    assert selectors.unmatched_identifiers(request_obj) == ["account: xyz", "group: g-<7>"]

    officer_page = signed_in(client, users["officer"]).get(f"/le/{request_obj.pk}/").content.decode()
    assert "Not found on the platform: account: xyz, group: g-&lt;7&gt;" in officer_page
    assert "account: acct-1" not in officer_page.split("Not found on the platform", 1)[1].split("</p>", 1)[0]

    client.logout()
    liaison_page = signed_in(client, users["liaison"]).get(f"/legal/{request_obj.pk}/").content.decode()
    assert "Not found on the platform: account: xyz, group: g-&lt;7&gt;" in liaison_page
    assert "<7>" not in liaison_page


@pytest.mark.django_db
def test_no_notice_when_every_identifier_matches(client, users):
    case_with_match(seed=1, account="acct-1")
    request_obj = file_request(users["officer"], identifiers=(("account", "acct-1"),))
    page = signed_in(client, users["officer"]).get(f"/le/{request_obj.pk}/").content.decode()
    assert "Not found on the platform" not in page


# 3. "Decided today" counts only decisions that stand ---------------------------------------------

@pytest.mark.django_db
def test_decided_today_leaves_out_undone_pending_and_rejected_decisions(client, users, settings):
    settings.UNDO_SECONDS = 60
    kept, _ = case_with_match(seed=1, account="a-1")
    taken_back, _ = case_with_match(seed=2, account="a-2")
    specialist = users["specialist"]  # cleared to see the evidence: a dismissal needs no second reviewer
    for open_case in (kept, taken_back):
        claimed = claim_case(specialist, open_case.pk)
        decide(specialist, claimed.pk, action="dismiss", reason_code="benign", version=claimed.version)
    assert set(Decision.objects.values_list("approval", flat=True)) == {""}
    undo(specialist, Decision.objects.get(case=taken_back).pk)  # within the undo window
    assert Decision.objects.get(case=taken_back).undone_at is not None

    def decided_today():
        client.force_login(users["reviewer"])
        (known,) = [q for q in client.get("/queue/").context["queues"] if q.slug == "known-material"]
        return known.stats["handled_today"]

    assert decided_today() == 1
    Decision.objects.filter(case=kept).update(approval="pending")
    assert decided_today() == 0
    Decision.objects.filter(case=kept).update(approval="rejected")
    assert decided_today() == 0
    Decision.objects.filter(case=kept).update(approval="approved")
    assert decided_today() == 1


# 4. Ctrl-C on `make run` -------------------------------------------------------------------------

# The supervisor of `manage.py runconsole`, with stand-in children: a plain sleeping Python (which
# would print a KeyboardInterrupt traceback if the terminal's SIGINT reached it), and one that
# ignores SIGTERM and must be killed once the grace period is over.
HARNESS = textwrap.dedent("""
    import sys
    from reviewconsole.management.commands.runconsole import supervise

    piddir = sys.argv[1]
    child = "import os, signal, sys, time; open(sys.argv[1] + '/' + sys.argv[2], 'w').write(str(os.getpid())); "
    commands = {
        "sleeper": [sys.executable, "-c", child + "time.sleep(60)", piddir, "sleeper"],
        "stubborn": [sys.executable, "-c", child + "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
                     piddir, "stubborn"],
    }
    supervise(commands, grace=1, started=lambda: print("up", flush=True))
    print("Stopped.", flush=True)
""")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_stops_the_supervised_children_quietly(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="reviewconsole.settings",
               VAR_DIR=str(tmp_path / "var"))
    # Its own session: a signal to its process group is what the terminal's Ctrl-C sends.
    proc = subprocess.Popen([sys.executable, "-c", HARNESS, str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    pids = {}
    try:
        deadline = time.monotonic() + 10
        while len(pids) < 2 and time.monotonic() < deadline and proc.poll() is None:
            for name in ("sleeper", "stubborn"):
                path = tmp_path / name
                if path.exists() and path.read_text():
                    pids[name] = int(path.read_text())
            time.sleep(0.05)
        assert len(pids) == 2, proc.communicate(timeout=5)[0] if proc.poll() is not None else "children not up"
        time.sleep(0.3)  # the stubborn child has installed its handler
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert time.monotonic() - started < 10
    assert proc.returncode == 0, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert output.strip().splitlines()[-1] == "Stopped."
    assert not any(_alive(pid) for pid in pids.values())


def test_runconsole_stops_with_one_line_and_no_traceback(monkeypatch, capsys):
    """The command's own part: Redis stopped, one "Stopped." line, even when the supervisor is cut short."""
    from reviewconsole.management.commands import runconsole

    stopped = []

    class FakeRedis:
        socket_path = "/nowhere"

        def __init__(self, path):
            pass

        def start(self):
            return self

        def stop(self):
            stopped.append(True)

    def supervise(commands, **kwargs):
        assert set(commands) == {"worker-1", "cron", "web"}
        assert commands["web"][1:3] == ["-m", "gunicorn"]

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("WEB_SERVER", raising=False)
    monkeypatch.setattr(runconsole, "PrivateRedis", FakeRedis)
    monkeypatch.setattr(runconsole, "supervise", supervise)
    monkeypatch.setattr(runconsole, "call_command", lambda *a, **k: None)
    previous = signal.getsignal(signal.SIGINT)
    try:
        runconsole.Command().handle(addr="127.0.0.1:0", workers=1, no_demo=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped == [True]
    assert capsys.readouterr().out.strip().splitlines()[-1] == "Stopped."

