"""The platform admin site: Django admin for platform administrators, across tenants.

Tenant-owned managers raise TenantNotSet outside a tenant scope and row-level security
hides every row from the app role, so each admin view runs inside the named escape
`unscoped(reason="platform admin")`, which runs as the platform role. The whole view
runs inside it, including the rendering of a lazy TemplateResponse (the changelist's
queries run while the template iterates it).

This module imports no models: `PlatformAdminConfig` is named in INSTALLED_APPS in
place of "django.contrib.admin", so it is imported before the app registry is ready.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from accounts.tenancy import unscoped

ADMIN_SCOPE_REASON = "platform admin"


def run_unscoped(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Run `view` and render its response inside the platform escape."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        with unscoped(reason=ADMIN_SCOPE_REASON):
            response = view(request, *args, **kwargs)
            render = getattr(response, "render", None)
            if callable(render) and not getattr(response, "is_rendered", True):
                # TemplateResponse renders after the view returns; its queries must
                # still run in the scope, so render it here. The handler's later
                # render() call is then a no-op.
                response = render()
        return response

    return wrapper


class PlatformAdminSite(AdminSite):
    site_header = _("Ryorin platform administration")
    site_title = _("Ryorin platform admin")
    index_title = _("Platform administration")

    def admin_view(self, view: Callable, cacheable: bool = False) -> Callable:
        # The scope goes *inside* the permission check: an anonymous or non-staff
        # request is redirected to the login page without ever crossing tenants.
        return super().admin_view(run_unscoped(view), cacheable)


class PlatformAdminConfig(AdminConfig):
    """Used in INSTALLED_APPS instead of "django.contrib.admin"."""

    default_site = "accounts.admin_site.PlatformAdminSite"
