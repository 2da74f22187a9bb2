"""Session policy: idle and absolute time-outs, two-factor where it is required, and the agency portal's fence."""

import time
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotFound
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.utils.http import urlencode
from rq.exceptions import NoSuchJobError

from cases.actions.claims import release_all_claims
from cases.web.permissions import client_ip

STARTED, SEEN = "policy_started", "policy_seen"
# Pages that need a verified second factor, whatever the role: every staff route (the admin site and
# everything registered under it, such as django-rq's statistics JSON; the job dashboard), both sides
# of legal requests, metrics, QA and evidence destruction. Approving, retrying and retracting a
# report and recording a destruction are checked in their views (cases.web.reports).
TWO_FACTOR_PATHS = ("/admin/", "/django-rq/", "/le/", "/legal/", "/metrics/", "/qa/", "/destruction-requests/")
# All an agency's officer may reach: their portal, signing in and out, their second factor.
STATIC_PREFIX = "/static/"
PORTAL_PATHS = ("/le/", "/logout/", "/login/", "/account/two-factor/", "/account/verify/", "/static/")
# The health checks and the Prometheus scrape (cases.web.monitoring): for machines, the same answer
# whoever asks, so no session is read or written for them (a probe must not wait on the session table).
MACHINE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class SessionPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info in MACHINE_PATHS:
            return self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = int(time.time())
            started = request.session.setdefault(STARTED, now)
            seen = request.session.get(SEEN, now)
            if now - seen > settings.SESSION_IDLE_SECONDS or now - started > settings.SESSION_MAX_SECONDS:
                release_all_claims(user, reason="session expired", ip=request.META.get("REMOTE_ADDR"))
                logout(request)
                messages.info(request, "Your session ended. Sign in again to continue.")
                return redirect(f"{reverse('login')}?next={request.path}")
            if now - seen >= 60 or SEEN not in request.session:
                request.session[SEEN] = now  # written at most once a minute
            if request.path.startswith(TWO_FACTOR_PATHS) and not user.is_verified():
                # The verify page sends a user with no authenticator to enrolment first.
                return redirect(f"{reverse('two_factor_verify')}?{urlencode({'next': _back_to(request)})}")
            if hasattr(user, "agency_member") and not request.path.startswith(PORTAL_PATHS):
                # A law-enforcement officer sees the request portal and nothing else of the console.
                if request.method != "GET":
                    raise PermissionDenied
                return redirect("cases:portal")
        return self.get_response(request)


def _back_to(request):
    """Where the verify page returns: this page, or for a form's POST the page that posted it."""
    if request.method in ("GET", "HEAD"):
        return request.get_full_path()
    referer = urlsplit(request.META.get("HTTP_REFERER", ""))
    same_site = referer.netloc == request.get_host() and referer.path.startswith("/") and "//" not in referer.path
    return referer.path if same_site else "/"


class NoStoreMiddleware:
    """No copy of a signed-in page in any cache (the browser's, a proxy's): every response to a signed-in
    user may show case data. Static files are left cacheable; an explicit no-store is kept as set."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path_info in MACHINE_PATHS:
            return response  # never cached anyway (cases.web.monitoring), and no session to read
        user = getattr(request, "user", None)
        if (user is not None and user.is_authenticated and not request.path.startswith(STATIC_PREFIX)
                and "no-store" not in response.get("Cache-Control", "")):
            add_never_cache_headers(response)
            patch_cache_control(response, private=True)
        return response


class JobDashboardLookupMiddleware:
    """The RQ dashboard (django-rq's views) answers an unknown queue, job, worker or scheduler id with
    an exception, so a 500; here such a lookup is a 404, as any other unknown address."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if request.path.startswith("/django-rq/") and isinstance(
                exception, (NoSuchJobError, IndexError, KeyError, LookupError, ValueError, AttributeError)):
            return HttpResponseNotFound("Not found: no such queue, job, worker or scheduler.",
                                        content_type="text/plain")
        return None


def client_ip_for_throttling(request):
    """The address login throttling (django-axes) counts failures against: the same client address
    the audit log records (cases.web.permissions.client_ip)."""
    return client_ip(request)
