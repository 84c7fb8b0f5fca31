"""Accounts services: the rules they enforce."""

import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone

from accounts.models import APIKey, AuditLog, Invitation, Membership, Role, Tenant
from accounts.selectors import tenant_access_in_scope, tenant_accesses
from accounts.services import (
    SYSTEM,
    Origin,
    agency_assignment_grant,
    agency_assignment_revoke,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    invitation_accept,
    invitation_create,
    membership_change_role,
    membership_remove,
    tenant_create,
)
from accounts.tenancy import tenant_scope, unscoped
from accounts.tests.factories import AgencyFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def audit_actions(tenant: Tenant) -> list[str]:
    with tenant_scope(tenant.id):
        return list(AuditLog.objects.order_by("id").values_list("action", flat=True))


def test_tenant_create_makes_the_creator_owner_and_audits():
    user = UserFactory()
    tenant = tenant_create(name="両輪商事株式会社", owner=user, origin=Origin(actor=user))
    assert tenant.slug  # derived even from a Japanese name
    with tenant_scope(tenant.id):
        assert Membership.objects.get(user=user).role == Role.OWNER
    assert audit_actions(tenant) == ["tenant.created"]


def test_only_an_agency_can_manage_a_client(world_a):
    with pytest.raises(ValidationError, match="agency"):
        tenant_create(name="x", owner=world_a.owner, origin=SYSTEM, managed_by=world_a.tenant)


def test_last_owner_cannot_be_demoted_or_removed(world_a):
    with tenant_scope(world_a.tenant.id):
        owner_membership = Membership.objects.get(user=world_a.owner)
    with pytest.raises(ValidationError, match="owner"):
        membership_change_role(membership=owner_membership, role=Role.ADMIN, origin=SYSTEM)
    with pytest.raises(ValidationError, match="owner"):
        membership_remove(membership=owner_membership, origin=SYSTEM)
    second = MembershipFactory(tenant=world_a.tenant, role=Role.OWNER)
    membership_change_role(membership=owner_membership, role=Role.ADMIN, origin=SYSTEM)
    with tenant_scope(world_a.tenant.id):
        assert Membership.objects.get(pk=second.pk).role == Role.OWNER
    assert "membership.role_changed" in audit_actions(world_a.tenant)


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner():
    world_tenant = tenant_create(name="Race Inc", owner=UserFactory(), origin=SYSTEM)
    MembershipFactory(tenant=world_tenant, role=Role.OWNER)
    with tenant_scope(world_tenant.id):
        first, second = Membership.objects.filter(role=Role.OWNER).order_by("id")
    barrier = threading.Barrier(2)
    errors: list[Exception] = []

    def demote(membership: Membership) -> None:
        try:
            barrier.wait(timeout=5)
            membership_change_role(membership=membership, role=Role.ADMIN, origin=SYSTEM)
        except ValidationError as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=(m,)) for m in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    with tenant_scope(world_tenant.id):
        owners = Membership.objects.filter(role=Role.OWNER).count()
    assert owners == 1
    assert len(errors) == 1


def test_agency_reach_admins_all_clients_staff_only_assigned():
    agency = AgencyFactory()
    agency_admin = MembershipFactory(tenant=agency, role=Role.ADMIN).user
    planner = MembershipFactory(tenant=agency, role=Role.MARKETING).user
    client_one = tenant_create(name="One", owner=agency_admin, origin=SYSTEM, managed_by=agency)
    client_two = tenant_create(name="Two", owner=agency_admin, origin=SYSTEM, managed_by=agency)
    outsider_client = tenant_create(name="Elsewhere", owner=UserFactory(), origin=SYSTEM)

    reach = {a.tenant: a.role for a in tenant_accesses(agency_admin)}
    assert reach == {agency: Role.ADMIN, client_one: Role.ADMIN, client_two: Role.ADMIN}
    assert {a.tenant for a in tenant_accesses(planner)} == {agency}

    assignment = agency_assignment_grant(
        client=client_one, user=planner, role=Role.INSIDE_SALES, origin=Origin(actor=agency_admin)
    )
    reach = {a.tenant: (a.role, a.via_agency) for a in tenant_accesses(planner)}
    assert reach[client_one] == (Role.INSIDE_SALES, agency)
    assert client_two not in reach
    assert outsider_client not in reach
    with tenant_scope(client_one.id):
        assert tenant_access_in_scope(planner, client_one).role == Role.INSIDE_SALES
    with tenant_scope(client_two.id):
        assert tenant_access_in_scope(planner, client_two) is None
    assert "agency.access_granted" in audit_actions(client_one)
    assert "agency.access_granted" in audit_actions(agency)

    # Leaving the agency ends the reach, even with the grant still on file.
    with tenant_scope(agency.id):
        Membership.objects.filter(user=planner).delete()
    assert tenant_accesses(planner) == []
    with tenant_scope(client_one.id):
        assert tenant_access_in_scope(planner, client_one) is None

    agency_assignment_revoke(assignment=assignment, origin=SYSTEM)
    assert "agency.access_revoked" in audit_actions(client_one)


def test_agency_grant_requires_agency_membership():
    agency = AgencyFactory()
    admin = MembershipFactory(tenant=agency, role=Role.OWNER).user
    client = tenant_create(name="C", owner=admin, origin=SYSTEM, managed_by=agency)
    with pytest.raises(ValidationError, match="managing agency"):
        agency_assignment_grant(
            client=client, user=UserFactory(), role=Role.MARKETING, origin=SYSTEM
        )
    with pytest.raises(ValidationError, match="owner"):
        agency_assignment_grant(client=client, user=admin, role=Role.OWNER, origin=SYSTEM)


def test_api_key_is_stored_hashed_authenticates_and_revokes(world_a):
    issued = api_key_create(
        tenant_id=world_a.tenant.id,
        name="CRM sync",
        scope="write",
        role=Role.MARKETING,
        origin=Origin(actor=world_a.owner),
    )
    with tenant_scope(world_a.tenant.id):
        stored = APIKey.objects.get(pk=issued.api_key.pk)
    assert issued.raw_key not in (stored.hashed_key, stored.prefix)
    assert issued.raw_key.startswith(f"ryo_{stored.prefix}_")
    authenticated = api_key_authenticate(issued.raw_key)
    assert authenticated == stored
    assert authenticated.tenant == world_a.tenant
    assert authenticated.last_used_at is not None
    assert api_key_authenticate(issued.raw_key[:-1] + "x") is None
    assert api_key_authenticate("not-a-key") is None
    api_key_revoke(api_key=stored, origin=SYSTEM)
    assert api_key_authenticate(issued.raw_key) is None
    assert audit_actions(world_a.tenant)[-2:] == ["api_key.created", "api_key.revoked"]


def test_invitation_mail_accept_and_single_use(world_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        issued = invitation_create(
            tenant_id=world_a.tenant.id,
            email="New.Person@Example.com",
            role=Role.INSIDE_SALES,
            origin=Origin(actor=world_a.owner),
        )
    assert len(mail.outbox) == 1
    assert issued.token in mail.outbox[0].body
    assert mail.outbox[0].to == ["new.person@example.com"]

    stranger = UserFactory(email="someone.else@example.com")
    with pytest.raises(PermissionDenied):
        invitation_accept(token=issued.token, user=stranger, origin=SYSTEM)

    invitee = UserFactory(email="new.person@example.com")
    membership = invitation_accept(token=issued.token, user=invitee, origin=SYSTEM)
    assert membership.role == Role.INSIDE_SALES
    with pytest.raises(ValidationError, match="invalid, expired or already used"):
        invitation_accept(token=issued.token, user=invitee, origin=SYSTEM)


def test_expired_invitation_is_refused(world_a):
    issued = invitation_create(
        tenant_id=world_a.tenant.id, email="late@example.com", role=Role.MARKETING, origin=SYSTEM
    )
    with unscoped(reason="test: age the invitation"):
        Invitation.objects.filter(pk=issued.invitation.pk).update(
            expires_at=timezone.now() - timedelta(minutes=1)
        )
    with pytest.raises(ValidationError):
        invitation_accept(
            token=issued.token, user=UserFactory(email="late@example.com"), origin=SYSTEM
        )


def test_inviting_an_existing_member_is_refused(world_a):
    with pytest.raises(ValidationError, match="already a member"):
        invitation_create(
            tenant_id=world_a.tenant.id,
            email=world_a.owner.email,
            role=Role.MARKETING,
            origin=SYSTEM,
        )


def test_only_owners_make_owners_or_change_an_owner(world_a):
    admin_origin = Origin(actor=world_a.member(role=Role.ADMIN), role=Role.ADMIN)
    marketer = MembershipFactory(tenant=world_a.tenant, role=Role.MARKETING)
    with tenant_scope(world_a.tenant.id):
        owner_membership = Membership.objects.get(user=world_a.owner)
    with pytest.raises(PermissionDenied, match="Only an owner"):
        membership_change_role(membership=marketer, role=Role.OWNER, origin=admin_origin)
    with pytest.raises(PermissionDenied, match="Only an owner"):
        membership_change_role(membership=owner_membership, role=Role.ADMIN, origin=admin_origin)
    with pytest.raises(PermissionDenied, match="Only an owner"):
        membership_remove(membership=owner_membership, origin=admin_origin)
    with pytest.raises(PermissionDenied, match="Only an owner"):
        invitation_create(
            tenant_id=world_a.tenant.id,
            email="boss@example.com",
            role=Role.OWNER,
            origin=admin_origin,
        )
    # Admins still manage everyone else; owners make owners.
    membership_change_role(membership=marketer, role=Role.FIELD_SALES, origin=admin_origin)
    owner_origin = Origin(actor=world_a.owner, role=Role.OWNER)
    membership_change_role(membership=marketer, role=Role.OWNER, origin=owner_origin)
    with tenant_scope(world_a.tenant.id):
        assert Membership.objects.get(pk=marketer.pk).role == Role.OWNER


def test_verified_api_keys_are_cached_and_forgotten_on_every_change(
    world_a, django_assert_num_queries
):
    from accounts.services import tenant_set_active, tenant_update

    raw = api_key_create(
        tenant_id=world_a.tenant.id, name="k", scope="read", role=Role.READ_ONLY, origin=SYSTEM
    ).raw_key
    assert api_key_authenticate(raw) is not None  # loads and caches it
    with django_assert_num_queries(0):
        cached = api_key_authenticate(raw)
    assert cached.tenant == world_a.tenant
    with django_assert_num_queries(0):
        assert api_key_authenticate(raw[:-2] + "zz") is None  # the secret is still checked

    tenant_update(tenant=world_a.tenant, origin=SYSTEM, name="Renamed KK")
    assert api_key_authenticate(raw).tenant.name == "Renamed KK"

    tenant_set_active(tenant=world_a.tenant, is_active=False, origin=SYSTEM)
    assert api_key_authenticate(raw) is None
    tenant_set_active(tenant=world_a.tenant, is_active=True, origin=SYSTEM)
    key = api_key_authenticate(raw)
    assert key is not None

    api_key_revoke(api_key=key, origin=SYSTEM)
    assert api_key_authenticate(raw) is None


def test_time_zone_defaults_by_country():
    user = UserFactory()
    assert tenant_create(name="JP Co", owner=user, origin=SYSTEM).time_zone == "Asia/Tokyo"
    assert tenant_create(name="DE Co", owner=user, origin=SYSTEM, country="DE").time_zone == "UTC"
    chosen = tenant_create(
        name="NY Co", owner=user, origin=SYSTEM, country="US", time_zone="America/New_York"
    )
    assert chosen.time_zone == "America/New_York"
