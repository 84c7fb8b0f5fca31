"""Accounts API routes. See config/api_urls.py for how they are mounted."""

urlpatterns: list = []
tenant_urlpatterns: list = []
