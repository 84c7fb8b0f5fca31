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
