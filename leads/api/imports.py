"""Import API: upload a CSV/XLSX lead list, map its columns, preview, run (or dry-run)
in the background, watch progress, download the per-row error report.

    POST   imports/                 upload (multipart: file, sheet) → header, suggested
                                    mapping, detected format and encoding
    GET    imports/ , imports/{id}/ the jobs, one job (with live progress)
    PATCH  imports/{id}/            mapping, policy, campaign, consent basis, sheet
    GET    imports/{id}/preview/    the first rows after mapping, with their problems
    POST   imports/{id}/run/        {"dry_run": false} → queued
    GET    imports/{id}/status/     progress
    GET    imports/{id}/errors.csv/ the error report (row, column, value, reason)

The routes are `import_urlpatterns`, included by leads/api/urls.py.
"""

import csv

from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import TenantScopedViewSet
from accounts.models import Role
from leads.api.import_serializers import (
    ImportConfigureSerializer,
    ImportJobOutputSerializer,
    ImportRunSerializer,
    ImportStatusSerializer,
    ImportUploadSerializer,
)
from leads.imports import services
from leads.models import ImportJob

IMPORT_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.MARKETING})


class _Echo:
    def write(self, value: str) -> str:
        return value


def _spreadsheet_safe(value: str) -> str:
    # The report echoes cells from the upload; a leading = + - @ would run as a formula
    # when the CSV is opened in a spreadsheet.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _job_data(job: ImportJob) -> dict:
    data = ImportJobOutputSerializer(job).data
    live = services.import_status(job=job)
    data.update(status=live["status"], phase=live["phase"])
    data.update(processed_rows=live["processed_rows"], total_rows=live["total_rows"])
    return data


class ImportJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    read_roles = IMPORT_ROLES
    write_roles = IMPORT_ROLES
    serializer_class = ImportJobOutputSerializer
    queryset = ImportJob._base_manager.none()  # model for the schema only
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[ImportJob]:
        return ImportJob.objects.select_related("tenant").order_by("-created_at", "-id")

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return Response(_job_data(self.get_object()))

    @extend_schema(
        summary=_("Upload a lead list (CSV or XLSX)"),
        request={"multipart/form-data": ImportUploadSerializer},
        responses={201: ImportJobOutputSerializer},
    )
    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = ImportUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = services.import_create(
            tenant_id=self.tenant.id,
            file=serializer.validated_data["file"],
            sheet=serializer.validated_data["sheet"],
            origin=self.origin,
        )
        return Response(_job_data(job), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary=_("Set the mapping, dedupe policy, campaign and consent basis"),
        request=ImportConfigureSerializer,
        responses=ImportJobOutputSerializer,
    )
    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        job = self.get_object()
        serializer = ImportConfigureSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        if "campaign" in values:
            values["campaign_id"] = values.pop("campaign")
        job = services.import_configure(job=job, origin=self.origin, **values)
        return Response(_job_data(job))

    @extend_schema(
        summary=_("The first rows after mapping, with the problems the run would report"),
        parameters=[OpenApiParameter("rows", int, description=_("How many rows (≤ 200)."))],
        responses=OpenApiResponse(description=_("header, mapping, targets, rows")),
    )
    @action(detail=True, methods=["get"])
    def preview(self, request: Request, *args, **kwargs) -> Response:
        job = self.get_object()
        try:
            limit = int(request.query_params.get("rows", services.PREVIEW_ROWS))
        except ValueError:
            limit = services.PREVIEW_ROWS
        return Response(services.import_preview(job=job, limit=limit))

    @extend_schema(
        summary=_("Run the import (or a dry run) in the background"),
        request=ImportRunSerializer,
        responses={202: ImportJobOutputSerializer},
    )
    @action(detail=True, methods=["post"])
    def run(self, request: Request, *args, **kwargs) -> Response:
        job = self.get_object()
        serializer = ImportRunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = services.import_start(
            job=job, origin=self.origin, dry_run=serializer.validated_data["dry_run"]
        )
        return Response(_job_data(job), status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary=_("Progress of the job"), responses=ImportStatusSerializer)
    @action(detail=True, methods=["get"], url_path="status", url_name="status")
    def progress(self, request: Request, *args, **kwargs) -> Response:
        return Response(services.import_status(job=self.get_object()))

    @extend_schema(
        summary=_("The per-row error report as CSV"),
        responses={(200, "text/csv"): OpenApiResponse(description=_("row,column,value,reason"))},
    )
    @action(detail=True, methods=["get"], url_path="errors.csv")
    def errors_csv(self, request: Request, *args, **kwargs) -> HttpResponse:
        job = self.get_object()
        writer = csv.writer(_Echo())

        def lines():
            # A BOM, so Excel (Japanese editions included) opens the file as UTF-8.
            yield "\ufeff"
            for row in services.import_error_rows(job=job):
                yield writer.writerow([_spreadsheet_safe(str(value)) for value in row])

        # Read inside the request's tenant scope (a streamed body would run after it).
        response = HttpResponse("".join(lines()), content_type="text/csv; charset=utf-8")
        stem = job.original_name.rsplit(".", 1)[0] or "import"
        response["Content-Disposition"] = (
            f'attachment; filename="import-{job.id}-errors.csv"; '
            f"filename*=UTF-8''{_quote(stem)}-errors.csv"
        )
        return response


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def import_urls():
    from rest_framework.routers import SimpleRouter

    router = SimpleRouter(use_regex_path=False)
    router.register("imports", ImportJobViewSet, basename="import")
    return router.urls


import_urlpatterns: list = import_urls()
