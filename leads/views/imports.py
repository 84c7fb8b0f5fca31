"""The import wizard: upload → map columns → preview → options → run → progress → result.

Each step is a page of its own (a reload or the back button never loses the job): the
job row holds the state, leads.imports.services does every step. Marketing, admins and
owners import; the progress bar polls the job's status with htmx.
"""

import csv

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_POST

from accounts.services import Origin
from accounts.web import error_messages, tenant_view
from leads import selectors
from leads.forms import ImportMappingForm, ImportOptionsForm, ImportUploadForm
from leads.imports import services
from leads.imports.mapping import available_targets
from leads.models import ImportJob
from leads.views.common import MARKETING_ROLES, campaign_choices
from leads.views.lists import spreadsheet_safe

RECENT_IMPORTS = 20
FINISHED = (ImportJob.Status.SUCCEEDED, ImportJob.Status.FAILED)
#: Steps of the wizard, for the step indicator.
STEPS = ["upload", "mapping", "preview", "options", "result"]


def _job(pk: int) -> ImportJob:
    return get_object_or_404(ImportJob.objects.all(), pk=pk)


def _editable(job: ImportJob) -> bool:
    return job.status in services.STARTABLE or (
        job.status == ImportJob.Status.SUCCEEDED and job.dry_run
    )


def _step_context(job: ImportJob | None, step: str) -> dict:
    return {"job": job, "step": step, "steps": STEPS, "step_index": STEPS.index(step)}


def _add_errors(form, exc: ValidationError) -> None:
    for field, field_messages in exc.message_dict.items():
        target = field if field in form.fields else None
        for message in field_messages:
            form.add_error(target, message)


@tenant_view(roles=MARKETING_ROLES)
def index(request: HttpRequest) -> HttpResponse:
    """Step 1: upload; and the recent imports."""
    form = ImportUploadForm()
    status = 200
    if request.method == "POST":
        form = ImportUploadForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                with transaction.atomic():
                    job = services.import_create(
                        tenant_id=request.tenant.id,
                        file=form.cleaned_data["file"],
                        origin=Origin.from_request(request),
                    )
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                return redirect("leads:import_mapping", tenant=request.tenant.slug, pk=job.pk)
        status = 400
    jobs = ImportJob.objects.select_related("created_by").order_by("-created_at", "-id")
    return TemplateResponse(
        request,
        "leads/imports/upload.html",
        {**_step_context(None, "upload"), "form": form, "jobs": list(jobs[:RECENT_IMPORTS])},
        status=status,
    )


def _mapping_form(job: ImportJob, data=None) -> ImportMappingForm:
    targets = available_targets(list(selectors.custom_field_list()))
    initial = {f"col_{i}": job.mapping.get(name, "") for i, name in enumerate(job.header)}
    return ImportMappingForm(
        data, header=job.header, targets=list(targets.items()), initial=initial
    )


@tenant_view(roles=MARKETING_ROLES, isolation_model=ImportJob)
def mapping(request: HttpRequest, pk: int) -> HttpResponse:
    """Step 2: what each column fills, the suggestions pre-selected."""
    job = _job(pk)
    if not _editable(job):
        return redirect("leads:import_detail", tenant=request.tenant.slug, pk=job.pk)
    form = _mapping_form(job)
    status = 200
    if request.method == "POST":
        form = _mapping_form(job, request.POST)
        if form.is_valid():
            try:
                with transaction.atomic():
                    services.import_configure(
                        job=job, mapping=form.mapping(), origin=Origin.from_request(request)
                    )
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                return redirect("leads:import_preview", tenant=request.tenant.slug, pk=job.pk)
        status = 400
    return TemplateResponse(
        request,
        "leads/imports/mapping.html",
        {**_step_context(job, "mapping"), "form": form},
        status=status,
    )


@tenant_view(roles=MARKETING_ROLES, isolation_model=ImportJob)
def preview(request: HttpRequest, pk: int) -> HttpResponse:
    """Step 3: the first rows as the run will see them, problems marked per cell."""
    job = _job(pk)
    try:
        with transaction.atomic():
            data = services.import_preview(job=job)
    except ValidationError as exc:
        for message in error_messages(exc):
            messages.error(request, message)
        return redirect("leads:import_mapping", tenant=request.tenant.slug, pk=job.pk)
    rows = []
    for row in data["rows"]:
        problems: dict[str, list[str]] = {}
        for problem in row["problems"]:
            problems.setdefault(problem["column"], []).append(problem["reason"])
        cells = [
            {"value": row["cells"].get(name, ""), "problems": problems.pop(name, [])}
            for name in job.header
        ]
        rows.append(
            {
                "number": row["row_number"],
                "cells": cells,
                # Problems of no single column (a row without email or name).
                "row_problems": [m for messages_ in problems.values() for m in messages_],
                "ok": not row["problems"],
            }
        )
    targets = data["targets"]
    columns = [
        {"name": name, "target": targets.get(job.mapping.get(name, ""), "")} for name in job.header
    ]
    return TemplateResponse(
        request,
        "leads/imports/preview.html",
        {
            **_step_context(job, "preview"),
            "columns": columns,
            "rows": rows,
            "problem_rows": sum(1 for row in rows if not row["ok"]),
            "editable": _editable(job),
        },
    )


@tenant_view(roles=MARKETING_ROLES, isolation_model=ImportJob)
def options(request: HttpRequest, pk: int) -> HttpResponse:
    """Step 4: dedupe policy, campaign, consent basis, dry run; then run."""
    job = _job(pk)
    if not _editable(job):
        return redirect("leads:import_detail", tenant=request.tenant.slug, pk=job.pk)
    choices = campaign_choices()
    initial = {
        "policy": job.policy,
        "campaign": str(job.campaign_id or ""),
        "consent_basis": job.consent_basis,
        "consent_purposes": job.consent_purposes,
    }
    form = ImportOptionsForm(initial=initial, campaign_choices=choices)
    status = 200
    if request.method == "POST":
        form = ImportOptionsForm(request.POST, campaign_choices=choices)
        if form.is_valid():
            origin = Origin.from_request(request)
            try:
                with transaction.atomic():
                    job = services.import_configure(
                        job=job,
                        origin=origin,
                        policy=form.cleaned_data["policy"],
                        campaign_id=form.campaign_id(),
                        consent_basis=form.cleaned_data["consent_basis"],
                        consent_purposes=form.cleaned_data["consent_purposes"],
                    )
                    services.import_start(
                        job=job, origin=origin, dry_run=form.cleaned_data["dry_run"]
                    )
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                return redirect("leads:import_detail", tenant=request.tenant.slug, pk=job.pk)
        status = 400
    return TemplateResponse(
        request,
        "leads/imports/options.html",
        {**_step_context(job, "options"), "form": form},
        status=status,
    )


def _progress_context(job: ImportJob) -> dict:
    live = services.import_status(job=job)
    total, processed = live["total_rows"], live["processed_rows"]
    percent = 100 if live["status"] in FINISHED else (processed * 100 // total if total else 0)
    return {
        "job": job,
        "live": live,
        "percent": min(percent, 100),
        "finished": live["status"] in FINISHED,
        "succeeded": live["status"] == ImportJob.Status.SUCCEEDED,
        "summary": job.summary or {},
        "editable": _editable(job),
    }


@tenant_view(roles=MARKETING_ROLES, isolation_model=ImportJob)
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Steps 5–6: progress while it runs, then the result."""
    job = _job(pk)
    return TemplateResponse(
        request,
        "leads/imports/detail.html",
        {**_step_context(job, "result"), **_progress_context(job)},
    )


@tenant_view(roles=MARKETING_ROLES, isolation_model=ImportJob)
def progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress partial the bar polls; once finished it stops polling."""
    job = _job(pk)
    return TemplateResponse(request, "leads/imports/_progress.html", _progress_context(job))


@tenant_view(roles=MARKETING_ROLES, isolation_model=ImportJob)
@require_POST
def rerun(request: HttpRequest, pk: int) -> HttpResponse:
    """After a dry run: run it for real with the same settings."""
    job = _job(pk)
    try:
        with transaction.atomic():
            services.import_start(job=job, origin=Origin.from_request(request), dry_run=False)
    except ValidationError as exc:
        for message in error_messages(exc):
            messages.error(request, message)
    return redirect("leads:import_detail", tenant=request.tenant.slug, pk=job.pk)


class _Echo:
    def write(self, value: str) -> str:
        return value


@tenant_view(roles=MARKETING_ROLES, isolation_model=ImportJob)
def errors_csv(request: HttpRequest, pk: int) -> HttpResponse:
    job = _job(pk)
    writer = csv.writer(_Echo())
    # A BOM for Excel; built inside the tenant scope (the report is at most one line per
    # problem of the file, read in chunks by the service).
    body = "\ufeff" + "".join(
        writer.writerow([spreadsheet_safe(str(value)) for value in row])
        for row in services.import_error_rows(job=job)
    )
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
    return response
