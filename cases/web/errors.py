"""Error pages: JSON under /api/ (the platform's clients read JSON, never an HTML page), HTML elsewhere."""

from django.http import JsonResponse
from django.views import defaults


def _api(request):
    return request.path.startswith("/api/")


def bad_request(request, exception):
    if _api(request):
        return JsonResponse({"error": "bad request"}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if _api(request):
        return JsonResponse({"error": "forbidden"}, status=403)
    return defaults.permission_denied(request, exception)


def not_found(request, exception):
    if _api(request):
        return JsonResponse({"error": "not found"}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _api(request):
        return JsonResponse({"error": "internal error; it has been logged"}, status=500)
    return defaults.server_error(request)
