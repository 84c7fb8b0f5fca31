"""Campaign figures: members by status, leads generated, cost per lead, target progress,
all in the page's one query."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.tenancy import tenant_scope
from campaigns import selectors
from campaigns.models import CampaignMembership
from campaigns.tests.factories import CampaignFactory, CampaignMembershipFactory
from leads.models import LifecycleStage
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

Status = CampaignMembership.Status


def test_list_figures_come_in_one_query(world_a, world_b):
    busy = CampaignFactory(
        tenant=world_a.tenant,
        actual_cost=Decimal("100000"),
        budget=Decimal("150000"),
        target_leads=4,
    )
    idle = CampaignFactory(tenant=world_a.tenant, actual_cost=Decimal("5000"))
    for status in (Status.INVITED, Status.INVITED, Status.ATTENDED, Status.NO_SHOW):
        CampaignMembershipFactory(tenant=world_a.tenant, campaign=busy, status=status)
    generated = LeadFactory.create_batch(3, tenant=world_a.tenant, source_campaign=busy)
    # A duplicate merged into another lead is not a lead generated twice.
    LeadFactory(tenant=world_a.tenant, source_campaign=busy, merged_into=generated[0])
    # Another tenant's rows never count (its campaign ids differ, but the filter is real).
    CampaignMembershipFactory(tenant=world_b.tenant)

    with tenant_scope(world_a.tenant.id), CaptureQueriesContext(connection) as queries:
        campaigns = {campaign.pk: campaign for campaign in selectors.campaign_list()}
        figures = {pk: selectors.campaign_figures(c) for pk, c in campaigns.items()}
    assert len([q for q in queries.captured_queries if "SELECT" in q["sql"]]) == 1

    busy_figures = figures[busy.pk]
    assert busy_figures.members == {
        "invited": 2,
        "registered": 0,
        "attended": 1,
        "responded": 0,
        "no_show": 1,
        "total": 4,
    }
    assert busy_figures.leads_generated == 3
    assert busy_figures.cost_per_lead == Decimal("33333.33")
    assert busy_figures.budget_remaining == Decimal("50000")
    assert busy_figures.target_progress == Decimal("0.750")

    idle_figures = figures[idle.pk]
    assert idle_figures.members["total"] == 0
    assert idle_figures.leads_generated == 0
    assert idle_figures.cost_per_lead is None  # no leads: no cost per lead, not infinity
    assert idle_figures.target_progress is None  # no target set


def test_leads_by_stage(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    LeadFactory.create_batch(
        2, tenant=world_a.tenant, source_campaign=campaign, lifecycle_stage=LifecycleStage.MQL
    )
    LeadFactory(tenant=world_a.tenant, source_campaign=campaign)
    LeadFactory(tenant=world_a.tenant)
    with tenant_scope(world_a.tenant.id):
        assert selectors.campaign_leads_by_stage(campaign_id=campaign.pk) == {"mql": 2, "lead": 1}
