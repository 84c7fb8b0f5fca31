"""CI runs every benchmark at a tiny size so its code cannot rot (see bench/README.md).

Select with `pytest -m bench`. The smoke run uses a database of its own (DATABASE_URL's
name + "_bench_smoke") and a server of its own, so it needs no pytest database.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings

from tests.fixtures import IN_CI

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.bench


def test_api_stack_benchmark_runs_at_tiny_size():
    if shutil.which("wrk") is None:
        if IN_CI:
            pytest.fail("CI needs wrk (apt-get install wrk) for the benchmark smoke run")
        pytest.skip("wrk is not installed")
    # The benchmark empties and reseeds its database: give the smoke run one of its own,
    # named after this run's database, so it never pulls the rug from under a real
    # benchmark run on <name>_bench. It sets its own profile: the test settings' stay out.
    skip = {"DJANGO_SETTINGS_MODULE", "RYORIN_ENV", "CELERY_TASK_ALWAYS_EAGER"}
    env = {name: value for name, value in os.environ.items() if name not in skip}
    parts = urlsplit(os.environ["DATABASE_URL"])
    env["DATABASE_URL"] = urlunsplit(parts._replace(path=f"{parts.path}_bench_smoke"))
    env["REDIS_URL"] = settings.REDIS_URL or ""
    result = subprocess.run(
        [sys.executable, "-m", "bench.api_stack", "--tiny"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The figures table: one row per endpoint with req/s, p50 and p99, then the ratios.
    for label in ("read  stack (API key)", "read  bare", "write stack (API key)", "write bare"):
        row = re.search(
            rf"^{re.escape(label)}\s+(\d+\.\d)\s+(\d+\.\d\d)\s+(\d+\.\d\d)", output, re.M
        )
        assert row, f"no figures for {label!r}:\n{output}"
        assert float(row.group(1)) > 0, output
    assert re.search(r"^ratio read\s+stack/bare req/s = \d+\.\d\d\s+(PASS|FAIL)", output, re.M)
    assert re.search(r"^ratio write\s+stack/bare req/s = \d+\.\d\d\s+(PASS|FAIL)", output, re.M)
    assert (ROOT / "bench" / "results" / "api_stack.json").exists()


def _generate_tiny(env: dict[str, str], *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bench.generate", "--tiny", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_data_generator_runs_at_tiny_size():
    # A database of its own (<name>_gen_smoke): the generator empties the tenant it fills.
    skip = {"DJANGO_SETTINGS_MODULE", "RYORIN_ENV", "CELERY_TASK_ALWAYS_EAGER"}
    env = {name: value for name, value in os.environ.items() if name not in skip}
    parts = urlsplit(os.environ["DATABASE_URL"])
    env["DATABASE_URL"] = urlunsplit(parts._replace(path=f"{parts.path}_gen_smoke"))
    env["REDIS_URL"] = settings.REDIS_URL or ""
    args = ("--tenant", "gen-smoke", "--seed", "7", "--anchor", "2025-06-30")
    first = _generate_tiny(env, *args)
    # The ORM, as the app role inside tenant_scope, sees exactly the rows asked for.
    assert re.search(r"ORM check as ryorin_app inside tenant_scope", first), first
    assert re.search(r"^\s+leads\s+2,000$", first, re.M), first
    assert re.search(r"^\s+activities\s+20,000$", first, re.M), first
    for table in ("leads_lead", "leads_activity", "leads_company", "campaigns_campaignmembership"):
        row = re.search(rf"^\s+{table}\s+([\d,]+) rows .* rows/s$", first, re.M)
        assert row, first
        assert int(row.group(1).replace(",", "")) > 0, first
    # A funnel: more leads than MQLs than customers.
    stages = {
        m.group(1): int(m.group(2).replace(",", ""))
        for m in re.finditer(r"^\s+(lead|mql|customer)\s+([\d,]+)\s", first, re.M)
    }
    assert stages["lead"] > stages["mql"] > stages["customer"] > 0, first
    # Same seed and anchor: the same data, and the rerun reuses (and empties) the tenant.
    second = _generate_tiny(env, *args)
    assert "emptied the tenant's old data" in second, second

    def examples(output: str) -> str:
        return output.split("  examples:")[1].split("  table sizes")[0]

    assert examples(first) == examples(second)


def _bench_env(suffix: str) -> dict[str, str]:
    """This process's environment for a benchmark subprocess: its own settings, this
    run's Redis db, and a database of its own named <DATABASE_URL name><suffix>."""
    skip = {"DJANGO_SETTINGS_MODULE", "RYORIN_ENV", "CELERY_TASK_ALWAYS_EAGER"}
    env = {name: value for name, value in os.environ.items() if name not in skip}
    parts = urlsplit(os.environ["DATABASE_URL"])
    env["DATABASE_URL"] = urlunsplit(parts._replace(path=f"{parts.path}{suffix}"))
    env["REDIS_URL"] = settings.REDIS_URL or ""
    env.pop("BENCH_DATA_URL", None)
    return env


def _data_bench_env() -> dict[str, str]:
    """The lead benchmarks' smoke runs share one database of their own
    (<name>_bench3_smoke): the first run generates a tiny tenant there, the others
    reuse it; each run deletes what it wrote."""
    return _bench_env("_bench3_smoke")


def _run_module(module: str, env: dict[str, str]) -> str:
    """`python -m <module> --tiny`: its output, which it must end with exit status 0."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--tiny"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _run_tiny(module: str) -> str:
    if shutil.which("wrk") is None:
        if IN_CI:
            pytest.fail("CI needs wrk (apt-get install wrk) for the benchmark smoke run")
        pytest.skip("wrk is not installed")
    return _run_module(module, _data_bench_env())


def _figures(label: str, output: str) -> list[float]:
    row = re.search(rf"^{re.escape(label)}\s+([\d,.]+)\s+([\d.]+)\s+([\d.]+)", output, re.M)
    assert row, f"no figures for {label!r}:\n{output}"
    return [float(value.replace(",", "")) for value in row.groups()]


def test_activity_ingest_benchmark_runs_at_tiny_size():
    output = _run_tiny("bench.activity_ingest")
    # activities/s, req/s and p50 of the batch API and of the bare view.
    assert _figures("batch API (API key)", output)[0] > 0, output
    assert _figures("bare view, one INSERT", output)[0] > 0, output
    assert re.search(r"^activities/s through the batch API = [\d,]+\s+(PASS|FAIL)", output, re.M), (
        output
    )
    # Every wrk run was checked against the table, and the run cleaned up after itself.
    assert "rows landed = answered requests x 1000 in every run: yes" in output, output
    assert re.search(r"^deleted the [\d,]+ activities written by the run", output, re.M), output
    assert (ROOT / "bench" / "results" / "activity_ingest.json").exists()


def test_form_submit_benchmark_runs_at_tiny_size():
    output = _run_tiny("bench.form_submit")
    assert _figures("form submit (public)", output)[0] > 0, output
    assert _figures("bare view, one INSERT", output)[0] > 0, output
    assert re.search(r"^ratio form submit / bare req/s = \d+\.\d\d\s+(PASS|FAIL)", output, re.M)
    queries = re.search(r"queries per submission = (\d+)", output)
    assert queries, output
    assert int(queries.group(1)) > 5, output
    assert "one stored submission per answered request: yes" in output, output
    assert re.search(r"^deleted the [\d,]+ rows written by the run", output, re.M), output


def test_lead_list_benchmark_runs_at_tiny_size():
    output = _run_tiny("bench.lead_list")
    for label in ("no filter", "stage=mql"):
        for page in ("first", "deep"):
            row = re.search(
                rf"^{re.escape(label)}\s+{page}\s+[\d,]+\s+([\d.]+)\s+[\d.]+\s+([\d.]+)",
                output,
                re.M,
            )
            assert row, f"no figures for {label} {page}:\n{output}"
            assert float(row.group(1)) > 0, output
            assert float(row.group(2)) > 0, output
    assert re.search(r"^p95 worst case = [\d.]+ ms \(\S+\)\s+(PASS|FAIL)", output, re.M), output
    # The slowest case's plan, as the app role under row-level security.
    assert "EXPLAIN ANALYZE" in output, output
    assert "Execution Time" in output, output


def test_import_benchmark_runs_at_tiny_size():
    # Databases of its own (<name>_import_smoke_bench and its per-round copy): the
    # benchmark reseeds its tenant and clones the database for every round.
    output = _run_module("bench.import_leads", _bench_env("_import_smoke"))
    copy = re.search(r"^COPY \(unindexed table\)\s+(\d+\.\d\d) s\s+([\d,]+) rows/s", output, re.M)
    job = re.search(r"^import job\s+(\d+\.\d\d) s\s+([\d,]+) rows/s", output, re.M)
    assert copy, output
    assert job, output
    assert int(job.group(2).replace(",", "")) > 0, output
    assert re.search(r"^import rows/s = [\d,]+\s+(PASS|FAIL)", output, re.M), output
    assert re.search(r"^import/COPY time = \d+\.\d\dx\s+(PASS|FAIL)", output, re.M), output
    # The job really imported the file: created leads, memberships, activities, consent.
    summary = re.search(r"job: ([\d,]+) created, .* ([\d,]+) activities", output)
    assert summary, output
    assert int(summary.group(1).replace(",", "")) > 1000, output


def test_scoring_benchmark_runs_at_tiny_size():
    output = _run_module("bench.scoring", _data_bench_env())
    # The service's totals were checked against the hand-written statement's.
    assert re.search(r"round 1: statement .* totals match", output), output
    assert re.search(r"^full recompute = \d+\.\d\d s\s+(PASS|FAIL)", output, re.M), output
    assert re.search(r"^recompute/statement = \d+\.\d\dx\s+(PASS|FAIL)", output, re.M), output
    assert (ROOT / "bench" / "results" / "scoring.json").exists()


def test_incremental_scoring_benchmark_runs_at_tiny_size():
    output = _run_module("bench.scoring_incremental", _data_bench_env())
    # A real worker scored every lead the run's activities touched and moved it to MQL.
    assert re.search(r"^batch API: 200 activities in", output, re.M), output
    assert re.search(
        r"^every lead scored and MQL \d+\.\d\d s after the last answer\s+(PASS|FAIL)", output, re.M
    ), output
    assert (ROOT / "bench" / "results" / "scoring_incremental.json").exists()


def test_webhooks_benchmark_runs_at_tiny_size():
    # A database of its own (<name>_webhooks_smoke_bench): the benchmark empties its tenant.
    # Its Celery workers use this run's Redis db and its default queue; it purges that
    # queue first, so it must not share the db with another worker.
    output = _run_module("bench.webhooks", _bench_env("_webhooks_smoke"))
    stack = re.search(r"^stack \(median\)\s+([\d.]+) deliveries/s", output, re.M)
    bare = re.search(r"^bare HTTP \(median\)\s+([\d.]+) posts/s", output, re.M)
    assert stack, output
    assert bare, output
    assert float(stack.group(1)) > 0, output
    assert re.search(r"^target >= 200 deliveries/s: [\d.]+\s+(PASS|FAIL)", output, re.M), output
    assert re.search(r"^ratio stack/bare = \d+\.\d\d", output, re.M), output
    # Nothing lost through the outage: every delivery id acknowledged, none gave up.
    lost = re.search(r"^outage deliveries acknowledged (\d+)/(\d+), lost 0; .*PASS$", output, re.M)
    assert lost, output
    assert lost.group(1) == lost.group(2), output


def test_nurture_benchmark_runs_at_tiny_size():
    # A database of its own (<name>_nurture_smoke_bench): the benchmark resets its tenants.
    # Its Celery workers use this run's Redis db and its default queue (purged first).
    output = _run_module("bench.nurture", _bench_env("_nurture_smoke"))
    stack = re.search(r"^stack \(median\)\s+([\d.]+) mails/s", output, re.M)
    bare = re.search(r"^bare smtplib \(median\)\s+([\d.]+) mails/s", output, re.M)
    assert stack, output
    assert bare, output
    assert float(stack.group(1)) > 0, output
    assert re.search(r"^target >= 500 mails/s: [\d.]+\s+(PASS|FAIL)", output, re.M), output
    assert re.search(r"^ratio stack/bare = \d+\.\d\d", output, re.M), output
    # Every enrolment mailed once, and the claim read through the partial index.
    assert re.search(r"^outgoing rows sent (\d+) for \1 enrolments PASS$", output, re.M), output
    assert re.search(r"^claim uses enrolment_due_idx: PASS", output, re.M), output
