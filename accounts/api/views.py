"""Accounts API views: the caller (/me/, /tenants/) and one tenant's settings, members,
invitations, agency assignments, API keys and audit log.

Views are thin: they validate input with a serializer, call one service, and
serialize the result. Tenant resolution, the tenant scope and role checks live in
accounts.api.base; every queryset here is therefore already one tenant's.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.api.base import ADMIN_ONLY, TenantScopedAPIView, TenantScopedViewSet
from accounts.api.filters import AuditLogFilter, MembershipFilter
from accounts.api.serializers import (
    AgencyAssignmentInputSerializer,
    AgencyAssignmentOutputSerializer,
    APIKeyCreatedSerializer,
    APIKeyInputSerializer,
    APIKeyOutputSerializer,
    AuditLogOutputSerializer,
    InvitationInputSerializer,
    InvitationOutputSerializer,
    MeInputSerializer,
    MembershipInputSerializer,
    MembershipOutputSerializer,
    MeOutputSerializer,
    TenantAccessSerializer,
    TenantCreateInputSerializer,
    TenantSettingsInputSerializer,
    TenantSettingsOutputSerializer,
    access_data,
)
from accounts.models import (
    ADMIN_ROLES,
    AgencyAssignment,
    APIKey,
    AuditLog,
    Invitation,
    Membership,
    Role,
    Tenant,
    User,
)

NO_CONTENT = {204: OpenApiResponse(description=_("Done; no body."))}


def _api_key_of(request: Request) -> APIKey | None:
    return request.auth if isinstance(request.auth, APIKey) else None


def _remap_fields(
    exc: DjangoValidationError, mapping: dict[str, str]
) -> serializers.ValidationError:
    """A service's field names are model fields; name the API's input fields instead."""
    detail = as_serializer_error(exc)
    return serializers.ValidationError(
        {mapping.get(key, key): value for key, value in detail.items()}
    )


# --- Caller -------------------------------------------------------------------------------


class MeView(APIView):
    """The caller: a person and the tenants they reach, or an API key and its tenant."""

    tenant_isolation = "user"

    @extend_schema(responses=MeOutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(MeOutputSerializer(self._me(request)).data)

    @extend_schema(request=MeInputSerializer, responses=MeOutputSerializer)
    def patch(self, request: Request) -> Response:
        if _api_key_of(request) is not None:
            raise exceptions.PermissionDenied(_("An API key has no profile to change."))
        serializer = MeInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.user_update(
            user=request.user,
            origin=services.Origin.from_request(request),
            **serializer.validated_data,
        )
        return Response(MeOutputSerializer(self._me(request)).data)

    def _me(self, request: Request) -> dict:
        api_key = _api_key_of(request)
        if api_key is not None:
            return {
                "email": None,
                "full_name": None,
                "language": None,
                "tenants": [access_data(api_key.tenant, api_key.role, None)],
                "api_key": api_key,
            }
        user: User = request.user
        return {
            "email": user.email,
            "full_name": user.full_name,
            "language": user.language,
            "tenants": [
                access_data(access.tenant, access.role, access.via_agency)
                for access in selectors.tenant_accesses(user)
            ],
            "api_key": None,
        }


@extend_schema_view(
    list=extend_schema(summary=_("Tenants you reach, directly or through an agency")),
    create=extend_schema(
        summary=_("Create a client tenant"),
        request=TenantCreateInputSerializer,
        responses={201: TenantAccessSerializer},
    ),
)
class TenantViewSet(viewsets.GenericViewSet):
    """The tenants you reach, and new client tenants."""

    # Caller-level: the list is about the caller, not about one tenant.
    tenant_isolation = "user"
    serializer_class = TenantAccessSerializer
    filter_backends: list = []
    queryset = Tenant.objects.none()  # for the schema; get_queryset() is the real one

    def _accesses(self) -> dict[int, tuple[str, Tenant | None]]:
        api_key = _api_key_of(self.request)
        if api_key is not None:
            return {api_key.tenant_id: (api_key.role, None)}
        return {
            access.tenant.id: (access.role, access.via_agency)
            for access in selectors.tenant_accesses(self.request.user)
        }

    def get_queryset(self) -> QuerySet[Tenant]:
        self.accesses = self._accesses()
        return Tenant.objects.filter(id__in=self.accesses, is_active=True)

    def list(self, request: Request, *args, **kwargs) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        data = [access_data(tenant, *self.accesses[tenant.id]) for tenant in page]
        return self.get_paginated_response(TenantAccessSerializer(data, many=True).data)

    def create(self, request: Request, *args, **kwargs) -> Response:
        if _api_key_of(request) is not None:
            raise exceptions.PermissionDenied(_("API keys cannot create tenants."))
        serializer = TenantCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        agency = None
        if agency_slug := data.pop("managed_by", None):
            agency = self._administered_agency(agency_slug)
        tenant = services.tenant_create(
            owner=request.user,
            origin=services.Origin.from_request(request),
            kind=Tenant.Kind.CLIENT,
            managed_by=agency,
            **data,
        )
        # The creator owns a direct tenant; an agency-managed one is reached as admin.
        if agency is None:
            body = access_data(tenant, Role.OWNER, None)
        else:
            body = access_data(tenant, Role.ADMIN, agency)
        return Response(TenantAccessSerializer(body).data, status=status.HTTP_201_CREATED)

    def _administered_agency(self, slug: str) -> Tenant:
        """The agency named `slug` if the caller owns or administers it directly.
        Unknown and unreachable agencies get the same answer."""
        for access in selectors.tenant_accesses(self.request.user):
            tenant = access.tenant
            if (
                tenant.slug == slug
                and tenant.kind == Tenant.Kind.AGENCY
                and access.via_agency is None
                and access.role in ADMIN_ROLES
            ):
                return tenant
        raise serializers.ValidationError(
            {"managed_by": [_("No agency you administer has this slug.")]}, code="not_found"
        )


# --- One tenant ---------------------------------------------------------------------------


class TenantSettingsView(TenantScopedAPIView):
    """The tenant itself. Anyone in it reads; owners and admins change it."""

    write_roles = ADMIN_ONLY

    @extend_schema(responses=TenantSettingsOutputSerializer)
    def get(self, request: Request, **kwargs) -> Response:
        return Response(TenantSettingsOutputSerializer(self.tenant).data)

    @extend_schema(request=TenantSettingsInputSerializer, responses=TenantSettingsOutputSerializer)
    def patch(self, request: Request, **kwargs) -> Response:
        serializer = TenantSettingsInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        tenant = services.tenant_update(
            tenant=self.tenant, origin=self.origin, **serializer.validated_data
        )
        return Response(TenantSettingsOutputSerializer(tenant).data)


@extend_schema_view(
    list=extend_schema(summary=_("Members of the tenant")),
    retrieve=extend_schema(summary=_("One member")),
    partial_update=extend_schema(
        summary=_("Change a member's role"),
        request=MembershipInputSerializer,
        responses=MembershipOutputSerializer,
    ),
    destroy=extend_schema(summary=_("Remove a member"), responses=NO_CONTENT),
)
class MembershipViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    write_roles = ADMIN_ONLY
    serializer_class = MembershipOutputSerializer
    filterset_class = MembershipFilter
    queryset = Membership._base_manager.none()  # model for the schema only
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Membership]:
        return selectors.membership_list()

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        membership = self.get_object()
        serializer = MembershipInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.membership_change_role(
            membership=membership, role=serializer.validated_data["role"], origin=self.origin
        )
        return Response(MembershipOutputSerializer(membership).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        membership = self.get_object()
        services.membership_remove(membership=membership, origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary=_("Invitations of the tenant")),
    retrieve=extend_schema(summary=_("One invitation")),
    create=extend_schema(
        summary=_("Invite someone by email"),
        request=InvitationInputSerializer,
        responses={201: InvitationOutputSerializer},
    ),
    destroy=extend_schema(summary=_("Revoke an invitation"), responses=NO_CONTENT),
)
class InvitationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    write_roles = ADMIN_ONLY
    serializer_class = InvitationOutputSerializer
    queryset = Invitation._base_manager.none()  # model for the schema only
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Invitation]:
        return selectors.invitation_list()

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = InvitationInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.invitation_create(
            tenant_id=self.tenant.id, origin=self.origin, **serializer.validated_data
        )
        return Response(
            InvitationOutputSerializer(issued.invitation).data, status=status.HTTP_201_CREATED
        )

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.invitation_revoke(invitation=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary=_("Agency staff who reach this client")),
    retrieve=extend_schema(summary=_("One agency assignment")),
    create=extend_schema(
        summary=_("Let an agency staff member reach this client"),
        request=AgencyAssignmentInputSerializer,
        responses={201: AgencyAssignmentOutputSerializer},
    ),
    destroy=extend_schema(summary=_("Take the reach away"), responses=NO_CONTENT),
)
class AgencyAssignmentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet
):
    """On a client managed by an agency. Client admins and the agency's admins (who
    reach the client as admin through the agency) grant and revoke."""

    write_roles = ADMIN_ONLY
    serializer_class = AgencyAssignmentOutputSerializer
    queryset = AgencyAssignment._base_manager.none()  # model for the schema only
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[AgencyAssignment]:
        return selectors.agency_assignment_list()

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = AgencyAssignmentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        email = serializer.validated_data["email"]
        # An unknown email answers like a non-member: who has an account is not revealed.
        user = User.objects.filter(email__iexact=email, is_active=True).first()
        if user is None:
            raise serializers.ValidationError(
                {"email": [_("The user is not a member of the managing agency.")]}
            )
        try:
            assignment = services.agency_assignment_grant(
                client=self.tenant,
                user=user,
                role=serializer.validated_data["role"],
                origin=self.origin,
            )
        except DjangoValidationError as exc:
            raise _remap_fields(exc, {"user": "email", "tenant": "non_field_errors"}) from exc
        return Response(
            AgencyAssignmentOutputSerializer(assignment).data, status=status.HTTP_201_CREATED
        )

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.agency_assignment_revoke(assignment=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary=_("API keys of the tenant (never the keys themselves)")),
    retrieve=extend_schema(summary=_("One API key")),
    create=extend_schema(
        summary=_("Create an API key; the key is in this response only"),
        request=APIKeyInputSerializer,
        responses={201: APIKeyCreatedSerializer},
    ),
    destroy=extend_schema(summary=_("Revoke an API key (the record stays)"), responses=NO_CONTENT),
)
class APIKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    read_roles = ADMIN_ONLY
    write_roles = ADMIN_ONLY
    serializer_class = APIKeyOutputSerializer
    queryset = APIKey._base_manager.none()  # model for the schema only
    http_method_names = ["get", "post", "delete", "head", "options"]

    def _refuse_api_keys(self) -> None:
        # A leaked key must not be able to mint keys that outlive its own revocation.
        if self.api_key is not None:
            raise exceptions.PermissionDenied(_("API keys cannot create or revoke API keys."))

    def get_queryset(self) -> QuerySet[APIKey]:
        return selectors.api_key_list()

    def create(self, request: Request, *args, **kwargs) -> Response:
        self._refuse_api_keys()
        serializer = APIKeyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.api_key_create(
            tenant_id=self.tenant.id, origin=self.origin, **serializer.validated_data
        )
        body = {**APIKeyOutputSerializer(issued.api_key).data, "key": issued.raw_key}
        return Response(body, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        api_key = self.get_object()  # another tenant's key answers 404 before the refusal
        self._refuse_api_keys()
        services.api_key_revoke(api_key=api_key, origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(list=extend_schema(summary=_("Audit log, newest first")))
class AuditLogViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    read_roles = ADMIN_ONLY
    write_roles = ADMIN_ONLY  # there are no writes: an admin's POST then answers 405
    serializer_class = AuditLogOutputSerializer
    filterset_class = AuditLogFilter
    queryset = AuditLog._base_manager.none()  # model for the schema only

    def get_queryset(self) -> QuerySet[AuditLog]:
        return selectors.audit_log_list()
