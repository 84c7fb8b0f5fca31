"""Serializers of the campaigns API. Output and input are separate; input serializers
check shapes only, campaigns.services holds the rules. Money is a decimal string."""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.serializer_base import ModelSerializer
from accounts.api.serializers import UserSummarySerializer
from campaigns import selectors, services
from campaigns.models import Campaign, CampaignChannel, CampaignMembership
from leads.models import Lead

MONEY = {"max_digits": 14, "decimal_places": 2}
MAX_BULK_LEADS = 1000


# --- Campaigns -----------------------------------------------------------------------------


class MemberCountsSerializer(serializers.Serializer):
    invited = serializers.IntegerField()
    registered = serializers.IntegerField()
    attended = serializers.IntegerField()
    responded = serializers.IntegerField()
    no_show = serializers.IntegerField()
    total = serializers.IntegerField()


class CampaignFiguresSerializer(serializers.Serializer):
    members = MemberCountsSerializer(help_text=_("Members by status."))
    leads_generated = serializers.IntegerField(help_text=_("Leads whose source is this campaign."))
    cost_per_lead = serializers.DecimalField(
        **MONEY,
        allow_null=True,
        help_text=_("Actual cost / leads generated; null while no lead came from it."),
    )
    budget_remaining = serializers.DecimalField(max_digits=15, decimal_places=2)
    target_progress = serializers.DecimalField(
        max_digits=12,
        decimal_places=3,
        allow_null=True,
        help_text=_("Leads generated / target leads (1.000 = target met); null with no target."),
    )


class CampaignOutputSerializer(ModelSerializer):
    """A campaign from campaigns.selectors.campaign_list (its figures are annotated)."""

    owner = UserSummarySerializer(allow_null=True)
    figures = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "channel",
            "status",
            "description",
            "starts_on",
            "ends_on",
            "currency",
            "budget",
            "actual_cost",
            "target_leads",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
            "owner",
            "figures",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(CampaignFiguresSerializer)
    def get_figures(self, campaign: Campaign) -> dict:
        return CampaignFiguresSerializer(selectors.campaign_figures(campaign)).data


class CampaignDetailSerializer(CampaignOutputSerializer):
    leads_by_stage = serializers.DictField(
        child=serializers.IntegerField(),
        read_only=True,
        help_text=_("The generated leads by their lifecycle stage now."),
    )

    class Meta(CampaignOutputSerializer.Meta):
        fields = [*CampaignOutputSerializer.Meta.fields, "leads_by_stage"]
        read_only_fields = fields


class CampaignInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    channel = serializers.ChoiceField(choices=CampaignChannel.choices)
    status = serializers.ChoiceField(choices=Campaign.Status.choices, required=False)
    description = serializers.CharField(allow_blank=True, required=False)
    starts_on = serializers.DateField(allow_null=True, required=False)
    ends_on = serializers.DateField(allow_null=True, required=False)
    currency = serializers.CharField(
        min_length=3, max_length=3, required=False, help_text=_("ISO 4217 code; default JPY.")
    )
    budget = serializers.DecimalField(**MONEY, min_value=0, required=False)
    actual_cost = serializers.DecimalField(**MONEY, min_value=0, required=False)
    target_leads = serializers.IntegerField(min_value=0, required=False)
    utm_source = serializers.CharField(max_length=100, allow_blank=True, required=False)
    utm_medium = serializers.CharField(max_length=100, allow_blank=True, required=False)
    utm_campaign = serializers.CharField(max_length=100, allow_blank=True, required=False)
    utm_term = serializers.CharField(max_length=100, allow_blank=True, required=False)
    utm_content = serializers.CharField(max_length=100, allow_blank=True, required=False)
    owner = serializers.IntegerField(
        allow_null=True, required=False, help_text=_("User id of a member of the tenant.")
    )

    def service_fields(self) -> dict:
        """Validated data as campaigns.services takes it (owner by id)."""
        data = dict(self.validated_data)
        if "owner" in data:
            data["owner_id"] = data.pop("owner")
        return data


# --- Members -------------------------------------------------------------------------------


class LeadSummarySerializer(ModelSerializer):
    name = serializers.CharField(source="display_name", read_only=True)
    company = serializers.CharField(source="company.name", read_only=True, allow_null=True)

    class Meta:
        model = Lead
        fields = ["id", "name", "email", "company", "lifecycle_stage"]
        read_only_fields = fields


class MemberOutputSerializer(ModelSerializer):
    lead = LeadSummarySerializer()

    class Meta:
        model = CampaignMembership
        fields = ["id", "lead", "status", "created_at", "updated_at"]
        read_only_fields = fields


class MemberAddInputSerializer(serializers.Serializer):
    lead_id = serializers.IntegerField(min_value=1)
    status = serializers.ChoiceField(
        choices=CampaignMembership.Status.choices, default=CampaignMembership.Status.RESPONDED
    )


class MemberStatusInputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=CampaignMembership.Status.choices)


class MembersAddBulkInputSerializer(serializers.Serializer):
    lead_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        min_length=1,
        max_length=MAX_BULK_LEADS,
        help_text=_("Up to 1,000 lead ids."),
    )
    status = serializers.ChoiceField(
        choices=CampaignMembership.Status.choices, default=CampaignMembership.Status.RESPONDED
    )


class MemberAddResultSerializer(serializers.Serializer):
    lead_id = serializers.IntegerField()
    result = serializers.ChoiceField(
        choices=services.ADD_RESULTS,
        help_text=_(
            "added: now a member; updated: its status moved further; unchanged: already at "
            "this status or further; not_found: no such lead."
        ),
    )


class MembersAddBulkOutputSerializer(serializers.Serializer):
    results = MemberAddResultSerializer(many=True, help_text=_("One per lead id, in order."))
    counts = serializers.DictField(child=serializers.IntegerField())
