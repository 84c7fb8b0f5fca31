"""Domain events between apps, keeping the dependency direction (DESIGN.md).

A lower app tells higher ones that something happened without importing them:

* `emit(name, tenant_id=…, payload=…)` writes a DomainEvent row in the caller's
  transaction (the outbox). After commit a Celery task hands it to every handler
  registered with `@on_event(name)` (or `"*"`), once; a periodic sweep re-sends what a
  crash left undispatched, so delivery is at least once and handlers must be
  idempotent. Nothing is lost: no commit, no event; commit, then it is delivered.
* `with collecting():` around a unit of work that emits several events (a form
  submission emits three) writes them all in one INSERT at the end of the block.
* After commit the ids go to a Redis list and one `dispatch_signalled_events` task is
  queued unless one is already waiting (one round trip instead of a Celery publish
  per transaction; the task drains the list). Without Redis, or with the embedded
  runner, `dispatch_events` is queued directly.
* `hook(name, **kwargs)` calls the handlers registered with `@on_hook(name)` right
  away, inside the caller's transaction: for work that must commit or roll back with
  the change (a form submission adding its lead to the form's campaign, an import
  adding thousands of leads to one in a single statement).

Apps register handlers in their AppConfig.ready().
"""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from django.db import transaction

from accounts.models import DomainEvent
from accounts.sql import insert_rows
from accounts.tenancy import tenant_scope

logger = logging.getLogger(__name__)

EventHandler = Callable[[DomainEvent], None]
HookHandler = Callable[..., Any]

_event_handlers: dict[str, list[EventHandler]] = defaultdict(list)
_hook_handlers: dict[str, list[HookHandler]] = defaultdict(list)


def on_event(name: str) -> Callable[[EventHandler], EventHandler]:
    """Register an async handler for events called `name` ("*" for every event)."""

    def register(handler: EventHandler) -> EventHandler:
        if handler not in _event_handlers[name]:
            _event_handlers[name].append(handler)
        return handler

    return register


def on_hook(name: str) -> Callable[[HookHandler], HookHandler]:
    """Register an in-transaction handler for the hook `name`."""

    def register(handler: HookHandler) -> HookHandler:
        if handler not in _hook_handlers[name]:
            _hook_handlers[name].append(handler)
        return handler

    return register


def handlers_for(name: str) -> list[EventHandler]:
    return [*_event_handlers.get(name, []), *_event_handlers.get("*", [])]


def hook(name: str, **kwargs: Any) -> list[Any]:
    """Run the hook's handlers now, in the caller's transaction; returns their results."""
    return [handler(**kwargs) for handler in _hook_handlers.get(name, [])]


def emit(name: str, *, tenant_id: int, payload: dict) -> DomainEvent:
    """Write one event to the outbox; it is dispatched after the transaction commits."""
    return emit_many(name, tenant_id=tenant_id, payloads=[payload])[0]


def emit_many(name: str, *, tenant_id: int, payloads: list[dict]) -> list[DomainEvent]:
    """Write many events of one kind in one statement (imports, batch APIs). Inside
    `collecting()` they are written at the end of that block (their ids are None until
    then)."""
    if not payloads:
        return []
    events = [DomainEvent(tenant_id=tenant_id, name=name, payload=p) for p in payloads]
    connection = transaction.get_connection()
    collected = connection.__dict__.get("_ryorin_collected_events")
    if collected is not None:
        for event in events:
            marker = _Collected(event)
            collected.append(marker)
            transaction.on_commit(marker)
        return events
    _insert(tenant_id, events)
    return events


def _insert(tenant_id: int, events: list[DomainEvent]) -> None:
    with tenant_scope(tenant_id, savepoint=False):  # one INSERT
        insert_rows(events)
    _dispatch_after_commit(tenant_id, [event.id for event in events])


class _Collected:
    """An event waiting for the end of `collecting()`, registered as a no-op on_commit
    callback: Django drops the callbacks of a savepoint that rolls back, so an event
    whose marker is gone belongs to undone work and is not written."""

    __slots__ = ("event",)

    def __init__(self, event: DomainEvent) -> None:
        self.event = event

    def __call__(self) -> None:
        pass


@contextmanager
def collecting() -> Iterator[None]:
    """Write the events emitted inside the block in one INSERT when it ends (in the
    same transaction: the block runs in an atomic block of its own, without a
    savepoint, so an exception leaving it rolls the enclosing transaction back with
    the events). Nested blocks write with the outermost one."""
    connection = transaction.get_connection()
    if connection.__dict__.get("_ryorin_collected_events") is not None:
        yield
        return
    with transaction.atomic(savepoint=False):
        collected: list[_Collected] = []
        connection._ryorin_collected_events = collected
        try:
            yield
        finally:
            connection._ryorin_collected_events = None
        pending = {id(entry[1]) for entry in connection.run_on_commit}
        by_tenant: dict[int, list[DomainEvent]] = defaultdict(list)
        for marker in collected:
            if id(marker) in pending:
                by_tenant[marker.event.tenant_id].append(marker.event)
        for tenant_id, events in by_tenant.items():
            _insert(tenant_id, events)


class _AfterCommitBatch:
    """Ids a transaction collected for one kind of follow-up work, per tenant: sent as
    one task per tenant after commit (a request that emits three events pays for one
    publish, not three)."""

    def __init__(self, key: str, send: Callable[[int, list[int]], Any]) -> None:
        self.key = key
        self.send = send
        self.ids_by_tenant: dict[int, dict[int, None]] = defaultdict(dict)  # ordered set

    def flush(self) -> None:
        batches = getattr(transaction.get_connection(), "_ryorin_after_commit", {})
        if batches.get(self.key) is self:
            del batches[self.key]
        for tenant_id, ids in self.ids_by_tenant.items():
            self.send(tenant_id, list(ids))


def after_commit_batch(
    key: str, tenant_id: int, ids: Iterable[int], send: Callable[[int, list[int]], Any]
) -> None:
    """Collect `ids` for work of kind `key`; after the transaction commits, `send` is
    called once per tenant with every id collected (in order, without repeats). Ids
    from a savepoint that rolled back may remain: the work must skip ids it cannot find."""
    connection = transaction.get_connection()
    batches = connection.__dict__.setdefault("_ryorin_after_commit", {})
    batch = batches.get(key)
    # A savepoint rollback drops the flush from run_on_commit; then start anew.
    if batch is None or not any(entry[1] == batch.flush for entry in connection.run_on_commit):
        batch = _AfterCommitBatch(key, send)
        batches[key] = batch
        transaction.on_commit(batch.flush)
    batch.ids_by_tenant[tenant_id].update(dict.fromkeys(ids))


# The Redis list of committed, not yet dispatched event ids ("<tenant>:<id>,<id>…"), and
# the flag saying a task to drain it is queued. The outbox stays the truth: what a lost
# Redis forgets, the sweep sends.
SIGNAL_LIST = "ryorin:events:pending"
SIGNAL_QUEUED = "ryorin:events:drain-queued"
SIGNAL_QUEUED_TTL = 30  # seconds: a lost drain task holds the flag no longer than this


def forget_signals() -> None:
    """Drop the signal list and its flag, for tools that purge the broker's queue (a
    purged drain task would leave the flag set until it expires, and nothing would
    drain new ids meanwhile). The events stay in the outbox for the sweep."""
    from accounts.redis import redis_client

    client = redis_client()
    if client is not None:
        client.delete(SIGNAL_LIST, SIGNAL_QUEUED)


def _send_dispatch(tenant_id: int, ids: list[int]) -> None:
    from accounts.redis import redis_client
    from accounts.tasks import dispatch_events, dispatch_signalled_events

    client = None if dispatch_events.app.conf.task_always_eager else redis_client()
    if client is None:
        dispatch_events.delay(tenant_id, ids)
        return
    pipe = client.pipeline(transaction=False)
    pipe.rpush(SIGNAL_LIST, f"{tenant_id}:{','.join(map(str, ids))}")
    pipe.set(SIGNAL_QUEUED, 1, nx=True, ex=SIGNAL_QUEUED_TTL)
    try:
        _pushed, newly_queued = pipe.execute()
    except redis.RedisError:
        # Committed already: the sweep sends these events; the caller's work succeeded.
        logger.warning("outbox signal failed; the sweep will dispatch %s", ids, exc_info=True)
        return
    # The drain task clears the flag before it reads the list, so the ids pushed above
    # are read by the queued task unless it already read the list: then it cleared the
    # flag first and this SET queued a new one.
    if newly_queued:
        dispatch_signalled_events.delay()


def _dispatch_after_commit(tenant_id: int, ids: list[int]) -> None:
    after_commit_batch("events", tenant_id, ids, _send_dispatch)


def dispatch(event: DomainEvent) -> None:
    """Hand one event to its handlers (inside the event's tenant scope)."""
    for handler in handlers_for(event.name):
        handler(event)
