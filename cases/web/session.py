"""Signing out: the claims a reviewer holds are given back first, so no case stays locked to nobody."""

from django.contrib.auth import logout
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from cases.actions.claims import release_all_claims
from cases.web.permissions import client_ip


@require_POST
def sign_out(request):
    if request.user.is_authenticated:
        release_all_claims(request.user, reason="signed out", ip=client_ip(request))
    logout(request)
    return redirect("login")
