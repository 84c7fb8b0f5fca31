"""lead_upsert / lead_create / lead_update / lead_change_stage and company matching."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from accounts.models import DomainEvent, Role
from accounts.services import SYSTEM, Origin
from accounts.tenancy import tenant_scope
from leads import services
from leads.models import Company, CustomFieldDefinition, Lead, LifecycleTransition, Tag
from leads.tests.factories import CompanyFactory, CustomFieldDefinitionFactory, LeadFactory

pytestmark = pytest.mark.django_db


def upsert(world, email, policy="fill_empty", **fields):
    return services.lead_upsert(
        tenant_id=world.tenant.id,
        email=email,
        fields=fields,
        channel="api",
        origin=SYSTEM,
        policy=policy,
    )


def events_named(world, name):
    with tenant_scope(world.tenant.id):
        return list(DomainEvent.objects.filter(name=name).order_by("id"))


def test_upsert_creates_with_normalised_values(world_a):
    result = upsert(
        world_a,
        " ＴＡＮＡＫＡ@Example.co.jp ",
        family_name="田中",
        given_name="ﾀﾛｳ",
        family_name_kana="たなか",
        given_name_kana="ﾀﾛｳ",
        phone="03-1234-5678",
        job_title="部長",
    )
    lead = result.lead
    assert result.created
    assert lead.email == "tanaka@example.co.jp"
    assert lead.given_name == "タロウ"
    assert (lead.family_name_kana, lead.given_name_kana) == ("タナカ", "タロウ")
    assert lead.phone == "+81312345678"
    assert lead.lifecycle_stage == "lead"
    assert lead.source_channel == "api"
    with tenant_scope(world_a.tenant.id):
        transition = LifecycleTransition.objects.get(lead=lead)
    assert (transition.from_stage, transition.to_stage, transition.channel) == ("", "lead", "api")
    created = events_named(world_a, "lead.created")
    assert len(created) == 1
    assert created[0].payload["v"] == 1
    assert created[0].payload["lead_id"] == lead.id
    assert created[0].payload["email"] == "tanaka@example.co.jp"
    assert "phone" in created[0].payload["fields"]
    assert len(events_named(world_a, "lead.lifecycle_changed")) == 1


def test_upsert_errors_name_the_fields(world_a):
    with pytest.raises(ValidationError) as info:
        upsert(
            world_a,
            "ok@example.com",
            phone="not a phone",
            family_name_kana="Tanaka",
            lifecycle_stage="emperor",
            prefecture="Atlantis",
            shoe_size="42",
        )
    assert set(info.value.message_dict) == {
        "phone",
        "family_name_kana",
        "lifecycle_stage",
        "prefecture",
        "shoe_size",
    }
    with pytest.raises(ValidationError) as info:
        upsert(world_a, "not-an-email")
    assert set(info.value.message_dict) == {"email"}


def test_lead_without_email_is_allowed_and_never_deduplicated(world_a):
    first = upsert(world_a, "", family_name="名刺")
    second = upsert(world_a, "", family_name="名刺")
    assert first.created
    assert second.created
    assert first.lead.pk != second.lead.pk


def test_upsert_policies(world_a):
    lead = upsert(world_a, "p@example.com", family_name="山田", job_title="").lead

    skipped = upsert(world_a, "P@example.com", "skip", family_name="佐藤", job_title="課長")
    assert not skipped.created
    assert skipped.lead.pk == lead.pk
    lead.refresh_from_db()
    assert (lead.family_name, lead.job_title) == ("山田", "")

    upsert(world_a, "p@example.com", "fill_empty", family_name="佐藤", job_title="課長")
    lead.refresh_from_db()
    assert (lead.family_name, lead.job_title) == ("山田", "課長")

    upsert(
        world_a,
        "p@example.com",
        "overwrite",
        family_name="佐藤",
        department="",
        lifecycle_stage="mql",
    )
    lead.refresh_from_db()
    assert lead.family_name == "佐藤"
    assert lead.lifecycle_stage == "mql"
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.count() == 1
        stages = list(
            LifecycleTransition.objects.filter(lead=lead)
            .order_by("id")
            .values_list("from_stage", "to_stage")
        )
    assert stages == [("", "lead"), ("lead", "mql")]
    updated = events_named(world_a, "lead.updated")
    assert [event.payload["fields"] for event in updated] == [["job_title"], ["family_name"]]


def test_fill_empty_never_changes_the_stage_and_source_campaign_is_first_touch(world_a):
    from campaigns.tests.factories import CampaignFactory

    first, second = CampaignFactory(tenant=world_a.tenant), CampaignFactory(tenant=world_a.tenant)
    lead = services.lead_upsert(
        tenant_id=world_a.tenant.id,
        email="touch@example.com",
        fields={},
        channel="form",
        origin=SYSTEM,
        source_campaign_id=first.id,
    ).lead
    services.lead_upsert(
        tenant_id=world_a.tenant.id,
        email="touch@example.com",
        fields={"lifecycle_stage": "customer"},
        channel="form",
        origin=SYSTEM,
        source_campaign_id=second.id,
        policy="overwrite",
    )
    lead.refresh_from_db()
    assert lead.source_campaign_id == first.id
    assert lead.lifecycle_stage == "customer"
    upsert(world_a, "touch@example.com", "fill_empty", lifecycle_stage="subscriber")
    lead.refresh_from_db()
    assert lead.lifecycle_stage == "customer"


def test_unknown_campaign_or_owner_is_an_error(world_a, world_b):
    from campaigns.tests.factories import CampaignFactory

    other_campaign = CampaignFactory(tenant=world_b.tenant)
    with pytest.raises(ValidationError) as info:
        services.lead_upsert(
            tenant_id=world_a.tenant.id,
            email="x@example.com",
            fields={"owner_id": world_b.owner.id},
            channel="api",
            origin=SYSTEM,
            source_campaign_id=other_campaign.id,
        )
    assert set(info.value.message_dict) == {"owner_id", "source_campaign_id"}
    lead = upsert(world_a, "x@example.com", owner_id=world_a.member(role=Role.FIELD_SALES).id).lead
    assert lead.owner_id is not None


# --- Companies ----------------------------------------------------------------------------


def test_company_attaches_by_corporate_number_first(world_a):
    company = CompanyFactory(
        tenant=world_a.tenant, name="両輪商事株式会社", corporate_number="5835678256246"
    )
    lead = upsert(
        world_a, "a@other-domain.jp", company_name="全然違う名前", corporate_number="5835678256246"
    ).lead
    assert lead.company_id == company.id


def test_company_attaches_by_email_domain_but_not_free_mail(world_a):
    company = CompanyFactory(tenant=world_a.tenant, name="両輪商事", domain="ryorin.co.jp")
    assert upsert(world_a, "a@ryorin.co.jp").lead.company_id == company.id
    assert upsert(world_a, "a@gmail.com").lead.company_id is None
    with tenant_scope(world_a.tenant.id):
        assert Company.objects.count() == 1


def test_company_attaches_by_normalised_name_and_is_created_on_use(world_a):
    company = CompanyFactory(tenant=world_a.tenant, name="（株）両輪商事", domain="")
    lead = upsert(world_a, "b@gmail.com", company_name="両輪商事 株式会社").lead
    assert lead.company_id == company.id
    new = upsert(world_a, "c@newco.jp", company_name="新会社 Co., Ltd.", industry="SaaS").lead
    with tenant_scope(world_a.tenant.id):
        created = Company.objects.get(pk=new.company_id)
    assert (created.name_key, created.domain, created.industry) == ("新会社", "newco.jp", "SaaS")
    # The next lead of that domain finds it without a company name.
    assert upsert(world_a, "d@newco.jp").lead.company_id == created.id


def test_company_match_rejects_a_bad_corporate_number(world_a):
    with pytest.raises(ValidationError) as info:
        services.company_match_or_create(
            tenant_id=world_a.tenant.id, name="X", corporate_number="1234567890123"
        )
    assert "corporate_number" in info.value.message_dict


def test_company_match_stays_in_its_tenant(world_a, world_b):
    CompanyFactory(tenant=world_b.tenant, name="両輪商事", domain="ryorin.co.jp")
    company = services.company_match_or_create(tenant_id=world_a.tenant.id, domain="ryorin.co.jp")
    assert company is None


# --- Custom fields and tags ------------------------------------------------------------


@pytest.fixture
def definitions(world_a):
    T = CustomFieldDefinition.Type
    CustomFieldDefinitionFactory(tenant=world_a.tenant, key="employees", type=T.NUMBER)
    CustomFieldDefinitionFactory(
        tenant=world_a.tenant, key="plan", type=T.CHOICE, choices=["free", "pro"], required=True
    )
    CustomFieldDefinitionFactory(
        tenant=world_a.tenant, key="products", type=T.MULTI_CHOICE, choices=["a", "b"]
    )
    CustomFieldDefinitionFactory(tenant=world_a.tenant, key="met_on", type=T.DATE)
    CustomFieldDefinitionFactory(tenant=world_a.tenant, key="vip", type=T.BOOLEAN)


def test_custom_fields_are_validated_and_stored_typed(world_a, definitions):
    lead = upsert(
        world_a,
        "c@example.com",
        custom={
            "employees": "１,２００",
            "plan": "pro",
            "products": "a, b",
            "met_on": "2026/04/01",
            "vip": "はい",
        },
    ).lead
    assert lead.custom_fields == {
        "employees": 1200,
        "plan": "pro",
        "products": ["a", "b"],
        "met_on": "2026-04-01",
        "vip": True,
    }


def test_custom_field_errors_name_custom_key(world_a, definitions):
    with pytest.raises(ValidationError) as info:
        upsert(
            world_a,
            "c@example.com",
            custom={"employees": "many", "plan": "gold", "products": ["c"], "nope": 1},
        )
    assert set(info.value.message_dict) == {
        "custom.employees",
        "custom.plan",
        "custom.products",
        "custom.nope",
    }


def test_required_custom_field_on_create_only(world_a, definitions):
    with pytest.raises(ValidationError) as info:
        upsert(world_a, "r@example.com", custom={"employees": 5})
    assert list(info.value.message_dict) == ["custom.plan"]
    lead = LeadFactory(tenant=world_a.tenant, email="old@example.com")  # predates the field
    services.lead_upsert(
        tenant_id=world_a.tenant.id,
        email="old@example.com",
        fields={"job_title": "CTO"},
        channel="api",
        origin=SYSTEM,
    )
    lead.refresh_from_db()
    assert lead.job_title == "CTO"
    with pytest.raises(ValidationError) as info:
        services.lead_update(lead=lead, fields={"custom": {"plan": None}}, origin=SYSTEM)
    assert "custom.plan" in info.value.message_dict


def test_tags_are_created_on_use(world_a):
    lead = upsert(world_a, "t@example.com", tags=["展示会2026", "ＶＩＰ", "展示会2026"]).lead
    upsert(world_a, "t@example.com", tags=["VIP", "new"])
    with tenant_scope(world_a.tenant.id):
        assert sorted(lead.tags.values_list("name", flat=True)) == ["VIP", "new", "展示会2026"]
        assert Tag.objects.count() == 3
    services.lead_update(lead=lead, fields={"tags": ["new"]}, origin=SYSTEM)
    with tenant_scope(world_a.tenant.id):
        assert list(lead.tags.values_list("name", flat=True)) == ["new"]


# --- Create, update, stage ------------------------------------------------------------------


def test_create_refuses_a_duplicate_email(world_a):
    services.lead_create(tenant_id=world_a.tenant.id, email="dup@example.com", origin=SYSTEM)
    with pytest.raises(ValidationError) as info:
        services.lead_create(tenant_id=world_a.tenant.id, email="DUP@example.com", origin=SYSTEM)
    assert list(info.value.message_dict) == ["email"]


def test_same_email_in_two_tenants_is_two_leads(world_a, world_b):
    a = upsert(world_a, "same@example.com").lead
    b = upsert(world_b, "same@example.com").lead
    assert a.pk != b.pk


def test_update_sets_clears_and_keeps_email_unique(world_a):
    lead = upsert(world_a, "u@example.com", job_title="部長", phone="0312345678").lead
    upsert(world_a, "taken@example.com")
    services.lead_update(lead=lead, fields={"job_title": "", "given_name": "花子"}, origin=SYSTEM)
    lead.refresh_from_db()
    assert (lead.job_title, lead.given_name) == ("", "花子")
    with pytest.raises(ValidationError) as info:
        services.lead_update(lead=lead, email="Taken@example.com", origin=SYSTEM)
    assert list(info.value.message_dict) == ["email"]


def test_change_stage_records_who_when_why_and_emits(world_a):
    lead = upsert(world_a, "s@example.com").lead
    origin = Origin(actor=world_a.owner)
    transition = services.lead_change_stage(
        lead=lead, to_stage="mql", origin=origin, channel="ui", reason="score 80"
    )
    assert (transition.from_stage, transition.to_stage) == ("lead", "mql")
    assert (transition.actor, transition.channel, transition.reason) == (
        world_a.owner,
        "ui",
        "score 80",
    )
    assert (
        services.lead_change_stage(lead=lead, to_stage="mql", origin=origin, channel="ui") is None
    )
    changed = events_named(world_a, "lead.lifecycle_changed")
    assert changed[-1].payload["from"] == "lead"
    assert changed[-1].payload["to"] == "mql"
    assert len(changed) == 2  # creation, then this one; the no-op emits nothing
    with pytest.raises(ValidationError):
        services.lead_change_stage(lead=lead, to_stage="emperor", origin=origin, channel="ui")


# --- Concurrency -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_upserts_of_one_email_make_one_lead():
    from tests.fixtures import make_world

    world = make_world()
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker(name):
        try:
            barrier.wait()
            result = services.lead_upsert(
                tenant_id=world.tenant.id,
                email="race@example.com",
                fields={"job_title": name},
                channel="api",
                origin=SYSTEM,
            )
            results.append(result.created)
        except Exception as exc:  # surfaced by the assert below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [False, True]
    with tenant_scope(world.tenant.id):
        assert Lead.objects.filter(email="race@example.com").count() == 1
