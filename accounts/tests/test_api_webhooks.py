"""The webhooks API: the generic endpoint tests plus secret, rotate, test, replay."""

import pytest
from django.db.models import Model
from django.urls import reverse

from accounts.models import Role
from accounts.tenancy import tenant_scope
from accounts.tests.factories import webhook_delivery_factory, webhook_endpoint_factory
from accounts.tests.webhook_receiver import Receiver
from accounts.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from accounts.webhooks.secrets import decrypt_secret
from accounts.webhooks.signing import verify_signature
from tests.api_base import APIEndpointTests
from tests.fixtures import TenantWorld, api_client_for


class TestWebhookEndpointsAPI(APIEndpointTests):
    route = "webhook"
    actions = frozenset({"list", "retrieve", "create", "update", "delete"})
    create_payload = {"url": "https://hooks.example.com/in", "events": ["lead.created"]}
    update_payload = {"description": "CRM sync", "events": ["*"]}
    invalid_payload = {"url": "https://hooks.example.com/in", "events": ["no.such_event"]}
    invalid_field = "events"
    read_only_role_can_read = False

    def make_object(self, world: TenantWorld) -> Model:
        return webhook_endpoint_factory(world.tenant)


class TestWebhookDeliveriesAPI(APIEndpointTests):
    route = "webhook-delivery"
    actions = frozenset({"list", "retrieve"})
    invalid_query = {"status": "lost"}
    read_only_role_can_read = False

    def make_object(self, world: TenantWorld) -> Model:
        return webhook_delivery_factory(world.tenant)


pytestmark = pytest.mark.django_db


def url(name: str, world: TenantWorld, **kwargs) -> str:
    return reverse(f"api:tenant:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


def test_create_shows_the_secret_once(world_a):
    client = api_client_for(user=world_a.owner)
    response = client.post(
        url("webhook-list", world_a),
        {"url": "https://hooks.example.com/in", "events": ["lead.created", "lead.updated"]},
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert body["events"] == ["lead.created", "lead.updated"]
    assert body["is_active"] is True
    detail = client.get(url("webhook-detail", world_a, pk=body["id"])).json()
    assert "secret" not in detail
    assert secret not in str(client.get(url("webhook-list", world_a)).json())
    rotated = client.post(url("webhook-rotate-secret", world_a, pk=body["id"])).json()
    assert rotated["secret"] != secret
    assert rotated["secret_rotated_at"] is not None


def test_production_url_rules_answer_400(world_a, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    client = api_client_for(user=world_a.owner)
    for bad in ("http://hooks.example.com/in", "https://10.1.2.3/in", "not a url"):
        response = client.post(url("webhook-list", world_a), {"url": bad, "events": ["*"]})
        assert response.status_code == 400, bad
        assert response.json()["error"]["fields"].keys() == {"url"}


def test_members_who_are_not_admins_are_refused(world_a):
    endpoint = webhook_endpoint_factory(world_a.tenant)
    marketer = api_client_for(user=world_a.member(role=Role.MARKETING))
    assert marketer.get(url("webhook-list", world_a)).status_code == 403
    assert marketer.post(url("webhook-test", world_a, pk=endpoint.pk)).status_code == 403


def test_disable_enable_through_patch(world_a):
    endpoint = webhook_endpoint_factory(world_a.tenant)
    client = api_client_for(user=world_a.owner)
    off = client.patch(url("webhook-detail", world_a, pk=endpoint.pk), {"is_active": False})
    assert off.json()["is_active"] is False
    assert off.json()["disabled_reason"] == "manual"
    assert client.post(url("webhook-test", world_a, pk=endpoint.pk)).status_code == 400
    on = client.patch(url("webhook-detail", world_a, pk=endpoint.pk), {"is_active": True})
    assert on.json()["is_active"] is True
    assert on.json()["disabled_reason"] == ""


def test_test_event_and_replay_reach_the_receiver(world_a, django_capture_on_commit_callbacks):
    receiver = Receiver().start()
    try:
        client = api_client_for(user=world_a.owner)
        created = client.post(
            url("webhook-list", world_a), {"url": receiver.url, "events": ["*"]}
        ).json()
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url("webhook-test", world_a, pk=created["id"]))
        assert response.status_code == 202
        test_id = response.json()["id"]
        assert len(receiver.requests) == 1
        verify_signature(
            created["secret"],
            receiver.requests[0].body,
            receiver.requests[0].headers["ryorin-signature"],
        )
        detail = client.get(url("webhook-delivery-detail", world_a, pk=test_id)).json()
        assert detail["status"] == DeliveryStatus.SUCCEEDED
        assert detail["body"].encode() == receiver.requests[0].body
        assert [a["status_code"] for a in detail["attempt_log"]] == [200]

        with django_capture_on_commit_callbacks(execute=True):
            replay = client.post(url("webhook-delivery-replay", world_a, pk=test_id))
        assert replay.status_code == 202
        assert replay.json()["replay_of"] == test_id
        assert len(receiver.requests) == 2
        assert receiver.requests[1].body == receiver.requests[0].body

        query = {"endpoint": created["id"], "status": "succeeded"}
        listed = client.get(url("webhook-delivery-list", world_a), query).json()["results"]
        assert {row["id"] for row in listed} == {test_id, replay.json()["id"]}
        assert "body" not in listed[0]
    finally:
        receiver.stop()


def test_delete_removes_deliveries_and_attempts(world_a):
    endpoint = webhook_endpoint_factory(world_a.tenant)
    delivery = webhook_delivery_factory(world_a.tenant, endpoint=endpoint)
    with tenant_scope(world_a.tenant.id):
        WebhookAttempt.objects.create(tenant=world_a.tenant, delivery=delivery, number=1)
        assert decrypt_secret(endpoint.secret_encrypted).startswith("whsec_")
    client = api_client_for(user=world_a.owner)
    assert client.delete(url("webhook-detail", world_a, pk=endpoint.pk)).status_code == 204
    with tenant_scope(world_a.tenant.id):
        assert not WebhookDelivery.objects.exists()
        assert not WebhookAttempt.objects.exists()
