"""The dispatcher in real Celery workers against the local Redis, the test database
and an aiosmtpd server:

* a worker with embedded beat runs a three-step sequence (mail, a short wait, a
  branch on "opened", a reminder) end to end, with no call from the test but the
  enrolment;
* a prefork worker child killed with SIGKILL while one mail of a batch is in the
  middle of its SMTP transaction: after the leases end, every lead has its mail
  exactly once (the interrupted one sent again, nothing sent twice).
"""

import asyncio
import datetime
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings
from django.utils import timezone

from accounts.tenancy import tenant_scope
from campaigns.models import Enrolment, OutgoingMessage, StepKind
from campaigns.tasks import nurture_dispatch_tenant
from campaigns.tests.factories import (
    EmailTemplateFactory,
    EnrolmentFactory,
    sequence_with_steps,
)
from campaigns.tests.nurture.conftest import free_port
from config.celery import app as celery_app
from leads.models import ConsentStatus
from leads.tests.factories import LeadFactory
from tests.test_celery_worker import _test_database_url, broker_url

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]
__all__ = ["broker_url"]  # the fixture, imported for this module's workers

BASE_DIR = Path(settings.BASE_DIR)
WAIT = 60.0


def wait_for(condition: Callable[[], object], what: str, tail: Callable[[], str]) -> object:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {WAIT:.0f}s waiting for {what}\n{tail()}")


@dataclass
class HoldingInbox:
    """Accepts mail; the `hold_at`-th message waits in DATA until `release` is set,
    then is refused (its client is gone by then: a real server would not have
    accepted it either)."""

    hold_at: int | None = None
    envelopes: list = field(default_factory=list)
    seen: int = 0
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.seen += 1
        if self.hold_at is not None and self.seen == self.hold_at:
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
            return "451 4.3.0 Interrupted"
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[HoldingInbox, int]]:
    handler = HoldingInbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=30)
    controller.start()
    try:
        yield handler, port
    finally:
        handler.release.set()
        controller.stop()


def start_worker(broker: str, smtp_port: int, *, pool: str, beat: bool):
    queue = f"ryorin-test-{uuid.uuid4().hex[:12]}"
    workdir = Path(tempfile.mkdtemp(prefix="ryorin-nurture-worker-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "RYORIN_ENV": "test",
        "DATABASE_URL": _test_database_url(),
        "DB_CONN_MAX_AGE": "0",
        "REDIS_URL": broker,
        "CELERY_BROKER_URL": broker,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        # Beat's ticks and the fan-out of nurture_dispatch land on this worker's queue.
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "EMAIL_BACKEND": "campaigns.nurture.smtp.EmailBackend",  # production's default
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_port),
        "EMAIL_USE_TLS": "false",
        "EMAIL_TIMEOUT": "30",
        "SITE_URL": settings.SITE_URL,
    }
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", f"--pool={pool}",
        "--concurrency=1", "--loglevel=INFO", "--without-mingle", "--without-gossip",
        "--without-heartbeat", f"--queues={queue}", f"--hostname={queue}@%h",
    ]  # fmt: skip
    log_path = workdir / "worker.log"
    with log_path.open("wb") as log:
        processes = [subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=log, stderr=log)]
    if beat:
        # Beat in a process of its own: embedded in the worker (--beat) it is forked
        # with the schedule's sqlite file open, and Python 3.13's dbm.sqlite3 then
        # fails now and then ("locking protocol").
        beat_command = [
            sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO",
            f"--schedule={workdir / 'beat-schedule'}", "--max-interval=1",
        ]  # fmt: skip
        with (workdir / "beat.log").open("wb") as log:
            processes.append(
                subprocess.Popen(beat_command, cwd=BASE_DIR, env=env, stdout=log, stderr=log)
            )

    def tail() -> str:
        text = log_path.read_text(errors="replace")
        if beat:
            text += "\n--- beat ---\n" + (workdir / "beat.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-80:])

    return processes, queue, tail


@pytest.fixture
def run_worker(django_db_setup, broker_url: str):
    started = []

    def run(smtp_port: int, *, pool: str = "solo", beat: bool = False):
        processes, queue, tail = start_worker(broker_url, smtp_port, pool=pool, beat=beat)
        started.extend(processes)
        process = processes[0]
        wait_for(lambda: " ready." in tail() or process.poll() is not None, "the worker", tail)
        assert process.poll() is None, tail()
        conf.update(task_always_eager=False, task_default_queue=queue)
        return process, queue, tail

    conf = celery_app.conf
    saved = {key: conf[key] for key in ("task_always_eager", "task_default_queue")}
    try:
        yield run
    finally:
        conf.update(saved)
        for process in started:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def enrol(tenant, sequence, n: int, **lead_fields) -> list[Enrolment]:
    lead_fields.setdefault("email_consent", ConsentStatus.GRANTED)
    return [
        EnrolmentFactory(
            tenant=tenant,
            sequence=sequence,
            lead=LeadFactory(tenant=tenant, **lead_fields),
            next_due_at=timezone.now(),
        )
        for _ in range(n)
    ]


def states(tenant) -> dict[int, tuple[str, int]]:
    with tenant_scope(tenant.id):
        return {e.id: (e.state, e.step_order) for e in Enrolment.objects.all()}


def test_beat_and_a_worker_run_a_three_step_sequence(run_worker, inbox, world_a):
    handler, port = inbox
    tenant = world_a.tenant
    first = EmailTemplateFactory(tenant=tenant, subject="セミナーのご案内")
    reminder = EmailTemplateFactory(tenant=tenant, subject="【再送】セミナーのご案内")
    sequence = sequence_with_steps(
        tenant,
        [
            {"kind": StepKind.SEND_EMAIL, "template": first},
            {"kind": StepKind.WAIT, "config": {"seconds": 2}},
            {
                "kind": StepKind.BRANCH,
                "config": {"condition": {"type": "opened_previous"}, "then": 4, "else": 3},
            },
            {"kind": StepKind.SEND_EMAIL, "template": reminder},
            {"kind": StepKind.END},
        ],
    )
    willing = enrol(tenant, sequence, 3)
    [unwilling] = enrol(tenant, sequence, 1, email_consent=ConsentStatus.WITHDRAWN)
    _process, _queue, tail = run_worker(port, beat=True)

    def finished() -> bool:
        return all(state in ("completed", "exited") for state, _ in states(tenant).values())

    wait_for(finished, "the sequence to finish for everyone", tail)
    received: dict[str, int] = {}
    for envelope in handler.envelopes:
        for address in envelope.rcpt_tos:
            received[address] = received.get(address, 0) + 1
    assert received == {e.lead.email: 2 for e in willing}, tail()
    assert unwilling.lead.email not in received
    with tenant_scope(tenant.id):
        assert OutgoingMessage.objects.filter(status="sent").count() == 6
        exited = Enrolment.objects.get(pk=unwilling.pk)
        assert exited.exit_reason == Enrolment.ExitReason.NO_CONSENT


def test_a_worker_killed_mid_batch_loses_and_doubles_no_mail(run_worker, inbox, world_a):
    handler, port = inbox
    handler.hold_at = 10
    tenant = world_a.tenant
    sequence = sequence_with_steps(
        tenant,
        [
            {"kind": StepKind.SEND_EMAIL, "template": EmailTemplateFactory(tenant=tenant)},
            {"kind": StepKind.WAIT, "config": {"seconds": 86400}},
            {"kind": StepKind.END},
        ],
    )
    enrolments = enrol(tenant, sequence, 30)
    process, _queue, tail = run_worker(port, pool="prefork")
    children = [int(pid) for pid in subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(process.pid)], capture_output=True, text=True
    ).stdout.split()]  # fmt: skip
    assert len(children) == 1, children

    nurture_dispatch_tenant.delay(tenant.id)
    wait_for(handler.holding.is_set, "the 10th mail to be in its SMTP transaction", tail)
    os.kill(children[0], signal.SIGKILL)
    handler.release.set()
    assert len(handler.envelopes) == 9
    # The task is re-queued (acks_late, reject_on_worker_lost) and runs in a new child:
    # its enrolments are still leased to the dead run, so it leaves them alone.
    wait_for(lambda: "nurture_dispatch_tenant" in tail() and "succeeded" in tail(), "re-run", tail)
    with tenant_scope(tenant.id):
        statuses = list(OutgoingMessage.objects.values_list("status", flat=True))
    # Every row was written before the first mail went out; the run died at the 10th.
    assert len(statuses) == 30
    assert (statuses.count("sent"), statuses.count("sending")) == (9, 21), statuses

    # Time passes: the leases end (moved back here rather than waited for).
    with tenant_scope(tenant.id):
        past = timezone.now() - datetime.timedelta(seconds=1)
        Enrolment.objects.filter(step_order=0, state="active").update(next_due_at=past)
        OutgoingMessage.objects.filter(status="sending").update(next_attempt_at=past)
    nurture_dispatch_tenant.delay(tenant.id)

    def done() -> bool:
        return all(order == 2 for _state, order in states(tenant).values())

    wait_for(done, "every enrolment past its mail", tail)
    received = [address for envelope in handler.envelopes for address in envelope.rcpt_tos]
    assert sorted(received) == sorted(e.lead.email for e in enrolments), tail()
    with tenant_scope(tenant.id):
        attempts = dict(OutgoingMessage.objects.values_list("enrolment_id", "attempts"))
        assert set(OutgoingMessage.objects.values_list("status", flat=True)) == {"sent"}
    assert sorted(attempts.values()) == [1] * 9 + [2] * 21
