"""The platform admin: every view runs unscoped, so a platform administrator sees and
manages all tenants' rows; writes that matter go through services and are audited."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import (
    AgencyAssignment,
    APIKey,
    AuditLog,
    Invitation,
    Membership,
    Role,
    Tenant,
    User,
)
from accounts.services import SYSTEM
from accounts.tenancy import TenantNotSet, tenant_scope, unscoped
from accounts.tests.factories import AgencyFactory, MembershipFactory, TenantFactory, UserFactory
from tests.fixtures import TenantWorld, make_world

pytestmark = pytest.mark.django_db

TENANT_OWNED = (Membership, AgencyAssignment, APIKey, Invitation, AuditLog)


def changelist_url(model) -> str:
    return reverse(f"admin:accounts_{model._meta.model_name}_changelist")


def change_url(obj) -> str:
    return reverse(f"admin:accounts_{obj._meta.model_name}_change", args=[obj.pk])


@dataclass
class AgencyWorld:
    agency: Tenant
    clients: list[Tenant]
    staff: User


def make_agency_world(n_clients: int = 2) -> AgencyWorld:
    agency = AgencyFactory()
    staff = MembershipFactory(tenant=agency, role=Role.MARKETING).user
    clients = [TenantFactory(managed_by=agency) for _ in range(n_clients)]
    for client in clients:
        services.agency_assignment_grant(
            client=client, user=staff, role=Role.INSIDE_SALES, origin=SYSTEM
        )
    return AgencyWorld(agency=agency, clients=clients, staff=staff)


def populate(world: TenantWorld) -> None:
    """One of everything a tenant owns: a member, an API key, an invitation (and the
    audit entries the services write)."""
    world.member(Role.MARKETING)
    world.api_key()
    services.invitation_create(
        tenant_id=world.tenant.id,
        email=f"invitee-{world.tenant.slug}@example.com",
        role=Role.MARKETING,
        origin=SYSTEM,
    )


@pytest.fixture
def platform_admin(db) -> User:
    return User.objects.create_superuser("root@ryorin.example", "correct horse battery")


@pytest.fixture
def admin(client, platform_admin):
    client.force_login(platform_admin)
    return client


@pytest.fixture
def data(world_a: TenantWorld, world_b: TenantWorld) -> AgencyWorld:
    populate(world_a)
    populate(world_b)
    return make_agency_world()


def results(response) -> list:
    assert response.status_code == 200, response
    return list(response.context["cl"].result_list)


def tenant_ids(rows) -> set[int]:
    return {row.tenant_id for row in rows}


# --- Seeing every tenant ----------------------------------------------------------------


@pytest.mark.parametrize("model", TENANT_OWNED, ids=lambda m: m.__name__)
def test_changelist_shows_rows_of_two_tenants(admin, data, world_a, world_b, model):
    # The same query outside the admin has no tenant and is refused.
    with pytest.raises(TenantNotSet):
        list(model.objects.all())
    rows = results(admin.get(changelist_url(model)))
    with unscoped(reason="test"):
        expected = set(model.objects.values_list("tenant_id", flat=True))
    if model is AgencyAssignment:
        assert tenant_ids(rows) == {client.id for client in data.clients}
    else:
        assert {world_a.tenant.id, world_b.tenant.id} <= tenant_ids(rows)
    assert tenant_ids(rows) == expected


def test_tenant_and_user_changelists(admin, data, world_a, world_b):
    tenants = results(admin.get(changelist_url(Tenant)))
    assert {world_a.tenant, world_b.tenant, data.agency, *data.clients} <= set(tenants)
    users = results(admin.get(changelist_url(User)))
    assert {world_a.owner, world_b.owner, data.staff} <= set(users)


def test_admin_views_leave_no_scope_behind(admin, data):
    admin.get(changelist_url(Membership))
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('role')")
        assert cursor.fetchone()[0] == "none"
    with pytest.raises(TenantNotSet):
        Membership.objects.count()


# --- Search and filters --------------------------------------------------------------------


def test_search_by_email_and_tenant(admin, data, world_a, world_b):
    rows = results(admin.get(changelist_url(Membership), {"q": world_a.owner.email}))
    assert [(m.tenant_id, m.user_id) for m in rows] == [(world_a.tenant.id, world_a.owner.id)]

    rows = results(admin.get(changelist_url(Membership), {"q": "beta"}))  # tenant slug
    assert rows
    assert tenant_ids(rows) == {world_b.tenant.id}

    rows = results(admin.get(changelist_url(APIKey), {"q": "Acme 株式会社"}))  # tenant name
    assert tenant_ids(rows) == {world_a.tenant.id}

    rows = results(admin.get(changelist_url(Invitation), {"q": "invitee-beta"}))
    assert [i.email for i in rows] == ["invitee-beta@example.com"]

    rows = results(admin.get(changelist_url(AgencyAssignment), {"q": data.clients[0].slug}))
    assert tenant_ids(rows) == {data.clients[0].id}

    rows = results(admin.get(changelist_url(User), {"q": world_b.owner.email}))
    assert rows == [world_b.owner]


def test_filters_by_role_kind_and_action(admin, data, world_a, world_b):
    rows = results(admin.get(changelist_url(Membership), {"role": Role.OWNER}))
    assert {m.user for m in rows} == {world_a.owner, world_b.owner}

    rows = results(admin.get(changelist_url(Membership), {"tenant__kind": "agency"}))
    assert [m.user for m in rows] == [data.staff]

    rows = results(admin.get(changelist_url(Tenant), {"kind": "agency"}))
    assert rows == [data.agency]

    rows = results(admin.get(changelist_url(AuditLog), {"action_family": "api_key"}))
    assert {entry.action for entry in rows} == {"api_key.created"}
    assert tenant_ids(rows) == {world_a.tenant.id, world_b.tenant.id}

    rows = results(admin.get(changelist_url(AuditLog), {"q": "agency.access_granted"}))
    assert len(rows) == 4  # written to the client and to the agency, for two clients


def test_status_filters(admin, data, world_a, world_b):
    with unscoped(reason="test"):
        key_a = APIKey.objects.get(tenant=world_a.tenant)
        invitation_b = Invitation.objects.get(tenant=world_b.tenant)
    with tenant_scope(world_a.tenant.id):
        services.api_key_revoke(api_key=key_a, origin=SYSTEM)
    with tenant_scope(world_b.tenant.id):
        Invitation.objects.filter(pk=invitation_b.pk).update(
            expires_at=timezone.now() - timedelta(days=1)
        )

    assert results(admin.get(changelist_url(APIKey), {"status": "revoked"})) == [key_a]
    active = results(admin.get(changelist_url(APIKey), {"status": "active"}))
    assert tenant_ids(active) == {world_b.tenant.id}

    expired = results(admin.get(changelist_url(Invitation), {"status": "expired"}))
    assert expired == [invitation_b]
    pending = results(admin.get(changelist_url(Invitation), {"status": "pending"}))
    assert tenant_ids(pending) == {world_a.tenant.id}


def test_created_date_filter(admin, data, world_a, world_b):
    long_ago = timezone.now() - timedelta(days=90)
    with tenant_scope(world_b.tenant.id):
        Membership.objects.update(created_at=long_ago)
    # What the filter's "past 7 days" link sends: local midnights, with their offset.
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    params = {
        "created_at__gte": str(today - timedelta(days=7)),
        "created_at__lt": str(today + timedelta(days=1)),
    }
    rows = results(admin.get(changelist_url(Membership), params))
    assert world_a.tenant.id in tenant_ids(rows)
    assert world_b.tenant.id not in tenant_ids(rows)


# --- Change pages ---------------------------------------------------------------------------


def test_change_pages_of_tenant_owned_objects_open(admin, data, world_b):
    with unscoped(reason="test"):
        objects = [
            Membership.objects.get(tenant=world_b.tenant, user=world_b.owner),
            AgencyAssignment.objects.filter(tenant=data.clients[1]).get(),
            APIKey.objects.get(tenant=world_b.tenant),
            Invitation.objects.get(tenant=world_b.tenant),
            AuditLog.objects.filter(tenant=world_b.tenant).first(),
        ]
    for obj in objects:
        response = admin.get(change_url(obj))
        assert response.status_code == 200, obj
        assert response.context["original"] == obj
    # The tenant page lists its members inline.
    response = admin.get(change_url(world_b.tenant))
    assert response.status_code == 200
    inline = response.context["inline_admin_formsets"][0].formset
    with tenant_scope(world_b.tenant.id):
        members = {m.user for m in Membership.objects.select_related("user")}
    assert len(members) == 2  # the owner and the member populate() added
    assert {form.instance.user for form in inline.forms} == members
    assert world_b.owner.email in response.content.decode()


def test_audit_log_is_read_only(admin, data, world_a):
    with tenant_scope(world_a.tenant.id):
        entry = AuditLog.objects.first()
    model_admin = admin_site_model_admin(AuditLog)
    request = admin.get(changelist_url(AuditLog)).wsgi_request
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, entry)
    assert not model_admin.has_delete_permission(request, entry)
    add = reverse("admin:accounts_auditlog_add")
    assert admin.get(add).status_code == 403
    delete = reverse("admin:accounts_auditlog_delete", args=[entry.pk])
    assert admin.post(delete, {"post": "yes"}).status_code == 403
    before = entry.action
    admin.post(change_url(entry), {"action": "forged"})
    with tenant_scope(world_a.tenant.id):
        assert AuditLog.objects.get(pk=entry.pk).action == before


def admin_site_model_admin(model):
    from django.contrib import admin as django_admin

    return django_admin.site.get_model_admin(model)


# --- Writes through services ---------------------------------------------------------------


def test_revoke_action_revokes_keys_and_writes_audit_entries(
    admin, platform_admin, data, world_a, world_b
):
    with unscoped(reason="test"):
        keys = list(APIKey.objects.filter(tenant__in=[world_a.tenant, world_b.tenant]))
    assert len(keys) == 2
    response = admin.post(
        changelist_url(APIKey),
        {"action": "revoke", "_selected_action": [key.pk for key in keys]},
    )
    assert response.status_code == 302
    with unscoped(reason="test"):
        assert all(key.revoked_at for key in APIKey.objects.filter(pk__in=[k.pk for k in keys]))
        entries = list(AuditLog.objects.filter(action="api_key.revoked"))
    assert {(e.tenant_id, e.target_id, e.actor_id) for e in entries} == {
        (key.tenant_id, str(key.pk), platform_admin.pk) for key in keys
    }
    # A revoked key no longer authenticates.
    raw = world_a.api_key()
    prefix = raw.split("_")[1]
    with unscoped(reason="test"):
        fresh = APIKey.objects.get(prefix=prefix)
    admin.post(changelist_url(APIKey), {"action": "revoke", "_selected_action": [fresh.pk]})
    assert services.api_key_authenticate(raw) is None


def test_membership_role_change_goes_through_the_service(admin, platform_admin, world_a):
    member = world_a.member(Role.MARKETING)
    with tenant_scope(world_a.tenant.id):
        membership = Membership.objects.get(user=member)
    response = admin.post(change_url(membership), {"role": Role.ADMIN})
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        assert Membership.objects.get(pk=membership.pk).role == Role.ADMIN
        entry = AuditLog.objects.get(action="membership.role_changed")
    assert entry.actor == platform_admin
    assert entry.metadata == {"user": member.email, "from": Role.MARKETING, "to": Role.ADMIN}


def test_demoting_the_last_owner_is_refused_with_a_message(admin, world_a):
    with tenant_scope(world_a.tenant.id):
        owner = Membership.objects.get(user=world_a.owner)
    response = admin.post(change_url(owner), {"role": Role.MARKETING}, follow=True)
    assert response.status_code == 200
    assert [m.level_tag for m in response.context["messages"]] == ["error"]
    with tenant_scope(world_a.tenant.id):
        assert Membership.objects.get(pk=owner.pk).role == Role.OWNER
        assert not AuditLog.objects.filter(action="membership.role_changed").exists()
    # Removing the last owner is refused the same way.
    delete = reverse("admin:accounts_membership_delete", args=[owner.pk])
    admin.post(delete, {"post": "yes"})
    with tenant_scope(world_a.tenant.id):
        assert Membership.objects.filter(pk=owner.pk).exists()


def test_tenant_add_goes_through_tenant_create(admin, platform_admin):
    owner = UserFactory()
    response = admin.post(
        reverse("admin:accounts_tenant_add"),
        {
            "name": "Gamma 合同会社",
            "slug": "gamma",
            "kind": Tenant.Kind.CLIENT,
            "owner": owner.email.upper(),
            "country": "JP",
            "time_zone": "Asia/Tokyo",
            "language": "ja",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant = Tenant.objects.get(slug="gamma")
    with tenant_scope(tenant.id):
        assert Membership.objects.get().user == owner
        assert AuditLog.objects.get(action="tenant.created").actor == platform_admin


@pytest.mark.parametrize("owner", ["", "nobody@example.com"])
def test_tenant_add_needs_an_existing_owner_unless_managed(admin, owner):
    form = {"name": "No One", "slug": "no-one", "kind": "client", "country": "JP",
            "time_zone": "Asia/Tokyo", "language": "ja", "owner": owner}  # fmt: skip
    response = admin.post(reverse("admin:accounts_tenant_add"), form)
    assert response.status_code == 200
    assert "owner" in response.context["adminform"].form.errors
    assert not Tenant.objects.filter(slug="no-one").exists()


def test_tenant_add_managed_by_an_agency(admin):
    agency = AgencyFactory()
    form = {"name": "Managed", "slug": "managed", "kind": "client", "country": "JP",
            "time_zone": "Asia/Tokyo", "language": "ja", "managed_by": agency.pk}  # fmt: skip
    assert admin.post(reverse("admin:accounts_tenant_add"), form).status_code == 302
    tenant = Tenant.objects.get(slug="managed")
    assert tenant.managed_by == agency
    with tenant_scope(tenant.id):
        assert not Membership.objects.exists()  # the agency reaches it, no owner membership


def test_tenant_deactivation_is_audited(admin, world_a):
    response = admin.get(change_url(world_a.tenant))
    inline = response.context["inline_admin_formsets"][0].formset
    payload = {
        "name": "Acme 新社名",
        "country": "JP",
        "time_zone": "Asia/Tokyo",
        "language": "ja",
        # is_active left out: the checkbox is cleared
        **{
            f"{inline.prefix}-{key}": value for key, value in inline.management_form.initial.items()
        },
    }
    response = admin.post(change_url(world_a.tenant), payload)
    assert response.status_code == 302, response.context["adminform"].form.errors
    world_a.tenant.refresh_from_db()
    assert (world_a.tenant.name, world_a.tenant.is_active) == ("Acme 新社名", False)
    with tenant_scope(world_a.tenant.id):
        actions = set(AuditLog.objects.values_list("action", flat=True))
    assert {"tenant.updated", "tenant.deactivated"} <= actions


def test_agency_assignment_add_and_revoke_go_through_services(admin):
    agency_world = make_agency_world(n_clients=1)
    client = agency_world.clients[0]
    colleague = MembershipFactory(tenant=agency_world.agency, role=Role.MARKETING).user
    outsider = UserFactory()
    add = reverse("admin:accounts_agencyassignment_add")

    response = admin.post(add, {"tenant": client.pk, "user": outsider.pk, "role": "marketing"})
    assert response.status_code == 302
    with tenant_scope(client.id):
        assert not AgencyAssignment.objects.filter(user=outsider).exists()

    response = admin.post(add, {"tenant": client.pk, "user": colleague.pk, "role": "marketing"})
    assert response.status_code == 302
    with tenant_scope(client.id):
        assignment = AgencyAssignment.objects.get(user=colleague)
        assert assignment.agency == agency_world.agency
    assert response.url == changelist_url(AgencyAssignment)

    delete = reverse("admin:accounts_agencyassignment_delete", args=[assignment.pk])
    assert admin.post(delete, {"post": "yes"}).status_code == 302
    with tenant_scope(client.id):
        assert not AgencyAssignment.objects.filter(user=colleague).exists()
        assert AuditLog.objects.filter(action="agency.access_revoked").count() == 1


def test_invitation_add_and_revoke_go_through_services(admin, world_a, platform_admin):
    response = admin.post(
        reverse("admin:accounts_invitation_add"),
        {"tenant": world_a.tenant.pk, "email": "New.Person@Example.com", "role": "marketing"},
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        invitation = Invitation.objects.get()
        assert invitation.email == "new.person@example.com"
        assert invitation.invited_by == platform_admin
    admin.post(
        changelist_url(Invitation), {"action": "revoke", "_selected_action": [invitation.pk]}
    )
    with tenant_scope(world_a.tenant.id):
        assert Invitation.objects.get().revoked_at is not None
        assert AuditLog.objects.filter(action="invitation.revoked").count() == 1


# --- Users ----------------------------------------------------------------------------------


def test_user_add_change_and_password_change(admin):
    response = admin.post(
        reverse("admin:accounts_user_add"),
        {
            "email": "Staff@Ryorin.Example",
            "usable_password": "true",
            "password1": "a long enough passphrase",
            "password2": "a long enough passphrase",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(email="staff@ryorin.example")
    assert user.check_password("a long enough passphrase")

    assert admin.get(change_url(user)).status_code == 200
    password_url = reverse("admin:auth_user_password_change", args=[user.pk])
    assert admin.get(password_url).status_code == 200
    response = admin.post(
        password_url,
        {"password1": "another long passphrase", "password2": "another long passphrase"},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("another long passphrase")


def test_user_page_lists_memberships(admin, world_a):
    response = admin.get(change_url(world_a.owner))
    assert response.status_code == 200
    inline = response.context["inline_admin_formsets"][0].formset
    assert [form.instance.tenant for form in inline.forms] == [world_a.tenant]


# --- Access --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [Tenant, User, *TENANT_OWNED], ids=lambda m: m.__name__)
def test_non_staff_and_anonymous_are_sent_to_login(client, world_a, model):
    url = changelist_url(model)
    login = reverse("admin:login")
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(login)
    client.force_login(world_a.owner)  # a tenant owner is not a platform administrator
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(login)


# --- Query counts --------------------------------------------------------------------------


def changelist_queries(admin, model) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert admin.get(changelist_url(model)).status_code == 200
    return len(queries)


@pytest.mark.parametrize("model", [Tenant, User, *TENANT_OWNED], ids=lambda m: m.__name__)
def test_changelist_query_count_does_not_grow_with_rows(admin, data, model):
    before = changelist_queries(admin, model)
    for _ in range(3):
        populate(make_world())
    make_agency_world(n_clients=3)
    after = changelist_queries(admin, model)
    assert after == before
    # Session, user, savepoint, SET LOCAL, counts, the page, release: a fixed handful.
    assert after <= 10


def test_index_and_autocomplete(admin, world_a, world_b):
    response = admin.get(reverse("admin:index"))
    assert response.status_code == 200
    registered = {m["object_name"] for app in response.context["app_list"] for m in app["models"]}
    models = ("User", "Tenant", "Membership", "AgencyAssignment", "APIKey", "Invitation")
    assert {*models, "AuditLog"} <= registered
    response = admin.get(
        reverse("admin:autocomplete"),
        {
            "term": "beta",
            "app_label": "accounts",
            "model_name": "invitation",
            "field_name": "tenant",
        },
    )
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["Beta Corp"]
