"""Memberships, the owner rules, and agency staff's grants to client tenants."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from accounts.models import (
    ADMIN_ROLES,
    AgencyAssignment,
    Membership,
    Role,
    Tenant,
    User,
)
from accounts.services.audit import Origin, audit_record
from accounts.tenancy import tenant_scope, unscoped

OWNERS_ONLY_MESSAGE = "Only an owner can make or change owners."


def role_grantable(actor_role: str | None, role: str) -> bool:
    """Only an owner makes owners or changes an owner's membership; admins manage
    everyone else. The platform (no actor role) is not limited."""
    return actor_role is None or role != Role.OWNER or actor_role == Role.OWNER


def require_role_grantable(origin: Origin, *roles: str) -> None:
    """Raise PermissionDenied unless the origin may grant (or touch) every one of `roles`."""
    if not all(role_grantable(origin.role, role) for role in roles):
        raise PermissionDenied(OWNERS_ONLY_MESSAGE)


# --- Memberships -------------------------------------------------------------------------


def _check_an_owner_remains(membership: Membership) -> None:
    """Raise unless another owner stays. Locks the owner rows first, so two owners
    demoting each other at once cannot both pass the check (the second waits, then
    sees the first's change)."""
    owner_ids = list(
        Membership.objects.select_for_update()
        .filter(tenant_id=membership.tenant_id, role=Role.OWNER)
        .order_by("pk")  # one lock order for everyone: no deadlock
        .values_list("pk", flat=True)
    )
    if not set(owner_ids) - {membership.pk}:
        raise ValidationError({"role": "A tenant must keep at least one owner."})


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, origin: Origin) -> Membership:
    """Change a member's role; only owners make owners or change an owner, and a
    tenant never loses its last owner."""
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    require_role_grantable(origin, membership.role, role)
    with tenant_scope(membership.tenant_id):
        if membership.role == Role.OWNER and role != Role.OWNER:
            _check_an_owner_remains(membership)
        previous = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
    audit_record(
        tenant_id=membership.tenant_id,
        origin=origin,
        action="membership.role_changed",
        target=membership,
        metadata={"user": membership.user.email, "from": previous, "to": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, origin: Origin) -> None:
    """Remove a member; only owners remove an owner, and a tenant never loses its
    last owner."""
    require_role_grantable(origin, membership.role)
    with tenant_scope(membership.tenant_id):
        if membership.role == Role.OWNER:
            _check_an_owner_remains(membership)
    audit_record(
        tenant_id=membership.tenant_id,
        origin=origin,
        action="membership.removed",
        target=membership,
        metadata={"user": membership.user.email, "role": membership.role},
    )
    with tenant_scope(membership.tenant_id):
        membership.delete()


# --- Agency access -----------------------------------------------------------------------


@transaction.atomic
def agency_assignment_grant(
    *, client: Tenant, user: User, role: str, origin: Origin
) -> AgencyAssignment:
    """Let one agency staff member reach one of the agency's clients with a role."""
    agency = client.managed_by
    if agency is None:
        raise ValidationError({"tenant": "This tenant is not managed by an agency."})
    if role not in Role.values or role == Role.OWNER:
        raise ValidationError({"role": "Choose a role other than owner."})
    with unscoped(reason="check the grantee belongs to the managing agency"):
        in_agency = Membership.objects.filter(tenant=agency, user=user).exists()
    if not in_agency:
        raise ValidationError({"user": "The user is not a member of the managing agency."})
    with tenant_scope(client.id):
        assignment, _ = AgencyAssignment.objects.update_or_create(
            tenant=client,
            user=user,
            defaults={"agency": agency, "role": role, "granted_by": origin.actor},
        )
    for tenant_id in (client.id, agency.id):
        audit_record(
            tenant_id=tenant_id,
            origin=origin,
            action="agency.access_granted",
            target=assignment,
            metadata={"user": user.email, "client": client.slug, "role": role},
        )
    return assignment


@transaction.atomic
def agency_assignment_revoke(*, assignment: AgencyAssignment, origin: Origin) -> None:
    client_id, agency_id, email = assignment.tenant_id, assignment.agency_id, assignment.user.email
    for tenant_id in (client_id, agency_id):
        audit_record(
            tenant_id=tenant_id,
            origin=origin,
            action="agency.access_revoked",
            target=assignment,
            metadata={"user": email},
        )
    with tenant_scope(client_id):
        AgencyAssignment.objects.filter(pk=assignment.pk).delete()


def is_admin_role(role: str | None) -> bool:
    return role in ADMIN_ROLES
