"""The hosts: network namespaces on a private bridge, the servers in them, and how to take it all down.

Nothing here imports Django: it runs before the console's environment exists.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import redis

from reviewconsole.redis_server import find_redis_server
from tests.multihost.machine import PREFIX, Failed, as_postgres, postgres_bindir, sh

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
HOSTS = {"db": 2, "redis": 3, "web": 4, "worker-1": 5, "worker-2": 6}
WORKER_HOSTS = ("worker-1", "worker-2")
PG_PORT, REDIS_PORT, WEB_PORT = 5432, 6379, 8000
SWEEP_INTERVAL, SWEEP_AFTER = 15, 30
# The console's supervisor (runconsole), run on a host: commands by name, extra environment by name.
SUPERVISE = ("import json, os, sys\n"
             "from reviewconsole.management.commands.runconsole import supervise\n"
             "commands, env = json.loads(sys.argv[1])\n"
             "supervise(commands, env={name: os.environ | extra for name, extra in env.items()})\n")


# The network and its processes ---------------------------------------------------------------------------

class Lab:
    """Namespaces on a private bridge, the processes started in them, and how to take it all down."""

    def __init__(self, folder):
        self.tag = f"{PREFIX}{os.getpid()}"
        self.folder = folder
        self.bridge = self.tag + "b"
        self.net = free_subnet()
        self.addr = {host: f"{self.net}.{n}" for host, n in HOSTS.items()} | {"driver": f"{self.net}.1"}
        self.built, self.cuts, self.started = [], [], {}

    def ns(self, host):
        return f"{self.tag}-{host}"

    def up(self):
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.built.append(("link", self.bridge))
        sh("ip", "addr", "add", f"{self.addr['driver']}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for host, n in HOSTS.items():
            ns, outside, inside = self.ns(host), f"{self.tag}h{n}", f"{self.tag}n{n}"
            sh("ip", "netns", "add", ns)
            self.built.append(("netns", ns))
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            sh("ip", "link", "set", inside, "netns", ns)
            sh("ip", "link", "set", outside, "master", self.bridge, "up")
            run = ["ip", "netns", "exec", ns]
            sh(*run, "ip", "link", "set", inside, "name", "eth0")
            sh(*run, "ip", "addr", "add", f"{self.addr[host]}/24", "dev", "eth0")
            sh(*run, "ip", "link", "set", "eth0", "up")
            sh(*run, "ip", "link", "set", "lo", "up")

    def start(self, host, argv, env, prefix=()):
        """Start a process on the host, its output appended to logs/<host>.log."""
        with open(self.folder / "logs" / f"{host}.log", "ab") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *prefix, *map(str, argv)], env=env,
                                    cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.started.setdefault(host, []).append(proc)
        return proc

    def run(self, host, argv, env, timeout):
        result = subprocess.run(["ip", "netns", "exec", self.ns(host), *map(str, argv)], check=False, env=env,
                                cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        if result.returncode:
            raise Failed(f"{host}: {' '.join(map(str, argv[1:4]))} failed:\n{result.stdout[-2000:]}"
                         f"{result.stderr[-3000:]}")
        return result.stdout

    def pids(self, host):
        listed = sh("ip", "netns", "pids", self.ns(host), check=False).stdout.split()
        return [int(pid) for pid in listed if pid.isdigit()]

    def kill(self, host):
        """SIGKILL every process of the host, again until none is left (a supervisor may have started a
        child meanwhile)."""
        for _ in range(50):
            pids = self.pids(host)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def cut(self, a, b):
        """Nothing passes between hosts a and b: blackhole routes on both sides."""
        for here, there in ((a, b), (b, a)):
            sh("ip", "netns", "exec", self.ns(here), "ip", "route", "add", "blackhole", f"{self.addr[there]}/32")
            self.cuts.append((here, there))

    def restore(self):
        for here, there in self.cuts:
            sh("ip", "netns", "exec", self.ns(here), "ip", "route", "del", "blackhole", f"{self.addr[there]}/32",
               check=False)
        self.cuts = []

    def stop(self, host, grace=15):
        """Ask what was started on the host to stop (a supervisor stops its children; PostgreSQL's fast
        shutdown is SIGINT), then kill whatever is left after `grace` seconds."""
        for proc in self.started.get(host, []):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT if host == "db" else signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.pids(host) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.kill(host)

    def down(self):
        """Every process (clients before servers), then the namespaces and the bridge. The network stays
        up until every process has stopped, so that their connections close rather than linger."""
        self.restore()
        made = list(reversed(self.built))
        for kind, name in made:
            if kind == "netns":
                self.stop(name[len(self.tag) + 1:])
        for kind, name in made:
            sh("ip", "netns" if kind == "netns" else "link", "del", name, check=False)
        # A namespace outlives its name while a socket of its lingers; its link on this side would too.
        for n in HOSTS.values():
            sh("ip", "link", "del", f"{self.tag}h{n}", check=False)
        self.built = []
        for procs in self.started.values():
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        self.started = {}


def free_subnet():
    """10.77.0.0/24, or the first 10.77.N.0/24 that no interface or route of this machine uses."""
    used = sh("ip", "-4", "-o", "addr", "show").stdout + sh("ip", "-4", "route", "show").stdout
    for n in range(256):
        if f"10.77.{n}." not in used:
            return f"10.77.{n}"
    raise Failed("no free 10.77.N.0/24 subnet")


def remove_leftovers():
    """Namespaces, bridges and links of earlier runs whose process is gone (a run killed without cleaning up)."""
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        found = re.match(rf"({PREFIX}(\d+)-\S+)", line)
        if found and not Path(f"/proc/{found.group(2)}").exists():
            for pid in sh("ip", "netns", "pids", found.group(1), check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", found.group(1), check=False)
    for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
        found = re.search(rf"\d+: ({PREFIX}(\d+)[bh]\d*)[:@]", line)
        if found and not Path(f"/proc/{found.group(2)}").exists():
            sh("ip", "link", "del", found.group(1), check=False)


# The servers and the console's processes ----------------------------------------------------------------

def start_postgres(lab):
    bindir, home = postgres_bindir(), lab.folder / "pg"
    home.mkdir()
    shutil.chown(home, "postgres", "postgres")
    data = home / "data"
    initdb = subprocess.run([*as_postgres(), bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust",
                             "--no-sync", "-E", "UTF8", "--locale=C"], check=False, capture_output=True, text=True,
                            timeout=180)
    if initdb.returncode:
        raise Failed(f"initdb failed: {initdb.stderr[-2000:]}")
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {lab.net}.0/24 trust\n")
    # fsync off: the database host is not what fails here, and the machine's disk is shared.
    lab.start("db", [bindir / "postgres", "-D", data, "-c", f"listen_addresses={lab.addr['db']}",
                     "-c", f"port={PG_PORT}", "-c", f"unix_socket_directories={home}", "-c", "fsync=off",
                     "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200"],
              env=os.environ.copy(), prefix=as_postgres())
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(host=lab.addr["db"], port=PG_PORT, user="postgres", dbname="postgres",
                                 connect_timeout=2, autocommit=True) as conn:
                conn.execute("CREATE DATABASE console")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise Failed("PostgreSQL did not start:\n" + logs(lab, "db")) from None
            time.sleep(0.3)


def start_redis(lab):
    folder = lab.folder / "redis"
    folder.mkdir()
    lab.start("redis", [find_redis_server(), "--bind", lab.addr["redis"], "--port", REDIS_PORT, "--protected-mode",
                        "no", "--save", "", "--appendonly", "no", "--dir", folder], env=os.environ.copy())
    deadline = time.monotonic() + 30
    while True:
        try:
            redis.Redis(host=lab.addr["redis"], port=REDIS_PORT, socket_timeout=2).ping()
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise Failed("redis-server did not start:\n" + logs(lab, "redis")) from None
            time.sleep(0.2)


def console_env(lab, host, secret_key):
    """The environment of a deployment (deploy/reviewconsole.env.example), pointed at this network."""
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DEMO", "TESTING", "DATABASE_URL", "REDIS_URL")}
    var = lab.folder / "hosts" / host
    var.mkdir(parents=True, exist_ok=True)
    return env | {
        "DJANGO_SETTINGS_MODULE": "reviewconsole.settings",
        "PYTHONPATH": str(ROOT),
        "SECRET_KEY": secret_key,
        "DATABASE_URL": f"postgres://postgres@{lab.addr['db']}:{PG_PORT}/console",
        "REDIS_URL": f"redis://{lab.addr['redis']}:{REDIS_PORT}/0",
        "ALLOWED_HOSTS": lab.addr["web"],
        "VAR_DIR": str(var),
        "EVIDENCE_ROOT": str(lab.folder / "evidence"),  # one store every host sees
        "WEB_BIND": f"{lab.addr['web']}:{WEB_PORT}",
        "WEB_CONCURRENCY": "2",
        # Plain HTTP between the hosts of this network: there is no TLS proxy in front.
        "SECURE_SSL_REDIRECT": "0",
        "SECURE_COOKIES": "0",
        # The platform's webhook receiver lives at a private address of this network.
        "OUTBOUND_ALLOW_PRIVATE": "1",
        # Automated reports wait for a senior: nothing is filed with NCMEC from here.
        "CYBERTIP_APPROVE_AUTOMATED": "1",
        "LOG_FORMAT": "plain",
        # Work whose hand-off was lost while a host could not reach Redis waits for the sweep: every 15 s
        # for work older than 30 s here (60 s and 120 s by default), so that a run takes minutes, not more.
        "SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL),
        "SWEEP_AFTER_SECONDS": str(SWEEP_AFTER),
    }


def manage(*argv):
    return [PYTHON, str(ROOT / "manage.py"), *argv]


def supervised(lab, host, commands, env, extra_env=None):
    """The host's processes ({name: argv}) under the console's supervisor, each restarted should it exit;
    `extra_env` ({name: {variable: value}}) adds to a process's environment."""
    return lab.start(host, [PYTHON, "-c", SUPERVISE, json.dumps([commands, extra_env or {}])], env=env)


def logs(lab, *hosts, lines=40):
    """The last lines of each host's log."""
    text = []
    for host in hosts:
        try:
            tail = (lab.folder / "logs" / f"{host}.log").read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            tail = ["(no log)"]
        text.append(f"--- {host}\n" + "\n".join(tail))
    return "\n".join(text)
