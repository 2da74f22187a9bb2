"""A fake of NCMEC's hash-sharing API (v2) on loopback, shaped like the XML python-threatexchange parses.

Basic auth (401 otherwise), `GET /v2/status`, and `GET /v2/entries?from=&to=` over the entries
whose timestamp lies in the range (both ends included), `PAGE_SIZE` a page with a `next` link
carrying start/size/max, images and videos, deleted entries as <deletedImage>/<deletedVideo>.
Fault injection: make the next calls answer 500, hang past the client's timeout, send malformed
or unreadable XML, or drop the connection.

Feedback: `GET /v2/feedback/{TYPE}/reasons` lists the negative reasons (`REASONS`), and
`PUT /v2/entries/{member}/{id}/{TYPE}/feedback` takes a <feedbackSubmission> with <affirmative/> or
<negative><reasonIds><guid>..</guid></reasonIds></negative>; the latest one per entry and type is kept
in `feedback` (404 for an entry it does not hold, 400 for a reason it does not know).
"""

import base64
import re
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit
from xml.etree import ElementTree as ET

from tests.loopback import LoopbackServer

USER, PASSWORD = "esp-hash-user", "esp-hash-pass"
NS = "https://hashsharing.ncmec.org/hashsharing/v2"
DATE = "%Y-%m-%dT%H:%M:%SZ"
REASONS = {"b3c0ffee-0000-4000-8000-000000000001": "Not CSAM",
           "b3c0ffee-0000-4000-8000-000000000002": "Poor hash quality"}
FEEDBACK_PATH = re.compile(r"^entries/(\d+)/([^/]+)/([A-Z0-9_]+)/feedback$")
REASONS_PATH = re.compile(r"^feedback/([A-Z0-9_]+)/reasons$")


def stamp(ts):
    return datetime.fromtimestamp(ts, UTC).strftime(DATE)


def parse_stamp(text):
    # The client writes "from"/"to" with the same format, the real API adds milliseconds.
    return int(datetime.strptime(text.split(".")[0].rstrip("Z"), DATE[:-1]).replace(tzinfo=UTC).timestamp())


class FakeNCMECHashAPI(LoopbackServer):
    path = "/hashsharing"
    PAGE_SIZE = 3

    def __init__(self):
        self.entries = []  # dicts: member, id, kind (image|video), deleted, ts, fingerprints
        self.calls = []  # (endpoint, query dict)
        self.faults = []
        self.page_faults = {}  # page start -> faults for its next requests
        self.feedback = {}  # (member, entry id, type) -> ("affirmative" | "negative", [reason ids])
        self.feedback_calls = []  # (member, entry id, type, sentiment) as received, in order
        self.reasons = dict(REASONS)
        super().__init__()
        # The shared loopback server answers GET and POST; feedback comes as PUT. A function, not the
        # bound method, so that the handler passes itself as the request.
        def do_put(request):
            self.handle(request)

        self.httpd.RequestHandlerClass.do_PUT = do_put

    def add(self, entry_id, ts, *, kind="image", member=42, deleted=False, **fingerprints):
        self.entries.append({"member": member, "id": entry_id, "kind": kind, "deleted": deleted, "ts": ts,
                             "fingerprints": fingerprints})

    def fail_next(self, fault, times=1, *, page=None):
        """fault: 500 | 401 | "timeout" | "malformed" | "unreadable" | "drop"; for any next call, or
        only for requests of the page starting at entry number `page` (2 and on follow `next`)."""
        if page is None:
            self.faults += [fault] * times
        else:
            self.page_faults.setdefault(page, []).extend([fault] * times)

    def entry_calls(self):
        return [query for endpoint, query in self.calls if endpoint == "entries"]

    # --- the service -----------------------------------------------------------------------------

    def handle(self, request):
        parts = urlsplit(request.path)
        endpoint = parts.path[len(self.path):].strip("/").removeprefix("v2/")
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0)) if request.command == "PUT" else b""
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        self.calls.append((endpoint, query))
        planned = self.page_faults.get(int(query.get("start", 1))) if endpoint == "entries" else None
        fault = planned.pop(0) if planned else self.faults.pop(0) if self.faults else None
        if fault == "drop":
            return self.drop(request)
        if fault == "timeout":
            time.sleep(1.5)
        if fault in (500, 401):
            return self.send(request, fault, b"<error>injected</error>")
        if not self.authorised(request):
            return self.send(request, 401, b"<error>Unauthorized</error>")
        if fault == "malformed":
            return self.send(request, 200, b'<?xml version="1.0"?><queryResult><images count="1"><image><id>')
        if fault == "unreadable":  # well-formed, but not what an entry looks like
            return self.send(request, 200, f'<queryResult xmlns="{NS}"><images count="1" '
                                           'maxTimestamp="2024-01-01T00:00:00Z"><image><member/></image>'
                                           '</images></queryResult>'.encode())
        if endpoint == "status":
            root = ET.Element("status", xmlns=NS)
            ET.SubElement(root, "member", id="1").text = "Example ESP"
            return self.send(request, 200, ET.tostring(root))
        if endpoint == "entries":
            return self.send(request, 200, self.page(query))
        if request.command == "PUT" and FEEDBACK_PATH.match(endpoint):
            return self.take_feedback(request, *FEEDBACK_PATH.match(endpoint).groups(), body)
        if REASONS_PATH.match(endpoint):
            root = ET.Element("feedbackReasons", xmlns=NS)
            available = ET.SubElement(root, "availableFeedbackReasons")
            for guid, name in self.reasons.items():
                ET.SubElement(available, "reason", guid=guid, name=name)
            return self.send(request, 200, ET.tostring(root))
        return self.send(request, 404, b"<error>not found</error>")

    def take_feedback(self, request, member, entry_id, fingerprint, body):
        if not any(str(e["member"]) == member and e["id"] == entry_id and not e["deleted"] for e in self.entries):
            return self.send(request, 404, b"<error>no such entry</error>")
        root = ET.fromstring(body)
        vote = root[0].tag.split("}")[-1] if len(root) else ""
        guids = [node.text for node in root.iter() if node.tag.split("}")[-1] == "guid"]
        if vote not in ("affirmative", "negative") or (vote == "negative" and
                                                       (not guids or not set(guids) <= set(self.reasons))):
            return self.send(request, 400, b"<error>bad feedback</error>")
        self.feedback[(int(member), entry_id, fingerprint)] = (vote, guids)
        self.feedback_calls.append((int(member), entry_id, fingerprint, vote))
        return self.send(request, 200, f'<feedbackResult xmlns="{NS}"/>'.encode())

    def authorised(self, request):
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return request.headers.get("Authorization", "") == expected

    def page(self, query):
        start_ts, end_ts = parse_stamp(query["from"]), parse_stamp(query["to"])
        in_range = sorted((e for e in self.entries if start_ts <= e["ts"] <= end_ts), key=lambda e: e["ts"])
        start = int(query.get("start", 1))
        size = int(query.get("size", self.PAGE_SIZE))
        chosen = in_range[start - 1:start - 1 + size]
        root = ET.Element("queryResult", xmlns=NS)
        for kind in ("image", "video"):
            mine = [e for e in chosen if e["kind"] == kind]
            if not mine:
                continue
            latest = stamp(max(e["ts"] for e in mine))
            group = ET.SubElement(root, f"{kind}s", count=str(len(mine)), maxTimestamp=latest)
            for entry in mine:
                tag = f"deleted{kind.capitalize()}" if entry["deleted"] else kind
                node = ET.SubElement(group, tag)
                ET.SubElement(node, "member", id=str(entry["member"])).text = f"Member {entry['member']}"
                ET.SubElement(node, "timestamp").text = stamp(entry["ts"])
                ET.SubElement(node, "id").text = entry["id"]
                if not entry["deleted"]:
                    ET.SubElement(node, "classification").text = "A1"
                    prints = ET.SubElement(node, "fingerprints")
                    for name, value in entry["fingerprints"].items():
                        ET.SubElement(prints, name).text = value
        if start - 1 + size < len(in_range):
            paging = ET.SubElement(root, "paging")
            ET.SubElement(paging, "next").text = "/v2/entries?" + urlencode({
                "from": query["from"], "to": query["to"], "start": start + size, "size": size,
                "max": len(in_range)})
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)

    def send(self, request, status, payload):
        request.send_response(status)
        request.send_header("Content-Type", "application/xml; charset=utf-8")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)
