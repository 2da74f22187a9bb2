"""`make run`: Redis if needed, migrations, demo data, supervised workers, cron and the web server.

The web server is gunicorn with reviewconsole.gunicorn_conf, as in a deployment (deploy/);
WEB_SERVER=runserver starts Django's development server instead.

Ctrl-C stops everything quietly. The children run in their own process group, so the terminal's
SIGINT reaches only this supervisor, which then stops each child exactly once with SIGTERM (a second
signal would make rq abandon its shutdown halfway, with a traceback), waits for it, and kills what is
still running after a grace period.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from reviewconsole.redis_server import PrivateRedis

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 10  # for a worker to finish its job (warm shutdown) before it is told again, then killed
_PR_SET_PDEATHSIG = 1


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _child_setup(libc):
    """Run in each child before exec: its own process group, out of reach of the terminal's Ctrl-C,
    and (on Linux) a SIGTERM should the supervisor die without stopping it."""

    def setup():
        os.setpgrp()
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return setup


def _wait(procs, seconds, cut_short=lambda: False):
    deadline = time.monotonic() + seconds
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline and not cut_short():
        time.sleep(0.1)
    return [p for p in procs if p.poll() is None]


def stop_children(procs, grace=GRACE_SECONDS, cut_short=lambda: False):
    """SIGTERM each child once, wait up to `grace` seconds; then SIGTERM again (an rq worker's cold
    shutdown: it takes its work horse down with it), and SIGKILL whatever still runs."""
    procs = [p for p in procs if p.poll() is None]
    asked = time.monotonic()
    for proc in procs:
        proc.terminate()
    alive = _wait(procs, grace, cut_short)
    if alive:
        time.sleep(max(0.0, asked + 1.1 - time.monotonic()))  # rq ignores a repeat within a second
        for proc in alive:
            if proc.poll() is None:
                proc.terminate()
        alive = _wait(alive, 3)
    for proc in alive:
        proc.kill()
    for proc in procs:
        proc.wait()


def supervise(commands, *, env=None, started=None, stderr=None, grace=GRACE_SECONDS, restart_delay=1):
    """Run each of `commands` ({name: argv}) as a child, restarting any that exits, until SIGINT,
    SIGTERM or SIGHUP; then stop them all and return. A second signal while stopping cuts the grace
    period short. `env` maps a name to the child's environment (default: ours)."""
    stderr = stderr or sys.stderr
    env = env or {}
    received = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: received.append(signum))
                for signum in STOP_SIGNALS}
    setup = _child_setup(_libc())
    children = {}

    def start(name):
        children[name] = subprocess.Popen(commands[name], env=env.get(name), preexec_fn=setup)  # noqa: PLW1509

    try:
        for name in commands:
            if received:
                break
            start(name)
        if started and not received:
            started()
        while not received:
            time.sleep(0.2)
            for name, proc in list(children.items()):
                if proc.poll() is not None and not received:
                    # A worker that died (or finished its --max-jobs) is replaced; the sweep
                    # re-enqueues whatever it was holding.
                    stderr.write(f"{name} exited with {proc.returncode}; restarting\n")
                    time.sleep(restart_delay)
                    if not received:
                        start(name)
    finally:
        signals_before_stop = len(received)
        stop_children(list(children.values()), grace, cut_short=lambda: len(received) > signals_before_stop)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def web_command(server, addr):
    """gunicorn as deploy/reviewconsole-web.service runs it, with two workers unless WEB_CONCURRENCY
    says otherwise (its production default, two a core and one, is a lot beside everything else) and
    only its warnings besides the access log (the banner above says where it listens); or, with
    WEB_SERVER=runserver, Django's development server."""
    if server == "runserver":
        return [sys.executable, os.path.join(settings.BASE_DIR, "manage.py"), "runserver", addr, "--noreload"]
    return [sys.executable, "-m", "gunicorn", "--config", "python:reviewconsole.gunicorn_conf", "--bind", addr,
            "--workers", os.environ.get("WEB_CONCURRENCY", "2"), "--log-level", "warning"]


WEB_SERVERS = ("gunicorn", "runserver")


class Command(BaseCommand):
    help = "Run the whole console on this machine until Ctrl-C: Redis, workers, cron, web server."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--workers", type=int, default=1, help="RQ workers")
        parser.add_argument("--no-demo", action="store_true")

    def handle(self, *args, addr, workers, no_demo, **options):
        server = os.environ.get("WEB_SERVER", "gunicorn")
        if server not in WEB_SERVERS:
            raise CommandError(f"WEB_SERVER must be one of {', '.join(WEB_SERVERS)}, not {server!r}")
        redis = None if os.environ.get("REDIS_URL") else PrivateRedis(settings.PRIVATE_REDIS_SOCKET)
        try:
            try:
                if redis:
                    redis.start()
                    self.stdout.write(f"private redis-server on {redis.socket_path}")
                call_command("migrate", interactive=False, verbosity=0)
                if not no_demo and apps.is_installed("reviewconsole.devtools"):  # DEBUG, DEMO or TESTING
                    call_command("load_demo")
                if not settings.DEBUG:  # WhiteNoise serves the collected, hashed files
                    call_command("collectstatic", interactive=False, verbosity=0)
            except KeyboardInterrupt:
                return  # Ctrl-C while starting up: nothing supervised yet
            manage = [sys.executable, os.path.join(settings.BASE_DIR, "manage.py")]
            worker = [*manage, "rqworker", *settings.WORKER_QUEUES, "--max-jobs", "5000", "--with-scheduler",
                      "-v", "0"]
            commands = {f"worker-{n}": worker for n in range(1, workers + 1)}
            commands["cron"] = [*manage, "rqcron", "reviewconsole.cron", "--logging-level", "WARNING"]
            commands["web"] = web_command(server, addr)
            # rqcron's --logging-level is ignored once the settings' LOGGING gave the root logger a
            # handler; the level below is what keeps its per-minute INFO lines out of the terminal.
            env = {"cron": {"LOG_LEVEL": "WARNING", **os.environ}}
            # gunicorn imports its config module before it reads --chdir: the checkout must be on the path.
            path = os.pathsep.join(filter(None, [str(settings.BASE_DIR), os.environ.get("PYTHONPATH")]))
            env["web"] = {**os.environ, "PYTHONPATH": path}
            supervise(commands, env=env, stderr=self.stderr, started=lambda: self.stdout.write(self.style.SUCCESS(
                f"\nReview console on http://{addr}/  (Ctrl-C stops everything)\n")))
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C now would only leave Redis behind
            if redis:
                redis.stop()
            self.stdout.write("Stopped.")
