"""Serializers of the import API: the job as the caller sees it, and what may change."""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from accounts.api.serializer_base import ModelSerializer
from leads.models import ConsentPurpose, ImportJob


class ImportJobOutputSerializer(ModelSerializer):
    campaign = serializers.IntegerField(source="campaign_id", allow_null=True, read_only=True)

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "original_name",
            "file_format",
            "encoding",
            "sheet",
            "header",
            "mapping",
            "policy",
            "campaign",
            "consent_basis",
            "consent_purposes",
            "dry_run",
            "status",
            "total_rows",
            "processed_rows",
            "created_count",
            "updated_count",
            "skipped_count",
            "error_count",
            "summary",
            "failure",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text=_("CSV (any common encoding) or XLSX."))
    sheet = serializers.CharField(required=False, allow_blank=True, default="")


class ImportConfigureSerializer(serializers.Serializer):
    mapping = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text=_('Column name → target ("lead.email", "custom.<key>", "" to ignore).'),
    )
    policy = serializers.ChoiceField(choices=ImportJob.Policy.choices, required=False)
    campaign = serializers.IntegerField(required=False, allow_null=True)
    consent_basis = serializers.CharField(required=False, allow_blank=True, max_length=500)
    consent_purposes = serializers.ListField(
        child=serializers.ChoiceField(choices=ConsentPurpose.choices), required=False
    )
    sheet = serializers.CharField(required=False, allow_blank=True, max_length=255)


class ImportRunSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(default=False)


class ImportStatusSerializer(serializers.Serializer):
    status = serializers.CharField()
    phase = serializers.CharField()
    processed_rows = serializers.IntegerField()
    total_rows = serializers.IntegerField()
