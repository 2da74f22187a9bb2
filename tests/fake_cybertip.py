"""A fake CyberTipline reporting service on loopback, behaving like the real one where tests need it.

Basic auth (401 + code 2000 on bad credentials), schema-order checks and the rules NCMEC documents
on <report> and <fileDetails> (4100; 4110 for a document that is not well-formed XML), hex file
ids and the MD5 of received bytes, 5001/5101/5102 in the right states, a Request-ID on every
answer, and fault injection: make the next call to a step answer 500, hang past the client's
timeout, drop the connection before or after doing its work, or answer a given responseCode.
"""

import base64
import hashlib
import itertools
import time
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs
from xml.etree import ElementTree as ET

from cases.cybertip.documents import validate
from tests.loopback import LoopbackServer

USER, PASSWORD = "esp-user", "esp-pass"


class FakeCyberTipline(LoopbackServer):
    path = "/ispws"

    def __init__(self):
        self.reports = {}  # id -> {"state": open|finished|retracted, "files": {file_id: md5}, "xml": bytes}
        self.fileinfo = []
        self.calls = []
        self.faults = {}  # step -> list of faults for its next calls
        self.ids = itertools.count(90001)
        super().__init__()

    def fail_next(self, step, fault):
        """fault: 500 | "timeout" | "drop_before" | "drop_after" | ("code", N)."""
        self.faults.setdefault(step, []).append(fault)

    @property
    def finished(self):
        return [rid for rid, r in self.reports.items() if r["state"] == "finished"]

    # --- the service -----------------------------------------------------------------------------

    def handle(self, request):
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        step = request.path.rsplit("/", 1)[-1]
        self.calls.append(step)
        fault = self.faults.get(step, []).pop(0) if self.faults.get(step) else None
        if fault == "drop_before":
            return self.drop(request)
        if fault == "timeout":
            time.sleep(3)
        if fault == 500:
            return self.answer(request, 500, "reportResponse", 1000, "Server error")
        if not self.authorised(request):
            return self.answer(request, 401, "reportResponse", 2000, "Authentication required")
        if isinstance(fault, tuple):
            return self.answer(request, 400, "reportResponse", fault[1], "Injected failure")
        handler = getattr(self, f"step_{step}", None)
        if handler is None:
            return self.answer(request, 404, "reportResponse", 4000, "Invalid request")
        status, root, code, description, extra = handler(request, body)
        if fault == "drop_after":  # the work is done, but the answer never arrives
            return self.drop(request)
        return self.answer(request, status, root, code, description, **extra)

    def authorised(self, request):
        header = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return header == expected

    def answer(self, request, status, root_tag, code, description="", **extra):
        root = ET.Element(root_tag)
        ET.SubElement(root, "responseCode").text = str(code)
        if description:
            ET.SubElement(root, "responseDescription").text = description
        for key, value in extra.items():
            if key == "files":
                files = ET.SubElement(root, "files")
                for file_id in value:
                    ET.SubElement(files, "fileId").text = file_id
            else:
                ET.SubElement(root, key).text = str(value)
        payload = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        request.send_response(status)
        # The charset here deliberately disagrees with the document, as the real one has been seen to.
        request.send_header("Content-Type", "text/xml; charset=iso-8859-1")
        request.send_header("Request-ID", uuid.uuid4().hex)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def form(self, request, body):
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body)
            fields = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                fields[name] = part.get_payload(decode=True)
            return fields
        return {k: v[0].encode() for k, v in parse_qs(body.decode()).items()}

    def step_status(self, request, body):
        return 200, "reportResponse", 0, "", {}

    def refused(self, body):
        """4110 for a document that is not XML; 4100 for one breaking a schema or documented rule."""
        problems = validate(body)
        if not problems:
            return None
        if problems[0].startswith("malformed XML"):
            return 400, "reportResponse", 4110, "Malformed XML: " + problems[0], {}
        return 400, "reportResponse", 4100, "Validation failed: " + problems[0], {}

    def step_submit(self, request, body):
        refusal = self.refused(body)
        if refusal:
            return refusal
        report_id = str(next(self.ids))
        self.reports[report_id] = {"state": "open", "files": {}, "xml": body}
        return 200, "reportResponse", 0, "", {"reportId": report_id}

    def _report(self, report_id):
        report = self.reports.get(report_id)
        if report is None:
            return None, (400, "reportResponse", 5001, "Report does not exist", {})
        if report["state"] == "finished":
            return None, (400, "reportResponse", 5102, "Report already finished", {})
        if report["state"] == "retracted":
            return None, (400, "reportResponse", 5101, "Report already retracted", {})
        return report, None

    def step_upload(self, request, body):
        fields = self.form(request, body)
        report_id = (fields.get("id") or b"").decode()
        report, problem = self._report(report_id)
        if problem:
            return problem
        data = fields.get("file") or b""
        file_id = uuid.uuid4().hex
        report["files"][file_id] = hashlib.md5(data).hexdigest()
        return 200, "reportResponse", 0, "", {"reportId": report_id, "fileId": file_id,
                                               "hash": report["files"][file_id]}

    def step_fileinfo(self, request, body):
        refusal = self.refused(body)
        if refusal:
            return refusal
        root = ET.fromstring(body)
        report, problem = self._report(root.findtext("reportId"))
        if problem:
            return problem
        if root.findtext("fileId") not in report["files"]:
            return 400, "reportResponse", 5002, "File does not exist", {}
        self.fileinfo.append(body)
        return 200, "reportResponse", 0, "", {}

    def step_finish(self, request, body):
        report_id = (self.form(request, body).get("id") or b"").decode()
        report, problem = self._report(report_id)
        if problem:
            return (*problem[:1], "reportDoneResponse", *problem[2:])
        report["state"] = "finished"
        return 200, "reportDoneResponse", 0, "", {"reportId": report_id, "files": list(report["files"])}

    def step_retract(self, request, body):
        report_id = (self.form(request, body).get("id") or b"").decode()
        report, problem = self._report(report_id)
        if problem:
            return problem
        report["state"] = "retracted"
        return 200, "reportResponse", 0, "", {}
