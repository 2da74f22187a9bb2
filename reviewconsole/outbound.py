"""Outbound HTTP to addresses configured at run time (platform webhooks, NCMEC): the SSRF guard.

An admin types a platform's webhook URL, and settings name NCMEC's base URLs; the worker then sends
signed or authenticated requests there. Without a guard such a URL could point at the console
itself, at Redis or at a cloud metadata service. Every such request goes through here:

* `check_url` takes only http(s) URLs without user:password@, resolves the host (getaddrinfo) and
  looks at every address with `ipaddress`: loopback, private, link-local, shared (CGNAT), reserved,
  unspecified, multicast and cloud-metadata addresses are refused, IPv6 that carries an IPv4
  address (mapped, compatible, NAT64, 6to4) is judged by that IPv4 address. Whatever the spelling
  of the host ("2130706433", "0x7f.1", "0177.0.0.1", "[::ffff:127.0.0.1]"), it is the resolved
  address that is judged, never the text.
* `GuardedAdapter` (a requests transport adapter) runs that check for every request it sends,
  redirects included, and then connects to the very address it checked: the connection pool is
  keyed by the IP, the Host header and TLS (SNI and certificate check) keep the name. The name is
  never looked up a second time, so DNS rebinding between the check and the connect has nothing
  to swap. Proxies from the environment are ignored: a proxy would make the connection for us,
  to wherever it resolves the name.
* `GuardedSession` follows no redirect by itself: each Location is sent again through the adapter
  (so through the same check), at most OUTBOUND_MAX_REDIRECTS times; a POST is followed only by
  307/308 (never turned into a GET), and credentials are dropped when the origin changes.

Internal addresses are allowed only with the OUTBOUND_ALLOW_PRIVATE setting (development and the
tests, whose fakes listen on 127.0.0.1). Cloud-metadata, unspecified and multicast addresses are
refused even then. `describe` gives a short reason for an error, never text from the remote side.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError

SCHEMES = {"http": 80, "https": 443}
MAX_ADDRESSES = 3  # addresses of one name tried in turn when a connection cannot be made
# Instance metadata services: AWS, GCP, Azure, OpenStack, DigitalOcean (169.254.169.254), AWS ECS
# task metadata, AWS over IPv6, Alibaba Cloud, Oracle Cloud (legacy). Refused whatever the setting.
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class Refused(requests.RequestException):
    """The URL or the address it resolves to is not one the console may call."""

    def __init__(self, reason):
        self.reason = reason
        super().__init__(f"refused: {reason}")


class Unresolvable(requests.ConnectionError):
    """The host name does not resolve (a transient failure, like a refused connection)."""


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str          # as in the URL, without brackets
    port: int
    netloc: str        # host[:port], what the Host header says
    addresses: tuple   # the checked addresses to connect to, in getaddrinfo's order


def allow_private_default():
    return bool(getattr(settings, "OUTBOUND_ALLOW_PRIVATE", False))


def _embedded_ipv4(address):
    """The IPv4 address an IPv6 address stands for, if it carries one."""
    if address.version != 6:
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address in NAT64 or (address in IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_problem(address, *, allow_private=None):
    """Why the console may not connect to this address, or None when it may."""
    allow_private = allow_private_default() if allow_private is None else allow_private
    address = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    inner = _embedded_ipv4(address)
    if inner is not None:
        problem = address_problem(inner, allow_private=allow_private)
        return f"{problem} (as {address})" if problem else None
    if address in METADATA:
        return f"cloud metadata address {address}"
    if address.is_unspecified:
        return f"unspecified address {address}"
    if address.is_multicast:
        return f"multicast address {address}"
    if allow_private:
        return None
    for name, flag in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                       ("reserved", address.is_reserved), ("private", address.is_private),
                       ("non-public", not address.is_global)):
        if flag:
            return f"{name} address {address}"
    return None


def resolve(host, port):
    """The addresses of a host, in the order getaddrinfo gives (tests replace this)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses = []
    for _family, _type, _proto, _name, sockaddr in infos:
        if sockaddr[0] not in addresses:
            addresses.append(sockaddr[0])
    return addresses


def parse_url(url):
    """(scheme, host, port, netloc) of an http(s) URL without credentials, or Refused."""
    if not isinstance(url, str) or not url:
        raise Refused("no URL")
    if any(ord(char) <= 32 or char in "\\\x7f" for char in url):
        raise Refused("spaces, control characters or backslashes in the URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise Refused(f"only http and https URLs, not {scheme or 'a URL without a scheme'}")
    if "@" in parts.netloc:
        raise Refused("user name or password in the URL")
    host = parts.hostname
    if not host:
        raise Refused("no host in the URL")
    return scheme, host, port or SCHEMES[scheme], parts.netloc


def check_url(url, *, allow_private=None):
    """Parse, resolve and judge a URL; a Target with the addresses that may be connected to.

    Raises Refused (scheme, credentials, or any address refused: a name that resolves to one
    public and one internal address is refused as a whole) or Unresolvable.
    """
    scheme, host, port, netloc = parse_url(url)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        raise Unresolvable(f"cannot resolve {host}") from None
    if not addresses:
        raise Unresolvable(f"cannot resolve {host}")
    for address in addresses:
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            raise Refused(problem)
    return Target(url=url, scheme=scheme, host=host, port=port, netloc=netloc, addresses=tuple(addresses))


def describe(exc):
    """A short reason for a failed request, for last_error columns and logs: never the remote text."""
    if isinstance(exc, Refused | Unresolvable):
        return str(exc)
    if isinstance(exc, requests.Timeout):
        return f"timeout ({type(exc).__name__})"
    if isinstance(exc, requests.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, requests.ConnectionError):
        return f"connection failed ({type(exc).__name__})"
    return f"request failed ({type(exc).__name__})"


def _never_connected(exc):
    """True when the connection was never made (so trying another address of the name is safe)."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3 wraps it in MaxRetryError
    return isinstance(reason, ConnectTimeoutError)  # NewConnectionError is a ConnectTimeoutError


class GuardedAdapter(HTTPAdapter):
    """Checks every request's URL and connects only to the addresses it checked (see the module)."""

    def __init__(self, *, allow_private=None, timeout=None, **kwargs):
        self.allow_private = allow_private
        self.default_timeout = timeout
        super().__init__(**kwargs)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # noqa: PLR0917 - requests'
        target = check_url(request.url, allow_private=self.allow_private)
        request.headers["Host"] = target.netloc
        timeout = self.default_timeout if timeout is None else timeout
        addresses = target.addresses[:MAX_ADDRESSES]
        for index, address in enumerate(addresses):
            request.outbound_address = address
            try:
                # No proxies: the connection goes to the address checked above, or nowhere.
                return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=None)
            except requests.ConnectionError as exc:
                if index == len(addresses) - 1 or not _never_connected(exc):
                    raise
        raise Refused("no address to connect to")  # not reached: addresses is never empty

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        address = getattr(request, "outbound_address", None)
        if address is None:
            raise Refused("request was not checked")  # never connect to an address we did not judge
        name = host_params["host"].strip("[]")
        host_params["host"] = f"[{address}]" if ":" in address else address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = name  # SNI and the certificate check use the name
        return host_params, pool_kwargs


def _no_auth(request):
    return request


def _origin(url):
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.hostname, parts.port or SCHEMES.get(parts.scheme.lower())


class GuardedSession(requests.Session):
    """A requests session whose every request, and every redirect, goes through the guard."""

    def __init__(self, *, allow_private=None, timeout=None, max_retries=0, max_redirects=None):
        super().__init__()
        adapter = GuardedAdapter(allow_private=allow_private, timeout=timeout, max_retries=max_retries)
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self.max_redirects = (getattr(settings, "OUTBOUND_MAX_REDIRECTS", 3) if max_redirects is None
                              else max_redirects)

    def get_redirect_target(self, resp):
        return None  # requests never follows a redirect by itself here; request() does, checked

    def request(self, method, url, **kwargs):
        follow = kwargs.pop("allow_redirects", True)
        parse_url(url)  # a refused scheme says so here, not "no connection adapters"
        response = super().request(method, url, allow_redirects=False, **kwargs)
        hops = 0
        while follow and response.is_redirect:
            method = method.upper()
            status = response.status_code
            if status == 303 and method != "HEAD":
                method = "GET"
            elif status in (301, 302) and method not in ("GET", "HEAD"):
                return response  # a POST is never replayed as a GET: the caller sees the 30x
            if hops >= self.max_redirects:
                response.close()
                raise requests.TooManyRedirects(f"more than {self.max_redirects} redirects", response=response)
            hops += 1
            next_url = urljoin(response.url, response.headers["location"])
            parse_url(next_url)  # scheme and credentials; the adapter checks the addresses before connecting
            if status == 303:
                for key in ("data", "files", "json"):
                    kwargs.pop(key, None)
            kwargs.pop("params", None)  # the Location carries its own query
            if _origin(next_url) != _origin(response.url):
                # Credentials (ours or the session's) stay with the origin they were given for.
                kwargs["auth"] = _no_auth
                kwargs["headers"] = {k: v for k, v in (kwargs.get("headers") or {}).items()
                                     if k.lower() not in ("authorization", "cookie")}
            response.close()
            response = super().request(method, next_url, allow_redirects=False, **kwargs)
        return response


def session(**kwargs):
    """A guarded session (see GuardedSession); use it as a context manager or close it."""
    return GuardedSession(**kwargs)
