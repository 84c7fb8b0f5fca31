"""Serializers of the leads API. Output serializers render rows; input serializers
check shapes only (types, lengths, choices) — the services hold the rules
(normalisation, uniqueness, company matching, custom field definitions)."""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from accounts.api.serializer_base import ModelSerializer
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
    Lead,
    LifecycleStage,
    Prefecture,
    RevenueBand,
    SizeBand,
    Suppression,
    Tag,
)
from leads.selectors import TIMELINE_KIND_CHOICES
from leads.services import MAX_BATCH

#: Choice sets narrower than the model's (named, so the schema names their enums).
CONSENT_INPUT_STATUSES = [c for c in ConsentStatus.choices if c[0] != ConsentStatus.UNKNOWN]
CONSENT_INPUT_CHANNELS = [
    c for c in Channel.choices if c[0] in (Channel.API, Channel.UI, Channel.IMPORT)
]
BATCH_RESULT_STATUSES = [
    ("created", _("Created")),
    ("updated", _("Updated")),
    ("error", _("Error")),
]
#: Leads' own kinds and those higher apps register (the same list, filled in their
#: AppConfig.ready(), before any schema is made).
TIMELINE_KINDS = TIMELINE_KIND_CHOICES
# One set with the imports' dedupe policy (same values, one enum in the schema).
UPSERT_POLICIES = ImportJob.Policy.choices

# --- Companies ---------------------------------------------------------------------------


class CompanySummarySerializer(ModelSerializer):
    class Meta:
        model = Company
        fields = ["id", "name"]
        read_only_fields = fields


class CompanyOutputSerializer(ModelSerializer):
    class Meta:
        model = Company
        fields = [
            "id",
            "name",
            "corporate_number",
            "domain",
            "industry",
            "size_band",
            "revenue_band",
            "prefecture",
            "address",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class CompanyInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    corporate_number = serializers.CharField(max_length=20, required=False, allow_blank=True)
    domain = serializers.CharField(max_length=255, required=False, allow_blank=True)
    industry = serializers.CharField(max_length=100, required=False, allow_blank=True)
    size_band = serializers.ChoiceField(choices=SizeBand.choices, required=False, allow_blank=True)
    revenue_band = serializers.ChoiceField(
        choices=RevenueBand.choices, required=False, allow_blank=True
    )
    prefecture = serializers.ChoiceField(
        choices=Prefecture.choices, required=False, allow_blank=True
    )
    address = serializers.CharField(max_length=500, required=False, allow_blank=True)


# --- Leads ------------------------------------------------------------------------------


class LeadOutputSerializer(ModelSerializer):
    company = CompanySummarySerializer(read_only=True, allow_null=True)
    owner_id = serializers.IntegerField(read_only=True, allow_null=True)
    source_campaign_id = serializers.IntegerField(read_only=True, allow_null=True)
    merged_into_id = serializers.IntegerField(read_only=True, allow_null=True)
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")

    class Meta:
        model = Lead
        fields = [
            "id",
            "email",
            "family_name",
            "given_name",
            "family_name_kana",
            "given_name_kana",
            "display_name",
            "phone",
            "job_title",
            "department",
            "company",
            "owner_id",
            "lifecycle_stage",
            "source_campaign_id",
            "source_channel",
            "email_consent",
            "sales_contact_consent",
            "custom_fields",
            "tags",
            "merged_into_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


def _text(max_length: int, **kwargs) -> serializers.CharField:
    return serializers.CharField(
        max_length=max_length, required=False, allow_blank=True, trim_whitespace=True, **kwargs
    )


class LeadFieldsSerializer(serializers.Serializer):
    """The lead's fields as the services take them (every one optional)."""

    family_name = _text(100, help_text=_("Family name (姓), written first in Japanese."))
    given_name = _text(100, help_text=_("Given name (名)."))
    family_name_kana = _text(100, help_text=_("Reading of the family name; stored in katakana."))
    given_name_kana = _text(100, help_text=_("Reading of the given name; stored in katakana."))
    phone = _text(40, help_text=_("Any common format; stored as E.164 (+81…)."))
    job_title = _text(200)
    department = _text(200)
    company_id = serializers.IntegerField(required=False, allow_null=True)
    company_name = _text(255, help_text=_("Matched to a company, or a new one is created."))
    corporate_number = _text(20, help_text=_("法人番号 (13 digits): the strongest company match."))
    company_domain = _text(255)
    industry = _text(100)
    prefecture = _text(20, help_text=_("Prefecture of the company: code, Japanese or English."))
    owner_id = serializers.IntegerField(required=False, allow_null=True)
    lifecycle_stage = serializers.ChoiceField(choices=LifecycleStage.choices, required=False)
    source_campaign_id = serializers.IntegerField(required=False, allow_null=True)
    custom = serializers.DictField(
        required=False, help_text=_("Custom field values by key; null clears one.")
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=100
    )


class LeadInputSerializer(LeadFieldsSerializer):
    email = serializers.CharField(max_length=320, required=False, allow_blank=True)


class LeadBatchItemSerializer(LeadInputSerializer):
    """Shape of one item of a batch (validated by hand in the view, for speed)."""


class LeadBatchOptionsSerializer(serializers.Serializer):
    policy = serializers.ChoiceField(
        choices=UPSERT_POLICIES,
        default="fill_empty",
        help_text=_("For leads whose email exists: skip, fill empty fields, or overwrite."),
    )
    source_campaign_id = serializers.IntegerField(required=False, allow_null=True)


class LeadBatchInputSerializer(LeadBatchOptionsSerializer):
    """Documented shape; the view checks `items` by hand (no per-item serializer)."""

    items = serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        max_length=MAX_BATCH,
        help_text=_("Up to 1,000 leads: each is `email` plus the lead's fields."),
    )


class BatchResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.ChoiceField(choices=BATCH_RESULT_STATUSES)
    id = serializers.IntegerField(required=False)
    errors = serializers.DictField(child=serializers.ListField(), required=False)


class BatchResponseSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    errors = serializers.IntegerField()
    results = BatchResultSerializer(many=True)


class LeadMergeInputSerializer(serializers.Serializer):
    merge_id = serializers.IntegerField(help_text=_("The duplicate, merged into this lead."))


class StageChangeInputSerializer(serializers.Serializer):
    to_stage = serializers.ChoiceField(choices=LifecycleStage.choices)
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True)


class TimelineEntrySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TIMELINE_KINDS)

    def get_fields(self) -> dict:
        fields = super().get_fields()
        # Kinds registered after this module was imported count too.
        fields["kind"].choices = TIMELINE_KINDS
        return fields

    id = serializers.IntegerField()
    occurred_at = serializers.DateTimeField()
    data = serializers.DictField()


class TimelinePageSerializer(serializers.Serializer):
    next = serializers.CharField(allow_null=True)
    results = TimelineEntrySerializer(many=True)


# --- Activities ---------------------------------------------------------------------------


class ActivityOutputSerializer(ModelSerializer):
    lead_id = serializers.IntegerField(read_only=True, allow_null=True)
    visitor_id = serializers.IntegerField(read_only=True, allow_null=True)
    campaign_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Activity
        fields = [
            "id",
            "lead_id",
            "visitor_id",
            "type",
            "occurred_at",
            "campaign_id",
            "channel",
            "properties",
            "created_at",
        ]
        read_only_fields = fields


class ActivityInputSerializer(serializers.Serializer):
    lead_id = serializers.IntegerField()
    type = serializers.ChoiceField(choices=ActivityType.choices)
    occurred_at = serializers.DateTimeField(required=False)
    campaign_id = serializers.IntegerField(required=False, allow_null=True)
    properties = serializers.DictField(required=False)


class ActivityBatchInputSerializer(serializers.Serializer):
    """Documented shape; the view reads the body directly (no per-item serializer)."""

    items = serializers.ListField(
        child=serializers.DictField(),
        max_length=MAX_BATCH,
        help_text=_(
            "Up to 1,000 of {lead_id | email, type, occurred_at, campaign_id, properties}."
        ),
    )


# --- Consent and suppression -----------------------------------------------------------------


class ConsentEventOutputSerializer(ModelSerializer):
    actor_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = ConsentEvent
        fields = ["id", "purpose", "status", "channel", "basis", "proof", "occurred_at", "actor_id"]
        read_only_fields = fields


class ConsentInputSerializer(serializers.Serializer):
    purpose = serializers.ChoiceField(choices=ConsentPurpose.choices)
    status = serializers.ChoiceField(choices=CONSENT_INPUT_STATUSES)
    basis = serializers.CharField(max_length=500, required=False, allow_blank=True)
    proof = serializers.DictField(required=False)
    channel = serializers.ChoiceField(choices=CONSENT_INPUT_CHANNELS, default=Channel.API)


class SuppressionOutputSerializer(ModelSerializer):
    class Meta:
        model = Suppression
        fields = ["id", "email", "reason", "note", "created_at"]
        read_only_fields = fields


class SuppressionInputSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=320)
    reason = serializers.ChoiceField(
        choices=Suppression.Reason.choices, default=Suppression.Reason.MANUAL
    )
    note = serializers.CharField(max_length=500, required=False, allow_blank=True)


# --- Tags and custom fields ---------------------------------------------------------------


class TagOutputSerializer(ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name"]
        read_only_fields = fields


class TagInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)


class CustomFieldOutputSerializer(ModelSerializer):
    class Meta:
        model = CustomFieldDefinition
        fields = ["id", "key", "label", "type", "choices", "required", "position", "created_at"]
        read_only_fields = fields


class CustomFieldInputSerializer(serializers.Serializer):
    key = serializers.SlugField(max_length=64)
    label = serializers.CharField(max_length=100)
    type = serializers.ChoiceField(choices=CustomFieldDefinition.Type.choices, default="text")
    choices = serializers.ListField(child=serializers.JSONField(), required=False)
    required = serializers.BooleanField(required=False)
    position = serializers.IntegerField(min_value=0, required=False)
