"""/api/v1/: each app's `api/urls.py` gives `tenant_urlpatterns` (mounted both under
/api/v1/t/<tenant>/ and, for tenant API keys, under /api/v1/) and may give
`urlpatterns` for routes that are about the caller rather than one tenant."""

from importlib import import_module

from django.urls import include, path

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

urlpatterns = [
    path("t/<slug:tenant>/", include((tenant_patterns, "tenant"))),
    path("", include((tenant_patterns, "keytenant"))),
    *user_patterns,
]
