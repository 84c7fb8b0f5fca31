"""A real Celery worker, against the local Redis broker and the test database.

The worker is a subprocess (`celery -A config worker --pool=solo`) started once for
this module with config.settings, RYORIN_ENV=test, DATABASE_URL pointing at the test
database and SMTP pointing at an aiosmtpd server on a free localhost port. Tests use
committed data (`transaction=True`) so the worker sees it, and send tasks through the
broker (the app is switched out of eager mode for the test, and back afterwards).

Every wait is bounded (WAIT seconds): a broken setup fails rather than hangs, and the
worker is always terminated by the fixture's finalizer. Without Redis the tests are
skipped locally and fail under CI=true.
"""

import email
import email.policy
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from aiosmtpd.controller import Controller
from celery.result import allow_join_result
from django.conf import settings
from django.core import mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from accounts import events
from accounts.models import Invitation, Role
from accounts.services import SYSTEM, invitation_create
from accounts.tasks import send_invitation_email, tenant_probe
from accounts.tenancy import tenant_scope
from config.celery import app as celery_app
from tests.fixtures import IN_CI, TenantWorld

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

WAIT = 30.0  # seconds, for the worker to start, a task to finish, a mail to arrive
BASE_DIR = Path(settings.BASE_DIR)


def wait_for(condition: Callable[[], object], what: str, on_timeout: Callable[[], str]) -> object:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {WAIT:.0f}s waiting for {what}\n{on_timeout()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- SMTP ---------------------------------------------------------------------------------


@dataclass
class Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    envelopes: list = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@dataclass
class SMTPServer:
    host: str
    port: int
    inbox: Inbox


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SMTPServer]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ready_timeout=WAIT)
    controller.start()
    try:
        yield SMTPServer(host="127.0.0.1", port=port, inbox=inbox)
    finally:
        controller.stop()


@pytest.fixture
def smtp(smtp_server: SMTPServer) -> SMTPServer:
    smtp_server.inbox.envelopes.clear()
    return smtp_server


# --- Broker and worker ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker_url() -> str:
    """The test process's broker (settings: CELERY_BROKER_URL, by default REDIS_URL, a
    Redis db of its own per test run); the worker is started on the same one."""
    url = celery_app.conf.broker_url
    problem = None
    if not url or not url.startswith("redis://"):
        problem = f"a Redis broker URL is needed, got {url!r}"
    else:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            problem = f"Redis broker at {url} is not reachable: {exc}"
    if problem:
        if IN_CI:
            pytest.fail(f"CI needs this service: {problem}")
        pytest.skip(problem)
    return url


def _test_database_url() -> str:
    db = settings.DATABASES["default"]  # the test database once django_db_setup has run
    assert db["ENGINE"] == "django.db.backends.postgresql", "the worker tests need PostgreSQL"
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{credentials}@{host}:{port}/{quote(db['NAME'], safe='')}"


@dataclass
class Worker:
    process: subprocess.Popen
    queue: str
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "--- worker log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


def worker_env(broker_url: str, **extra: str) -> dict[str, str]:
    """A test worker's environment: the test database and this run's broker."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "RYORIN_ENV": "test",
        "DATABASE_URL": _test_database_url(),
        "DB_CONN_MAX_AGE": "0",  # hold no idle connection to the test database
        "REDIS_URL": broker_url,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": celery_app.conf.result_backend or broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        **extra,
    }


@contextmanager
def running_worker(
    env: dict[str, str], *, prefix: str = "ryorin-test", pool: str = "solo", concurrency: int = 1
) -> Iterator[Worker]:
    """A `celery worker` subprocess on a queue of its own (no other worker on the broker
    takes its tasks), ready when yielded, always stopped afterwards."""
    queue = f"{prefix}-{uuid.uuid4().hex[:12]}"
    log_path = Path(tempfile.mkdtemp(prefix=f"{prefix}-")) / "worker.log"
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", f"--pool={pool}",
        f"--concurrency={concurrency}", "--loglevel=INFO", "--without-mingle",
        "--without-gossip", "--without-heartbeat", f"--queues={queue}",
        f"--hostname={queue}@%h",
    ]  # fmt: skip
    env = {**env, "CELERY_TASK_DEFAULT_QUEUE": queue}
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


@contextmanager
def sending_to(worker: Worker) -> Iterator[Worker]:
    """Send tasks through the broker to the worker's queue (services' on_commit
    `.delay()` included); the app's settings are restored afterwards."""
    conf = celery_app.conf
    saved = {key: conf[key] for key in ("task_always_eager", "task_default_queue")}
    conf.update(task_always_eager=False, task_default_queue=worker.queue)
    # A drain task queued for an earlier test's worker (now gone) would keep the outbox
    # signal's flag set, and nothing would drain this test's events until it expired.
    redis.Redis.from_url(conf.broker_url).delete(events.SIGNAL_QUEUED, events.SIGNAL_LIST)
    try:
        # Celery's "a task is joining a result" flag is process-wide: an eager task still
        # running in another thread (a live-server request of a browser test that ended)
        # would make this test's result.get() refuse to wait.
        with allow_join_result():
            yield worker
    finally:
        conf.update(saved)


@pytest.fixture(scope="module")
def worker(django_db_setup, broker_url: str, smtp_server: SMTPServer) -> Iterator[Worker]:
    env = worker_env(
        broker_url,
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST=smtp_server.host,
        EMAIL_PORT=str(smtp_server.port),
        EMAIL_USE_TLS="false",
        EMAIL_TIMEOUT="10",
        SITE_URL=settings.SITE_URL,
        DEFAULT_FROM_EMAIL=settings.DEFAULT_FROM_EMAIL,
    )
    with running_worker(env) as started:
        yield started


@pytest.fixture
def producer(worker: Worker) -> Iterator[Worker]:
    with sending_to(worker) as sending:
        yield sending


# --- Tests ----------------------------------------------------------------------------------


def test_worker_runs_each_task_in_its_tenant(
    producer: Worker, world_a: TenantWorld, world_b: TenantWorld
):
    pending = {world.tenant.id: tenant_probe.delay(world.tenant.id) for world in (world_a, world_b)}
    for tenant_id, result in pending.items():
        report = result.get(timeout=WAIT)
        assert report.pop("worker", "").startswith(f"{producer.queue}@"), report
        assert report == {
            "tenant_id": tenant_id,
            "db_tenant_id": str(tenant_id),
            "db_role": settings.DB_APP_ROLE,
            # Through the ORM, and in raw SQL where only row-level security filters.
            "visible_member_tenants": [tenant_id],
            "db_visible_member_tenants": [tenant_id],
        }, producer.log_tail()


def _sent_at(invitation: Invitation):
    with tenant_scope(invitation.tenant_id):
        return Invitation.objects.get(pk=invitation.pk).sent_at


def test_invitation_mail_goes_out_once_through_smtp(
    producer: Worker, smtp: SMTPServer, world_a: TenantWorld
):
    # Committed (no outer transaction in this test), so on_commit queues the mail task
    # on the broker, and the worker, not this process, sends it.
    issued = invitation_create(
        tenant_id=world_a.tenant.id, email="newcomer@example.com", role=Role.ADMIN, origin=SYSTEM
    )
    invitation = issued.invitation
    envelopes = smtp.inbox.envelopes
    wait_for(lambda: envelopes, "the invitation mail", producer.log_tail)
    sent_at = wait_for(lambda: _sent_at(invitation), "sent_at to be set", producer.log_tail)
    assert mail.outbox == []  # the test process's locmem backend sent nothing

    envelope = envelopes[0]
    assert envelope.rcpt_tos == ["newcomer@example.com"]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    with translation.override(world_a.tenant.language):
        expected_subject = render_to_string(
            "accounts/email/invitation_subject.txt",
            {"tenant": world_a.tenant, "invitation": invitation},
        ).strip()
    assert "株式会社" in expected_subject  # the tenant's Japanese name is in the subject
    assert message["Subject"] == expected_subject
    # On the wire the header is ASCII: RFC 2047 encoded-words in UTF-8.
    raw_headers = envelope.content.split(b"\r\n\r\n", 1)[0].decode("ascii")
    raw_subject = raw_headers.split("Subject:", 1)[1].split("\r\n", 1)[0].lower()
    assert "=?utf-8?" in raw_subject
    link = settings.SITE_URL.rstrip("/") + reverse("invitation_accept", args=[issued.token])
    assert link in message.get_body(preferencelist=("plain",)).get_content()

    # The task delivered again (a retry, a duplicate) sends nothing more.
    args = (world_a.tenant.id, invitation.id, issued.token)
    assert send_invitation_email.delay(*args).get(timeout=WAIT) is False
    assert send_invitation_email.delay(*args).get(timeout=WAIT) is False
    assert len(envelopes) == 1
    assert _sent_at(invitation) == sent_at
