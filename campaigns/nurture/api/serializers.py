"""Serializers of the nurture API. Output and input are separate; input serializers
check shapes only, campaigns.nurture.services holds the rules."""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from accounts.api.serializer_base import ModelSerializer
from campaigns.api.serializers import LeadSummarySerializer
from campaigns.models import (
    EmailTemplate,
    Enrolment,
    OutgoingMessage,
    Segment,
    SenderIdentity,
    SendingSettings,
    Sequence,
    StepKind,
)
from campaigns.nurture.segments import FILTER_MAX
from leads.models import LifecycleStage

#: Leads one enrol request may take, by ids or by a lead filter.
MAX_ENROL = 10_000
ENROL_RESULTS = ("enrolled", "already_enrolled", "finished", "not_found")


# --- Sender identities and templates ---------------------------------------------------------


class SenderIdentityOutputSerializer(ModelSerializer):
    class Meta:
        model = SenderIdentity
        fields = ["id", "from_name", "from_email", "reply_to", "postal_address", "created_at"]
        read_only_fields = fields


class SenderIdentityInputSerializer(serializers.Serializer):
    from_name = serializers.CharField(max_length=200)
    from_email = serializers.EmailField(max_length=254)
    reply_to = serializers.EmailField(max_length=254, allow_blank=True, required=False)
    postal_address = serializers.CharField(
        help_text=_("Shown in every mail (Act on Specified Electronic Mail).")
    )


class EmailTemplateOutputSerializer(ModelSerializer):
    class Meta:
        model = EmailTemplate
        fields = ["id", "name", "subject", "html", "text", "created_at", "updated_at"]
        read_only_fields = fields


class EmailTemplateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    subject = serializers.CharField(max_length=255)
    html = serializers.CharField(allow_blank=True, required=False)
    text = serializers.CharField()


class PreviewQuerySerializer(serializers.Serializer):
    lead_id = serializers.IntegerField(min_value=1, help_text=_("A lead of the tenant."))
    sender_id = serializers.IntegerField(
        min_value=1, required=False, help_text=_("Default: the tenant's first sender identity.")
    )


class TestSendInputSerializer(PreviewQuerySerializer):
    to = serializers.CharField(max_length=254, help_text=_("Where the test mail goes."))


class RenderedMailSerializer(serializers.Serializer):
    subject = serializers.CharField()
    text = serializers.CharField()
    html = serializers.CharField(allow_blank=True)


class TestSendOutputSerializer(serializers.Serializer):
    to = serializers.CharField()
    message_id = serializers.CharField()


# --- Sequences and steps ----------------------------------------------------------------------


class SequenceOutputSerializer(ModelSerializer):
    sender_id = serializers.IntegerField(read_only=True, allow_null=True)
    enrol_on_campaign_id = serializers.IntegerField(read_only=True, allow_null=True)
    enrol_on_form_id = serializers.IntegerField(read_only=True, allow_null=True)
    enrol_on_segment_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Sequence
        fields = [
            "id",
            "name",
            "status",
            "version",
            "sender_id",
            "enrol_on_campaign_id",
            "enrol_on_recycled",
            "enrol_on_form_id",
            "enrol_on_stage",
            "enrol_on_segment_id",
            "allow_reenrolment",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SequenceDetailSerializer(SequenceOutputSerializer):
    enrolments = serializers.DictField(
        source="enrolment_counts",
        child=serializers.IntegerField(),
        read_only=True,
        help_text=_("Enrolments by state (every version)."),
    )

    class Meta(SequenceOutputSerializer.Meta):
        fields = [*SequenceOutputSerializer.Meta.fields, "enrolments"]
        read_only_fields = fields


class MailRatesSerializer(serializers.Serializer):
    delivered = serializers.FloatField(
        allow_null=True, help_text=_("Share of the mails sent (0 to 1); null before any.")
    )
    opened = serializers.FloatField(
        allow_null=True, help_text=_("Share of the mails delivered (0 to 1); null before any.")
    )
    clicked = serializers.FloatField(allow_null=True, help_text=_("Of the mails delivered."))
    replied = serializers.FloatField(allow_null=True, help_text=_("Of the mails delivered."))
    unsubscribed = serializers.FloatField(allow_null=True, help_text=_("Of the mails delivered."))


class MailFiguresSerializer(serializers.Serializer):
    """campaigns.nurture.selectors.MailFigures: what the sequence page of the UI shows."""

    sent = serializers.IntegerField(help_text=_("Mails the mail server accepted."))
    delivered = serializers.IntegerField(help_text=_("Sent and not bounced since."))
    opened = serializers.IntegerField(
        help_text=_("Mails opened at least once (a click counts as an open).")
    )
    clicked = serializers.IntegerField(help_text=_("Mails with a tracked link clicked."))
    replied = serializers.IntegerField(
        help_text=_(
            "Enrolments that ended because the lead replied; for a step, those whose last "
            "mail before replying was this step's."
        )
    )
    unsubscribed = serializers.IntegerField(help_text=_("Mails whose unsubscribe link was used."))
    bounced = serializers.IntegerField(
        help_text=_("Mails refused for their address, at sending or later by the provider.")
    )
    mql = serializers.IntegerField(
        help_text=_(
            "Leads that reached MQL after enrolling; for a step, after its mail was sent to them."
        )
    )
    rates = MailRatesSerializer(source="ratios")


class EnrolmentFiguresSerializer(serializers.Serializer):
    enrolled = serializers.IntegerField(help_text=_("Enrolments of every version and state."))
    active = serializers.IntegerField()
    paused = serializers.IntegerField()
    completed = serializers.IntegerField()
    exited = serializers.IntegerField()


class StepFiguresSerializer(serializers.Serializer):
    step_id = serializers.IntegerField()
    order = serializers.IntegerField(help_text=_("The step's position in its version (0, 1, …)."))
    version = serializers.IntegerField(
        help_text=_("Earlier versions appear while their mails count.")
    )
    template_id = serializers.IntegerField(allow_null=True)
    template_name = serializers.CharField(allow_blank=True)
    mail = MailFiguresSerializer()


class SequenceStatsSerializer(serializers.Serializer):
    sequence_id = serializers.IntegerField()
    version = serializers.IntegerField(help_text=_("The sequence's current version."))
    enrolments = EnrolmentFiguresSerializer()
    mail = MailFiguresSerializer(help_text=_("All the sequence's mails, of every version."))
    steps = StepFiguresSerializer(
        many=True,
        help_text=_(
            "The email steps of the current version in order, then those of earlier "
            "versions that sent mail."
        ),
    )


class SequenceInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    sender_id = serializers.IntegerField(min_value=1, allow_null=True, required=False)
    enrol_on_campaign_id = serializers.IntegerField(
        min_value=1, allow_null=True, required=False, help_text=_("Enrol leads joining it.")
    )
    enrol_on_recycled = serializers.BooleanField(
        required=False, help_text=_("Enrol leads sales recycle ('not now').")
    )
    enrol_on_form_id = serializers.IntegerField(
        min_value=1, allow_null=True, required=False, help_text=_("Enrol leads submitting it.")
    )
    enrol_on_stage = serializers.ChoiceField(
        choices=LifecycleStage.choices,
        allow_blank=True,
        required=False,
        help_text=_("Enrol leads reaching this lifecycle stage; blank for none."),
    )
    enrol_on_segment_id = serializers.IntegerField(
        min_value=1,
        allow_null=True,
        required=False,
        help_text=_("Enrol leads matching this saved segment (evaluated periodically)."),
    )
    allow_reenrolment = serializers.BooleanField(required=False)


class StepSerializer(serializers.Serializer):
    """One step. `config` by kind: wait {"seconds"} and/or {"weekdays", "window"};
    branch {"condition": {"type", …}, "then", "else"} (step positions, later ones);
    create_task {"title"}; change_field {"field", "value"} or {"stage"}; enrol
    {"sequence_id"}."""

    order = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=StepKind.choices)
    template_id = serializers.IntegerField(
        min_value=1, allow_null=True, required=False, help_text=_("For send_email steps.")
    )
    config = serializers.DictField(required=False, default=dict)


class StepsSerializer(serializers.Serializer):
    sequence_id = serializers.IntegerField(read_only=True)
    version = serializers.IntegerField(
        read_only=True, help_text=_("The current version (enrolments keep theirs).")
    )
    steps = serializers.ListField(
        child=StepSerializer(),
        min_length=1,
        max_length=100,
        help_text=_("In order; errors are keyed by the step's position (0, 1, …)."),
    )


# --- Enrolments ---------------------------------------------------------------------------


class EnrolmentOutputSerializer(ModelSerializer):
    lead = LeadSummarySerializer()
    sequence_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Enrolment
        fields = [
            "id",
            "lead",
            "sequence_id",
            "version",
            "step_order",
            "next_due_at",
            "state",
            "exit_reason",
            "source",
            "enrolled_at",
            "finished_at",
        ]
        read_only_fields = fields


class EnrolInputSerializer(serializers.Serializer):
    sequence_id = serializers.IntegerField(min_value=1)
    lead_id = serializers.IntegerField(min_value=1, required=False)
    lead_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        min_length=1,
        max_length=MAX_ENROL,
        required=False,
    )
    lead_filter = serializers.DictField(
        required=False,
        help_text=_(
            'The lead list\'s filters ({"stage": ["lead"], "tag": "seminar"}, as '
            "the leads endpoint's query parameters); at most 10,000 leads may match."
        ),
    )

    def validate(self, data: dict) -> dict:
        given = [key for key in ("lead_id", "lead_ids", "lead_filter") if key in data]
        if len(given) != 1:
            raise serializers.ValidationError(
                {"lead_ids": [_("Give one of lead_id, lead_ids or lead_filter.")]}
            )
        return data


class EnrolResultSerializer(serializers.Serializer):
    lead_id = serializers.IntegerField()
    result = serializers.ChoiceField(
        choices=ENROL_RESULTS,
        help_text=_(
            "enrolled: now in the sequence; already_enrolled: in it already; finished: "
            "went through it and it does not allow re-enrolment; not_found: no such lead."
        ),
    )


class EnrolOutputSerializer(serializers.Serializer):
    results = EnrolResultSerializer(many=True, help_text=_("One per lead, by lead id."))
    counts = serializers.DictField(child=serializers.IntegerField())


# --- Outgoing messages and settings --------------------------------------------------------


class OutgoingMessageOutputSerializer(ModelSerializer):
    lead = LeadSummarySerializer()
    enrolment_id = serializers.IntegerField(read_only=True)
    sequence_id = serializers.IntegerField(source="enrolment.sequence_id", read_only=True)
    step_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = OutgoingMessage
        fields = [
            "id",
            "lead",
            "enrolment_id",
            "sequence_id",
            "step_id",
            "to_email",
            "subject",
            "status",
            "attempts",
            "next_attempt_at",
            "provider_message_id",
            "error",
            "created_at",
            "sent_at",
        ]
        read_only_fields = fields


class OutgoingMessageDetailSerializer(OutgoingMessageOutputSerializer):
    class Meta(OutgoingMessageOutputSerializer.Meta):
        fields = [*OutgoingMessageOutputSerializer.Meta.fields, "raw_headers"]
        read_only_fields = fields


class SendingSettingsSerializer(ModelSerializer):
    class Meta:
        model = SendingSettings
        fields = ["per_minute", "per_day", "quiet_start", "quiet_end"]
        extra_kwargs = {
            "quiet_start": {"help_text": _("HH:MM in the tenant's time zone; null for none.")},
            "quiet_end": {"help_text": _("With quiet_start; may be earlier (crosses midnight).")},
        }


# --- Segments ---------------------------------------------------------------------------------

FILTER_HELP = _(
    "The lead list's filter as its query string (stage=mql&tag=展示会; a whole lead-list "
    "address is taken too); paging and order are dropped. Refused parameters are named: "
    '{"filter": {"colour": ["…"]}}.'
)


class SegmentOutputSerializer(ModelSerializer):
    class Meta:
        model = Segment
        fields = [
            "id",
            "name",
            "filter",
            "evaluated_at",
            "matched",
            "error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "evaluated_at": {"help_text": _("When sequences last evaluated it (null: never).")},
            "matched": {"help_text": _("Leads matching at that evaluation.")},
            "error": {"help_text": _("Why it matches no lead now (the filter no longer holds).")},
        }


class SegmentInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    filter = serializers.CharField(
        max_length=FILTER_MAX, allow_blank=True, required=False, help_text=FILTER_HELP
    )


class SegmentPreviewQuerySerializer(serializers.Serializer):
    filter = serializers.CharField(
        max_length=FILTER_MAX, allow_blank=True, required=False, help_text=FILTER_HELP
    )


class SegmentCountSerializer(serializers.Serializer):
    filter = serializers.CharField(help_text=_("The filter as it would be stored."))
    count = serializers.IntegerField(help_text=_("Live leads matching now."))
    problem = serializers.CharField(
        allow_blank=True, help_text=_("Why it matches no lead (a filter that no longer holds).")
    )
