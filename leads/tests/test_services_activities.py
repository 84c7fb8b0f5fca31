"""activity_record and the set-based activities_ingest."""

import datetime

import pytest
from django.core.exceptions import ValidationError

from accounts.tenancy import tenant_scope
from campaigns.tests.factories import CampaignFactory
from leads import services
from leads.models import Activity, Suppression
from leads.tests.factories import LeadFactory, VisitorFactory

pytestmark = pytest.mark.django_db


def test_record_for_a_lead_and_for_a_visitor(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    activity = services.activity_record(
        tenant_id=world_a.tenant.id,
        type="note",
        lead=lead,
        channel="ui",
        properties={"text": "電話で資料送付を依頼された"},
    )
    assert activity.lead_id == lead.id
    visitor = VisitorFactory(tenant=world_a.tenant)
    anonymous = services.activity_record(
        tenant_id=world_a.tenant.id,
        type="page_view",
        visitor=visitor,
        channel="tracking",
        occurred_at="2026-05-01T10:00:00+09:00",
    )
    assert anonymous.lead_id is None
    assert anonymous.occurred_at == datetime.datetime(2026, 5, 1, 1, 0, tzinfo=datetime.UTC)
    with pytest.raises(ValidationError) as info:
        services.activity_record(
            tenant_id=world_a.tenant.id, type="teleport", channel="ui", occurred_at="yesterday"
        )
    assert set(info.value.message_dict) == {"type", "lead_id", "occurred_at"}


def test_ingest_gives_per_item_results_and_keeps_good_items(world_a, world_b):
    lead = LeadFactory(tenant=world_a.tenant, email="known@example.com")
    other_tenants_lead = LeadFactory(tenant=world_b.tenant)
    campaign = CampaignFactory(tenant=world_a.tenant)
    items = [
        {"lead_id": lead.id, "type": "page_view", "properties": {"url": "/pricing"}},
        {"email": "ＫＮＯＷＮ@example.com", "type": "email_opened", "campaign_id": campaign.id},
        {"email": "stranger@example.com", "type": "email_opened"},
        {"lead_id": other_tenants_lead.id, "type": "page_view"},
        {"lead_id": lead.id, "type": "teleport", "occurred_at": "not a date"},
        {"lead_id": lead.id, "type": "page_view", "campaign_id": 999999999},
        "not an object",
        {"type": "page_view"},
        {"lead_id": lead.id, "type": "page_view", "color": "red"},
    ]
    results = services.activities_ingest(tenant_id=world_a.tenant.id, items=items, channel="api")
    assert [r["status"] for r in results] == ["created", "created"] + ["error"] * 7
    assert [r["index"] for r in results] == list(range(9))
    assert set(results[2]["errors"]) == {"email"}
    assert set(results[3]["errors"]) == {"lead_id"}  # another tenant's lead is unknown
    assert set(results[4]["errors"]) == {"type", "occurred_at"}
    assert set(results[5]["errors"]) == {"campaign_id"}
    assert set(results[6]["errors"]) == {"item"}
    assert set(results[7]["errors"]) == {"lead_id"}
    assert set(results[8]["errors"]) == {"color"}
    with tenant_scope(world_a.tenant.id):
        stored = {a.id: a for a in Activity.objects.all()}
    assert set(stored) == {results[0]["id"], results[1]["id"]}
    assert stored[results[1]["id"]].lead_id == lead.id
    assert stored[results[1]["id"]].campaign_id == campaign.id
    assert stored[results[0]["id"]].properties == {"url": "/pricing"}
    assert stored[results[0]["id"]].type == "page_view"
    assert stored[results[1]["id"]].type == "email_opened"


def test_ingest_query_count_does_not_grow_with_the_batch(world_a, django_assert_max_num_queries):
    leads = [LeadFactory(tenant=world_a.tenant) for _ in range(20)]
    campaign = CampaignFactory(tenant=world_a.tenant)
    items = [
        {
            "email": lead.email if n % 2 else "",
            "lead_id": None if n % 2 else lead.id,
            "type": "page_view",
            "campaign_id": campaign.id,
            "occurred_at": "2026-05-01T10:00:00Z",
        }
        for n, lead in enumerate(leads * 50)
    ]
    with django_assert_max_num_queries(12):
        results = services.activities_ingest(tenant_id=world_a.tenant.id, items=items)
    assert all(r["status"] == "created" for r in results)
    assert len(results) == 1000


def test_ingest_refuses_more_than_1000(world_a):
    with pytest.raises(ValidationError):
        services.activities_ingest(tenant_id=world_a.tenant.id, items=[{"type": "note"}] * 1001)


def test_merged_lead_id_reaches_the_kept_lead(world_a):
    keep = LeadFactory(tenant=world_a.tenant)
    merged = LeadFactory(tenant=world_a.tenant, email="", merged_into=keep)
    results = services.activities_ingest(
        tenant_id=world_a.tenant.id, items=[{"lead_id": merged.id, "type": "note"}]
    )
    with tenant_scope(world_a.tenant.id):
        assert Activity.objects.get(pk=results[0]["id"]).lead_id == keep.id


def test_unsubscribe_activity_withdraws_consent_and_suppresses(world_a):
    lead = LeadFactory(tenant=world_a.tenant, email="bye@example.com", email_consent="granted")
    services.activities_ingest(
        tenant_id=world_a.tenant.id,
        items=[{"email": "bye@example.com", "type": "email_unsubscribed"}],
        channel="api",
    )
    lead.refresh_from_db()
    assert lead.email_consent == "withdrawn"
    with tenant_scope(world_a.tenant.id):
        assert Suppression.objects.filter(email="bye@example.com").exists()
        assert lead.consent_events.get().status == "withdrawn"


def test_ingest_stores_properties_as_given_and_refuses_what_jsonb_cannot_hold(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    properties = {"url": 'https://例え.jp/資料?q="x"', "n": 1.5, "tags": ["a", None], "o": {}}
    items = [
        {"lead_id": lead.id, "type": "page_view", "properties": properties},
        # NaN is not JSON, and jsonb has no NUL: either would fail the whole INSERT.
        {"lead_id": lead.id, "type": "page_view", "properties": {"score": float("nan")}},
        {"lead_id": lead.id, "type": "page_view", "properties": {"text": "a\x00b"}},
        {"lead_id": lead.id, "type": "note"},
    ]
    results = services.activities_ingest(tenant_id=world_a.tenant.id, items=items, channel="api")
    assert [r["status"] for r in results] == ["created", "error", "error", "created"]
    assert set(results[1]["errors"]) == {"properties"}
    assert set(results[2]["errors"]) == {"properties"}
    with tenant_scope(world_a.tenant.id):
        stored = Activity.objects.get(pk=results[0]["id"])
        empty = Activity.objects.get(pk=results[3]["id"])
    assert stored.properties == properties
    assert empty.properties == {}
