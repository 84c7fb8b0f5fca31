"""The handoff API: generic endpoint tests for teams and routing rules, and the queue
with its answers, settings and feedback."""

import datetime

import pytest

from accounts.models import Role
from accounts.services import SYSTEM
from accounts.tenancy import tenant_scope
from campaigns.tests.factories import CampaignFactory
from leads.models import Lead, LeadScore, LifecycleStage, ScoringModel
from leads.tests.factories import LeadFactory
from pipeline import services
from pipeline.models import Handoff
from pipeline.tests.factories import HandoffFactory, RoutingRuleFactory, TeamFactory
from tests.api_base import APIEndpointTests, assert_error
from tests.fixtures import api_client_for

pytestmark = pytest.mark.django_db


class TestTeamsAPI(APIEndpointTests):
    route = "team"
    update_payload = {"name": "関西チーム"}
    invalid_payload = {"name": ""}
    invalid_field = "name"
    read_only_role = Role.INSIDE_SALES

    def get_create_payload(self, world):
        rep = world.member(Role.INSIDE_SALES)
        return {"name": "東日本", "manager": world.owner.id, "members": [rep.id]}

    def make_object(self, world):
        return TeamFactory(tenant=world.tenant)


class TestRoutingRulesAPI(APIEndpointTests):
    route = "routing-rule"
    update_payload = {"name": "renamed", "target": "existing_owner"}
    invalid_payload = {"name": "x", "target": "team", "prefectures": ["99"]}
    invalid_field = "prefectures"
    read_only_role = Role.INSIDE_SALES

    def get_create_payload(self, world):
        return {"name": "東京", "target": "user", "user": world.owner.id, "prefectures": ["13"]}

    def make_object(self, world):
        return RoutingRuleFactory(tenant=world.tenant)


class TestHandoffsAPI(APIEndpointTests):
    route = "handoff"
    actions = {"list", "retrieve"}
    invalid_query = {"status": "lost"}

    def make_object(self, world):
        return HandoffFactory(tenant=world.tenant)


def url(world, path: str) -> str:
    return f"/api/v1/t/{world.tenant.slug}/{path}"


def test_queue_answers_through_the_api(world_a):
    rep = world_a.member(Role.INSIDE_SALES)
    client = api_client_for(rep)
    campaign = CampaignFactory(tenant=world_a.tenant)
    leads = [
        LeadFactory(
            tenant=world_a.tenant, lifecycle_stage=LifecycleStage.MQL, source_campaign=campaign
        )
        for _ in range(3)
    ]
    handoffs = [
        services.handoff_create_for_lead(tenant_id=world_a.tenant.id, lead_id=lead.id)
        for lead in leads
    ]
    # Unassigned: the rep claims the first by accepting it.
    response = client.post(url(world_a, f"handoffs/{handoffs[0].pk}/accept/"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["owner"], body["sla"]) == ("accepted", rep.id, "met")
    assert body["lead"]["lifecycle_stage"] == "sal"

    response = client.post(
        url(world_a, f"handoffs/{handoffs[0].pk}/qualify/"), {"handover_note": ""}, format="json"
    )
    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {"handover_note", "budget", "authority", "need", "timeline"}
    response = client.post(
        url(world_a, f"handoffs/{handoffs[0].pk}/qualify/"),
        {
            "handover_note": "デモ希望",
            "budget": "有",
            "authority": "部長",
            "need": "有",
            "timeline": "Q3",
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["qualification"]["handover_note"] == "デモ希望"

    response = client.post(url(world_a, f"handoffs/{handoffs[1].pk}/reject/"), {"reason": "other"})
    error = assert_error(response, 400, "invalid")
    assert "comment" in error["fields"]
    response = client.post(
        url(world_a, f"handoffs/{handoffs[1].pk}/reject/"), {"reason": "not_now", "comment": "来期"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["lead"]["lifecycle_stage"] == "recycled"

    # Someone else's handoff: 403 for a rep, fine for the owner (admin role).
    services.handoff_reassign(handoff=handoffs[2], origin=SYSTEM, owner_id=world_a.owner.id)
    response = client.post(url(world_a, f"handoffs/{handoffs[2].pk}/accept/"))
    assert_error(response, 403)
    response = client.post(url(world_a, f"handoffs/{handoffs[2].pk}/reassign/"), {"owner": rep.id})
    assert_error(response, 403)
    owner = api_client_for(world_a.owner)
    response = owner.post(url(world_a, f"handoffs/{handoffs[2].pk}/reassign/"), {"owner": rep.id})
    assert response.status_code == 200
    assert response.json()["owner"] == rep.id

    # Marketing reads the queue and the feedback but cannot answer.
    marketer = api_client_for(world_a.member(Role.MARKETING))
    assert_error(marketer.post(url(world_a, f"handoffs/{handoffs[2].pk}/accept/")), 403)
    feedback = marketer.get(url(world_a, f"handoffs/feedback/?campaign={campaign.pk}")).json()
    assert feedback == [
        {
            "campaign_id": campaign.pk,
            "campaign_name": campaign.name,
            "handoffs": 3,
            "open": 1,
            "accepted": 1,
            "qualified": 1,
            "rejected": 1,
            "rejected_by_reason": {
                "bad_fit": 0,
                "no_budget": 0,
                "wrong_contact": 0,
                "duplicate": 0,
                "not_now": 1,
                "other": 0,
            },
            "sla_met": 2,
            "sla_breached": 0,
        }
    ]
    mine = client.get(url(world_a, "handoffs/?owner=me")).json()["results"]
    assert [row["id"] for row in mine] == [handoffs[2].pk]  # qualified/rejected are not active


def test_queue_pages_by_deadline_then_score(world_a):
    with tenant_scope(world_a.tenant.id):
        model = ScoringModel.objects.create(tenant=world_a.tenant, name="m", is_primary=True)
    base = datetime.datetime(2025, 10, 22, 1, tzinfo=datetime.UTC)
    expected = []
    for hour in range(3):
        for total in (None, 5, 50):
            lead = LeadFactory(tenant=world_a.tenant, lifecycle_stage=LifecycleStage.MQL)
            if total is not None:
                with tenant_scope(world_a.tenant.id):
                    LeadScore.objects.create(
                        tenant=world_a.tenant, model=model, lead=lead, total=total
                    )
            handoff = HandoffFactory(
                tenant=world_a.tenant, lead=lead, deadline=base + datetime.timedelta(hours=hour)
            )
            expected.append((hour, -(total if total is not None else -1), handoff.pk))
    expected_ids = [pk for *_key, pk in sorted(expected)]
    client = api_client_for(world_a.owner)
    seen, next_url = [], url(world_a, "handoffs/?page_size=2")
    while next_url:
        body = client.get(next_url).json()
        seen += [row["id"] for row in body["results"]]
        next_url = body["next"]
    assert seen == expected_ids
    assert_error(client.get(url(world_a, "handoffs/?cursor=zzz")), 400, "invalid")


def test_settings_api(world_a):
    owner = api_client_for(world_a.owner)
    body = owner.get(url(world_a, "handoff-settings/")).json()
    assert body["sla_hours"] == "8.00"
    assert body["working_days"] == [0, 1, 2, 3, 4]
    response = owner.patch(
        url(world_a, "handoff-settings/"),
        {"sla_hours": "4", "working_days": [0, 1, 2, 3, 4, 5], "closed_dates": ["2025-12-31"],
         "checklist": [{"key": "pain", "label": "課題"}]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json()["checklist"] == [{"key": "pain", "label": "課題"}]
    response = owner.patch(
        url(world_a, "handoff-settings/"),
        {"workday_start": "18:00", "workday_end": "09:00"},
        format="json",
    )
    assert "workday_end" in assert_error(response, 400, "invalid")["fields"]
    rep = api_client_for(world_a.member(Role.INSIDE_SALES))
    assert rep.get(url(world_a, "handoff-settings/")).status_code == 200
    assert_error(rep.patch(url(world_a, "handoff-settings/"), {"sla_hours": "1"}), 403)


def test_other_tenant_cannot_answer(world_a, world_b):
    handoff = HandoffFactory(tenant=world_a.tenant)
    client = api_client_for(world_b.owner)
    for action in ("accept", "reject", "qualify", "reassign"):
        response = client.post(f"/api/v1/t/{world_b.tenant.slug}/handoffs/{handoff.pk}/{action}/")
        assert_error(response, 404)
    with tenant_scope(world_a.tenant.id):
        assert Handoff.objects.get(pk=handoff.pk).status == "open"
        assert Lead.objects.get(pk=handoff.lead_id).lifecycle_stage == "mql"
