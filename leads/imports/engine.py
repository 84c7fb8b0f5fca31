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
from leads.normalize import FREE_MAIL_DOMAINS
from leads.scoring.services import rescore_after_commit
from leads.services.lead_bulk import CompanyInput, ConcurrentChange, companies_resolve

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


class Steps:
    """Seconds per step of a run, kept in the job's summary (where the time goes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def timed(self, name: str, func, *args, **kwargs):
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed, 3)


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
    steps = Steps()
    try:
        cleaner = row_cleaner_for(job)
        prepared = steps.timed("read_and_clean", prepare, job, cleaner)
    except FileReadError as exc:
        return _finish_failed(job, str(exc))
    steps.timed("row_errors", _store_problems, job, prepared.problems)
    progress_set(job.id, "applying", prepared.total_rows, prepared.total_rows)
    counts = Counts()
    try:
        with transaction.atomic():
            counts = apply(job, prepared, cleaner, steps)
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
        "steps": steps.seconds,
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


def apply(
    job: ImportJob, prepared: Prepared, cleaner: RowCleaner, steps: Steps | None = None
) -> Counts:
    if connection.vendor == "postgresql":
        return PostgresApply(job, prepared, cleaner, steps or Steps()).run()
    # Other databases (SQLite in development): the same rules through the ORM, a
    # thousand rows at a time. Slower, but `./ryorin start` imports work.
    return OrmApply(job, prepared, steps or Steps()).run()


# --- Any database (the ORM) ----------------------------------------------------------------

# Staged-row slots that are Lead fields, for the ORM path's LeadInput.
_VALUE_SLOTS = (
    ("family_name", r.FAMILY),
    ("given_name", r.GIVEN),
    ("family_name_kana", r.FAMILY_KANA),
    ("given_name_kana", r.GIVEN_KANA),
    ("phone", r.PHONE),
    ("job_title", r.JOB),
    ("department", r.DEPT),
)
ORM_CHUNK = 1000


class OrmApply:
    """The import through leads.services.lead_bulk (lead_upsert's rules, a fixed number
    of queries per thousand rows), then activities, campaign membership and consent
    with the same rules as PostgresApply. Runs in the job's savepoint like it."""

    def __init__(self, job: ImportJob, prepared: Prepared, steps: Steps) -> None:
        self.job = job
        self.prepared = prepared
        self.steps = steps
        self.tenant_id = job.tenant_id
        self.now = timezone.now()
        self.counts = Counts()
        self.purposes = job.consent_purposes if job.consent_basis else []

    def run(self) -> Counts:
        from accounts.services import Origin
        from leads.services.custom_fields import definitions_for_tenant
        from leads.services.lead_bulk import BulkItem, leads_apply_bulk
        from leads.services.leads import LeadInput

        records, numbers = self.prepared.records, self.prepared.row_numbers
        companies = company_inputs(records)
        items = []
        for index, rec in enumerate(records):
            values = {name: rec[slot] for name, slot in _VALUE_SLOTS if rec[slot]}
            if self.job.campaign_id is not None:
                values["source_campaign_id"] = self.job.campaign_id
            company = {}
            if companies[index] is not None and rec[r.COMPANY]:
                company["name"] = rec[r.COMPANY]  # any company key makes it "given"
            clean = LeadInput(
                values=values, company=company, custom=rec[r.CUSTOM], tags=rec[r.TAGS]
            )
            if companies[index] is not None and not company:
                clean.company = {"domain": companies[index].domain}
            items.append(
                BulkItem(index, rec[r.EMAIL], clean, companies[index], {"row": numbers[index]})
            )
        origin = Origin(actor=self.job.created_by)
        definitions = definitions_for_tenant(self.tenant_id)
        results: list = [None] * len(items)
        stats: dict = {}
        outcomes = []
        for start in range(0, len(items), ORM_CHUNK):
            outcomes += self.steps.timed(
                "leads",
                leads_apply_bulk,
                tenant_id=self.tenant_id,
                items=items[start : start + ORM_CHUNK],
                channel=Channel.IMPORT,
                origin=origin,
                policy=self.job.policy,
                definitions=definitions,
                results=results,
                reason_created=f"import #{self.job.id}",
                emit_events=False,
                stats=stats,
            )
        self._report_refused(results)
        self.counts.companies_created = stats.get("companies_created", 0)
        self.counts.companies_matched = stats.get("companies_matched", 0)
        self.counts.created = sum(1 for o in outcomes if o.created)
        self.counts.updated = sum(1 for o in outcomes if not o.created and o.changed)
        self.counts.skipped = sum(1 for o in outcomes if not o.created and not o.changed)
        self.steps.timed("campaign", self.campaign, outcomes)
        self.steps.timed("activities", self.activities, outcomes, records)
        self.steps.timed("consent", self.consent, outcomes, records)
        return self.counts

    def _report_refused(self, results: list) -> None:
        """Rows the lead rules refused while applying (a required custom field that is
        not mapped): reported like the cleaning's problems, the others kept."""
        refused = [
            Problem(self.prepared.row_numbers[result["index"]], column, "", "; ".join(reasons))
            for result in results
            if result is not None
            for column, reasons in result["errors"].items()
        ]
        if refused:
            self.prepared.problems.extend(refused)
            _store_problems(self.job, refused)

    def campaign(self, outcomes: list) -> None:
        if self.job.campaign_id is None or not outcomes:
            return
        results = events.hook(
            "campaign.leads_responded",
            tenant_id=self.tenant_id,
            campaign_id=self.job.campaign_id,
            lead_ids=[o.lead_id for o in outcomes],
            status="responded",
        )
        self.counts.memberships = sum(len(result) for result in results if result)

    def activities(self, outcomes: list, records: list[list]) -> None:
        import datetime

        channel = self.job.campaign.channel if self.job.campaign_id else ""
        activity_type = ACTIVITY_FOR_CHANNEL.get(channel, ActivityType.NOTE)
        rows = []
        for outcome in outcomes:
            occurred = records[outcome.index][r.OCCURRED_AT]
            rows.append(
                Activity(
                    tenant_id=self.tenant_id,
                    lead_id=outcome.lead_id,
                    type=activity_type,
                    occurred_at=datetime.datetime.fromisoformat(occurred) if occurred else self.now,
                    campaign_id=self.job.campaign_id,
                    channel=Channel.IMPORT,
                    properties={"imported": True, "import_id": self.job.id,
                                "file": self.job.original_name, "row": outcome.extra["row"]},
                    created_at=self.now,
                )
            )  # fmt: skip
        Activity.objects.bulk_create(rows, batch_size=ORM_CHUNK)
        self.counts.activities = len(rows)

    def consent(self, outcomes: list, records: list[list]) -> None:
        """PostgresApply.consent's rules: granted for new leads (mail: to an address
        that is not suppressed); existing leads unless they withdrew or are suppressed;
        under "skip" existing leads are left as they are."""
        if not self.purposes or not outcomes:
            return
        emails = [records[o.index][r.EMAIL] for o in outcomes if records[o.index][r.EMAIL]]
        suppressed = set()
        for start in range(0, len(emails), ORM_CHUNK):
            chunk = emails[start : start + ORM_CHUNK]
            suppressed |= set(
                Suppression.objects.filter(email__in=chunk).values_list("email", flat=True)
            )
        skip = self.job.policy == ImportJob.Policy.SKIP
        events_rows = []
        for purpose in self.purposes:
            column = CONSENT_COLUMN[purpose]
            eligible = [
                o
                for o in outcomes
                if (o.created or not skip)
                and not (
                    purpose == ConsentPurpose.EMAIL_MARKETING
                    and (not records[o.index][r.EMAIL] or records[o.index][r.EMAIL] in suppressed)
                )
            ]
            ids = [o.lead_id for o in eligible]
            open_ids = set()
            for start in range(0, len(ids), ORM_CHUNK):
                chunk = ids[start : start + ORM_CHUNK]
                queryset = Lead.objects.filter(
                    pk__in=chunk,
                    **{f"{column}__in": [ConsentStatus.UNKNOWN, ConsentStatus.PENDING]},
                )
                open_ids |= set(queryset.values_list("pk", flat=True))
                queryset.update(**{column: ConsentStatus.GRANTED})
            for outcome in eligible:
                if outcome.lead_id in open_ids:
                    events_rows.append(
                        ConsentEvent(
                            tenant_id=self.tenant_id, lead_id=outcome.lead_id, purpose=purpose,
                            status=ConsentStatus.GRANTED, channel=Channel.IMPORT,
                            basis=self.job.consent_basis,
                            proof={"import_id": self.job.id, "file": self.job.original_name,
                                   "row": outcome.extra["row"]},
                            occurred_at=self.now, actor_id=self.job.created_by_id,
                        )
                    )  # fmt: skip
        ConsentEvent.objects.bulk_create(events_rows, batch_size=ORM_CHUNK)
        self.counts.consents = len(events_rows)


def company_inputs(records: list[list]) -> list[CompanyInput | None]:
    """Cleaned rows' company keys for companies_resolve (None: nothing to match on)."""
    inputs: list[CompanyInput | None] = []
    append = inputs.append
    for rec in records:
        name, number, domain = rec[r.COMPANY], rec[r.CORPORATE_NUMBER], rec[r.DOMAIN]
        if domain in FREE_MAIL_DOMAINS:
            domain = ""  # a free-mail "website" says nothing about the company
        if name or number or domain:
            append(CompanyInput(name, number, domain, rec[r.INDUSTRY], rec[r.PREFECTURE]))
        else:
            append(None)
    return inputs


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
    "lead_id",
    "created",
    "company_id",
    "suppressed",
)
# Lead columns a policy may fill or overwrite on an existing lead.
LEAD_TEXT_COLUMNS = (
    "family_name",
    "given_name",
    "family_name_kana",
    "given_name_kana",
    "phone",
    "job_title",
    "department",
)
CONSENT_COLUMN = {
    ConsentPurpose.EMAIL_MARKETING: "email_consent",
    ConsentPurpose.SALES_CONTACT: "sales_contact_consent",
}


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


class PostgresApply:
    """Resolves companies and lead ids with a few indexed lookups (every key of the file
    at once), stages the rows with their ids, then writes each table in one statement.
    The staging table is written once (COPY) and only read afterwards."""

    def __init__(
        self, job: ImportJob, prepared: Prepared, cleaner: RowCleaner, steps: Steps
    ) -> None:
        self.steps = steps
        self.job = job
        self.prepared = prepared
        self.cleaner = cleaner
        self.tenant_id = job.tenant_id
        self.now = timezone.now()
        self.actor_id = job.created_by_id
        self.counts = Counts()
        self.purposes = job.consent_purposes if job.consent_basis else []

    def sql(self, statement: str, params: dict | None = None) -> int:
        with connection.cursor() as cursor:
            cursor.execute(statement, {"t": self.tenant_id, "now": self.now, **(params or {})})
            return cursor.rowcount

    def fetch(self, statement: str, params: dict | None = None) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(statement, {"t": self.tenant_id, "now": self.now, **(params or {})})
            return cursor.fetchall()

    def run(self) -> Counts:
        if not self.prepared.records:
            return self.counts
        # One import per tenant at a time: the lookups below stay true until commit.
        self.sql("SELECT pg_advisory_xact_lock(hashtext('leads.import'), %(t)s::int)")
        timed = self.steps.timed
        lead_ids, created = timed("resolve_leads", self.resolve_leads)
        company_ids = timed("companies", self.resolve_companies, created)
        timed("stage", self.stage, company_ids, lead_ids, created)
        timed("insert_leads", self.insert_leads)
        timed("update_leads", self.update_leads)
        timed("transitions", self.transitions)
        timed("tags", self.tags)
        timed("campaign", self.campaign)
        timed("activities", self.activities)
        timed("consent", self.consent)
        # Every lead of the file is scored once the job commits (a dry run never does).
        rescore_after_commit(self.tenant_id, lead_ids)
        # On an error the savepoint's rollback drops the table (it was created in it);
        # a DROP there would only hide the error behind "transaction is aborted".
        self.sql(f"DROP TABLE IF EXISTS {STAGE}")
        return self.counts

    def _new_ids(self, model, count: int) -> list[int]:
        if not count:
            return []
        rows = self.fetch(
            "SELECT nextval(pg_get_serial_sequence(%(table)s, 'id')) "
            "FROM generate_series(1, %(n)s)",
            {"table": model._meta.db_table, "n": count},
        )
        return [row[0] for row in rows]

    # Companies -------------------------------------------------------------------------

    def resolve_companies(self, created: list[bool]) -> list[int | None]:
        """Each row's company, by the shared matcher (leads.services.lead_bulk): an
        existing one by corporate number, then domain (never a free-mail one), then name
        key — the order of leads.services.companies — else a new one if the row names
        it. Rows are taken in file order, so a company created for one row is found by
        the next; a matched company's empty fields are filled, as upserts do. Only rows
        whose lead may take the company (lead_upsert's needs_company) are matched: a new
        lead; an existing one unless the policy is skip, or fill_empty and it has one."""
        inputs = company_inputs(self.prepared.records)
        policy = self.job.policy
        if policy != ImportJob.Policy.OVERWRITE:
            with_company = self.existing_with_company
            for index, is_new in enumerate(created):
                if not is_new and (
                    policy == ImportJob.Policy.SKIP
                    or self.prepared.records[index][r.EMAIL] in with_company
                ):
                    inputs[index] = None
        resolution = companies_resolve(tenant_id=self.tenant_id, inputs=inputs, now=self.now)
        self.counts.companies_created = resolution.created
        self.counts.companies_matched = resolution.matched
        return resolution.ids

    # Leads -----------------------------------------------------------------------------

    def resolve_leads(self) -> tuple[list[int], list[bool]]:
        """Existing leads by normalised email (one indexed lookup for the whole file);
        new leads get their ids from the sequence now, so every staged row knows its
        lead before anything is written."""
        records = self.prepared.records
        emails = [rec[r.EMAIL] for rec in records if rec[r.EMAIL]]
        rows = (
            self.fetch(
                f"""SELECT email, id, company_id IS NOT NULL FROM {_table(Lead)}
                    WHERE tenant_id = %(t)s AND email <> '' AND email = ANY(%(emails)s)""",
                {"emails": emails},
            )
            if emails
            else []
        )
        existing = {email: lead_id for email, lead_id, _has in rows}
        self.existing_with_company = {email for email, _id, has in rows if has}
        created = [not rec[r.EMAIL] or rec[r.EMAIL] not in existing for rec in records]
        new_ids = iter(self._new_ids(Lead, sum(created)))
        lead_ids = [
            next(new_ids) if is_new else existing[rec[r.EMAIL]]
            for rec, is_new in zip(records, created, strict=True)
        ]
        self.counts.created = sum(created)
        return lead_ids, created

    def suppressed(self) -> set[str]:
        """The file's addresses on the suppression list (one indexed lookup): marketing
        mail consent is never granted to them."""
        emails = [rec[r.EMAIL] for rec in self.prepared.records if rec[r.EMAIL]]
        if not emails or ConsentPurpose.EMAIL_MARKETING not in self.purposes:
            return set()
        rows = self.fetch(
            f"""SELECT email FROM {_table(Suppression)}
                WHERE tenant_id = %(t)s AND email = ANY(%(emails)s)""",
            {"emails": emails},
        )
        return {row[0] for row in rows}

    def stage(self, company_ids: list, lead_ids: list[int], created: list[bool]) -> None:
        # A temporary table belongs to the role that creates it (here the app role under
        # SET LOCAL ROLE) and to this session only; dropped at the end (ON COMMIT DROP
        # if anything skips that). It holds no tenant column: it never outlives the job.
        self.sql(f"DROP TABLE IF EXISTS {STAGE}")
        self.sql(
            f"""CREATE TEMPORARY TABLE {STAGE} (
                email text, family_name text, given_name text, family_name_kana text,
                given_name_kana text, phone text, job_title text, department text,
                company_name text, corporate_number text, company_domain text,
                prefecture text, industry text, custom jsonb, tags text[],
                occurred_at timestamptz, row_number integer, lead_id bigint,
                created boolean, company_id bigint, suppressed boolean
            ) ON COMMIT DROP"""
        )
        numbers = self.prepared.row_numbers
        suppressed = self.suppressed()
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
                            lead_ids[index],
                            created[index],
                            company_ids[index],
                            record[r.EMAIL] in suppressed,
                        )
                    )
        self.sql(f"ANALYZE {STAGE}")

    def _consent_value(self, purpose: str) -> str:
        """A new lead's consent column: granted when the stated basis covers the purpose
        (marketing mail: only to an address that is not suppressed)."""
        if purpose not in self.purposes:
            return "%(unknown)s"
        if purpose == ConsentPurpose.EMAIL_MARKETING:
            return (
                "CASE WHEN s.email <> '' AND NOT s.suppressed THEN %(granted)s ELSE %(unknown)s END"
            )
        return "%(granted)s"

    def insert_leads(self) -> None:
        inserted = self.sql(
            f"""INSERT INTO {_table(Lead)} (id, tenant_id, email, family_name, given_name,
                    family_name_kana, given_name_kana, phone, job_title, department,
                    company_id, owner_id, lifecycle_stage, source_campaign_id,
                    source_channel, email_consent, sales_contact_consent, custom_fields,
                    merged_into_id, created_at, updated_at)
                SELECT s.lead_id, %(t)s, s.email, s.family_name, s.given_name,
                       s.family_name_kana, s.given_name_kana, s.phone, s.job_title,
                       s.department, s.company_id, NULL, %(stage)s, %(campaign)s, %(channel)s,
                       {self._consent_value(ConsentPurpose.EMAIL_MARKETING)},
                       {self._consent_value(ConsentPurpose.SALES_CONTACT)},
                       coalesce(s.custom, '{{}}'::jsonb), NULL, %(now)s, %(now)s
                FROM {STAGE} s WHERE s.created
                ON CONFLICT (tenant_id, email) WHERE email <> '' DO NOTHING""",
            {
                "stage": LifecycleStage.LEAD,
                "campaign": self.job.campaign_id,
                "channel": Channel.IMPORT,
                "unknown": ConsentStatus.UNKNOWN,
                "granted": ConsentStatus.GRANTED,
            },
        )
        if inserted != self.counts.created:
            raise ConcurrentChange(
                "A lead with one of the file's email addresses was created while the import "
                "ran; run the import again."
            )

    def update_leads(self) -> None:
        """Existing leads, by policy: skip leaves them be; fill_empty fills blank fields
        only; overwrite replaces fields the file has a value for (a blank cell never
        erases). Only leads that actually change are written and counted."""
        existing = len(self.prepared.records) - self.counts.created
        policy = self.job.policy
        if policy == ImportJob.Policy.SKIP or not existing:
            self.counts.skipped = existing
            return
        sets, changed = [], []
        overwrite = policy == ImportJob.Policy.OVERWRITE
        for column in LEAD_TEXT_COLUMNS:
            if overwrite:
                sets.append(
                    f"{column} = CASE WHEN s.{column} <> '' THEN s.{column} ELSE l.{column} END"
                )
                changed.append(f"(s.{column} <> '' AND s.{column} <> l.{column})")
            else:
                sets.append(
                    f"{column} = CASE WHEN l.{column} = '' THEN s.{column} ELSE l.{column} END"
                )
                changed.append(f"(l.{column} = '' AND s.{column} <> '')")
        if overwrite:
            sets.append("company_id = coalesce(s.company_id, l.company_id)")
            changed.append(
                "(s.company_id IS NOT NULL AND s.company_id IS DISTINCT FROM l.company_id)"
            )
            sets.append("custom_fields = l.custom_fields || coalesce(s.custom, '{}')")
            changed.append("NOT (l.custom_fields @> coalesce(s.custom, '{}'))")
        else:
            sets.append("company_id = coalesce(l.company_id, s.company_id)")
            changed.append("(l.company_id IS NULL AND s.company_id IS NOT NULL)")
            sets.append("custom_fields = coalesce(s.custom, '{}') || l.custom_fields")
            changed.append(
                "EXISTS (SELECT 1 FROM jsonb_object_keys(coalesce(s.custom, '{}')) k "
                "WHERE NOT l.custom_fields ? k)"
            )
        if self.job.campaign_id is not None:
            # First touch, as lead_upsert: the source campaign only of a lead without one.
            sets.append("source_campaign_id = coalesce(l.source_campaign_id, %(campaign)s)")
            changed.append("l.source_campaign_id IS NULL")
        sets.append("updated_at = %(now)s")
        updated = self.sql(
            f"""UPDATE {_table(Lead)} l SET {", ".join(sets)}
                FROM {STAGE} s
                WHERE l.tenant_id = %(t)s AND l.id = s.lead_id AND NOT s.created
                  AND ({" OR ".join(changed)})""",
            {"campaign": self.job.campaign_id},
        )  # fmt: skip
        self.counts.updated = updated
        self.counts.skipped = existing - updated

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
        touched = "s.created" if self.job.policy == ImportJob.Policy.SKIP else "true"
        self.sql(
            f"""INSERT INTO {_table(Tag)} (tenant_id, name)
                SELECT DISTINCT %(t)s, name FROM {STAGE}, unnest(tags) AS name
                WHERE tags IS NOT NULL
                ON CONFLICT (tenant_id, name) DO NOTHING"""
        )
        self.sql(
            f"""INSERT INTO {_table(LeadTag)} (tenant_id, lead_id, tag_id)
                SELECT DISTINCT %(t)s, s.lead_id, tag.id
                FROM {STAGE} s, unnest(s.tags) AS n(name), {_table(Tag)} tag
                WHERE s.tags IS NOT NULL AND {touched}
                  AND tag.tenant_id = %(t)s AND tag.name = n.name
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
        """One ConsentEvent per lead and purpose the stated basis grants. New leads were
        inserted granted already (marketing mail only to an address that is not
        suppressed): their events come from the staging table alone, both purposes in
        one statement. Existing leads are granted unless they withdrew (an old list must
        not undo an opt-out) or, for mail, the address is suppressed: each purpose is one
        UPDATE whose RETURNING rows are the events, so the two always agree. Under
        "skip" existing leads are left as they are."""
        if not self.purposes:
            return
        params = {
            "purposes": list(self.purposes),
            "mail": ConsentPurpose.EMAIL_MARKETING,
            "granted": ConsentStatus.GRANTED,
            "unknown": ConsentStatus.UNKNOWN,
            "pending": ConsentStatus.PENDING,
            "channel": Channel.IMPORT,
            "basis": self.job.consent_basis,
            "actor": self.actor_id,
            "job": self.job.id,
            "file": self.job.original_name,
        }
        columns = """(tenant_id, lead_id, purpose, status, channel, basis, proof, occurred_at,
                      actor_id)"""
        proof = """jsonb_build_object('import_id', %(job)s, 'file', %(file)s,
                                      'row', s.row_number)"""
        self.counts.consents += self.sql(
            f"""INSERT INTO {_table(ConsentEvent)} {columns}
                SELECT %(t)s, s.lead_id, p.purpose, %(granted)s, %(channel)s, %(basis)s,
                       {proof}, %(now)s, %(actor)s
                FROM {STAGE} s CROSS JOIN unnest(%(purposes)s::text[]) AS p(purpose)
                WHERE s.created
                  AND (p.purpose <> %(mail)s OR (s.email <> '' AND NOT s.suppressed))""",
            params,
        )
        if self.job.policy == ImportJob.Policy.SKIP or self.counts.created == len(
            self.prepared.records
        ):
            return
        lead = _table(Lead)
        for purpose in self.purposes:
            column = CONSENT_COLUMN[purpose]
            not_suppressed = (
                "AND s.email <> '' AND NOT s.suppressed"
                if purpose == ConsentPurpose.EMAIL_MARKETING
                else ""
            )
            self.counts.consents += self.sql(
                f"""WITH granted AS (
                        UPDATE {lead} l SET {column} = %(granted)s
                        FROM {STAGE} s
                        WHERE l.tenant_id = %(t)s AND l.id = s.lead_id AND NOT s.created
                          AND l.{column} IN (%(unknown)s, %(pending)s) {not_suppressed}
                        RETURNING l.id AS lead_id, s.row_number
                    )
                    INSERT INTO {_table(ConsentEvent)} {columns}
                    SELECT %(t)s, s.lead_id, %(purpose)s, %(granted)s, %(channel)s, %(basis)s,
                           {proof}, %(now)s, %(actor)s
                    FROM granted s""",
                {**params, "purpose": purpose},
            )
