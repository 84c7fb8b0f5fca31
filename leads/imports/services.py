"""Import use cases: upload, configure, preview, run, report.

import_create     upload a file: format and encoding detected, header read,
                  a mapping suggested from the header names
import_configure  mapping, dedupe policy, campaign, consent basis, sheet
import_preview    the first rows as the run would see them, with their problems
import_start      queue the run (or a dry run) as a background job
import_run        the job itself (the Celery task calls it; see engine.py)
import_error_rows the per-row error report, for the CSV download
"""

from collections.abc import Iterator

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.services import Origin, audit_record
from accounts.tenancy import tenant_scope
from leads.imports import engine
from leads.imports import rows as r
from leads.imports.mapping import available_targets, suggest_mapping, validate_mapping
from leads.imports.reading import FileReadError, detect_format, read_table
from leads.models import ConsentPurpose, CustomFieldDefinition, ImportJob, ImportRowError

MAX_UPLOAD_BYTES = getattr(settings, "IMPORT_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
PREVIEW_ROWS = 20
MAX_PREVIEW_ROWS = 200
# States from which a (dry) run may start: a finished dry run or a failure can be re-run.
UNSET = object()  # "not given", where None means "no campaign"
STARTABLE = {ImportJob.Status.UPLOADED, ImportJob.Status.FAILED}


def _custom_fields() -> list[CustomFieldDefinition]:
    return list(CustomFieldDefinition.objects.all())


def import_create(
    *, tenant_id: int, file: UploadedFile, origin: Origin, sheet: str = ""
) -> ImportJob:
    """Store the upload and read its header. Refuses files it cannot read, naming why."""
    if file.size is not None and file.size > MAX_UPLOAD_BYTES:
        raise ValidationError(
            {
                "file": _("The file is larger than %(limit)d MB.")
                % {"limit": MAX_UPLOAD_BYTES // (1024 * 1024)}
            }
        )
    data = file.read()
    if not data:
        raise ValidationError({"file": _("The file is empty.")})
    try:
        file_format = detect_format(file.name or "", data[:8192])
        table = read_table(data, file_format, sheet)
    except FileReadError as exc:
        raise ValidationError({"file": str(exc)}) from exc
    if not table.header:
        raise ValidationError({"file": _("The file has no header row.")})
    with tenant_scope(tenant_id):
        custom_fields = _custom_fields()
        job = ImportJob(
            tenant_id=tenant_id,
            original_name=(file.name or "upload")[:255],
            file_format=file_format,
            encoding=table.encoding,
            sheet=table.sheet,
            header=table.header,
            mapping=suggest_mapping(table.header, custom_fields),
            created_by=origin.actor,
        )
        file.seek(0)
        job.file.save(job.original_name, file, save=False)
        job.summary = {"sheets": table.sheets} if table.sheets else {}
        job.save()
        audit_record(
            tenant_id=tenant_id,
            origin=origin,
            action="import.uploaded",
            target=job,
            metadata={"format": file_format, "encoding": table.encoding},
        )
    return job


def _require_editable(job: ImportJob) -> None:
    if job.status not in STARTABLE and not (
        job.status == ImportJob.Status.SUCCEEDED and job.dry_run
    ):
        raise ValidationError(
            {"status": _("This import has already run (%(status)s).") % {"status": job.status}}
        )


def import_configure(
    *,
    job: ImportJob,
    origin: Origin,
    mapping: dict | None = None,
    policy: str | None = None,
    campaign_id: object = UNSET,
    consent_basis: str | None = None,
    consent_purposes: list[str] | None = None,
    sheet: str | None = None,
) -> ImportJob:
    """Change how the file will be imported, before it runs. A new sheet re-reads the
    header and suggests its mapping again."""
    with tenant_scope(job.tenant_id):
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        _require_editable(job)
        custom_fields = _custom_fields()
        if sheet is not None and sheet != job.sheet and job.file_format == "xlsx":
            try:
                table = engine.read_job_file(job, sheet=sheet)
            except FileReadError as exc:
                raise ValidationError({"sheet": str(exc)}) from exc
            job.sheet, job.header = table.sheet, table.header
            job.mapping = suggest_mapping(table.header, custom_fields)
        if mapping is not None:
            merged = dict.fromkeys(job.header, "")
            merged.update({str(k): str(v or "") for k, v in mapping.items()})
            errors = validate_mapping(merged, job.header, custom_fields)
            if errors:
                raise ValidationError({"mapping": [f"{k}: {v}" for k, v in errors.items()]})
            job.mapping = merged
        if policy is not None:
            if policy not in ImportJob.Policy.values:
                raise ValidationError({"policy": _("Unknown policy %(p)s.") % {"p": policy}})
            job.policy = policy
        if campaign_id is not UNSET:
            job.campaign_id = _campaign_checked(campaign_id)
        if consent_basis is not None:
            job.consent_basis = consent_basis.strip()[:500]
        if consent_purposes is not None:
            wrong = [p for p in consent_purposes if p not in ConsentPurpose.values]
            if wrong:
                raise ValidationError(
                    {"consent_purposes": _("Unknown purpose %(p)s.") % {"p": ", ".join(wrong)}}
                )
            job.consent_purposes = list(dict.fromkeys(consent_purposes))
        if job.consent_purposes and not job.consent_basis:
            raise ValidationError(
                {"consent_basis": _("State the basis on which these people gave consent.")}
            )
        job.save()
        audit_record(tenant_id=job.tenant_id, origin=origin, action="import.configured", target=job)
    return job


def _campaign_checked(campaign_id: int | None) -> int | None:
    """The campaign must be the tenant's own; another tenant's id reads as missing."""
    if campaign_id is None:
        return None
    field = ImportJob._meta.get_field("campaign")
    if not field.related_model.objects.filter(pk=campaign_id).exists():
        raise ValidationError({"campaign": _("No such campaign.")})
    return campaign_id


def import_preview(*, job: ImportJob, limit: int = PREVIEW_ROWS) -> dict:
    """The first `limit` data rows after mapping: each row's values by target and the
    problems the run would report for it."""
    limit = max(1, min(limit, MAX_PREVIEW_ROWS))
    with tenant_scope(job.tenant_id):
        custom_fields = _custom_fields()
        cleaner = engine.row_cleaner_for(job, custom_fields)
        try:
            table = engine.read_job_file(job)
        except FileReadError as exc:
            raise ValidationError({"file": str(exc)}) from exc
        preview = []
        for number, cells in table.rows:
            if r.is_blank(cells):
                continue
            record, problems = cleaner.clean(number, cells)
            preview.append(
                {
                    "row_number": number,
                    "cells": dict(zip(job.header, cells, strict=False)),
                    "values": _named(record) if record is not None else None,
                    "problems": [
                        {"column": p.column, "value": p.value, "reason": p.reason} for p in problems
                    ],
                }
            )
            if len(preview) >= limit:
                break
    return {
        "header": job.header,
        "mapping": job.mapping,
        "targets": available_targets(custom_fields),
        "rows": preview,
    }


def _named(record: list) -> dict:
    names = engine.STAGE_COLUMNS
    values = {names[i]: record[i] for i in range(13) if record[i]}
    if record[r.CUSTOM]:
        values["custom"] = record[r.CUSTOM]
    if record[r.TAGS]:
        values["tags"] = record[r.TAGS]
    if record[r.OCCURRED_AT]:
        values["occurred_at"] = record[r.OCCURRED_AT]
    return values


def import_start(*, job: ImportJob, origin: Origin, dry_run: bool = False) -> ImportJob:
    """Queue the job; it runs after this transaction commits (a rolled-back request
    queues nothing). A dry run counts what would change and changes nothing."""
    from leads.imports.tasks import run_import

    with tenant_scope(job.tenant_id):
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        _require_editable(job)
        errors = validate_mapping(job.mapping, job.header, _custom_fields())
        if errors:
            raise ValidationError({"mapping": [f"{k}: {v}" for k, v in errors.items()]})
        job.status = ImportJob.Status.QUEUED
        job.dry_run = dry_run
        job.failure = ""
        job.processed_rows = 0
        job.save()
        engine.progress_set(job.id, "queued", 0, job.total_rows)
        audit_record(
            tenant_id=job.tenant_id,
            origin=origin,
            action="import.started",
            target=job,
            metadata={"dry_run": dry_run},
        )
        tenant_id, job_id = job.tenant_id, job.id
        transaction.on_commit(lambda: run_import.delay(tenant_id, job_id))
    return job


def import_run(*, tenant_id: int, job_id: int) -> ImportJob | None:
    """The background job (see engine.run for its all-or-nothing design)."""
    with tenant_scope(tenant_id):
        return engine.run(job_id)


def import_status(*, job: ImportJob) -> dict:
    """Progress: the live figures while the job's transaction is open, else the row's."""
    live = engine.progress_get(job.id)
    status = job.status
    processed, total = job.processed_rows, job.total_rows
    phase = ""
    if status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING) and live:
        phase = live.get("phase", "")
        processed = live.get("processed_rows", 0)
        total = live.get("total_rows", 0)
        if phase not in ("queued", "done", "failed"):
            status = ImportJob.Status.RUNNING
    return {"status": status, "phase": phase, "processed_rows": processed, "total_rows": total}


def import_error_rows(*, job: ImportJob) -> Iterator[list[str]]:
    """The error report: header, then one line per problem, in row order."""
    yield [_("row"), _("column"), _("value"), _("reason")]
    with tenant_scope(job.tenant_id):
        queryset = (
            ImportRowError.objects.filter(job=job)
            .order_by("row_number", "id")
            .values_list("row_number", "column", "value", "reason")
        )
        for row_number, column, value, reason in queryset.iterator(chunk_size=5000):
            yield [str(row_number), column, value, reason]
