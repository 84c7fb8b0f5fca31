"""Who did what, from where: the Origin of every action and the audit log."""

import hashlib
from dataclasses import dataclass

from django.http import HttpRequest

from accounts.models import (
    APIKey,
    AuditLog,
    User,
)
from accounts.tenancy import tenant_scope, unscoped


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


#: The platform itself acting (jobs, demo data, admin defaults): no actor, no role limits.
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
        with tenant_scope(tenant_id, savepoint=False):  # one INSERT
            entry.save()
    return entry
