"""The compiled to_representation renders exactly what DRF's generic one renders."""

import pytest
from rest_framework import serializers

from accounts.api import serializers as account_serializers
from accounts.api.serializer_base import ModelSerializer
from accounts.models import (
    AgencyAssignment,
    APIKey,
    AuditLog,
    Invitation,
    Membership,
    Role,
    Tenant,
)
from accounts.services import (
    SYSTEM,
    agency_assignment_grant,
    api_key_create,
    audit_record,
    invitation_create,
)
from accounts.tenancy import tenant_scope
from accounts.tests.factories import AgencyFactory, MembershipFactory

pytestmark = pytest.mark.django_db


def output_serializers() -> list[type[ModelSerializer]]:
    return [
        value
        for value in vars(account_serializers).values()
        if isinstance(value, type)
        and issubclass(value, ModelSerializer)
        and value is not ModelSerializer
    ]


def drf_generic(serializer_class: type[ModelSerializer], instance) -> dict:
    # DRF's own loop over the same bound fields.
    serializer = serializer_class(instance)
    return serializers.ModelSerializer.to_representation(serializer, instance)


@pytest.fixture
def instances(world_a):
    tenant = world_a.tenant
    agency = AgencyFactory()
    tenant.managed_by = agency
    tenant.save(update_fields=["managed_by"])
    staff = MembershipFactory(tenant=agency, role=Role.MARKETING).user
    agency_assignment_grant(client=tenant, user=staff, role=Role.FIELD_SALES, origin=SYSTEM)
    invitation_create(
        tenant_id=tenant.id, email="x@example.com", role=Role.MARKETING, origin=SYSTEM
    )

    api_key_create(tenant_id=tenant.id, name="k", scope="read", role=Role.READ_ONLY, origin=SYSTEM)
    audit_record(tenant_id=tenant.id, origin=SYSTEM, action="test.none_values")
    with tenant_scope(tenant.id):
        rows = {
            Membership: list(Membership.objects.select_related("user")),
            Invitation: list(Invitation.objects.all()),
            APIKey: list(APIKey.objects.all()),
            AuditLog: list(AuditLog.objects.all()),
            Tenant: [Tenant.objects.get(pk=tenant.pk)],
        }
        rows[AgencyAssignment] = list(AgencyAssignment.objects.select_related("user", "agency"))
    return rows


def test_compiled_representation_matches_drf_for_every_output_serializer(instances):
    checked = 0
    for serializer_class in output_serializers():
        model = serializer_class.Meta.model
        for instance in instances.get(model, []):
            with tenant_scope(instances[Tenant][0].id):
                assert serializer_class(instance).data == drf_generic(serializer_class, instance), (
                    serializer_class.__name__
                )
            checked += 1
    assert checked >= 8


def test_fields_are_built_once_per_class(world_a):
    serializer_class = account_serializers.MembershipOutputSerializer
    serializer_class(many=True).child.fields  # noqa: B018  (builds the class cache)
    assert "_built_fields" in serializer_class.__dict__
    first, second = serializer_class().fields, serializer_class().fields
    assert first["role"] is not second["role"]  # each instance binds its own copies
