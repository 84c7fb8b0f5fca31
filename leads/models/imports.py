"""Lead-list imports (CSV/XLSX): the job, its progress and its per-row errors."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import TenantModel


class ImportJob(TenantModel):
    class Status(models.TextChoices):
        UPLOADED = "uploaded", _("Uploaded")
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    class Policy(models.TextChoices):
        """What to do with a row whose lead already exists (same email)."""

        SKIP = "skip", _("Skip existing leads")
        FILL_EMPTY = "fill_empty", _("Fill only empty fields")
        OVERWRITE = "overwrite", _("Overwrite fields")

    file = models.FileField(upload_to="imports/%Y/%m/")
    original_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=10)  # csv / xlsx
    encoding = models.CharField(max_length=40, blank=True)  # detected, for CSV
    header = models.JSONField(default=list)  # the file's column names
    mapping = models.JSONField(default=dict)  # column name → "lead.email", "custom.x", ""
    policy = models.CharField(max_length=20, choices=Policy.choices, default=Policy.FILL_EMPTY)
    campaign = models.ForeignKey(
        "campaigns.Campaign", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    consent_basis = models.CharField(_("stated consent basis"), max_length=500, blank=True)
    # Which consents the stated basis covers (ConsentPurpose values); empty = record none.
    consent_purposes = models.JSONField(_("consent purposes"), default=list, blank=True)
    sheet = models.CharField(_("sheet"), max_length=255, blank=True)  # XLSX: the one read
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.UPLOADED)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    # Further figures of the last run: companies created/matched, duplicate rows merged…
    summary = models.JSONField(default=dict, blank=True)
    failure = models.TextField(blank=True)  # why the whole job failed, if it did
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("import")
        verbose_name_plural = _("imports")
        indexes = [models.Index(fields=["tenant", "-created_at"], name="import_tenant_created_idx")]

    def __str__(self) -> str:
        return self.original_name


class ImportRowError(TenantModel):
    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="row_errors")
    row_number = models.PositiveIntegerField()  # as a spreadsheet shows it (header = 1)
    column = models.CharField(max_length=255, blank=True)
    value = models.CharField(max_length=500, blank=True)
    reason = models.CharField(max_length=500)

    class Meta:
        verbose_name = _("import row error")
        verbose_name_plural = _("import row errors")
        indexes = [models.Index(fields=["tenant", "job", "row_number"], name="import_error_idx")]

    def __str__(self) -> str:
        return f"row {self.row_number}: {self.reason}"
