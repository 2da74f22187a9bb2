"""A platform's webhook endpoint on loopback that records what it receives and fails on request."""

from tests.loopback import LoopbackServer


class WebhookServer(LoopbackServer):
    path = "/hooks/enforce"

    def __init__(self):
        self.received = []
        self.script = []  # statuses to answer with, in turn; "drop" closes the connection; then 200
        super().__init__()

    def handle(self, request):
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        self.received.append({"headers": dict(request.headers), "body": body, "path": request.path})
        status = self.script.pop(0) if self.script else 200
        if status == "drop":
            return self.drop(request)
        request.send_response(status)
        request.send_header("Content-Length", "2")
        request.end_headers()
        request.wfile.write(b"ok")
