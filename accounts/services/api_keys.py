"""API keys for third-party tools: only a SHA-256 of the key is stored."""

import pickle
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import (
    APIKey,
    Role,
)
from accounts.redis import redis_client
from accounts.services.audit import Origin, audit_record, sha256_hex
from accounts.tenancy import tenant_scope, unscoped

API_KEY_PREFIX = "ryo"
# last_used_at is a hint, not a log: writing it on every request would turn every
# API read into a write.
API_KEY_LAST_USED_RESOLUTION = timedelta(minutes=1)
# Verified keys (with their tenant) are cached in Redis so an API call does not spend a
# database transaction on authentication. Every change that matters to a key — revoke,
# tenant update or deactivation — forgets it at once and again after commit; the TTL is
# only a safety net. Without a shared cache (no REDIS_URL) keys are not cached, since a
# per-process cache could not be told about a revocation.
API_KEY_CACHE_SECONDS = 300


def _cache_key(prefix: str) -> str:
    return f"apikey:{prefix}"


def _cache_get(prefix: str) -> APIKey | None:
    client = redis_client()
    data = client.get(_cache_key(prefix)) if client is not None else None
    # Redis is as trusted as the database here (Django's own Redis cache pickles too).
    return pickle.loads(data) if data is not None else None  # noqa: S301


def _cache_set(api_key: APIKey) -> None:
    client = redis_client()
    if client is not None:
        client.set(_cache_key(api_key.prefix), pickle.dumps(api_key), ex=API_KEY_CACHE_SECONDS)


def api_key_cache_forget(prefixes: list[str]) -> None:
    """Drop cached keys now and once more after commit (a request that read the old row
    between the two would otherwise cache it again)."""
    client = redis_client()
    if not prefixes or client is None:
        return
    keys = [_cache_key(prefix) for prefix in prefixes]
    client.delete(*keys)
    transaction.on_commit(lambda: client.delete(*keys))


def api_key_cache_forget_tenant(tenant_id: int) -> None:
    with tenant_scope(tenant_id):
        prefixes = list(APIKey.objects.values_list("prefix", flat=True))
    api_key_cache_forget(prefixes)


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
        api_key_cache_forget([api_key.prefix])
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
    api_key = _cache_get(prefix)
    if api_key is None:
        with unscoped(reason="API key authentication: the key names its tenant"):
            api_key = (
                APIKey.objects.select_related("tenant")
                .filter(prefix=prefix, revoked_at__isnull=True, tenant__is_active=True)
                .first()
            )
        if api_key is None:
            return None
        _cache_set(api_key)
    if not secrets.compare_digest(api_key.hashed_key, sha256_hex(raw)):
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > API_KEY_LAST_USED_RESOLUTION:
        with unscoped(reason="API key authentication: record when the key was last used"):
            APIKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
        _cache_set(api_key)
    return api_key
