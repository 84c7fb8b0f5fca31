"""Idempotency keys on creates (`Idempotency-Key: <unique string>` on a POST).

The first request with a key runs and its 2xx response is stored; a retry with the
same key and the same body gets that response again (header `Idempotent-Replayed:
true`) and creates nothing; the same key with a different body is a 422. Two
concurrent requests with one key serialise on the unique index: the second waits for
the first's transaction and then replays its result. Failed requests roll back with
their transaction, so a retry after an error runs again. Records are kept for
IDEMPOTENCY_TTL and then purged by a periodic job.
"""

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
IDEMPOTENCY_TTL = timedelta(hours=24)


class IdempotencyKeyReused(exceptions.APIException):
    status_code = 422
    default_code = "idempotency_key_reused"
    default_detail = "This Idempotency-Key was already used with a different request."


class IdempotentReplay(Exception):
    """Raised to answer with the stored response instead of running the view."""

    def __init__(self, record: IdempotencyRecord) -> None:
        self.record = record


@dataclass(slots=True)
class PendingIdempotency:
    record_id: int


def _caller(request: Request) -> str:
    auth = request.auth
    if auth is not None and hasattr(auth, "prefix"):
        return f"key:{auth.pk}"
    return f"user:{request.user.pk}"


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b"\0" + request.path.encode() + b"\0")
    digest.update(request.body)
    return digest.hexdigest()


def idempotency_begin(request: Request, tenant_id: int) -> PendingIdempotency | None:
    """Claim the request's idempotency key inside the tenant's transaction.

    Returns None without a key; raises IdempotentReplay when the key already has a
    stored result, IdempotencyKeyReused when it was used for another request.
    """
    key = request.headers.get(HEADER)
    if key is None or request.method != "POST":
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise exceptions.ValidationError({HEADER: [f"Must be 1 to {MAX_KEY_LENGTH} characters."]})
    caller, fingerprint = _caller(request), _fingerprint(request)
    table = IdempotencyRecord._meta.db_table
    with connection.cursor() as cursor:
        # ON CONFLICT waits for a concurrent holder of the same key to commit.
        cursor.execute(
            f"INSERT INTO {table} (tenant_id, key, caller, fingerprint, created_at)"
            " VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (tenant_id, caller, key) DO NOTHING RETURNING id",
            [tenant_id, key, caller, fingerprint, timezone.now()],
        )
        row = cursor.fetchone()
    if row is not None:
        return PendingIdempotency(record_id=row[0])
    record = IdempotencyRecord.objects.get(caller=caller, key=key)
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    if record.status_code is None:
        # Only possible if the first request stored nothing (it was not a 2xx but its
        # transaction still committed): treat the key as reused rather than guess.
        raise IdempotencyKeyReused("This Idempotency-Key's first request did not complete.")
    raise IdempotentReplay(record)


def idempotency_finish(pending: PendingIdempotency | None, response: Response) -> None:
    """Store a successful response for replay; failures roll back with the request."""
    if pending is None or not 200 <= response.status_code < 300:
        return
    IdempotencyRecord.objects.filter(pk=pending.record_id).update(
        status_code=response.status_code, response_body=response.data
    )


def replay_response(record: IdempotencyRecord) -> Response:
    return Response(
        record.response_body, status=record.status_code, headers={"Idempotent-Replayed": "true"}
    )


def idempotency_purge_expired(now=None) -> int:
    """Delete records older than the TTL, across tenants (a platform job)."""
    from accounts.tenancy import unscoped

    cutoff = (now or timezone.now()) - IDEMPOTENCY_TTL
    with unscoped(reason="periodic platform job: purge expired idempotency records"):
        deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
