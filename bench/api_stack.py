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
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

# The shared helpers live in bench.harness; the names stay importable from here
# (bench.profile_api uses them).
from bench.harness import (
    RESULTS,
    ROOT,
    WORKER_CLASS,
    WORKERS,
    Endpoint,
    Measure,
    Server,
    bench_database_url,
    ensure_database,
    fetch,
    free_port,
    ratio,
    run_wrk,
    server_environment,
    summarize,
)

if TYPE_CHECKING:  # bench.seed imports models, which need django.setup() first
    from bench.seed import Seeded

TARGET_RATIO = 0.5
PAGE_SIZE = 20
ROLES = ("marketing", "inside_sales")


# --- Endpoints ---------------------------------------------------------------------------


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
