"""Leads API beyond CRUD: filters, search, keyset sorting, batch endpoints with bad
items, merge, stage, timeline and consent."""

import datetime

import pytest
from django.utils import timezone

from accounts.models import Role
from accounts.tenancy import tenant_scope
from campaigns.tests.factories import CampaignFactory, CampaignMembershipFactory
from leads.models import Activity, Lead
from leads.tests.factories import (
    ActivityFactory,
    CompanyFactory,
    ConsentEventFactory,
    LeadFactory,
    LeadTagFactory,
    TagFactory,
)
from tests.api_base import assert_error
from tests.fixtures import api_client_for

pytestmark = pytest.mark.django_db

BASE = "/api/v1/t/acme"


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


@pytest.fixture
def client(world_a):
    return api_client_for(world_a.owner)


# --- Filters and search ----------------------------------------------------------------------


def test_filters_each_narrow_the_list(world_a, client):
    t = world_a.tenant
    owner = world_a.member(role=Role.FIELD_SALES)
    company = CompanyFactory(tenant=t, name="両輪商事株式会社")
    campaign = CampaignFactory(tenant=t)
    tag = TagFactory(tenant=t, name="展示会")
    mql = LeadFactory(tenant=t, lifecycle_stage="mql", owner=owner)
    sql = LeadFactory(tenant=t, lifecycle_stage="sql", company=company)
    sourced = LeadFactory(tenant=t, source_campaign=campaign, source_channel="import")
    member = LeadFactory(tenant=t, email_consent="granted")
    CampaignMembershipFactory(tenant=t, campaign=campaign, lead=member)
    LeadTagFactory(tenant=t, lead=sql, tag=tag)
    old = LeadFactory(tenant=t, created_at=timezone.now() - datetime.timedelta(days=30))
    merged = LeadFactory(tenant=t, email="", merged_into=mql)

    def get(**params):
        return set(ids(client.get(f"{BASE}/leads/", params)))

    assert get(stage=["mql", "sql"]) == {mql.id, sql.id}
    assert get(owner=owner.id) == {mql.id}
    assert get(company=company.id) == {sql.id}
    assert get(campaign=campaign.id) == {sourced.id, member.id}
    assert get(source_campaign=campaign.id) == {sourced.id}
    assert get(source="import") == {sourced.id}
    assert get(tag="展示会") == {sql.id}
    assert get(email_consent="granted") == {member.id}
    since = (timezone.now() - datetime.timedelta(days=1)).isoformat()
    assert old.id not in get(created_after=since)
    assert get(created_before=since) == {old.id}
    assert merged.id not in get()
    error = assert_error(client.get(f"{BASE}/leads/", {"stage": "emperor"}), 400, "invalid")
    assert "stage" in error["fields"]


def test_search_by_name_kana_email_and_company(world_a, world_b, client):
    t = world_a.tenant
    company = CompanyFactory(tenant=t, name="株式会社両輪商事")
    yamada = LeadFactory(
        tenant=t, family_name="山田", given_name="太郎", family_name_kana="ヤマダ", email="t@x.jp"
    )
    suzuki = LeadFactory(
        tenant=t,
        family_name="鈴木",
        given_name="花子",
        email="hanako@ryorin.co.jp",
        company=company,
    )
    LeadFactory(tenant=world_b.tenant, family_name="山田")

    def search(q):
        return set(ids(client.get(f"{BASE}/leads/", {"q": q})))

    assert search("山田") == {yamada.id}
    assert search("やまだ") == {yamada.id}  # hiragana finds the katakana reading
    assert search("ﾔﾏﾀﾞ") == {yamada.id}  # half-width too
    assert search("山田 太郎") == {yamada.id}
    assert search("山田 花子") == set()
    assert search("HANAKO@") == {suzuki.id}
    assert search("両輪") == {suzuki.id}  # company name without 株式会社
    assert search("100%_") == set()


def test_keyset_pages_walk_every_row_once_in_each_sort(world_a, client):
    t = world_a.tenant
    now = timezone.now()
    leads = [
        LeadFactory(tenant=t, family_name=name, created_at=now, updated_at=now)
        for name in ["佐藤"] * 4 + ["山田"] * 3  # ties on every sort key but the id
    ]
    for sort in ["-created", "created", "-updated", "name", "-name"]:
        seen, url = [], f"{BASE}/leads/?page_size=2&sort={sort}"
        while url:
            response = client.get(url)
            seen += ids(response)
            url = response.json()["next"]
        assert sorted(seen) == sorted(lead.id for lead in leads), sort
        assert len(seen) == len(set(seen))
    by_name = ids(client.get(f"{BASE}/leads/", {"sort": "name"}))
    expected = sorted(leads, key=lambda lead: (lead.family_name, lead.given_name, lead.id))
    assert by_name == [lead.id for lead in expected]
    # And back: the previous link of page 2 gives page 1.
    first = client.get(f"{BASE}/leads/?page_size=3")
    second = client.get(first.json()["next"])
    assert ids(client.get(second.json()["previous"])) == ids(first)
    assert_error(client.get(f"{BASE}/leads/", {"sort": "shoe"}), 400, "invalid")
    assert_error(client.get(f"{BASE}/leads/", {"cursor": "garbage"}), 400, "invalid")


# --- Batch endpoints ---------------------------------------------------------------------------


def test_lead_batch_keeps_good_items_and_reports_bad_ones(world_a, client):
    existing = LeadFactory(tenant=world_a.tenant, email="known@example.com", job_title="")
    response = client.post(
        f"{BASE}/leads/batch/",
        {
            "policy": "fill_empty",
            "items": [
                {"email": "new1@example.com", "family_name": "新規"},
                {"email": "not-an-email"},
                {"email": "KNOWN@example.com", "job_title": "部長"},
                {"email": "new2@example.com", "phone": "abc"},
                "not an object",
                {"email": "new3@example.com", "custom": {"nope": 1}},
                {"email": "new4@example.com", "tags": "not-a-list"},
                {"email": "new5@example.com", "lifecycle_stage": "mql"},
            ],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == [
        "created",
        "error",
        "updated",
        "error",
        "error",
        "error",
        "error",
        "created",
    ]
    assert (body["created"], body["errors"]) == (2, 5)
    assert list(body["results"][1]["errors"]) == ["email"]
    assert list(body["results"][3]["errors"]) == ["phone"]
    assert list(body["results"][5]["errors"]) == ["custom.nope"]
    assert body["results"][2]["id"] == existing.id
    existing.refresh_from_db()
    assert existing.job_title == "部長"
    with tenant_scope(world_a.tenant.id):
        assert set(Lead.objects.values_list("email", flat=True)) == {
            "known@example.com",
            "new1@example.com",
            "new5@example.com",
        }


def test_lead_batch_refuses_more_than_1000_and_bad_policy(client, world_a):
    response = client.post(
        f"{BASE}/leads/batch/", {"items": [{"email": "a@b.jp"}] * 1001}, format="json"
    )
    assert "items" in assert_error(response, 400, "invalid")["fields"]
    response = client.post(
        f"{BASE}/leads/batch/", {"items": [{"email": "a@b.jp"}], "policy": "yolo"}, format="json"
    )
    assert "policy" in assert_error(response, 400, "invalid")["fields"]


def test_activity_batch_keeps_good_items(world_a, client):
    lead = LeadFactory(tenant=world_a.tenant, email="a@example.com")
    response = client.post(
        f"{BASE}/activities/batch/",
        {
            "items": [
                {"lead_id": lead.id, "type": "page_view", "properties": {"url": "/"}},
                {"email": "a@example.com", "type": "email_opened"},
                {"email": "nobody@example.com", "type": "email_opened"},
                {"lead_id": lead.id, "type": "nope"},
            ]
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["created", "created", "error", "error"]
    assert (body["created"], body["errors"]) == (2, 2)
    with tenant_scope(world_a.tenant.id):
        assert Activity.objects.filter(lead=lead).count() == 2


def test_read_only_role_cannot_batch(world_a):
    reader = api_client_for(world_a.member(role=Role.READ_ONLY))
    response = reader.post(f"{BASE}/activities/batch/", {"items": []}, format="json")
    assert_error(response, 403, "permission_denied")


def test_sales_may_add_a_call(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    seller = world_a.member(role=Role.INSIDE_SALES)
    response = api_client_for(seller).post(
        f"{BASE}/activities/", {"lead_id": lead.id, "type": "call"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["properties"]["actor_id"] == seller.id


def test_sales_may_not_change_custom_fields_or_suppression(world_a):
    seller = api_client_for(world_a.member(role=Role.FIELD_SALES))
    response = seller.post(f"{BASE}/custom-fields/", {"key": "x", "label": "X"})
    assert_error(response, 403, "permission_denied")
    response = seller.post(f"{BASE}/suppressions/", {"email": "x@example.com"})
    assert_error(response, 403, "permission_denied")


# --- Merge, stage, timeline, consent --------------------------------------------------------------


def test_merge_endpoint(world_a, world_b, client):
    keep = LeadFactory(tenant=world_a.tenant, phone="")
    dup = LeadFactory(tenant=world_a.tenant, phone="+81312345678")
    ActivityFactory(tenant=world_a.tenant, lead=dup)
    response = client.post(f"{BASE}/leads/{keep.id}/merge/", {"merge_id": dup.id})
    assert response.status_code == 200, response.content
    assert response.json()["phone"] == "+81312345678"
    dup.refresh_from_db()
    assert dup.merged_into_id == keep.id
    other = LeadFactory(tenant=world_b.tenant)
    response = client.post(f"{BASE}/leads/{keep.id}/merge/", {"merge_id": other.id})
    assert "merge_id" in assert_error(response, 400, "invalid")["fields"]
    response = client.post(f"{BASE}/leads/{keep.id}/merge/", {"merge_id": dup.id})
    assert "merge_id" in assert_error(response, 400, "invalid")["fields"]


def test_stage_endpoint_records_the_transition(world_a, client):
    lead = LeadFactory(tenant=world_a.tenant)
    response = client.post(
        f"{BASE}/leads/{lead.id}/stage/", {"to_stage": "mql", "reason": "スコア80"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["lifecycle_stage"] == "mql"
    with tenant_scope(world_a.tenant.id):
        transition = lead.transitions.get()
    assert (transition.to_stage, transition.actor, transition.reason) == (
        "mql",
        world_a.owner,
        "スコア80",
    )


def test_timeline_merges_everything_newest_first_and_pages(world_a, client):
    lead = LeadFactory(tenant=world_a.tenant)
    base = timezone.now() - datetime.timedelta(days=1)
    for minutes in range(5):
        ActivityFactory(
            tenant=world_a.tenant,
            lead=lead,
            occurred_at=base + datetime.timedelta(minutes=minutes),
        )
    ConsentEventFactory(
        tenant=world_a.tenant, lead=lead, occurred_at=base + datetime.timedelta(minutes=2)
    )
    client.post(f"{BASE}/leads/{lead.id}/stage/", {"to_stage": "mql"})
    entries, url = [], f"{BASE}/leads/{lead.id}/timeline/?page_size=3"
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        entries += response.json()["results"]
        url = response.json()["next"]
    assert len(entries) == 7
    assert entries[0]["kind"] == "transition"  # the stage change just now
    assert [e["kind"] for e in entries].count("activity") == 5
    times = [e["occurred_at"] for e in entries]
    assert times == sorted(times, reverse=True)
    assert_error(client.get(f"{BASE}/leads/{lead.id}/timeline/?cursor=xyz"), 400, "invalid")


def test_consent_post_and_history(world_a, client):
    lead = LeadFactory(tenant=world_a.tenant, email="c@example.com")
    response = client.post(
        f"{BASE}/leads/{lead.id}/consent/",
        {"purpose": "email_marketing", "status": "withdrawn", "proof": {"note": "電話で依頼"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "withdrawn"
    history = client.get(f"{BASE}/leads/{lead.id}/consent/")
    assert [row["status"] for row in history.json()["results"]] == ["withdrawn"]
    suppressed = client.get(f"{BASE}/suppressions/")
    assert [row["email"] for row in suppressed.json()["results"]] == ["c@example.com"]
    lead.refresh_from_db()
    assert lead.email_consent == "withdrawn"


def test_company_leads(world_a, client):
    company = CompanyFactory(tenant=world_a.tenant)
    lead = LeadFactory(tenant=world_a.tenant, company=company)
    LeadFactory(tenant=world_a.tenant)
    assert ids(client.get(f"{BASE}/companies/{company.id}/leads/")) == [lead.id]
