"""Running an import: read and clean every row in Python, then apply them set-based.

All-or-nothing per job. The task runs in one transaction (tenant_task's tenant scope),
and the apply step in a savepoint inside it:

* a bad row never stops the others: it is left out and reported (ImportRowError);
* an exception while applying rolls the savepoint back, and the job is marked failed
  in the same transaction — no lead, company, activity, membership or consent of it
  remains;
* a killed worker never commits at all: the job stays "queued" and Celery redelivers
  it (acks_late + reject_on_worker_lost), which runs it again from the file;
* a dry run applies everything in the savepoint, counts, and rolls it back.

Progress can therefore not be read from the job row while the transaction is open;
it is published in the cache (Redis), which the status endpoint reads.

PostgreSQL path: the cleaned rows are COPYed into a temporary staging table, then one
statement per step matches and creates companies, upserts leads (ON CONFLICT on the
tenant's unique email, by policy), and writes transitions, tags, activities and consent;
campaign membership goes through the campaigns hook with every lead id at once.
"""

import logging
import time
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from accounts import events
from leads.imports import rows as r
from leads.imports.reading import FileReadError, Table, read_table
from leads.imports.rows import Problem, RowCleaner
from leads.models import (
    Activity,
    ActivityType,
    Channel,
    Company,
    ConsentEvent,
    ConsentPurpose,
    ConsentStatus,
    CustomFieldDefinition,
    ImportJob,
    ImportRowError,
    Lead,
    LeadTag,
    LifecycleStage,
    LifecycleTransition,
    Suppression,
    Tag,
)

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 5000
PROGRESS_TTL = 24 * 3600

# The activity an imported lead gets, by the campaign's channel (campaigns.CampaignChannel
# values; leads cannot import campaigns). Others get a note marked as an import.
ACTIVITY_FOR_CHANNEL = {
    "trade_show": ActivityType.TRADE_SHOW_VISIT,
    "event": ActivityType.TRADE_SHOW_VISIT,
    "webinar": ActivityType.WEBINAR_ATTENDANCE,
    "content": ActivityType.CONTENT_DOWNLOAD,
    "web_form": ActivityType.FORM_SUBMISSION,
}


class DryRunDone(Exception):
    """Raised to roll back a dry run's savepoint once its figures are counted."""


@dataclass
class Prepared:
    """A file read and cleaned: rows ready to stage, and what kept rows out."""

    records: list[list] = field(default_factory=list)
    row_numbers: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    total_rows: int = 0
    merged_duplicates: int = 0


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    companies_created: int = 0
    companies_matched: int = 0
    memberships: int = 0
    activities: int = 0
    consents: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


# --- Progress ---------------------------------------------------------------------------


def progress_key(job_id: int) -> str:
    return f"leads:import:{job_id}:progress"


def progress_set(job_id: int, phase: str, processed: int, total: int) -> None:
    cache.set(
        progress_key(job_id),
        {"phase": phase, "processed_rows": processed, "total_rows": total},
        PROGRESS_TTL,
    )


def progress_get(job_id: int) -> dict | None:
    return cache.get(progress_key(job_id))


# --- Reading and cleaning ------------------------------------------------------------------


def row_cleaner_for(job: ImportJob, custom_fields: list | None = None) -> RowCleaner:
    if custom_fields is None:
        custom_fields = list(CustomFieldDefinition.objects.all())
    tenant = job.tenant
    return RowCleaner(
        header=job.header,
        mapping=job.mapping,
        custom_fields=custom_fields,
        region=tenant.country or "JP",
        timezone=tenant.time_zone or "UTC",
    )


def read_job_file(job: ImportJob, sheet: str | None = None) -> Table:
    job.file.open("rb")
    try:
        data = job.file.read()
    finally:
        job.file.close()
    return read_table(data, job.file_format, job.sheet if sheet is None else sheet)


def prepare(job: ImportJob, cleaner: RowCleaner) -> Prepared:
    """Every row of the file cleaned; duplicates of an email merged into its first row."""
    table = read_job_file(job)
    raw_rows = [(number, cells) for number, cells in table.rows if not r.is_blank(cells)]
    prepared = Prepared(total_rows=len(raw_rows))
    progress_set(job.id, "validating", 0, prepared.total_rows)
    by_email: dict[str, int] = {}
    clean = cleaner.clean
    records = prepared.records
    for done, (number, cells) in enumerate(raw_rows, start=1):
        record, problems = clean(number, cells)
        if record is None:
            prepared.problems.extend(problems)
        else:
            email = record[r.EMAIL]
            first = by_email.get(email) if email else None
            if first is not None:
                r.merge_into(records[first], record)
                prepared.merged_duplicates += 1
            else:
                if email:
                    by_email[email] = len(records)
                records.append(record)
                prepared.row_numbers.append(number)
        if done % PROGRESS_EVERY == 0:
            progress_set(job.id, "validating", done, prepared.total_rows)
    for record in records:
        if record[r.COMPANY]:
            record[r.COMPANY] = record[r.COMPANY][:255]
    return prepared


# --- Running -------------------------------------------------------------------------------


def run(job_id: int) -> ImportJob | None:
    """Run a queued job inside the current tenant scope (the task's transaction).
    Harmless when repeated: a job that is not queued is left alone."""
    job = (
        ImportJob.objects.select_for_update(of=("self",))
        .select_related("tenant", "campaign")
        .filter(pk=job_id)
        .first()
    )
    if job is None or job.status != ImportJob.Status.QUEUED:
        return job
    started = time.monotonic()
    job.status = ImportJob.Status.RUNNING
    job.started_at = timezone.now()
    progress_set(job.id, "reading", 0, 0)
    ImportRowError.objects.filter(job=job).delete()
    try:
        cleaner = row_cleaner_for(job)
        prepared = prepare(job, cleaner)
    except FileReadError as exc:
        return _finish_failed(job, str(exc))
    _store_problems(job, prepared.problems)
    progress_set(job.id, "applying", prepared.total_rows, prepared.total_rows)
    counts = Counts()
    try:
        with transaction.atomic():
            counts = apply(job, prepared, cleaner)
            if job.dry_run:
                raise DryRunDone
    except DryRunDone:
        pass
    except Exception as exc:
        # The savepoint is rolled back: nothing of the apply step remains.
        logger.exception("import %s failed", job.id)
        return _finish_failed(job, f"{type(exc).__name__}: {exc}"[:2000], prepared)
    job.status = ImportJob.Status.SUCCEEDED
    job.total_rows = prepared.total_rows
    job.processed_rows = prepared.total_rows
    job.created_count = counts.created
    job.updated_count = counts.updated
    job.skipped_count = counts.skipped
    job.error_count = _rows_with_problems(prepared.problems)
    job.summary = {
        **counts.as_dict(),
        "merged_duplicates": prepared.merged_duplicates,
        "seconds": round(time.monotonic() - started, 3),
        "dry_run": job.dry_run,
    }
    job.failure = ""
    job.finished_at = timezone.now()
    job.save()
    progress_set(job.id, "done", job.total_rows, job.total_rows)
    if not job.dry_run:
        events.emit(
            "import.completed",
            tenant_id=job.tenant_id,
            payload={"import_id": job.id, **job.summary, "errors": job.error_count},
        )
    return job


def _rows_with_problems(problems: list[Problem]) -> int:
    return len({problem.row_number for problem in problems})


def _finish_failed(job: ImportJob, reason: str, prepared: Prepared | None = None) -> ImportJob:
    job.status = ImportJob.Status.FAILED
    job.failure = reason
    job.created_count = job.updated_count = job.skipped_count = 0
    if prepared is not None:
        job.total_rows = prepared.total_rows
        job.error_count = _rows_with_problems(prepared.problems)
    job.processed_rows = 0
    job.finished_at = timezone.now()
    job.save()
    progress_set(job.id, "failed", 0, job.total_rows)
    return job


def _store_problems(job: ImportJob, problems: list[Problem]) -> None:
    ImportRowError.objects.bulk_create(
        (
            ImportRowError(
                tenant_id=job.tenant_id,
                job_id=job.id,
                row_number=p.row_number,
                column=p.column[:255],
                value=p.value[:500],
                reason=p.reason[:500],
            )
            for p in problems
        ),
        batch_size=5000,
    )


def apply(job: ImportJob, prepared: Prepared, cleaner: RowCleaner) -> Counts:
    if connection.vendor == "postgresql":
        return PostgresApply(job, prepared, cleaner).run()
    from leads.imports.python_apply import python_apply

    return python_apply(job, prepared, cleaner)


# --- PostgreSQL ----------------------------------------------------------------------------

STAGE = "leads_import_stage"
STAGE_COLUMNS = (
    "email",
    "family_name",
    "given_name",
    "family_name_kana",
    "given_name_kana",
    "phone",
    "job_title",
    "department",
    "company_name",
    "corporate_number",
    "company_domain",
    "prefecture",
    "industry",
    "custom",
    "tags",
    "occurred_at",
    "row_number",
    "company_key",
)
# Lead columns filled from the stage, and how a policy treats an existing lead's value.
LEAD_TEXT_COLUMNS = (
    "family_name",
    "given_name",
    "family_name_kana",
    "given_name_kana",
    "phone",
    "job_title",
    "department",
)


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


class PostgresApply:
    def __init__(self, job: ImportJob, prepared: Prepared, cleaner: RowCleaner) -> None:
        self.job = job
        self.prepared = prepared
        self.cleaner = cleaner
        self.tenant_id = job.tenant_id
        self.now = timezone.now()
        self.actor_id = job.created_by_id
        self.counts = Counts()

    def sql(self, statement: str, params: dict | None = None) -> int:
        with connection.cursor() as cursor:
            cursor.execute(statement, {"t": self.tenant_id, "now": self.now, **(params or {})})
            return cursor.rowcount

    def fetch(self, statement: str, params: dict | None = None) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(statement, {"t": self.tenant_id, "now": self.now, **(params or {})})
            return cursor.fetchall()

    def run(self) -> Counts:
        self.stage()
        try:
            if any(self.prepared.records):
                self.match_companies()
                self.upsert_leads()
                self.transitions()
                self.tags()
                self.campaign()
                self.activities()
                self.consent()
        finally:
            self.sql(f"DROP TABLE IF EXISTS {STAGE}")
        return self.counts

    # Staging ---------------------------------------------------------------------------

    def stage(self) -> None:
        # A temporary table belongs to the role that creates it (here the app role under
        # SET LOCAL ROLE) and to this session only; it is dropped at the end, and ON
        # COMMIT DROP cleans up if anything skips that.
        self.sql(f"DROP TABLE IF EXISTS {STAGE}")
        self.sql(
            f"""CREATE TEMPORARY TABLE {STAGE} (
                email text, family_name text, given_name text, family_name_kana text,
                given_name_kana text, phone text, job_title text, department text,
                company_name text, corporate_number text, company_domain text,
                prefecture text, industry text, custom jsonb, tags text[],
                occurred_at timestamptz, row_number integer, company_key text,
                company_id bigint, lead_id bigint, created boolean, changed boolean
            ) ON COMMIT DROP"""
        )
        key = self.cleaner.company_key
        numbers = self.prepared.row_numbers
        with connection.cursor() as cursor:
            copy_sql = f"COPY {STAGE} ({', '.join(STAGE_COLUMNS)}) FROM STDIN"
            with cursor.cursor.copy(copy_sql) as copy:
                write = copy.write_row
                for index, record in enumerate(self.prepared.records):
                    custom = record[r.CUSTOM]
                    write(
                        (
                            *record[:13],
                            Jsonb(custom) if custom else None,
                            record[r.TAGS],
                            record[r.OCCURRED_AT],
                            numbers[index],
                            key(record[r.COMPANY]) if record[r.COMPANY] else "",
                        )
                    )
        self.sql(f"ANALYZE {STAGE}")

    # Companies -------------------------------------------------------------------------

    def _match(self) -> int:
        """Attach unmatched rows to existing companies: corporate number, then domain,
        then name key (leads.services.companies' order); each key looked up once."""
        company = _table(Company)
        matched = self.sql(
            f"""UPDATE {STAGE} s SET company_id = c.id
                FROM {company} c
                WHERE s.company_id IS NULL AND s.corporate_number <> ''
                  AND c.tenant_id = %(t)s AND c.corporate_number = s.corporate_number"""
        )
        for column, stage_column in (("domain", "company_domain"), ("name_key", "company_key")):
            matched += self.sql(
                f"""WITH wanted AS (
                        SELECT DISTINCT {stage_column} AS value FROM {STAGE}
                        WHERE company_id IS NULL AND {stage_column} <> ''
                    ), found AS (
                        SELECT w.value, (SELECT c.id FROM {company} c
                                         WHERE c.tenant_id = %(t)s AND c.{column} = w.value
                                         ORDER BY c.id LIMIT 1) AS id
                        FROM wanted w
                    )
                    UPDATE {STAGE} s SET company_id = f.id FROM found f
                    WHERE s.company_id IS NULL AND f.id IS NOT NULL
                      AND s.{stage_column} = f.value"""
            )
        return matched

    def match_companies(self) -> None:
        company = _table(Company)
        matched = self._match()
        created = 0
        # New companies need a name; a row with only a domain (from its email) attaches
        # to an existing company or to none. One company per corporate number, else per
        # domain, else per name key — the first row of each names it.
        for key, conflict in (
            ("corporate_number", "ON CONFLICT (tenant_id, corporate_number) "
             "WHERE corporate_number <> '' DO NOTHING"),
            ("company_domain", ""),
            ("company_key", ""),
        ):  # fmt: skip
            created += self.sql(
                f"""INSERT INTO {company} (tenant_id, name, name_key, corporate_number, domain,
                        industry, size_band, revenue_band, prefecture, address, created_at,
                        updated_at)
                    SELECT DISTINCT ON ({key}) %(t)s, company_name, company_key,
                        corporate_number, company_domain, industry, '', '', prefecture, '',
                        %(now)s, %(now)s
                    FROM {STAGE}
                    WHERE company_id IS NULL AND company_name <> '' AND {key} <> ''
                    ORDER BY {key}, row_number
                    {conflict}"""
            )
            if created:
                self._match()
        self.counts.companies_created = created
        self.counts.companies_matched = matched

    # Leads -----------------------------------------------------------------------------

    def upsert_leads(self) -> None:
        lead = _table(Lead)
        policy = self.job.policy
        columns = (
            "tenant_id, email, family_name, given_name, family_name_kana, given_name_kana, "
            "phone, job_title, department, company_id, owner_id, lifecycle_stage, "
            "source_campaign_id, source_channel, email_consent, sales_contact_consent, "
            "custom_fields, merged_into_id, created_at, updated_at"
        )
        values = (
            "%(t)s, s.email, s.family_name, s.given_name, s.family_name_kana, "
            "s.given_name_kana, s.phone, s.job_title, s.department, s.company_id, NULL, "
            "%(stage)s, %(campaign)s, %(channel)s, %(unknown)s, %(unknown)s, "
            "coalesce(s.custom, '{}'::jsonb), NULL, %(now)s, %(now)s"
        )
        params = {
            "stage": LifecycleStage.LEAD,
            "campaign": self.job.campaign_id,
            "channel": Channel.IMPORT,
            "unknown": ConsentStatus.UNKNOWN,
        }
        if policy == ImportJob.Policy.SKIP:
            on_conflict = "DO NOTHING"
        else:
            sets, changed = [], []
            for column in LEAD_TEXT_COLUMNS:
                if policy == ImportJob.Policy.OVERWRITE:
                    sets.append(
                        f"{column} = CASE WHEN EXCLUDED.{column} <> '' "
                        f"THEN EXCLUDED.{column} ELSE l.{column} END"
                    )
                    changed.append(f"(EXCLUDED.{column} <> '' AND EXCLUDED.{column} <> l.{column})")
                else:
                    sets.append(
                        f"{column} = CASE WHEN l.{column} = '' "
                        f"THEN EXCLUDED.{column} ELSE l.{column} END"
                    )
                    changed.append(f"(l.{column} = '' AND EXCLUDED.{column} <> '')")
            if policy == ImportJob.Policy.OVERWRITE:
                sets.append("company_id = coalesce(EXCLUDED.company_id, l.company_id)")
                changed.append(
                    "(EXCLUDED.company_id IS NOT NULL "
                    "AND EXCLUDED.company_id IS DISTINCT FROM l.company_id)"
                )
                sets.append("custom_fields = l.custom_fields || EXCLUDED.custom_fields")
                changed.append("NOT (l.custom_fields @> EXCLUDED.custom_fields)")
            else:
                sets.append("company_id = coalesce(l.company_id, EXCLUDED.company_id)")
                changed.append("(l.company_id IS NULL AND EXCLUDED.company_id IS NOT NULL)")
                sets.append("custom_fields = EXCLUDED.custom_fields || l.custom_fields")
                changed.append(
                    "EXISTS (SELECT 1 FROM jsonb_object_keys(EXCLUDED.custom_fields) k "
                    "WHERE NOT l.custom_fields ? k)"
                )
            sets.append("updated_at = EXCLUDED.updated_at")
            on_conflict = f"DO UPDATE SET {', '.join(sets)} WHERE {' OR '.join(changed)}"
        # Leads with an email: one upsert on the tenant's unique email. RETURNING tells
        # inserts (xmax = 0) from updates; unchanged existing leads return nothing.
        self.sql(
            f"""WITH upserted AS (
                    INSERT INTO {lead} AS l ({columns})
                    SELECT {values} FROM {STAGE} s WHERE s.email <> '' ORDER BY s.row_number
                    ON CONFLICT (tenant_id, email) WHERE email <> '' {on_conflict}
                    RETURNING l.id, l.email, (l.xmax = 0) AS created
                )
                UPDATE {STAGE} s SET lead_id = u.id, created = u.created, changed = true
                FROM upserted u WHERE s.email = u.email""",
            params,
        )
        self.sql(
            f"""UPDATE {STAGE} s SET lead_id = l.id, created = false, changed = false
                FROM {lead} l
                WHERE s.lead_id IS NULL AND s.email <> ''
                  AND l.tenant_id = %(t)s AND l.email = s.email"""
        )
        # Business cards without an email cannot be deduplicated: each is a new lead.
        # Ids come from the sequence first so the stage row knows its lead.
        no_email = self.sql(
            f"""UPDATE {STAGE} SET created = true, changed = true,
                    lead_id = nextval(pg_get_serial_sequence('{Lead._meta.db_table}', 'id'))
                WHERE email = ''"""
        )
        if no_email:
            self.sql(
                f"""INSERT INTO {lead} (id, {columns})
                    SELECT s.lead_id, {values} FROM {STAGE} s WHERE s.email = ''""",
                params,
            )
        rows = self.fetch(
            f"""SELECT count(*) FILTER (WHERE created),
                       count(*) FILTER (WHERE NOT created AND changed),
                       count(*) FILTER (WHERE NOT created AND NOT changed)
                FROM {STAGE}"""
        )
        self.counts.created, self.counts.updated, self.counts.skipped = rows[0]

    def transitions(self) -> None:
        """A new lead's first stage is a transition like any other (reporting counts it)."""
        self.sql(
            f"""INSERT INTO {_table(LifecycleTransition)} (tenant_id, lead_id, from_stage,
                    to_stage, occurred_at, actor_id, channel, reason)
                SELECT %(t)s, lead_id, '', %(stage)s, %(now)s, %(actor)s, %(channel)s,
                       %(reason)s
                FROM {STAGE} WHERE created""",
            {
                "stage": LifecycleStage.LEAD,
                "actor": self.actor_id,
                "channel": Channel.IMPORT,
                "reason": f"import #{self.job.id}",
            },
        )

    def tags(self) -> None:
        if not any(column.target == "lead.tags" for column in self.cleaner.columns):
            return
        # Under "skip" an existing lead stays untouched, tags included.
        touched = "created" if self.job.policy == ImportJob.Policy.SKIP else "true"
        self.sql(
            f"""INSERT INTO {_table(Tag)} (tenant_id, name)
                SELECT DISTINCT %(t)s, name FROM {STAGE}, unnest(tags) AS name
                WHERE tags IS NOT NULL
                ON CONFLICT (tenant_id, name) DO NOTHING"""
        )
        self.sql(
            f"""INSERT INTO {_table(LeadTag)} (tenant_id, lead_id, tag_id)
                SELECT DISTINCT %(t)s, s.lead_id, tag.id
                FROM {STAGE} s, unnest(s.tags) AS name, {_table(Tag)} tag
                WHERE s.tags IS NOT NULL AND {touched}
                  AND tag.tenant_id = %(t)s AND tag.name = name
                ON CONFLICT (tenant_id, lead_id, tag_id) DO NOTHING"""
        )

    def campaign(self) -> None:
        if self.job.campaign_id is None:
            return
        lead_ids = [row[0] for row in self.fetch(f"SELECT lead_id FROM {STAGE}")]
        # Membership belongs to campaigns; leads only tells it, in this transaction.
        results = events.hook(
            "campaign.leads_responded",
            tenant_id=self.tenant_id,
            campaign_id=self.job.campaign_id,
            lead_ids=lead_ids,
            status="responded",
        )
        # campaigns answers each lead's outcome ({lead_id: outcome}).
        self.counts.memberships = sum(len(result) for result in results if result)

    def activities(self) -> None:
        channel = self.job.campaign.channel if self.job.campaign_id else ""
        activity_type = ACTIVITY_FOR_CHANNEL.get(channel, ActivityType.NOTE)
        self.counts.activities = self.sql(
            f"""INSERT INTO {_table(Activity)} (tenant_id, lead_id, visitor_id, type,
                    occurred_at, campaign_id, channel, properties, created_at)
                SELECT %(t)s, lead_id, NULL, %(type)s, coalesce(occurred_at, %(now)s),
                       %(campaign)s, %(channel)s,
                       jsonb_build_object('imported', true, 'import_id', %(job)s,
                                          'file', %(file)s, 'row', row_number),
                       %(now)s
                FROM {STAGE}""",
            {
                "type": activity_type,
                "campaign": self.job.campaign_id,
                "channel": Channel.IMPORT,
                "job": self.job.id,
                "file": self.job.original_name,
            },
        )

    def consent(self) -> None:
        """Grant each purpose the stated basis covers — never over a withdrawal (an old
        list must not undo an opt-out), nor marketing mail to a suppressed address."""
        if not self.job.consent_basis or not self.job.consent_purposes:
            return
        lead, consent = _table(Lead), _table(ConsentEvent)
        for purpose in self.job.consent_purposes:
            column = {
                ConsentPurpose.EMAIL_MARKETING: "email_consent",
                ConsentPurpose.SALES_CONTACT: "sales_contact_consent",
            }[purpose]
            suppressed = ""
            if purpose == ConsentPurpose.EMAIL_MARKETING:
                suppressed = (
                    f"AND NOT EXISTS (SELECT 1 FROM {_table(Suppression)} x "
                    "WHERE x.tenant_id = %(t)s AND x.email = l.email AND l.email <> '')"
                )
            eligible = (
                f"FROM {STAGE} s JOIN {lead} l ON l.tenant_id = %(t)s AND l.id = s.lead_id "
                f"WHERE l.{column} IN (%(unknown)s, %(pending)s) {suppressed}"
            )
            params = {
                "purpose": purpose,
                "granted": ConsentStatus.GRANTED,
                "unknown": ConsentStatus.UNKNOWN,
                "pending": ConsentStatus.PENDING,
                "channel": Channel.IMPORT,
                "basis": self.job.consent_basis,
                "actor": self.actor_id,
                "job": self.job.id,
                "file": self.job.original_name,
            }
            self.counts.consents += self.sql(
                f"""INSERT INTO {consent} (tenant_id, lead_id, purpose, status, channel, basis,
                        proof, occurred_at, actor_id)
                    SELECT %(t)s, l.id, %(purpose)s, %(granted)s, %(channel)s, %(basis)s,
                           jsonb_build_object('import_id', %(job)s, 'file', %(file)s,
                                              'row', s.row_number),
                           %(now)s, %(actor)s
                    {eligible}""",
                params,
            )
            self.sql(
                f"""UPDATE {lead} l SET {column} = %(granted)s
                    FROM {STAGE} s
                    WHERE l.tenant_id = %(t)s AND l.id = s.lead_id
                      AND l.{column} IN (%(unknown)s, %(pending)s) {suppressed}""",
                params,
            )
