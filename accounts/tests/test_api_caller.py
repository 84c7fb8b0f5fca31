"""Caller-level routes (/me/, /tenants/), agency flows and cursor pagination."""

import pytest

from accounts.models import AgencyAssignment, APIKey, AuditLog, Membership, Role, Tenant
from accounts.tenancy import tenant_scope, unscoped
from accounts.tests.factories import AgencyFactory, MembershipFactory, TenantFactory, UserFactory
from tests.api_base import assert_error, result_ids
from tests.fixtures import api_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def agency():
    """An agency with an owner, a staff member and two managed clients."""
    agency = AgencyFactory(name="Ad Agency", slug="adagency")
    owner = MembershipFactory(tenant=agency, role=Role.OWNER).user
    staff_membership = MembershipFactory(tenant=agency, role=Role.MARKETING)
    clients = [
        TenantFactory(name="Client One", slug="client-one", managed_by=agency),
        TenantFactory(name="Client Two", slug="client-two", managed_by=agency),
    ]
    return {
        "agency": agency,
        "owner": owner,
        "staff": staff_membership.user,
        "staff_membership": staff_membership,
        "clients": clients,
    }


# --- /me/ ---------------------------------------------------------------------------------


def test_me_for_a_person_lists_the_tenants_they_reach(world_a, world_b, agency):
    MembershipFactory(tenant=world_a.tenant, user=agency["owner"], role=Role.FIELD_SALES)
    response = api_client_for(agency["owner"]).get("/api/v1/me/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["email"] == agency["owner"].email
    assert body["api_key"] is None
    reach = {row["slug"]: (row["role"], row["via_agency"]) for row in body["tenants"]}
    assert reach == {
        "acme": ("field_sales", None),
        "adagency": ("owner", None),
        "client-one": ("admin", "adagency"),
        "client-two": ("admin", "adagency"),
    }


def test_me_for_an_api_key_shows_the_key_and_its_tenant(world_a):
    raw = world_a.api_key(scope=APIKey.Scope.READ, role=Role.MARKETING)
    body = api_client_for(api_key=raw).get("/api/v1/me/").json()
    assert body["email"] is None
    assert body["api_key"] == {
        "name": "test key",
        "prefix": raw.split("_")[1],
        "scope": "read",
        "role": "marketing",
    }
    assert [(t["slug"], t["role"]) for t in body["tenants"]] == [("acme", "marketing")]


def test_me_patch_changes_own_profile(world_a):
    client = api_client_for(world_a.owner)
    response = client.patch("/api/v1/me/", {"full_name": "山田 太郎", "language": "en"})
    assert response.status_code == 200, response.content
    assert response.json()["full_name"] == "山田 太郎"
    world_a.owner.refresh_from_db()
    assert (world_a.owner.full_name, world_a.owner.language) == ("山田 太郎", "en")
    error = assert_error(client.patch("/api/v1/me/", {"language": "fr"}), 400, "invalid")
    assert "language" in error["fields"]


def test_me_patch_ignores_email_and_refuses_keys(world_a):
    email = world_a.owner.email
    api_client_for(world_a.owner).patch("/api/v1/me/", {"email": "evil@example.com"})
    world_a.owner.refresh_from_db()
    assert world_a.owner.email == email
    response = api_client_for(api_key=world_a.api_key()).patch("/api/v1/me/", {"full_name": "x"})
    assert_error(response, 403, "permission_denied")


# --- /tenants/ ----------------------------------------------------------------------------


def test_tenants_lists_only_reachable_tenants_with_roles(world_a, world_b, agency):
    response = api_client_for(agency["staff"]).get("/api/v1/tenants/")
    assert [row["slug"] for row in response.json()["results"]] == ["adagency"]
    rows = api_client_for(agency["owner"]).get("/api/v1/tenants/").json()["results"]
    assert {row["slug"]: row["via_agency"] for row in rows} == {
        "adagency": None,
        "client-one": "adagency",
        "client-two": "adagency",
    }
    keyed = api_client_for(api_key=world_b.api_key()).get("/api/v1/tenants/").json()
    assert [row["slug"] for row in keyed["results"]] == ["beta"]


def test_tenants_list_query_count_does_not_grow_with_tenants(agency, django_assert_max_num_queries):
    for n in range(8):
        TenantFactory(slug=f"extra-{n}", managed_by=agency["agency"])
    client = api_client_for(agency["owner"])
    with django_assert_max_num_queries(10):  # constant: 8 more clients would add 8+
        response = client.get("/api/v1/tenants/")
    assert len(response.json()["results"]) == 11


def test_user_creates_a_client_tenant_and_owns_it(world_a):
    user = UserFactory()
    client = api_client_for(user)
    response = client.post("/api/v1/tenants/", {"name": "New Co", "slug": "new-co"})
    assert response.status_code == 201, response.content
    assert response.json() | {"id": 0} == {
        "id": 0,
        "slug": "new-co",
        "name": "New Co",
        "kind": "client",
        "role": "owner",
        "via_agency": None,
    }
    tenant = Tenant.objects.get(slug="new-co")
    with tenant_scope(tenant.id):
        assert Membership.objects.get(user=user).role == Role.OWNER
        assert AuditLog.objects.filter(action="tenant.created", actor=user).exists()
    assert client.get("/api/v1/t/new-co/settings/").json()["name"] == "New Co"


def test_tenant_create_validation(world_a):
    client = api_client_for(world_a.owner)
    error = assert_error(client.post("/api/v1/tenants/", {"name": "Dup", "slug": "acme"}), 400)
    assert "slug" in error["fields"]
    error = assert_error(client.post("/api/v1/tenants/", {}), 400, "invalid")
    assert "name" in error["fields"]


def test_api_keys_cannot_create_tenants(world_a):
    response = api_client_for(api_key=world_a.api_key()).post("/api/v1/tenants/", {"name": "X"})
    assert_error(response, 403, "permission_denied")
    assert not Tenant.objects.filter(name="X").exists()


# --- Agency flows -------------------------------------------------------------------------


def test_agency_admin_creates_a_client_and_reaches_it(agency):
    client = api_client_for(agency["owner"])
    response = client.post("/api/v1/tenants/", {"name": "Client Three", "managed_by": "adagency"})
    assert response.status_code == 201, response.content
    assert (response.json()["role"], response.json()["via_agency"]) == ("admin", "adagency")
    slug = response.json()["slug"]
    created = Tenant.objects.get(slug=slug)
    assert created.managed_by == agency["agency"]
    with unscoped(reason="test: no direct membership was made"):
        assert not Membership.objects.filter(tenant=created).exists()
    settings = client.get(f"/api/v1/t/{slug}/settings/").json()
    assert settings["managed_by"] == "adagency"
    assert client.patch(f"/api/v1/t/{slug}/settings/", {"language": "en"}).status_code == 200


@pytest.mark.parametrize("slug", ["adagency", "no-such-agency", "acme"])
def test_client_creation_needs_an_agency_the_caller_administers(agency, world_a, slug):
    # Staff of the agency (not admin), an unknown slug, and a client the caller owns all
    # answer alike: the field is named, nothing about the slug is revealed.
    MembershipFactory(tenant=world_a.tenant, user=agency["staff"], role=Role.OWNER)
    response = api_client_for(agency["staff"]).post(
        "/api/v1/tenants/", {"name": "Sneaky", "managed_by": slug}
    )
    error = assert_error(response, 400, "invalid")
    assert list(error["fields"]) == ["managed_by"]
    assert not Tenant.objects.filter(name="Sneaky").exists()


def test_agency_staff_reach_only_assigned_clients_until_they_leave(agency):
    one = agency["clients"][0]
    staff = api_client_for(agency["staff"])
    assert_error(staff.get("/api/v1/t/client-one/members/"), 404)

    admin = api_client_for(agency["owner"])
    response = admin.post(
        "/api/v1/t/client-one/agency-assignments/",
        {"email": agency["staff"].email, "role": "marketing"},
    )
    assert response.status_code == 201, response.content

    assert staff.get("/api/v1/t/client-one/members/").status_code == 200
    assert_error(staff.get("/api/v1/t/client-two/members/"), 404)
    reached = {row["slug"]: row["role"] for row in staff.get("/api/v1/tenants/").json()["results"]}
    assert reached == {"adagency": "marketing", "client-one": "marketing"}
    # A marketing assignment may not grant others, nor manage the client.
    response = staff.post(
        "/api/v1/t/client-one/agency-assignments/",
        {"email": agency["owner"].email, "role": "admin"},
    )
    assert_error(response, 403, "permission_denied")

    # Leaving the agency ends the reach, though the assignment row remains.
    membership_id = agency["staff_membership"].id
    assert admin.delete(f"/api/v1/t/adagency/members/{membership_id}/").status_code == 204
    assert_error(staff.get("/api/v1/t/client-one/members/"), 404)
    with tenant_scope(one.id):
        assert AgencyAssignment.objects.filter(user=agency["staff"]).exists()
    assert staff.get("/api/v1/tenants/").json()["results"] == []


def test_client_admin_may_grant_agency_staff(agency):
    client_owner = MembershipFactory(tenant=agency["clients"][0], role=Role.OWNER).user
    response = api_client_for(client_owner).post(
        "/api/v1/t/client-one/agency-assignments/",
        {"email": agency["staff"].email, "role": "inside_sales"},
    )
    assert response.status_code == 201, response.content
    assert api_client_for(agency["staff"]).get("/api/v1/t/client-one/settings/").status_code == 200


def test_only_agency_members_can_be_granted(agency, world_a):
    admin = api_client_for(agency["owner"])
    for email in (world_a.owner.email, "nobody@example.com"):
        response = admin.post(
            "/api/v1/t/client-one/agency-assignments/", {"email": email, "role": "marketing"}
        )
        error = assert_error(response, 400, "invalid")
        assert list(error["fields"]) == ["email"]


def test_assignment_on_an_unmanaged_tenant_is_refused(world_a):
    response = api_client_for(world_a.owner).post(
        "/api/v1/t/acme/agency-assignments/", {"email": world_a.owner.email, "role": "marketing"}
    )
    error = assert_error(response, 400, "invalid")
    assert "non_field_errors" in error["fields"]


def test_revoking_an_assignment_removes_the_reach(agency):
    admin = api_client_for(agency["owner"])
    created = admin.post(
        "/api/v1/t/client-one/agency-assignments/",
        {"email": agency["staff"].email, "role": "marketing"},
    ).json()
    staff = api_client_for(agency["staff"])
    assert staff.get("/api/v1/t/client-one/settings/").status_code == 200
    url = f"/api/v1/t/client-one/agency-assignments/{created['id']}/"
    assert admin.delete(url).status_code == 204
    assert_error(staff.get("/api/v1/t/client-one/settings/"), 404)


# --- Cursor pagination --------------------------------------------------------------------


def test_cursor_pagination_walks_every_row_once(world_a):
    for _ in range(4):
        world_a.member()
    client = api_client_for(world_a.owner)
    url, seen, pages = "/api/v1/t/acme/members/?page_size=2", [], 0
    while url:
        body = client.get(url).json()
        assert len(body["results"]) <= 2
        seen += [row["id"] for row in body["results"]]
        url, pages = body["next"], pages + 1
        assert url is None or "cursor=" in url
    assert pages == 3
    assert len(seen) == len(set(seen)) == 5
    with tenant_scope(world_a.tenant.id):
        expected = list(
            Membership.objects.order_by("-created_at", "-id").values_list("id", flat=True)
        )
    assert seen == expected


def test_page_size_is_capped_and_bad_cursor_is_404(world_a):
    client = api_client_for(world_a.owner)
    body = client.get("/api/v1/t/acme/members/?page_size=100000").json()
    assert body["next"] is None
    assert len(body["results"]) == 1
    assert_error(client.get("/api/v1/t/acme/members/?cursor=garbage"), 404, "not_found")


def test_tenants_list_paginates(world_a):
    user = world_a.owner
    for n in range(3):
        MembershipFactory(tenant=TenantFactory(slug=f"extra-{n}"), user=user)
    client = api_client_for(user)
    first = client.get("/api/v1/tenants/?page_size=3").json()
    assert len(first["results"]) == 3
    second = client.get(first["next"]).json()
    assert second["next"] is None
    ids = [row["id"] for row in first["results"] + second["results"]]
    assert len(set(ids)) == 4
    assert world_a.tenant.id in result_ids(client.get("/api/v1/tenants/"))
