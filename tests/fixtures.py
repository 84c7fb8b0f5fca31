"""Shared fixtures: two tenants with owners, clients, API keys; service checks."""

import os
from dataclasses import dataclass

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts.models import APIKey, Membership, Role, Tenant, User
from accounts.services import SYSTEM, api_key_create
from accounts.tests.factories import MembershipFactory, TenantFactory, UserFactory

IN_CI = os.environ.get("CI", "").lower() == "true"


def _service_missing(message: str) -> None:
    if IN_CI:
        pytest.exit(f"CI needs this service: {message}", returncode=3)


@pytest.fixture(scope="session", autouse=True)
def _require_services():
    """Under CI=true a missing PostgreSQL or Redis fails the run instead of skipping."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        _service_missing("tests must run on PostgreSQL (set DATABASE_URL)")
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL)
        client.ping()
        client.flushdb()  # throttle counters of an earlier run must not leak in
    except Exception as exc:
        _service_missing(f"Redis at {settings.REDIS_URL}: {exc}")


@dataclass
class TenantWorld:
    tenant: Tenant
    owner: User

    def member(self, role: str = Role.MARKETING, **kwargs) -> User:
        return MembershipFactory(tenant=self.tenant, role=role, **kwargs).user

    def api_key(self, scope: str = APIKey.Scope.WRITE, role: str = Role.ADMIN) -> str:
        return api_key_create(
            tenant_id=self.tenant.id, name="test key", scope=scope, role=role, origin=SYSTEM
        ).raw_key


def make_world(**tenant_kwargs) -> TenantWorld:
    tenant = TenantFactory(**tenant_kwargs)
    owner = UserFactory()
    MembershipFactory(tenant=tenant, user=owner, role=Role.OWNER)
    return TenantWorld(tenant=tenant, owner=owner)


@pytest.fixture
def world_a(db) -> TenantWorld:
    return make_world(name="Acme 株式会社", slug="acme")


@pytest.fixture
def world_b(db) -> TenantWorld:
    return make_world(name="Beta Corp", slug="beta")


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def api_client_for(user: User | None = None, api_key: str | None = None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user=None)
        client.force_login(user)
    if api_key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    return client


__all__ = ["Membership", "TenantWorld", "api_client_for", "make_world"]


def pytest_collection_modifyitems(config, items):
    """Drop generic API tests that do not apply to their endpoint class (see
    tests.api_base.applies_when), so they are neither run nor reported as skipped."""
    kept, dropped = [], []
    for item in items:
        predicate = getattr(getattr(item, "function", None), "applies_when", None)
        if predicate is not None and item.cls is not None and not predicate(item.cls):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
