"""Read queries about who reaches which tenant, shared by the UI, the API and admin."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q, QuerySet

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
from accounts.tenancy import tenant_scope, unscoped


@dataclass(frozen=True, slots=True)
class TenantAccess:
    """How a user reaches a tenant: directly, or through an agency."""

    tenant: Tenant
    role: str
    via_agency: Tenant | None = None


def tenant_accesses(user: User) -> list[TenantAccess]:
    """Every tenant the user reaches, with the role they have there.

    Direct memberships first; then, for agencies the user belongs to, all clients for
    agency owners/admins (as admin) and the assigned clients for everyone else. A
    direct membership wins over an agency path to the same tenant.
    """
    if not user.is_authenticated or not user.is_active:
        return []
    with unscoped(reason="resolve the tenants a user reaches"):
        memberships = list(
            Membership.objects.filter(user=user, tenant__is_active=True).select_related("tenant")
        )
        assignments = list(
            AgencyAssignment.objects.filter(user=user, tenant__is_active=True).select_related(
                "tenant", "agency"
            )
        )
    accesses: dict[int, TenantAccess] = {
        m.tenant_id: TenantAccess(tenant=m.tenant, role=m.role) for m in memberships
    }
    admin_agencies = {
        m.tenant_id: m.tenant
        for m in memberships
        if m.tenant.kind == Tenant.Kind.AGENCY and m.role in ADMIN_ROLES
    }
    member_agency_ids = {m.tenant_id for m in memberships if m.tenant.kind == Tenant.Kind.AGENCY}
    if admin_agencies:
        clients = Tenant.objects.filter(managed_by_id__in=admin_agencies, is_active=True)
        for client in clients:
            accesses.setdefault(
                client.id,
                TenantAccess(
                    tenant=client, role=Role.ADMIN, via_agency=admin_agencies[client.managed_by_id]
                ),
            )
    for assignment in assignments:
        # The grant holds only while the user is still in the agency that manages the client.
        if (
            assignment.agency_id in member_agency_ids
            and assignment.tenant.managed_by_id == assignment.agency_id
        ):
            accesses.setdefault(
                assignment.tenant_id,
                TenantAccess(
                    tenant=assignment.tenant, role=assignment.role, via_agency=assignment.agency
                ),
            )
    return sorted(accesses.values(), key=lambda access: (access.tenant.name, access.tenant.id))


def tenant_get_by_slug(slug: str) -> Tenant | None:
    return Tenant.objects.filter(slug=slug, is_active=True).select_related("managed_by").first()


def tenant_access_in_scope(user: User, tenant: Tenant) -> TenantAccess | None:
    """The user's access to `tenant`, or None. Call inside tenant_scope(tenant.id): the
    direct membership is then an ordinary scoped query, and only the agency path
    crosses into the agency's rows, through the named escape."""
    if not user.is_authenticated or not user.is_active:
        return None
    role = Membership.objects.filter(user=user).values_list("role", flat=True).first()
    if role is not None:
        return TenantAccess(tenant=tenant, role=role)
    agency_id = tenant.managed_by_id
    if agency_id is None:
        return None
    with unscoped(reason="agency staff reaching a managed client"):
        # A deactivated agency reaches no client (as in tenant_accesses).
        agency_role = (
            Membership.objects.filter(tenant_id=agency_id, tenant__is_active=True, user=user)
            .values_list("role", flat=True)
            .first()
        )
        if agency_role is None:
            return None
        if agency_role in ADMIN_ROLES:
            return TenantAccess(tenant=tenant, role=Role.ADMIN, via_agency=tenant.managed_by)
        assigned_role = (
            AgencyAssignment.objects.filter(tenant=tenant, agency_id=agency_id, user=user)
            .values_list("role", flat=True)
            .first()
        )
    if assigned_role is None:
        return None
    return TenantAccess(tenant=tenant, role=assigned_role, via_agency=tenant.managed_by)


@dataclass(frozen=True, slots=True)
class StaffMember:
    """Someone who can work in a tenant: one of its members, or agency staff (then
    `via_agency` is the agency) who reach it."""

    user: User
    via_agency: Tenant | None = None


def tenant_staff(
    tenant: Tenant | int, *, user_ids: Iterable[int] | None = None
) -> list[StaffMember]:
    """The active users who can work in `tenant` (own its leads and campaigns): its
    members, then the staff of the active agency that manages it who reach it, as
    tenant_accesses counts them: the agency's owners and admins, and the staff an
    AgencyAssignment lets into this client while they are still in the agency. A
    member who is also agency staff counts once, as a member. Each group by email.

    `user_ids`: only these users (to check an owner); the agency is asked only for
    ids that are not members. Runs in the tenant's scope (opening it when the caller
    has not): the members are an ordinary scoped query, and only the agency's
    memberships, another tenant's rows, are read through the named escape.
    """
    tenant_id = tenant if isinstance(tenant, int) else tenant.id
    wanted = None if user_ids is None else set(user_ids)
    if wanted is not None and not wanted:
        return []
    with tenant_scope(tenant_id, savepoint=False):
        members = Membership.objects.filter(user__is_active=True).select_related("user")
        if wanted is not None:
            members = members.filter(user_id__in=wanted)
        staff = [StaffMember(user=m.user) for m in members.order_by("user__email")]
        found = {member.user.id for member in staff}
        if wanted is not None and wanted <= found:
            return staff
        if isinstance(tenant, Tenant):
            agency_id = tenant.managed_by_id
        else:
            agency_id = (
                Tenant.objects.filter(pk=tenant_id).values_list("managed_by_id", flat=True).first()
            )
        if agency_id is None:
            return staff
        with unscoped(reason="agency staff who work in a managed client"):
            assigned = AgencyAssignment.objects.filter(tenant_id=tenant_id, agency_id=agency_id)
            agency_staff = (
                Membership.objects.filter(
                    tenant_id=agency_id, tenant__is_active=True, user__is_active=True
                )
                .filter(Q(role__in=ADMIN_ROLES) | Q(user_id__in=assigned.values("user_id")))
                .exclude(user_id__in=found)
                .select_related("user", "tenant")
                .order_by("user__email")
            )
            if wanted is not None:
                agency_staff = agency_staff.filter(user_id__in=wanted - found)
            staff.extend(StaffMember(user=m.user, via_agency=m.tenant) for m in agency_staff)
    return staff


def membership_list() -> QuerySet[Membership]:
    return Membership.objects.select_related("user").order_by("user__email")


def api_key_list() -> QuerySet[APIKey]:
    return APIKey.objects.select_related("created_by").order_by("-created_at", "-id")


def audit_log_list() -> QuerySet[AuditLog]:
    return AuditLog.objects.select_related("actor", "api_key").order_by("-created_at", "-id")


def invitation_list() -> QuerySet[Invitation]:
    return Invitation.objects.select_related("invited_by").order_by("-created_at", "-id")


def agency_assignment_list() -> QuerySet[AgencyAssignment]:
    return AgencyAssignment.objects.select_related("user", "agency", "granted_by").order_by(
        "-created_at", "-id"
    )


def invitation_pending_list() -> QuerySet[Invitation]:
    """Invitations that can still be accepted, newest first."""
    from django.utils import timezone

    return invitation_list().filter(
        accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
    )


def user_exists_with_email(email: str) -> bool:
    return User.objects.filter(email=email.strip().lower()).exists()


def agency_staff_grantable(client: Tenant) -> QuerySet[User]:
    """Staff of the agency that manages `client` whom an explicit grant can let in:
    active members of the agency who are not its owners or admins (those reach every
    client already). Empty for a client no agency manages.

    The agency's memberships are another tenant's rows, so they are read through the
    named escape; the users come back as a plain query on the (platform) user table,
    safe to evaluate later, outside the escape.
    """
    if client.managed_by_id is None:
        return User.objects.none()
    with unscoped(reason="agency staff a client's admins may grant access to"):
        staff_ids = list(
            Membership.objects.filter(tenant_id=client.managed_by_id)
            .exclude(role__in=ADMIN_ROLES)
            .values_list("user_id", flat=True)
        )
    return User.objects.filter(pk__in=staff_ids, is_active=True).order_by("email")
