"""The registry the tenant isolation tests walk: how to make one row of every
tenant-owned model inside a given tenant.

A new TenantModel without an entry here fails tests/test_isolation.py, so every new
model joins the isolation tests (add its maker next to its app's factories).
"""

from collections.abc import Callable

from django.db.models import Model

from accounts.models import (
    AgencyAssignment,
    APIKey,
    AuditLog,
    DomainEvent,
    IdempotencyRecord,
    Invitation,
    Membership,
    Role,
    Tenant,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from accounts.services import SYSTEM, api_key_create, invitation_create
from accounts.tenancy import tenant_scope
from accounts.tests.factories import (
    AgencyAssignmentFactory,
    AgencyFactory,
    MembershipFactory,
    UserFactory,
    webhook_attempt_factory,
    webhook_delivery_factory,
    webhook_endpoint_factory,
)

RowMaker = Callable[[Tenant], Model]


def _agency_assignment(tenant: Tenant) -> AgencyAssignment:
    if tenant.managed_by is None:
        tenant.managed_by = AgencyFactory()
        tenant.save(update_fields=["managed_by"])
    staff = MembershipFactory(tenant=tenant.managed_by, role=Role.MARKETING).user
    return AgencyAssignmentFactory(tenant=tenant, agency=tenant.managed_by, user=staff)


def _in_scope(tenant: Tenant, make: Callable[[], Model]) -> Model:
    with tenant_scope(tenant.id):
        return make()


def _audit_entry(tenant: Tenant) -> AuditLog:
    with tenant_scope(tenant.id):
        return AuditLog.objects.create(tenant=tenant, action="test.isolation")


ROW_MAKERS: dict[type[Model], RowMaker] = {
    Membership: lambda tenant: MembershipFactory(tenant=tenant, user=UserFactory()),
    AgencyAssignment: _agency_assignment,
    APIKey: lambda tenant: (
        api_key_create(
            tenant_id=tenant.id, name="isolation", scope="write", role=Role.ADMIN, origin=SYSTEM
        ).api_key
    ),
    Invitation: lambda tenant: (
        invitation_create(
            tenant_id=tenant.id,
            email=f"invitee-{tenant.slug}@example.com",
            role=Role.MARKETING,
            origin=SYSTEM,
        ).invitation
    ),
    AuditLog: _audit_entry,
    DomainEvent: lambda tenant: _in_scope(
        tenant,
        lambda: DomainEvent.objects.create(tenant=tenant, name="test.isolation", payload={}),
    ),
    WebhookEndpoint: webhook_endpoint_factory,
    WebhookDelivery: webhook_delivery_factory,
    WebhookAttempt: webhook_attempt_factory,
    IdempotencyRecord: lambda tenant: _in_scope(
        tenant,
        lambda: IdempotencyRecord.objects.create(
            tenant=tenant, key="isolation", caller="user:0", fingerprint="0" * 64
        ),
    ),
}


def _factory_maker(factory_class) -> RowMaker:
    return lambda tenant: factory_class(tenant=tenant)


def _register_app_factories() -> None:
    from campaigns.tests import factories as campaign_factories
    from leads.tests import factories as lead_factories
    from pipeline.tests import factories as pipeline_factories

    for module in (lead_factories, campaign_factories, pipeline_factories):
        for value in vars(module).values():
            model = getattr(getattr(value, "_meta", None), "model", None)
            if (
                isinstance(value, type)
                and model is not None
                and value.__module__ == module.__name__
                and model not in ROW_MAKERS
            ):
                ROW_MAKERS[model] = _factory_maker(value)


def register(model: type[Model], maker: RowMaker) -> None:
    """For later apps: `register(Lead, lambda tenant: LeadFactory(tenant=tenant))`."""
    ROW_MAKERS[model] = maker


_register_app_factories()
