"""Top-level URL map: reviewer UI, platform API, admin, the RQ dashboard, health checks and the Prometheus scrape."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django_otp.admin import OTPAdminSite

from cases.web import monitoring, session, twofactor
from cases.web import review as case_views

# Admin requires a verified second factor (django-otp), not only a staff password.
admin.site.__class__ = OTPAdminSite

urlpatterns = [
    path("", case_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", session.sign_out, name="logout"),
    path("account/two-factor/", twofactor.setup, name="two_factor_setup"),
    path("account/verify/", twofactor.verify, name="two_factor_verify"),
    path("account/viewing/", case_views.viewing_preferences, name="viewing_preferences"),
    path("", include("cases.web.urls")),
    path("banks/", include("cases.web.bank_urls")),
    path("api/v1/", include("cases.web.api_urls")),
    path("admin/", admin.site.urls),
    path("django-rq/", include("django_rq.urls")),
    # For machines (cases.web.middleware.MACHINE_PATHS): no slash, as probes and Prometheus expect. The
    # metrics dashboard for people stays at /metrics/.
    path("healthz", monitoring.healthz, name="healthz"),
    path("readyz", monitoring.readyz, name="readyz"),
    path("metrics", monitoring.metrics, name="prometheus_metrics"),
]

admin.site.site_header = "Review console administration"
admin.site.site_title = "Review console admin"

handler400 = "cases.web.errors.bad_request"
handler403 = "cases.web.errors.permission_denied"
handler404 = "cases.web.errors.not_found"
handler500 = "cases.web.errors.server_error"
