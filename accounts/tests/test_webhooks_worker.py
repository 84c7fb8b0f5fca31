"""Webhooks through a real Celery worker (2 prefork processes) and a real receiver.

The worker is started like tests/test_celery_worker.py's, with a queue of its own set as
its *default* queue (CELERY_TASK_DEFAULT_QUEUE), since here tasks queue tasks: an event's
dispatch queues its deliveries. Time is moved by writing next_attempt_at, not by sleeping.
"""

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import events
from accounts.services import SYSTEM
from accounts.tasks import deliver_webhooks, retry_webhook_deliveries
from accounts.tenancy import tenant_scope
from accounts.tests.webhook_receiver import Receiver
from accounts.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from accounts.webhooks.services import webhook_endpoint_create
from accounts.webhooks.signing import verify_signature
from tests.test_celery_worker import (  # noqa: F401  (fixtures)
    WAIT,
    Worker,
    broker_url,
    running_worker,
    sending_to,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def webhook_worker(django_db_setup, broker_url: str) -> Iterator[Worker]:  # noqa: F811
    env = worker_env(broker_url, WEBHOOK_TIMEOUT_SECONDS="2")
    with running_worker(
        env, prefix="ryorin-test-webhooks", pool="prefork", concurrency=2
    ) as started:
        yield started


@pytest.fixture
def producer(webhook_worker: Worker) -> Iterator[Worker]:
    with sending_to(webhook_worker) as sending:
        yield sending


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


def rows(tenant_id: int) -> list[WebhookDelivery]:
    with tenant_scope(tenant_id):
        return list(WebhookDelivery.objects.order_by("id"))


def emit(tenant_id: int, count: int) -> None:
    with tenant_scope(tenant_id):  # commits: the dispatch task goes to the broker
        events.emit_many(
            "lead.created", tenant_id=tenant_id, payloads=[{"n": n} for n in range(count)]
        )


def test_events_reach_the_receiver_through_the_worker(producer, receiver, world_a):
    issued = webhook_endpoint_create(
        tenant_id=world_a.tenant.id, url=receiver.url, events=["*"], origin=SYSTEM
    )
    emit(world_a.tenant.id, 30)
    wait_for(lambda: len(receiver.requests) >= 30, "30 deliveries", producer.log_tail)
    wait_for(
        lambda: all(row.status == DeliveryStatus.SUCCEEDED for row in rows(world_a.tenant.id)),
        "the deliveries to be recorded",
        producer.log_tail,
    )
    assert len(rows(world_a.tenant.id)) == 30
    assert sorted(json.loads(r.body)["data"]["n"] for r in receiver.requests) == list(range(30))
    for request in receiver.requests:
        verify_signature(issued.secret, request.body, request.headers["ryorin-signature"])


def test_receiver_down_for_a_while_then_back_loses_nothing(producer, world_a):
    receiver = Receiver().start()
    port = receiver.port
    webhook_endpoint_create(
        tenant_id=world_a.tenant.id, url=receiver.url, events=["*"], origin=SYSTEM
    )
    receiver.stop()  # down: connections refused
    emit(world_a.tenant.id, 10)
    wait_for(
        lambda: (
            len(rows(world_a.tenant.id)) == 10
            and all(row.status == DeliveryStatus.RETRYING for row in rows(world_a.tenant.id))
        ),
        "the deliveries to fail and wait for a retry",
        producer.log_tail,
    )
    back = Receiver().start(port=port)
    try:
        # The backoff has passed (moved, not slept), and beat's sweep runs.
        with tenant_scope(world_a.tenant.id):
            WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        retry_webhook_deliveries.delay().get(timeout=WAIT)
        wait_for(
            lambda: all(row.status == DeliveryStatus.SUCCEEDED for row in rows(world_a.tenant.id)),
            "every delivery to succeed",
            producer.log_tail,
        )
        received = {r.headers["ryorin-delivery"] for r in back.requests}
        assert received == {str(row.id) for row in rows(world_a.tenant.id)}
    finally:
        back.stop()


def test_two_workers_never_send_one_delivery_twice(producer, world_a):
    receiver = Receiver(mode="slow", delay=0.5).start()
    try:
        webhook_endpoint_create(
            tenant_id=world_a.tenant.id, url=receiver.url, events=["*"], origin=SYSTEM
        )
        emit(world_a.tenant.id, 1)
        wait_for(lambda: rows(world_a.tenant.id), "the delivery row", producer.log_tail)
        [delivery] = rows(world_a.tenant.id)
        # The same delivery handed to both worker processes at once (a duplicate task).
        results = [deliver_webhooks.delay(world_a.tenant.id, [delivery.id]) for _ in range(4)]
        for result in results:
            result.get(timeout=WAIT)
        wait_for(
            lambda: rows(world_a.tenant.id)[0].status == DeliveryStatus.SUCCEEDED,
            "the delivery to succeed",
            producer.log_tail,
        )
        assert len(receiver.requests) == 1
        with tenant_scope(world_a.tenant.id):
            assert WebhookAttempt.objects.count() == 1
    finally:
        receiver.stop()
