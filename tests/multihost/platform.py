"""The platform's side: the pictures it sends, its uploads through the API, and its webhook receiver.

Nothing here imports Django: the pictures are drawn while the servers start.
"""

import queue
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from detection.detectors.hashing import digests, hamming_hex, hash_image
from reviewconsole.devtools import synthetic

HOOK_PORT = 8099
KNOWN_SEEDS = 900_000  # seeds of the known pictures; other pictures are drawn from 100_000 on


def make_pictures(count, known, seed):
    """[(external id, account, JPEG bytes, known index or None)]: `count` items from count/10 accounts, the
    first `known` of which send one copy (exact, resized or re-compressed) of a known picture each."""
    accounts = [f"mh-acct-{n:02d}" for n in range(max(known, count // 10))]
    items = []
    for k in range(known):
        original = synthetic.make_image(KNOWN_SEEDS + k)
        data = synthetic.encode(original)
        edit = ("resized", "recompressed", None)[k % 3]
        if edit:
            copy = synthetic.encode(synthetic.EDITS[edit](original))
            if hamming_hex(hash_image(copy).pdq, hash_image(data).pdq) <= 24:  # a sure PDQ match, else exact
                data = copy
        items.append((accounts[k], data, k))
    for n in range(count - known):
        items.append((accounts[n % len(accounts)], synthetic.encode(synthetic.make_image(100_000 + n)), None))
    random.Random(seed).shuffle(items)
    return [(f"mh-item-{n:04d}", account, data, k) for n, (account, data, k) in enumerate(items)]


def known_hashes_csv(path, known):
    """The bank's file: PDQ, MD5, pHash and dHash of each known picture."""
    lines = ["hash,type,label"]
    for k in range(known):
        data = synthetic.encode(synthetic.make_image(KNOWN_SEEDS + k))
        hashes = hash_image(data)
        lines += [f"{hashes.pdq},pdq,known-{k}", f"{digests(data)[0]},md5,known-{k}",
                  f"{hashes.phash},phash,known-{k}", f"{hashes.dhash},dhash,known-{k}"]
    path.write_text("\n".join(lines) + "\n")


class Uploader:
    """The platform sending its items through POST /api/v1/items, a few at a time, retrying a failed
    request (a retry with the same external_id is answered with the item already made)."""

    def __init__(self, url, token, items, threads=3):
        self.url, self.token, self.todo = url, token, queue.Queue()
        for item in items:
            self.todo.put(item)
        self.sent, self.errors, self.ended, self.lock = 0, [], [], threading.Lock()
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _work(self):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token}"
        while True:
            try:
                external_id, account, data, _ = self.todo.get_nowait()
            except queue.Empty:
                break
            for attempt in range(6):
                try:
                    response = session.post(self.url, data={"account": account, "external_id": external_id},
                                            files={"file": (f"{external_id}.jpg", data, "image/jpeg")}, timeout=60)
                    if response.status_code in (200, 202):
                        with self.lock:
                            self.sent += 1
                        break
                    error = f"HTTP {response.status_code}: {response.text[:200]}"
                except requests.RequestException as exc:
                    error = str(exc)
                time.sleep(0.5 * (attempt + 1))
            else:
                with self.lock:
                    self.errors.append(f"{external_id}: {error}")
        with self.lock:
            self.ended.append(time.monotonic())

    def done(self):
        return not any(t.is_alive() for t in self.threads)

    def seconds(self):
        return max(self.ended) - self.started if self.done() else None


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The console closes its connection without reading the answer's body: not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Receiver:
    """The platform's webhook endpoint: keeps every delivery (headers, body, time) and answers 200."""

    def __init__(self, address):
        self.deliveries, self.lock = [], threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with owner.lock:
                    owner.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body, time.time()))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = QuietServer((address, HOOK_PORT), Handler)
        self.url = f"http://{address}:{HOOK_PORT}/hooks/enforce"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
