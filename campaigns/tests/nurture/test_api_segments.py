"""The segments API: the generic endpoint tests (CRUD, error format, tenant isolation,
roles and key scopes), the filter stored as the lead list's query, refused filter
parameters named one by one, and the "matches N leads" preview of an unsaved filter
and of a saved segment."""

import pytest
from django.db.models import Model
from django.http import QueryDict
from django.urls import reverse
from rest_framework.response import Response

from accounts.models import AuditLog, Membership, Role
from accounts.tenancy import tenant_scope
from campaigns.models import Segment
from campaigns.tests.factories import CampaignFactory, SegmentFactory
from leads.models import LifecycleStage
from leads.tests.factories import LeadFactory, LeadTagFactory, TagFactory
from tests.api_base import APIEndpointTests, assert_error, detail_url, list_url
from tests.fixtures import TenantWorld, api_client_for

pytestmark = pytest.mark.django_db


class TestSegmentsAPI(APIEndpointTests):
    route = "segment"
    create_payload = {"name": "MQL 展示会", "filter": "stage=mql&tag=展示会"}
    update_payload = {"name": "MQL（展示会 2026）"}
    invalid_payload = {"name": "x", "filter": "colour=red"}
    invalid_field = "filter"

    def make_object(self, world: TenantWorld) -> Model:
        return SegmentFactory(tenant=world.tenant)

    def check_created(self, world: TenantWorld, response: Response) -> None:
        super().check_created(world, response)
        body = response.json()
        assert QueryDict(body["filter"]) == QueryDict("stage=mql&tag=展示会")
        assert body["evaluated_at"] is None
        assert body["matched"] is None


def preview_url(world: TenantWorld) -> str:
    return reverse("api:tenant:segment-preview", kwargs={"tenant": world.tenant.slug})


def matches_url(world: TenantWorld, pk: int) -> str:
    return reverse("api:tenant:segment-matches", kwargs={"tenant": world.tenant.slug, "pk": pk})


def tagged_mql_leads(world: TenantWorld, n: int) -> list:
    tag = TagFactory(tenant=world.tenant, name="展示会")
    leads = []
    for _ in range(n):
        lead = LeadFactory(tenant=world.tenant, lifecycle_stage=LifecycleStage.MQL)
        LeadTagFactory(tenant=world.tenant, lead=lead, tag=tag)
        leads.append(lead)
    return leads


def test_create_stores_the_lead_lists_query_without_paging_and_audits(world_a):
    client = api_client_for(world_a.member(Role.MARKETING))
    response = client.post(
        list_url("segment", world_a.tenant.slug),
        {"name": "MQL", "filter": "/t/acme/leads/?stage=mql&cursor=abc&sort=name&page_size=5"},
    )
    assert response.status_code == 201, response.content
    assert response.json()["filter"] == "stage=mql"
    with tenant_scope(world_a.tenant.id):
        segment = Segment.objects.get(pk=response.json()["id"])
        assert segment.filter == "stage=mql"
        assert AuditLog.objects.filter(action="segment.created", target_id=str(segment.pk)).exists()


def test_each_refused_filter_parameter_is_named(world_a, world_b):
    outsider_campaign = CampaignFactory(tenant=world_b.tenant)
    client = api_client_for(world_a.owner)
    response = client.post(
        list_url("segment", world_a.tenant.slug),
        {
            "name": "壊れたフィルター",
            "filter": f"stage=nope&colour=red&campaign={outsider_campaign.pk}&tag=展示会",
        },
    )
    error = assert_error(response, 400, "invalid")
    problems = error["fields"]["filter"]
    # The bad parameters, each with its own message; the good one (tag) not named.
    assert set(problems) == {"stage", "colour", "campaign"}
    assert all(isinstance(messages, list) and messages for messages in problems.values())
    with tenant_scope(world_a.tenant.id):
        assert not Segment.objects.exists()


def test_a_filter_too_long_is_an_error_on_filter(world_a):
    client = api_client_for(world_a.owner)
    response = client.post(
        list_url("segment", world_a.tenant.slug), {"name": "長い", "filter": "tag=" + "x" * 2100}
    )
    error = assert_error(response, 400, "invalid")
    assert "filter" in error["fields"]


def test_a_duplicate_name_is_refused_on_name(world_a):
    SegmentFactory(tenant=world_a.tenant, name="同じ名前")
    client = api_client_for(world_a.owner)
    response = client.post(
        list_url("segment", world_a.tenant.slug), {"name": "同じ名前", "filter": "stage=mql"}
    )
    error = assert_error(response, 400, "invalid")
    assert list(error["fields"]) == ["name"]


def test_update_of_the_filter_is_checked_and_clears_the_old_problem(world_a):
    segment = SegmentFactory(tenant=world_a.tenant, filter="stage=mql", error="古い問題")
    client = api_client_for(world_a.owner)
    url = detail_url("segment", world_a.tenant.slug, segment.pk)
    error = assert_error(client.patch(url, {"filter": "owner=abc"}), 400, "invalid")
    assert set(error["fields"]["filter"]) == {"owner"}
    response = client.patch(url, {"filter": "stage=lead"})
    assert response.status_code == 200, response.content
    assert response.json()["filter"] == "stage=lead"
    assert response.json()["error"] == ""


def test_preview_counts_an_unsaved_filter_like_the_page(world_a, world_b):
    tagged_mql_leads(world_a, 3)
    LeadFactory(tenant=world_a.tenant, lifecycle_stage=LifecycleStage.MQL)  # untagged
    tagged_mql_leads(world_b, 2)  # another tenant's never count
    client = api_client_for(world_a.member(Role.READ_ONLY))  # a read: any role
    response = client.get(preview_url(world_a), {"filter": "?stage=mql&tag=展示会&cursor=x"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 3
    assert body["problem"] == ""
    assert QueryDict(body["filter"]) == QueryDict("stage=mql&tag=展示会")
    with tenant_scope(world_a.tenant.id):
        assert not Segment.objects.exists()  # nothing saved
    # No filter: every live lead of the tenant.
    assert client.get(preview_url(world_a)).json()["count"] == 4


def test_preview_names_the_bad_parameter(world_a):
    response = api_client_for(world_a.owner).get(preview_url(world_a), {"filter": "size=big"})
    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]["filter"]) == {"size"}


def test_matches_counts_a_saved_segment_now_and_says_why_it_matches_none(world_a):
    tagged_mql_leads(world_a, 2)
    owner = world_a.member(Role.INSIDE_SALES)
    LeadFactory(tenant=world_a.tenant, owner=owner)
    client = api_client_for(world_a.owner)
    segment = SegmentFactory(tenant=world_a.tenant, filter="stage=mql&tag=展示会")
    body = client.get(matches_url(world_a, segment.pk)).json()
    assert (body["count"], body["problem"]) == (2, "")
    # Saved when the owner worked here; they left: the filter no longer holds and the
    # segment matches nobody (never everyone), saying why.
    gone = SegmentFactory(tenant=world_a.tenant, name="担当者", filter=f"owner={owner.pk}")
    assert client.get(matches_url(world_a, gone.pk)).json()["count"] == 1
    with tenant_scope(world_a.tenant.id):
        Membership.objects.filter(user=owner).delete()
    body = client.get(matches_url(world_a, gone.pk)).json()
    assert body["count"] == 0
    assert "owner" in body["problem"]


def test_another_tenants_segment_is_404_on_matches(world_a, world_b):
    segment = SegmentFactory(tenant=world_a.tenant)
    client = api_client_for(world_b.owner)
    assert_error(client.get(matches_url(world_b, segment.pk)), 404)
