"""The campaigns API: the generic endpoint tests (CRUD, errors, tenant isolation, roles)
for campaigns and their nested members, then what is particular to them: figures,
filters, money as strings, role rules, adding members one at a time or in bulk."""

from decimal import Decimal

import pytest
from django.db.models import Model
from rest_framework.response import Response

from accounts.models import AuditLog, Role
from accounts.tenancy import tenant_scope
from campaigns.models import Campaign, CampaignChannel, CampaignMembership
from campaigns.tests.factories import CampaignFactory, CampaignMembershipFactory
from leads.tests.factories import CompanyFactory, LeadFactory
from tests.api_base import APIEndpointTests, assert_error, detail_url, list_url
from tests.fixtures import TenantWorld, api_client_for

Status = CampaignMembership.Status


class TestCampaignsAPI(APIEndpointTests):
    route = "campaign"
    create_payload = {
        "name": "Japan IT Week 秋",
        "channel": CampaignChannel.TRADE_SHOW,
        "starts_on": "2025-10-22",
        "ends_on": "2025-10-24",
        "budget": "1500000",
        "target_leads": 300,
        "utm_campaign": "itweek-autumn",
    }
    update_payload = {"status": Campaign.Status.ACTIVE, "actual_cost": "1234000.00"}
    invalid_payload = {"name": "x", "channel": "carrier_pigeon"}
    invalid_field = "channel"
    invalid_query = {"starts_after": "next spring"}

    def make_object(self, world: TenantWorld) -> Model:
        return CampaignFactory(tenant=world.tenant)

    def check_created(self, world: TenantWorld, response: Response) -> None:
        super().check_created(world, response)
        body = response.json()
        assert body["budget"] == "1500000.00"  # money is a string
        assert body["currency"] == "JPY"
        assert body["figures"]["leads_generated"] == 0
        assert body["figures"]["cost_per_lead"] is None
        assert body["figures"]["target_progress"] == "0.000"
        assert body["leads_by_stage"] == {}


class TestCampaignMembersAPI(APIEndpointTests):
    route = "campaign-member"
    update_payload = {"status": Status.ATTENDED}
    invalid_payload = {"lead_id": 1, "status": "teleported"}
    invalid_field = "status"
    invalid_query = {"status": "teleported"}

    def url_kwargs(self, world: TenantWorld) -> dict:
        campaigns = self.__dict__.setdefault("campaigns", {})
        if world.tenant.id not in campaigns:
            campaigns[world.tenant.id] = CampaignFactory(tenant=world.tenant)
        return {"campaign_pk": campaigns[world.tenant.id].pk}

    def make_object(self, world: TenantWorld) -> Model:
        campaign_id = self.url_kwargs(world)["campaign_pk"]
        lead = LeadFactory(tenant=world.tenant, company=CompanyFactory(tenant=world.tenant))
        return CampaignMembershipFactory(
            tenant=world.tenant, campaign_id=campaign_id, lead=lead, status=Status.REGISTERED
        )

    def get_create_payload(self, world: TenantWorld) -> dict:
        return {"lead_id": LeadFactory(tenant=world.tenant).pk, "status": Status.REGISTERED}

    def check_created(self, world: TenantWorld, response: Response) -> None:
        super().check_created(world, response)
        body = response.json()
        assert body["status"] == Status.REGISTERED
        assert set(body["lead"]) == {"id", "name", "email", "company", "lifecycle_stage"}

    def _assert_untouched(self, world: TenantWorld, obj: Model) -> None:
        super()._assert_untouched(world, obj)
        with tenant_scope(world.tenant.id):
            assert CampaignMembership.objects.get(pk=obj.pk).status == Status.REGISTERED


# --- Campaigns -------------------------------------------------------------------------------

pytestmark = pytest.mark.django_db


def campaigns_url(world: TenantWorld) -> str:
    return list_url("campaign", world.tenant.slug)


def members_url(world: TenantWorld, campaign: Campaign) -> str:
    return list_url("campaign-member", world.tenant.slug, campaign_pk=campaign.pk)


@pytest.mark.parametrize(
    ("role", "may_write"),
    [
        (Role.OWNER, True),
        (Role.ADMIN, True),
        (Role.MARKETING, True),
        (Role.INSIDE_SALES, False),
        (Role.FIELD_SALES, False),
        (Role.READ_ONLY, False),
    ],
)
def test_every_role_reads_only_marketing_and_admins_write(world_a, role, may_write):
    campaign = CampaignFactory(tenant=world_a.tenant)
    lead = LeadFactory(tenant=world_a.tenant)
    client = api_client_for(world_a.member(role=role))
    assert client.get(campaigns_url(world_a)).status_code == 200
    assert client.get(members_url(world_a, campaign)).status_code == 200
    writes = [
        client.post(campaigns_url(world_a), {"name": "n", "channel": "seo"}),
        client.patch(detail_url("campaign", world_a.tenant.slug, campaign.pk), {"name": "m"}),
        client.post(members_url(world_a, campaign), {"lead_id": lead.pk}),
        client.post(f"{members_url(world_a, campaign)}bulk/", {"lead_ids": [lead.pk]}),
    ]
    for response in writes:
        if may_write:
            assert response.status_code in (200, 201), response.content
        else:
            assert_error(response, 403, "permission_denied")


def test_an_api_key_with_a_sales_role_cannot_write(world_a):
    client = api_client_for(api_key=world_a.api_key(role=Role.INSIDE_SALES))
    assert client.get(list_url("campaign", None)).status_code == 200
    response = client.post(list_url("campaign", None), {"name": "n", "channel": "seo"})
    assert_error(response, 403, "permission_denied")


def test_service_validation_errors_name_the_field(world_a):
    client = api_client_for(world_a.owner)
    response = client.post(
        campaigns_url(world_a),
        {
            "name": "x",
            "channel": "webinar",
            "budget": "1000.50",  # yen has no decimals
            "currency": "JPY",
            "starts_on": "2025-06-02",
            "ends_on": "2025-06-01",
            "owner": world_a.owner.pk,
        },
    )
    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {"budget", "ends_on"}
    response = client.post(
        campaigns_url(world_a), {"name": "x", "channel": "webinar", "currency": "ABC"}
    )
    assert set(assert_error(response, 400, "invalid")["fields"]) == {"currency"}
    with tenant_scope(world_a.tenant.id):
        assert not Campaign.objects.exists()


def test_owner_must_be_a_member_of_the_tenant(world_a, world_b):
    client = api_client_for(world_a.owner)
    response = client.post(
        campaigns_url(world_a), {"name": "x", "channel": "seo", "owner": world_b.owner.pk}
    )
    assert set(assert_error(response, 400, "invalid")["fields"]) == {"owner"}
    response = client.post(
        campaigns_url(world_a), {"name": "x", "channel": "seo", "owner": world_a.owner.pk}
    )
    assert response.status_code == 201
    assert response.json()["owner"]["email"] == world_a.owner.email


def test_figures_in_list_and_detail(world_a):
    campaign = CampaignFactory(
        tenant=world_a.tenant, actual_cost=Decimal("90000"), budget=Decimal("100000")
    )
    for status in (Status.ATTENDED, Status.NO_SHOW, Status.ATTENDED):
        CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign, status=status)
    LeadFactory.create_batch(4, tenant=world_a.tenant, source_campaign=campaign)
    client = api_client_for(world_a.owner)
    [row] = client.get(campaigns_url(world_a)).json()["results"]
    assert row["figures"] == {
        "members": {
            "invited": 0,
            "registered": 0,
            "attended": 2,
            "responded": 0,
            "no_show": 1,
            "total": 3,
        },
        "leads_generated": 4,
        "cost_per_lead": "22500.00",
        "budget_remaining": "10000.00",
        "target_progress": None,
    }
    detail = client.get(detail_url("campaign", world_a.tenant.slug, campaign.pk)).json()
    assert detail["figures"] == row["figures"]
    assert detail["leads_by_stage"] == {"lead": 4}


def test_filters(world_a):
    def make(**fields) -> Campaign:
        return CampaignFactory(tenant=world_a.tenant, **fields)

    webinar = make(name="DX ウェビナー", channel="webinar", status="active", starts_on="2025-03-01")
    expo = make(name="展示会 春", channel="trade_show", status="active", starts_on="2025-04-10")
    paper = make(name="ホワイトペーパー", channel="content", status="planned")
    client = api_client_for(world_a.owner)

    def ids(**query) -> set[int]:
        response = client.get(campaigns_url(world_a), query)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids(channel="webinar") == {webinar.pk}
    assert ids(channel=["webinar", "content"]) == {webinar.pk, paper.pk}
    assert ids(status="active") == {webinar.pk, expo.pk}
    assert ids(starts_after="2025-04-01") == {expo.pk}
    assert ids(starts_before="2025-04-01") == {webinar.pk}
    assert ids(search="ウェビナー") == {webinar.pk}
    assert ids(search="dx") == {webinar.pk}  # case-insensitive
    assert ids(status="active", channel="trade_show") == {expo.pk}
    error = assert_error(client.get(campaigns_url(world_a), {"channel": "fax"}), 400, "invalid")
    assert "channel" in error["fields"]


def test_money_changes_through_the_api_are_audited_with_the_key(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    client = api_client_for(api_key=world_a.api_key(role=Role.MARKETING))
    response = client.patch(
        detail_url("campaign", None, campaign.pk), {"actual_cost": "250000", "currency": "jpy"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["actual_cost"] == "250000.00"
    assert response.json()["currency"] == "JPY"
    with tenant_scope(world_a.tenant.id):
        entry = AuditLog.objects.get(action="campaign.cost_changed")
    assert entry.api_key is not None
    assert entry.metadata == {"actual_cost": {"from": "0.00", "to": "250000.00"}}


def test_delete_is_audited(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    response = api_client_for(world_a.owner).delete(
        detail_url("campaign", world_a.tenant.slug, campaign.pk)
    )
    assert response.status_code == 204
    with tenant_scope(world_a.tenant.id):
        entry = AuditLog.objects.get(action="campaign.deleted")
    assert entry.actor == world_a.owner
    assert entry.target_id == str(campaign.pk)


def test_non_numeric_ids_answer_404_in_the_error_format(world_a):
    client = api_client_for(world_a.owner)
    assert_error(client.get(f"{campaigns_url(world_a)}abc/"), 404, "not_found")
    assert_error(client.get(f"{campaigns_url(world_a)}abc/members/"), 404, "not_found")


# --- Members ---------------------------------------------------------------------------------


def test_adding_an_existing_member_answers_200_and_keeps_the_further_status(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    member = CampaignMembershipFactory(
        tenant=world_a.tenant, campaign=campaign, status=Status.ATTENDED
    )
    client = api_client_for(world_a.owner)
    response = client.post(
        members_url(world_a, campaign), {"lead_id": member.lead_id, "status": Status.INVITED}
    )
    assert response.status_code == 200, response.content
    assert response.json()["id"] == member.pk
    assert response.json()["status"] == Status.ATTENDED


def test_adding_another_tenants_lead_is_a_validation_error(world_a, world_b):
    campaign = CampaignFactory(tenant=world_a.tenant)
    foreign = LeadFactory(tenant=world_b.tenant)
    response = api_client_for(world_a.owner).post(
        members_url(world_a, campaign), {"lead_id": foreign.pk}
    )
    assert set(assert_error(response, 400, "invalid")["fields"]) == {"lead_id"}
    with tenant_scope(world_b.tenant.id):
        assert not CampaignMembership.objects.exists()


def test_bulk_add_answers_per_lead_in_order(world_a, world_b):
    campaign = CampaignFactory(tenant=world_a.tenant)
    new, existing = LeadFactory.create_batch(2, tenant=world_a.tenant)
    further = CampaignMembershipFactory(
        tenant=world_a.tenant, campaign=campaign, status=Status.ATTENDED
    )
    CampaignMembershipFactory(
        tenant=world_a.tenant, campaign=campaign, lead=existing, status=Status.INVITED
    )
    foreign = LeadFactory(tenant=world_b.tenant)
    lead_ids = [new.pk, existing.pk, further.lead_id, foreign.pk, new.pk]
    response = api_client_for(world_a.owner).post(
        f"{members_url(world_a, campaign)}bulk/",
        {"lead_ids": lead_ids, "status": Status.REGISTERED},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["results"] == [
        {"lead_id": new.pk, "result": "added"},
        {"lead_id": existing.pk, "result": "updated"},
        {"lead_id": further.lead_id, "result": "unchanged"},
        {"lead_id": foreign.pk, "result": "not_found"},
        {"lead_id": new.pk, "result": "added"},
    ]
    assert body["counts"] == {"added": 1, "updated": 1, "unchanged": 1, "not_found": 1}
    with tenant_scope(world_a.tenant.id):
        stored = dict(
            CampaignMembership.objects.filter(campaign=campaign).values_list("lead_id", "status")
        )
    assert stored == {
        new.pk: Status.REGISTERED,
        existing.pk: Status.REGISTERED,
        further.lead_id: Status.ATTENDED,
    }


def test_bulk_add_takes_at_most_1000_leads(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    client = api_client_for(world_a.owner)
    url = f"{members_url(world_a, campaign)}bulk/"
    response = client.post(url, {"lead_ids": list(range(1, 1002))})
    assert set(assert_error(response, 400, "invalid")["fields"]) == {"lead_ids"}
    response = client.post(url, {"lead_ids": []})
    assert_error(response, 400, "invalid")
    response = client.post(url, {"lead_ids": list(range(1, 1001))})
    assert response.status_code == 200
    assert response.json()["counts"]["not_found"] == 1000


def test_bulk_add_to_another_tenants_campaign_is_404(world_a, world_b):
    foreign_campaign = CampaignFactory(tenant=world_b.tenant)
    lead = LeadFactory(tenant=world_a.tenant)
    response = api_client_for(world_a.owner).post(
        f"{members_url(world_a, foreign_campaign)}bulk/", {"lead_ids": [lead.pk]}
    )
    assert_error(response, 404, "not_found")


def test_member_of_another_campaign_is_404_under_this_one(world_a):
    campaign, other_campaign = CampaignFactory.create_batch(2, tenant=world_a.tenant)
    member = CampaignMembershipFactory(tenant=world_a.tenant, campaign=other_campaign)
    client = api_client_for(world_a.owner)
    url = detail_url("campaign-member", world_a.tenant.slug, member.pk, campaign_pk=campaign.pk)
    assert_error(client.get(url), 404)
    assert_error(client.patch(url, {"status": Status.ATTENDED}), 404)
    assert_error(client.delete(url), 404)


def test_members_filter_by_status_and_show_the_lead(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    company = CompanyFactory(tenant=world_a.tenant, name="株式会社両輪")
    lead = LeadFactory(
        tenant=world_a.tenant,
        company=company,
        family_name="佐藤",
        given_name="花子",
        email="hanako@ryorin.example",
    )
    attended = CampaignMembershipFactory(
        tenant=world_a.tenant, campaign=campaign, lead=lead, status=Status.ATTENDED
    )
    CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign, status=Status.NO_SHOW)
    response = api_client_for(world_a.owner).get(
        members_url(world_a, campaign), {"status": Status.ATTENDED}
    )
    [row] = response.json()["results"]
    assert row["id"] == attended.pk
    assert row["lead"] == {
        "id": lead.pk,
        "name": "佐藤 花子",
        "email": "hanako@ryorin.example",
        "company": "株式会社両輪",
        "lifecycle_stage": "lead",
    }


def test_member_list_query_count_does_not_grow_with_rows(world_a, django_assert_max_num_queries):
    campaign = CampaignFactory(tenant=world_a.tenant)
    for _ in range(30):
        lead = LeadFactory(tenant=world_a.tenant, company=CompanyFactory(tenant=world_a.tenant))
        CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign, lead=lead)
    client = api_client_for(world_a.owner)
    client.get(members_url(world_a, campaign))  # warm the session and key caches
    with django_assert_max_num_queries(9):
        response = client.get(members_url(world_a, campaign))
    assert len(response.json()["results"]) == 30


def test_campaign_list_query_count_does_not_grow_with_rows(world_a, django_assert_max_num_queries):
    for _ in range(30):
        campaign = CampaignFactory(tenant=world_a.tenant, owner=world_a.owner)
        CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign)
        LeadFactory(tenant=world_a.tenant, source_campaign=campaign)
    client = api_client_for(world_a.owner)
    client.get(campaigns_url(world_a))
    with django_assert_max_num_queries(8):
        response = client.get(campaigns_url(world_a))
    rows = response.json()["results"]
    assert len(rows) == 30
    assert all(row["figures"]["members"]["total"] == 1 for row in rows)
    assert all(row["owner"]["id"] == world_a.owner.pk for row in rows)


def test_bulk_add_is_idempotent_with_a_key(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    lead = LeadFactory(tenant=world_a.tenant)
    client = api_client_for(world_a.owner)
    url = f"{members_url(world_a, campaign)}bulk/"
    first = client.post(url, {"lead_ids": [lead.pk]}, HTTP_IDEMPOTENCY_KEY="k1")
    again = client.post(url, {"lead_ids": [lead.pk]}, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.json()["results"] == [{"lead_id": lead.pk, "result": "added"}]
    assert again.json() == first.json()  # the replay, not a second run ("unchanged")
    assert again.headers["Idempotent-Replayed"] == "true"
