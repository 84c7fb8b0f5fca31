"""The base every tenant-scoped API view inherits: it owns tenant resolution.

The tenant comes from the URL (`/api/v1/t/<tenant>/…`, checked against the caller's
memberships and agency grants) or, on `/api/v1/…` without one, from the API key.
The whole handler then runs inside tenant_scope(), so querysets are filtered by the
tenant manager *and* by row-level security. A tenant the caller cannot reach answers
404, exactly like one that does not exist.
"""

from contextlib import ExitStack

from rest_framework import exceptions, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.idempotency import (
    IdempotentReplay,
    idempotency_begin,
    idempotency_finish,
    replay_response,
)
from accounts.models import APIKey, Role, Tenant
from accounts.selectors import TenantAccess, tenant_access_in_scope, tenant_get_by_slug
from accounts.services import Origin
from accounts.tenancy import tenant_scope

ALL_ROLES = frozenset(Role.values)
WRITER_ROLES = ALL_ROLES - {Role.READ_ONLY}
ADMIN_ONLY = frozenset({Role.OWNER, Role.ADMIN})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TenantScopedMixin:
    """Mix into an APIView or ViewSet whose data belongs to one tenant."""

    #: Roles that may read, and roles that may write (POST/PUT/PATCH/DELETE).
    read_roles: frozenset[str] = ALL_ROLES
    write_roles: frozenset[str] = WRITER_ROLES
    #: Marks the view for the isolation test that walks the URL conf.
    tenant_isolation = "tenant"

    tenant: Tenant
    access: TenantAccess
    api_key: APIKey | None

    def dispatch(self, request, *args, **kwargs):
        # Exits the tenant scope (and its transaction) however the handler ends,
        # including an unhandled exception.
        with ExitStack() as self._scope_stack:
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args, **kwargs) -> None:
        self._idempotency = None
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttles
        self._enter_tenant(request, kwargs.get("tenant"))
        self.check_role(request)
        self._idempotency = idempotency_begin(request, self.tenant.id)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, IdempotentReplay):
            return replay_response(exc.record)
        return super().handle_exception(exc)

    def finalize_response(self, request: Request, response: Response, *args, **kwargs):
        # Still inside the tenant scope: the stored result commits with the create.
        idempotency_finish(getattr(self, "_idempotency", None), response)
        return super().finalize_response(request, response, *args, **kwargs)

    def _enter_tenant(self, request: Request, tenant_slug: str | None) -> None:
        api_key = request.auth if isinstance(request.auth, APIKey) else None
        self.api_key = api_key
        if api_key is not None:
            tenant = api_key.tenant
            if tenant_slug is not None and tenant_slug != tenant.slug:
                raise exceptions.NotFound()
            self._scope_stack.enter_context(tenant_scope(tenant.id))
            self.tenant = tenant
            self.access = TenantAccess(tenant=tenant, role=api_key.role)
            return
        if tenant_slug is None:
            raise exceptions.NotFound(
                "Name the tenant in the URL (/api/v1/t/<tenant>/…) or use a tenant API key."
            )
        tenant = tenant_get_by_slug(tenant_slug)
        if tenant is None:
            raise exceptions.NotFound()
        self._scope_stack.enter_context(tenant_scope(tenant.id))
        access = tenant_access_in_scope(request.user, tenant)
        if access is None:
            raise exceptions.NotFound()
        self.tenant = tenant
        self.access = access

    def check_role(self, request: Request) -> None:
        write = request.method not in SAFE_METHODS
        allowed = self.write_roles if write else self.read_roles
        if self.access.role not in allowed:
            raise exceptions.PermissionDenied("Your role does not allow this.")
        if write and self.api_key is not None and not self.api_key.can_write:
            raise exceptions.PermissionDenied("This API key is read-only.")

    @property
    def origin(self) -> Origin:
        return Origin.from_request(self.request, api_key=self.api_key, role=self.access.role)

    def get_serializer_context(self) -> dict:
        context = super().get_serializer_context()
        context["tenant"] = getattr(self, "tenant", None)
        return context


class TenantScopedAPIView(TenantScopedMixin, APIView):
    pass


class TenantScopedViewSet(TenantScopedMixin, viewsets.GenericViewSet):
    pass
