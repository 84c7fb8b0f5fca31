"""Activity ingest benchmark: 1,000 activities per request through the batch API
(`POST /api/v1/t/<tenant>/activities/batch/`, API key) against a bare Django view that
writes the same body with one INSERT, measured in the same run on the same server.

    uv run python -m bench.activity_ingest [--duration S] [--connections N] [--rounds R]
        [--database-url URL] [--tenant SLUG] [--keep] [--tiny]

Runs on the generated tenant (bench.generate; ryorin_gen, 10,000,000 activities) so the
inserts maintain full-size indexes. Every wrk run is checked against the table: the rows
that landed are counted, and must match the answered requests x 1,000. The rows written
are deleted at the end (--keep keeps them). Prints activities/s, p50 and p99 (medians over
the rounds), the stack/bare ratio and PASS/FAIL for the 20,000 activities/s target
(never the exit status). See bench/README.md.
"""

import argparse
import json
import os
import platform
import random
import shutil
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from bench.harness import (
    RESULTS,
    WORKER_CLASS,
    WORKERS,
    Endpoint,
    Measure,
    Server,
    data_database_url,
    database_name,
    ensure_data_tenant,
    fetch,
    free_port,
    interleave,
    load_run_args,
    ratio,
    run_wrk,
    setup_django,
    summarize,
    vacuum,
    write_results,
)

TARGET_ACTIVITIES_PER_S = 20_000
BATCH = 1000
BODIES = 12
TYPES = [
    ("page_view", 45),
    ("email_delivered", 15),
    ("email_opened", 15),
    ("email_clicked", 8),
    ("content_download", 7),
    ("webinar_attendance", 5),
    ("form_submission", 5),
]
PAGES = ["/pricing", "/features", "/case-studies", "/blog/dx-sales", "/seminar", "/contact"]


def make_bodies(leads: list[tuple[int, str]], campaigns: list[int], seed: int) -> list[str]:
    """BODIES batches of BATCH items like an ESP webhook relay or a tracker sends: half
    keyed by lead id, half by email; a campaign on a third; URL, referrer and UTM."""
    rng = random.Random(seed)
    names, weights = zip(*TYPES, strict=True)
    now = datetime.now(UTC)
    bodies = []
    for _ in range(BODIES):
        items = []
        for _ in range(BATCH):
            lead_id, email = rng.choice(leads)
            kind = rng.choices(names, weights)[0]
            item: dict = {"lead_id": lead_id} if rng.random() < 0.5 else {"email": email}
            item["type"] = kind
            item["occurred_at"] = (now - timedelta(seconds=rng.randrange(30 * 86400))).isoformat()
            if campaigns and rng.random() < 0.33:
                item["campaign_id"] = rng.choice(campaigns)
            if kind == "page_view":
                item["properties"] = {
                    "url": f"https://www.example.co.jp{rng.choice(PAGES)}",
                    "referrer": "https://www.google.com/",
                    "utm_source": "google",
                    "utm_medium": "cpc",
                }
            elif kind.startswith("email_"):
                item["properties"] = {"message_id": f"<{rng.getrandbits(64):x}@mail.example>"}
            else:
                item["properties"] = {"asset": "営業DX白書2025.pdf"}
            items.append(item)
        bodies.append(json.dumps({"items": items}, ensure_ascii=False))
    return bodies


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return load_run_args("python -m bench.activity_ingest", __doc__, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    started = time.monotonic()
    database_url = data_database_url(tiny=args.tiny, given=args.database_url)
    env = setup_django(database_url)
    from django.db import connection, connections

    from accounts.models import APIKey, Tenant
    from accounts.services import SYSTEM, api_key_create

    tenant_id = ensure_data_tenant(args.tenant, tiny=args.tiny, database_url=database_url)
    slug = Tenant.objects.get(pk=tenant_id).slug

    def sql(query: str, params: list | None = None) -> list[tuple]:
        # The benchmark's own bookkeeping, as the connecting superuser (no RLS).
        with connection.cursor() as cursor:
            cursor.execute(query, params or [])
            return cursor.fetchall() if cursor.description else []

    leads = sql(
        "SELECT id, email FROM leads_lead TABLESAMPLE SYSTEM (5) WHERE tenant_id = %s"
        " AND merged_into_id IS NULL AND email <> '' LIMIT 20000",
        [tenant_id],
    ) or sql(
        "SELECT id, email FROM leads_lead WHERE tenant_id = %s AND merged_into_id IS NULL"
        " AND email <> '' LIMIT 20000",
        [tenant_id],
    )
    campaigns = [
        row[0] for row in sql("SELECT id FROM campaigns_campaign WHERE tenant_id = %s", [tenant_id])
    ]
    bodies_file = RESULTS / "activity_ingest.bodies.jsonl"
    RESULTS.mkdir(exist_ok=True)
    bodies_file.write_text("\n".join(make_bodies(leads, campaigns, seed=1)) + "\n")
    issued = api_key_create(
        tenant_id=tenant_id,
        name="bench.activity_ingest",
        scope=APIKey.Scope.WRITE,
        role="marketing",
        origin=SYSTEM,
    )
    first_mark = sql("SELECT coalesce(max(id), 0) FROM leads_activity")[0][0]
    connections.close_all()

    eps = {
        e.key: e
        for e in [
            Endpoint(
                "stack",
                "batch API (API key)",
                "POST",
                [f"/api/v1/t/{slug}/activities/batch/"],
                {"Authorization": f"Api-Key {issued.raw_key}"},
                bodies_file=bodies_file,
            ),
            Endpoint(
                "bare",
                "bare view, one INSERT",
                "POST",
                [f"/bench/bare/activities/?tenant={tenant_id}"],
                bodies_file=bodies_file,
            ),
        ]
    }
    print(
        f"bench.activity_ingest: database {database_name(database_url)}, tenant {slug} "
        f"({len(leads)} sampled leads, {len(campaigns)} campaigns), gunicorn {WORKERS} "
        f"{WORKER_CLASS} workers, wrk 1 thread x {args.connections} connections, "
        f"{args.rounds} round(s) x {args.duration}s, {BATCH} activities per request, "
        f"{os.cpu_count()} CPUs"
    )

    server = Server(env, free_port(), RESULTS / "activity_ingest.gunicorn.log")
    rounds: dict[str, list[Measure]] = {key: [] for key in eps}
    landed: dict[str, list[dict]] = {key: [] for key in eps}
    problems: list[str] = []

    def measure(key: str, duration: int) -> Measure:
        mark = sql("SELECT coalesce(max(id), 0) FROM leads_activity")[0][0]
        result = run_wrk(server.base, eps[key], duration=duration, connections=args.connections)
        # Requests in flight when wrk stopped still commit, later on a loaded machine:
        # count once the table has stopped growing, so none lands in the next run.
        rows, settled_by = -1, time.monotonic() + 15
        while time.monotonic() < settled_by:
            time.sleep(0.3)
            now = sql(
                "SELECT count(*) FROM leads_activity WHERE id > %s AND tenant_id = %s",
                [mark, tenant_id],
            )[0][0]
            if now == rows:
                break
            rows = now
        connections.close_all()
        expected = result.requests * BATCH
        check = {"requests": result.requests, "rows": rows, "expected_at_least": expected}
        landed[key].append(check)
        # wrk stops counting at the deadline; up to one request per connection may
        # still land after it.
        if not expected <= rows <= expected + args.connections * BATCH:
            problems.append(f"{key}: {rows} rows landed for {result.requests} requests")
        return result

    try:
        server.wait_ready("/api/v1/")
        for key, endpoint in eps.items():
            status, body = fetch(server.base, endpoint)
            if status != 200 or not isinstance(body, dict) or body.get("created") != BATCH:
                text = json.dumps(body)[:500] if isinstance(body, dict) else body
                problems.append(f"{key}: HTTP {status} {text}")
        if problems:
            print("FAILED before measuring:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        if not args.tiny:
            for key in eps:
                measure(key, 1)  # warm-up: connections, caches, the index pages
            for values in landed.values():
                values.clear()
        for n in range(args.rounds):
            for key in interleave(list(eps), n):
                rounds[key].append(measure(key, args.duration))
    finally:
        server.stop()
        if not args.keep:
            deleted = sql(
                "WITH gone AS (DELETE FROM leads_activity WHERE id > %s AND tenant_id = %s"
                " RETURNING 1) SELECT count(*) FROM gone",
                [first_mark, tenant_id],
            )[0][0]
            print(f"deleted the {deleted:,} activities written by the run")
            vacuum(["leads_activity"])
        APIKey._base_manager.filter(prefix=issued.api_key.prefix).delete()

    summary = summarize(rounds)
    for values in summary.values():
        values["activities_per_s"] = round(values["rps"] * BATCH)
    print()
    print(
        f"{'endpoint':<24} {'activities/s':>12} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'requests':>9} {'errors':>7}"
    )
    for key, endpoint in eps.items():
        s = summary[key]
        errors = s["errors"] + s["non_2xx"]
        print(
            f"{endpoint.label:<24} {s['activities_per_s']:>12,} {s['rps']:>7.1f}"
            f" {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} {s['requests']:>9} {errors:>7}"
        )
    stack_rate = summary["stack"]["activities_per_s"]
    verdict = "PASS" if stack_rate >= TARGET_ACTIVITIES_PER_S else "FAIL"
    share = ratio(summary, "stack", "bare")
    print()
    print(
        f"activities/s through the batch API = {stack_rate:,}  {verdict}"
        f" (target >= {TARGET_ACTIVITIES_PER_S:,})"
    )
    print(f"      ratio batch API / bare view = {share:.2f}")
    print(
        f"      rows landed = answered requests x {BATCH} in every run:"
        f" {'yes' if not problems else 'NO'}"
    )

    report = {
        "benchmark": "activity_ingest",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {
            "database": database_name(database_url),
            "tenant": slug,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "workers": WORKERS,
            "batch": BATCH,
            "tiny": args.tiny,
        },
        "median": summary,
        "target_activities_per_s": TARGET_ACTIVITIES_PER_S,
        "pass": stack_rate >= TARGET_ACTIVITIES_PER_S,
        "ratio_stack_bare": share,
        "landed": landed,
        "rounds": {k: [asdict(m) for m in ms] for k, ms in rounds.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    path = write_results("activity_ingest", report)
    print(f"\nresults: bench/results/{path.name}")
    failed = [k for k, s in summary.items() if s["errors"] or s["non_2xx"]]
    if failed or problems:
        print(f"FAILED: {problems or ''} errors or non-2xx answers in {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
