"""Adding one lead to a campaign (a form submission's membership) takes a plain INSERT
instead of the set-based statement: the same rules, the same answers."""

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import events
from accounts.models import DomainEvent
from accounts.tenancy import tenant_scope
from campaigns import services
from campaigns.models import CampaignMembership
from campaigns.tests.factories import CampaignFactory, CampaignMembershipFactory
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

Status = CampaignMembership.Status


def add_one(world, campaign_id: int, lead_id: int, status: str) -> str:
    with tenant_scope(world.tenant.id):
        return services.memberships_add_bulk(
            tenant_id=world.tenant.id,
            campaign_id=campaign_id,
            lead_ids=[lead_id],
            status=status,
            savepoint=False,
        )[lead_id]


def test_one_new_member_is_one_statement(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    lead = LeadFactory(tenant=world_a.tenant)
    # In a unit of work (a form submission), its event joins the unit's one INSERT.
    with tenant_scope(world_a.tenant.id), events.collecting():
        with CaptureQueriesContext(connection) as queries:
            results = services.memberships_add_bulk(
                tenant_id=world_a.tenant.id,
                campaign_id=campaign.pk,
                lead_ids=[lead.pk],
                savepoint=False,
            )
    assert results == {lead.pk: services.ADDED}
    assert len(queries.captured_queries) == 1
    with tenant_scope(world_a.tenant.id):
        assert CampaignMembership.objects.get().status == Status.RESPONDED
        event = DomainEvent.objects.get(name="campaign.members_added")
    assert event.payload == {"v": 1, "campaign_id": campaign.pk, "lead_ids": [lead.pk]}


@pytest.mark.parametrize(
    ("existing", "added", "final"),
    [
        (Status.INVITED, Status.REGISTERED, Status.REGISTERED),
        (Status.REGISTERED, Status.INVITED, Status.REGISTERED),
        (Status.RESPONDED, Status.ATTENDED, Status.ATTENDED),
        (Status.ATTENDED, Status.RESPONDED, Status.ATTENDED),
        (Status.NO_SHOW, Status.REGISTERED, Status.NO_SHOW),
        (Status.NO_SHOW, Status.RESPONDED, Status.RESPONDED),
        (Status.RESPONDED, Status.RESPONDED, Status.RESPONDED),
    ],
)
def test_an_existing_member_keeps_the_further_status(world_a, existing, added, final):
    campaign = CampaignFactory(tenant=world_a.tenant)
    lead = LeadFactory(tenant=world_a.tenant)
    CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign, lead=lead, status=existing)
    result = add_one(world_a, campaign.pk, lead.pk, added)
    assert result == (services.UNCHANGED if final == existing else services.UPDATED)
    with tenant_scope(world_a.tenant.id):
        assert CampaignMembership.objects.get().status == final


def test_unknown_merged_and_foreign_leads_are_not_found(world_a, world_b):
    campaign = CampaignFactory(tenant=world_a.tenant)
    keep = LeadFactory(tenant=world_a.tenant)
    merged = LeadFactory(tenant=world_a.tenant, merged_into=keep)
    foreign = LeadFactory(tenant=world_b.tenant)
    for lead_id in (merged.pk, foreign.pk, 10**12):
        assert add_one(world_a, campaign.pk, lead_id, Status.RESPONDED) == services.NOT_FOUND
    with tenant_scope(world_a.tenant.id):
        assert not CampaignMembership.objects.exists()


def test_another_tenants_campaign_is_refused_and_nothing_is_written(world_a, world_b):
    foreign_campaign = CampaignFactory(tenant=world_b.tenant)
    lead = LeadFactory(tenant=world_a.tenant)
    with pytest.raises(ValidationError) as exc:
        add_one(world_a, foreign_campaign.pk, lead.pk, Status.RESPONDED)
    assert set(exc.value.message_dict) == {"campaign"}
    for world in (world_a, world_b):
        with tenant_scope(world.tenant.id):
            assert not CampaignMembership.objects.exists()
