from django.http import HttpRequest


def tenancy(request: HttpRequest) -> dict:
    """The current tenant and the tenants the user can switch to, for the layout."""
    return {
        "current_tenant": getattr(request, "tenant", None),
        "current_access": getattr(request, "tenant_access", None),
    }
