"""Campaigns in the platform admin: every tenant's rows, bounded queries, and writes
through the services (validation, precedence, audited deletes)."""

from decimal import Decimal

import pytest
from django.contrib import messages
from django.urls import reverse

from accounts.models import AuditLog, User
from accounts.tenancy import tenant_scope, unscoped
from campaigns.models import Campaign, CampaignMembership
from campaigns.tests.factories import CampaignFactory, CampaignMembershipFactory
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

Status = CampaignMembership.Status


@pytest.fixture
def admin(client, db):
    client.force_login(User.objects.create_superuser("root@ryorin.example", "correct horse"))
    return client


def changelist(model) -> str:
    return reverse(f"admin:campaigns_{model._meta.model_name}_changelist")


def change(obj) -> str:
    return reverse(f"admin:campaigns_{obj._meta.model_name}_change", args=[obj.pk])


@pytest.mark.parametrize("model", [Campaign, CampaignMembership], ids=lambda m: m.__name__)
def test_changelists_show_both_tenants_in_bounded_queries(
    admin, world_a, world_b, model, django_assert_max_num_queries
):
    for world in (world_a, world_b):
        for _ in range(5):
            CampaignMembershipFactory(tenant=world.tenant)
    with django_assert_max_num_queries(12):
        response = admin.get(changelist(model), {"q": ""})
    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert {row.tenant_id for row in rows} == {world_a.tenant.id, world_b.tenant.id}
    search = admin.get(changelist(model), {"q": world_b.tenant.slug})
    assert {row.tenant_id for row in search.context["cl"].result_list} == {world_b.tenant.id}


def test_add_campaign_goes_through_the_service(admin, world_a):
    form = {
        "tenant": world_a.tenant.pk,
        "name": "新製品セミナー",
        "channel": "webinar",
        "status": "planned",
        "currency": "jpy",
        "budget": "300000",
        "actual_cost": "0",
        "target_leads": "50",
    }
    response = admin.post(reverse("admin:campaigns_campaign_add"), form)
    assert response.status_code == 302, response.context and response.context["errors"]
    with tenant_scope(world_a.tenant.id):
        campaign = Campaign.objects.get()
    assert campaign.currency == "JPY"  # normalised by the service
    # The service's rule (yen has no decimals) is shown, nothing is saved.
    response = admin.post(
        reverse("admin:campaigns_campaign_add"), {**form, "budget": "10.50"}, follow=True
    )
    assert "JPY" in response.content.decode()
    with tenant_scope(world_a.tenant.id):
        assert Campaign.objects.count() == 1


def test_change_and_delete_campaign_are_audited(admin, world_a):
    campaign = CampaignFactory(tenant=world_a.tenant, budget=Decimal("1000"))
    response = admin.post(
        change(campaign),
        {
            "name": campaign.name,
            "channel": campaign.channel,
            "status": "active",
            "currency": "JPY",
            "budget": "2000",
            "actual_cost": "0",
            "target_leads": "0",
        },
    )
    assert response.status_code == 302
    response = admin.post(
        reverse("admin:campaigns_campaign_delete", args=[campaign.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    with unscoped(reason="test"):
        actions = set(
            AuditLog.objects.filter(tenant=world_a.tenant).values_list("action", flat=True)
        )
        assert not Campaign.objects.filter(pk=campaign.pk).exists()
    assert {"campaign.cost_changed", "campaign.deleted"} <= actions


def test_membership_add_keeps_the_further_status_and_refuses_mixed_tenants(admin, world_a, world_b):
    member = CampaignMembershipFactory(tenant=world_a.tenant, status=Status.ATTENDED)
    url = reverse("admin:campaigns_campaignmembership_add")
    response = admin.post(
        url,
        {"campaign": member.campaign_id, "lead": member.lead_id, "status": "invited"},
        follow=True,
    )
    # Told that the lead was a member already and kept its further status (checked below).
    assert messages.WARNING in [m.level for m in response.context["messages"]]
    new_lead = LeadFactory(tenant=world_a.tenant)
    response = admin.post(
        url, {"campaign": member.campaign_id, "lead": new_lead.pk, "status": "registered"}
    )
    assert response.status_code == 302
    foreign_lead = LeadFactory(tenant=world_b.tenant)
    admin.post(url, {"campaign": member.campaign_id, "lead": foreign_lead.pk, "status": "invited"})
    with unscoped(reason="test"):
        stored = dict(
            CampaignMembership.objects.filter(campaign_id=member.campaign_id).values_list(
                "lead_id", "status"
            )
        )
    assert stored == {member.lead_id: Status.ATTENDED, new_lead.pk: Status.REGISTERED}


def test_membership_status_change_may_go_back(admin, world_a):
    member = CampaignMembershipFactory(tenant=world_a.tenant, status=Status.ATTENDED)
    response = admin.post(change(member), {"status": "no_show"})
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        member.refresh_from_db()
    assert member.status == Status.NO_SHOW
