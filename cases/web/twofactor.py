"""Two-factor sign-in with a TOTP authenticator app (django-otp): enrol once, verify per session."""

import base64
import io

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from cases.actions.enrolment import use_enrolment_code
from cases.web.permissions import client_ip
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit


def _next(request, default="home"):
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return redirect(default).url


def _qr_svg(url):
    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue().decode()


ENROLMENT_OK = "enrolment_code_ok"


@login_required
def setup(request):
    """Enrol an authenticator: the secret is shown once, as a QR code, until a code confirms it.

    First the one-time enrolment code an administrator issued (TWO_FACTOR_ENROLMENT_CODE_REQUIRED):
    a password alone must not let someone bind their own authenticator to another person's account.
    """
    if user_has_device(request.user, confirmed=True):
        return render(request, "registration/two_factor_setup.html", {"enrolled": True})
    if settings.TWO_FACTOR_ENROLMENT_CODE_REQUIRED and request.session.get(ENROLMENT_OK) != request.user.pk:
        if request.method == "POST" and "enrolment_code" in request.POST:
            if use_enrolment_code(request.user, request.POST["enrolment_code"], ip=client_ip(request)):
                request.session[ENROLMENT_OK] = request.user.pk
                return redirect(f"{request.path}?next={_next(request)}")
            messages.error(request, "That enrolment code is not valid: ask an administrator for a new one.")
        return render(request, "registration/two_factor_setup.html", {"needs_code": True, "next": _next(request)})
    device = TOTPDevice.objects.filter(user=request.user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=request.user, name="authenticator", confirmed=False)
    if request.method == "POST":
        if device.verify_token(request.POST.get("token", "").strip()):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            request.session.pop(ENROLMENT_OK, None)
            audit(request.user, Event.ACCOUNT_TWO_FACTOR_ENROLLED, object_type="user", object_id=request.user.pk)
            messages.success(request, "Two-factor sign-in is on for your account.")
            return redirect(_next(request))
        messages.error(request, "That code did not match. Check the time on your phone and try again.")
    url = device.config_url.replace("otpauth://totp/", f"otpauth://totp/{settings.OTP_TOTP_ISSUER}:", 1) \
        if settings.OTP_TOTP_ISSUER not in device.config_url else device.config_url
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return render(request, "registration/two_factor_setup.html", {
        "qr": _qr_svg(url), "secret": secret, "next": _next(request)})


@login_required
def verify(request):
    if not user_has_device(request.user, confirmed=True):
        return redirect(f"{redirect('two_factor_setup').url}?next={_next(request)}")
    if request.method == "POST":
        token = request.POST.get("token", "").strip()
        for device in TOTPDevice.objects.filter(user=request.user, confirmed=True):
            if device.verify_token(token):
                otp_login(request, device)
                audit(request.user, Event.ACCOUNT_TWO_FACTOR_VERIFIED, object_type="user", object_id=request.user.pk)
                return redirect(_next(request))
        audit(request.user, Event.ACCOUNT_TWO_FACTOR_FAILED, object_type="user", object_id=request.user.pk)
        messages.error(request, "That code did not match.")
    return render(request, "registration/two_factor_verify.html", {"next": _next(request)})
