"""The campaigns staff UI: list with figures, detail, create/edit, member status, spend,
and the leads list's "add to campaign" bulk action; roles and tenant isolation."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Role
from accounts.tenancy import tenant_scope
from accounts.tests.factories import AgencyAssignmentFactory, AgencyFactory, MembershipFactory
from campaigns.models import Campaign, CampaignMembership
from campaigns.tests.factories import CampaignFactory, CampaignMembershipFactory
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


def url(world, name: str, **kwargs) -> str:
    return reverse(f"campaigns:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_list_shows_figures(world_a):
    campaign = CampaignFactory(
        tenant=world_a.tenant, name="Japan IT Week 春", actual_cost=Decimal("300000"),
        target_leads=10,
    )  # fmt: skip
    for _ in range(3):
        LeadFactory(tenant=world_a.tenant, source_campaign=campaign)
    CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign)
    response = login(world_a.member(Role.READ_ONLY)).get(url(world_a, "index"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Japan IT Week 春" in body
    assert "¥100,000" in body  # cost per lead: 300,000 / 3
    assert "¥300,000" in body
    assert "30%" in body  # 3 of 10 target leads
    row = response.context["rows"][0]
    assert row["figures"].members["total"] == 1


def test_detail_and_isolation(world_a, world_b):
    campaign = CampaignFactory(tenant=world_a.tenant, name="ウェビナー")
    member = CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign)
    client = login(world_a.member(Role.MARKETING))
    response = client.get(url(world_a, "detail", pk=campaign.pk))
    assert response.status_code == 200
    assert member.lead.display_name in response.content.decode()
    other = login(world_b.owner)
    assert other.get(url(world_a, "index")).status_code == 404
    assert other.get(url(world_a, "detail", pk=campaign.pk)).status_code == 404
    assert other.get(url(world_b, "detail", pk=campaign.pk)).status_code == 404
    response = other.post(url(world_b, "member_status", pk=member.pk), {"status": "attended"})
    assert response.status_code == 404


def test_create_and_edit(world_a):
    client = login(world_a.member(Role.MARKETING))
    assert client.get(url(world_a, "create")).status_code == 200
    response = client.post(
        url(world_a, "create"),
        {"name": "展示会 2025", "channel": "trade_show", "status": "planned", "currency": "JPY",
         "budget": "500000", "actual_cost": "0", "target_leads": "100",
         "starts_on": "2025-04-01", "ends_on": "2025-04-03"},
    )  # fmt: skip
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        campaign = Campaign.objects.get(name="展示会 2025")
        assert campaign.budget == Decimal("500000")
    # The services' rules come back on the form: the end before the start, yen with sen.
    response = client.post(
        url(world_a, "edit", pk=campaign.pk),
        {"name": "展示会 2025", "channel": "trade_show", "status": "active", "currency": "JPY",
         "budget": "500000.50", "actual_cost": "0", "target_leads": "100",
         "starts_on": "2025-04-03", "ends_on": "2025-04-01"},
    )  # fmt: skip
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "ends_on" in errors
    assert "budget" in errors


def test_sales_may_look_but_not_change(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    member = CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign)
    client = login(world_a.member(Role.INSIDE_SALES))
    assert client.get(url(world_a, "detail", pk=campaign.pk)).status_code == 200
    assert client.get(url(world_a, "create")).status_code == 403
    assert client.post(url(world_a, "edit", pk=campaign.pk), {}).status_code == 403
    assert (
        client.post(url(world_a, "member_status", pk=member.pk), {"status": "attended"}).status_code
        == 403
    )
    assert client.post(url(world_a, "bulk_add"), {"campaign": campaign.pk}).status_code == 403


def test_member_status_inline_with_htmx(world_a):
    member = CampaignMembershipFactory(tenant=world_a.tenant, status="registered")
    response = login(world_a.member(Role.MARKETING)).post(
        url(world_a, "member_status", pk=member.pk), {"status": "attended"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert f'id="member-{member.pk}"' in response.content.decode()
    with tenant_scope(world_a.tenant.id):
        assert CampaignMembership.objects.get(pk=member.pk).status == "attended"


def test_add_spend(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant, actual_cost=Decimal("1000"))
    login(world_a.owner).post(url(world_a, "add_cost", pk=campaign.pk), {"add": "2500"})
    with tenant_scope(world_a.tenant.id):
        assert Campaign.objects.get(pk=campaign.pk).actual_cost == Decimal("3500")


def test_bulk_add_selected_and_all_matching(world_a, world_b):
    campaign = CampaignFactory(tenant=world_a.tenant)
    chosen = LeadFactory(tenant=world_a.tenant, lifecycle_stage="lead")
    mqls = [LeadFactory(tenant=world_a.tenant, lifecycle_stage="mql") for _ in range(2)]
    theirs = LeadFactory(tenant=world_b.tenant)
    client = login(world_a.member(Role.MARKETING))
    response = client.post(
        url(world_a, "bulk_add"),
        {"campaign": campaign.pk, "scope": "selected", "ids": [chosen.pk, theirs.pk]},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("leads:index", kwargs={"tenant": world_a.tenant.slug})
    client.post(
        url(world_a, "bulk_add"), {"campaign": campaign.pk, "scope": "all", "filter": "stage=mql"}
    )
    with tenant_scope(world_a.tenant.id):
        members = set(
            CampaignMembership.objects.filter(campaign=campaign).values_list("lead_id", flat=True)
        )
    assert members == {chosen.pk, *(lead.pk for lead in mqls)}


def test_bulk_add_refuses_another_tenants_campaign(world_a, world_b):
    theirs = CampaignFactory(tenant=world_b.tenant)
    lead = LeadFactory(tenant=world_a.tenant)
    login(world_a.owner).post(url(world_a, "bulk_add"), {"campaign": theirs.pk, "ids": [lead.pk]})
    with tenant_scope(world_b.tenant.id):
        assert not CampaignMembership.objects.filter(campaign=theirs).exists()


def test_campaign_owner_picker_offers_agency_staff_serving_the_tenant(world_a):
    agency = AgencyFactory(name="ひかり広告")
    world_a.tenant.managed_by = agency
    world_a.tenant.save(update_fields=["managed_by"])
    manager = MembershipFactory(
        tenant=agency, role=Role.MARKETING, user__full_name="山田 太郎"
    ).user
    planner = MembershipFactory(tenant=agency, role=Role.MARKETING).user
    AgencyAssignmentFactory(tenant=world_a.tenant, user=manager)
    client = login(manager)  # the account manager works in the client through the grant
    page = client.get(url(world_a, "create"))
    choices = page.context["form"].fields["owner"].choices
    assert (str(manager.pk), "山田 太郎 (ひかり広告)") in choices
    assert str(planner.pk) not in [value for value, _label in choices]
    data = {"name": "代理店運用の広告", "channel": "paid_ads", "status": "planned",
            "currency": "JPY", "budget": "0", "actual_cost": "0", "target_leads": "0"}  # fmt: skip
    assert client.post(url(world_a, "create"), {**data, "owner": manager.pk}).status_code == 302
    with tenant_scope(world_a.tenant.id):
        assert Campaign.objects.get(name="代理店運用の広告").owner_id == manager.pk
    response = client.post(url(world_a, "create"), {**data, "owner": planner.pk})
    assert response.status_code == 400
    assert list(response.context["form"].errors) == ["owner"]
