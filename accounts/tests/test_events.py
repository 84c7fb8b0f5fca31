"""Domain events: the outbox delivers after commit, once; hooks run in the transaction."""

from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import events
from accounts.models import AuditLog, DomainEvent
from accounts.tasks import dispatch_events, sweep_undispatched_events
from accounts.tenancy import current_tenant_id, tenant_scope, unscoped

pytestmark = pytest.mark.django_db


@pytest.fixture
def received(monkeypatch):
    """A handler for test.* events that records what it saw (and the tenant it ran in)."""
    seen: list[tuple[str, dict, int]] = []
    handlers = {
        "test.happened": [
            lambda event: seen.append((event.name, event.payload, current_tenant_id()))
        ]
    }
    monkeypatch.setattr(events, "_event_handlers", handlers)
    return seen


def test_event_is_dispatched_after_commit_once(
    world_a, received, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            event = events.emit("test.happened", tenant_id=world_a.tenant.id, payload={"n": 1})
            assert received == []  # nothing before the commit
    assert received == [("test.happened", {"n": 1}, world_a.tenant.id)]
    with tenant_scope(world_a.tenant.id):
        stored = DomainEvent.objects.get(pk=event.pk)
    assert stored.dispatched_at is not None
    # A second delivery attempt (a retried task, the sweep) hands nothing over again.
    assert dispatch_events(world_a.tenant.id, [event.pk]) == 0
    assert len(received) == 1


def test_rolled_back_change_emits_nothing(world_a, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            events.emit("test.happened", tenant_id=world_a.tenant.id, payload={})
            raise RuntimeError
    assert callbacks == []
    with tenant_scope(world_a.tenant.id):
        assert not DomainEvent.objects.exists()
    assert received == []


def test_failing_handler_is_recorded_and_the_sweep_sends_it_again(world_a, monkeypatch):
    calls = []

    def flaky(event):
        calls.append(event.pk)
        if len(calls) == 1:
            raise ConnectionError("receiver down")

    monkeypatch.setattr(events, "_event_handlers", {"test.happened": [flaky]})
    event = events.emit("test.happened", tenant_id=world_a.tenant.id, payload={})
    assert dispatch_events(world_a.tenant.id, [event.pk]) == 0
    with tenant_scope(world_a.tenant.id):
        failed = DomainEvent.objects.get(pk=event.pk)
    assert (failed.dispatched_at, failed.attempts) == (None, 1)
    assert "receiver down" in failed.last_error

    with unscoped(reason="test: age the event past the sweep's grace period"):
        DomainEvent.objects.filter(pk=event.pk).update(
            occurred_at=timezone.now() - timedelta(minutes=5)
        )
    assert sweep_undispatched_events() == 1  # eager: dispatched right away
    with tenant_scope(world_a.tenant.id):
        assert DomainEvent.objects.get(pk=event.pk).dispatched_at is not None
    assert calls == [event.pk, event.pk]


def test_wildcard_handlers_get_every_event(world_a, monkeypatch):
    seen = []
    monkeypatch.setattr(events, "_event_handlers", {"*": [lambda e: seen.append(e.name)]})
    first = events.emit("a.one", tenant_id=world_a.tenant.id, payload={})
    second = events.emit("b.two", tenant_id=world_a.tenant.id, payload={})
    dispatch_events(world_a.tenant.id, [first.pk, second.pk])
    assert seen == ["a.one", "b.two"]


def test_hooks_run_inside_the_callers_transaction(world_a, monkeypatch):
    monkeypatch.setattr(events, "_hook_handlers", defaultdict(list))

    @events.on_hook("test.write")
    def write_audit(*, tenant_id: int, action: str) -> str:
        with tenant_scope(tenant_id):
            AuditLog.objects.create(tenant_id=tenant_id, action=action)
        return action

    with pytest.raises(RuntimeError), transaction.atomic():
        assert events.hook("test.write", tenant_id=world_a.tenant.id, action="doomed") == ["doomed"]
        raise RuntimeError
    assert events.hook("test.write", tenant_id=world_a.tenant.id, action="kept") == ["kept"]
    with tenant_scope(world_a.tenant.id):
        actions = set(AuditLog.objects.values_list("action", flat=True))
    assert "kept" in actions
    assert "doomed" not in actions


def test_a_hook_nobody_registered_is_a_no_op():
    assert events.hook("nobody.listens", x=1) == []


def test_events_of_one_transaction_go_to_the_broker_as_one_task(
    world_a, world_b, received, monkeypatch, django_capture_on_commit_callbacks
):
    from accounts import tasks

    sent = []
    monkeypatch.setattr(tasks.dispatch_events, "delay", lambda t, ids: sent.append((t, list(ids))))
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        first = events.emit("test.happened", tenant_id=world_a.tenant.id, payload={})
        second = events.emit("test.happened", tenant_id=world_a.tenant.id, payload={})
        other = events.emit("test.happened", tenant_id=world_b.tenant.id, payload={})
    assert sorted(sent) == sorted(
        [(world_a.tenant.id, [first.pk, second.pk]), (world_b.tenant.id, [other.pk])]
    )


def test_an_event_after_a_rolled_back_savepoint_is_still_dispatched(
    world_a, received, monkeypatch, django_capture_on_commit_callbacks
):
    from accounts import tasks

    sent = []
    monkeypatch.setattr(tasks.dispatch_events, "delay", lambda t, ids: sent.append(list(ids)))
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            events.emit("test.happened", tenant_id=world_a.tenant.id, payload={})
            raise RuntimeError
        kept = events.emit("test.happened", tenant_id=world_a.tenant.id, payload={})
    assert len(sent) == 1
    assert kept.pk in sent[0]


# --- collecting(): one INSERT for a unit of work's events ------------------------------------


def _event_inserts(queries: CaptureQueriesContext) -> list[str]:
    table = DomainEvent._meta.db_table
    return [q["sql"] for q in queries if q["sql"].startswith(f'INSERT INTO "{table}"')]


def test_collected_events_are_written_in_one_statement_at_the_end(
    world_a, world_b, received, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        with CaptureQueriesContext(connection) as queries, events.collecting():
            first = events.emit("test.happened", tenant_id=world_a.tenant.id, payload={"n": 1})
            second, third = events.emit_many(
                "test.happened", tenant_id=world_a.tenant.id, payloads=[{"n": 2}, {"n": 3}]
            )
            other = events.emit("test.happened", tenant_id=world_b.tenant.id, payload={"n": 4})
            assert first.pk is None  # not written yet...
            assert _event_inserts(queries) == []
        # ...then one INSERT per tenant, in the transaction.
        assert len(_event_inserts(queries)) == 2
        assert received == []
    assert all(event.pk for event in (first, second, third, other))
    assert sorted(payload["n"] for _name, payload, _tenant in received) == [1, 2, 3, 4]
    assert {tenant for _name, _payload, tenant in received} == {
        world_a.tenant.id,
        world_b.tenant.id,
    }


def test_collected_events_of_a_rolled_back_savepoint_are_not_written(
    world_a, received, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        with events.collecting():
            kept = events.emit("test.happened", tenant_id=world_a.tenant.id, payload={"n": 1})
            with pytest.raises(RuntimeError), transaction.atomic():
                events.emit("test.happened", tenant_id=world_a.tenant.id, payload={"n": 2})
                raise RuntimeError
            with events.collecting():  # nested: written with the outer block
                nested = events.emit("test.happened", tenant_id=world_a.tenant.id, payload={"n": 3})
            assert nested.pk is None
    with tenant_scope(world_a.tenant.id):
        stored = sorted(DomainEvent.objects.values_list("payload__n", flat=True))
    assert stored == [1, 3]
    assert kept.pk
    assert nested.pk
    assert sorted(payload["n"] for _name, payload, _tenant in received) == [1, 3]


def test_an_exception_leaving_collecting_rolls_its_transaction_back(world_a, received):
    with pytest.raises(RuntimeError), transaction.atomic():
        with events.collecting():
            events.emit("test.happened", tenant_id=world_a.tenant.id, payload={})
            raise RuntimeError
    with transaction.atomic(), events.collecting():  # the connection is usable afterwards
        events.emit("test.happened", tenant_id=world_a.tenant.id, payload={"after": True})
    with tenant_scope(world_a.tenant.id):
        assert list(DomainEvent.objects.values_list("payload", flat=True)) == [{"after": True}]


# --- The Redis signal: one drain task for many transactions ---------------------------------


@pytest.fixture
def broker_signal(monkeypatch):
    """Celery not eager (as with a broker), the real Redis list and flag; the drain task's
    publish is recorded instead of sent (no worker here: tests/test_celery_worker.py and
    accounts/tests/test_webhooks_worker.py run the whole path through a worker)."""
    from accounts.redis import redis_client
    from accounts.tasks import dispatch_signalled_events

    client = redis_client()
    client.delete(events.SIGNAL_LIST, events.SIGNAL_QUEUED)
    monkeypatch.setitem(dispatch_events.app.conf, "task_always_eager", False)
    queued: list[tuple] = []
    monkeypatch.setattr(dispatch_signalled_events, "delay", lambda: queued.append(()))
    yield client, queued
    client.delete(events.SIGNAL_LIST, events.SIGNAL_QUEUED)


def test_committed_ids_go_to_redis_and_one_drain_task_dispatches_them(
    world_a, world_b, received, broker_signal, django_capture_on_commit_callbacks
):
    from accounts.tasks import dispatch_signalled_events

    client, queued = broker_signal
    emitted = []
    for tenant in (world_a.tenant, world_a.tenant, world_b.tenant):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            emitted += events.emit_many(
                "test.happened", tenant_id=tenant.id, payloads=[{"n": len(emitted)}, {}]
            )
    assert len(queued) == 1  # three transactions, one task queued
    assert client.llen(events.SIGNAL_LIST) == 3
    assert received == []

    # The drain task (run in-process here) clears the flag, then empties the list.
    assert dispatch_signalled_events() == 6
    assert client.llen(events.SIGNAL_LIST) == 0
    assert not client.exists(events.SIGNAL_QUEUED)
    assert len(received) == 6
    assert [tenant for _n, _p, tenant in received].count(world_b.tenant.id) == 2

    # After the drain, the next commit queues a task again.
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        events.emit("test.happened", tenant_id=world_a.tenant.id, payload={})
    assert len(queued) == 2
    assert dispatch_signalled_events() == 1


def test_a_redis_failure_after_commit_leaves_the_event_to_the_sweep(
    world_a, received, broker_signal, monkeypatch, django_capture_on_commit_callbacks
):
    import redis

    from accounts import redis as app_redis

    broken = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setattr(app_redis, "redis_client", lambda: broken)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        event = events.emit("test.happened", tenant_id=world_a.tenant.id, payload={})
    with tenant_scope(world_a.tenant.id):
        assert DomainEvent.objects.get(pk=event.pk).dispatched_at is None  # stored, waiting
    with unscoped(reason="test: age the event past the sweep's grace period"):
        DomainEvent.objects.filter(pk=event.pk).update(
            occurred_at=timezone.now() - timedelta(minutes=5)
        )
    monkeypatch.setitem(dispatch_events.app.conf, "task_always_eager", True)
    assert sweep_undispatched_events() == 1
    assert len(received) == 1


def test_forget_signals_drops_the_list_and_its_flag(
    world_a, received, broker_signal, django_capture_on_commit_callbacks
):
    client, queued = broker_signal
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        events.emit("test.happened", tenant_id=world_a.tenant.id, payload={})
    assert client.exists(events.SIGNAL_LIST, events.SIGNAL_QUEUED) == 2
    events.forget_signals()  # a tool purged the queue, and the drain task with it
    assert client.exists(events.SIGNAL_LIST, events.SIGNAL_QUEUED) == 0
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        events.emit("test.happened", tenant_id=world_a.tenant.id, payload={})
    assert len(queued) == 2  # the next commit queues a drain task at once
