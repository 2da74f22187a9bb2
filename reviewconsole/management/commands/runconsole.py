"""`make run`: Redis if needed, migrations, demo data, supervised workers, cron and the web server."""

import os
import signal
import subprocess
import sys
import time

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from reviewconsole.redis_server import PrivateRedis


class Command(BaseCommand):
    help = "Run the whole console on this machine until Ctrl-C: Redis, workers, cron, web server."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument("--no-demo", action="store_true")

    def handle(self, *args, addr, workers, no_demo, **options):
        redis = None
        if not os.environ.get("REDIS_URL"):
            redis = PrivateRedis(settings.PRIVATE_REDIS_SOCKET).start()
            self.stdout.write(f"private redis-server on {redis.socket_path}")
        children = {}
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        try:
            call_command("migrate", interactive=False, verbosity=0)
            if not no_demo and apps.is_installed("reviewconsole.devtools"):  # DEBUG, DEMO or TESTING
                call_command("load_demo")
            manage = [sys.executable, os.path.join(settings.BASE_DIR, "manage.py")]
            worker = [*manage, "rqworker", *settings.WORKER_QUEUES, "--max-jobs", "5000", "--with-scheduler", "-v", "0"]
            commands = {f"worker-{n}": worker for n in range(1, workers + 1)}
            commands["cron"] = [*manage, "rqcron", "reviewconsole.cron", "--logging-level", "WARNING"]
            commands["web"] = [*manage, "runserver", addr, "--noreload"]
            for name, argv in commands.items():
                children[name] = subprocess.Popen(argv)
            self.stdout.write(self.style.SUCCESS(f"\nReview console on http://{addr}/  (Ctrl-C stops everything)\n"))
            while not stopping:
                time.sleep(0.5)
                for name, proc in list(children.items()):
                    if proc.poll() is not None and not stopping:
                        # A worker that died (or finished its --max-jobs) is replaced; the sweep
                        # re-enqueues whatever it was holding.
                        self.stderr.write(f"{name} exited with {proc.returncode}; restarting")
                        time.sleep(1)
                        children[name] = subprocess.Popen(commands[name])
        except KeyboardInterrupt:
            pass
        finally:
            for proc in children.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            deadline = time.monotonic() + 10
            for proc in children.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
            if redis:
                redis.stop()
            self.stdout.write("stopped")
