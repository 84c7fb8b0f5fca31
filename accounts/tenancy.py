"""The tenant context: which client company the current request or task works for.

One context variable holds the current scope. `tenant_scope(tenant_id)` opens a
transaction and, on PostgreSQL, runs it as the unprivileged app role with
`app.tenant_id` set LOCAL, so row-level security filters every query even if the
ORM filter were forgotten. `unscoped(reason)` is the one named escape across tenants
(admin, agency roll-up, platform jobs): it runs as the platform role.

SET LOCAL lasts until the *outermost* transaction ends, so a nested scope puts the
previous role and tenant back when it exits; on an exception the savepoint rollback
undoes the SET LOCAL by itself.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.db import connections, transaction


class TenantNotSet(RuntimeError):
    """A tenant-owned model was queried outside any tenant scope."""


@dataclass(frozen=True, slots=True)
class Scope:
    tenant_id: int | None
    unscoped: bool = False
    reason: str = ""


_current: ContextVar[Scope | None] = ContextVar("ryorin_tenant_scope", default=None)


def current_scope() -> Scope | None:
    return _current.get()


def current_tenant_id() -> int:
    """The current tenant's id; raises TenantNotSet when no tenant scope is active."""
    scope = _current.get()
    if scope is None or scope.tenant_id is None:
        raise TenantNotSet(
            "No tenant is set: run tenant work inside tenant_scope(), or use the named "
            "cross-tenant escape unscoped(reason=...)."
        )
    return scope.tenant_id


def current_tenant_id_or_none() -> int | None:
    scope = _current.get()
    return scope.tenant_id if scope else None


def is_unscoped() -> bool:
    scope = _current.get()
    return bool(scope and scope.unscoped)


def _db_settings_for(scope: Scope) -> tuple[str, str]:
    """(role, tenant id text) that a scope runs as."""
    if scope.unscoped:
        return settings.DB_PLATFORM_ROLE, ""
    return settings.DB_APP_ROLE, str(scope.tenant_id)


def _set_local(cursor, role: str, tenant: str) -> tuple[str, str]:
    """SET LOCAL the role and tenant; returns the values they had before.

    set_config(..., true) is SET LOCAL: it never outlives the transaction, so it is
    safe behind a transaction-pooling proxy.
    """
    cursor.execute(
        "SELECT current_setting('role'), coalesce(current_setting('app.tenant_id', true), ''),"
        " set_config('role', %s, true), set_config('app.tenant_id', %s, true)",
        [role, tenant],
    )
    previous_role, previous_tenant, _, _ = cursor.fetchone()
    return previous_role, previous_tenant


@contextmanager
def _enter(scope: Scope, using: str, savepoint: bool = True) -> Iterator[Scope]:
    previous_scope = _current.get()
    connection = connections[using]
    if previous_scope == scope and connection.in_atomic_block and not savepoint:
        # One statement of our own in the scope we are in: the caller's transaction is
        # all it needs (a failing statement fails the caller, as any query would).
        yield scope
        return
    if previous_scope == scope and connection.in_atomic_block:
        # Re-entering the scope we are already in (a service called from a request,
        # the audit entry of a service): the transaction already runs as this tenant,
        # so there is nothing to SET LOCAL or restore. The savepoint stays: a block that
        # fails must roll back only its own writes and leave the caller's transaction
        # usable (a view that shows a service's ValidationError keeps rendering).
        with transaction.atomic(using=using):
            yield scope
        return
    token = _current.set(scope)
    try:
        with transaction.atomic(using=using):
            if connection.vendor != "postgresql":
                yield scope
                return
            with connection.cursor() as cursor:
                previous = _set_local(cursor, *_db_settings_for(scope))
            yield scope
            # Reached only on success. Inside an enclosing transaction (our atomic is a
            # savepoint) put the previous role and tenant back before the savepoint is
            # released, or they would leak into the rest of that transaction. As the
            # outermost transaction, the commit drops them anyway. On an exception the
            # savepoint rollback undoes the SET LOCAL by itself.
            if connection.savepoint_ids and not connection.needs_rollback:
                with connection.cursor() as cursor:
                    _set_local(cursor, *previous)
    finally:
        _current.reset(token)


@contextmanager
def tenant_scope(
    tenant_id: int, *, using: str = "default", savepoint: bool = True
) -> Iterator[Scope]:
    """Run the block for one tenant, in a transaction, with row-level security set.

    savepoint=False: when the block is a single write and the caller is already in this
    tenant's scope, skip the savepoint (two round trips) that a nested block gets."""
    if not isinstance(tenant_id, int) or isinstance(tenant_id, bool):
        raise TypeError(f"tenant_id must be an int, got {tenant_id!r}")
    with _enter(Scope(tenant_id=tenant_id), using, savepoint) as scope:
        yield scope


@contextmanager
def unscoped(reason: str, *, using: str = "default") -> Iterator[Scope]:
    """The named escape: see every tenant's rows. Only for admin, agency roll-up and
    platform jobs; the reason is required so each use says why it crosses tenants."""
    if not reason:
        raise ValueError("unscoped() needs a reason")
    with _enter(Scope(tenant_id=None, unscoped=True, reason=reason), using) as scope:
        yield scope
