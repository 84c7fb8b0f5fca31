"""Pipeline in the platform admin: every tenant's rows; writes through the services."""

import datetime

import pytest
from django.urls import reverse

from accounts.models import AuditLog
from accounts.tenancy import tenant_scope
from accounts.tests.factories import UserFactory
from pipeline.models import Handoff, HandoffSettings, Qualification, RoutingRule, Team
from pipeline.tests.factories import (
    HandoffFactory,
    HandoffSettingsFactory,
    QualificationFactory,
    RoutingRuleFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def url(model, action="changelist", *args):
    return reverse(f"admin:pipeline_{model._meta.model_name}_{action}", args=args)


def test_pages_list_every_tenant(staff_client, world_a, world_b):
    rows = {
        Handoff: [HandoffFactory(tenant=w.tenant) for w in (world_a, world_b)],
        Qualification: [],
        RoutingRule: [RoutingRuleFactory(tenant=w.tenant) for w in (world_a, world_b)],
        HandoffSettings: [HandoffSettingsFactory(tenant=w.tenant) for w in (world_a, world_b)],
    }
    rows[Team] = [rule.team for rule in rows[RoutingRule]]
    QualificationFactory(tenant=world_a.tenant)
    for model in (Handoff, Team, RoutingRule, HandoffSettings):
        response = staff_client.get(url(model))
        assert response.status_code == 200, model
        for row in rows[model]:
            assert staff_client.get(url(model, "change", row.pk)).status_code == 200


def test_delete_rule_and_team_through_services(staff_client, world_a):
    rule = RoutingRuleFactory(tenant=world_a.tenant)
    response = staff_client.post(url(RoutingRule, "delete", rule.pk), {"post": "yes"})
    assert response.status_code == 302
    response = staff_client.post(url(Team, "delete", rule.team_id), {"post": "yes"})
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        assert not RoutingRule.objects.exists()
        assert not Team.objects.exists()
        actions = set(AuditLog.objects.values_list("action", flat=True))
    assert {"routing_rule.deleted", "team.deleted"} <= actions


def test_sla_check_action(staff_client, world_a):
    past = datetime.datetime(2025, 1, 6, tzinfo=datetime.UTC)
    handoff = HandoffFactory(tenant=world_a.tenant, deadline=past, remind_at=past)
    response = staff_client.post(
        url(Handoff), {"action": "run_sla_check", "_selected_action": [handoff.pk]}
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        assert Handoff.objects.get(pk=handoff.pk).sla == Handoff.SLA.BREACHED
