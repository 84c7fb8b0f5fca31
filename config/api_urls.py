"""/api/v1/: each app's `api/urls.py` gives `tenant_urlpatterns` (mounted both under
/api/v1/t/<tenant>/ and, for tenant API keys, under /api/v1/) and may give
`urlpatterns` for routes that are about the caller rather than one tenant."""

from importlib import import_module

from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path

from accounts.api.errors import error_body

API_APPS = ["accounts", "leads", "campaigns", "pipeline", "reporting"]

user_patterns = []
tenant_patterns = []
for app in API_APPS:
    try:
        module = import_module(f"{app}.api.urls")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"{app}.api", f"{app}.api.urls"):
            raise
        continue
    user_patterns += getattr(module, "urlpatterns", [])
    tenant_patterns += getattr(module, "tenant_urlpatterns", [])


def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """An unknown API path answers in the API's error format, not Django's HTML page."""
    message = "No such API endpoint."
    if not request.path.endswith("/"):
        message += " API paths end with a slash."
    return JsonResponse(error_body("not_found", message), status=404)


api_not_found.tenant_isolation = "user"  # shows no data at all

urlpatterns = [
    path("t/<slug:tenant>/", include((tenant_patterns, "tenant"))),
    path("", include((tenant_patterns, "keytenant"))),
    *user_patterns,
    re_path(r"^(?P<path>.*)$", api_not_found, name="not-found"),
]
