"""Webhooks in the platform admin: every tenant's rows, no secret, actions via services."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import AuditLog, User
from accounts.tenancy import tenant_scope, unscoped
from accounts.tests.factories import webhook_delivery_factory, webhook_endpoint_factory
from accounts.webhooks.models import WebhookDelivery, WebhookEndpoint
from accounts.webhooks.secrets import decrypt_secret

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client, db):
    client.force_login(User.objects.create_superuser("root@ryorin.example", "pw-for-tests-1"))
    return client


def changelist(model) -> str:
    return reverse(f"admin:accounts_{model._meta.model_name}_changelist")


def test_changelists_show_both_tenants_and_never_the_secret(admin, world_a, world_b):
    a = webhook_delivery_factory(world_a.tenant)
    b = webhook_delivery_factory(world_b.tenant)
    for model in (WebhookEndpoint, WebhookDelivery):
        response = admin.get(changelist(model))
        assert response.status_code == 200
        rows = list(response.context["cl"].result_list)
        assert {row.tenant_id for row in rows} == {world_a.tenant.id, world_b.tenant.id}
    change = reverse("admin:accounts_webhookendpoint_change", args=[a.endpoint_id])
    page = admin.get(change)
    assert page.status_code == 200
    with tenant_scope(world_a.tenant.id):
        endpoint = WebhookEndpoint.objects.get(pk=a.endpoint_id)
    assert decrypt_secret(endpoint.secret_encrypted) not in page.content.decode()
    assert endpoint.secret_encrypted not in page.content.decode()
    assert b.pk


def test_disable_action_goes_through_the_service(admin, world_a):
    endpoint = webhook_endpoint_factory(world_a.tenant)
    response = admin.post(
        changelist(WebhookEndpoint),
        {"action": "disable", "_selected_action": [endpoint.pk]},
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        endpoint.refresh_from_db()
        assert AuditLog.objects.filter(action="webhook.disabled").exists()
    assert not endpoint.is_active
    assert endpoint.disabled_reason == "manual"


def test_replay_action(admin, world_a, django_capture_on_commit_callbacks):
    delivery = webhook_delivery_factory(world_a.tenant)
    admin.post(changelist(WebhookDelivery), {"action": "replay", "_selected_action": [delivery.pk]})
    with unscoped(reason="test"):
        assert WebhookDelivery.objects.filter(replay_of=delivery).count() == 1


def test_changelist_query_count_is_bounded(admin, world_a, world_b):
    for world in (world_a, world_b):
        webhook_delivery_factory(world.tenant)
    counts = []
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            assert admin.get(changelist(WebhookDelivery)).status_code == 200
        counts.append(len(queries))
        webhook_delivery_factory(world_a.tenant)
    assert counts[0] == counts[1]
