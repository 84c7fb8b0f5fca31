import factory

from accounts.tests.factories import TenantOwnedFactory
from campaigns.models import Campaign, CampaignChannel, CampaignCounts, CampaignMembership
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
