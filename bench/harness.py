"""What every HTTP benchmark shares: its database, the gunicorn server with the
production profile, wrk runs and the medians of interleaved rounds.

bench.api_stack, bench.activity_ingest, bench.form_submit and bench.lead_list build on
it; see bench/README.md for what each measures.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
LUA_SCRIPT = BENCH_DIR / "wrk" / "request.lua"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/ryorin_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
#: The generated 1,000,000-lead tenant (bench.generate) the full-size runs measure on.
DEFAULT_DATA_URL = "postgres://postgres@127.0.0.1:5432/ryorin_gen"
DEFAULT_DATA_TENANT = "bench-data"
# Sync workers, one per core: the requests are short and CPU-bound (PostgreSQL and wrk
# share the same cores), so more processes or threads only add switching. Measured
# against gthread in bench/README.md.
WORKERS = 2
WORKER_CLASS = "sync"


# --- Environment ----------------------------------------------------------------------


def bench_database_url(default: str = DEFAULT_DATABASE_URL) -> str:
    """DATABASE_URL, or the default, with the database name ending in "_bench".

    A benchmark writes into (or empties) its database, so it never runs on a database
    that is not named for it: DATABASE_URL=.../ryorin gives ryorin_bench.
    """
    parts = urlsplit(os.environ.get("DATABASE_URL") or default)
    name = parts.path.lstrip("/") or "ryorin"
    if "bench" not in name:
        name = f"{name}_bench"
    return urlunsplit(parts._replace(path=f"/{name}"))


def data_database_url(*, tiny: bool, given: str | None = None) -> str:
    """Where the data benchmarks run: `given` (--database-url), else BENCH_DATA_URL,
    else the generated tenant's database (ryorin_gen) for a full run; a tiny run uses
    DATABASE_URL's name (made to contain "bench", as above) and generates a tiny tenant
    there when it has none."""
    if given:
        return given
    if tiny:
        return bench_database_url()
    return os.environ.get("BENCH_DATA_URL") or DEFAULT_DATA_URL


def server_environment(
    database_url: str, secret_key: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
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
        **(extra or {}),
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


def database_name(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup_django(database_url: str, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """Point this process at the database with the server's settings, create and
    migrate it; returns the server's environment."""
    import secrets

    env = server_environment(database_url, secrets.token_urlsafe(50), extra_env)
    os.environ.update(env)
    ensure_database(database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    return env


def ensure_data_tenant(slug: str, *, tiny: bool, database_url: str) -> int:
    """The generated tenant's id. A tiny run generates it (bench.generate --tiny) when
    the database has none; a full run asks for it to be generated first."""
    from accounts.models import Tenant
    from leads.models import Lead

    tenant = Tenant.objects.filter(slug=slug).first()
    # _base_manager as the connecting superuser: the benchmark's own bookkeeping.
    if tenant is not None and Lead._base_manager.filter(tenant_id=tenant.id).exists():
        return tenant.id
    if not tiny:
        raise SystemExit(
            f"no generated tenant {slug!r} in {database_name(database_url)}: run "
            f"DATABASE_URL={database_url} uv run python -m bench.generate --tenant {slug}"
        )
    from bench import generate

    result = generate.main(["--tiny", "--tenant", slug, "--anchor", "2025-06-30"])
    if result:
        raise SystemExit(f"bench.generate --tiny failed ({result})")
    return Tenant.objects.get(slug=slug).id


# --- Endpoints ---------------------------------------------------------------------------


@dataclass
class Endpoint:
    key: str
    label: str
    method: str
    paths: list[str]
    headers: dict[str, str] = field(default_factory=dict)
    bodies: list[str] = field(default_factory=list)
    #: Bodies too big for an environment variable: one per line of this file.
    bodies_file: Path | None = None
    #: Replace "{{n}}" in each body by a token unique to the request (wrk side).
    unique: bool = False
    content_type: str = "application/json"

    def wrk_env(self) -> dict[str, str]:
        env = {
            "BENCH_METHOD": self.method,
            "BENCH_PATHS": "\n".join(self.paths),
            "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in self.headers.items()),
            "BENCH_BODIES": "\n".join(self.bodies),
            "BENCH_CONTENT_TYPE": self.content_type,
        }
        if self.bodies_file is not None:
            env["BENCH_BODIES_FILE"] = str(self.bodies_file)
        if self.unique:
            env["BENCH_UNIQUE"] = f"{os.getpid()}x{time.time_ns() % 10**9}"
        return env

    def body(self, index: int = 0) -> bytes | None:
        bodies = self.bodies
        if self.bodies_file is not None:
            bodies = self.bodies_file.read_text().splitlines()
        if not bodies:
            return None
        text = bodies[index % len(bodies)]
        if self.unique:
            text = text.replace("{{n}}", f"check{time.time_ns()}")
        return text.encode()


# --- Server ----------------------------------------------------------------------------


class Server:
    def __init__(
        self, env: dict[str, str], port: int, log_path: Path, *, workers: int = WORKERS
    ) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "config.wsgi:application",
                "--bind", f"127.0.0.1:{port}",
                "--workers", str(workers),
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
                    if response.status < 500:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
                time.sleep(0.2)
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


def vacuum(tables: list[str]) -> None:
    """VACUUM (ANALYZE) the tables a run deleted its rows from: the dead rows of a
    benchmark's half a million activities made the next benchmark's index scans (the
    incremental scoring's) six times slower until autovacuum came by."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(table)}")


def fetch(
    base: str, endpoint: Endpoint, index: int = 0, *, path: str | None = None
) -> tuple[int, object]:
    """One request as wrk would send it; (status, JSON body or text)."""
    body = endpoint.body(index)
    headers = dict(endpoint.headers)
    if body is not None:
        headers["Content-Type"] = endpoint.content_type
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1, built here)
        base + (path or endpoint.paths[index % len(endpoint.paths)]),
        data=body,
        headers=headers,
        method=endpoint.method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            text = response.read()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text.decode(errors="replace")[:500]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:500]


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
    p90_ms: float = 0.0
    p95_ms: float = 0.0


def run_wrk(
    base: str,
    endpoint: Endpoint,
    *,
    duration: int,
    connections: int,
    threads: int = 1,
    script: Path = LUA_SCRIPT,
) -> Measure:
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
        "-s", str(script), base,
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env={**os.environ, **endpoint.wrk_env()},
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}{result.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = data["errors"]
    seconds = data["duration_us"] / 1e6
    latency = data["latency_us"]
    return Measure(
        requests=data["requests"],
        seconds=round(seconds, 3),
        rps=round(data["requests"] / seconds, 1),
        p50_ms=round(latency["p50"] / 1000, 2),
        p99_ms=round(latency["p99"] / 1000, 2),
        errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        non_2xx=errors["status"],  # wrk counts answers with status > 399
        p90_ms=round(latency.get("p90", 0) / 1000, 2),
        p95_ms=round(latency.get("p95", 0) / 1000, 2),
    )


# --- Report -----------------------------------------------------------------------------


def summarize(rounds: dict[str, list[Measure]]) -> dict[str, dict]:
    return {
        key: {
            "rps": round(statistics.median(m.rps for m in ms), 1),
            "p50_ms": round(statistics.median(m.p50_ms for m in ms), 2),
            "p95_ms": round(statistics.median(m.p95_ms for m in ms), 2),
            "p99_ms": round(statistics.median(m.p99_ms for m in ms), 2),
            "requests": sum(m.requests for m in ms),
            "errors": sum(m.errors for m in ms),
            "non_2xx": sum(m.non_2xx for m in ms),
        }
        for key, ms in rounds.items()
        if ms
    }


def ratio(summary: dict, stack: str, bare: str) -> float:
    return round(summary[stack]["rps"] / summary[bare]["rps"], 3) if summary[bare]["rps"] else 0.0


def interleave(keys: list[str] | tuple[str, ...], round_number: int) -> list[str]:
    """The group's order for this round: flipped every other round, so that a drift of
    the machine's speed does not favour one side."""
    return list(keys) if round_number % 2 == 0 else list(reversed(keys))


def write_results(name: str, report: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


def load_run_args(prog: str, doc: str, argv: list[str] | None) -> argparse.Namespace:
    """The options every wrk benchmark on the generated data tenant takes."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--database-url", help="default: BENCH_DATA_URL or …/ryorin_gen")
    parser.add_argument("--tenant", default=DEFAULT_DATA_TENANT)
    parser.add_argument("--keep", action="store_true", help="keep the rows written")
    parser.add_argument("--tiny", action="store_true", help="a few seconds in all, for CI")
    args = parser.parse_args(argv)
    if args.tiny:
        args.duration, args.rounds, args.connections = 1, 1, 2
    if args.duration < 1 or args.rounds < 1 or args.connections < 1:
        parser.error("--duration, --rounds and --connections must be at least 1")
    return args
