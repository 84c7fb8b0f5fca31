"""The accounts endpoints through the generic API test case (tests/api_base.py)."""

from django.db.models import Model
from rest_framework.response import Response

from accounts.models import AgencyAssignment, APIKey, AuditLog, Invitation, Role
from accounts.services import SYSTEM, api_key_create, audit_record, invitation_create
from accounts.tenancy import tenant_scope
from accounts.tests.factories import (
    AgencyAssignmentFactory,
    AgencyFactory,
    MembershipFactory,
    TenantFactory,
    UserFactory,
)
from tests.api_base import APIEndpointTests
from tests.fixtures import TenantWorld


class TestMembersAPI(APIEndpointTests):
    route = "member"
    actions = frozenset({"list", "retrieve", "update", "delete"})
    update_payload = {"role": Role.INSIDE_SALES}
    invalid_payload = {"role": "emperor"}
    invalid_field = "role"
    invalid_query = {"role": "emperor"}

    def make_object(self, world: TenantWorld) -> Model:
        return MembershipFactory(tenant=world.tenant, role=Role.MARKETING)


class TestInvitationsAPI(APIEndpointTests):
    route = "invitation"
    actions = frozenset({"list", "retrieve", "create", "delete"})
    create_payload = {"email": "newcomer@example.com", "role": Role.MARKETING}
    invalid_payload = {"email": "not an email", "role": Role.MARKETING}
    invalid_field = "email"

    def make_object(self, world: TenantWorld) -> Model:
        email = UserFactory.build().email  # a fresh address, not a member
        return invitation_create(
            tenant_id=world.tenant.id, email=email, role=Role.MARKETING, origin=SYSTEM
        ).invitation

    def assert_deleted(self, world: TenantWorld, obj: Model) -> None:
        # Revoked, not deleted: the record stays for the audit trail.
        with tenant_scope(world.tenant.id):
            invitation = Invitation.objects.get(pk=obj.pk)
        assert invitation.revoked_at is not None
        assert not invitation.is_pending


class TestAPIKeysAPI(APIEndpointTests):
    route = "api-key"
    actions = frozenset({"list", "retrieve", "create", "delete"})
    create_payload = {"name": "CRM sync", "scope": APIKey.Scope.WRITE, "role": Role.MARKETING}
    invalid_payload = {"name": "owner key", "scope": APIKey.Scope.WRITE, "role": Role.OWNER}
    invalid_field = "role"
    read_only_role_can_read = False  # key management is for admins only
    keys_can_write = False

    def make_object(self, world: TenantWorld) -> Model:
        return api_key_create(
            tenant_id=world.tenant.id,
            name="existing",
            scope=APIKey.Scope.READ,
            role=Role.READ_ONLY,
            origin=SYSTEM,
        ).api_key

    def check_created(self, world: TenantWorld, response: Response) -> None:
        super().check_created(world, response)
        body = response.json()
        assert body["key"].startswith(f"ryo_{body['prefix']}_")
        listed = self.admin(world).get(f"/api/v1/t/{world.tenant.slug}/api-keys/").json()
        row = next(row for row in listed["results"] if row["id"] == body["id"])
        assert "key" not in row
        assert "hashed_key" not in row
        assert body["key"] not in str(listed)

    def assert_deleted(self, world: TenantWorld, obj: Model) -> None:
        with tenant_scope(world.tenant.id):
            api_key = APIKey.objects.get(pk=obj.pk)
        assert api_key.revoked_at is not None


class TestAuditLogAPI(APIEndpointTests):
    route = "audit-log"
    actions = frozenset({"list"})
    invalid_query = {"created_after": "last tuesday"}
    read_only_role_can_read = False

    def make_object(self, world: TenantWorld) -> Model:
        return audit_record(
            tenant_id=world.tenant.id, origin=SYSTEM, action="test.entry", target=world.tenant
        )


class TestAgencyAssignmentsAPI(APIEndpointTests):
    """On a client tenant managed by an agency."""

    route = "agency-assignment"
    actions = frozenset({"list", "retrieve", "create", "delete"})
    invalid_payload = {"email": "nobody@example.com", "role": Role.MARKETING}
    invalid_field = "email"

    def setup_world(self) -> TenantWorld:
        self.agency = AgencyFactory()
        client = TenantFactory(managed_by=self.agency)
        owner = MembershipFactory(tenant=client, role=Role.OWNER).user
        return TenantWorld(tenant=client, owner=owner)

    def make_object(self, world: TenantWorld) -> Model:
        agency = world.tenant.managed_by or AgencyFactory()
        if world.tenant.managed_by is None:
            world.tenant.managed_by = agency
            world.tenant.save(update_fields=["managed_by"])
        staff = MembershipFactory(tenant=agency, role=Role.MARKETING).user
        return AgencyAssignmentFactory(tenant=world.tenant, agency=agency, user=staff)

    def get_create_payload(self, world: TenantWorld) -> dict:
        staff = MembershipFactory(tenant=self.agency, role=Role.MARKETING).user
        return {"email": staff.email.upper(), "role": Role.FIELD_SALES}

    def check_created(self, world: TenantWorld, response: Response) -> None:
        super().check_created(world, response)
        assert response.json()["agency"] == self.agency.slug
        assert response.json()["granted_by"] == world.owner.email
        with tenant_scope(world.tenant.id):
            assignment = AgencyAssignment.objects.get(pk=response.json()["id"])
        assert assignment.role == Role.FIELD_SALES
        with tenant_scope(world.tenant.id):
            assert AuditLog.objects.filter(action="agency.access_granted").exists()
