"""The dispatcher in real Celery workers against the local Redis, the test database
and an aiosmtpd server:

* a worker with embedded beat runs a three-step sequence (mail, a short wait, a
  branch on "opened", a reminder) end to end, with no call from the test but the
  enrolment;
* a prefork worker child killed with SIGKILL while one mail of a batch is in the
  middle of its SMTP transaction: after the leases end, every lead has its mail
  exactly once (the interrupted one sent again, nothing sent twice);
* two worker processes on one queue dispatching the same tenant at the same time,
  several batches' worth of leads and a slow server: each takes batches the other
  did not, both send (at the same moment), and every lead has its mail exactly once;
* a server answering every recipient with a transient refusal (451 greylisting, or
  421 and the connection closed) until it changes its mind: the mails are deferred
  (queued, one attempt, the error kept; nothing bounced, suppressed or exited), and
  once it accepts and the retries fall due, each goes out once on the second attempt.
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
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from celery.result import AsyncResult, allow_join_result
from django.conf import settings
from django.utils import timezone

from accounts.tenancy import tenant_scope
from campaigns.models import Enrolment, OutgoingMessage, Sequence, StepKind
from campaigns.nurture import dispatch
from campaigns.nurture.services import enrol_leads
from campaigns.tasks import nurture_dispatch_tenant
from campaigns.tests.factories import (
    EmailTemplateFactory,
    SendingSettingsFactory,
    sequence_with_steps,
)
from campaigns.tests.nurture.conftest import free_port
from config.celery import app as celery_app
from leads.models import Activity, ActivityType, ConsentStatus, Lead, Suppression
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
    """Accepts mail, each DATA taking `delay` seconds; while `refuse` is set, every
    recipient is answered with it instead (counted in `refusals`). The `hold_at`-th
    message waits in DATA until `release` is set, then is refused (its client is gone
    by then: a real server would not have accepted it either). `most_in_data`: the
    most messages ever in DATA at the same moment (one per client connection)."""

    hold_at: int | None = None
    delay: float = 0.0
    refuse: str | None = None
    envelopes: list = field(default_factory=list)
    refusals: int = 0
    seen: int = 0
    in_data: int = 0
    most_in_data: int = 0
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if self.refuse:
            self.refusals += 1
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.seen += 1
        self.in_data += 1
        self.most_in_data = max(self.most_in_data, self.in_data)
        try:
            if self.hold_at is not None and self.seen == self.hold_at:
                self.holding.set()
                while not self.release.is_set():
                    await asyncio.sleep(0.05)
                return "451 4.3.0 Interrupted"
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_data -= 1
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


def start_worker(broker: str, smtp_port: int, *, pool: str, beat: bool, queue: str | None):
    name = f"ryorin-test-{uuid.uuid4().hex[:12]}"
    queue = queue or name  # a queue of its own, unless it shares another worker's
    workdir = Path(tempfile.mkdtemp(prefix="ryorin-nurture-worker-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "RYORIN_ENV": "test",
        "DATABASE_URL": _test_database_url(),
        "DB_CONN_MAX_AGE": "0",
        "REDIS_URL": broker,
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": celery_app.conf.result_backend or broker,
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
        "--without-heartbeat", f"--queues={queue}", f"--hostname={name}@%h",
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

    def run(smtp_port: int, *, pool: str = "solo", beat: bool = False, queue: str | None = None):
        """A ready worker, on a queue of its own or on `queue` (another worker's: the
        two then take turns at its tasks), which tasks sent from the test go to."""
        processes, queue, tail = start_worker(
            broker_url, smtp_port, pool=pool, beat=beat, queue=queue
        )
        started.extend(processes)
        process = processes[0]
        wait_for(lambda: " ready." in tail() or process.poll() is not None, "the worker", tail)
        assert process.poll() is None, tail()
        conf.update(task_always_eager=False, task_default_queue=queue)
        return process, queue, tail

    conf = celery_app.conf
    saved = {key: conf[key] for key in ("task_always_eager", "task_default_queue")}
    try:
        # Celery's "a task is joining a result" flag is process-wide (see
        # tests/test_celery_worker.py, sending_to): the tests wait for task results.
        with allow_join_result():
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
    """n new leads (one INSERT) enrolled in the sequence by the service (one more),
    due now: a test may take a thousand."""
    lead_fields.setdefault("email_consent", ConsentStatus.GRANTED)
    leads = LeadFactory.build_batch(n, tenant=tenant, **lead_fields)
    with tenant_scope(tenant.id):
        Lead.objects.bulk_create(leads)
    enrol_leads(tenant_id=tenant.id, sequence_id=sequence.id, lead_ids=[lead.id for lead in leads])
    with tenant_scope(tenant.id):
        enrolments = Enrolment.objects.filter(sequence=sequence, lead__in=leads)
        return list(enrolments.select_related("lead").order_by("id"))


def one_mail(tenant) -> Sequence:
    return sequence_with_steps(
        tenant,
        [
            {"kind": StepKind.SEND_EMAIL, "template": EmailTemplateFactory(tenant=tenant)},
            {"kind": StepKind.END},
        ],
    )


def outcome(result: AsyncResult, tail: Callable[[], str]) -> dict[str, int]:
    """A dispatch task's report, once it has run."""
    wait_for(result.ready, f"task {result.id}", tail)
    report = result.get(timeout=WAIT)
    return {key: report.get(key, 0) for key in ("claimed", "sent", "deferred", "bounced", "failed")}


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
    # The next run (beat's next tick, queued here; the killed task may also come back,
    # acks_late, but its redelivery is the broker's and not awaited) runs in a new
    # child: the enrolments are still leased to the dead run, so it leaves them alone.
    assert outcome(nurture_dispatch_tenant.delay(tenant.id), tail)["claimed"] == 0
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


def test_two_workers_dispatching_one_tenant_send_each_mail_once(run_worker, inbox, world_a):
    handler, port = inbox
    handler.delay = 0.005  # a slow server: the two workers' batches are sent side by side
    tenant = world_a.tenant
    n = 5 * dispatch.BATCH_SIZE
    SendingSettingsFactory(tenant=tenant, per_minute=n)
    enrolments = enrol(tenant, one_mail(tenant), n)
    _process, queue, tail_a = run_worker(port)
    _process, _queue, tail_b = run_worker(port, queue=queue)

    # Each worker takes one task at a time (solo pool, prefetch 1): the second one
    # queued goes to the worker the first did not.
    results = [nurture_dispatch_tenant.delay(tenant.id) for _ in range(2)]

    def tails() -> str:
        return f"--- worker a ---\n{tail_a()}\n--- worker b ---\n{tail_b()}"

    reports = [outcome(result, tails) for result in results]
    ran_on = [
        [name for name, tail in (("a", tail_a), ("b", tail_b)) if f"[{r.id}] succeeded" in tail()]
        for r in results
    ]
    assert sorted(ran_on) == [["a"], ["b"]], tails()
    # Both sent, and at the same moment: one worker alone would have claimed every
    # batch (a run goes on until a claim comes back short) and left the other nothing.
    assert all(report["sent"] > 0 for report in reports), reports
    assert sum(report["claimed"] for report in reports) == n, reports
    assert sum(report["sent"] for report in reports) == n, reports
    assert handler.most_in_data == 2
    received = Counter(address for envelope in handler.envelopes for address in envelope.rcpt_tos)
    assert received == {e.lead.email: 1 for e in enrolments}
    with tenant_scope(tenant.id):
        rows = Counter(OutgoingMessage.objects.values_list("status", "attempts"))
    assert rows == {("sent", 1): n}
    assert Counter(states(tenant).values()) == {("completed", 1): n}


@pytest.mark.parametrize(
    "refusal",
    [
        # Greylisting: each recipient refused, the connection kept.
        "451 4.7.1 Greylisted, please try again later",
        # The client drops the connection on a 421: the batch's other mails find it gone.
        "421 4.3.2 Too busy, closing the connection",
    ],
    ids=["451", "421"],
)
def test_mail_refused_for_a_while_goes_out_once_when_the_server_accepts(
    run_worker, inbox, world_a, refusal
):
    handler, port = inbox
    handler.refuse = refusal
    tenant = world_a.tenant
    enrolments = enrol(tenant, one_mail(tenant), 20)
    _process, _queue, tail = run_worker(port)
    before = timezone.now()

    report = outcome(nurture_dispatch_tenant.delay(tenant.id), tail)
    assert report == {"claimed": 20, "sent": 0, "deferred": 20, "bounced": 0, "failed": 0}
    assert handler.refusals > 0
    assert handler.envelopes == []
    with tenant_scope(tenant.id):
        rows = list(
            OutgoingMessage.objects.values_list("enrolment_id", "status", "attempts", "error")
        )
        retry_at = dict(OutgoingMessage.objects.values_list("enrolment_id", "next_attempt_at"))
        due = dict(Enrolment.objects.values_list("id", "next_due_at"))
        assert not Suppression.objects.exists()
        assert not Activity.objects.filter(type=ActivityType.EMAIL_BOUNCED).exists()
    assert Counter((status, attempts) for _e, status, attempts, _error in rows) == {
        ("queued", 1): 20
    }
    assert all(error for *_row, error in rows), rows
    assert any(refusal.split(" ", 2)[2] in error for *_row, error in rows), rows
    # Each enrolment waits for its mail's retry, after the first backoff.
    assert retry_at == due
    assert min(due.values()) >= before + dispatch.BACKOFF_BASE
    assert Counter(states(tenant).values()) == {("active", 0): 20}

    handler.refuse = None
    # Time passes: the retries fall due (moved back here rather than waited for).
    with tenant_scope(tenant.id):
        past = timezone.now() - datetime.timedelta(seconds=1)
        Enrolment.objects.filter(state="active").update(next_due_at=past)
        OutgoingMessage.objects.filter(status="queued").update(next_attempt_at=past)
    report = outcome(nurture_dispatch_tenant.delay(tenant.id), tail)
    assert report == {"claimed": 20, "sent": 20, "deferred": 0, "bounced": 0, "failed": 0}
    received = Counter(address for envelope in handler.envelopes for address in envelope.rcpt_tos)
    assert received == {e.lead.email: 1 for e in enrolments}
    with tenant_scope(tenant.id):
        rows = Counter(OutgoingMessage.objects.values_list("status", "attempts", "error"))
    assert rows == {("sent", 2, ""): 20}
    assert Counter(states(tenant).values()) == {("completed", 1): 20}
