"""Every write in accounts that matters: one function per use case, transactional,
audited where it touches security."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import slugify

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

API_KEY_PREFIX = "ryo"
INVITATION_LIFETIME = timedelta(days=7)
# last_used_at is a hint, not a log: writing it on every request would turn every
# API read into a write.
API_KEY_LAST_USED_RESOLUTION = timedelta(minutes=1)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- Audit -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an action came from: who did it, with which key, from which address."""

    actor: User | None = None
    api_key: APIKey | None = None
    ip_address: str | None = None
    user_agent: str = ""
    #: The actor's role in the tenant acted on; None for the platform itself (admin,
    #: jobs, demo data), which the role rules do not limit.
    role: str | None = None

    @classmethod
    def from_request(
        cls, request: HttpRequest, *, api_key: APIKey | None = None, role: str | None = None
    ) -> "Origin":
        user = getattr(request, "user", None)
        if role is None and getattr(request, "tenant_access", None) is not None:
            role = request.tenant_access.role
        # An API-key caller is "authenticated" but is no User: the key is the origin.
        return cls(
            actor=user if isinstance(user, User) and user.is_authenticated else None,
            api_key=api_key,
            ip_address=request.META.get("REMOTE_ADDR") or None,
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
            role=role,
        )


OWNERS_ONLY_MESSAGE = "Only an owner can make or change owners."


def role_grantable(actor_role: str | None, role: str) -> bool:
    """Only an owner makes owners or changes an owner's membership; admins manage
    everyone else. The platform (no actor role) is not limited."""
    return actor_role is None or role != Role.OWNER or actor_role == Role.OWNER


def _require_grantable(origin: "Origin", *roles: str) -> None:
    if not all(role_grantable(origin.role, role) for role in roles):
        raise PermissionDenied(OWNERS_ONLY_MESSAGE)


SYSTEM = Origin()


def audit_record(
    *,
    tenant_id: int | None,
    origin: Origin,
    action: str,
    target: object | None = None,
    metadata: dict | None = None,
) -> AuditLog:
    """Append one audit entry. Runs in the tenant's scope (or, for platform events with
    no tenant, through the escape) so it joins the caller's transaction."""
    entry = AuditLog(
        tenant_id=tenant_id,
        actor=origin.actor,
        api_key=origin.api_key,
        action=action,
        metadata=metadata or {},
        ip_address=origin.ip_address,
        user_agent=origin.user_agent,
    )
    if target is not None:
        entry.target_type = target._meta.label_lower
        entry.target_id = str(target.pk)
        entry.target_repr = str(target)[:200]
    if tenant_id is None:
        with unscoped(reason="platform audit entry"):
            entry.save()
    else:
        with tenant_scope(tenant_id):
            entry.save()
    return entry


# --- Users -------------------------------------------------------------------------------

USER_EDITABLE_FIELDS = frozenset({"full_name", "language"})


@transaction.atomic
def user_update(*, user: User, origin: Origin, **fields) -> User:
    """Change a user's own profile; only the fields in USER_EDITABLE_FIELDS."""
    unknown = set(fields) - USER_EDITABLE_FIELDS
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    for name, value in fields.items():
        setattr(user, name, value)
    user.full_clean(exclude=["password"])
    if fields:
        user.save(update_fields=list(fields))
    return user


# --- Tenants -----------------------------------------------------------------------------


def _unique_slug(name: str) -> str:
    base = slugify(name, allow_unicode=False)[:40].strip("-") or "tenant"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def tenant_create(
    *,
    name: str,
    owner: User,
    origin: Origin,
    kind: str = Tenant.Kind.CLIENT,
    slug: str = "",
    time_zone: str = "Asia/Tokyo",
    language: str = "ja",
    country: str = "JP",
    managed_by: Tenant | None = None,
) -> Tenant:
    """Create a tenant and make `owner` its owner. A managed client's agency must be an
    agency; the creator then reaches the client through the agency, not a membership."""
    if managed_by is not None and managed_by.kind != Tenant.Kind.AGENCY:
        raise ValidationError({"managed_by": "Only an agency can manage a client tenant."})
    tenant = Tenant(
        name=name,
        slug=slug or _unique_slug(name),
        kind=kind,
        time_zone=time_zone,
        language=language,
        country=country,
        managed_by=managed_by,
    )
    tenant.full_clean()
    tenant.save()
    with tenant_scope(tenant.id):
        if managed_by is None:
            Membership.objects.create(tenant=tenant, user=owner, role=Role.OWNER)
    audit_record(
        tenant_id=tenant.id,
        origin=origin,
        action="tenant.created",
        target=tenant,
        metadata={"kind": kind, "managed_by": managed_by.slug if managed_by else None},
    )
    if managed_by is not None:
        audit_record(
            tenant_id=managed_by.id,
            origin=origin,
            action="agency.client_created",
            target=tenant,
        )
    return tenant


@transaction.atomic
def tenant_update(*, tenant: Tenant, origin: Origin, **fields) -> Tenant:
    allowed = {"name", "time_zone", "language", "country"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    for name, value in fields.items():
        setattr(tenant, name, value)
    tenant.full_clean()
    tenant.save(update_fields=list(fields))
    audit_record(
        tenant_id=tenant.id,
        origin=origin,
        action="tenant.updated",
        target=tenant,
        metadata={"fields": sorted(fields)},
    )
    return tenant


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
    _require_grantable(origin, membership.role, role)
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
    _require_grantable(origin, membership.role)
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


# --- API keys ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedAPIKey:
    api_key: APIKey
    raw_key: str  # shown to the user once, never stored


def split_raw_api_key(raw_key: str) -> tuple[str, str] | None:
    """'ryo_<prefix>_<secret>' → (prefix, raw key), or None when it is not one of ours."""
    # The secret is urlsafe base64 and may itself contain "_": split twice at most.
    parts = raw_key.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 12:
        return None
    return parts[1], raw_key.strip()


@transaction.atomic
def api_key_create(
    *, tenant_id: int, name: str, scope: str, role: str, origin: Origin
) -> IssuedAPIKey:
    if scope not in APIKey.Scope.values:
        raise ValidationError({"scope": f"Unknown scope {scope!r}."})
    if role not in Role.values or role == Role.OWNER:
        raise ValidationError({"role": "Choose a role other than owner."})
    prefix = secrets.token_hex(6)
    raw_key = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with tenant_scope(tenant_id):
        api_key = APIKey(
            tenant_id=tenant_id,
            name=name,
            prefix=prefix,
            hashed_key=sha256_hex(raw_key),
            scope=scope,
            role=role,
            created_by=origin.actor,
        )
        api_key.full_clean(exclude=["tenant", "created_by"])
        api_key.save()
    audit_record(
        tenant_id=tenant_id,
        origin=origin,
        action="api_key.created",
        target=api_key,
        metadata={"scope": scope, "role": role},
    )
    return IssuedAPIKey(api_key=api_key, raw_key=raw_key)


@transaction.atomic
def api_key_revoke(*, api_key: APIKey, origin: Origin) -> APIKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        with tenant_scope(api_key.tenant_id):
            api_key.save(update_fields=["revoked_at"])
        audit_record(
            tenant_id=api_key.tenant_id, origin=origin, action="api_key.revoked", target=api_key
        )
    return api_key


def api_key_authenticate(raw_key: str) -> APIKey | None:
    """The active key matching `raw_key`, with its tenant, or None."""
    parsed = split_raw_api_key(raw_key)
    if parsed is None:
        return None
    prefix, raw = parsed
    with unscoped(reason="API key authentication: the key names its tenant"):
        api_key = (
            APIKey.objects.select_related("tenant")
            .filter(prefix=prefix, revoked_at__isnull=True, tenant__is_active=True)
            .first()
        )
        if api_key is None or not secrets.compare_digest(api_key.hashed_key, sha256_hex(raw)):
            return None
        now = timezone.now()
        if (
            api_key.last_used_at is None
            or now - api_key.last_used_at > API_KEY_LAST_USED_RESOLUTION
        ):
            APIKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
    return api_key


# --- Invitations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedInvitation:
    invitation: Invitation
    token: str


@transaction.atomic
def invitation_create(*, tenant_id: int, email: str, role: str, origin: Origin) -> IssuedInvitation:
    """Invite an email address into the tenant. The mail goes out after commit."""
    from accounts.tasks import send_invitation_email

    email = User.objects.normalize_email(email).strip().lower()
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    _require_grantable(origin, role)
    token = secrets.token_urlsafe(32)
    with tenant_scope(tenant_id):
        if Membership.objects.filter(user__email=email).exists():
            raise ValidationError({"email": "This person is already a member."})
        Invitation.objects.filter(email=email, accepted_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        invitation = Invitation(
            tenant_id=tenant_id,
            email=email,
            role=role,
            hashed_token=sha256_hex(token),
            invited_by=origin.actor,
            expires_at=timezone.now() + INVITATION_LIFETIME,
        )
        invitation.full_clean(exclude=["tenant", "invited_by", "accepted_by"])
        invitation.save()
    audit_record(
        tenant_id=tenant_id,
        origin=origin,
        action="invitation.created",
        target=invitation,
        metadata={"email": email, "role": role},
    )
    transaction.on_commit(lambda: send_invitation_email.delay(tenant_id, invitation.id, token))
    return IssuedInvitation(invitation=invitation, token=token)


def invitation_get_by_token(token: str) -> Invitation | None:
    with unscoped(reason="an invitation link names its tenant through the token"):
        return (
            Invitation.objects.select_related("tenant")
            .filter(hashed_token=sha256_hex(token))
            .first()
        )


@transaction.atomic
def invitation_accept(*, token: str, user: User, origin: Origin) -> Membership:
    """Accept an invitation as `user`, whose email must be the invited one."""
    invitation = invitation_get_by_token(token)
    if invitation is None or not invitation.is_pending:
        raise ValidationError("This invitation is invalid, expired or already used.")
    if invitation.email != user.email.lower():
        raise PermissionDenied("This invitation was sent to another email address.")
    with tenant_scope(invitation.tenant_id):
        membership, _created = Membership.objects.get_or_create(
            tenant_id=invitation.tenant_id, user=user, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        tenant_id=invitation.tenant_id,
        origin=origin,
        action="invitation.accepted",
        target=invitation,
        metadata={"email": user.email, "role": membership.role},
    )
    return membership


@transaction.atomic
def invitation_accept_new_user(
    *, token: str, full_name: str, password: str, origin: Origin
) -> Membership:
    """Sign up the invited person and accept in one transaction: the account is created
    only together with its membership, with the invited email (the link proves it)."""
    from dataclasses import replace

    from django.contrib.auth import password_validation

    invitation = invitation_get_by_token(token)
    if invitation is None or not invitation.is_pending:
        raise ValidationError("This invitation is invalid, expired or already used.")
    if User.objects.filter(email=invitation.email).exists():
        raise ValidationError("An account with this email address already exists.")
    user = User(email=invitation.email, full_name=full_name)
    password_validation.validate_password(password, user)
    user.set_password(password)
    user.full_clean()
    user.save()
    return invitation_accept(token=token, user=user, origin=replace(origin, actor=user))


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, origin: Origin) -> None:
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = timezone.now()
        with tenant_scope(invitation.tenant_id):
            invitation.save(update_fields=["revoked_at"])
        audit_record(
            tenant_id=invitation.tenant_id,
            origin=origin,
            action="invitation.revoked",
            target=invitation,
        )


def is_admin_role(role: str | None) -> bool:
    return role in ADMIN_ROLES


@transaction.atomic
def tenant_set_active(*, tenant: Tenant, is_active: bool, origin: Origin) -> Tenant:
    """Deactivate (or reactivate) a tenant: its members and API keys stop reaching it
    (selectors and key authentication read `is_active`); its data stays. A platform
    admin action, so the audit entry is the tenant's own."""
    if tenant.is_active != is_active:
        Tenant.objects.filter(pk=tenant.pk).update(is_active=is_active)
        tenant.is_active = is_active
        audit_record(
            tenant_id=tenant.id,
            origin=origin,
            action="tenant.activated" if is_active else "tenant.deactivated",
            target=tenant,
        )
    return tenant
