"""Domain events between apps, keeping the dependency direction (DESIGN.md).

A lower app tells higher ones that something happened without importing them:

* `emit(name, tenant_id=…, payload=…)` writes a DomainEvent row in the caller's
  transaction (the outbox). After commit a Celery task hands it to every handler
  registered with `@on_event(name)` (or `"*"`), once; a periodic sweep re-sends what a
  crash left undispatched, so delivery is at least once and handlers must be
  idempotent. Nothing is lost: no commit, no event; commit, then it is delivered.
* `hook(name, **kwargs)` calls the handlers registered with `@on_hook(name)` right
  away, inside the caller's transaction: for work that must commit or roll back with
  the change (a form submission adding its lead to the form's campaign, an import
  adding thousands of leads to one in a single statement).

Apps register handlers in their AppConfig.ready().
"""

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from django.db import transaction

from accounts.models import DomainEvent
from accounts.tenancy import tenant_scope

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
    """Write many events of one kind in one statement (imports, batch APIs)."""
    if not payloads:
        return []
    with tenant_scope(tenant_id, savepoint=False):  # one INSERT
        events = DomainEvent.objects.bulk_create(
            [DomainEvent(tenant_id=tenant_id, name=name, payload=payload) for payload in payloads]
        )
    _dispatch_after_commit(tenant_id, [event.id for event in events])
    return events


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


def _send_dispatch(tenant_id: int, ids: list[int]) -> None:
    from accounts.tasks import dispatch_events

    dispatch_events.delay(tenant_id, ids)


def _dispatch_after_commit(tenant_id: int, ids: list[int]) -> None:
    after_commit_batch("events", tenant_id, ids, _send_dispatch)


def dispatch(event: DomainEvent) -> None:
    """Hand one event to its handlers (inside the event's tenant scope)."""
    for handler in handlers_for(event.name):
        handler(event)
