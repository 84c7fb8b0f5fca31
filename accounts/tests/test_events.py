"""Domain events: the outbox delivers after commit, once; hooks run in the transaction."""

from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import transaction
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
