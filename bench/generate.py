"""Realistic tenant data generator: one tenant of a given size, built set-based.

    uv run python -m bench.generate [--leads N] [--activities N] [--companies N]
        [--campaigns N] [--tenant SLUG] [--seed S] [--anchor YYYY-MM-DD] [--tiny]

Creates (or reuses) the tenant `--tenant` in DATABASE_URL's database (created and
migrated if needed), empties that tenant's lead and campaign data, then fills it with
Japanese B2B data: companies (法人番号 with a valid check digit for most, domains,
industries, size and revenue bands, prefectures weighted to Tokyo and Osaka), leads
(names with kana, unique emails at their company's domain or free mail, E.164 phones,
titles, departments, a funnel of lifecycle stages, consent, owners among the tenant's
members, source campaigns), campaigns of every channel with budgets, costs and UTM
parameters, memberships, lifecycle transitions and consent events consistent with
the leads, and a power-law stream of activities over the last 12 months.

Companies and campaigns (small) are built in Python and COPied; everything else is
INSERT ... SELECT over generate_series in PostgreSQL, with randomness from a hash of
(row number, seed): the same seed and anchor day give the same data. It runs in one
transaction as the connecting superuser (a bench tool): foreign-key triggers are off
(session_replication_role = replica, the rows are consistent by construction) and the
non-unique indexes of the tables it fills are dropped and rebuilt, which is several
times faster than maintaining them row by row. Then ANALYZE, and a check as the app
role inside tenant_scope that the ORM sees the rows. See bench/README.md.
"""

import argparse
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from bench.data import words

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/ryorin_bench_data"
DEFAULT_TENANT = "bench-data"
SLOTS = 1000  # weighted choices in SQL: an array of SLOTS values, each repeated by weight
JST = timedelta(hours=9)

# The funnel a real tenant shows: most people never get past "lead".
STAGE_WEIGHTS = [
    ("subscriber", 14), ("lead", 52), ("mql", 10), ("sal", 4.5), ("sql", 3.5),
    ("opportunity", 2.5), ("customer", 2), ("recycled", 8), ("disqualified", 3.5),
]  # fmt: skip
SIZE_BANDS = ["1-9", "10-49", "50-99", "100-299", "300-999", "1000-4999", "5000+"]
SIZE_WEIGHTS = [20, 30, 15, 15, 10, 7, 3]
REVENUE_BANDS = ["<100m", "100m-1b", "1b-10b", "10b-100b", "100b+"]
# Member roles of the generated tenant (besides its owner), as shares of --members.
MEMBER_ROLES = [("marketing", 0.3), ("inside_sales", 0.3), ("field_sales", 0.3), ("admin", 0.1)]


@dataclass(frozen=True)
class Size:
    leads: int
    activities: int
    companies: int
    campaigns: int
    members: int


DEFAULT_SIZE = Size(
    leads=1_000_000, activities=10_000_000, companies=100_000, campaigns=300, members=30
)
TINY_SIZE = Size(leads=2_000, activities=20_000, companies=300, campaigns=40, members=12)


@dataclass
class Report:
    steps: list[tuple[str, int, float]] = field(default_factory=list)

    def step(self, label: str, rows: int | None, started: float) -> None:
        """One line per step; `rows` only for the steps that insert rows."""
        elapsed = time.monotonic() - started
        self.steps.append((label, rows or 0, elapsed))
        count = f"{rows:>12,} rows" if rows is not None else " " * 17
        rate = f"{rows / elapsed:12,.0f} rows/s" if rows and elapsed > 0 else ""
        print(f"  {label:<30} {count} {elapsed:8.1f} s {rate}", flush=True)


# --- Environment ------------------------------------------------------------------------


def database_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int)
    parser.add_argument("--activities", type=int, help="default: 10 per lead")
    parser.add_argument("--companies", type=int, help="default: 1 per 10 leads")
    parser.add_argument("--campaigns", type=int)
    parser.add_argument("--members", type=int, help="members of the tenant, owner excluded")
    parser.add_argument("--tenant", default=DEFAULT_TENANT, help="slug, created if missing")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--anchor",
        type=date.fromisoformat,
        help="the day the data ends (default: today); fix it to reproduce a run exactly",
    )
    parser.add_argument("--tiny", action="store_true", help="CI size: 2,000 leads")
    return parser.parse_args(argv)


def size_from(args: argparse.Namespace) -> Size:
    base = TINY_SIZE if args.tiny else DEFAULT_SIZE
    leads = args.leads if args.leads is not None else base.leads
    scaled = args.leads is not None and not args.tiny
    return Size(
        leads=leads,
        activities=args.activities
        if args.activities is not None
        else (leads * 10 if scaled else base.activities),
        companies=args.companies
        if args.companies is not None
        else (max(10, leads // 10) if scaled else base.companies),
        campaigns=args.campaigns
        if args.campaigns is not None
        else (min(300, max(20, leads // 3000)) if scaled else base.campaigns),
        members=args.members if args.members is not None else base.members,
    )


# --- Helpers ----------------------------------------------------------------------------


def expand(weighted: list[tuple[Any, float]], slots: int = SLOTS) -> list[Any]:
    """A weighted choice as an array: element [1 + floor(u * slots)] is drawn by weight."""
    total = sum(w for _, w in weighted)
    out: list[Any] = []
    acc = 0.0
    for value, weight in weighted:
        acc += weight
        out.extend([value] * (round(acc / total * slots) - len(out)))
    return out[:slots] + [weighted[-1][0]] * (slots - len(out))


def weighted(rng: random.Random, items: list[tuple[Any, float]]) -> Any:
    return rng.choices([v for v, _ in items], weights=[w for _, w in items])[0]


def table(model_label: str) -> str:
    from django.apps import apps

    return apps.get_model(model_label)._meta.db_table


TABLES = {
    "company": "leads.Company",
    "lead": "leads.Lead",
    "activity": "leads.Activity",
    "visitor": "leads.Visitor",
    "transition": "leads.LifecycleTransition",
    "consent": "leads.ConsentEvent",
    "tag": "leads.Tag",
    "leadtag": "leads.LeadTag",
    "customfield": "leads.CustomFieldDefinition",
    "campaign": "campaigns.Campaign",
    "membership": "campaigns.CampaignMembership",
}


# --- Database bootstrap -------------------------------------------------------------------


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


# --- Tenant and members (ORM: a few dozen rows) ----------------------------------------------


@dataclass(frozen=True)
class Team:
    tenant_id: int
    slug: str
    by_role: dict[str, list[int]]  # role → user ids


def ensure_tenant(slug: str, members: int) -> Team:
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from accounts.models import Membership, Tenant, User
    from accounts.services import SYSTEM, tenant_create
    from accounts.tenancy import tenant_scope

    password = make_password(None)

    def user(email: str, n: int) -> User:
        family, _, _ = words.FAMILY_NAMES[n % len(words.FAMILY_NAMES)]
        given, _, _ = words.GIVEN_NAMES[(n * 7) % len(words.GIVEN_NAMES)]
        found, _ = User.objects.get_or_create(
            email=email, defaults={"full_name": f"{family} {given}", "password": password}
        )
        return found

    with transaction.atomic():
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            owner = user(f"{slug}-owner@bench.example", 0)
            tenant = tenant_create(
                name=f"ベンチデータ株式会社 ({slug})", owner=owner, origin=SYSTEM, slug=slug
            )
        wanted = []
        n = 1
        for role, share in MEMBER_ROLES:
            for _ in range(max(1, round(members * share))):
                wanted.append((role, user(f"{slug}-{role}-{n:03d}@bench.example", n)))
                n += 1
        with tenant_scope(tenant.id):
            existing = set(Membership.objects.values_list("user_id", flat=True))
            Membership.objects.bulk_create(
                Membership(tenant=tenant, user=u, role=role)
                for role, u in wanted
                if u.id not in existing
            )
            by_role: dict[str, list[int]] = {}
            for role, user_id in Membership.objects.order_by("id").values_list("role", "user_id"):
                by_role.setdefault(role, []).append(user_id)
    return Team(tenant_id=tenant.id, slug=slug, by_role=by_role)


# --- Companies and campaigns (Python, COPY) -------------------------------------------------


def make_companies(rng: random.Random, n: int, anchor: datetime) -> list[tuple]:
    """Rows of leads_company (without tenant), the biggest companies first: leads are
    drawn with a skew towards the head of the list, as big companies have more people."""
    from stdnum.jp import cn

    from leads.normalize import normalize_company_name

    prefecture_weights = [(p, p[2]) for p in words.PREFECTURES]
    legal_weights = [(f, f[2]) for f in words.JAPANESE_LEGAL_FORMS]
    english_legal = words.ENGLISH_LEGAL_FORMS
    keys: set[str] = set()
    domains: set[str] = set()
    numbers: set[str] = set()
    rows = []
    for _ in range(n):
        english = rng.random() < 0.15
        industry = None
        for _attempt in range(8):
            if english:
                first = rng.choice(words.ENGLISH_FIRST)
                second = rng.choice(words.ENGLISH_SECOND)
                middle = rng.choice(words.ENGLISH_FIRST) if rng.random() < 0.5 else ""
                legal = weighted(rng, english_legal)
                name = " ".join(x for x in (first, middle, second, legal) if x)
                labels = [x.lower() for x in (first, middle, second) if x]
                tld = rng.choice([".com", ".com", ".co.jp", ".jp", ".io"])
            else:
                prefix = rng.choice(words.COMPANY_PREFIXES) if rng.random() < 0.7 else ("", "")
                core = rng.choice(words.COMPANY_CORES)
                core2 = rng.choice(words.COMPANY_CORES) if rng.random() < 0.35 else ("", "", None)
                suffix = rng.choice(words.COMPANY_SUFFIXES)
                form, front, _, tlds = weighted(rng, legal_weights)
                body = prefix[0] + core[0] + core2[0] + suffix[0]
                name = f"{form}{body}" if front else f"{body}{form}"
                labels = [x for x in (prefix[1], core[1], core2[1], suffix[1]) if x]
                industry = suffix[2] or core[2]
                tld = rng.choice(tlds)
            key = normalize_company_name(name)
            if key not in keys:
                break
        else:  # a crowded name space: a number, as real companies add one ("21", "2")
            base, k = name, 2
            while key in keys:
                name = f"{base[: -len(legal)]}{k} {legal}" if english else f"{base}{k}"
                key, k = normalize_company_name(name), k + 1
        keys.add(key)
        style = rng.random()
        if style < 0.45:
            label = "-".join(labels)
        elif style < 0.8:
            label = "".join(labels)
        else:  # initials, then the last word: "tokyo-techno-shoji" → "ttshoji"
            label = "".join(x[0] for x in labels[:-1]) + labels[-1]
        domain, k = f"{label}{tld}", 2
        while domain in domains:
            domain, k = f"{label}{k}{tld}", k + 1
        domains.add(domain)
        corporate_number = ""
        if rng.random() < (0.4 if english else 0.75):
            while True:
                base = f"{rng.randrange(10**11, 10**12):012d}"
                corporate_number = cn.calc_check_digit(base) + base
                if corporate_number not in numbers:
                    numbers.add(corporate_number)
                    break
        size = rng.choices(range(len(SIZE_BANDS)), weights=SIZE_WEIGHTS)[0]
        revenue = min(len(REVENUE_BANDS) - 1, max(0, size // 2 + rng.choice([-1, 0, 0, 1])))
        code, pref_name, _, cities, _ = weighted(rng, prefecture_weights)
        city = rng.choice(cities)
        address = f"{pref_name}{city}{rng.randint(1, 9)}-{rng.randint(1, 30)}-{rng.randint(1, 20)}"
        if rng.random() < 0.5:
            building = rng.choice(["第一", "第二", "セントラル", "スクエア"])
            address += f" {building}ビル{rng.randint(2, 15)}F"
        created = anchor - timedelta(days=rng.uniform(0, 1100))
        updated = created + (anchor - created) * rng.random()
        industry = industry or weighted(rng, words.INDUSTRIES)
        if rng.random() < 0.05:
            industry = ""  # not every record is complete
        rows.append(
            (
                size,
                (
                    name,
                    key,
                    corporate_number,
                    domain,
                    industry,
                    SIZE_BANDS[size],
                    REVENUE_BANDS[revenue],
                    code,
                    address,
                    created,
                    updated,
                ),
            )
        )
    rows.sort(key=lambda r: -r[0])  # stable: biggest first, then in drawn order
    return [row for _, row in rows]


def make_campaigns(
    rng: random.Random, n: int, anchor: datetime, marketing: list[int]
) -> list[tuple]:
    """Rows of campaigns_campaign (without tenant): the last ~26 months, a few planned."""
    channels = [(ch, spec[0]) for ch, spec in words.CAMPAIGN_CHANNELS.items()]
    # Every channel at least once, then by weight.
    picks = [ch for ch, _ in channels][:n] + [
        weighted(rng, channels) for _ in range(max(0, n - len(channels)))
    ]
    today = anchor.date()
    rows = []
    for i, channel in enumerate(picks):
        _, templates, source, medium, (low, high) = words.CAMPAIGN_CHANNELS[channel]
        starts = today - timedelta(days=rng.randint(-60, 790))
        topic, topic_en, topic_short = rng.choice(words.TOPICS)
        name = rng.choice(templates).format(
            topic=topic,
            topic_en=topic_en,
            topic_short=topic_short,
            show=f"{rng.choice(words.TRADE_SHOWS)} {starts.year}",
            year=starts.year,
            month=starts.month,
        )
        length = {
            "webinar": 0, "trade_show": 2, "event": 0, "newsletter": 0, "content": 180,
            "web_form": 365, "seo": 365, "referral": 365, "paid_ads": rng.randint(30, 90),
            "social": rng.randint(14, 60), "other": 30,
        }[channel]  # fmt: skip
        ends = starts + timedelta(days=length)
        if starts > today:
            status = "planned"
        elif rng.random() < 0.03:
            status = "cancelled"
        else:
            status = "completed" if ends < today else "active"
        budget = Decimal(rng.randrange(low, high + 1, 10_000) if high else 0)
        if status == "completed":
            cost = (budget * Decimal(rng.uniform(0.75, 1.1))).quantize(Decimal("1"))
        elif status in ("active", "cancelled"):
            elapsed = (today - starts).days / max(1, length)
            cost = (budget * Decimal(min(1.0, elapsed) * rng.uniform(0.5, 1.0))).quantize(
                Decimal("1")
            )
        else:
            cost = Decimal(0)
        for prefix, platform, platform_medium in words.UTM_BY_NAME_PREFIX:
            if name.startswith(prefix):
                source, medium = platform, platform_medium or medium
        target = {"trade_show": 400, "webinar": 120, "content": 300, "paid_ads": 500}.get(
            channel, 100
        )
        created = datetime.combine(starts, datetime.min.time(), UTC) - timedelta(
            days=rng.randint(7, 45)
        )
        rows.append(
            (
                name,
                channel,
                status,
                "",
                starts,
                ends,
                "JPY",
                budget,
                cost,
                rng.randint(target // 2, target * 2),
                source,
                medium,
                f"{channel.replace('_', '-')}-{starts:%Y%m}-{i + 1:03d}",
                rng.choice(["ma ツール", "sfa 比較", "インサイドセールス", "リード獲得"])
                if channel == "paid_ads"
                else "",
                rng.choice(["banner-a", "banner-b", "text-1", ""]) if channel == "paid_ads" else "",
                rng.choice(marketing) if marketing else None,
                min(created, anchor),
                min(created + timedelta(days=length + 3), anchor),
            )
        )
    return rows


def copy_rows(cursor, table_name: str, columns: list[str], tenant_id: int, rows) -> int:
    count = 0
    with cursor.copy(f"COPY {table_name} ({', '.join(['tenant_id', *columns])}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row((tenant_id, *row))
            count += 1
    return count


# --- The set-based part ------------------------------------------------------------------------

# u(n, salt) in [0, 1): a hash of the row number and a per-column salt, so the data is
# a function of the seed (random() would depend on the plan's row order).
RANDOM_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.u(n bigint, salt integer) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT (hashint8extended(n, salt::bigint + {seed}::bigint * 1000003)
           & 9007199254740991)::float8 / 9007199254740992.0 $$
"""


def big_tables() -> list[str]:
    return [table(TABLES[k]) for k in ("lead", "activity", "transition", "consent", "membership")]


def drop_secondary_indexes(cursor, tables: list[str]) -> list[str]:
    """Drop the non-unique indexes of `tables`; return their definitions to rebuild."""
    cursor.execute(
        """
        SELECT i.relname, pg_get_indexdef(i.oid)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = ANY(%s::regclass[]) AND NOT x.indisunique AND NOT x.indisprimary
        ORDER BY i.relname
        """,
        [tables],
    )
    found = cursor.fetchall()
    for name, _ in found:
        cursor.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in found]


def empty_tenant(cursor, tenant_id: int, report: Report) -> None:
    """Remove the tenant's data from every tenant table outside accounts (later apps'
    tables reference leads and campaigns). TRUNCATE when no other tenant has rows."""
    started = time.monotonic()
    cursor.execute(
        """
        SELECT c.table_name FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id'
          AND t.table_type = 'BASE TABLE' AND c.table_name NOT LIKE 'accounts\\_%%'
        ORDER BY 1
        """
    )
    names = [r[0] for r in cursor.fetchall()]
    others = False
    existing = 0
    for name in names:
        cursor.execute(
            f'SELECT EXISTS (SELECT 1 FROM "{name}" WHERE tenant_id <> %s),'
            f' EXISTS (SELECT 1 FROM "{name}" WHERE tenant_id = %s)',
            [tenant_id, tenant_id],
        )
        other, mine = cursor.fetchone()
        others |= other
        existing += mine
    if not existing:
        return
    if not others:
        cursor.execute(f"TRUNCATE {', '.join(f'{chr(34)}{n}{chr(34)}' for n in names)}")
    else:
        for name in names:
            cursor.execute(f'DELETE FROM "{name}" WHERE tenant_id = %s', [tenant_id])
    report.step("emptied the tenant's old data", None, started)


def generate(
    *,
    team: Team,
    size: Size,
    seed: int,
    anchor: datetime,
    report: Report,
) -> None:
    from django.db import connection, transaction
    from psycopg.types.json import Jsonb

    rng = random.Random(seed)
    t = {key: table(label) for key, label in TABLES.items()}
    tenant_id = team.tenant_id
    site = f"https://www.{team.slug}.example.jp"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")  # no FK triggers
        cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(RANDOM_FUNCTION.format(seed=int(seed)))
        empty_tenant(cursor, tenant_id, report)
        started = time.monotonic()
        index_definitions = drop_secondary_indexes(cursor, big_tables())
        report.step(f"dropped {len(index_definitions)} indexes", None, started)

        # Companies, campaigns, tags, custom fields: Python + COPY.
        started = time.monotonic()
        companies = make_companies(rng, size.companies, anchor)
        copied = copy_rows(
            cursor.cursor,
            t["company"],
            ["name", "name_key", "corporate_number", "domain", "industry", "size_band",
             "revenue_band", "prefecture", "address", "created_at", "updated_at"],
            tenant_id,
            companies,
        )  # fmt: skip
        report.step(t["company"], copied, started)
        started = time.monotonic()
        campaigns = make_campaigns(rng, size.campaigns, anchor, team.by_role.get("marketing", []))
        copied = copy_rows(
            cursor.cursor,
            t["campaign"],
            ["name", "channel", "status", "description", "starts_on", "ends_on", "currency",
             "budget", "actual_cost", "target_leads", "utm_source", "utm_medium", "utm_campaign",
             "utm_term", "utm_content", "owner_id", "created_at", "updated_at"],
            tenant_id,
            campaigns,
        )  # fmt: skip
        report.step(t["campaign"], copied, started)
        copy_rows(cursor.cursor, t["tag"], ["name"], tenant_id, [(n,) for n in words.TAGS])
        copy_rows(
            cursor.cursor,
            t["customfield"],
            ["key", "label", "type", "choices", "required", "position", "created_at"],
            tenant_id,
            [
                ("budget", "予算感", "choice", Jsonb(CUSTOM_BUDGETS), False, 1, anchor),
                ("timeline", "導入予定時期", "choice", Jsonb(CUSTOM_TIMELINES), False, 2, anchor),
            ],
        )
        _lookup_tables(cursor, t, tenant_id)
        _leads(cursor, t, team, size, anchor, report)
        _visitors(cursor, t, tenant_id, size, anchor, report)
        _transitions(cursor, t, tenant_id, anchor, report)
        _consent(cursor, t, tenant_id, anchor, site, report)
        _memberships(cursor, t, tenant_id, anchor, report)
        _tags(cursor, t, tenant_id, report)
        _activities(cursor, t, tenant_id, size, anchor, site, report)

        started = time.monotonic()
        cursor.execute("SET LOCAL max_parallel_maintenance_workers = 2")
        for definition in index_definitions:
            cursor.execute(definition)
        report.step(f"rebuilt {len(index_definitions)} indexes", None, started)


CUSTOM_BUDGETS = ["〜100万円", "100〜500万円", "500〜1,000万円", "1,000万円〜"]
CUSTOM_TIMELINES = ["3ヶ月以内", "半年以内", "1年以内", "未定"]


def _lookup_tables(cursor, t: dict[str, str], tenant_id: int) -> None:
    """Temp tables that number the companies and campaigns 0..n-1 for the draws."""
    cursor.execute(
        f"""
        CREATE TEMP TABLE g_company ON COMMIT DROP AS
        SELECT (row_number() OVER (ORDER BY id) - 1)::int AS idx, id, domain, prefecture
        FROM {t["company"]} WHERE tenant_id = %s;
        CREATE UNIQUE INDEX ON g_company (idx);
        -- Leads come only from campaigns that have started.
        CREATE TEMP TABLE g_source ON COMMIT DROP AS
        SELECT (row_number() OVER (ORDER BY id) - 1)::int AS idx, id, channel,
               starts_on::timestamptz AS starts_at,
               (least(ends_on + 1, %s::date))::timestamptz AS until_at
        FROM {t["campaign"]} WHERE tenant_id = %s AND starts_on <= %s::date;
        CREATE UNIQUE INDEX ON g_source (idx);
        CREATE TEMP TABLE g_campaign ON COMMIT DROP AS
        SELECT (row_number() OVER (ORDER BY id) - 1)::int AS idx, id, channel, status, starts_on
        FROM {t["campaign"]} WHERE tenant_id = %s;
        CREATE UNIQUE INDEX ON g_campaign (idx);
        -- Per channel, campaigns by start date: an activity at time t picks one that ran then.
        CREATE TEMP TABLE g_channel ON COMMIT DROP AS
        SELECT channel, count(*)::int AS n,
               array_agg(id ORDER BY starts_on, id) AS ids,
               array_agg(name ORDER BY starts_on, id) AS names,
               array_agg(utm_source ORDER BY starts_on, id) AS sources,
               array_agg(utm_medium ORDER BY starts_on, id) AS mediums,
               array_agg(utm_campaign ORDER BY starts_on, id) AS utms,
               min(starts_on)::timestamptz AS t0,
               greatest(max(starts_on)::timestamptz, min(starts_on)::timestamptz + interval '1 day')
                 AS t1
        FROM {t["campaign"]} WHERE tenant_id = %s GROUP BY channel;
        -- Statistics, or the planner hashes the big side of a join and the activities
        -- come out grouped by channel instead of in the order they were drawn.
        ANALYZE g_company; ANALYZE g_source; ANALYZE g_campaign; ANALYZE g_channel;
        """,
        [tenant_id, TODAY_PARAM[0], tenant_id, TODAY_PARAM[0], tenant_id, tenant_id],
    )


TODAY_PARAM: list[date] = [date.today()]  # set by main() from --anchor


def _count(cursor, sql: str, params: list | None = None) -> int:
    cursor.execute(sql, params or [])
    return cursor.fetchone()[0]


def _leads(cursor, t, team: Team, size: Size, anchor: datetime, report: Report) -> None:
    started = time.monotonic()
    family = words.FAMILY_NAMES
    given = words.GIVEN_NAMES
    roles = team.by_role
    n_source = _count(cursor, "SELECT count(*) FROM g_source")
    n_company = _count(cursor, "SELECT count(*) FROM g_company")
    params = {
        "tenant": team.tenant_id,
        "n": size.leads,
        "n_company": n_company,
        "n_source": n_source,
        "anchor": anchor,
        "f_kanji": [f[0] for f in family],
        "f_kana": [f[1] for f in family],
        "f_roma": [f[2] for f in family],
        "g_kanji": [g[0] for g in given],
        "g_kana": [g[1] for g in given],
        "g_roma": [g[2] for g in given],
        "x_family": words.FOREIGN_FAMILY_NAMES,
        "x_given": words.FOREIGN_GIVEN_NAMES,
        "titles": expand(words.JOB_TITLES),
        "departments": expand(words.DEPARTMENTS),
        "free": expand(words.FREE_MAIL_DOMAINS),
        "stages": expand(STAGE_WEIGHTS),
        "channels": expand([("form", 45), ("import", 30), ("api", 15), ("ui", 10)]),
        "area": [p[4] for p in words.PREFECTURES],
        "marketing": roles.get("marketing") or [None],
        "inside": roles.get("inside_sales") or roles.get("owner") or [None],
        "field": roles.get("field_sales") or roles.get("owner") or [None],
        "budgets": CUSTOM_BUDGETS,
        "timelines": CUSTOM_TIMELINES,
    }
    # r: the draws of lead i; p: the person; then the email's dedupe and the insert.
    cursor.execute(
        f"""
        CREATE TEMP TABLE g_person ON COMMIT DROP AS
        SELECT r.i,
          CASE WHEN r.foreign_ THEN (%(x_family)s::text[])[1 + floor(r.fam * array_length(%(x_family)s::text[], 1))::int]
               ELSE (%(f_kanji)s::text[])[r.fi] END AS family_name,
          CASE WHEN r.foreign_ THEN (%(x_given)s::text[])[1 + floor(r.giv * array_length(%(x_given)s::text[], 1))::int]
               ELSE (%(g_kanji)s::text[])[r.gi] END AS given_name,
          CASE WHEN r.foreign_ THEN '' ELSE (%(f_kana)s::text[])[r.fi] END AS family_name_kana,
          CASE WHEN r.foreign_ THEN '' ELSE (%(g_kana)s::text[])[r.gi] END AS given_name_kana,
          CASE WHEN r.foreign_ THEN lower((%(x_family)s::text[])[1 + floor(r.fam * array_length(%(x_family)s::text[], 1))::int])
               ELSE (%(f_roma)s::text[])[r.fi] END AS f_roma,
          CASE WHEN r.foreign_ THEN lower((%(x_given)s::text[])[1 + floor(r.giv * array_length(%(x_given)s::text[], 1))::int])
               ELSE (%(g_roma)s::text[])[r.gi] END AS g_roma,
          r.pattern, r.no_email, r.free_mail, r.company_idx, r.source_idx,
          r.phone_kind, r.phone_digits, r.title, r.dept, r.stage, r.channel, r.created_r,
          r.updated_r, r.owner_r, r.email_c, r.sales_c, r.custom_r, r.budget_r, r.timeline_r,
          r.free_r
        FROM (
          SELECT i,
            pg_temp.u(i, 1) < 0.04 AS foreign_,
            pg_temp.u(i, 2) AS fam, pg_temp.u(i, 3) AS giv,
            1 + floor(array_length(%(f_kanji)s::text[], 1) * pg_temp.u(i, 2) ^ 1.6)::int AS fi,
            1 + floor(array_length(%(g_kanji)s::text[], 1) * pg_temp.u(i, 3) ^ 1.3)::int AS gi,
            pg_temp.u(i, 4) AS pattern,
            pg_temp.u(i, 5) < 0.005 AS no_email,
            pg_temp.u(i, 6) < 0.07 AS free_mail,
            pg_temp.u(i, 23) AS free_r,
            CASE WHEN pg_temp.u(i, 7) < 0.92 AND %(n_company)s > 0
                 THEN floor(%(n_company)s * pg_temp.u(i, 8) ^ 2)::int END AS company_idx,
            CASE WHEN pg_temp.u(i, 9) < 0.85 AND %(n_source)s > 0
                 THEN floor(%(n_source)s * pg_temp.u(i, 10) ^ 1.5)::int END AS source_idx,
            pg_temp.u(i, 11) AS phone_kind, pg_temp.u(i, 12) AS phone_digits,
            (%(titles)s::text[])[1 + floor(pg_temp.u(i, 13) * {SLOTS})::int] AS title,
            (%(departments)s::text[])[1 + floor(pg_temp.u(i, 14) * {SLOTS})::int] AS dept,
            (%(stages)s::text[])[1 + floor(pg_temp.u(i, 15) * {SLOTS})::int] AS stage,
            (%(channels)s::text[])[1 + floor(pg_temp.u(i, 16) * {SLOTS})::int] AS channel,
            pg_temp.u(i, 17) AS created_r, pg_temp.u(i, 18) AS updated_r,
            pg_temp.u(i, 19) AS owner_r, pg_temp.u(i, 20) AS email_c,
            pg_temp.u(i, 21) AS sales_c, pg_temp.u(i, 22) AS custom_r,
            pg_temp.u(i, 24) AS budget_r, pg_temp.u(i, 25) AS timeline_r
          FROM generate_series(0, %(n)s - 1) AS i
        ) r
        """,  # noqa: E501 (SQL)
        params,
    )
    cursor.execute(
        f"""
        INSERT INTO {t["lead"]} (
          tenant_id, email, family_name, given_name, family_name_kana, given_name_kana,
          phone, job_title, department, company_id, owner_id, lifecycle_stage,
          source_campaign_id, source_channel, email_consent, sales_contact_consent,
          custom_fields, merged_into_id, created_at, updated_at)
        SELECT %(tenant)s,
          CASE WHEN e.local IS NULL THEN ''
               ELSE e.local || CASE WHEN e.rn > 1 THEN e.rn::text ELSE '' END || '@' || e.domain END,
          p.family_name, p.given_name, p.family_name_kana, p.given_name_kana,
          CASE WHEN p.phone_kind < 0.30 THEN ''
               WHEN p.phone_kind < 0.65 OR c.id IS NULL
                 THEN '+81' || (ARRAY['90','80','70'])[1 + floor(p.phone_kind * 1000)::int %% 3]
                      || lpad(floor(p.phone_digits * 1e8)::bigint::text, 8, '0')
               ELSE '+81' || (%(area)s::text[])[c.prefecture::int]
                    || lpad(floor(p.phone_digits * 1e8)::bigint::text,
                            9 - length((%(area)s::text[])[c.prefecture::int]), '0')
          END,
          p.title, p.dept, c.id,
          CASE WHEN p.stage IN ('opportunity', 'customer')
                 THEN (%(field)s::bigint[])[1 + floor(p.owner_r * array_length(%(field)s::bigint[], 1))::int]
               WHEN p.stage IN ('mql', 'sal', 'sql', 'recycled', 'disqualified')
                 THEN (%(inside)s::bigint[])[1 + floor(p.owner_r * array_length(%(inside)s::bigint[], 1))::int]
               WHEN p.owner_r < 0.5
                 THEN (%(marketing)s::bigint[])[1 + floor(p.owner_r * 2 * array_length(%(marketing)s::bigint[], 1))::int]
          END,
          p.stage, s.id,
          CASE s.channel WHEN 'trade_show' THEN 'import' WHEN 'webinar' THEN 'form'
               WHEN 'content' THEN 'form' WHEN 'web_form' THEN 'form' ELSE p.channel END,
          CASE WHEN e.local IS NULL THEN 'unknown'
               WHEN p.email_c < 0.55 THEN 'granted' WHEN p.email_c < 0.58 THEN 'pending'
               WHEN p.email_c < 0.68 THEN 'withdrawn' ELSE 'unknown' END,
          CASE WHEN p.sales_c < 0.35 OR p.stage IN ('sal', 'sql', 'opportunity', 'customer')
                 THEN 'granted'
               WHEN p.sales_c < 0.40 THEN 'withdrawn' ELSE 'unknown' END,
          CASE WHEN p.custom_r < 0.35 THEN jsonb_build_object(
                 'budget', (%(budgets)s::text[])[1 + floor(p.budget_r * 4)::int],
                 'timeline', (%(timelines)s::text[])[1 + floor(p.timeline_r * 4)::int])
               ELSE '{{}}'::jsonb END,
          NULL,
          ct.created_at,
          ct.created_at + (%(anchor)s - ct.created_at) * p.updated_r
        FROM g_person p
        LEFT JOIN g_company c ON c.idx = p.company_idx
        LEFT JOIN g_source s ON s.idx = p.source_idx
        JOIN LATERAL (
          SELECT CASE WHEN s.id IS NOT NULL
                        THEN s.starts_at + (s.until_at - s.starts_at) * p.created_r
                      ELSE %(anchor)s - interval '760 days' * p.created_r ^ 1.3 END AS created_at
        ) ct ON true
        JOIN (
          SELECT q.i, q.local, q.domain,
                 row_number() OVER (PARTITION BY q.local, q.domain ORDER BY q.i) AS rn
          FROM (
            SELECT p2.i,
              CASE WHEN p2.no_email THEN NULL
                   WHEN p2.pattern < 0.35 THEN p2.g_roma || '.' || p2.f_roma
                   WHEN p2.pattern < 0.55 THEN p2.f_roma || '.' || p2.g_roma
                   WHEN p2.pattern < 0.70 THEN left(p2.g_roma, 1) || '.' || p2.f_roma
                   WHEN p2.pattern < 0.80 THEN p2.f_roma || '_' || left(p2.g_roma, 1)
                   WHEN p2.pattern < 0.90 THEN p2.f_roma
                   ELSE p2.g_roma || '-' || p2.f_roma END AS local,
              CASE WHEN c2.domain IS NULL OR c2.domain = '' OR p2.free_mail
                   THEN (%(free)s::text[])[1 + floor(p2.free_r * {SLOTS})::int]
                   ELSE c2.domain END AS domain
            FROM g_person p2 LEFT JOIN g_company c2 ON c2.idx = p2.company_idx
          ) q
        ) e ON e.i = p.i
        ORDER BY p.i
        """,  # noqa: E501 (SQL)
        params,
    )
    report.step(t["lead"], cursor.rowcount, started)
    cursor.execute(
        f"""
        CREATE TEMP TABLE g_lead ON COMMIT DROP AS
        SELECT (row_number() OVER (ORDER BY id) - 1)::int AS idx, id, created_at,
               lifecycle_stage, owner_id, source_campaign_id, source_channel,
               email_consent, sales_contact_consent
        FROM {t["lead"]} WHERE tenant_id = %s;
        CREATE UNIQUE INDEX ON g_lead (idx);
        ANALYZE g_lead;
        """,
        [team.tenant_id],
    )


def _visitors(cursor, t, tenant_id: int, size: Size, anchor: datetime, report: Report) -> None:
    """Browsers the tracking snippet saw: most became known leads, some never did."""
    started = time.monotonic()
    n = max(1, size.leads // 20)
    cursor.execute(
        f"""
        INSERT INTO {t["visitor"]} (tenant_id, key, lead_id, first_seen_at, last_seen_at)
        SELECT %(tenant)s, md5(%(tenant)s || ':' || v), CASE WHEN pg_temp.u(v, 601) < 0.6 THEN l.id END,
               f.first_seen, f.first_seen + (%(anchor)s - f.first_seen) * pg_temp.u(v, 603)
        FROM generate_series(0, %(n)s - 1) AS v
        CROSS JOIN LATERAL (
          SELECT %(anchor)s - interval '365 days' * pg_temp.u(v, 602) AS first_seen) f
        LEFT JOIN g_lead l ON l.idx = mod(v * 7919, %(leads)s)
        ORDER BY v
        """,  # noqa: E501 (SQL)
        {"tenant": tenant_id, "n": n, "anchor": anchor, "leads": max(1, size.leads)},
    )
    report.step(t["visitor"], cursor.rowcount, started)
    cursor.execute(
        f"""
        CREATE TEMP TABLE g_anonymous ON COMMIT DROP AS
        SELECT (row_number() OVER (ORDER BY id) - 1)::int AS idx, id
        FROM {t["visitor"]} WHERE tenant_id = %s AND lead_id IS NULL;
        CREATE UNIQUE INDEX ON g_anonymous (idx);
        ANALYZE g_anonymous;
        """,
        [tenant_id],
    )


def _transitions(cursor, t, tenant_id: int, anchor: datetime, report: Report) -> None:
    """Every lead's path to its current stage: the first row at creation, the others
    spread in order between creation and the anchor."""
    started = time.monotonic()
    cursor.execute(
        f"""
        INSERT INTO {t["transition"]} (tenant_id, lead_id, from_stage, to_stage, occurred_at,
                                      actor_id, channel, reason)
        SELECT %(tenant)s, l.id, coalesce(p.path[s.k - 1], ''), s.stage,
          CASE WHEN s.k = 1 THEN l.created_at
               ELSE l.created_at + (%(anchor)s - l.created_at)
                    * ((s.k - 1 + 0.9 * pg_temp.u(l.idx, 310 + s.k::int)) / cardinality(p.path)) END,
          CASE WHEN s.k = 1 OR s.stage IN ('subscriber', 'lead', 'mql') THEN NULL ELSE l.owner_id END,
          CASE WHEN s.k = 1 THEN l.source_channel WHEN s.stage = 'mql' THEN 'system' ELSE 'ui' END,
          CASE s.stage
            WHEN 'recycled' THEN (%(recycle)s::text[])[1 + floor(pg_temp.u(l.idx, 302) * array_length(%(recycle)s::text[], 1))::int]
            WHEN 'disqualified' THEN (%(disqualify)s::text[])[1 + floor(pg_temp.u(l.idx, 302) * array_length(%(disqualify)s::text[], 1))::int]
            WHEN 'mql' THEN 'スコアがMQL基準に到達'
            ELSE '' END
        FROM g_lead l
        CROSS JOIN LATERAL (
          SELECT CASE l.lifecycle_stage
            WHEN 'subscriber' THEN ARRAY['subscriber']
            WHEN 'lead' THEN CASE WHEN pg_temp.u(l.idx, 301) < 0.3
                                  THEN ARRAY['subscriber', 'lead'] ELSE ARRAY['lead'] END
            WHEN 'mql' THEN ARRAY['lead', 'mql']
            WHEN 'sal' THEN ARRAY['lead', 'mql', 'sal']
            WHEN 'sql' THEN ARRAY['lead', 'mql', 'sal', 'sql']
            WHEN 'opportunity' THEN ARRAY['lead', 'mql', 'sal', 'sql', 'opportunity']
            WHEN 'customer' THEN ARRAY['lead', 'mql', 'sal', 'sql', 'opportunity', 'customer']
            WHEN 'recycled' THEN CASE WHEN pg_temp.u(l.idx, 301) < 0.5
                                      THEN ARRAY['lead', 'mql', 'sal', 'recycled']
                                      ELSE ARRAY['lead', 'mql', 'recycled'] END
            WHEN 'disqualified' THEN CASE WHEN pg_temp.u(l.idx, 301) < 0.6
                                          THEN ARRAY['lead', 'disqualified']
                                          ELSE ARRAY['lead', 'mql', 'sal', 'disqualified'] END
          END AS path
        ) p
        CROSS JOIN LATERAL unnest(p.path) WITH ORDINALITY AS s(stage, k)
        ORDER BY l.idx, s.k
        """,  # noqa: E501 (SQL)
        {
            "tenant": tenant_id,
            "anchor": anchor,
            "recycle": words.RECYCLE_REASONS,
            "disqualify": words.DISQUALIFY_REASONS,
        },
    )
    report.step(t["transition"], cursor.rowcount, started)


def _consent(cursor, t, tenant_id: int, anchor: datetime, site: str, report: Report) -> None:
    """The history behind each lead's two consent states: a grant at creation (with the
    form or the import's stated basis as proof), a later withdrawal, a pending opt-in."""
    started = time.monotonic()
    cursor.execute(
        f"""
        INSERT INTO {t["consent"]} (tenant_id, lead_id, purpose, status, channel, basis, proof,
                                   occurred_at, actor_id)
        SELECT %(tenant)s, l.id, v.purpose, v.status,
          CASE WHEN v.status <> 'withdrawn' THEN l.source_channel
               WHEN v.purpose = 'email_marketing' THEN 'system' ELSE 'ui' END,
          CASE WHEN v.status = 'granted' AND l.source_channel = 'import'
                 THEN '展示会での名刺交換時に、製品情報の送付について同意を取得'
               WHEN v.status = 'granted' AND l.source_channel IN ('api', 'ui')
                 THEN '商談・問い合わせ時に口頭で同意を取得'
               ELSE '' END,
          CASE WHEN v.status IN ('granted', 'pending') AND l.source_channel = 'form'
                 THEN jsonb_build_object(
                   'form', '資料請求フォーム', 'page', %(site)s || '/contact',
                   'ip', '203.0.113.' || (1 + mod(l.idx, 250)),
                   'text', '製品・サービスに関するご案内をメールで受け取ることに同意します')
               WHEN v.status = 'granted' AND l.source_channel = 'import'
                 THEN jsonb_build_object('file', '展示会来場者リスト.xlsx')
               WHEN v.status = 'withdrawn' AND v.purpose = 'email_marketing'
                 THEN jsonb_build_object('via', 'unsubscribe_link')
               ELSE '{{}}'::jsonb END,
          CASE WHEN v.seq = 1 THEN l.created_at
               ELSE l.created_at + (%(anchor)s - l.created_at) * (0.2 + 0.8 * pg_temp.u(l.idx, 401)) END,
          CASE WHEN v.status = 'withdrawn' AND v.purpose = 'sales_contact' THEN l.owner_id END
        FROM g_lead l
        JOIN (VALUES
          ('email_marketing', 'granted', 1, ARRAY['granted', 'withdrawn']),
          ('email_marketing', 'withdrawn', 2, ARRAY['withdrawn']),
          ('email_marketing', 'pending', 1, ARRAY['pending']),
          ('sales_contact', 'granted', 1, ARRAY['granted', 'withdrawn']),
          ('sales_contact', 'withdrawn', 2, ARRAY['withdrawn'])
        ) AS v(purpose, status, seq, applies)
          ON (CASE v.purpose WHEN 'email_marketing' THEN l.email_consent
                             ELSE l.sales_contact_consent END) = ANY (v.applies)
        ORDER BY l.idx, v.seq
        """,  # noqa: E501 (SQL)
        {"tenant": tenant_id, "anchor": anchor, "site": site},
    )
    report.step(t["consent"], cursor.rowcount, started)


def _memberships(cursor, t, tenant_id: int, anchor: datetime, report: Report) -> None:
    """Each lead is a member of its source campaign, and of up to two more."""
    started = time.monotonic()
    n = _count(cursor, "SELECT count(*) FROM g_campaign")
    if not n:
        return
    cursor.execute(
        f"""
        INSERT INTO {t["membership"]} (tenant_id, campaign_id, lead_id, status, created_at, updated_at)
        SELECT %(tenant)s, x.campaign_id, x.lead_id, x.status, x.at, x.at FROM (
          SELECT c.id AS campaign_id, l.id AS lead_id, l.idx, 0 AS k,
            CASE WHEN c.channel = 'webinar' THEN
                   CASE WHEN pg_temp.u(l.idx, 503) < 0.6 THEN 'attended'
                        WHEN pg_temp.u(l.idx, 503) < 0.75 THEN 'registered' ELSE 'no_show' END
                 WHEN c.channel IN ('trade_show', 'event') THEN 'attended'
                 ELSE 'responded' END AS status,
            l.created_at AS at
          FROM g_lead l JOIN g_campaign c ON c.id = l.source_campaign_id
          UNION ALL
          SELECT c.id, l.id, l.idx, k,
            CASE WHEN c.status = 'planned' THEN 'invited'
                 WHEN c.channel IN ('webinar', 'event') THEN
                   CASE WHEN pg_temp.u(l.idx, 504 + k) < 0.3 THEN 'invited'
                        WHEN pg_temp.u(l.idx, 504 + k) < 0.45 THEN 'registered'
                        WHEN pg_temp.u(l.idx, 504 + k) < 0.8 THEN 'attended' ELSE 'no_show' END
                 WHEN pg_temp.u(l.idx, 504 + k) < 0.4 THEN 'invited'
                 ELSE 'responded' END,
            least(%(anchor)s, greatest(l.created_at, c.starts_on::timestamptz)
                              + interval '3 days' * pg_temp.u(l.idx, 510 + k))
          FROM g_lead l
          CROSS JOIN LATERAL generate_series(1, floor(3 * pg_temp.u(l.idx, 501) ^ 2)::int) AS k
          JOIN g_campaign c ON c.idx = mod(floor(pg_temp.u(l.idx, 502) * %(n)s)::int + k * 7919, %(n)s)
        ) x
        ORDER BY x.idx, x.k
        ON CONFLICT DO NOTHING
        """,  # noqa: E501 (SQL)
        {"tenant": tenant_id, "anchor": anchor, "n": n},
    )
    report.step(t["membership"], cursor.rowcount, started)


def _tags(cursor, t, tenant_id: int, report: Report) -> None:
    started = time.monotonic()
    cursor.execute(
        f"""
        WITH tg AS (
          SELECT (row_number() OVER (ORDER BY id) - 1)::int AS idx, id,
                 count(*) OVER ()::int AS n
          FROM {t["tag"]} WHERE tenant_id = %(tenant)s
        )
        INSERT INTO {t["leadtag"]} (tenant_id, lead_id, tag_id)
        SELECT %(tenant)s, l.id, tg.id
        FROM g_lead l
        CROSS JOIN LATERAL generate_series(
          1, CASE WHEN pg_temp.u(l.idx, 801) < 0.05 THEN 2
                  WHEN pg_temp.u(l.idx, 801) < 0.2 THEN 1 ELSE 0 END) AS k
        JOIN tg ON tg.idx = mod(floor(tg.n * pg_temp.u(l.idx, 802) ^ 1.5)::int + (k - 1) * 3, tg.n)
        ORDER BY l.idx, k
        """,
        {"tenant": tenant_id},
    )
    report.step(t["leadtag"], cursor.rowcount, started)


def _permutation_step(n: int) -> int:
    """A multiplier coprime to n: (x * step) mod n scatters the heavy leads."""
    from math import gcd

    step = 1_000_003
    while gcd(step, n) != 1:
        step += 2
    return step


def _activities(
    cursor, t, tenant_id: int, size: Size, anchor: datetime, site: str, report: Report
) -> None:
    """The event stream: each row picks its lead with a power law (a few leads are very
    active, most have a handful of events), a time in the last 12 months after the
    lead's creation, a type by weight and the campaign of that type's channel that ran
    around then; page views carry URL, referrer and the campaign's UTM parameters."""
    if not size.activities or not size.leads:
        return
    started = time.monotonic()
    types = words.ACTIVITY_TYPES
    n_anonymous = _count(cursor, "SELECT count(*) FROM g_anonymous")
    params = {
        "tenant": tenant_id,
        "n": size.activities,
        "leads": size.leads,
        "step": _permutation_step(size.leads),
        "anchor": anchor,
        "site": site,
        "n_anonymous": n_anonymous,
        "type_slots": expand([(i + 1, w) for i, (_, w, _, _) in enumerate(types)]),
        "types": [name for name, _, _, _ in types],
        "type_channels": [channel for _, _, channel, _ in types],
        "type_campaigns": [campaign for _, _, _, campaign in types],
        "pv_campaigns": expand([("paid_ads", 50), ("social", 20), ("newsletter", 20), ("seo", 10)]),
        "paths": expand(words.PAGE_PATHS),
        "referrers": expand(words.REFERRERS),
        "subjects": words.EMAIL_SUBJECTS,
        "assets": words.CONTENT_ASSETS,
        "outcomes": words.CALL_OUTCOMES,
        "notes": words.NOTES,
        "mail_domain": f"mail.{site.removeprefix('https://www.')}",
    }
    cursor.execute(
        f"""
        INSERT INTO {t["activity"]} (tenant_id, lead_id, visitor_id, type, occurred_at,
                                    campaign_id, channel, properties, created_at)
        SELECT %(tenant)s,
          CASE WHEN a.anonymous THEN NULL ELSE a.lead_id END,
          CASE WHEN a.anonymous THEN va.id END,
          a.type, a.at, ch.ids[c.i], a.channel,
          CASE a.type
            WHEN 'page_view' THEN
              jsonb_build_object('url', %(site)s || a.path, 'referrer', a.referrer)
              || CASE WHEN ch.n IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object(
                   'utm_source', ch.sources[c.i], 'utm_medium', ch.mediums[c.i],
                   'utm_campaign', ch.utms[c.i]) END
            WHEN 'form_submission' THEN jsonb_build_object(
              'form', CASE WHEN a.rp < 0.6 THEN '資料請求フォーム' ELSE 'お問い合わせフォーム' END,
              'url', %(site)s || CASE WHEN a.rp < 0.6 THEN '/download/ma-guide' ELSE '/contact' END,
              'referrer', a.referrer)
            WHEN 'content_download' THEN jsonb_build_object(
              'asset', (%(assets)s::text[])[1 + floor(a.rp * array_length(%(assets)s::text[], 1))::int],
              'url', %(site)s || '/download/ma-guide')
            WHEN 'webinar_registration' THEN jsonb_build_object('webinar', ch.names[c.i])
            WHEN 'webinar_attendance' THEN jsonb_build_object(
              'webinar', ch.names[c.i], 'duration_min', 5 + floor(a.rp * 85)::int)
            WHEN 'trade_show_visit' THEN jsonb_build_object(
              'show', ch.names[c.i],
              'booth', chr(65 + floor(a.rp * 6)::int) || '-' || (1 + floor(a.rq * 40)::int))
            WHEN 'call' THEN jsonb_build_object(
              'duration_s', floor(a.rp * 900)::int,
              'outcome', (%(outcomes)s::text[])[1 + floor(a.rq * array_length(%(outcomes)s::text[], 1))::int])
            WHEN 'meeting' THEN jsonb_build_object(
              'duration_min', CASE WHEN a.rp < 0.6 THEN 30 ELSE 60 END,
              'location', CASE WHEN a.rq < 0.6 THEN 'オンライン' WHEN a.rq < 0.85 THEN '訪問' ELSE '来社' END)
            WHEN 'note' THEN jsonb_build_object(
              'body', (%(notes)s::text[])[1 + floor(a.rp * array_length(%(notes)s::text[], 1))::int])
            ELSE jsonb_build_object(  -- email events
              'subject', (%(subjects)s::text[])[1 + floor(a.rp * array_length(%(subjects)s::text[], 1))::int],
              'message_id', '<' || a.j || '@' || %(mail_domain)s || '>')
              || CASE a.type
                   WHEN 'email_clicked' THEN jsonb_build_object(
                     'url', %(site)s || a.path || '?utm_source=newsletter&utm_medium=email')
                   WHEN 'email_bounced' THEN jsonb_build_object(
                     'bounce_type', CASE WHEN a.rq < 0.7 THEN 'hard' ELSE 'soft' END)
                   ELSE '{{}}'::jsonb END
          END,
          a.at
        FROM (
          SELECT r.j, r.rp, r.rq, l.id AS lead_id,
            (%(types)s::text[])[r.ti] AS type,
            (%(type_channels)s::text[])[r.ti] AS channel,
            CASE WHEN r.ti = 1 THEN
                   CASE WHEN r.rc < 0.35 THEN (%(pv_campaigns)s::text[])[1 + floor(r.rc / 0.35 * {SLOTS})::int] END
                 ELSE (%(type_campaigns)s::text[])[r.ti] END AS campaign_channel,
            r.ti = 1 AND r.ra < 0.03 AND %(n_anonymous)s > 0 AS anonymous,
            s.start_at + (%(anchor)s - s.start_at) * r.rt AS at,
            (%(paths)s::text[])[1 + floor(r.rp * {SLOTS})::int] AS path,
            (%(referrers)s::text[])[1 + floor(r.rr * {SLOTS})::int] AS referrer
          FROM (
            SELECT j,
              (%(type_slots)s::int[])[1 + floor(pg_temp.u(j, 701) * {SLOTS})::int] AS ti,
              mod(floor(%(leads)s * pg_temp.u(j, 702) ^ 2)::bigint * %(step)s + 17, %(leads)s)::int
                AS lead_idx,
              pg_temp.u(j, 703) AS rt, pg_temp.u(j, 704) AS ra, pg_temp.u(j, 705) AS rc,
              pg_temp.u(j, 706) AS rp, pg_temp.u(j, 707) AS rq, pg_temp.u(j, 708) AS rr
            FROM generate_series(0, %(n)s - 1) AS j
          ) r
          JOIN g_lead l ON l.idx = r.lead_idx
          CROSS JOIN LATERAL (
            SELECT greatest(l.created_at, %(anchor)s - interval '365 days') AS start_at) s
        ) a
        LEFT JOIN g_channel ch ON ch.channel = a.campaign_channel
        CROSS JOIN LATERAL (
          SELECT 1 + least(ch.n - 1, greatest(0, floor(
                   extract(epoch FROM a.at - ch.t0) / extract(epoch FROM ch.t1 - ch.t0) * ch.n
                   - 2 * a.rq)::int)) AS i) c
        LEFT JOIN g_anonymous va ON a.anonymous AND va.idx = mod(a.j, nullif(%(n_anonymous)s, 0))
        """,  # noqa: E501 (SQL)
        params,
    )
    report.step(t["activity"], cursor.rowcount, started)


# --- After the load --------------------------------------------------------------------------


def analyze(report: Report) -> None:
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        for name in sorted({table(label) for label in TABLES.values()}):
            cursor.execute(f'ANALYZE "{name}"')
    report.step("ANALYZE", None, started)


def verify(team: Team, size: Size, expected_companies: int) -> list[str]:
    """As the app role inside tenant_scope (RLS on), the ORM sees the rows; a sample of
    them passes the normalisers the write paths use."""
    from django.db import connection
    from stdnum.jp import cn

    from accounts.tenancy import tenant_scope
    from campaigns.models import Campaign
    from leads.models import Activity, Company, Lead
    from leads.normalize import (
        normalize_company_name,
        normalize_email,
        normalize_phone,
    )

    problems = []
    with tenant_scope(team.tenant_id), connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        role = cursor.fetchone()[0]
        counts = {
            "leads": (Lead.objects.count(), size.leads),
            "activities": (Activity.objects.count(), size.activities),
            "companies": (Company.objects.count(), expected_companies),
            "campaigns": (Campaign.objects.count(), size.campaigns),
        }
        sample = list(
            Lead.objects.order_by("?").values_list("email", "phone")[:500]
            if size.leads <= 100_000
            else Lead.objects.filter(id__in=_sample_ids(cursor, "leads_lead", 500)).values_list(
                "email", "phone"
            )
        )
        companies = list(
            Company.objects.values_list("name", "name_key", "corporate_number").order_by("id")[
                :2000
            ]
        )
    print(f"  ORM check as {role} inside tenant_scope({team.tenant_id}):")
    for name, (seen, wanted) in counts.items():
        print(f"    {name:<11} {seen:>12,}")
        if seen != wanted:
            problems.append(f"the ORM sees {seen} {name}, expected {wanted}")
    if role == connection.settings_dict.get("USER"):
        problems.append(f"tenant_scope ran as {role}, not the app role")
    for email, phone in sample:
        if email and normalize_email(email) != email:
            problems.append(f"email not normalised: {email!r}")
        if phone and normalize_phone(phone) != phone:
            problems.append(f"phone not E.164: {phone!r}")
    for name, key, number in companies:
        if normalize_company_name(name) != key:
            problems.append(f"name_key of {name!r} is {key!r}")
        if number and not cn.is_valid(number):
            problems.append(f"invalid 法人番号 {number!r} of {name!r}")
    return problems[:20]


def _sample_ids(cursor, table_name: str, n: int) -> list[int]:
    cursor.execute(f"SELECT id FROM {table_name} TABLESAMPLE SYSTEM (1) LIMIT %s", [n])
    return [r[0] for r in cursor.fetchall()]


def sanity_figures(tenant_id: int) -> None:
    """What a reader checks the data's realism by."""
    from django.db import connection

    t = {key: table(label) for key, label in TABLES.items()}

    def rows(sql: str) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(
                sql, {"tenant": tenant_id, "free": [d for d, _ in words.FREE_MAIL_DOMAINS]}
            )
            return cursor.fetchall()

    def show(title: str, data: list[tuple], total: int | None = None) -> None:
        total = total or sum(r[1] for r in data) or 1
        print(f"  {title}:")
        for label, count in data:
            print(f"    {label!s:<22} {count:>12,}  {100 * count / total:5.1f}%")

    show(
        "leads by stage",
        rows(
            f"SELECT lifecycle_stage, count(*) FROM {t['lead']} WHERE tenant_id = %(tenant)s "
            "GROUP BY 1 ORDER BY array_position(ARRAY['subscriber','lead','mql','sal','sql',"
            "'opportunity','customer','recycled','disqualified'], lifecycle_stage)"
        ),
    )
    by_type = rows(
        f"SELECT type, count(*) FROM {t['activity']} WHERE tenant_id = %(tenant)s "
        "GROUP BY 1 ORDER BY 2 DESC"
    )
    show("activities by type, top 5", by_type[:5], sum(n for _, n in by_type))
    names = {code: name for code, name, *_ in words.PREFECTURES}
    by_prefecture = rows(
        f"SELECT prefecture, count(*) FROM {t['company']} WHERE tenant_id = %(tenant)s "
        "GROUP BY 1 ORDER BY 2 DESC"
    )
    show(
        "companies by prefecture, top 5",
        [(names.get(code, code), n) for code, n in by_prefecture[:5]],
        sum(n for _, n in by_prefecture),
    )
    [(p50, p90, p99, top, zero)] = rows(
        f"""
        SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY n), percentile_disc(0.9) WITHIN GROUP (ORDER BY n),
               percentile_disc(0.99) WITHIN GROUP (ORDER BY n), max(n), count(*) FILTER (WHERE n = 0)
        FROM (SELECT l.id, count(a.id) AS n FROM {t["lead"]} l
              LEFT JOIN {t["activity"]} a ON a.tenant_id = l.tenant_id AND a.lead_id = l.id
              WHERE l.tenant_id = %(tenant)s GROUP BY l.id) x
        """  # noqa: E501 (SQL)
    )
    print(f"  activities per lead: p50 {p50}, p90 {p90}, p99 {p99}, max {top}, none {zero:,}")
    [(with_number, companies, free, emails)] = rows(
        f"""
        SELECT (SELECT count(*) FILTER (WHERE corporate_number <> '') FROM {t["company"]} WHERE tenant_id = %(tenant)s),
               (SELECT count(*) FROM {t["company"]} WHERE tenant_id = %(tenant)s),
               count(*) FILTER (WHERE split_part(email, '@', 2) = ANY (%(free)s::text[])),
               count(*) FILTER (WHERE email <> '')
        FROM {t["lead"]} WHERE tenant_id = %(tenant)s
        """  # noqa: E501 (SQL)
    )
    print(
        f"  companies with 法人番号: {with_number:,} of {companies:,}; "
        f"free-mail addresses: {free:,} of {emails:,} emails"
    )
    examples = rows(
        f"SELECT l.family_name || ' ' || l.given_name || '（' || l.family_name_kana || ' ' || "
        f"l.given_name_kana || '）', "
        f"l.email || ' / ' || coalesce(c.name, '-') || ' / ' || l.job_title "
        f"FROM {t['lead']} l LEFT JOIN {t['company']} c ON c.id = l.company_id "
        f"WHERE l.tenant_id = %(tenant)s ORDER BY l.id LIMIT 3"
    )
    print("  examples:")
    for name, rest in examples:
        print(f"    {name}  {rest}")


def table_sizes() -> list[tuple[str, int, int, int]]:
    from django.db import connection

    names = sorted({table(label) for label in TABLES.values()})
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, c.reltuples::bigint, pg_table_size(c.oid), pg_indexes_size(c.oid)
            FROM pg_class c WHERE c.relname = ANY(%s) ORDER BY pg_total_relation_size(c.oid) DESC
            """,
            [names],
        )
        return cursor.fetchall()


def print_sizes() -> None:
    def mb(n: int) -> str:
        return f"{n / 1024 / 1024:,.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:,.0f} kB"

    print("  table sizes (all tenants):")
    print(f"    {'table':<32} {'~rows':>12} {'table':>10} {'indexes':>10}")
    for name, tuples, data, indexes in table_sizes():
        print(f"    {name:<32} {max(tuples, 0):>12,} {mb(data):>10} {mb(indexes):>10}")


# --- Entry point ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = size_from(args)
    url = database_url()
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    anchor_day = args.anchor or date.today()
    TODAY_PARAM[0] = anchor_day
    # The data ends at midnight (JST) of the anchor day, so a seed gives the same rows
    # all day long (and forever with --anchor).
    anchor = datetime.combine(anchor_day, datetime.min.time(), UTC) - JST
    started_all = time.monotonic()
    ensure_database(url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    print(
        f"bench.generate: database {urlsplit(url).path.lstrip('/')}, tenant {args.tenant!r}, "
        f"seed {args.seed}, data up to {anchor_day}; {size.leads:,} leads, "
        f"{size.activities:,} activities, {size.companies:,} companies, "
        f"{size.campaigns:,} campaigns, {size.members} members",
        flush=True,
    )
    report = Report()
    started = time.monotonic()
    team = ensure_tenant(args.tenant, size.members)
    report.step("tenant and members", None, started)
    started = time.monotonic()
    generate(team=team, size=size, seed=args.seed, anchor=anchor, report=report)
    report.step("load, one transaction", None, started)  # the steps above + the commit
    analyze(report)
    total = time.monotonic() - started_all
    rows = sum(r for label, r, _ in report.steps if label.startswith(("leads_", "campaigns_")))
    print(f"  {'total (incl. migrate)':<30} {rows:>12,} rows {total:8.1f} s")
    problems = verify(team, size, size.companies)
    sanity_figures(team.tenant_id)
    print_sizes()
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"bench.generate: done in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
