"""Factories for accounts. Every tenant-owned factory requires a tenant and creates
its row inside that tenant's scope, as the app would."""

import factory
from factory.django import DjangoModelFactory

from accounts.models import AgencyAssignment, Membership, Role, Tenant, User
from accounts.tenancy import tenant_scope


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @factory.post_generation
    def _save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save(update_fields=["password"])


class TenantFactory(DjangoModelFactory):
    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"Tenant {n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")
    kind = Tenant.Kind.CLIENT


class AgencyFactory(TenantFactory):
    name = factory.Sequence(lambda n: f"Agency {n}")
    slug = factory.Sequence(lambda n: f"agency-{n}")
    kind = Tenant.Kind.AGENCY


class TenantOwnedFactory(DjangoModelFactory):
    """Base for factories of TenantModel subclasses: `tenant` is required."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        tenant = kwargs.get("tenant")
        if tenant is None:
            raise ValueError(f"{cls.__name__} needs tenant=")
        with tenant_scope(tenant.id):
            return super()._create(model_class, *args, **kwargs)


class MembershipFactory(TenantOwnedFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    role = Role.MARKETING


class AgencyAssignmentFactory(TenantOwnedFactory):
    class Meta:
        model = AgencyAssignment

    user = factory.SubFactory(UserFactory)
    agency = factory.SelfAttribute("tenant.managed_by")
    role = Role.MARKETING


def webhook_endpoint_factory(tenant: Tenant, url: str = "https://hooks.example.com/in"):
    """An active endpoint subscribed to every event, made by the service (so its secret
    is encrypted as the app stores it)."""
    from accounts.services import SYSTEM
    from accounts.webhooks.services import webhook_endpoint_create

    return webhook_endpoint_create(
        tenant_id=tenant.id, url=url, events=["*"], origin=SYSTEM
    ).endpoint


def webhook_delivery_factory(tenant: Tenant, endpoint=None, status: str = "succeeded"):
    from accounts.webhooks.models import WebhookDelivery

    endpoint = endpoint or webhook_endpoint_factory(tenant)
    with tenant_scope(tenant.id):
        return WebhookDelivery.objects.create(
            tenant=tenant,
            endpoint=endpoint,
            event_name="lead.created",
            body='{"id":"evt_test","type":"lead.created"}',
            status=status,
            attempts=1,
            last_status_code=200,
            last_duration_ms=12,
        )


def webhook_attempt_factory(tenant: Tenant, delivery=None):
    from accounts.webhooks.models import WebhookAttempt

    delivery = delivery or webhook_delivery_factory(tenant)
    with tenant_scope(tenant.id):
        return WebhookAttempt.objects.create(
            tenant=tenant, delivery=delivery, number=1, status_code=200, duration_ms=12
        )
