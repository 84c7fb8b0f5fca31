import factory
from django.utils import timezone

from accounts.tests.factories import TenantOwnedFactory
from campaigns.models import (
    Campaign,
    CampaignChannel,
    CampaignCounts,
    CampaignMembership,
    EmailTemplate,
    Enrolment,
    OutgoingMessage,
    SenderIdentity,
    SendingSettings,
    Sequence,
    SequenceStep,
    StepKind,
)
from campaigns.nurture.models import Segment, SegmentMember
from leads.tests.factories import LeadFactory


class CampaignFactory(TenantOwnedFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"展示会 {n}")
    channel = CampaignChannel.TRADE_SHOW


class CampaignMembershipFactory(TenantOwnedFactory):
    class Meta:
        model = CampaignMembership

    campaign = factory.SubFactory(CampaignFactory, tenant=factory.SelfAttribute("..tenant"))
    lead = factory.SubFactory(LeadFactory, tenant=factory.SelfAttribute("..tenant"))


class CampaignCountsFactory(TenantOwnedFactory):
    class Meta:
        model = CampaignCounts

    campaign = factory.SubFactory(CampaignFactory, tenant=factory.SelfAttribute("..tenant"))
    responded = 1


class SenderIdentityFactory(TenantOwnedFactory):
    class Meta:
        model = SenderIdentity

    from_name = "株式会社サンプル マーケティング部"
    from_email = factory.Sequence(lambda n: f"marketing{n}@sender.example.com")
    reply_to = "sales@sender.example.com"
    postal_address = "〒100-0001 東京都千代田区千代田1-1"


class EmailTemplateFactory(TenantOwnedFactory):
    class Meta:
        model = EmailTemplate

    name = factory.Sequence(lambda n: f"お役立ち資料 {n}")
    subject = '{{ lead.family_name|default:"ご担当者" }}様、資料のご案内'
    html = '<p>{{ lead.family_name|default:"ご担当者" }}様</p><p>ご案内です。</p>'
    text = '{{ lead.family_name|default:"ご担当者" }}様\n\nご案内です。'


class SequenceFactory(TenantOwnedFactory):
    class Meta:
        model = Sequence

    name = factory.Sequence(lambda n: f"育成シーケンス {n}")
    status = Sequence.Status.ACTIVE
    sender = factory.SubFactory(SenderIdentityFactory, tenant=factory.SelfAttribute("..tenant"))


class SequenceStepFactory(TenantOwnedFactory):
    class Meta:
        model = SequenceStep

    sequence = factory.SubFactory(SequenceFactory, tenant=factory.SelfAttribute("..tenant"))
    version = factory.SelfAttribute("sequence.version")
    order = factory.Sequence(lambda n: n)
    kind = StepKind.SEND_EMAIL
    template = factory.SubFactory(EmailTemplateFactory, tenant=factory.SelfAttribute("..tenant"))


def sequence_with_steps(tenant, rows: list[dict], **sequence_fields) -> Sequence:
    """A live sequence whose version 1 is `rows` in order (each a SequenceStep's fields:
    kind, template, config)."""
    from accounts.tenancy import tenant_scope

    sequence = SequenceFactory(tenant=tenant, **sequence_fields)
    with tenant_scope(tenant.id):
        for order, row in enumerate(rows):
            SequenceStep.objects.create(
                tenant=tenant, sequence=sequence, version=1, order=order, **row
            )
    return sequence


class EnrolmentFactory(TenantOwnedFactory):
    class Meta:
        model = Enrolment

    sequence = factory.SubFactory(SequenceFactory, tenant=factory.SelfAttribute("..tenant"))
    lead = factory.SubFactory(LeadFactory, tenant=factory.SelfAttribute("..tenant"))
    version = factory.SelfAttribute("sequence.version")
    next_due_at = factory.LazyFunction(timezone.now)


class OutgoingMessageFactory(TenantOwnedFactory):
    class Meta:
        model = OutgoingMessage

    enrolment = factory.SubFactory(EnrolmentFactory, tenant=factory.SelfAttribute("..tenant"))
    step = factory.SubFactory(
        SequenceStepFactory,
        tenant=factory.SelfAttribute("..tenant"),
        sequence=factory.SelfAttribute("..enrolment.sequence"),
    )
    lead = factory.SelfAttribute("enrolment.lead")
    to_email = factory.SelfAttribute("lead.email")
    subject = "資料のご案内"


class SendingSettingsFactory(TenantOwnedFactory):
    class Meta:
        model = SendingSettings

    per_minute = 100


class SegmentFactory(TenantOwnedFactory):
    class Meta:
        model = Segment

    name = factory.Sequence(lambda n: f"セグメント {n}")
    filter = "stage=lead"


class SegmentMemberFactory(TenantOwnedFactory):
    class Meta:
        model = SegmentMember

    segment = factory.SubFactory(SegmentFactory, tenant=factory.SelfAttribute("..tenant"))
    lead = factory.SubFactory(LeadFactory, tenant=factory.SelfAttribute("..tenant"))
