"""A generic API test case, NetBox style: describe an endpoint in a few lines and get
list/retrieve/create/update/delete tests, the error format of a validation error,
tenant isolation (another tenant's user and API key get 404 and never see the rows)
and role/scope checks on writes.

    class TestMembersAPI(APIEndpointTests):
        route = "member"
        actions = {"list", "retrieve", "update", "delete"}
        update_payload = {"role": Role.INSIDE_SALES}
        invalid_payload = {"role": "emperor"}
        invalid_field = "role"

        def make_object(self, world):
            return MembershipFactory(tenant=world.tenant)

A nested route (`campaigns/<campaign_pk>/members/`) also defines `url_kwargs(world)`.
The class name must not start with "Test" so pytest collects only the subclasses.
pytest makes a fresh instance per test, so `setup_world` may keep extra objects on self.
"""

from typing import Any, ClassVar

import pytest
from django.db.models import Model
from django.urls import reverse
from rest_framework.response import Response
from rest_framework.test import APIClient

from accounts.models import APIKey, Role
from accounts.tenancy import tenant_scope
from tests.fixtures import TenantWorld, api_client_for, make_world

ALL_ACTIONS = frozenset({"list", "retrieve", "create", "update", "delete"})


def applies_when(predicate):
    """Collect a generic test only for endpoint classes where `predicate(cls)` holds
    (tests/fixtures.py deselects the others, so they are not reported as skipped)."""

    def mark(test):
        test.applies_when = predicate
        return test

    return mark


def needs(action: str):
    return applies_when(lambda cls: action in cls.actions)


def list_url(route: str, tenant_slug: str | None, **kwargs: Any) -> str:
    """The tenant route, or the key-implied one when tenant_slug is None. `kwargs` fill
    a nested route's other parameters (a parent's id)."""
    if tenant_slug is None:
        return reverse(f"api:keytenant:{route}-list", kwargs=kwargs)
    return reverse(f"api:tenant:{route}-list", kwargs={"tenant": tenant_slug, **kwargs})


def detail_url(route: str, tenant_slug: str | None, pk: Any, **kwargs: Any) -> str:
    if tenant_slug is None:
        return reverse(f"api:keytenant:{route}-detail", kwargs={"pk": pk, **kwargs})
    return reverse(f"api:tenant:{route}-detail", kwargs={"tenant": tenant_slug, "pk": pk, **kwargs})


def result_ids(response: Response) -> set:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def assert_error(response: Response, status: int, code: str | None = None) -> dict:
    """The one error format: {"error": {"code", "message"[, "fields"]}}."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


@pytest.mark.django_db
class APIEndpointTests:
    #: Route name without namespace, e.g. "member" for "api:tenant:member-list".
    route: ClassVar[str]
    actions: ClassVar[frozenset[str] | set[str]] = ALL_ACTIONS
    #: Payloads; create_payload/update_payload may also be methods taking the world.
    create_payload: ClassVar[dict | None] = None
    update_payload: ClassVar[dict | None] = None
    invalid_payload: ClassVar[dict | None] = None
    invalid_field: ClassVar[str | None] = None
    #: For list-only endpoints: a query string that fails filter validation.
    invalid_query: ClassVar[dict | None] = None
    #: A role that may read but not write; None when every reader may also write.
    read_only_role: ClassVar[str] = Role.READ_ONLY
    read_only_role_can_read: ClassVar[bool] = True
    #: False when API keys may not write here at all (they then get 403 on writes).
    keys_can_write: ClassVar[bool] = True
    #: With six rows; a per-row query (N+1) pushes past it. Accounts lists take 9.
    max_list_queries: ClassVar[int] = 10

    # --- hooks ---------------------------------------------------------------------------

    def setup_world(self) -> TenantWorld:
        return make_world()

    def make_object(self, world: TenantWorld) -> Model:
        raise NotImplementedError

    def url_kwargs(self, world: TenantWorld) -> dict:
        """A nested route's parameters besides tenant and pk, for `world`'s rows (e.g.
        {"campaign_pk": …}); memoise per world, make_object must use the same parent."""
        return {}

    def get_create_payload(self, world: TenantWorld) -> dict:
        return dict(self.create_payload or {})

    def get_update_payload(self, world: TenantWorld) -> dict:
        return dict(self.update_payload or {})

    def check_created(self, world: TenantWorld, response: Response) -> None:
        """Extra checks on a 201; by default that the new row can be retrieved."""
        if "retrieve" in self.actions:
            response = self.admin(world).get(
                self.detail_url(world, world.tenant.slug, response.json()["id"])
            )
            assert response.status_code == 200, response.content

    def assert_deleted(self, world: TenantWorld, obj: Model) -> None:
        """After DELETE: the row is gone (override for revoke-style endpoints)."""
        model = type(obj)
        with tenant_scope(world.tenant.id):
            assert not model.objects.filter(pk=obj.pk).exists()

    # --- helpers ---------------------------------------------------------------------------

    def list_url(self, world: TenantWorld, tenant_slug: str | None) -> str:
        return list_url(self.route, tenant_slug, **self.url_kwargs(world))

    def detail_url(self, world: TenantWorld, tenant_slug: str | None, pk: Any) -> str:
        return detail_url(self.route, tenant_slug, pk, **self.url_kwargs(world))

    def admin(self, world: TenantWorld) -> APIClient:
        return api_client_for(world.owner)

    def _world(self) -> TenantWorld:
        return self.setup_world()

    def _other_world(self) -> TenantWorld:
        return make_world()

    # --- CRUD --------------------------------------------------------------------------

    @needs("list")
    def test_list(self):
        world = self._world()
        obj = self.make_object(world)
        assert obj.pk in result_ids(self.admin(world).get(self.list_url(world, world.tenant.slug)))
        key = api_client_for(api_key=world.api_key(role=Role.ADMIN))
        assert obj.pk in result_ids(key.get(self.list_url(world, None)))

    @needs("list")
    def test_list_query_count_is_bounded(self, django_assert_max_num_queries):
        world = self._world()
        for _ in range(6):
            self.make_object(world)
        client = self.admin(world)
        with django_assert_max_num_queries(self.max_list_queries):
            response = client.get(self.list_url(world, world.tenant.slug))
        assert len(response.json()["results"]) >= 6

    @applies_when(lambda cls: bool(cls.invalid_query))
    def test_list_filter_validation_error(self):
        world = self._world()
        response = self.admin(world).get(
            self.list_url(world, world.tenant.slug), self.invalid_query
        )
        error = assert_error(response, 400, "invalid")
        assert set(self.invalid_query) <= set(error["fields"])

    @needs("retrieve")
    def test_retrieve(self):
        world = self._world()
        obj = self.make_object(world)
        response = self.admin(world).get(self.detail_url(world, world.tenant.slug, obj.pk))
        assert response.status_code == 200, response.content
        assert response.json()["id"] == obj.pk

    @needs("create")
    def test_create(self):
        world = self._world()
        response = self.admin(world).post(
            self.list_url(world, world.tenant.slug), self.get_create_payload(world)
        )
        assert response.status_code == 201, response.content
        assert response.json()["id"]
        self.check_created(world, response)

    @needs("create")
    def test_create_validation_error(self):
        world = self._world()
        response = self.admin(world).post(
            self.list_url(world, world.tenant.slug), self.invalid_payload
        )
        error = assert_error(response, 400, "invalid")
        assert self.invalid_field in error["fields"]

    @applies_when(lambda cls: "create" not in cls.actions and "list" in cls.actions)
    def test_create_not_allowed_answers_405(self):
        world = self._world()
        response = self.admin(world).post(self.list_url(world, world.tenant.slug), {})
        assert_error(response, 405, "method_not_allowed")

    @needs("update")
    def test_update(self):
        world = self._world()
        obj = self.make_object(world)
        payload = self.get_update_payload(world)
        response = self.admin(world).patch(
            self.detail_url(world, world.tenant.slug, obj.pk), payload
        )
        assert response.status_code == 200, response.content
        for field, value in payload.items():
            assert response.json()[field] == value

    @needs("update")
    def test_update_validation_error(self):
        world = self._world()
        obj = self.make_object(world)
        response = self.admin(world).patch(
            self.detail_url(world, world.tenant.slug, obj.pk), self.invalid_payload
        )
        error = assert_error(response, 400, "invalid")
        assert self.invalid_field in error["fields"]

    @needs("delete")
    def test_delete(self):
        world = self._world()
        obj = self.make_object(world)
        response = self.admin(world).delete(self.detail_url(world, world.tenant.slug, obj.pk))
        assert response.status_code == 204, response.content
        self.assert_deleted(world, obj)

    # --- isolation ---------------------------------------------------------------------------

    def test_other_tenants_user_gets_404_and_sees_nothing(self):
        world, other = self._world(), self._other_world()
        obj = self.make_object(world)
        self.make_object(other)
        client = api_client_for(other.owner)
        a = world.tenant.slug
        if "list" in self.actions:
            assert_error(client.get(self.list_url(world, a)), 404, "not_found")
            assert obj.pk not in result_ids(client.get(self.list_url(other, other.tenant.slug)))
        if "retrieve" in self.actions:
            assert_error(client.get(self.detail_url(world, a, obj.pk)), 404)
            # Naming its own tenant in the URL does not reach A's row either.
            assert_error(client.get(self.detail_url(other, other.tenant.slug, obj.pk)), 404)
        if "create" in self.actions:
            response = client.post(self.list_url(world, a), self.get_create_payload(world))
            assert_error(response, 404)
        if "update" in self.actions:
            response = client.patch(
                self.detail_url(world, a, obj.pk), self.get_update_payload(world)
            )
            assert_error(response, 404)
        if "delete" in self.actions:
            assert_error(client.delete(self.detail_url(world, a, obj.pk)), 404)
            assert_error(client.delete(self.detail_url(other, other.tenant.slug, obj.pk)), 404)
        self._assert_untouched(world, obj)

    def test_other_tenants_api_key_gets_404_and_sees_nothing(self):
        world, other = self._world(), self._other_world()
        obj = self.make_object(world)
        client = api_client_for(api_key=other.api_key(role=Role.ADMIN))
        a = world.tenant.slug
        if "list" in self.actions:
            assert_error(client.get(self.list_url(world, a)), 404, "not_found")
            assert obj.pk not in result_ids(client.get(self.list_url(other, None)))
        if "retrieve" in self.actions:
            assert_error(client.get(self.detail_url(world, a, obj.pk)), 404)
            assert_error(client.get(self.detail_url(other, None, obj.pk)), 404)
        if "delete" in self.actions:
            assert_error(client.delete(self.detail_url(world, a, obj.pk)), 404)
            assert_error(client.delete(self.detail_url(other, None, obj.pk)), 404)
        self._assert_untouched(world, obj)

    def _assert_untouched(self, world: TenantWorld, obj: Model) -> None:
        model = type(obj)
        with tenant_scope(world.tenant.id):
            fresh = model.objects.filter(pk=obj.pk).values().first()
        assert fresh is not None
        for field in ("role", "revoked_at"):
            if field in fresh:
                assert fresh[field] == getattr(obj, field)

    # --- roles and key scopes -------------------------------------------------------------------

    def _write_requests(self, client: APIClient, world: TenantWorld, obj: Model, slug: str | None):
        if "create" in self.actions:
            yield client.post(self.list_url(world, slug), self.get_create_payload(world))
        if "update" in self.actions:
            yield client.patch(self.detail_url(world, slug, obj.pk), self.get_update_payload(world))
        if "delete" in self.actions:
            yield client.delete(self.detail_url(world, slug, obj.pk))

    def test_read_only_role_cannot_write(self):
        world = self._world()
        obj = self.make_object(world)
        client = api_client_for(world.member(role=self.read_only_role))
        slug = world.tenant.slug
        response = client.get(self.list_url(world, slug))
        if self.read_only_role_can_read:
            assert response.status_code == 200, response.content
        else:
            assert_error(response, 403, "permission_denied")
        writes = list(self._write_requests(client, world, obj, slug))
        for response in writes:
            assert_error(response, 403, "permission_denied")
        self._assert_untouched(world, obj)

    @needs("create")
    def test_write_scope_admin_key_creates_unless_keys_may_not(self):
        world = self._world()
        client = api_client_for(api_key=world.api_key(scope=APIKey.Scope.WRITE, role=Role.ADMIN))
        response = client.post(self.list_url(world, None), self.get_create_payload(world))
        if self.keys_can_write:
            assert response.status_code == 201, response.content
        else:
            assert_error(response, 403, "permission_denied")

    def test_read_scope_key_cannot_write(self):
        world = self._world()
        obj = self.make_object(world)
        client = api_client_for(api_key=world.api_key(scope=APIKey.Scope.READ, role=Role.ADMIN))
        if "list" in self.actions:
            assert client.get(self.list_url(world, None)).status_code == 200
        for response in self._write_requests(client, world, obj, None):
            assert_error(response, 403, "permission_denied")
        self._assert_untouched(world, obj)
