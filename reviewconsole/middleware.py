"""Session policy: idle and absolute time-outs, and two-factor for the job dashboard."""

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.shortcuts import redirect
from django.urls import reverse

STARTED, SEEN = "policy_started", "policy_seen"


class SessionPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = int(time.time())
            started = request.session.setdefault(STARTED, now)
            seen = request.session.get(SEEN, now)
            if now - seen > settings.SESSION_IDLE_SECONDS or now - started > settings.SESSION_MAX_SECONDS:
                logout(request)
                messages.info(request, "Your session ended. Sign in again to continue.")
                return redirect(f"{reverse('login')}?next={request.path}")
            if now - seen >= 60 or SEEN not in request.session:
                request.session[SEEN] = now  # written at most once a minute
            if request.path.startswith("/django-rq/") and not user.is_verified():
                return redirect(f"{reverse('two_factor_verify')}?next={request.path}")
        return self.get_response(request)
