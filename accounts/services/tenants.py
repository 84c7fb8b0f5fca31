"""Users' own profiles and tenants: create, update, (de)activate."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from accounts.models import (
    Membership,
    Role,
    Tenant,
    User,
)
from accounts.services.api_keys import api_key_cache_forget_tenant
from accounts.services.audit import Origin, audit_record
from accounts.tenancy import tenant_scope

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


def default_time_zone(country: str) -> str:
    """Japanese tenants work in Asia/Tokyo; others start in UTC until they choose."""
    return "Asia/Tokyo" if country.upper() == "JP" else "UTC"


@transaction.atomic
def tenant_create(
    *,
    name: str,
    owner: User,
    origin: Origin,
    kind: str = Tenant.Kind.CLIENT,
    slug: str = "",
    time_zone: str | None = None,
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
        time_zone=time_zone or default_time_zone(country),
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
    api_key_cache_forget_tenant(tenant.id)  # cached keys carry their tenant
    audit_record(
        tenant_id=tenant.id,
        origin=origin,
        action="tenant.updated",
        target=tenant,
        metadata={"fields": sorted(fields)},
    )
    return tenant


@transaction.atomic
def tenant_set_active(*, tenant: Tenant, is_active: bool, origin: Origin) -> Tenant:
    """Deactivate (or reactivate) a tenant: its members and API keys stop reaching it
    (selectors and key authentication read `is_active`); its data stays. A platform
    admin action, so the audit entry is the tenant's own."""
    if tenant.is_active != is_active:
        Tenant.objects.filter(pk=tenant.pk).update(is_active=is_active)
        tenant.is_active = is_active
        api_key_cache_forget_tenant(tenant.id)
        audit_record(
            tenant_id=tenant.id,
            origin=origin,
            action="tenant.activated" if is_active else "tenant.deactivated",
            target=tenant,
        )
    return tenant
