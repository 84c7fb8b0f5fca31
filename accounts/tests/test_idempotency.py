"""Idempotency-Key on creates: a retry replays, never duplicates."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.api.idempotency import idempotency_purge_expired
from accounts.models import IdempotencyRecord, Invitation
from accounts.tenancy import tenant_scope, unscoped
from tests.fixtures import api_client_for

pytestmark = pytest.mark.django_db

INVITE = {"email": "retry@example.com", "role": "marketing"}


def invitations(tenant) -> int:
    with tenant_scope(tenant.id):
        return Invitation.objects.count()


def test_retry_with_the_same_key_replays_the_first_response(world_a):
    client = api_client_for(user=world_a.owner)
    url = f"/api/v1/t/{world_a.tenant.slug}/invitations/"
    first = client.post(url, INVITE, HTTP_IDEMPOTENCY_KEY="invite-1")
    again = client.post(url, INVITE, HTTP_IDEMPOTENCY_KEY="invite-1")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert invitations(world_a.tenant) == 1


def test_api_key_callers_get_replays_too(world_a):
    client = api_client_for(api_key=world_a.api_key())
    responses = [
        client.post("/api/v1/invitations/", INVITE, HTTP_IDEMPOTENCY_KEY="via-key")
        for _ in range(2)
    ]
    assert [r.status_code for r in responses] == [201, 201]
    assert responses[1]["Idempotent-Replayed"] == "true"
    assert invitations(world_a.tenant) == 1


def test_same_key_with_another_body_is_refused(world_a):
    client = api_client_for(user=world_a.owner)
    url = f"/api/v1/t/{world_a.tenant.slug}/invitations/"
    assert client.post(url, INVITE, HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    other = client.post(url, {**INVITE, "email": "other@example.com"}, HTTP_IDEMPOTENCY_KEY="k")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert invitations(world_a.tenant) == 1


def test_failed_request_is_not_stored_so_a_corrected_retry_runs(world_a):
    client = api_client_for(user=world_a.owner)
    url = f"/api/v1/t/{world_a.tenant.slug}/invitations/"
    bad = client.post(
        url, {"email": "not-an-email", "role": "marketing"}, HTTP_IDEMPOTENCY_KEY="k2"
    )
    assert bad.status_code == 400
    with tenant_scope(world_a.tenant.id):
        assert not IdempotencyRecord.objects.filter(key="k2").exists()


def test_keys_are_per_caller(world_a):
    url = f"/api/v1/t/{world_a.tenant.slug}/invitations/"
    admin = world_a.member(role="admin")
    owner_client, admin_client = api_client_for(user=world_a.owner), api_client_for(user=admin)
    assert owner_client.post(url, INVITE, HTTP_IDEMPOTENCY_KEY="same").status_code == 201
    second = admin_client.post(
        url, {**INVITE, "email": "b@example.com"}, HTTP_IDEMPOTENCY_KEY="same"
    )
    assert second.status_code == 201
    assert "Idempotent-Replayed" not in second


def test_too_long_key_is_a_validation_error(world_a):
    client = api_client_for(user=world_a.owner)
    response = client.post(
        f"/api/v1/t/{world_a.tenant.slug}/invitations/", INVITE, HTTP_IDEMPOTENCY_KEY="x" * 256
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["fields"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_once():
    from tests.fixtures import make_world

    world = make_world(slug="race")
    url = f"/api/v1/t/{world.tenant.slug}/invitations/"
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def post() -> None:
        client = api_client_for(user=world.owner)
        try:
            barrier.wait(timeout=5)
            statuses.append(client.post(url, INVITE, HTTP_IDEMPOTENCY_KEY="race").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [201, 201]
    assert invitations(world.tenant) == 1


def test_purge_removes_only_expired_records(world_a, world_b):
    for world, age in ((world_a, timedelta(hours=25)), (world_b, timedelta(hours=1))):
        with tenant_scope(world.tenant.id):
            IdempotencyRecord.objects.create(
                tenant=world.tenant,
                key="k",
                caller="user:1",
                fingerprint="f",
                created_at=timezone.now() - age,
            )
    assert idempotency_purge_expired() == 1
    with unscoped(reason="test"):
        assert list(IdempotencyRecord.objects.values_list("tenant_id", flat=True)) == [
            world_b.tenant.id
        ]
