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


@login_required
def setup(request):
    """Enrol an authenticator: the secret is shown once, as a QR code, until a code confirms it."""
    if user_has_device(request.user, confirmed=True):
        return render(request, "registration/two_factor_setup.html", {"enrolled": True})
    device = TOTPDevice.objects.filter(user=request.user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=request.user, name="authenticator", confirmed=False)
    if request.method == "POST":
        if device.verify_token(request.POST.get("token", "").strip()):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
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
