"""API stack benchmark: an authenticated read and a small write through the whole stack
(authentication, throttling, tenant resolution, RLS, DRF serializers) against bare
Django views doing the same SQL, measured in the same run on the same server.

    uv run python -m bench.api_stack [--duration S] [--connections N] [--rounds R] [--tiny]

Creates and migrates its own database, seeds it (bench.seed), starts gunicorn on a free
port of 127.0.0.1 with the production profile, and drives it with wrk in interleaved
rounds (stack, bare, stack, bare, ...). Prints req/s, p50 and p99 (medians over the
rounds) and the stack/bare ratios, and writes bench/results/api_stack.json. Exits
non-zero when the run itself fails (wrk errors, non-2xx answers, wrong bodies), never
because of the ratio target, which it reports as PASS/FAIL. See bench/README.md.
"""

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # bench.seed imports models, which need django.setup() first
    from bench.seed import Seeded

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
LUA_SCRIPT = BENCH_DIR / "wrk" / "request.lua"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/ryorin_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
TARGET_RATIO = 0.5
PAGE_SIZE = 20
# Sync workers, one per core: the requests are short and CPU-bound (PostgreSQL and wrk
# share the same cores), so more processes or threads only add switching. Measured
# against gthread in bench/README.md.
WORKERS = 2
WORKER_CLASS = "sync"
ROLES = ("marketing", "inside_sales")


# --- Environment ----------------------------------------------------------------------


def bench_database_url() -> str:
    """DATABASE_URL, or the default, with the database name ending in "_bench".

    The benchmark empties and reseeds its database on every run, so it never runs on
    a database that is not named for it: DATABASE_URL=.../ryorin gives ryorin_bench.
    """
    parts = urlsplit(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    name = parts.path.lstrip("/") or "ryorin"
    if "bench" not in name:
        name = f"{name}_bench"
    return urlunsplit(parts._replace(path=f"/{name}"))


def server_environment(database_url: str, secret_key: str) -> dict[str, str]:
    """The environment of this process and of the server: production profile, our DB."""
    return {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "RYORIN_ENV": "production",
        "DEBUG": "false",
        "SECRET_KEY": secret_key,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        "CACHE_KEY_PREFIX": "ryorin-bench",
        # The throttle stays in the path (it is part of the stack) but must not answer
        # 429 to a load generator: a per-second window keeps DRF's per-caller history
        # list as short as a real caller's.
        "API_THROTTLE_RATE": "1000000/s",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def ensure_database(database_url: str) -> None:
    import psycopg

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Endpoints ---------------------------------------------------------------------------


@dataclass
class Endpoint:
    key: str
    label: str
    method: str
    paths: list[str]
    headers: dict[str, str] = field(default_factory=dict)
    bodies: list[str] = field(default_factory=list)

    def wrk_env(self) -> dict[str, str]:
        return {
            "BENCH_METHOD": self.method,
            "BENCH_PATHS": "\n".join(self.paths),
            "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in self.headers.items()),
            "BENCH_BODIES": "\n".join(self.bodies),
        }


def endpoints(seeded: "Seeded") -> dict[str, Endpoint]:
    api = f"/api/v1/t/{seeded.tenant_slug}/members/"
    key_auth = {"Authorization": f"Api-Key {seeded.api_key}"}
    session = {"Cookie": f"sessionid={seeded.session_cookie}"}
    bodies = [json.dumps({"role": role}) for role in ROLES]
    ids = seeded.writable_member_ids
    tenant = seeded.tenant_id
    bare, q = "/bench/bare/", f"tenant={tenant}&page_size={PAGE_SIZE}"
    read = f"{api}?page_size={PAGE_SIZE}"
    writes = [f"{api}{i}/" for i in ids]
    bare_writes = [f"{bare}write/{i}/?tenant={tenant}" for i in ids]
    return {
        e.key: e
        for e in [
            Endpoint("read_stack", "read  stack (API key)", "GET", [read], key_auth),
            Endpoint("read_bare", "read  bare", "GET", [f"{bare}members/?{q}"]),
            Endpoint("read_session", "read  stack (session)", "GET", [read], session),
            Endpoint("read_bare_rls", "read  bare + scope/RLS", "GET", [f"{bare}members-rls/?{q}"]),
            Endpoint("read_bare_sql", "read  bare raw SQL", "GET", [f"{bare}members-sql/?{q}"]),
            Endpoint("write_stack", "write stack (API key)", "PATCH", writes, key_auth, bodies),
            Endpoint("write_bare", "write bare", "PATCH", bare_writes, {}, bodies),
        ]
    }


# Groups measured back to back in every round; their order flips from round to round so
# that a drift of the machine's speed does not favour one side.
GROUPS = [
    ("read_stack", "read_bare"),
    ("write_stack", "write_bare"),
    ("read_session", "read_bare_rls", "read_bare_sql"),
]
RATIOS = {"read": ("read_stack", "read_bare"), "write": ("write_stack", "write_bare")}
EXTRA_RATIOS = {
    "read, session auth: stack / bare": ("read_session", "read_bare"),
    "read: bare + scope/RLS / bare": ("read_bare_rls", "read_bare"),
    "read: bare / raw SQL": ("read_bare", "read_bare_sql"),
    "read: stack / raw SQL": ("read_stack", "read_bare_sql"),
}


# --- Server ----------------------------------------------------------------------------


class Server:
    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "config.wsgi:application",
                "--bind", f"127.0.0.1:{port}",
                "--workers", str(WORKERS),
                "--worker-class", WORKER_CLASS,
                "--timeout", "60",
                "--graceful-timeout", "5",
            ],
            cwd=ROOT, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.process.returncode}): {self.log()}")
            try:
                # Always http://127.0.0.1:<port>: the URL is ours, not input.
                with urllib.request.urlopen(self.base + path, timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout:.0f}s: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def fetch(base: str, endpoint: Endpoint, index: int = 0) -> tuple[int, object]:
    """One request as wrk would send it; (status, JSON body)."""
    body = endpoint.bodies[index % len(endpoint.bodies)].encode() if endpoint.bodies else None
    headers = dict(endpoint.headers)
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1, built here)
        base + endpoint.paths[index % len(endpoint.paths)],
        data=body,
        headers=headers,
        method=endpoint.method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:500]


def precheck(base: str, eps: dict[str, Endpoint]) -> list[str]:
    """Every endpoint answers 2xx, and stack and bare give the same rows: otherwise the
    comparison would measure something else."""
    problems = []
    bodies = {}
    for key, endpoint in eps.items():
        status, body = fetch(base, endpoint)
        if not 200 <= status < 300:
            problems.append(f"{key}: HTTP {status} {body}")
        bodies[key] = body
    if not problems:
        for other in ("read_bare", "read_bare_rls", "read_bare_sql", "read_session"):
            if bodies["read_stack"]["results"] != bodies[other]["results"]:
                problems.append(f"read_stack and {other} return different rows")
        if len(bodies["read_stack"]["results"]) != PAGE_SIZE:
            problems.append(f"read_stack returned {len(bodies['read_stack']['results'])} rows")
        stack_write, bare_write = bodies["write_stack"], bodies["write_bare"]
        if set(stack_write) != set(bare_write) or stack_write.get("role") != ROLES[0]:
            problems.append(f"write bodies differ: {stack_write} vs {bare_write}")
    return problems


# --- wrk ---------------------------------------------------------------------------------


@dataclass
class Measure:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int


def run_wrk(base: str, endpoint: Endpoint, *, duration: int, connections: int) -> Measure:
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
        "-s", str(LUA_SCRIPT), base,
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env={**os.environ, **endpoint.wrk_env()},
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=False,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}{result.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = data["errors"]
    seconds = data["duration_us"] / 1e6
    return Measure(
        requests=data["requests"],
        seconds=round(seconds, 3),
        rps=round(data["requests"] / seconds, 1),
        p50_ms=round(data["latency_us"]["p50"] / 1000, 2),
        p99_ms=round(data["latency_us"]["p99"] / 1000, 2),
        errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        non_2xx=errors["status"],  # wrk counts answers with status > 399
    )


# --- Report -----------------------------------------------------------------------------


def summarize(rounds: dict[str, list[Measure]]) -> dict[str, dict]:
    return {
        key: {
            "rps": round(statistics.median(m.rps for m in ms), 1),
            "p50_ms": round(statistics.median(m.p50_ms for m in ms), 2),
            "p99_ms": round(statistics.median(m.p99_ms for m in ms), 2),
            "requests": sum(m.requests for m in ms),
            "errors": sum(m.errors for m in ms),
            "non_2xx": sum(m.non_2xx for m in ms),
        }
        for key, ms in rounds.items()
    }


def ratio(summary: dict, stack: str, bare: str) -> float:
    return round(summary[stack]["rps"] / summary[bare]["rps"], 3) if summary[bare]["rps"] else 0.0


def print_report(eps: dict[str, Endpoint], summary: dict, ratios: dict, extra: dict) -> None:
    print()
    print(
        f"{'endpoint':<26} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9} {'errors':>7}"
    )
    for key, endpoint in eps.items():
        s = summary[key]
        errors = s["errors"] + s["non_2xx"]
        print(
            f"{endpoint.label:<26} {s['rps']:>9.1f} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f}"
            f" {s['requests']:>9} {errors:>7}"
        )
    print()
    for name, value in ratios.items():
        verdict = "PASS" if value >= TARGET_RATIO else "FAIL"
        print(
            f"ratio {name:<5} stack/bare req/s = {value:.2f}  {verdict} (target >= {TARGET_RATIO})"
        )
    for name, value in extra.items():
        print(f"      {name}: {value:.2f}")


# --- Main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_stack", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run (default 3)")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections (default 4)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--tiny", action="store_true", help="a few seconds in all, for CI")
    args = parser.parse_args(argv)
    if args.tiny:
        args.duration, args.rounds, args.connections = 1, 1, 2
    if args.duration < 1 or args.rounds < 1 or args.connections < 1:
        parser.error("--duration, --rounds and --connections must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    database_url = bench_database_url()
    env = server_environment(database_url, secrets.token_urlsafe(50))
    os.environ.update(env)
    started = time.monotonic()

    ensure_database(database_url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from bench.seed import analyze, seed

    call_command("migrate", interactive=False, verbosity=0)
    seed_size = {"tenants": 5 if args.tiny else 20, "members": 50, "keys": 3, "audit": 200}
    seeded = seed(**seed_size)
    analyze()
    connections.close_all()
    eps = endpoints(seeded)
    print(
        f"bench.api_stack: database {urlsplit(database_url).path.lstrip('/')}, "
        f"gunicorn {WORKERS} {WORKER_CLASS} workers, wrk 1 thread x {args.connections} "
        f"connections, {args.rounds} round(s) x {args.duration}s per endpoint, "
        f"{os.cpu_count()} CPUs; seed {seed_size['tenants']} tenants x {seed_size['members']} "
        f"members, {seed_size['keys']} API keys, {seed_size['audit']} audit rows each"
    )

    RESULTS.mkdir(exist_ok=True)
    server = Server(env, free_port(), RESULTS / "api_stack.gunicorn.log")
    rounds: dict[str, list[Measure]] = {key: [] for key in eps}
    try:
        server.wait_ready(eps["read_bare"].paths[0])
        problems = precheck(server.base, eps)
        if problems:
            print("FAILED before measuring:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        # Warm-up: every worker opens its DB connection and fills its caches (the
        # prechecks above are warm-up enough for a smoke run).
        for endpoint in eps.values() if not args.tiny else []:
            run_wrk(server.base, endpoint, duration=1, connections=args.connections)
        for n in range(args.rounds):
            for group in GROUPS:
                for key in group if n % 2 == 0 else reversed(group):
                    rounds[key].append(
                        run_wrk(
                            server.base,
                            eps[key],
                            duration=args.duration,
                            connections=args.connections,
                        )
                    )
    finally:
        server.stop()

    summary = summarize(rounds)
    ratios = {name: ratio(summary, *pair) for name, pair in RATIOS.items()}
    extra = {name: ratio(summary, *pair) for name, pair in EXTRA_RATIOS.items()}
    print_report(eps, summary, ratios, extra)
    failed = {k: s for k, s in summary.items() if s["errors"] or s["non_2xx"]}

    report = {
        "benchmark": "api_stack",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "wrk_threads": 1,
            "workers": WORKERS,
            "worker_class": WORKER_CLASS,
            "page_size": PAGE_SIZE,
            "tiny": args.tiny,
            "seed": seed_size,
        },
        "endpoints": {k: {"label": e.label, "method": e.method} for k, e in eps.items()},
        "median": summary,
        "ratios": ratios,
        "extra_ratios": extra,
        "target_ratio": TARGET_RATIO,
        "pass": all(v >= TARGET_RATIO for v in ratios.values()),
        "rounds": {k: [asdict(m) for m in ms] for k, ms in rounds.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    (RESULTS / "api_stack.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults: {(RESULTS / 'api_stack.json').relative_to(ROOT)}")
    if failed:
        print(f"FAILED: errors or non-2xx answers in {sorted(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
