"""Rules the accounts API surfaces: tenant settings, last-owner protection, audit
entries, invitation mail, filters."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import APIKey, AuditLog, Invitation, Membership, Role
from accounts.tenancy import tenant_scope
from tests.api_base import assert_error
from tests.fixtures import api_client_for

pytestmark = pytest.mark.django_db


def audit(tenant_id: int, action: str) -> list[AuditLog]:
    with tenant_scope(tenant_id):
        return list(AuditLog.objects.filter(action=action).select_related("actor", "api_key"))


# --- Settings -----------------------------------------------------------------------------


def test_every_member_reads_settings_only_admins_change_them(world_a):
    reader = api_client_for(world_a.member(role=Role.READ_ONLY))
    body = reader.get("/api/v1/t/acme/settings/").json()
    assert body == {
        "id": world_a.tenant.id,
        "name": "Acme 株式会社",
        "slug": "acme",
        "kind": "client",
        "time_zone": "Asia/Tokyo",
        "language": "ja",
        "country": "JP",
        "managed_by": None,
    }
    assert_error(reader.patch("/api/v1/t/acme/settings/", {"name": "Hacked"}), 403)
    owner = api_client_for(world_a.owner)
    response = owner.patch(
        "/api/v1/t/acme/settings/", {"name": "Acme KK", "time_zone": "UTC", "slug": "renamed"}
    )
    assert response.status_code == 200, response.content
    assert (response.json()["name"], response.json()["slug"]) == ("Acme KK", "acme")
    world_a.tenant.refresh_from_db()
    assert (world_a.tenant.name, world_a.tenant.time_zone) == ("Acme KK", "UTC")
    [entry] = audit(world_a.tenant.id, "tenant.updated")
    assert entry.actor == world_a.owner
    assert entry.metadata == {"fields": ["name", "time_zone"]}


def test_failed_settings_change_writes_nothing(world_a):
    owner = api_client_for(world_a.owner)
    response = owner.patch("/api/v1/t/acme/settings/", {"name": "x" * 201})
    assert_error(response, 400, "invalid")
    world_a.tenant.refresh_from_db()
    assert world_a.tenant.name == "Acme 株式会社"
    assert audit(world_a.tenant.id, "tenant.updated") == []


# --- Members ------------------------------------------------------------------------------


def own_membership(world) -> Membership:
    with tenant_scope(world.tenant.id):
        return Membership.objects.get(user=world.owner)


def test_last_owner_cannot_be_demoted_or_removed(world_a):
    owner = api_client_for(world_a.owner)
    url = f"/api/v1/t/acme/members/{own_membership(world_a).id}/"
    error = assert_error(owner.patch(url, {"role": "admin"}), 400, "invalid")
    assert list(error["fields"]) == ["role"]
    error = assert_error(owner.delete(url), 400, "invalid")
    assert "role" in error["fields"]
    assert own_membership(world_a).role == Role.OWNER
    assert audit(world_a.tenant.id, "membership.role_changed") == []


def test_an_owner_may_step_down_when_another_owner_remains(world_a):
    world_a.member(role=Role.OWNER)
    owner = api_client_for(world_a.owner)
    url = f"/api/v1/t/acme/members/{own_membership(world_a).id}/"
    response = owner.patch(url, {"role": "admin"})
    assert response.status_code == 200, response.content
    assert response.json()["role"] == "admin"


def test_only_owners_make_owners_or_touch_them(world_a):
    admin = api_client_for(world_a.member(role=Role.ADMIN))
    marketer = world_a.member(role=Role.MARKETING)
    with tenant_scope(world_a.tenant.id):
        marketer_id = Membership.objects.get(user=marketer).id
    owner_url = f"/api/v1/t/acme/members/{own_membership(world_a).id}/"
    assert_error(admin.patch(owner_url, {"role": "read_only"}), 403, "permission_denied")
    assert_error(admin.delete(owner_url), 403, "permission_denied")
    response = admin.patch(f"/api/v1/t/acme/members/{marketer_id}/", {"role": "owner"})
    assert_error(response, 403, "permission_denied")
    response = admin.post(
        "/api/v1/t/acme/invitations/", {"email": "x@example.com", "role": "owner"}
    )
    assert_error(response, 403, "permission_denied")
    assert own_membership(world_a).role == Role.OWNER
    # Below owner, admins manage members as usual; owners may make owners.
    response = admin.patch(f"/api/v1/t/acme/members/{marketer_id}/", {"role": "admin"})
    assert response.status_code == 200, response.content
    owner = api_client_for(world_a.owner)
    response = owner.patch(f"/api/v1/t/acme/members/{marketer_id}/", {"role": "owner"})
    assert response.json()["role"] == "owner"


def test_role_change_is_audited(world_a):
    member = world_a.member(role=Role.MARKETING)
    with tenant_scope(world_a.tenant.id):
        membership = Membership.objects.get(user=member)
    response = api_client_for(world_a.owner).patch(
        f"/api/v1/t/acme/members/{membership.id}/", {"role": "field_sales"}
    )
    assert response.json()["user"]["email"] == member.email
    [entry] = audit(world_a.tenant.id, "membership.role_changed")
    assert entry.actor == world_a.owner
    assert entry.metadata == {"user": member.email, "from": "marketing", "to": "field_sales"}
    assert entry.target_id == str(membership.id)


def test_members_filter_by_role(world_a):
    marketer = world_a.member(role=Role.MARKETING)
    world_a.member(role=Role.FIELD_SALES)
    body = api_client_for(world_a.owner).get("/api/v1/t/acme/members/?role=marketing").json()
    assert [row["user"]["email"] for row in body["results"]] == [marketer.email]


# --- Invitations --------------------------------------------------------------------------


def test_invitation_is_mailed_after_commit_and_audited(world_a, django_capture_on_commit_callbacks):
    client = api_client_for(world_a.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/t/acme/invitations/", {"email": "Newcomer@Example.com", "role": "marketing"}
        )
    assert response.status_code == 201, response.content
    assert response.json()["email"] == "newcomer@example.com"
    assert response.json()["is_pending"] is True
    [message] = mail.outbox
    assert message.to == ["newcomer@example.com"]
    assert "/invitations/" in message.body
    with tenant_scope(world_a.tenant.id):
        assert Invitation.objects.get(pk=response.json()["id"]).sent_at is not None
    [entry] = audit(world_a.tenant.id, "invitation.created")
    assert entry.actor == world_a.owner
    assert entry.metadata == {"email": "newcomer@example.com", "role": "marketing"}


def test_inviting_a_member_is_refused(world_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client_for(world_a.owner).post(
            "/api/v1/t/acme/invitations/", {"email": world_a.owner.email, "role": "admin"}
        )
    error = assert_error(response, 400, "invalid")
    assert "email" in error["fields"]
    assert mail.outbox == []


def test_invitation_revoke_is_audited(world_a, django_capture_on_commit_callbacks):
    client = api_client_for(world_a.owner)
    created = client.post(
        "/api/v1/t/acme/invitations/", {"email": "x@example.com", "role": "marketing"}
    ).json()
    assert client.delete(f"/api/v1/t/acme/invitations/{created['id']}/").status_code == 204
    detail = client.get(f"/api/v1/t/acme/invitations/{created['id']}/").json()
    assert detail["revoked_at"] is not None
    assert detail["is_pending"] is False
    assert len(audit(world_a.tenant.id, "invitation.revoked")) == 1


# --- API keys -----------------------------------------------------------------------------


def test_key_creation_and_revocation_are_audited_and_the_secret_shown_once(world_a):
    client = api_client_for(world_a.owner)
    created = client.post(
        "/api/v1/t/acme/api-keys/", {"name": "Zapier", "scope": "write", "role": "marketing"}
    ).json()
    raw = created["key"]
    assert "key" not in client.get(f"/api/v1/t/acme/api-keys/{created['id']}/").json()
    [entry] = audit(world_a.tenant.id, "api_key.created")
    assert (entry.actor, entry.target_id) == (world_a.owner, str(created["id"]))
    assert entry.metadata == {"scope": "write", "role": "marketing"}

    keyed = api_client_for(api_key=raw)
    assert keyed.get("/api/v1/members/").status_code == 200
    listed = client.get("/api/v1/t/acme/api-keys/").json()["results"]
    assert listed[0]["last_used_at"] is not None

    assert client.delete(f"/api/v1/t/acme/api-keys/{created['id']}/").status_code == 204
    assert_error(keyed.get("/api/v1/members/"), 401)
    [entry] = audit(world_a.tenant.id, "api_key.revoked")
    assert entry.actor == world_a.owner
    with tenant_scope(world_a.tenant.id):
        assert APIKey.objects.filter(pk=created["id"], revoked_at__isnull=False).exists()


def test_actions_through_a_key_are_audited_with_the_key(world_a):
    raw = world_a.api_key(scope=APIKey.Scope.WRITE, role=Role.ADMIN)
    member = world_a.member()
    with tenant_scope(world_a.tenant.id):
        membership = Membership.objects.get(user=member)
    api_client_for(api_key=raw).patch(f"/api/v1/members/{membership.id}/", {"role": "read_only"})
    [entry] = audit(world_a.tenant.id, "membership.role_changed")
    assert entry.actor is None
    assert entry.api_key.prefix == raw.split("_")[1]


# --- Audit log filters --------------------------------------------------------------------


def test_audit_log_filters(world_a):
    admin = world_a.member(role=Role.ADMIN)
    owner, other = api_client_for(world_a.owner), api_client_for(admin)
    owner.post("/api/v1/t/acme/api-keys/", {"name": "one"})
    other.post("/api/v1/t/acme/api-keys/", {"name": "two"})
    owner.patch("/api/v1/t/acme/settings/", {"name": "Renamed"})

    def actions(**params) -> list[str]:
        response = owner.get("/api/v1/t/acme/audit-log/", params)
        assert response.status_code == 200, response.content
        return [row["action"] for row in response.json()["results"]]

    assert actions(action="api_key.created") == ["api_key.created", "api_key.created"]
    assert actions(actor=admin.email.upper()) == ["api_key.created"]
    assert actions(actor=world_a.owner.email) == ["tenant.updated", "api_key.created"]
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    assert actions(created_after=future) == []
    assert len(actions(created_after=past)) == 3
    assert actions(created_before=past) == []
    row = owner.get("/api/v1/t/acme/audit-log/?action=tenant.updated").json()["results"][0]
    assert row["actor"] == world_a.owner.email
    assert row["metadata"] == {"fields": ["name"]}


def test_unknown_api_path_answers_404_in_the_error_format(api_client):
    response = api_client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "No such API endpoint."}}
