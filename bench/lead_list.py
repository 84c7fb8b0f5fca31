"""Lead list benchmark: `GET /api/v1/t/<tenant>/leads/` with the filters a marketer
uses, on the generated 1,000,000-lead tenant: p95 of the first page and of a page deep
in the list, for each filter combination.

    uv run python -m bench.lead_list [--duration S] [--connections N] [--rounds R]
        [--depth N] [--database-url URL] [--tenant SLUG] [--explain all|slowest|none]
        [--tiny]

The deep page's cursor is built at row `--depth` (default 20,000, or the middle of a
shorter result) of each case's own order, as following `next` that many rows would
reach it; its first row is checked against the database. Each case is measured on its
own with wrk (GET, API key) in interleaved rounds; figures are medians over the rounds.
Then the list query of the slowest case (or every case) is run under EXPLAIN
(ANALYZE, BUFFERS) as the app role inside the tenant scope (row-level security on),
exactly as the view sends it. PASS/FAIL for "p95 under 100 ms" never sets the exit
status. See bench/README.md.
"""

import argparse
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import urlencode

from bench.harness import (
    DEFAULT_DATA_TENANT,
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
    run_wrk,
    setup_django,
    summarize,
    write_results,
)

TARGET_P95_MS = 100.0
PAGE_SIZE = 50


@dataclass
class Case:
    key: str
    label: str
    params: dict[str, str]


def cases(tenant_id: int, sql) -> list[Case]:
    """Filter combinations a marketer uses, on values that select many leads (the
    busiest owner, campaign and tag), so the pages are full and deep."""
    owner = sql(
        "SELECT owner_id FROM leads_lead WHERE tenant_id = %s AND owner_id IS NOT NULL"
        " GROUP BY owner_id ORDER BY count(*) DESC LIMIT 1",
        [tenant_id],
    )[0][0]
    campaign = sql(
        "SELECT campaign_id FROM campaigns_campaignmembership WHERE tenant_id = %s"
        " GROUP BY campaign_id ORDER BY count(*) DESC LIMIT 1",
        [tenant_id],
    )[0][0]
    tag = sql(
        "SELECT t.name FROM leads_leadtag lt JOIN leads_tag t ON t.id = lt.tag_id"
        " WHERE lt.tenant_id = %s GROUP BY t.name ORDER BY count(*) DESC LIMIT 1",
        [tenant_id],
    )[0][0]
    newest = sql("SELECT max(created_at) FROM leads_lead WHERE tenant_id = %s", [tenant_id])[0][0]
    # The three whole months before the newest lead's month.
    before = newest.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    after = (before - timedelta(days=85)).replace(day=1)
    created = {"created_after": after.isoformat(), "created_before": before.isoformat()}
    return [
        Case("all", "no filter", {}),
        Case("stage", "stage=mql", {"stage": "mql"}),
        Case("owner", "owner", {"owner": str(owner)}),
        Case("campaign", "campaign", {"campaign": str(campaign)}),
        Case("created", "created range (3 months)", created),
        Case("tag", "tag", {"tag": tag}),
        Case("q_name", "q=佐藤 (name)", {"q": "佐藤"}),
        Case("q_company", "q=東京 (company, name)", {"q": "東京"}),
        Case("combo", "stage+owner+created", {"stage": "lead", "owner": str(owner), **created}),
        Case("name_sort", "sort=name, stage=lead", {"sort": "name", "stage": "lead"}),
        Case("updated", "sort=-updated, source=form", {"sort": "-updated", "source": "form"}),
    ]


TINY_CASES = ("all", "stage", "q_name")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lead_list", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--duration", type=int, default=2, help="seconds per wrk run (default 2)")
    parser.add_argument("--connections", type=int, default=2, help="wrk connections (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--depth", type=int, default=20_000, help="rows before the deep page")
    parser.add_argument("--database-url", help="default: BENCH_DATA_URL or …/ryorin_gen")
    parser.add_argument("--tenant", default=DEFAULT_DATA_TENANT)
    parser.add_argument("--explain", choices=["all", "slowest", "none"], default="slowest")
    parser.add_argument("--only", help="comma-separated case keys")
    parser.add_argument("--tiny", action="store_true", help="a few seconds in all, for CI")
    args = parser.parse_args(argv)
    if args.tiny:
        args.duration, args.rounds, args.connections = 1, 1, 2
        args.only = args.only or ",".join(TINY_CASES)
    if args.duration < 1 or args.rounds < 1 or args.connections < 1:
        parser.error("--duration, --rounds and --connections must be at least 1")
    return args


def deep_cursor(tenant_id: int, case: Case, depth: int) -> tuple[str, int, int] | None:
    """(cursor, its depth, id of the first row of the deep page): the cursor the API
    would put in `next` after `depth` rows of the case's list. None when the case has
    too few rows for a page after the first (a tiny tenant)."""
    from accounts.tenancy import tenant_scope
    from leads import selectors
    from leads.api.filters import LeadFilter
    from leads.api.pagination import LeadPagination

    pagination = LeadPagination()
    fields, descending = pagination.sorts[case.params.get("sort", pagination.default_sort)]
    from django.http import QueryDict

    # A QueryDict, as the view gets: multiple-choice filters read lists from it.
    params = QueryDict(urlencode({k: v for k, v in case.params.items() if k != "sort"}))
    with tenant_scope(tenant_id):
        filterset = LeadFilter(data=params, queryset=selectors.lead_list())
        if not filterset.is_valid():
            raise SystemExit(f"case {case.key}: {filterset.errors}")
        queryset = filterset.qs
        ordering = [f"-{f}" if descending else f for f in fields]
        matching = queryset.order_by().count()
        depth = min(depth, matching // 2)
        if depth < PAGE_SIZE:
            return None
        rows = list(queryset.order_by(*ordering).values_list(*fields)[depth - 1 : depth + 1])
    row = SimpleNamespace(**dict(zip(fields, rows[0], strict=True)))
    return pagination._encode(row, fields, backwards=False), depth, rows[1][-1]


def explain(tenant_id: int, path: str, headers: dict[str, str]) -> tuple[str, str]:
    """(SQL, EXPLAIN ANALYZE plan) of the view's lead query for this request, run as
    the app role in the tenant's scope."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.tenancy import tenant_scope

    client = Client(HTTP_HOST="127.0.0.1")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, HTTP_AUTHORIZATION=headers["Authorization"])
    if response.status_code != 200:
        return "", f"HTTP {response.status_code}"
    lead_queries = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and 'FROM "leads_lead"' in q["sql"] and "LIMIT" in q["sql"]
    ]
    if not lead_queries:
        return "", "no lead query captured"
    query = lead_queries[0]
    with tenant_scope(tenant_id), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + query)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    return query, plan


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
        with connection.cursor() as cursor:
            cursor.execute(query, params or [])
            return cursor.fetchall()

    lead_count = sql("SELECT count(*) FROM leads_lead WHERE tenant_id = %s", [tenant_id])[0][0]
    all_cases = cases(tenant_id, sql)
    if args.only:
        wanted = args.only.split(",")
        all_cases = [c for c in all_cases if c.key in wanted]
    issued = api_key_create(
        tenant_id=tenant_id,
        name="bench.lead_list",
        scope=APIKey.Scope.READ,
        role="marketing",
        origin=SYSTEM,
    )
    auth = {"Authorization": f"Api-Key {issued.raw_key}"}
    api = f"/api/v1/t/{slug}/leads/"
    eps: dict[str, Endpoint] = {}
    deep: dict[str, dict] = {}
    for case in all_cases:
        query = {**case.params, "page_size": str(PAGE_SIZE)}
        first = f"{api}?{urlencode(query)}"
        eps[f"{case.key}:first"] = Endpoint(f"{case.key}:first", case.label, "GET", [first], auth)
        found = deep_cursor(tenant_id, case, args.depth)
        if found is None:
            continue
        cursor, depth, first_deep_id = found
        deep[case.key] = {"depth": depth, "first_id": first_deep_id}
        eps[f"{case.key}:deep"] = Endpoint(
            f"{case.key}:deep",
            case.label,
            "GET",
            [f"{api}?{urlencode({**query, 'cursor': cursor})}"],
            auth,
        )
    connections.close_all()
    print(
        f"bench.lead_list: database {database_name(database_url)}, tenant {slug} "
        f"({lead_count:,} leads), gunicorn {WORKERS} {WORKER_CLASS} workers, wrk 1 thread x "
        f"{args.connections} connections, {args.rounds} round(s) x {args.duration}s per page, "
        f"page size {PAGE_SIZE}, deep page after {args.depth:,} rows (or half the matches), "
        f"{os.cpu_count()} CPUs"
    )

    server = Server(env, free_port(), RESULTS / "lead_list.gunicorn.log")
    rounds: dict[str, list[Measure]] = {key: [] for key in eps}
    problems: list[str] = []
    try:
        server.wait_ready("/api/v1/")
        for key, endpoint in eps.items():
            status, body = fetch(server.base, endpoint)
            if status != 200 or not isinstance(body, dict):
                problems.append(f"{key}: HTTP {status} {body}")
                continue
            results = body["results"]
            case_key, page = key.split(":")
            if page == "first" and not results:
                problems.append(f"{key}: empty first page")
            if page == "deep":
                expected = deep[case_key]["first_id"]
                if not results or results[0]["id"] != expected:
                    got = results[0]["id"] if results else None
                    problems.append(f"{key}: deep page starts at {got}, expected {expected}")
            if page == "first" and body.get("next"):
                # Following `next` once gives the rows right after the first page.
                status, following = fetch(server.base, endpoint, path=_path(body["next"]))
                if status != 200 or {r["id"] for r in following["results"]} & {
                    r["id"] for r in results
                }:
                    problems.append(f"{key}: the next page repeats rows or fails ({status})")
        if problems:
            print("FAILED before measuring:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        for n in range(args.rounds):
            for case in all_cases:
                pair = [k for k in (f"{case.key}:first", f"{case.key}:deep") if k in eps]
                for key in interleave(pair, n):
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
    print()
    print(
        f"{'case':<28} {'page':<5} {'rows in':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7}"
        f" {'p99 ms':>7} {'errors':>6}"
    )
    for key, endpoint in eps.items():
        s = summary[key]
        case_key, page = key.split(":")
        offset = deep[case_key]["depth"] if page == "deep" else 0
        errors = s["errors"] + s["non_2xx"]
        print(
            f"{endpoint.label:<28} {page:<5} {offset:>8,} {s['rps']:>7.1f} {s['p50_ms']:>7.1f}"
            f" {s['p95_ms']:>7.1f} {s['p99_ms']:>7.1f} {errors:>6}"
        )
    worst_key = max(summary, key=lambda k: summary[k]["p95_ms"])
    worst = summary[worst_key]["p95_ms"]
    verdict = "PASS" if worst < TARGET_P95_MS else "FAIL"
    firsts = [s["p95_ms"] for k, s in summary.items() if k.endswith(":first")]
    deeps = [s["p95_ms"] for k, s in summary.items() if k.endswith(":deep")]
    print()
    print(
        f"p95 worst case = {worst:.1f} ms ({worst_key})  {verdict}"
        f" (target < {TARGET_P95_MS:.0f} ms)"
    )
    print(
        f"      worst first page p95 = {max(firsts):.1f} ms,"
        f" worst deep page p95 = {max(deeps, default=0):.1f} ms"
    )

    plans = {}
    if args.explain != "none":
        explained = list(eps) if args.explain == "all" else [worst_key]
        for key in explained:
            query, plan = explain(tenant_id, eps[key].paths[0], auth)
            plans[key] = {"sql": query, "plan": plan}
            print(f"\nEXPLAIN ANALYZE, {eps[key].label} ({key.split(':')[1]} page):\n{plan}")
    APIKey._base_manager.filter(prefix=issued.api_key.prefix).delete()

    report = {
        "benchmark": "lead_list",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {
            "database": database_name(database_url),
            "tenant": slug,
            "leads": lead_count,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "workers": WORKERS,
            "page_size": PAGE_SIZE,
            "depth": args.depth,
            "tiny": args.tiny,
        },
        "cases": {c.key: {"label": c.label, "params": c.params} for c in all_cases},
        "deep": deep,
        "median": summary,
        "worst": {"key": worst_key, "p95_ms": worst},
        "target_p95_ms": TARGET_P95_MS,
        "pass": worst < TARGET_P95_MS,
        "plans": plans,
        "rounds": {k: [asdict(m) for m in ms] for k, ms in rounds.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    path = write_results("lead_list", report)
    print(f"\nresults: bench/results/{path.name}")
    failed = [k for k, s in summary.items() if s["errors"] or s["non_2xx"]]
    if failed:
        print(f"FAILED: errors or non-2xx answers in {failed}", file=sys.stderr)
        return 1
    return 0


def _path(url: str) -> str:
    """The path and query of an absolute URL the API gave."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


if __name__ == "__main__":
    sys.exit(main())
