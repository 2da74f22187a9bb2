"""Audit findings 7 (SSRF through configured URLs) and 8 (ReDoS through admin-written term patterns)."""

import json
import logging
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest
import requests
import urllib3.util.connection
from django.core.exceptions import ValidationError

from cases.actions.claims import claim_case
from cases.actions.decisions import decide
from cases.cybertip.client import CyberTipClient, Unreachable
from cases.dispatch import SIGNATURE_HEADER, dispatch_enforcement, verify
from cases.models import Enforcement, EnforcementStatus, Platform
from detection import exchange, termlists
from detection.admin import TextTermForm
from detection.detectors import text
from detection.detectors.text import PATTERN, WORD, Term, UnsafePattern, check_pattern, match_terms
from reviewconsole import outbound
from tests.conftest import ROOT, verify_2fa
from tests.factories import ban_only, case_with_match
from tests.loopback import LoopbackServer

# ---- helpers ----------------------------------------------------------------------------------


class Scripted(LoopbackServer):
    """A loopback server that answers from a script of (status, headers, body) and records requests."""

    path = "/hooks/enforce"

    def __init__(self, *answers):
        self.answers = list(answers)
        self.received = []
        super().__init__()

    @property
    def base(self):
        return self.url[: -len(self.path)]

    def handle(self, request):
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        self.received.append({"path": request.path, "headers": dict(request.headers), "body": body})
        status, headers, payload = self.answers.pop(0) if self.answers else (200, {}, b"ok")
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)


def ban(users):
    case, _ = case_with_match()
    case = claim_case(users["specialist"], case.pk)
    decide(users["specialist"], case.pk, policy=ban_only().code, version=case.version)
    return Enforcement.objects.get(action="ban_account")


@pytest.fixture
def no_private(settings):
    settings.OUTBOUND_ALLOW_PRIVATE = False


# ---- 7. the URL guard ---------------------------------------------------------------------------


@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:8000/admin/", "loopback address 127.0.0.1"),
    ("http://localhost:6379/", "loopback address 127.0.0.1"),
    ("http://2130706433/", "loopback address 127.0.0.1"),          # decimal
    ("http://0x7f.0.0.1/", "loopback address 127.0.0.1"),          # hex
    ("http://0177.0.0.1/", "loopback address 127.0.0.1"),          # octal
    ("http://127.1/", "loopback address 127.0.0.1"),               # short form
    ("http://[::1]/", "loopback address ::1"),
    ("http://[::ffff:127.0.0.1]/", "loopback address 127.0.0.1 (as ::ffff:7f00:1)"),
    ("http://[::ffff:7f00:1]:6379/", "loopback address 127.0.0.1"),
    ("http://[2002:7f00:1::]/", "loopback address 127.0.0.1"),       # 6to4
    ("http://[64:ff9b::a9fe:a9fe]/", "cloud metadata address 169.254.169.254"),  # NAT64
    ("http://10.1.2.3/", "private address 10.1.2.3"),
    ("http://172.16.0.9/", "private address"),
    ("http://192.168.1.1/", "private address"),
    ("http://[fc00::5]/", "private address"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata address 169.254.169.254"),
    ("http://[fd00:ec2::254]/", "cloud metadata address fd00:ec2::254"),
    ("http://100.100.100.200/", "cloud metadata address"),
    ("http://169.254.10.10/", "link-local address"),
    ("http://[fe80::1]/", "link-local address"),
    ("http://100.64.0.1/", "non-public address"),                  # shared (carrier-grade NAT)
    ("http://0.0.0.0:8000/", "unspecified address 0.0.0.0"),
    ("http://0/", "unspecified address 0.0.0.0"),
    ("http://[::]/", "unspecified address ::"),
    ("http://224.0.0.1/", "multicast address"),
    ("http://[ff02::1]/", "multicast address"),
    ("http://240.0.0.1/", "reserved address"),
    ("file:///etc/passwd", "only http and https"),
    ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
    ("redis://localhost:6379/0", "only http and https"),
    ("//example.com/hook", "only http and https"),
    ("http://admin:secret@93.184.216.34/", "user name or password"),
    ("http://93.184.216.34@127.0.0.1/", "user name or password"),
    ("http:///hook", "no host"),
    ("http://exa mple.com/", "spaces"),
    ("http://93.184.216.34:99999/", "not a valid URL"),
])
def test_internal_addresses_schemes_and_credentials_are_refused(url, reason, no_private):
    with pytest.raises(outbound.Refused) as refused:
        outbound.check_url(url)
    assert reason in str(refused.value) and str(refused.value).startswith("refused: ")


@pytest.mark.parametrize("url", [
    "http://93.184.216.34/hook", "https://[2606:4700:4700::1111]:8443/x", "http://[::ffff:93.184.216.34]/"])
def test_public_addresses_are_allowed(url, no_private):
    target = outbound.check_url(url)
    assert target.addresses and target.scheme in ("http", "https")


def test_a_name_with_one_internal_address_is_refused_as_a_whole(no_private, monkeypatch):
    monkeypatch.setattr(outbound, "resolve", lambda host, port: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(outbound.Refused, match="private address 10.0.0.7"):
        outbound.check_url("https://hooks.example/enforce")


def test_the_development_setting_allows_internal_addresses_but_never_metadata(settings):
    settings.OUTBOUND_ALLOW_PRIVATE = True
    assert outbound.check_url("http://127.0.0.1:9/").addresses == ("127.0.0.1",)
    assert outbound.check_url("http://10.0.0.1/")
    for url in ("http://169.254.169.254/", "http://[::ffff:169.254.169.254]/", "http://0.0.0.0/"):
        with pytest.raises(outbound.Refused):
            outbound.check_url(url)


@pytest.mark.django_db
def test_the_webhook_is_not_sent_to_loopback_and_the_reason_is_short(users, no_private, caplog):
    with Scripted() as hook:
        Platform.objects.create(name="chat", webhook_url=hook.url)
        enforcement = ban(users)
        with caplog.at_level(logging.WARNING, logger="cases.dispatch"):
            assert dispatch_enforcement(enforcement.pk) == "retry"
    enforcement.refresh_from_db()
    assert enforcement.last_error == "refused: loopback address 127.0.0.1"
    assert hook.received == []
    assert "refused: loopback address 127.0.0.1" in caplog.text


@pytest.mark.django_db
def test_the_remote_body_is_never_stored_or_logged(users, caplog):
    secret = b"redis_version:7.2.4\r\nrole:master\r\n# internal page"
    with Scripted((500, {"Content-Type": "text/plain"}, secret)) as hook:
        Platform.objects.create(name="chat", webhook_url=hook.url)
        enforcement = ban(users)
        with caplog.at_level(logging.WARNING, logger="cases.dispatch"):
            assert dispatch_enforcement(enforcement.pk) == "retry"
    enforcement.refresh_from_db()
    assert enforcement.last_error == "HTTP 500"
    assert "redis_version" not in caplog.text and "HTTP 500" in caplog.text


@pytest.mark.django_db
def test_a_307_is_followed_through_the_guard_and_a_302_never_turns_the_post_into_a_get(users):
    with Scripted() as second, Scripted() as first:
        first.answers = [(307, {"Location": second.url + "?moved=1"}, b""),
                         (302, {"Location": second.url}, b"")]
        platform = Platform.objects.create(name="chat", webhook_url=first.url)
        enforcement = ban(users)
        assert dispatch_enforcement(enforcement.pk) == "delivered"
        (delivered,) = second.received
        assert delivered["path"] == "/hooks/enforce?moved=1"
        assert verify(platform.signing_secret, delivered["headers"][SIGNATURE_HEADER], delivered["body"])
        assert json.loads(delivered["body"])["action"] == "ban_account"

        Enforcement.objects.filter(pk=enforcement.pk).update(status=EnforcementStatus.PENDING, next_attempt_at=None)
        assert dispatch_enforcement(enforcement.pk) == "retry"
        assert Enforcement.objects.get(pk=enforcement.pk).last_error == "HTTP 302"
        assert len(second.received) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("location, reason", [
    ("http://169.254.169.254/latest/meta-data/iam/", "refused: cloud metadata address 169.254.169.254"),
    ("http://[::ffff:a9fe:a9fe]/", "refused: cloud metadata address 169.254.169.254"),
    ("http://0.0.0.0:6379/", "refused: unspecified address 0.0.0.0"),
    ("file:///etc/passwd", "refused: only http and https"),
])
def test_each_redirect_is_checked_again(users, location, reason, monkeypatch):
    connects = []
    real = urllib3.util.connection.create_connection
    monkeypatch.setattr(urllib3.util.connection, "create_connection",
                        lambda address, *a, **k: connects.append(address) or real(address, *a, **k))
    with Scripted((307, {"Location": location}, b"")) as hook:
        Platform.objects.create(name="chat", webhook_url=hook.url)
        enforcement = ban(users)
        assert dispatch_enforcement(enforcement.pk) == "retry"
    assert Enforcement.objects.get(pk=enforcement.pk).last_error.startswith(reason)
    assert all(host == "127.0.0.1" for host, _port in connects)  # only ever the checked platform


@pytest.mark.django_db
def test_redirects_stop_after_the_maximum(users, settings):
    settings.OUTBOUND_MAX_REDIRECTS = 2
    with Scripted() as hook:
        hook.answers = [(307, {"Location": hook.url}, b"")] * 5
        Platform.objects.create(name="chat", webhook_url=hook.url)
        enforcement = ban(users)
        assert dispatch_enforcement(enforcement.pk) == "retry"
    assert Enforcement.objects.get(pk=enforcement.pk).last_error == "too many redirects"
    assert len(hook.received) == 3


def test_credentials_are_not_carried_to_another_origin():
    with Scripted((200, {}, b"fine")) as other, Scripted() as first:
        first.answers = [(302, {"Location": other.url}, b"")]
        with outbound.session() as session:
            session.auth = ("esp-user", "esp-pass")
            response = session.get(first.url, headers={"Authorization": "Bearer x"})
    assert response.status_code == 200 and response.content == b"fine"
    assert "Authorization" in first.received[0]["headers"]
    assert "Authorization" not in other.received[0]["headers"]


# ---- connecting to the address that was checked (no DNS rebinding) -----------------------------


def test_the_connection_goes_to_the_checked_address_and_the_name_is_never_looked_up_again(monkeypatch):
    """A name that would rebind to loopback at connect time: the guard answers the public address,
    and that is the only address any socket is opened to."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]])
    monkeypatch.setattr(outbound, "resolve", lambda host, port: next(answers))
    lookups, connects = [], []
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: lookups.append(host) or real(host, *a, **k))

    def create_connection(address, *args, **kwargs):
        connects.append(address)
        raise ConnectionRefusedError("not in a test")  # no packet leaves the machine

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    with outbound.session(allow_private=False) as session, pytest.raises(requests.ConnectionError):
        session.post("http://rebind.test/hook", data=b"{}", timeout=1)
    assert connects == [("93.184.216.34", 80)]
    assert "rebind.test" not in lookups


@pytest.mark.django_db
def test_a_webhook_by_name_is_delivered_to_the_checked_address_with_its_host_header(users, monkeypatch):
    monkeypatch.setattr(outbound, "resolve",
                        lambda host, port: ["127.0.0.1"] if host == "platform.test" else socket.getaddrinfo(host, port))
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == "platform.test":
            raise AssertionError("the name was looked up again after the check")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with Scripted() as hook:
        port = hook.httpd.server_address[1]
        Platform.objects.create(name="chat", webhook_url=f"http://platform.test:{port}/hooks/enforce")
        enforcement = ban(users)
        assert dispatch_enforcement(enforcement.pk) == "delivered"
    assert hook.received[0]["headers"]["Host"] == f"platform.test:{port}"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=platform.test", "-addext", "subjectAltName=DNS:platform.test", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_https_keeps_the_name_for_sni_and_the_certificate_check(certificate, monkeypatch):
    cert, key = certificate
    monkeypatch.setattr(outbound, "resolve", lambda host, port: ["127.0.0.1"])
    names = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    with Scripted((200, {}, b"tls")) as server:
        server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
        port = server.httpd.server_address[1]
        with outbound.session() as session:
            response = session.get(f"https://platform.test:{port}/hooks/enforce", verify=str(cert), timeout=5)
            assert response.status_code == 200 and response.content == b"tls"
            with pytest.raises(requests.exceptions.SSLError):  # the certificate is checked against the name
                session.get(f"https://other.test:{port}/hooks/enforce", verify=str(cert), timeout=5)
    assert names[0] == "platform.test"
    assert server.received[0]["headers"]["Host"] == f"platform.test:{port}"


# ---- validation when the URL is saved ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("url, words", [
    ("http://127.0.0.1:6379/", "loopback address 127.0.0.1"),
    ("http://[::ffff:10.0.0.1]/hook", "private address 10.0.0.1"),
    ("https://admin:pw@93.184.216.34/hook", "user name or password"),
])
def test_the_platform_refuses_a_webhook_url_it_may_not_call(url, words, no_private):
    platform = Platform(name="chat", webhook_url=url)
    with pytest.raises(ValidationError) as error:
        platform.full_clean()
    assert words in " ".join(error.value.message_dict["webhook_url"])
    Platform(name="chat", webhook_url="https://93.184.216.34/hook").full_clean()


@pytest.mark.django_db
def test_the_admin_form_shows_the_refusal(client, users, no_private):
    client.force_login(users["admin"])
    verify_2fa(client, users["admin"])
    response = client.post("/admin/cases/platform/add/", {
        "name": "chat", "webhook_url": "http://169.254.169.254/latest/", "signing_secret": "s" * 32,
        "enabled": "on"})
    assert response.status_code == 200
    assert "cloud metadata address 169.254.169.254" in response.content.decode()
    assert not Platform.objects.exists()


# ---- NCMEC: hash sharing and the CyberTipline -----------------------------------------------------


@pytest.mark.django_db
def test_ncmec_hash_sharing_refuses_an_internal_base_url(no_private):
    with Scripted() as fake:
        client = exchange.NCMECClient("user", "pass", fake.base, timeout=1, retries=0)
        with pytest.raises(exchange.ExchangeError, match="refused: loopback address 127.0.0.1"):
            exchange.fetch(client=client)
    assert fake.received == []


def test_ncmec_hash_sharing_checks_redirects_and_does_not_forward_credentials():
    with Scripted((302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"")) as fake:
        client = exchange.NCMECClient("user", "pass", fake.base, timeout=1, retries=0)
        with pytest.raises(outbound.Refused, match="cloud metadata"):
            client.status()
    assert len(fake.received) == 1


def test_the_cybertip_client_refuses_an_internal_base_url(no_private):
    with Scripted() as fake:
        client = CyberTipClient(fake.base, "user", "pass", timeout=1)
        with pytest.raises(Unreachable, match="status: refused: loopback address 127.0.0.1"):
            client.status()
    assert fake.received == []


# ---- 8. term patterns run in linear time ----------------------------------------------------------


def test_a_catastrophic_pattern_against_80_characters_finishes_at_once():
    # In a child process, so that the old backtracking engine fails the test rather than hanging it.
    code = (
        "import time\n"
        "from detection.detectors.text import PATTERN, Term, check_pattern, match_terms\n"
        "compiled = check_pattern('(?:a|aa)*c')\n"
        "started = time.monotonic()\n"
        "assert compiled.search('a' * 80) is None\n"
        "bio = 'ab' * 40\n"  # survives normalisation (runs of a letter are squeezed)
        "assert match_terms(bio, [Term('(?:ab|abab)*c', 'other', PATTERN, 0.5)]) == []\n"
        "print(time.monotonic() - started)\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30,
                              check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("matching a catastrophic pattern did not finish in 30 s")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip()) < 0.5


def test_patterns_the_old_check_refused_are_now_safe_to_accept():
    for pattern, subject in [("(a+)+b", "a" * 50_000), ("(\\w*\\s?)*x", "word " * 10_000)]:
        compiled = check_pattern(pattern)
        started = time.monotonic()
        assert compiled.search(subject) is None
        assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("pattern, words", [
    ("(\\w+) \\1", "back-references"),
    ("(?P<x>a)(?P=x)", "back-references"),
    ("secret(?= pics)", "look-ahead and look-behind"),
    ("(?<!not )allowed", "look-ahead and look-behind"),
    ("a++b", "possessive"),
    ("end\\Z", "\\z"),
])
def test_patterns_that_need_backtracking_are_refused_clearly(pattern, words):
    with pytest.raises(UnsafePattern) as refused:
        check_pattern(pattern)
    assert words in str(refused.value) and "RE2" in str(refused.value)
    with pytest.raises(ValueError, match="back-references|look-ahead|possessive|z"):
        termlists.validate_row({"category": "grooming", "term": pattern, "match": "pattern"})


@pytest.mark.django_db
def test_the_admin_form_refuses_a_back_reference():
    form = TextTermForm({"category": "grooming", "term": "(ab)\\1", "match": "pattern", "weight": 0.5,
                         "enabled": True})
    assert not form.is_valid()
    assert "back-references (like \\1) are not supported" in " ".join(form.errors["term"])


@pytest.mark.parametrize("typed, pattern, expected", [
    ("hey S3ND me ur p1cs!!", r"\bsend (me )?(a |some |ur |your )?(pic|pics|photo)\b", "S3ND me ur p1cs"),
    ("ｈｅｌｌｏ 😀 ѕеnd рісѕ ok", r"\bsend (pics|pix)\b", "ѕеnd рісѕ"),
    ("日本語のテキスト i am 14yo", r"\b1[0-5] ?(yo|y/o|years old)\b", "14yo"),
    ("add me on SNAP plz", r"\b(add|msg) me on (snap|kik)\b", "add me on SNAP"),
    ("s e n d  p i c s", r"send pics", "s e n d  p i c s"),
])
def test_pattern_terms_still_match_and_highlight_what_the_user_typed(typed, pattern, expected):
    [hit] = match_terms(typed, [Term(pattern, "solicitation", PATTERN, 0.5)])
    assert typed[hit["start"]:hit["end"]] == hit["text"] == expected


def test_the_shipped_pattern_terms_all_compile_on_re2():
    path = ROOT / "detection" / "data" / "default_terms.csv"
    result = termlists.read_csv(path.read_text(encoding="utf-8"))
    assert result.errors == []
    patterns = [row for row in result.rows if row["match"] == PATTERN]
    assert len(patterns) >= 10
    for row in patterns:
        assert type(check_pattern(row["term"])).__module__.startswith("re2")


# ---- the time budget of one subject's texts ----------------------------------------------------


def test_matching_a_subject_stops_at_its_time_budget_and_logs(settings, monkeypatch, caplog):
    settings.TEXT_MATCH_SECONDS = 5
    terms = text.compile_terms([Term("send pics", "solicitation", WORD, 0.6),
                                Term("our secret", "grooming", WORD, 0.6)])
    now = time.monotonic()
    clock = iter([now, now + 60, now + 60, now + 60])

    class Clock:
        @staticmethod
        def monotonic():
            return next(clock, now + 60)

    monkeypatch.setattr(text, "time", Clock)  # the second term starts after the deadline
    with caplog.at_level(logging.WARNING, logger="detection.termlists"):
        signal = termlists.build_text_signal([("bio", "Bio", "send pics, our secret")], dedupe_prefix="account:1:text",
                                             terms=terms)
    assert [t["term"] for t in signal.details["terms"]] == ["send pics"]
    assert signal.details["incomplete"] is True and "time limit" in signal.explanation
    assert "text matching for account:1:text stopped" in caplog.text

    settings.TEXT_MATCH_SECONDS = 0
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING, logger="detection.termlists"):
        assert termlists.build_text_signal([("bio", "Bio", "send pics")], dedupe_prefix="account:2:text",
                                           terms=terms) is None
    assert "text matching for account:2:text stopped" in caplog.text
