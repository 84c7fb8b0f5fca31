"""Webhooks through a real Celery worker (2 prefork processes) and a real receiver.

The worker is started like tests/test_celery_worker.py's, with a queue of its own set as
its *default* queue (CELERY_TASK_DEFAULT_QUEUE), since here tasks queue tasks: an event's
dispatch queues its deliveries. Time is moved by writing next_attempt_at, not by sleeping.
"""

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from celery.result import allow_join_result
from django.utils import timezone

from accounts import events
from accounts.services import SYSTEM
from accounts.tasks import deliver_webhooks, retry_webhook_deliveries
from accounts.tenancy import tenant_scope
from accounts.tests.webhook_receiver import Receiver
from accounts.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from accounts.webhooks.services import webhook_endpoint_create
from accounts.webhooks.signing import verify_signature
from config.celery import app as celery_app
from tests.test_celery_worker import (  # noqa: F401  (fixtures)
    BASE_DIR,
    WAIT,
    Worker,
    _test_database_url,
    broker_url,
    wait_for,
)

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def webhook_worker(django_db_setup, broker_url: str) -> Iterator[Worker]:  # noqa: F811
    queue = f"ryorin-test-webhooks-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "RYORIN_ENV": "test",
        "DATABASE_URL": _test_database_url(),
        "DB_CONN_MAX_AGE": "0",
        "REDIS_URL": broker_url,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": celery_app.conf.result_backend or broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "WEBHOOK_TIMEOUT_SECONDS": "2",
    }
    log_path = Path(tempfile.mkdtemp(prefix="ryorin-webhook-worker-")) / "worker.log"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool=prefork",
        "--concurrency=2",
        "--loglevel=INFO",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        f"--queues={queue}",
        f"--hostname={queue}@%h",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    started = Worker(process=process, queue=queue, log_path=log_path)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"the worker exited with {process.returncode}\n{started.log_tail()}")
            return " ready." in log_path.read_text(errors="replace")

        wait_for(ready, "the worker to be ready", started.log_tail)
        yield started
    finally:
        process.terminate()
        try:
            process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=WAIT)


@pytest.fixture
def producer(webhook_worker: Worker) -> Iterator[Worker]:
    conf = celery_app.conf
    saved = {key: conf[key] for key in ("task_always_eager", "task_default_queue")}
    conf.update(task_always_eager=False, task_default_queue=webhook_worker.queue)
    try:
        with allow_join_result():  # see tests/test_celery_worker.py's producer
            yield webhook_worker
    finally:
        conf.update(saved)


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
