"""leads_upsert_bulk (the leads batch API): lead_upsert's rules for many items at once,
per-item results, and a number of queries that does not grow with the batch."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import DomainEvent
from accounts.services import SYSTEM
from accounts.tenancy import tenant_scope
from campaigns.tests.factories import CampaignFactory
from leads import services
from leads.models import Company, Lead, LifecycleTransition
from leads.tests.factories import CompanyFactory, CustomFieldDefinitionFactory, LeadFactory

pytestmark = pytest.mark.django_db


def bulk(world, items, policy="fill_empty", **options):
    return services.leads_upsert_bulk(
        tenant_id=world.tenant.id,
        items=items,
        channel="api",
        origin=SYSTEM,
        policy=policy,
        **options,
    )


def one_by_one(world, items, policy="fill_empty", **options):
    for item in items:
        fields = {k: v for k, v in item.items() if k != "email"}
        services.lead_upsert(
            tenant_id=world.tenant.id,
            email=item["email"],
            fields=fields,
            channel="api",
            origin=SYSTEM,
            policy=policy,
            **options,
        )


def snapshot(world) -> dict:
    """Everything the upsert rules decide, without ids: leads, companies, tags,
    transitions and outbox events."""
    with tenant_scope(world.tenant.id):
        leads = {}
        for lead in Lead.objects.select_related("company").prefetch_related("tags"):
            leads[lead.email] = (
                lead.family_name, lead.given_name, lead.family_name_kana, lead.phone,
                lead.job_title, lead.lifecycle_stage, lead.source_channel,
                lead.source_campaign_id is not None, lead.custom_fields,
                sorted(t.name for t in lead.tags.all()),
                lead.company and (lead.company.name, lead.company.corporate_number,
                                  lead.company.domain, lead.company.industry,
                                  lead.company.prefecture),
            )  # fmt: skip
        companies = sorted(
            Company.objects.values_list("name", "corporate_number", "domain", "prefecture")
        )
        transitions = sorted(
            LifecycleTransition.objects.values_list("lead__email", "from_stage", "to_stage")
        )
        events = sorted(
            (e.name, e.payload.get("email", ""), tuple(e.payload.get("fields", [])),
             e.payload.get("from", ""), e.payload.get("to", ""))
            for e in DomainEvent.objects.all()
        )  # fmt: skip
    return {"leads": leads, "companies": companies, "transitions": transitions, "events": events}


def seed(world) -> None:
    LeadFactory(tenant=world.tenant, email="known@ryorin.co.jp", job_title="", phone="",
                family_name="既存", given_name="", lifecycle_stage="lead")  # fmt: skip
    CompanyFactory(tenant=world.tenant, name="両輪商事株式会社", corporate_number="",
                   domain="", prefecture="")  # fmt: skip
    CompanyFactory(tenant=world.tenant, name="番号社", corporate_number="7000012050002",
                   domain="bango.co.jp")  # fmt: skip


ITEMS = [
    {"email": "new@ryorin.co.jp", "family_name": "山田", "given_name_kana": "たろう",
     "company_name": "(株)両輪商事", "prefecture": "東京都", "tags": ["展示会"]},
    {"email": "KNOWN@ryorin.co.jp", "job_title": "部長", "phone": "03-1111-2222",
     "lifecycle_stage": "mql", "tags": ["VIP", "展示会"]},
    {"email": "free@gmail.com", "company_name": "新しい会社", "corporate_number": ""},
    {"email": "other@newco.jp", "company_name": "新しい会社 株式会社",
     "company_domain": "newco.jp"},
    {"email": "number@x.jp", "company_name": "違う名前", "corporate_number": "7000012050002"},
    {"email": "new@ryorin.co.jp", "job_title": "課長", "family_name": "別名"},
    {"email": "", "family_name": "名刺だけ"},
]  # fmt: skip


@pytest.mark.parametrize("policy", ["skip", "fill_empty", "overwrite"])
def test_bulk_makes_what_lead_upsert_one_by_one_makes(world_a, world_b, policy):
    seed(world_a)
    seed(world_b)
    campaign_a = CampaignFactory(tenant=world_a.tenant)
    campaign_b = CampaignFactory(tenant=world_b.tenant)
    one_by_one(world_a, ITEMS, policy, source_campaign_id=campaign_a.id)
    results = bulk(world_b, ITEMS, policy, source_campaign_id=campaign_b.id)
    assert [r["status"] for r in results] == [
        "created", "updated", "created", "created", "created", "updated", "created"
    ]  # fmt: skip
    assert results[0]["id"] == results[5]["id"]  # the same email twice: one lead
    expected, got = snapshot(world_a), snapshot(world_b)
    assert got["leads"] == expected["leads"]
    assert got["companies"] == expected["companies"]
    assert got["transitions"] == expected["transitions"]
    assert got["events"] == expected["events"]


def test_bad_items_are_reported_and_the_good_ones_saved(world_a):
    CustomFieldDefinitionFactory(tenant=world_a.tenant, key="budget", type="number",
                                 required=True)  # fmt: skip
    existing = LeadFactory(tenant=world_a.tenant, email="known@ryorin.co.jp", job_title="")
    results = bulk(
        world_a,
        [
            {"email": "ok@ryorin.co.jp", "custom": {"budget": 10}},
            {"email": "not-an-email", "custom": {"budget": 1}},
            "not an object",
            {"email": "bad-number@ryorin.co.jp", "corporate_number": "1234567890123",
             "custom": {"budget": 1}},
            {"email": "missing@ryorin.co.jp"},  # a new lead without its required field
            {"email": "known@ryorin.co.jp", "job_title": "部長"},  # existing: not required
            {"email": "owner@ryorin.co.jp", "owner_id": 999999, "custom": {"budget": 1}},
            {"email": "tags@ryorin.co.jp", "tags": "x", "custom": {"budget": 1}},
        ],
    )  # fmt: skip
    assert [r["index"] for r in results] == list(range(8))
    assert [r["status"] for r in results] == [
        "created", "error", "error", "error", "error", "updated", "error", "error"
    ]  # fmt: skip
    assert list(results[1]["errors"]) == ["email"]
    assert list(results[2]["errors"]) == ["item"]
    assert list(results[3]["errors"]) == ["corporate_number"]
    assert list(results[4]["errors"]) == ["custom.budget"]
    assert list(results[6]["errors"]) == ["owner_id"]
    assert list(results[7]["errors"]) == ["tags"]
    assert results[5]["id"] == existing.id
    with tenant_scope(world_a.tenant.id):
        assert set(Lead.objects.values_list("email", flat=True)) == {
            "ok@ryorin.co.jp",
            "known@ryorin.co.jp",
        }
        assert Lead.objects.get(pk=existing.id).job_title == "部長"


def test_queries_do_not_grow_with_the_batch(world_a):
    def items(n, prefix):
        return [
            {"email": f"{prefix}{i}@co{i % 7}.jp", "company_name": f"会社{i % 7}",
             "tags": ["a"], "family_name": "山田"}
            for i in range(n)
        ]  # fmt: skip

    LeadFactory(tenant=world_a.tenant, email="x0@co0.jp")
    with CaptureQueriesContext(connection) as small:
        bulk(world_a, items(5, "x"))
    with CaptureQueriesContext(connection) as large:
        results = bulk(world_a, items(300, "y"))
    assert all(r["status"] == "created" for r in results)
    assert len(large) <= len(small) + 2, [q["sql"][:80] for q in large.captured_queries]
    assert len(large) < 40
    with tenant_scope(world_a.tenant.id):
        assert Company.objects.count() == 7
        assert Lead.objects.filter(tags__name="a").count() == 305


def test_an_unknown_source_campaign_fails_every_item(world_a, world_b):
    other = CampaignFactory(tenant=world_b.tenant)
    results = bulk(world_a, [{"email": "a@b.jp"}], source_campaign_id=other.id)
    assert [(r["status"], list(r["errors"])) for r in results] == [
        ("error", ["source_campaign_id"])
    ]
    with tenant_scope(world_a.tenant.id):
        assert not Lead.objects.exists()
