"""Hosted-form submission benchmark: visitors posting a capture form
(`POST /api/public/forms/<key>/submit/`, JSON, a fresh email each time) against a bare
Django view that stores the same body as one row, measured in the same run.

    uv run python -m bench.form_submit [--duration S] [--connections N] [--rounds R]
        [--database-url URL] [--tenant SLUG] [--keep] [--tiny]

Runs on the generated tenant (bench.generate), so each submission matches companies and
writes leads among 1,000,000 others. A form with a campaign and a consent box is made
for the run; every submission creates a lead, a transition, a campaign membership, a
form_submission activity, consent and a visitor. The per-IP rate limit is off (one
machine is one address); the per-form limit stays in the path, set out of reach.
Every wrk run is checked against the table (one submission row per answered
request). The rows written are deleted at the end (--keep keeps them). Prints req/s,
p50 and p99 (medians over the rounds), queries per submission, and PASS/FAIL for
"at least a third of the bare view's throughput" (never the exit status).
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

TARGET_RATIO = 1 / 3
BODIES = 40
FIELDS = [
    {"name": "email", "label": "メールアドレス", "type": "email", "required": True,
     "maps_to": "lead.email"},
    {"name": "sei", "label": "姓", "type": "text", "required": True, "maps_to": "lead.family_name"},
    {"name": "mei", "label": "名", "type": "text", "maps_to": "lead.given_name"},
    {"name": "company", "label": "会社名", "type": "text", "maps_to": "lead.company_name"},
    {"name": "tel", "label": "電話番号", "type": "tel", "maps_to": "lead.phone"},
    {"name": "pref", "label": "都道府県", "type": "select", "maps_to": "lead.prefecture"},
    {"name": "message", "label": "お問い合わせ内容", "type": "textarea"},
]  # fmt: skip
FAMILY = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"]
GIVEN = ["太郎", "花子", "翔太", "美咲", "大輔", "陽子", "健一", "由美", "直樹", "恵"]
#: Server settings of the run: see the module docstring.
RATE_ENV = {"LEADS_CAPTURE_RATE_PER_IP": "", "LEADS_CAPTURE_RATE_PER_FORM": "1000000/s"}


def make_bodies(companies: list[tuple[str, str]], seed: int) -> list[str]:
    """Submissions as the embed script sends them. "{{n}}" in the email is made unique
    per request by the wrk script; most addresses are at a company's domain (the lead
    joins that company), a few are free mail with the company's name typed in."""
    rng = random.Random(seed)
    bodies = []
    for index in range(BODIES):
        name, domain = rng.choice(companies)
        free = index % 8 == 0 or not domain
        body = {
            "email": f"bench.{{{{n}}}}@{'gmail.com' if free else domain}",
            "sei": rng.choice(FAMILY),
            "mei": rng.choice(GIVEN),
            "company": name,
            "tel": f"03-{rng.randrange(1000, 9999)}-{rng.randrange(1000, 9999)}",
            "pref": "13",
            "message": "資料を送ってください。",
            "consent": "on",
            "page_url": "https://www.example.co.jp/whitepaper?utm_source=google&utm_medium=cpc"
            "&utm_campaign=dx2025",
            "referrer": "https://www.google.com/",
            # A first-time visitor: the embed script's key, unique per request too.
            "visitor_key": "bv-{{n}}",
        }
        bodies.append(json.dumps(body, ensure_ascii=False))
    return bodies


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return load_run_args("python -m bench.form_submit", __doc__, argv)


#: What a run writes, in the order it is deleted (children first), with the column
#: that ties a row to the run: rows past the marks taken before the run.
CLEANUP = [
    ("leads_activity", "lead_id", "leads_lead"),
    ("leads_activity", "visitor_id", "leads_visitor"),
    ("leads_lifecycletransition", "lead_id", "leads_lead"),
    ("leads_consentevent", "lead_id", "leads_lead"),
    ("leads_leadtag", "lead_id", "leads_lead"),
    ("campaigns_campaignmembership", "lead_id", "leads_lead"),
    ("leads_formsubmission", "id", "leads_formsubmission"),
    ("leads_visitor", "id", "leads_visitor"),
    ("leads_lead", "id", "leads_lead"),
    ("leads_company", "id", "leads_company"),
    ("accounts_domainevent", "id", "accounts_domainevent"),
]


def _purge_event_tasks() -> None:
    """The outbox dispatch tasks the run queued (no worker runs during a benchmark)
    name events that are gone now: drop them from the broker's default queue."""
    from accounts.events import forget_signals
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(app.conf.task_default_queue)
        forget_signals()
    except Exception as exc:
        print(f"could not purge the task queue: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    started = time.monotonic()
    database_url = data_database_url(tiny=args.tiny, given=args.database_url)
    env = setup_django(database_url, RATE_ENV)
    from django.db import connection, connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.models import Tenant
    from accounts.services import SYSTEM
    from leads.capture.services import capture_form_create

    tenant_id = ensure_data_tenant(args.tenant, tiny=args.tiny, database_url=database_url)
    slug = Tenant.objects.get(pk=tenant_id).slug

    def sql(query: str, params: list | None = None) -> list[tuple]:
        # The benchmark's own bookkeeping, as the connecting superuser (no RLS).
        with connection.cursor() as cursor:
            cursor.execute(query, params or [])
            return cursor.fetchall() if cursor.description else []

    def max_id(table: str) -> int:
        return sql(f"SELECT coalesce(max(id), 0) FROM {table}")[0][0]

    companies = sql(
        "SELECT name, domain FROM leads_company WHERE tenant_id = %s AND domain <> ''"
        " ORDER BY id LIMIT 200",
        [tenant_id],
    )
    (campaign_id,) = sql(
        "SELECT id FROM campaigns_campaign WHERE tenant_id = %s ORDER BY id LIMIT 1", [tenant_id]
    )[0]
    some_lead = sql("SELECT min(id) FROM leads_lead WHERE tenant_id = %s", [tenant_id])[0][0]
    marks = {table: max_id(table) for _t, _c, table in CLEANUP}
    form = capture_form_create(
        tenant_id=tenant_id,
        origin=SYSTEM,
        name="bench.form_submit",
        fields=FIELDS,
        campaign_id=campaign_id,
        consent_text="メールでのご案内に同意します",
        thank_you_message="ありがとうございました。",
    )
    bodies_file = RESULTS / "form_submit.bodies.jsonl"
    RESULTS.mkdir(exist_ok=True)
    bodies_file.write_text("\n".join(make_bodies(companies, seed=1)) + "\n")

    # Queries per submission, in-process (the server runs the same code).
    os.environ.update(RATE_ENV)
    client = Client(HTTP_HOST="127.0.0.1")
    submit_path = f"/api/public/forms/{form.key}/submit/"
    query_counts = []
    for n in range(3):
        body = bodies_file.read_text().splitlines()[n].replace("{{n}}", f"q{n}x{time.time_ns()}")
        with CaptureQueriesContext(connection) as queries:
            client.post(submit_path, body, content_type="application/json")
        query_counts.append(len(queries.captured_queries))
    connections.close_all()

    eps = {
        e.key: e
        for e in [
            Endpoint("stack", "form submit (public)", "POST", [submit_path],
                     bodies_file=bodies_file, unique=True),
            Endpoint("bare", "bare view, one INSERT", "POST",
                     [f"/bench/bare/forms/{form.id}/?tenant={tenant_id}&lead={some_lead}"],
                     bodies_file=bodies_file, unique=True),
        ]
    }  # fmt: skip
    print(
        f"bench.form_submit: database {database_name(database_url)}, tenant {slug}, form "
        f"{form.key} (campaign {campaign_id}, consent box), gunicorn {WORKERS} {WORKER_CLASS} "
        f"workers, wrk 1 thread x {args.connections} connections, {args.rounds} round(s) x "
        f"{args.duration}s, {os.cpu_count()} CPUs; queries per submission (warm): "
        f"{query_counts[-1]}"
    )

    server = Server(env, free_port(), RESULTS / "form_submit.gunicorn.log")
    rounds: dict[str, list[Measure]] = {key: [] for key in eps}
    problems: list[str] = []

    def measure(key: str, duration: int) -> Measure:
        mark = max_id("leads_formsubmission")
        result = run_wrk(server.base, eps[key], duration=duration, connections=args.connections)
        time.sleep(0.2)  # requests in flight when wrk stopped still commit
        rows = sql(
            "SELECT count(*) FROM leads_formsubmission WHERE id > %s AND form_id = %s",
            [mark, form.id],
        )[0][0]
        connections.close_all()
        if not result.requests <= rows <= result.requests + args.connections:
            problems.append(f"{key}: {rows} submissions stored for {result.requests} requests")
        return result

    try:
        server.wait_ready("/api/v1/")
        for key, endpoint in eps.items():
            status, body = fetch(server.base, endpoint)
            if status != 200 or not isinstance(body, dict) or body.get("ok") is not True:
                problems.append(f"{key}: HTTP {status} {body}")
        if problems:
            print("FAILED before measuring:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        if not args.tiny:
            for key in eps:
                measure(key, 1)  # warm-up
        for n in range(args.rounds):
            for key in interleave(list(eps), n):
                rounds[key].append(measure(key, args.duration))
    finally:
        server.stop()
        if not args.keep:
            deleted = 0
            with connection.cursor() as cursor:
                for table, column, marked in CLEANUP:
                    tenant_column = "tenant_id"
                    cursor.execute(
                        f"DELETE FROM {table} WHERE {tenant_column} = %s AND {column} > %s",
                        [tenant_id, marks[marked]],
                    )
                    deleted += cursor.rowcount
                cursor.execute("DELETE FROM leads_captureform WHERE id = %s", [form.id])
            print(f"deleted the {deleted:,} rows written by the run, and its form")
            vacuum(sorted({table for table, _column, _marked in CLEANUP}))
            _purge_event_tasks()

    summary = summarize(rounds)
    print()
    print(
        f"{'endpoint':<24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9} {'errors':>7}"
    )
    for key, endpoint in eps.items():
        s = summary[key]
        errors = s["errors"] + s["non_2xx"]
        print(
            f"{endpoint.label:<24} {s['rps']:>8.1f} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f}"
            f" {s['requests']:>9} {errors:>7}"
        )
    share = ratio(summary, "stack", "bare")
    verdict = "PASS" if share >= TARGET_RATIO else "FAIL"
    print()
    print(f"ratio form submit / bare req/s = {share:.2f}  {verdict} (target >= 0.33)")
    print(f"      queries per submission = {query_counts[-1]} (first: {query_counts[0]})")
    print(f"      one stored submission per answered request: {'yes' if not problems else 'NO'}")

    report = {
        "benchmark": "form_submit",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {
            "database": database_name(database_url),
            "tenant": slug,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "workers": WORKERS,
            "tiny": args.tiny,
            "rate_settings": RATE_ENV,
        },
        "median": summary,
        "ratio_stack_bare": share,
        "target_ratio": round(TARGET_RATIO, 3),
        "pass": share >= TARGET_RATIO,
        "queries_per_submission": query_counts,
        "rounds": {k: [asdict(m) for m in ms] for k, ms in rounds.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    path = write_results("form_submit", report)
    print(f"\nresults: bench/results/{path.name}")
    failed = [k for k, s in summary.items() if s["errors"] or s["non_2xx"]]
    if failed or problems:
        print(f"FAILED: {problems or ''} errors or non-2xx answers in {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
