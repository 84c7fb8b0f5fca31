"""The webhook settings pages (Django test client; tasks run eagerly after commit)."""

import pytest
from django.urls import reverse

from accounts.models import Role
from accounts.tenancy import tenant_scope
from accounts.tests.factories import webhook_delivery_factory, webhook_endpoint_factory
from accounts.tests.webhook_receiver import Receiver
from accounts.webhooks.models import WebhookDelivery, WebhookEndpoint
from accounts.webhooks.secrets import decrypt_secret

pytestmark = pytest.mark.django_db


def page_url(name: str, world, **kwargs) -> str:
    return reverse(f"accounts:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


def test_create_shows_secret_once_and_lists_the_endpoint(client, world_a):
    client.force_login(world_a.owner)
    response = client.post(
        page_url("webhooks", world_a),
        {"url": "https://hooks.example.com/in", "events": ["lead.created", "lead.updated"]},
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    with tenant_scope(world_a.tenant.id):
        endpoint = WebhookEndpoint.objects.get()
    secret = decrypt_secret(endpoint.secret_encrypted)
    assert secret in response.content.decode()
    assert endpoint.events == ["lead.created", "lead.updated"]
    listing = client.get(page_url("webhooks", world_a)).content.decode()
    assert "https://hooks.example.com/in" in listing
    assert secret not in listing
    detail = client.get(page_url("webhook_detail", world_a, pk=endpoint.pk))
    assert secret not in detail.content.decode()


def test_create_needs_events(client, world_a):
    client.force_login(world_a.owner)
    response = client.post(page_url("webhooks", world_a), {"url": "https://hooks.example.com/in"})
    assert response.status_code == 400
    with tenant_scope(world_a.tenant.id):
        assert not WebhookEndpoint.objects.exists()


def test_only_admins_reach_the_pages(client, world_a):
    client.force_login(world_a.member(role=Role.MARKETING))
    assert client.get(page_url("webhooks", world_a)).status_code == 403


def test_delivery_log_replay_disable_enable(client, world_a, django_capture_on_commit_callbacks):
    receiver = Receiver().start()
    try:
        endpoint = webhook_endpoint_factory(world_a.tenant, url=receiver.url)
        delivery = webhook_delivery_factory(world_a.tenant, endpoint=endpoint)
        client.force_login(world_a.owner)
        page = client.get(page_url("webhook_detail", world_a, pk=endpoint.pk)).content.decode()
        assert f"#{delivery.pk}" in page
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(page_url("webhook_delivery_replay", world_a, pk=delivery.pk))
        assert response.status_code == 302
        assert len(receiver.requests) == 1
        with tenant_scope(world_a.tenant.id):
            replay = WebhookDelivery.objects.get(replay_of=delivery)
        assert replay.status == "succeeded"

        client.post(page_url("webhook_set_active", world_a, pk=endpoint.pk), {"active": "0"})
        with tenant_scope(world_a.tenant.id):
            endpoint.refresh_from_db()
        assert not endpoint.is_active
        client.post(page_url("webhook_set_active", world_a, pk=endpoint.pk), {"active": "1"})
        with tenant_scope(world_a.tenant.id):
            endpoint.refresh_from_db()
        assert endpoint.is_active
    finally:
        receiver.stop()


def test_disabled_for_failing_shows_a_notice(client, world_a):
    endpoint = webhook_endpoint_factory(world_a.tenant)
    from django.utils import timezone

    with tenant_scope(world_a.tenant.id):
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            is_active=False,
            disabled_reason="failing",
            disabled_at=timezone.now(),
            failing_since=timezone.now(),
        )
    client.force_login(world_a.owner)
    page = client.get(page_url("webhook_detail", world_a, pk=endpoint.pk)).content.decode()
    assert 'data-testid="webhook-disabled-notice"' in page
    assert 'data-testid="webhook-enable"' in page
