"""Nurture dispatch: throughput to a local SMTP sink, and the claim query at scale.

    uv run python -m bench.nurture [--emails N] [--enrolments M] [--due D] [--rounds R]
        [--sink lean|aiosmtpd] [--tiny]

See bench/README.md ("bench.nurture").

1. Throughput: N leads (consent granted) enrolled in a one-mail sequence, all due;
   two Celery worker processes (prefork, concurrency 2) run `nurture_dispatch_tenant`
   (two tasks competing for batches through SKIP LOCKED) and send through the SMTP
   backend (production's, campaigns.nurture.smtp) to a sink in this process: a
   minimal asyncio SMTP server (default) or aiosmtpd. Figure: mails/s from the first
   task sent to the sink holding N mails; target >= 500/s. Baseline, in the same run:
   two processes sending the same number of mails of the same size straight to the
   sink with smtplib (no database, no Celery, no rendering).
2. Claim: M enrolments of the tenant (D of them due, the rest waiting or finished)
   plus those of a second tenant; the claim statement's plan (EXPLAIN ANALYZE, rolled
   back) as the app role under row-level security. The run fails unless the plan
   uses enrolment_due_idx and claims D rows in under 50 ms.
"""

import argparse
import asyncio
import multiprocessing
import os
import smtplib
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import harness

TARGET = 500.0  # mails/s
CLAIM_TARGET_MS = 50.0
SLUG = "bench-nurture"
OTHER_SLUG = "bench-nurture-other"


class AiosmtpdSink:
    """An aiosmtpd server that counts the mails it accepts."""

    def __init__(self) -> None:
        import logging

        from aiosmtpd.controller import Controller

        # aiosmtpd logs every SMTP command at INFO (the app's root level): the sink's
        # time went into formatting log lines for both the stack and the baseline.
        logging.getLogger("mail.log").setLevel(logging.WARNING)

        self.count = 0
        self.lock = threading.Lock()
        self.port = harness.free_port()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with sink.lock:
                    sink.count += 1
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


class _LeanSinkProtocol(asyncio.Protocol):
    """The server side of the SMTP commands a client sends (RFC 5321: EHLO/HELO, MAIL,
    RCPT, DATA, RSET, NOOP, QUIT); a mail ends at CRLF "." CRLF and is counted, not
    parsed or kept."""

    def __init__(self, sink: "LeanSink") -> None:
        self.sink = sink
        self.buffer = b""
        self.in_data = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"220 bench-sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    self.buffer = self.buffer[-4:]  # a terminator may span two reads
                    return
                self.buffer = self.buffer[end + 5 :]
                self.in_data = False
                self.sink.count += 1
                self.transport.write(b"250 2.0.0 OK\r\n")
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            verb = self.buffer[:4].upper()
            self.buffer = self.buffer[line_end + 2 :]
            if verb == b"EHLO":
                self.transport.write(b"250-bench-sink\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n")
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                self.transport.write(b"250 OK\r\n")
            elif verb == b"DATA":
                self.transport.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                self.in_data = True
                # The CRLF before the terminating "." may be the one that ended DATA.
                self.buffer = b"\r\n" + self.buffer
            elif verb == b"QUIT":
                self.transport.write(b"221 Bye\r\n")
                self.transport.close()
                return
            else:
                self.transport.write(b"500 5.5.2 Command not recognized\r\n")


class LeanSink:
    """A minimal SMTP sink on an asyncio loop in a thread: the same protocol exchange
    as aiosmtpd (every command answered, the client's four round trips per mail), at
    a fraction of its CPU, which on this 2-core machine is taken from the workers."""

    def __init__(self) -> None:
        self.count = 0
        self.port = harness.free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(
                loop.create_server(lambda: _LeanSinkProtocol(self), "127.0.0.1", self.port)
            )
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=serve, name="bench-sink", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise SystemExit("the SMTP sink did not start")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


SINKS = {"lean": LeanSink, "aiosmtpd": AiosmtpdSink}


def _smtplib_sender(port: int, count: int, body: bytes, go) -> None:
    go.wait()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for n in range(count):
            smtp.sendmail("bench@sender.example.com", [f"plain{n}@bench.example"], body)


def bare_rate(sink: LeanSink | AiosmtpdSink, count: int, body: bytes) -> float:
    # Spawned, not forked: this process runs the sink's event loop thread.
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    halves = [count // 2, count - count // 2]
    procs = [context.Process(target=_smtplib_sender, args=(sink.port, n, body, go)) for n in halves]
    for proc in procs:
        proc.start()
    time.sleep(0.5 if count < 10_000 else 2.0)  # the spawned interpreters start up
    before = sink.count
    started = time.perf_counter()
    go.set()
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - started
    assert sink.count - before == count, "the sink did not get every plain mail"
    return count / elapsed


def prepare(emails: int, enrolments: int, due: int) -> dict:
    """Tenants, sender, template, sequences, leads (kept between runs), enrolments
    (made anew): returns ids."""
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Tenant
    from accounts.sql import insert_columns
    from accounts.tenancy import tenant_scope, unscoped
    from campaigns.models import (
        EmailTemplate,
        Enrolment,
        OutgoingMessage,
        SenderIdentity,
        Sequence,
        SequenceStep,
        StepKind,
    )
    from leads.models import Lead

    tenant, _ = Tenant.objects.get_or_create(
        slug=SLUG, defaults={"name": "ベンチ育成株式会社", "time_zone": "Asia/Tokyo"}
    )
    other, _ = Tenant.objects.get_or_create(slug=OTHER_SLUG, defaults={"name": "Other"})
    leads_needed = max(emails, enrolments // 10 + 1)
    reason = "benchmark: reset the nurture bench tenants"
    with unscoped(reason=reason), connection.cursor() as cursor:
        for model in (OutgoingMessage, Enrolment, SequenceStep, Sequence):
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE tenant_id = ANY(%s)",
                [[tenant.id, other.id]],
            )
        # Leads: one INSERT … SELECT over generate_series, kept for the next run.
        for t in (tenant, other):
            cursor.execute("SELECT count(*) FROM leads_lead WHERE tenant_id = %s", [t.id])
            have = cursor.fetchone()[0]
            if have < leads_needed:
                template = Lead(
                    tenant_id=t.id, email="x", family_name="山田", email_consent="granted"
                )
                columns, values = insert_columns(template)
                email_at = columns.index(connection.ops.quote_name("email"))
                select = ["%s"] * len(columns)
                select[email_at] = "'lead' || g || '@bench.example'"
                params = [v for i, v in enumerate(values) if i != email_at]
                cursor.execute(
                    f"INSERT INTO leads_lead ({', '.join(columns)}) "
                    f"SELECT {', '.join(select)} FROM generate_series(%s, %s) g",
                    [*params, have + 1, leads_needed],
                )
    with tenant_scope(tenant.id):
        sender = SenderIdentity.objects.get_or_create(
            tenant=tenant,
            from_email="news@bench-sender.example.com",
            defaults={"from_name": "ベンチ育成 マーケティング部",
                      "postal_address": "〒100-0001 東京都千代田区千代田1-1"},
        )[0]  # fmt: skip
        template = EmailTemplate.objects.get_or_create(
            tenant=tenant,
            name="bench",
            defaults={
                "subject": '{{ lead.family_name|default:"ご担当者" }}様、セミナーのご案内',
                "text": '{{ lead.family_name|default:"ご担当者" }}様\n\n'
                "来月のセミナーのご案内です。",
                "html": '<p>{{ lead.family_name|default:"ご担当者" }}様</p>'
                '<p><a href="https://example.jp/seminar">お申し込み</a></p>',
            },
        )[0]
        sequences = []
        for n in range(10):
            sequence = Sequence.objects.create(
                tenant=tenant, name=f"bench {n}", status="active", sender=sender
            )
            SequenceStep.objects.create(
                tenant=tenant, sequence=sequence, version=1, order=0,
                kind=StepKind.SEND_EMAIL, template=template,
            )  # fmt: skip
            SequenceStep.objects.create(
                tenant=tenant, sequence=sequence, version=1, order=1, kind=StepKind.END
            )
            sequences.append(sequence.id)
    return {"tenant": tenant.id, "other": other.id, "sequences": sequences, "now": timezone.now()}


def enrol_due(tenant_id: int, sequence_id: int, count: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from accounts.tenancy import unscoped

    with unscoped(reason="benchmark: enrol the bench leads"), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO campaigns_enrolment (tenant_id, lead_id, sequence_id, version,
                step_order, next_due_at, state, exit_reason, source, enrolled_at)
            SELECT %s, id, %s, 1, 0, %s, 'active', '', 'manual', %s
            FROM leads_lead WHERE tenant_id = %s ORDER BY id LIMIT %s
            """,
            [tenant_id, sequence_id, timezone.now(), timezone.now(), tenant_id, count],
        )


def fill_for_claim(ids: dict, enrolments: int, due: int) -> None:
    """`enrolments` rows over 10 sequences: `due` active and due now, the rest active
    and due in a week or already completed; the other tenant as many again, all due."""
    from django.db import connection

    from accounts.tenancy import unscoped

    per_sequence = enrolments // len(ids["sequences"])
    with unscoped(reason="benchmark: enrolments for the claim plan"), connection.cursor() as c:
        for table in ("campaigns_outgoingmessage", "campaigns_enrolment"):
            c.execute(f"DELETE FROM {table} WHERE tenant_id = ANY(%s)",
                      [[ids["tenant"], ids["other"]]])  # fmt: skip
        for position, sequence_id in enumerate(ids["sequences"]):
            c.execute(
                """
                INSERT INTO campaigns_enrolment (tenant_id, lead_id, sequence_id, version,
                    step_order, next_due_at, state, exit_reason, source, enrolled_at,
                    finished_at)
                SELECT l.tenant_id, l.id, %(sequence)s, 1, 0,
                       CASE WHEN r.n <= %(due)s THEN now() - interval '1 minute'
                            WHEN r.n %% 2 = 0 THEN now() + interval '7 days' END,
                       CASE WHEN r.n <= %(due)s OR r.n %% 2 = 0 THEN 'active'
                            ELSE 'completed' END,
                       '', 'manual', now(),
                       CASE WHEN r.n > %(due)s AND r.n %% 2 = 1 THEN now() END
                FROM (SELECT id, tenant_id, row_number() OVER (ORDER BY id) AS n
                      FROM leads_lead WHERE tenant_id = %(tenant)s ORDER BY id
                      LIMIT %(limit)s) l
                JOIN LATERAL (SELECT l.n + %(offset)s AS n) r ON true
                """,
                {
                    "tenant": ids["tenant"], "sequence": sequence_id, "limit": per_sequence,
                    "due": due, "offset": position * per_sequence,
                },
            )  # fmt: skip
        c.execute("ANALYZE campaigns_enrolment")


def claim_plan(tenant_id: int, due: int) -> tuple[str, float]:
    """The dispatcher's claim statement for `due` rows under EXPLAIN ANALYZE, as the
    app role with the tenant set, rolled back."""
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.tenancy import tenant_scope
    from campaigns.nurture import dispatch

    captured = {}
    original = connection.cursor

    class Rollback(Exception):
        pass

    try:
        with transaction.atomic(), tenant_scope(tenant_id):
            with original() as cursor:
                cursor.execute(
                    """
                    EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT)
                    UPDATE campaigns_enrolment e SET next_due_at = %(lease)s
                    WHERE e.id IN (
                        SELECT id FROM campaigns_enrolment
                        WHERE tenant_id = %(tenant)s AND state = 'active'
                          AND next_due_at <= %(now)s
                        ORDER BY next_due_at LIMIT %(limit)s
                        FOR UPDATE SKIP LOCKED)
                    RETURNING e.id
                    """,
                    {"tenant": tenant_id, "now": timezone.now(),
                     "lease": timezone.now() + dispatch.LEASE, "limit": due},
                )  # fmt: skip
                captured["plan"] = "\n".join(row[0] for row in cursor.fetchall())
            raise Rollback
    except Rollback:
        pass
    plan = captured["plan"]
    execution = float(plan.rsplit("Execution Time: ", 1)[1].split(" ")[0])
    return plan, execution


def start_workers(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=prefork",
        "--concurrency=2", "--loglevel=WARNING", "--without-mingle", "--without-gossip",
        "--without-heartbeat", f"--hostname=bench-nurture-{os.getpid()}@%h",
    ]  # fmt: skip
    log = log_path.open("wb")
    return subprocess.Popen(
        command, cwd=harness.ROOT, env={**os.environ, **env}, stdout=log, stderr=log
    )


def wait_for(condition, timeout: float, what: str) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if condition():
            return time.perf_counter() - started
        time.sleep(0.02)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.nurture", description=__doc__.split("\n")[0])
    parser.add_argument("--emails", type=int, default=100_000)
    parser.add_argument("--enrolments", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="500 mails, 20,000 enrolments")
    parser.add_argument(
        "--sink", choices=sorted(SINKS), default="lean", help="the SMTP server mails go to"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.emails, args.enrolments, args.due = 500, 20_000, 200

    sink = SINKS[args.sink]()
    sink.start()
    database_url = harness.bench_database_url()
    redis_url = os.environ.get("REDIS_URL") or harness.DEFAULT_REDIS_URL
    extra = {
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "EMAIL_BACKEND": "campaigns.nurture.smtp.EmailBackend",  # production's default
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(sink.port),
        "EMAIL_USE_TLS": "false",
        "SITE_URL": "https://app.ryorin.example",
        "DB_CONN_MAX_AGE": "60",
    }
    env = harness.setup_django(database_url, extra)
    from config.celery import app

    app.control.purge()
    ids = prepare(args.emails, args.enrolments, args.due)
    tenant_id = ids["tenant"]
    from accounts.redis import redis_client

    client = redis_client()
    for key in client.scan_iter(f"nurture:rate:{tenant_id}:*"):
        client.delete(key)
    from accounts.tenancy import tenant_scope
    from campaigns.models import SendingSettings

    with tenant_scope(tenant_id):
        SendingSettings.objects.update_or_create(
            tenant_id=tenant_id, defaults={"per_minute": 10**7, "per_day": 10**8}
        )

    harness.RESULTS.mkdir(exist_ok=True)
    worker = start_workers(env, harness.RESULTS / "nurture.worker.log")
    report: dict = {
        "emails": args.emails,
        "enrolments": args.enrolments,
        "due": args.due,
        "sink": args.sink,
    }
    ok = True
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=1.0):
            if time.monotonic() > deadline:
                raise SystemExit("the Celery workers did not answer a ping")
        from campaigns.tasks import nurture_dispatch_tenant

        print(f"database {harness.database_name(database_url)}, broker {redis_url}")
        print(f"2 Celery worker processes; SMTP sink ({args.sink}) on port {sink.port}")
        stack_rates, bare_rates = [], []
        # About the size of one rendered bench mail, in 78-character lines.
        body = b"Subject: bench\r\n\r\n" + (b"x" * 76 + b"\r\n") * 30
        for round_number in range(args.rounds):
            bare_rates.append(bare_rate(sink, args.emails, body))
            enrol_due(tenant_id, ids["sequences"][round_number % 10], args.emails)
            before = sink.count
            started = time.perf_counter()
            for _ in range(2):
                nurture_dispatch_tenant.delay(tenant_id, 10**6)
            wait_for(lambda before=before: sink.count - before >= args.emails, 900, "mails")
            stack_rates.append(args.emails / (time.perf_counter() - started))
            print(
                f"round {round_number + 1}: stack {stack_rates[-1]:8.1f} mails/s   "
                f"bare smtplib {bare_rates[-1]:8.1f} mails/s"
            )
            time.sleep(1)  # the last batch's enrolment update
        sent = sink.count
        from campaigns.models import OutgoingMessage

        with tenant_scope(tenant_id):
            rows = OutgoingMessage.objects.filter(status="sent").count()
        stack, bare = statistics.median(stack_rates), statistics.median(bare_rates)
        once = rows == args.emails * args.rounds
        print(f"{'stack (median)':<28}{stack:10.1f} mails/s")
        print(f"{'bare smtplib (median)':<28}{bare:10.1f} mails/s")
        verdict = "PASS" if stack >= TARGET else "FAIL"
        print(f"target >= {TARGET:.0f} mails/s: {stack:.1f}  {verdict}")
        print(f"ratio stack/bare = {stack / bare:.2f}")
        print(f"outgoing rows sent {rows} for {args.emails * args.rounds} enrolments "
              f"{'PASS' if once else 'FAIL'}")  # fmt: skip
        ok = ok and once

        # --- The claim --------------------------------------------------------------------
        fill_for_claim(ids, args.enrolments, args.due)
        from campaigns.nurture.dispatch import BATCH_SIZE

        # What a dispatcher does: claim one batch while `due` rows are due.
        plan, execution_ms = claim_plan(tenant_id, BATCH_SIZE)
        uses_index = "enrolment_due_idx" in plan
        print()
        print(f"claim of one batch ({BATCH_SIZE}) with {args.due} due among "
              f"{args.enrolments} enrolments:")  # fmt: skip
        print(plan)
        fast = execution_ms <= CLAIM_TARGET_MS
        print(f"claim uses enrolment_due_idx: {'PASS' if uses_index else 'FAIL'}; "
              f"{execution_ms:.1f} ms (target <= {CLAIM_TARGET_MS:.0f} ms) "
              f"{'PASS' if fast else 'FAIL'}")  # fmt: skip
        # For scale, not a target: every due row claimed in one statement (the UPDATE
        # writes a new version of each row and its index entries: most of the time).
        _all_plan, all_ms = claim_plan(tenant_id, args.due)
        print(f"all {args.due} due rows claimed in one statement: {all_ms:.1f} ms")
        report["claim_all_due_ms"] = all_ms
        ok = ok and uses_index and (fast or args.tiny)
        report.update(
            {
                "stack_mails_per_s": stack_rates,
                "bare_mails_per_s": bare_rates,
                "median_stack": stack,
                "median_bare": bare,
                "sink_received": sent,
                "claim_ms": execution_ms,
                "claim_plan": plan,
            }
        )
        harness.write_results("nurture", report)
        return 0 if ok else 1
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        sink.stop()


if __name__ == "__main__":
    raise SystemExit(main())
