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
