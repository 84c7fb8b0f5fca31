"""Import benchmark: a realistic 100,000-row trade-show list imported end to end through
the real job, against PostgreSQL's COPY of the same file into an unindexed table,
measured in the same run.

    uv run python -m bench.import_leads [--rows N] [--rounds R] [--reseed] [--tiny]

Seeds (once; --reseed to redo) a tenant with existing leads, companies and campaigns
(bench.generate) in `<DATABASE_URL name>_bench`, writes a CP932 CSV as a Japanese
spreadsheet exports it (names and kana, company names in every legal-form spelling,
法人番号 on some rows, ~10 % of the emails already leads of the tenant, phones as people
type them, prefectures, ~1 % bad rows), then per round, on a fresh copy of the seeded
database (CREATE DATABASE … TEMPLATE, so every round starts from the same state):

  (a) COPY of the file (FORMAT csv, ENCODING 'SJIS') into an unindexed table, committed;
  (b) the import job: upload (format and encoding detection, header, mapping), then the
      Celery task's body (read, validate, dedupe, company matching, lead upsert,
      transitions, campaign membership, activities, consent), committed.

Prints each round, the medians, rows/s of the job and its ratio to COPY, PASS/FAIL for
the targets (>= 25,000 rows/s, within 8x of COPY), and the engine's per-step timings of
the median round. See bench/README.md.
"""

import argparse
import csv
import io
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.data import words

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/ryorin_bench"
TENANT = "import-bench"
TARGET_ROWS_PER_S = 25_000
TARGET_COPY_RATIO = 8.0
SHOW_DAYS = ["2025/06/25", "2025/06/26", "2025/06/27"]
HEADER = [
    "来場日", "受付番号", "会社名", "法人番号", "部署名", "役職", "氏名", "フリガナ",
    "メールアドレス", "電話番号", "都道府県", "業種", "会社URL", "アンケート回答",
]  # fmt: skip
EXPECTED_MAPPING = {
    "来場日": "activity.occurred_at",
    "会社名": "lead.company_name",
    "法人番号": "lead.corporate_number",
    "部署名": "lead.department",
    "役職": "lead.job_title",
    "氏名": "lead.full_name",
    "フリガナ": "lead.full_name_kana",
    "メールアドレス": "lead.email",
    "電話番号": "lead.phone",
    "都道府県": "lead.prefecture",
    "業種": "lead.industry",
    "会社URL": "lead.company_domain",
}
# The job's steps that are single SQL statements writing rows (no Python between them):
# what the database alone spends on the writes the import must make.
WRITE_STEPS = (
    "insert_leads", "update_leads", "transitions", "tags", "campaign", "activities", "consent",
    "commit and the rest",
)  # fmt: skip
SURVEY = ["資料希望", "デモ希望", "情報収集", "予算あり", "半年以内に導入検討", "", "", ""]


@dataclass(frozen=True)
class Size:
    rows: int
    seed_leads: int
    seed_companies: int
    seed_activities: int
    rounds: int


DEFAULT = Size(rows=100_000, seed_leads=100_000, seed_companies=10_000,
               seed_activities=300_000, rounds=3)  # fmt: skip
TINY = Size(rows=2_000, seed_leads=2_000, seed_companies=300, seed_activities=4_000, rounds=1)


# --- Databases ------------------------------------------------------------------------------


def bench_database_url() -> str:
    """DATABASE_URL's database with "_bench" appended unless it is already named so: the
    benchmark empties and reseeds its tenant there."""
    parts = urlsplit(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    name = parts.path.lstrip("/") or "ryorin"
    if "bench" not in name:
        name = f"{name}_bench"
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin(url: str):
    import psycopg

    return psycopg.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")), autocommit=True)


def ensure_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with _admin(url) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def clone_database(template_url: str, name: str) -> None:
    """A fresh copy of the seeded database for one round (FILE_COPY: a checkpoint and a
    file copy, faster than WAL-logging every page for a database this size)."""
    template = urlsplit(template_url).path.lstrip("/")
    with _admin(template_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')


def drop_database(url: str, name: str) -> None:
    with _admin(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def use_database(name: str) -> None:
    """Point Django's default connection at another database of the same server."""
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = name


# --- Seeding ----------------------------------------------------------------------------------


def seed(size: Size, reseed: bool) -> int:
    """The tenant with existing leads and companies (bench.generate); returns its id.
    Skipped when the seeded database already holds that many leads for the tenant."""
    from django.db import connection

    from accounts.models import Tenant
    from accounts.tenancy import tenant_scope
    from bench import generate as g
    from leads.models import Lead

    tenant = Tenant.objects.filter(slug=TENANT).first()
    if tenant is not None and not reseed:
        with tenant_scope(tenant.id):
            if Lead.objects.count() == size.seed_leads:
                print(f"  seed: reusing tenant {TENANT!r} ({size.seed_leads:,} leads)")
                return tenant.id
    started = time.monotonic()
    gsize = g.Size(leads=size.seed_leads, activities=size.seed_activities,
                   companies=size.seed_companies, campaigns=20, members=8)  # fmt: skip
    team = g.ensure_tenant(TENANT, gsize.members)
    anchor = datetime(2025, 6, 1, tzinfo=UTC)
    g.TODAY_PARAM[0] = date(2025, 6, 1)
    report = g.Report()
    g.generate(team=team, size=gsize, seed=11, anchor=anchor, report=report)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"  seed: {size.seed_leads:,} leads generated in {time.monotonic() - started:.1f} s")
    return team.tenant_id


# --- The file -------------------------------------------------------------------------------


@dataclass
class FileFacts:
    rows: int = 0
    bad_rows: int = 0
    existing_emails: int = 0
    in_file_repeats: int = 0
    new_emails: set = field(default_factory=set)


_JA_FORMS = ["株式会社", "(株)", "㈱", "株式会社", "有限会社", "合同会社"]


def _variant(name: str, rng: random.Random) -> str:
    """How the same company shows up on a card: legal form in front or behind, (株),
    full-width letters."""
    for form in ("株式会社", "有限会社", "合同会社"):
        if name.startswith(form) or name.endswith(form):
            body = name.removeprefix(form).removesuffix(form)
            short = {"株式会社": "(株)", "有限会社": "(有)", "合同会社": "合同会社"}[form]
            return rng.choice([name, f"{body}{form}", f"{form} {body}", f"{short}{body}", name])
    if name.isascii() and rng.random() < 0.2:
        return name.upper()
    return name


def _phone(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:
        return f"090-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
    if kind < 0.85:
        return f"03-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
    if kind < 0.93:
        return f"6{rng.randint(10_000_000, 99_999_999)}"  # Excel dropped the 0 of 06-…
    digits = f"０４５－{rng.randint(100, 999)}－{rng.randint(1000, 9999)}"  # full width
    return digits.translate(str.maketrans("0123456789", "０１２３４５６７８９"))


def make_file(path: Path, size: Size, tenant_id: int, rng_seed: int = 5) -> FileFacts:
    """Write the CP932 CSV; returns what the import should find in it."""
    from django.db import connection

    from accounts.tenancy import tenant_scope
    from bench.generate import make_companies

    rng = random.Random(rng_seed)
    with tenant_scope(tenant_id), connection.cursor() as cursor:
        cursor.execute(
            "SELECT l.email, l.family_name, l.given_name, c.name, c.corporate_number, c.domain "
            "FROM leads_lead l LEFT JOIN leads_company c ON c.id = l.company_id "
            "WHERE l.email <> '' ORDER BY l.id"
        )
        existing_leads = cursor.fetchall()
        cursor.execute("SELECT name, corporate_number, domain, industry FROM leads_company")
        existing_companies = cursor.fetchall()
    new_companies = [
        (row[0], row[2], row[3], row[4])
        for row in make_companies(rng, max(20, size.rows // 8), datetime(2025, 6, 1, tzinfo=UTC))
    ]
    prefectures = [p[1] for p in words.PREFECTURES]
    titles = [t for t, _ in words.JOB_TITLES]
    departments = [d for d, _ in words.DEPARTMENTS]
    free = [d for d, _ in words.FREE_MAIL_DOMAINS]
    rng.shuffle(existing_leads)
    existing_iter = iter(existing_leads)
    facts = FileFacts()
    written: list[list[str]] = []
    used_emails: set[str] = set()
    for number in range(size.rows):
        family, family_kana, family_romaji = rng.choice(words.FAMILY_NAMES[:60])
        given, given_kana, given_romaji = rng.choice(words.GIVEN_NAMES)
        name, kana = f"{family} {given}", f"{family_kana} {given_kana}"
        draw = rng.random()
        if draw < 0.10 and (lead := next(existing_iter, None)):
            email, lfam, lgiv, cname, cnum, cdomain = lead
            name = f"{lfam} {lgiv}".strip() or name
            if rng.random() < 0.3:
                email = email.upper()
            cname = _variant(cname or "", rng)
            facts.existing_emails += 1
        else:
            if draw < 0.45 and existing_companies:
                cname, cnum, cdomain, _industry = rng.choice(existing_companies)
                cname = _variant(cname, rng)
            elif draw < 0.95:
                cname, cnum, cdomain, _industry = rng.choice(new_companies)
                cname = _variant(cname, rng)
            else:
                cname, cnum, cdomain = "", "", ""
            domain = cdomain if cdomain and rng.random() > 0.07 else rng.choice(free)
            local = rng.choice(
                [f"{given_romaji}.{family_romaji}", f"{given_romaji[0]}.{family_romaji}",
                 f"{family_romaji}_{given_romaji[0]}", f"{family_romaji}"]
            )  # fmt: skip
            email = f"{local}@{domain}"
            k = 2
            while email.lower() in used_emails:
                email, k = f"{local}{k}@{domain}", k + 1
        used_emails.add(email.lower())
        row = [
            rng.choice(SHOW_DAYS),
            f"R{number + 1:07d}",
            cname,
            cnum if cnum and rng.random() < 0.35 else "",
            rng.choice(departments),
            rng.choice(titles),
            name,
            kana if rng.random() < 0.8 else "",
            email,
            _phone(rng) if rng.random() < 0.9 else "",
            rng.choice(prefectures) if rng.random() < 0.85 else "",
            "",
            f"https://www.{cdomain}/" if cdomain and rng.random() < 0.2 else "",
            rng.choice(SURVEY),
        ]
        bad = rng.random() < 0.01
        if bad:
            column, value = rng.choice(
                [(8, email.split("@")[0] + "@"), (3, "1234567890123"), (3, "5.83568E+12"),
                 (9, "内線なし"), (10, "ムー大陸")]
            )  # fmt: skip
            row[column] = value
            facts.bad_rows += 1
        written.append(row)
        if not bad and rng.random() < 0.005:  # visited two days: the same person again
            again = list(row)
            again[0] = SHOW_DAYS[-1]
            written.append(again)
            facts.in_file_repeats += 1
    facts.rows = len(written)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")  # Excel's CSV
    writer.writerow(HEADER)
    writer.writerows(written)
    path.write_bytes(buffer.getvalue().encode("cp932"))
    return facts


# --- One round ----------------------------------------------------------------------------------


def measure_copy(path: Path) -> float:
    """COPY the file as it is into an unindexed table and commit: PostgreSQL's own speed
    for these bytes, parsing and encoding conversion included."""
    from django.db import connection, transaction

    columns = ", ".join(f"c{i} text" for i in range(len(HEADER)))
    data = path.read_bytes()
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_copy_target")
        cursor.execute(f"CREATE TABLE bench_copy_target ({columns})")
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        sql = "COPY bench_copy_target FROM STDIN (FORMAT csv, HEADER true, ENCODING 'SJIS')"
        with cursor.cursor.copy(sql) as copy:
            view = memoryview(data)
            for start in range(0, len(data), 1 << 20):
                copy.write(view[start : start + (1 << 20)])
    return time.perf_counter() - started


@dataclass
class Round:
    copy_s: float
    upload_s: float
    job_s: float
    summary: dict
    steps: dict


def run_import(path: Path, tenant_id: int, facts: FileFacts) -> tuple[float, float, dict, dict]:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from accounts.services import SYSTEM
    from accounts.tenancy import tenant_scope
    from campaigns.models import Campaign
    from leads.imports import services
    from leads.imports.tasks import run_import as task
    from leads.models import ImportJob

    with tenant_scope(tenant_id):
        campaign = Campaign.objects.filter(channel="trade_show").order_by("id").first()
    started = time.perf_counter()
    upload = SimpleUploadedFile("展示会来場者リスト.csv", path.read_bytes(), "text/csv")
    job = services.import_create(tenant_id=tenant_id, file=upload, origin=SYSTEM)
    job = services.import_configure(
        job=job,
        origin=SYSTEM,
        campaign_id=campaign.id if campaign else None,
        consent_basis="展示会ブースで名刺交換時に情報提供への同意を確認",
        consent_purposes=["email_marketing", "sales_contact"],
    )
    upload_s = time.perf_counter() - started
    wrong = {k: (job.mapping.get(k), v) for k, v in EXPECTED_MAPPING.items()
             if job.mapping.get(k) != v}  # fmt: skip
    if wrong:
        raise SystemExit(f"the suggested mapping is not the expected one: {wrong}")
    with tenant_scope(tenant_id):
        ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.QUEUED)
    started = time.perf_counter()
    task(tenant_id, job.id)  # the Celery task's body, in this process: its transaction
    job_s = time.perf_counter() - started
    with tenant_scope(tenant_id):
        job = ImportJob.objects.get(pk=job.pk)
    if job.status != ImportJob.Status.SUCCEEDED:
        raise SystemExit(f"the import failed: {job.failure}")
    summary = {
        **job.summary,
        "total_rows": job.total_rows,
        "created": job.created_count,
        "updated": job.updated_count,
        "skipped": job.skipped_count,
        "errors": job.error_count,
    }
    check(summary, facts, tenant_id, campaign.id if campaign else None)
    steps = dict(job.summary.get("steps", {}))
    steps["commit and the rest"] = round(job_s - job.summary.get("seconds", 0), 3)
    return upload_s, job_s, summary, steps


def check(summary: dict, facts: FileFacts, tenant_id: int, campaign_id: int | None) -> None:
    """The job did the real work: every good row imported, the bad ones reported."""
    from django.db import connection

    from accounts.tenancy import tenant_scope

    problems = []
    if summary["total_rows"] != facts.rows:
        problems.append(f"rows {summary['total_rows']} != {facts.rows}")
    if not facts.bad_rows * 0.9 <= summary["errors"] <= facts.bad_rows:
        problems.append(f"errors {summary['errors']} vs {facts.bad_rows} bad rows written")
    good = facts.rows - summary["errors"] - summary["merged_duplicates"]
    if summary["created"] + summary["updated"] + summary["skipped"] != good:
        problems.append(f"created+updated+skipped != {good}")
    if summary["activities"] != good:
        problems.append(f"activities {summary['activities']} != {good}")
    if campaign_id and summary["memberships"] < good * 0.9:
        problems.append(f"memberships {summary['memberships']} for {good} leads")
    with tenant_scope(tenant_id), connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM leads_lead WHERE source_channel = 'import' AND company_id IS "
            "NOT NULL"
        )
        with_company = cursor.fetchone()[0]
    if with_company < summary["created"] * 0.8:
        problems.append(f"only {with_company} of {summary['created']} new leads have a company")
    if problems:
        raise SystemExit("the import did not do what the file asks: " + "; ".join(problems))


# --- Entry point ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="rows in the file (default 100,000)")
    parser.add_argument("--rounds", type=int, help="rounds; figures are medians (default 3)")
    parser.add_argument("--reseed", action="store_true", help="generate the tenant again")
    parser.add_argument("--tiny", action="store_true", help="CI size: 2,000 rows, 1 round")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = TINY if args.tiny else DEFAULT
    size = Size(
        rows=args.rows or base.rows,
        seed_leads=base.seed_leads,
        seed_companies=base.seed_companies,
        seed_activities=base.seed_activities,
        rounds=args.rounds or base.rounds,
    )
    url = bench_database_url()
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    ensure_database(url)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    seed_name = urlsplit(url).path.lstrip("/")
    print(
        f"bench.import_leads: {size.rows:,} rows, {size.rounds} round(s), "
        f"database {seed_name} (seed) → {seed_name}_run"
    )
    call_command("migrate", interactive=False, verbosity=0)
    tenant_id = seed(size, args.reseed)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("import_leads_tiny.csv" if args.tiny else "import_leads.csv")
    started = time.monotonic()
    facts = make_file(path, size, tenant_id)
    print(
        f"  file: {path.name}, {facts.rows:,} rows, {path.stat().st_size / 1e6:.1f} MB CP932; "
        f"{facts.existing_emails:,} emails of existing leads, {facts.bad_rows:,} bad rows, "
        f"{facts.in_file_repeats:,} repeated people ({time.monotonic() - started:.1f} s)"
    )
    run_name = f"{seed_name}_run"
    settings.MEDIA_ROOT = tempfile.mkdtemp(prefix="import-bench-")
    rounds: list[Round] = []
    for number in range(1, size.rounds + 1):
        use_database("postgres")
        clone_database(url, run_name)
        use_database(run_name)
        try:
            copy_s = measure_copy(path)
            upload_s, job_s, summary, steps = run_import(path, tenant_id, facts)
        finally:
            use_database("postgres")
            drop_database(url, run_name)
        rounds.append(Round(copy_s, upload_s, job_s, summary, steps))
        print(
            f"  round {number}: COPY {copy_s:6.2f} s ({facts.rows / copy_s:9,.0f} rows/s)   "
            f"upload {upload_s:5.2f} s   job {job_s:6.2f} s ({facts.rows / job_s:9,.0f} rows/s)"
            f"   job/COPY {job_s / copy_s:5.2f}x"
        )
    use_database(seed_name)
    copy_s = statistics.median(r.copy_s for r in rounds)
    job_s = statistics.median(r.job_s for r in rounds)
    upload_s = statistics.median(r.upload_s for r in rounds)
    rate = facts.rows / job_s
    ratio = job_s / copy_s
    median_round = sorted(rounds, key=lambda r: r.job_s)[len(rounds) // 2]
    s = median_round.summary
    print(
        f"  job: {s['created']:,} created, {s['updated']:,} updated, {s['skipped']:,} skipped, "
        f"{s['errors']:,} rows with errors, {s['merged_duplicates']:,} repeats merged; "
        f"companies {s['companies_created']:,} created, {s['companies_matched']:,} matched; "
        f"{s['memberships']:,} memberships, {s['activities']:,} activities, "
        f"{s['consents']:,} consent events"
    )
    if median_round.steps:
        print("  job steps (median round): " + ", ".join(
            f"{name} {seconds:.2f}" for name, seconds in median_round.steps.items()
        ))  # fmt: skip
        writes_s = sum(median_round.steps.get(name, 0.0) for name in WRITE_STEPS)
        print(
            f"  SQL writes alone ({', '.join(WRITE_STEPS)}): {writes_s:.2f} s = "
            f"{writes_s / median_round.copy_s:.1f}x that round's COPY"
        )
    print(f"COPY (unindexed table)   {copy_s:8.2f} s  {facts.rows / copy_s:10,.0f} rows/s")
    print(f"upload (header, mapping) {upload_s:8.2f} s")
    print(f"import job               {job_s:8.2f} s  {rate:10,.0f} rows/s")
    print(
        f"import rows/s = {rate:,.0f}  {'PASS' if rate >= TARGET_ROWS_PER_S else 'FAIL'} "
        f"(target >= {TARGET_ROWS_PER_S:,})"
    )
    print(
        f"import/COPY time = {ratio:.2f}x  {'PASS' if ratio <= TARGET_COPY_RATIO else 'FAIL'} "
        f"(target <= {TARGET_COPY_RATIO:g}x)"
    )
    print(
        f"upload+job/COPY time = {(upload_s + job_s) / copy_s:.2f}x "
        f"({facts.rows / (upload_s + job_s):,.0f} rows/s, informative)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
