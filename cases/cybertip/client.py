"""HTTP client of NCMEC's CyberTipline reporting API (ESP web service).

Every call answers an `Answer` holding what the service said: the HTTP status, the responseCode
read from the XML body whatever the status, the ids, and the Request-ID header. Network failures
and answers with no readable code raise `Unreachable`, which the filing job treats as transient.
"""

from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

import requests

from reviewconsole import outbound


class Unreachable(Exception):
    """No answer we can read: connection refused or dropped, timeout, or a body that is not XML."""


@dataclass
class Answer:
    step: str
    http_status: int
    code: int
    description: str = ""
    report_id: str = ""
    file_id: str = ""
    md5: str = ""
    file_ids: list = field(default_factory=list)
    request_id: str = ""
    body: bytes = b""

    @property
    def ok(self):
        return self.code == 0


class CyberTipClient:
    def __init__(self, base_url, username, password, timeout=30):
        self.base_url = base_url.rstrip("/")
        self.auth = (username, password)
        self.timeout = timeout
        # Through the SSRF guard (reviewconsole.outbound): CYBERTIP_URL is configuration, and the
        # reports carry credentials and evidence. No redirects are followed.
        self.session = outbound.session()

    def _call(self, step, path, **kwargs):
        method = "GET" if step == "status" else "POST"
        try:
            response = self.session.request(method, f"{self.base_url}{path}", auth=self.auth, timeout=self.timeout,
                                            allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise Unreachable(f"{step}: {outbound.describe(exc)}") from None
        request_id = response.headers.get("Request-ID", "")
        try:
            # Parse the raw bytes: the charset in Content-Type has been seen to disagree with the XML.
            root = ET.fromstring(response.content)
        except ET.ParseError:
            raise Unreachable(f"{step}: HTTP {response.status_code} without an XML answer "
                              f"(Request-ID {request_id or 'none'})") from None
        code_text = root.findtext(".//responseCode")
        if code_text is None or not code_text.strip().lstrip("-").isdigit():
            raise Unreachable(f"{step}: HTTP {response.status_code}, no responseCode in the answer")
        return Answer(
            step=step,
            http_status=response.status_code,
            code=int(code_text),
            description=(root.findtext(".//responseDescription") or "").strip(),
            report_id=(root.findtext(".//reportId") or "").strip(),
            file_id=(root.findtext("fileId") or "").strip(),
            md5=(root.findtext(".//hash") or "").strip().lower(),
            file_ids=[(e.text or "").strip() for e in root.iter("fileId")],
            request_id=request_id,
            body=response.content,
        )

    def status(self):
        return self._call("status", "/status")

    def submit(self, document):
        return self._call("submit", "/submit", data=document,
                          headers={"Content-Type": "text/xml; charset=utf-8"})

    def upload(self, report_id, file_name, data):
        return self._call("upload", "/upload", data={"id": report_id},
                          files={"file": (file_name, data, "application/octet-stream")})

    def fileinfo(self, document):
        return self._call("fileinfo", "/fileinfo", data=document,
                          headers={"Content-Type": "text/xml; charset=utf-8"})

    def finish(self, report_id):
        return self._call("finish", "/finish", data={"id": report_id})

    def retract(self, report_id):
        return self._call("retract", "/retract", data={"id": report_id})
