"""Sending deliveries: create them from events, claim, send, record, schedule retries.

The life of a delivery (statuses in models.DeliveryStatus):

    pending ──claim──▶ sending ──2xx──▶ succeeded
                          │
                          └─fail──▶ retrying ──(next_attempt_at)──claim──▶ sending …
                                       └─ attempts used up ──▶ gave_up

* Claim: one UPDATE … RETURNING moves due rows to "sending" with a lease and counts
  the attempt; two workers can never both claim a row (the second UPDATE waits for the
  first and then no longer matches). A worker killed mid-send leaves its lease to run
  out; then the sweep (retry_due) hands the row to a worker again. Each claim commits
  before the HTTP request, and the result is recorded afterwards in a transaction of its
  own: no transaction stays open across the network.
* Recording is fenced by the attempt number: a worker whose lease ran out and was
  overtaken cannot overwrite the newer attempt's result.
* Retries: timeouts, connection errors, 408, 425, 429 and 5xx are retried with
  exponential backoff and jitter (30 s · 2ⁿ, capped at an hour) for MAX_ATTEMPTS
  attempts, about a day; any other answer (3xx — redirects are not followed —, other
  4xx, a URL the guard refuses) means the receiver or its configuration refuses the
  request, so it gets only CLIENT_ERROR_ATTEMPTS attempts (about 15 minutes) before
  giving up, enough to fix a deployment slip without hammering a wrong URL for a day.
* An endpoint with no success for DISABLE_AFTER while failing is disabled (audit entry,
  mail to the tenant's owners and admins). Its unfinished deliveries wait, unclaimed,
  and resume when someone enables it again; nothing is dropped.
"""

import json
import os
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import DomainEvent
from accounts.tenancy import tenant_scope, unscoped
from accounts.webhooks import signing
from accounts.webhooks.addresses import RefusedURL, resolve_target
from accounts.webhooks.catalogue import ALL_EVENTS
from accounts.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from accounts.webhooks.secrets import decrypt_secret

API_VERSION = "v1"
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 3600
MAX_ATTEMPTS = 30  # 30 s … 1 h backoff: the last attempt comes about 24 h after the first
CLIENT_ERROR_ATTEMPTS = 5
DISABLE_AFTER = timedelta(hours=24)
# New deliveries are sent by the task queued after commit; the sweep picks up only those
# still pending after this grace (their task was lost: a crash between commit and publish).
PENDING_GRACE = timedelta(seconds=30)
CHUNK = 20  # deliveries per task: one task's lease covers at most this many requests
RETRYABLE_CODES = frozenset({408, 425, 429})
ERROR_TEXT_LIMIT = 500
RESPONSE_READ_LIMIT = 64 * 1024

USER_AGENT = "Ryorin-Webhooks/1"


# --- Bodies ------------------------------------------------------------------------------


def build_body(*, body_id: str, name: str, created: datetime, tenant_slug: str, data) -> str:
    """The JSON text of a delivery. Versioned: receivers read `api_version`."""
    return json.dumps(
        {
            "id": body_id,
            "type": name,
            "api_version": API_VERSION,
            "created": created.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "tenant": tenant_slug,
            "data": data,
        },
        cls=DjangoJSONEncoder,
        ensure_ascii=False,
        separators=(",", ":"),
    )


def event_body_id(event_id: int) -> str:
    return f"evt_{event_id}"


# --- From events to deliveries (the outbox handler) ----------------------------------------


def deliveries_for_event(event: DomainEvent) -> list[int]:
    """Create the deliveries of one event for the tenant's active endpoints that subscribe
    to it, and queue them after commit. Runs inside the event's tenant scope. Idempotent:
    a second dispatch of the event finds them there (unique per endpoint and event)."""
    endpoints = [
        (endpoint_id, slug)
        for endpoint_id, events, slug in _active_endpoints(event.tenant_id)
        if ALL_EVENTS in events or event.name in events
    ]
    if not endpoints:
        return []
    body = build_body(
        body_id=event_body_id(event.id),
        name=event.name,
        created=event.occurred_at,
        tenant_slug=endpoints[0][1],
        data=event.payload,
    )
    now = timezone.now()
    endpoint_ids = [endpoint_id for endpoint_id, _ in endpoints]
    if connection.vendor == "postgresql":
        ids = _insert_deliveries(event, endpoint_ids, body, now)
    else:
        ids = _insert_deliveries_orm(event, endpoint_ids, body, now)
    enqueue_after_commit(event.tenant_id, ids)
    return ids


_INSERT_SQL = f"""
INSERT INTO {WebhookDelivery._meta.db_table}
    (tenant_id, endpoint_id, event_id, event_name, body, status, attempts,
     next_attempt_at, last_error, created_at)
SELECT %(tenant)s, endpoint_id, %(event)s, %(name)s, %(body)s, %(pending)s, 0,
       %(now)s, '', %(now)s
FROM unnest(%(endpoints)s::bigint[]) AS endpoint_id
ON CONFLICT DO NOTHING
RETURNING id
"""
_PENDING_OF_EVENT_SQL = f"""
SELECT id FROM {WebhookDelivery._meta.db_table}
WHERE tenant_id = %(tenant)s AND event_id = %(event)s AND endpoint_id = ANY(%(endpoints)s)
  AND replay_of_id IS NULL AND status = %(pending)s
"""


def _insert_deliveries(event: DomainEvent, endpoint_ids: list[int], body: str, now) -> list[int]:
    """One INSERT … ON CONFLICT DO NOTHING RETURNING: the new deliveries' ids. When the
    event was dispatched before (a retried dispatch), the ones still pending are queued
    again (harmless: the claim decides who sends)."""
    params = {
        "tenant": event.tenant_id,
        "event": event.id,
        "name": event.name,
        "body": body,
        "pending": DeliveryStatus.PENDING,
        "now": now,
        "endpoints": endpoint_ids,
    }
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL, params)
        ids = [row[0] for row in cursor.fetchall()]
        if len(ids) < len(endpoint_ids):
            cursor.execute(_PENDING_OF_EVENT_SQL, params)
            ids = [row[0] for row in cursor.fetchall()]
    return ids


def _insert_deliveries_orm(
    event: DomainEvent, endpoint_ids: list[int], body: str, now
) -> list[int]:
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                tenant_id=event.tenant_id,
                endpoint_id=endpoint_id,
                event_id=event.id,
                event_name=event.name,
                body=body,
                next_attempt_at=now,
                created_at=now,
            )
            for endpoint_id in endpoint_ids
        ],
        ignore_conflicts=True,
    )
    return list(
        WebhookDelivery.objects.filter(
            event_id=event.id,
            endpoint_id__in=endpoint_ids,
            replay_of__isnull=True,
            status=DeliveryStatus.PENDING,
        ).values_list("id", flat=True)
    )


class _PendingSends:
    """Delivery ids of one transaction, queued as few tasks as possible after commit;
    also the tenant's active endpoints, read once per transaction (a dispatch task
    handles up to hundreds of events of one tenant in one transaction)."""

    def __init__(self) -> None:
        self.ids_by_tenant: dict[int, list[int]] = defaultdict(list)
        self.endpoints: dict[int, list[tuple[int, list, str]]] = {}

    def flush(self) -> None:
        conn = transaction.get_connection()
        if getattr(conn, "_ryorin_pending_webhooks", None) is self:
            conn._ryorin_pending_webhooks = None
        for tenant_id, ids in self.ids_by_tenant.items():
            enqueue_now(tenant_id, ids)


def enqueue_now(tenant_id: int, ids: list[int]) -> None:
    from accounts.tasks import deliver_webhooks

    for start in range(0, len(ids), CHUNK):
        deliver_webhooks.delay(tenant_id, ids[start : start + CHUNK])


def _pending() -> _PendingSends | None:
    """This transaction's _PendingSends (None outside a transaction)."""
    conn = transaction.get_connection()
    if not conn.in_atomic_block:
        return None
    pending = getattr(conn, "_ryorin_pending_webhooks", None)
    # A rolled-back (savepoint) block drops our flush from run_on_commit: start anew.
    if pending is None or not any(entry[1] == pending.flush for entry in conn.run_on_commit):
        pending = _PendingSends()
        conn._ryorin_pending_webhooks = pending
        transaction.on_commit(pending.flush)
    return pending


def _active_endpoints(tenant_id: int) -> list[tuple[int, list, str]]:
    """(id, events, tenant slug) of the tenant's active endpoints, once per transaction."""
    pending = _pending()
    if pending is not None and tenant_id in pending.endpoints:
        return pending.endpoints[tenant_id]
    rows = list(
        WebhookEndpoint.objects.filter(is_active=True).values_list("id", "events", "tenant__slug")
    )
    if pending is not None:
        pending.endpoints[tenant_id] = rows
    return rows


def enqueue_after_commit(tenant_id: int, ids: list[int]) -> None:
    if not ids:
        return
    pending = _pending()
    if pending is None:  # autocommit: nothing to wait for
        enqueue_now(tenant_id, ids)
        return
    pending.ids_by_tenant[tenant_id].extend(ids)


# --- Claim ---------------------------------------------------------------------------------

_CLAIM_SQL = f"""
UPDATE {WebhookDelivery._meta.db_table} AS d
SET status = %(sending)s, attempts = d.attempts + 1, lease_until = %(lease)s
FROM {WebhookEndpoint._meta.db_table} AS e
WHERE d.id = ANY(%(ids)s) AND d.tenant_id = %(tenant)s
  AND e.id = d.endpoint_id AND e.tenant_id = d.tenant_id AND e.is_active
  AND ((d.status IN (%(pending)s, %(retrying)s) AND d.next_attempt_at <= %(now)s)
       OR (d.status = %(sending)s AND d.lease_until < %(now)s))
RETURNING d.id
"""


def lease_for(count: int) -> timedelta:
    return timedelta(seconds=30 + count * (settings.WEBHOOK_TIMEOUT_SECONDS + 5))


def claim(tenant_id: int, ids: list[int], now: datetime | None = None) -> list[WebhookDelivery]:
    """Take the due ones of `ids` for this worker; commits before returning."""
    now = now or timezone.now()
    with tenant_scope(tenant_id):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    _CLAIM_SQL,
                    {
                        "ids": list(ids),
                        "tenant": tenant_id,
                        "now": now,
                        "lease": now + lease_for(len(ids)),
                        "sending": DeliveryStatus.SENDING,
                        "pending": DeliveryStatus.PENDING,
                        "retrying": DeliveryStatus.RETRYING,
                    },
                )
                claimed = [row[0] for row in cursor.fetchall()]
        else:  # SQLite development: one process, no concurrent workers to race
            claimed = _claim_orm(ids, now)
        if not claimed:
            return []
        return list(
            WebhookDelivery.objects.filter(id__in=claimed).select_related("endpoint").order_by("id")
        )


def _claim_orm(ids: list[int], now: datetime) -> list[int]:
    from django.db.models import F, Q

    due = Q(
        status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING], next_attempt_at__lte=now
    ) | Q(status=DeliveryStatus.SENDING, lease_until__lt=now)
    claimed = list(
        WebhookDelivery.objects.filter(due, id__in=ids, endpoint__is_active=True).values_list(
            "id", flat=True
        )
    )
    WebhookDelivery.objects.filter(id__in=claimed).update(
        status=DeliveryStatus.SENDING,
        attempts=F("attempts") + 1,
        lease_until=now + lease_for(len(ids)),
    )
    return claimed


# --- Send ------------------------------------------------------------------------------------

_local = threading.local()


def http_client() -> httpx.Client:
    """One connection pool per process (and thread): keep-alive to busy receivers.
    Created lazily and again after a fork, so prefork workers never share sockets."""
    client = getattr(_local, "client", None)
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    if client is None or getattr(_local, "key", None) != (os.getpid(), timeout):
        client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: it would bypass the guard
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
            headers={"User-Agent": USER_AGENT},
        )
        _local.client, _local.key = client, (os.getpid(), timeout)
    return client


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    duration_ms: int
    error: str = ""
    #: "ok", "retry" (transient) or "client" (the receiver refuses: fewer attempts)
    kind: str = "retry"
    #: the receiver was unreachable (timeout, connection): spare it the rest of the batch
    unreachable: bool = False

    @property
    def succeeded(self) -> bool:
        return self.kind == "ok"


def classify(status_code: int) -> str:
    if 200 <= status_code < 300:
        return "ok"
    if status_code >= 500 or status_code in RETRYABLE_CODES:
        return "retry"
    return "client"


def request_headers(delivery: WebhookDelivery, body: bytes, secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json; charset=utf-8",
        signing.EVENT_HEADER: delivery.event_name,
        signing.EVENT_ID_HEADER: json.loads(delivery.body).get("id", ""),
        signing.DELIVERY_HEADER: str(delivery.id),
        signing.SIGNATURE_HEADER: signing.signature_header(secret, body),
    }


def send(delivery: WebhookDelivery) -> Outcome:
    """One HTTP POST of the delivery, signed now. Never raises for network trouble."""
    body = delivery.body.encode()
    started = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        target = resolve_target(delivery.endpoint.url)
        secret = decrypt_secret(delivery.endpoint.secret_encrypted)
        headers = {**request_headers(delivery, body, secret), **target.headers}
        request = http_client().build_request(
            "POST", target.url, content=body, headers=headers, extensions=target.extensions
        )
        response = http_client().send(request, stream=True)
        try:
            # Read a small answer to its end, so the connection goes back to the pool
            # (an unread body closes it); stop reading a large one.
            excerpt, size = b"", 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if len(excerpt) < ERROR_TEXT_LIMIT:
                    excerpt += chunk
                if size > RESPONSE_READ_LIMIT:
                    break
            if 200 <= response.status_code < 300:
                excerpt = b""
        finally:
            response.close()
    except RefusedURL as exc:
        return Outcome(None, elapsed(), f"refused: {exc}", kind="client")
    except httpx.TimeoutException as exc:
        return Outcome(None, elapsed(), f"timeout: {type(exc).__name__}", unreachable=True)
    except (httpx.TransportError, OSError) as exc:
        return Outcome(None, elapsed(), f"{type(exc).__name__}: {exc}", unreachable=True)
    error = ""
    if excerpt:
        error = excerpt[:ERROR_TEXT_LIMIT].decode("utf-8", "replace")
    return Outcome(response.status_code, elapsed(), error, kind=classify(response.status_code))


# --- Record ----------------------------------------------------------------------------------


def retry_delay(attempts: int) -> timedelta:
    """Backoff after the `attempts`-th failure: 30 s · 2^(n-1), capped, ±20 % jitter so a
    receiver coming back is not hit by every retry in the same second. (The benchmark
    shortens both through settings; production keeps the defaults.)"""
    first = getattr(settings, "WEBHOOK_RETRY_BASE_SECONDS", FIRST_RETRY_SECONDS)
    cap = getattr(settings, "WEBHOOK_RETRY_MAX_SECONDS", MAX_RETRY_SECONDS)
    base = min(cap, first * 2 ** max(0, attempts - 1))
    return timedelta(seconds=base * random.uniform(0.8, 1.2))  # noqa: S311  (not crypto)


def record(delivery: WebhookDelivery, outcome: Outcome, now: datetime | None = None) -> str:
    """Store one attempt's result; returns the delivery's new status ("" when a newer
    claim overtook this one and the result was dropped)."""
    return record_many(delivery.tenant_id, [(delivery, outcome)], now)[0]


def record_many(
    tenant_id: int, results: list[tuple[WebhookDelivery, Outcome]], now: datetime | None = None
) -> list[str]:
    """Store a batch's results in one transaction (one UPDATE per delivery, fenced by the
    attempt number, one INSERT for all attempts); returns each delivery's new status.
    An endpoint's streak follows its last result in the batch."""
    now = now or timezone.now()
    statuses: list[str] = []
    attempts: list[WebhookAttempt] = []
    last_outcome: dict[int, tuple[WebhookEndpoint, Outcome]] = {}
    rows = []  # (delivery, outcome, status, next_attempt_at)
    for delivery, outcome in results:
        if outcome.succeeded:
            status, next_attempt_at = DeliveryStatus.SUCCEEDED, None
        else:
            limit = MAX_ATTEMPTS if outcome.kind == "retry" else CLIENT_ERROR_ATTEMPTS
            if delivery.attempts >= limit:
                status, next_attempt_at = DeliveryStatus.GAVE_UP, None
            else:
                status = DeliveryStatus.RETRYING
                next_attempt_at = now + retry_delay(delivery.attempts)
        rows.append((delivery, outcome, status, next_attempt_at))
    with tenant_scope(tenant_id):
        updated = _update_deliveries(tenant_id, rows, now) if rows else set()
        for delivery, outcome, status, next_attempt_at in rows:
            if delivery.pk not in updated:
                statuses.append("")
                continue
            attempts.append(
                WebhookAttempt(
                    tenant_id=tenant_id,
                    delivery_id=delivery.pk,
                    number=delivery.attempts,
                    attempted_at=now,
                    status_code=outcome.status_code,
                    duration_ms=outcome.duration_ms,
                    error=outcome.error,
                    succeeded=outcome.succeeded,
                )
            )
            last_outcome[delivery.endpoint_id] = (delivery.endpoint, outcome)
            delivery.status = status
            delivery.next_attempt_at = next_attempt_at
            statuses.append(status)
        WebhookAttempt.objects.bulk_create(attempts)
        for endpoint, outcome in last_outcome.values():
            if not outcome.succeeded:
                _note_failure(endpoint, now)
            elif endpoint.failing_since is not None:
                WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
                endpoint.failing_since = None
    return statuses


_UPDATE_SQL = f"""
UPDATE {WebhookDelivery._meta.db_table} AS d
SET status = v.status, next_attempt_at = v.next_at, lease_until = NULL,
    last_status_code = v.code, last_duration_ms = v.ms, last_error = v.error,
    delivered_at = v.delivered
FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[], %(statuses)s::text[],
            %(next)s::timestamptz[], %(codes)s::integer[], %(ms)s::integer[],
            %(errors)s::text[], %(delivered)s::timestamptz[])
     AS v(id, attempts, status, next_at, code, ms, error, delivered)
WHERE d.id = v.id AND d.tenant_id = %(tenant)s AND d.status = %(sending)s
  AND d.attempts = v.attempts
RETURNING d.id
"""


def _update_deliveries(tenant_id: int, rows: list, now: datetime) -> set[int]:
    """Write a batch's results in one statement (fenced: only rows still in the claim
    that made the attempt); returns the ids written."""
    if connection.vendor != "postgresql":
        written = set()
        for delivery, outcome, status, next_attempt_at in rows:
            if WebhookDelivery.objects.filter(
                pk=delivery.pk, status=DeliveryStatus.SENDING, attempts=delivery.attempts
            ).update(
                status=status,
                next_attempt_at=next_attempt_at,
                lease_until=None,
                last_status_code=outcome.status_code,
                last_duration_ms=outcome.duration_ms,
                last_error=outcome.error,
                delivered_at=now if outcome.succeeded else None,
            ):
                written.add(delivery.pk)
        return written
    params = {
        "tenant": tenant_id,
        "sending": DeliveryStatus.SENDING,
        "ids": [row[0].pk for row in rows],
        "attempts": [row[0].attempts for row in rows],
        "statuses": [str(row[2]) for row in rows],
        "next": [row[3] for row in rows],
        "codes": [row[1].status_code for row in rows],
        "ms": [row[1].duration_ms for row in rows],
        "errors": [row[1].error for row in rows],
        "delivered": [now if row[1].succeeded else None for row in rows],
    }
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE_SQL, params)
        return {row[0] for row in cursor.fetchall()}


def _note_failure(endpoint: WebhookEndpoint, now: datetime) -> None:
    from accounts.webhooks.services import webhook_endpoint_disable_failing

    if endpoint.failing_since is None:
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
            failing_since=now
        )
        endpoint.failing_since = now
        return
    if endpoint.failing_since <= now - DISABLE_AFTER:
        webhook_endpoint_disable_failing(endpoint_id=endpoint.pk, now=now)


def release(deliveries: list[WebhookDelivery], until: datetime) -> None:
    """Hand claimed but unsent deliveries back (their endpoint just proved unreachable):
    the claim's attempt is not counted, and they wait until `until`."""
    if not deliveries:
        return
    from django.db.models import F

    with tenant_scope(deliveries[0].tenant_id):
        for delivery in deliveries:
            WebhookDelivery.objects.filter(
                pk=delivery.pk, status=DeliveryStatus.SENDING, attempts=delivery.attempts
            ).update(
                status=DeliveryStatus.RETRYING,
                attempts=F("attempts") - 1,
                next_attempt_at=until,
                lease_until=None,
            )


def deliver(tenant_id: int, ids: list[int]) -> dict[str, int]:
    """Claim, send and record the due deliveries among `ids` (the task's body). The
    results are recorded together after the batch (a crash in between sends those again:
    at least once). When an endpoint times out or refuses connections, its other
    deliveries in this batch are handed back untried rather than each waiting out the
    same failure."""
    counts: dict[str, int] = defaultdict(int)
    results: list[tuple[WebhookDelivery, Outcome]] = []
    unreachable: set[int] = set()
    skipped: dict[int, list[WebhookDelivery]] = defaultdict(list)
    for delivery in claim(tenant_id, ids):
        if delivery.endpoint_id in unreachable:
            skipped[delivery.endpoint_id].append(delivery)
            continue
        outcome = send(delivery)
        results.append((delivery, outcome))
        if outcome.unreachable:
            unreachable.add(delivery.endpoint_id)
    for status in record_many(tenant_id, results):
        counts[status or "overtaken"] += 1
    for endpoint_id, deliveries in skipped.items():
        retries = [
            delivery.next_attempt_at
            for delivery, outcome in results
            if delivery.endpoint_id == endpoint_id
            and outcome.unreachable
            and delivery.next_attempt_at is not None
        ]
        release(deliveries, min(retries) if retries else timezone.now() + retry_delay(1))
        counts["released"] += len(deliveries)
    return dict(counts)


# --- The sweep -----------------------------------------------------------------------------


def due_deliveries(limit: int = 5000, now: datetime | None = None) -> list[tuple[int, int]]:
    """(tenant id, delivery id) of deliveries to hand to workers: retries that are due,
    leases that ran out, and new deliveries whose task was lost. Platform job."""
    from django.db.models import Q

    now = now or timezone.now()
    with unscoped(reason="periodic platform job: send due webhook deliveries"):
        return list(
            WebhookDelivery.objects.filter(
                Q(status=DeliveryStatus.RETRYING, next_attempt_at__lte=now)
                | Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now - PENDING_GRACE)
                | Q(status=DeliveryStatus.SENDING, next_attempt_at__lte=now, lease_until__lt=now),
                endpoint__is_active=True,
            )
            .order_by("next_attempt_at")
            .values_list("tenant_id", "id")[:limit]
        )


def retry_due(limit: int = 5000) -> int:
    """Queue the due deliveries: per tenant, one task per CHUNK of them."""
    by_tenant: dict[int, list[int]] = defaultdict(list)
    due = due_deliveries(limit)
    for tenant_id, delivery_id in due:
        by_tenant[tenant_id].append(delivery_id)
    for tenant_id, ids in by_tenant.items():
        enqueue_now(tenant_id, ids)
    return len(due)
