"""Leads API routes. See config/api_urls.py for how they are mounted."""

from leads.api.imports import import_urlpatterns

tenant_urlpatterns: list = [
    *import_urlpatterns,
]
