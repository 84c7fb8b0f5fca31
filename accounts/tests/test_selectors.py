"""accounts.selectors.tenant_staff: who can work in a tenant (own its leads and
campaigns) — its members and the agency staff who reach it, as tenant_accesses says."""

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Membership, Role
from accounts.selectors import tenant_accesses, tenant_staff
from accounts.tenancy import tenant_scope
from accounts.tests.factories import (
    AgencyAssignmentFactory,
    AgencyFactory,
    MembershipFactory,
    TenantFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def managed():
    """A client managed by an agency, with every kind of person around it."""
    agency = AgencyFactory(name="Hikari Agency")
    client = TenantFactory(name="Client KK", managed_by=agency)
    people = {
        "member": MembershipFactory(tenant=client, role=Role.FIELD_SALES).user,
        "agency_owner": MembershipFactory(tenant=agency, role=Role.OWNER).user,
        "agency_admin": MembershipFactory(tenant=agency, role=Role.ADMIN).user,
        "assigned": MembershipFactory(tenant=agency, role=Role.MARKETING).user,
        "unassigned": MembershipFactory(tenant=agency, role=Role.MARKETING).user,
        "left_agency": UserFactory(),
        "inactive_admin": MembershipFactory(
            tenant=agency, role=Role.ADMIN, user__is_active=False
        ).user,
    }
    AgencyAssignmentFactory(tenant=client, user=people["assigned"], role=Role.INSIDE_SALES)
    # A grant on file for someone no longer in the agency gives no reach.
    AgencyAssignmentFactory(tenant=client, agency=agency, user=people["left_agency"])
    # Both a member of the client and an agency admin: counted once, as a member.
    both = MembershipFactory(tenant=agency, role=Role.ADMIN).user
    MembershipFactory(tenant=client, user=both, role=Role.MARKETING)
    people["both"] = both
    # Staff of another agency, and members of another tenant, never count.
    other_agency = AgencyFactory()
    TenantFactory(managed_by=other_agency)
    people["other_agency_admin"] = MembershipFactory(tenant=other_agency, role=Role.ADMIN).user
    people["elsewhere"] = MembershipFactory(tenant=TenantFactory(), role=Role.OWNER).user
    return agency, client, people


def by_user(staff) -> dict:
    return {member.user.id: member.via_agency for member in staff}


def test_members_first_then_the_agency_staff_who_reach_the_client(managed):
    agency, client, people = managed
    staff = tenant_staff(client)
    assert by_user(staff) == {
        people["member"].id: None,
        people["both"].id: None,
        people["agency_owner"].id: agency,
        people["agency_admin"].id: agency,
        people["assigned"].id: agency,
    }
    members = [m.user.email for m in staff if m.via_agency is None]
    agency_staff = [m.user.email for m in staff if m.via_agency is not None]
    assert [m.user.email for m in staff] == sorted(members) + sorted(agency_staff)


def test_the_same_people_as_tenant_accesses_reaches_the_client_with(managed):
    _agency, client, people = managed
    reaching = {
        user.id
        for user in people.values()
        if user.is_active and any(a.tenant.id == client.id for a in tenant_accesses(user))
    }
    assert set(by_user(tenant_staff(client))) == reaching


def test_checking_given_ids_by_tenant_id_inside_the_scope(managed):
    _agency, client, people = managed
    asked = [people[name].id for name in people]
    with tenant_scope(client.id):
        found = {m.user.id for m in tenant_staff(client.id, user_ids=asked)}
        # The escape for the agency's rows put the app role and the tenant back.
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('role'), current_setting('app.tenant_id')")
            assert cursor.fetchone() == (settings.DB_APP_ROLE, str(client.id))
        assert Membership.objects.count() == 2  # row-level security still on the client
    assert found == {
        people[name].id for name in ("member", "both", "agency_owner", "agency_admin", "assigned")
    }
    assert tenant_staff(client, user_ids=[]) == []
    assert tenant_staff(client, user_ids=[UserFactory().id]) == []


def test_a_member_is_checked_with_one_query(managed, django_assert_num_queries):
    _agency, client, people = managed
    with tenant_scope(client.id), django_assert_num_queries(1):
        assert by_user(tenant_staff(client, user_ids=[people["member"].id])) == {
            people["member"].id: None
        }


def test_leaving_the_agency_or_its_deactivation_ends_the_reach(managed):
    agency, client, people = managed
    with tenant_scope(agency.id):
        Membership.objects.filter(user=people["assigned"]).delete()
    assert people["assigned"].id not in by_user(tenant_staff(client))
    agency.is_active = False
    agency.save(update_fields=["is_active"])
    client.refresh_from_db()
    assert by_user(tenant_staff(client)) == {people["member"].id: None, people["both"].id: None}


def test_a_client_no_agency_manages_has_only_its_members(world_a):
    agency = AgencyFactory()
    MembershipFactory(tenant=agency, role=Role.OWNER)
    seller = world_a.member(Role.INSIDE_SALES)
    assert by_user(tenant_staff(world_a.tenant)) == {world_a.owner.id: None, seller.id: None}


def test_a_deactivated_agency_reaches_no_client_in_scope(managed):
    """tenant_access_in_scope (every request's check) agrees with tenant_accesses: the
    staff of a deactivated agency lose the clients it manages."""
    from accounts.selectors import tenant_access_in_scope

    agency, client, people = managed
    with tenant_scope(client.id):
        assert tenant_access_in_scope(people["agency_admin"], client).role == Role.ADMIN
        assert tenant_access_in_scope(people["assigned"], client).role == Role.INSIDE_SALES
    agency.is_active = False
    agency.save(update_fields=["is_active"])
    client.refresh_from_db()
    with tenant_scope(client.id):
        assert tenant_access_in_scope(people["agency_admin"], client) is None
        assert tenant_access_in_scope(people["assigned"], client) is None
        assert tenant_access_in_scope(people["member"], client).role == Role.FIELD_SALES
    assert client.id not in {a.tenant.id for a in tenant_accesses(people["agency_admin"])}
