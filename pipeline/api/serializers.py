"""Handoff API serializers: output shapes, and input shapes (services check meaning)."""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from accounts.api.serializer_base import ModelSerializer
from pipeline.models import (
    Handoff,
    HandoffSettings,
    Qualification,
    RejectReason,
    RoutingRule,
    Task,
    Team,
)


class QualificationSerializer(ModelSerializer):
    class Meta:
        model = Qualification
        fields = [
            "id", "budget", "authority", "need", "timeline", "answers", "handover_note",
            "qualified_by", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class HandoffLeadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    display_name = serializers.CharField()
    email = serializers.CharField()
    lifecycle_stage = serializers.CharField()
    company_name = serializers.SerializerMethodField()

    def get_company_name(self, lead) -> str:
        return lead.company.name if lead.company_id else ""


class HandoffOutputSerializer(ModelSerializer):
    lead = HandoffLeadSerializer(read_only=True)
    source_campaign_name = serializers.SerializerMethodField()
    current_score = serializers.IntegerField(read_only=True, allow_null=True)
    qualification = serializers.SerializerMethodField()
    # The same choices as the reject input's `reason` (RejectReasonEnum there): a second
    # enum of them would be a second name for one set in the schema.
    reject_reason = serializers.CharField(
        read_only=True, help_text=_("One of the reject reasons, or empty.")
    )

    class Meta:
        model = Handoff
        fields = [
            "id", "lead", "owner", "team", "routed_by", "routing_rule", "status", "sla",
            "source_campaign", "source_campaign_name", "score", "current_score",
            "created_at", "deadline", "remind_at", "reminder_sent_at", "escalated_at",
            "responded_at", "responded_by", "accepted_at", "qualified_at", "rejected_at",
            "reject_reason", "reject_comment", "reassigned_at", "qualification",
        ]  # fmt: skip
        read_only_fields = fields

    def get_source_campaign_name(self, handoff: Handoff) -> str:
        return handoff.source_campaign.name if handoff.source_campaign_id else ""

    def get_qualification(self, handoff: Handoff) -> dict | None:
        if handoff.status != Handoff.Status.QUALIFIED:
            return None
        try:
            return QualificationSerializer(handoff.qualification).data
        except Qualification.DoesNotExist:
            return None


class RejectInputSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=RejectReason.choices)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=1000)


class QualifyInputSerializer(serializers.Serializer):
    handover_note = serializers.CharField(allow_blank=True)
    budget = serializers.CharField(required=False, allow_blank=True, max_length=500)
    authority = serializers.CharField(required=False, allow_blank=True, max_length=500)
    need = serializers.CharField(required=False, allow_blank=True, max_length=500)
    timeline = serializers.CharField(required=False, allow_blank=True, max_length=500)
    answers = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text=_("Answers to the tenant's checklist, by item key."),
    )


class ReassignInputSerializer(serializers.Serializer):
    owner = serializers.IntegerField(help_text=_("The user id of the new owner."))


class FeedbackSerializer(serializers.Serializer):
    campaign_id = serializers.IntegerField(allow_null=True)
    campaign_name = serializers.CharField()
    handoffs = serializers.IntegerField()
    open = serializers.IntegerField()
    accepted = serializers.IntegerField()
    qualified = serializers.IntegerField()
    rejected = serializers.IntegerField()
    rejected_by_reason = serializers.DictField(child=serializers.IntegerField())
    sla_met = serializers.IntegerField()
    sla_breached = serializers.IntegerField()


class ChecklistItemSerializer(serializers.Serializer):
    key = serializers.CharField(max_length=64)
    label = serializers.CharField(max_length=200)


class HandoffSettingsSerializer(ModelSerializer):
    """Read and PATCH shape of the tenant's SLA settings."""

    working_days = serializers.ListField(child=serializers.IntegerField())
    closed_dates = serializers.ListField(child=serializers.CharField(), required=False)
    checklist = ChecklistItemSerializer(many=True, required=False)
    default_team = serializers.IntegerField(
        source="default_team_id", allow_null=True, required=False
    )

    class Meta:
        model = HandoffSettings
        fields = [
            "sla_hours", "reminder_minutes", "workday_start", "workday_end", "working_days",
            "observe_holidays", "closed_dates", "checklist", "default_team", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["updated_at"]


class TeamMemberSerializer(serializers.Serializer):
    user = serializers.IntegerField(source="user_id")
    name = serializers.CharField(source="user.get_full_name")
    is_available = serializers.BooleanField()


class TeamOutputSerializer(ModelSerializer):
    members = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ["id", "name", "manager", "last_assigned", "members", "created_at"]
        read_only_fields = fields

    def get_members(self, team: Team) -> list[dict]:
        members = self.context.get("members", {}).get(team.pk, [])
        return TeamMemberSerializer(members, many=True).data


class TeamInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    manager = serializers.IntegerField(allow_null=True, required=False)
    members = serializers.ListField(child=serializers.IntegerField(), required=False)


class RoutingRuleSerializer(ModelSerializer):
    class Meta:
        model = RoutingRule
        fields = [
            "id", "name", "position", "is_active", "prefectures", "industries", "size_bands",
            "target", "user", "team", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class RoutingRuleInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    position = serializers.IntegerField(min_value=0, required=False)
    is_active = serializers.BooleanField(required=False)
    prefectures = serializers.ListField(child=serializers.CharField(), required=False)
    industries = serializers.ListField(child=serializers.CharField(), required=False)
    size_bands = serializers.ListField(child=serializers.CharField(), required=False)
    target = serializers.ChoiceField(choices=RoutingRule.Target.choices)
    user = serializers.IntegerField(allow_null=True, required=False)
    team = serializers.IntegerField(allow_null=True, required=False)


# --- Tasks -----------------------------------------------------------------------------------


class TaskOutputSerializer(ModelSerializer):
    lead = HandoffLeadSerializer(read_only=True)
    assignee_id = serializers.IntegerField(read_only=True, allow_null=True)
    sequence_id = serializers.IntegerField(
        read_only=True, allow_null=True, help_text=_("The nurture sequence whose step made it.")
    )
    enrolment_id = serializers.IntegerField(read_only=True, allow_null=True)
    step_id = serializers.IntegerField(read_only=True, allow_null=True)
    created_by_id = serializers.IntegerField(read_only=True, allow_null=True)
    done_by_id = serializers.IntegerField(read_only=True, allow_null=True)
    done = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id", "lead", "title", "assignee_id", "due_date", "done", "done_at", "done_by_id",
            "source", "sequence_id", "enrolment_id", "step_id", "created_at", "created_by_id",
        ]  # fmt: skip
        read_only_fields = fields

    def get_done(self, task: Task) -> bool:
        return task.done_at is not None


class TaskCreateInputSerializer(serializers.Serializer):
    lead_id = serializers.IntegerField(min_value=1)
    title = serializers.CharField(max_length=200)
    assignee_id = serializers.IntegerField(
        min_value=1,
        allow_null=True,
        required=False,
        help_text=_("Someone who works in the tenant; null or left out: nobody yet."),
    )
    due_date = serializers.DateField(allow_null=True, required=False)


class TaskReassignInputSerializer(serializers.Serializer):
    assignee_id = serializers.IntegerField(
        min_value=1, allow_null=True, help_text=_("The new assignee's user id; null: nobody.")
    )
