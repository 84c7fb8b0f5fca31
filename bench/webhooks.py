"""Webhook delivery through real Celery workers to a local receiver.

    uv run python -m bench.webhooks [--events N] [--rounds R] [--outage S] [--tiny]

See bench/README.md ("bench.webhooks"). Outbox events (emit_many, 100 per transaction,
as an import writes them) → dispatch_events → one delivery per event → deliver_webhooks
→ HTTP POST to a receiver in this process. Two Celery worker processes (prefork,
concurrency 2) on REDIS_URL's db. Baseline, in the same run: two processes posting the
same number of signed bodies straight to the receiver with httpx (no database, no
Celery): what the receiver and HTTP alone allow.

Then the outage: the receiver answers 503 for half of --outage seconds and is down
(connection refused) for the other half, while events keep coming; then it comes back.
The retry sweep (the beat job, run here every 0.5 s) and a short backoff
(WEBHOOK_RETRY_BASE_SECONDS=1, cap 4 s) bring every delivery through: the run fails
unless the receiver has acknowledged every delivery id (at least once) and none gave up.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench import harness

TARGET = 200.0  # deliveries/s
BATCH = 100


# --- Receiver -----------------------------------------------------------------------------


class Receiver:
    """Counts requests and the delivery ids it acknowledged with 200."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acknowledged: set[str] = set()
        self.requests = 0
        self.refused = 0
        self.failing = False
        self.server: ThreadingHTTPServer | None = None
        self.port = harness.free_port()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delivery = self.headers.get("Ryorin-Delivery", "")
                failing = receiver.failing
                with receiver.lock:
                    receiver.requests += 1
                    if failing:
                        receiver.refused += 1
                    elif delivery:
                        receiver.acknowledged.add(delivery)
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


# --- Baseline: straight HTTP -------------------------------------------------------------------


def _post_many(url: str, count: int, start: int, ready, go) -> None:
    import httpx

    from accounts.webhooks.signing import signature_header  # stdlib only, no Django

    ready.set()
    go.wait()
    with httpx.Client(timeout=10.0) as client:
        for n in range(start, start + count):
            body = json.dumps({"id": f"evt_bare_{n}", "type": "lead.created", "data": {}}).encode()
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Ryorin-Delivery": f"bare-{n}",
                "Ryorin-Signature": signature_header("whsec_bench", body),
            }
            client.post(url, content=body, headers=headers).raise_for_status()


def bare_rate(receiver: Receiver, count: int, round_number: int) -> float:
    before = receiver.count()
    half = count // 2
    base = round_number * count  # delivery ids unique across rounds
    # Spawned, not forked: a fork of this threaded process (receiver, Django) can hang.
    # Timed from when both are started and ready, as the workers are.
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    readies = [context.Event() for _ in range(2)]
    processes = [
        context.Process(target=_post_many, args=(receiver.url, half, offset, ready, go))
        for offset, ready in zip((base, base + half), readies, strict=True)
    ]
    for process in processes:
        process.start()
    for ready in readies:
        ready.wait(60)
    started = time.perf_counter()
    go.set()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    assert receiver.count() - before == 2 * half, "the bare posts did not all arrive"
    return 2 * half / elapsed


# --- The stack -----------------------------------------------------------------------------------


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool=prefork",
        "--concurrency=2",
        "--loglevel=WARNING",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        f"--hostname=bench-webhooks-{os.getpid()}@%h",
    ]
    log = log_path.open("wb")
    return subprocess.Popen(
        command, cwd=harness.ROOT, env={**os.environ, **env}, stdout=log, stderr=log
    )


def wait_ready(timeout: float = 60.0) -> None:
    from config.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0)
        if replies:
            return
    raise SystemExit("the Celery worker did not answer a ping")


def emit(tenant_id: int, first: int, count: int) -> None:
    from accounts import events
    from accounts.tenancy import tenant_scope

    for start in range(first, first + count, BATCH):
        size = min(BATCH, first + count - start)
        with tenant_scope(tenant_id):
            events.emit_many(
                "lead.created",
                tenant_id=tenant_id,
                payloads=[
                    {"lead": {"id": n, "email": f"lead{n}@example.com", "lifecycle_stage": "lead"}}
                    for n in range(start, start + size)
                ],
            )


def wait_for(condition, timeout: float, what: str, tick=None) -> float:
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if condition():
            return time.perf_counter() - started
        if tick is not None:
            tick()
        time.sleep(0.02)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def status_counts(tenant_id: int) -> dict[str, int]:
    from django.db.models import Count

    from accounts.tenancy import tenant_scope
    from accounts.webhooks.models import WebhookDelivery

    with tenant_scope(tenant_id):
        return dict(
            WebhookDelivery.objects.values_list("status").annotate(n=Count("id")).order_by()
        )


def prepare_tenant() -> tuple[int, int]:
    from django.db import connection

    from accounts.models import Tenant
    from accounts.tenancy import unscoped
    from accounts.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
    from accounts.webhooks.services import webhook_endpoint_create

    tenant, _ = Tenant.objects.get_or_create(
        slug="bench-webhooks", defaults={"name": "Bench webhooks"}
    )
    reason = "benchmark: empty the bench tenant's webhooks and events"
    with unscoped(reason=reason), connection.cursor() as cursor:
        for model in (WebhookAttempt, WebhookDelivery, WebhookEndpoint):
            cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE tenant_id = %s", [tenant.id])
        cursor.execute("DELETE FROM accounts_domainevent WHERE tenant_id = %s", [tenant.id])
    return tenant.id, webhook_endpoint_create


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.webhooks", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000, help="events per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--outage", type=float, default=6.0, help="seconds the receiver fails")
    parser.add_argument("--tiny", action="store_true", help="200 events, 1 round, 2 s outage")
    args = parser.parse_args(argv)
    if args.tiny:
        args.events, args.rounds, args.outage = 200, 1, 2.0

    database_url = harness.bench_database_url()
    redis_url = os.environ.get("REDIS_URL") or harness.DEFAULT_REDIS_URL
    extra = {
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
        "WEBHOOK_TIMEOUT_SECONDS": "5",
        "WEBHOOK_RETRY_BASE_SECONDS": "1",
        "WEBHOOK_RETRY_MAX_SECONDS": "4",
        "DB_CONN_MAX_AGE": "60",
    }
    env = harness.setup_django(database_url, extra)
    from accounts.events import forget_signals
    from accounts.services import SYSTEM
    from accounts.webhooks.delivery import retry_due
    from config.celery import app

    app.control.purge()  # tasks an earlier, interrupted run left on this Redis db
    forget_signals()  # and the outbox signal of a purged drain task
    tenant_id, endpoint_create = prepare_tenant()
    receiver = Receiver()
    receiver.start()
    endpoint_create(tenant_id=tenant_id, url=receiver.url, events=["*"], origin=SYSTEM)

    harness.RESULTS.mkdir(exist_ok=True)
    log_path = harness.RESULTS / "webhooks.worker.log"
    worker = start_worker(env, log_path)
    report: dict = {"events": args.events, "rounds": args.rounds}
    try:
        wait_ready()
        print(f"database {harness.database_name(database_url)}, broker {redis_url}")
        print(f"2 Celery worker processes; receiver {receiver.url}; {args.events} events/round")
        stack_rates, bare_rates = [], []
        emitted = 0
        for round_number in range(args.rounds):
            # Interleaved with the baseline, so both see the same machine load.
            bare_rates.append(bare_rate(receiver, args.events, round_number))
            expected = receiver.count() + args.events
            started = time.perf_counter()
            emit(tenant_id, emitted, args.events)
            emitted += args.events
            wait_for(lambda expected=expected: receiver.count() >= expected, 300, "deliveries")
            stack_rates.append(args.events / (time.perf_counter() - started))
            print(
                f"round {round_number + 1}: stack {stack_rates[-1]:8.1f} deliveries/s   "
                f"bare {bare_rates[-1]:8.1f} posts/s"
            )
        stack = statistics.median(stack_rates)
        bare = statistics.median(bare_rates)

        # --- The outage ----------------------------------------------------------------------
        outage_events = max(50, args.events // 4)
        before = receiver.count()
        receiver.failing = True
        emit(tenant_id, emitted, outage_events // 2)
        time.sleep(args.outage / 2)
        receiver.stop()  # down: connection refused
        emit(tenant_id, emitted + outage_events // 2, outage_events - outage_events // 2)
        emitted += outage_events
        time.sleep(args.outage / 2)
        receiver.failing = False
        receiver.start()
        last_sweep = [0.0]

        def sweep() -> None:  # what beat does every 15 s, every 0.5 s here
            if time.perf_counter() - last_sweep[0] >= 0.5:
                last_sweep[0] = time.perf_counter()
                retry_due()

        drain = wait_for(
            lambda: receiver.count() >= before + outage_events,
            120,
            "the outage's deliveries",
            sweep,
        )
        total = args.events * args.rounds + outage_events
        # The receiver acknowledged; the workers record right after.
        try:
            wait_for(
                lambda: status_counts(tenant_id).get("succeeded", 0) >= total,
                30,
                "every delivery recorded as succeeded",
            )
        except SystemExit as exc:  # reported below as a FAIL, with the figures
            print(exc)
        counts = status_counts(tenant_id)
        acknowledged = receiver.count() - before
        lost = outage_events - acknowledged
        ok = counts.get("succeeded", 0) == total and counts.get("gave_up", 0) == 0 and lost == 0
        print()
        print(f"{'stack (median)':<28}{stack:10.1f} deliveries/s")
        print(f"{'bare HTTP (median)':<28}{bare:10.1f} posts/s")
        verdict = "PASS" if stack >= TARGET else "FAIL"
        print(f"target >= {TARGET:.0f} deliveries/s: {stack:.1f}  {verdict}")
        print(f"ratio stack/bare = {stack / bare:.2f}")
        print(
            f"outage: {outage_events} events during {args.outage:.1f} s of 503s and refused "
            f"connections ({receiver.refused} requests answered 503); after the receiver "
            f"came back all arrived in {drain:.1f} s"
        )
        print(
            f"outage deliveries acknowledged {acknowledged}/{outage_events}, lost {lost}; "
            f"database: {counts}  {'PASS' if ok else 'FAIL'}"
        )
        report.update(
            {
                "stack_deliveries_per_s": stack_rates,
                "bare_posts_per_s": bare_rates,
                "median_stack": stack,
                "median_bare": bare,
                "outage_events": outage_events,
                "outage_drain_s": drain,
                "outage_lost": lost,
                "statuses": counts,
            }
        )
        harness.write_results("webhooks", report)
        return 0 if ok else 1
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        receiver.stop()


if __name__ == "__main__":
    raise SystemExit(main())
