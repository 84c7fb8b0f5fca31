from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.web import is_admin, navigation, role_label, tenant_switcher


def tenancy(request: HttpRequest) -> dict:
    """The current tenant, the side navigation and the tenants the user can switch to,
    for the layout. The switcher is computed only when a template shows it."""
    tenant = getattr(request, "tenant", None)
    access = getattr(request, "tenant_access", None)
    user = getattr(request, "user", None)
    context = {
        "current_tenant": tenant,
        "current_access": access,
        "current_role_label": role_label(access.role) if access else "",
        "is_tenant_admin": is_admin(access),
        "nav_sections": navigation(request) if tenant is not None else [],
    }
    if user is not None and user.is_authenticated:
        context["tenant_groups"] = SimpleLazyObject(lambda: tenant_switcher(user, tenant))
    return context
