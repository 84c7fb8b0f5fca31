from importlib import import_module

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

# Staff web UI pages of one tenant: each app's urls.py may give `tenant_urlpatterns`
# (views wrapped in accounts.web.tenant_view), mounted under /t/<tenant>/ in the app's
# namespace, e.g. reverse("leads:index", kwargs={"tenant": slug}).
WEB_APPS = ["accounts", "leads", "campaigns", "pipeline", "reporting"]
tenant_web_patterns = []
for app in WEB_APPS:
    try:
        module = import_module(f"{app}.urls")
    except ModuleNotFoundError as exc:
        if exc.name != f"{app}.urls":
            raise
        continue
    if hasattr(module, "tenant_urlpatterns"):
        tenant_web_patterns.append(path("", include((module.tenant_urlpatterns, app))))

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(("config.api_urls", "api"))),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("t/<slug:tenant>/", include(tenant_web_patterns)),
    # Public lead capture: hosted forms, embedded-form submissions, tracking (no login).
    path("", include("leads.capture.urls")),
    # Public nurture mail links: one-click unsubscribe, tracking (signed tokens, no login).
    path("", include(("campaigns.nurture.urls", "nurture"))),
    path("", include("accounts.urls")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
