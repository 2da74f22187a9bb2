"""The run: the hosts built, the console started on them and set up, exercised, checked, taken down."""

import atexit
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import django
from django.apps import apps
from django.db import connections

from tests.multihost.hosts import (
    PYTHON,
    Lab,
    console_env,
    manage,
    remove_leftovers,
    start_postgres,
    start_redis,
    supervised,
)
from tests.multihost.machine import Failed
from tests.multihost.platform import Receiver, make_pictures


def out(line=""):
    print(line, flush=True)


def run(args, folder):
    """Build the hosts, start the console on them, set it up, exercise it, check it; always take it down."""
    lab, receiver, timings, t = Lab(folder), None, {}, time.monotonic()
    (folder / "logs").mkdir()
    (folder / "evidence").mkdir()
    os.chmod(folder, 0o755)  # PostgreSQL's user must reach its data folder inside
    atexit.register(lab.down)
    try:
        lab.up()
        out(f"several hosts on {lab.net}.0/24: driver .1, db .2 (PostgreSQL), redis .3, web .4, worker-1 .5, "
            f"worker-2 .6")
        pictures = {}  # drawn while the servers start
        drawing = threading.Thread(target=lambda: pictures.update(items=make_pictures(args.items, args.known,
                                                                                      args.seed)), daemon=True)
        drawing.start()
        start_postgres(lab)
        start_redis(lab)
        timings["servers"] = time.monotonic() - t
        secret_key = secrets.token_urlsafe(50)
        env = {host: console_env(lab, host, secret_key) for host in ("web", "worker-1", "worker-2", "driver")}
        t = time.monotonic()
        lab.run("web", manage("migrate", "--noinput", "-v", "0"), env["web"], timeout=900)
        timings["migrations"] = time.monotonic() - t

        # From here this process is a client of the console too, of its database and its Redis: the
        # console's modules are imported only now that the environment is the console's.
        os.environ.update(env["driver"])
        django.setup()
        from tests.multihost import console  # noqa: PLC0415 - needs the settings above

        t = time.monotonic()
        receiver = Receiver(lab.addr["driver"])
        setup = console.set_up(folder, args.known, receiver)
        supervised(lab, "web", {
            "web": [PYTHON, "-m", "gunicorn", "--config", "python:reviewconsole.gunicorn_conf", "--log-level",
                    "warning"],
            "cron": manage("rqcron", "reviewconsole.cron", "--logging-level", "WARNING"),
            "retro": manage("rqworker", "retro", "--with-scheduler"),
        }, env["web"], extra_env={"cron": {"LOG_LEVEL": "WARNING"}})  # the cron as runconsole starts it
        console.wait_until_serving(lab, "web")
        timings["console"] = time.monotonic() - t
        drawing.join()
        setup.items = pictures["items"]
        happened = console.exercise(args, lab, setup, env)
        problems, figures = console.check(setup, happened)
        console.report(happened, timings, figures)
        return problems
    finally:
        if receiver:
            receiver.close()
        if apps.ready:  # this process's connection to the database goes before the database does
            connections.close_all()
        lab.down()


def run_and_report(args):
    """The whole run in a folder of its own; returns the exit status."""
    # SIGTERM (a cancelled CI job) leaves the way a failure does: through the finally clauses that clean up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    remove_leftovers()
    folder = Path(tempfile.mkdtemp(prefix="reviewconsole-multihost-"))
    started = time.monotonic()
    try:
        problems = run(args, folder)
    except Failed as exc:
        problems = [str(exc)]
    finally:
        if args.keep:
            out(f"logs and data kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    out(f"wall time {time.monotonic() - started:.0f} s")
    if problems:
        out(f"FAILED: {len(problems)} problems")
        for line in problems[:40]:
            out(f"  {line}")
        return 1
    out("passed: every item scanned exactly once, every known-material case decided once by the rule, every "
        "enforcement delivered once")
    return 0
