"""API authentication, the one error format, per-key throttling, the schema and docs."""

import re
from html.parser import HTMLParser

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command

from accounts.api.throttling import PerCallerRateThrottle
from accounts.models import APIKey, Role
from accounts.services import SYSTEM, api_key_revoke
from accounts.tenancy import tenant_scope
from tests.api_base import assert_error
from tests.fixtures import api_client_for

pytestmark = pytest.mark.django_db


def _key_row(raw_key: str, tenant_id: int) -> APIKey:
    prefix = raw_key.split("_")[1]
    with tenant_scope(tenant_id):
        return APIKey.objects.get(prefix=prefix)


# --- API keys -----------------------------------------------------------------------------


def test_valid_key_reaches_its_tenant_and_records_last_use(world_a):
    raw = world_a.api_key(scope=APIKey.Scope.READ, role=Role.MARKETING)
    response = api_client_for(api_key=raw).get("/api/v1/members/")
    assert response.status_code == 200, response.content
    assert [row["user"]["email"] for row in response.json()["results"]] == [world_a.owner.email]
    assert _key_row(raw, world_a.tenant.id).last_used_at is not None


def test_key_whose_secret_contains_underscores_authenticates(world_a):
    # The secret is urlsafe base64: "_" inside it must not break parsing.
    for _ in range(20):
        raw = world_a.api_key()
        if "_" in raw.split("_", 2)[2]:
            break
    else:
        pytest.fail("no key with '_' in its secret in 20 tries")
    assert api_client_for(api_key=raw).get("/api/v1/members/").status_code == 200


def test_revoked_key_gets_401(world_a):
    raw = world_a.api_key()
    api_key_revoke(api_key=_key_row(raw, world_a.tenant.id), origin=SYSTEM)
    response = api_client_for(api_key=raw).get("/api/v1/members/")
    assert_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.parametrize(
    "header",
    [
        "Api-Key ",
        "Api-Key not-a-key",
        "Api-Key ryo_short_secret",
        "Api-Key ryo_0123456789ab_wrongsecret",
    ],
)
def test_malformed_or_unknown_key_gets_401(world_a, header):
    world_a.api_key()
    client = api_client_for()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_error(client.get("/api/v1/members/"), 401)


def test_other_auth_scheme_is_unauthenticated(world_a):
    client = api_client_for()
    client.credentials(HTTP_AUTHORIZATION="Bearer " + world_a.api_key())
    assert_error(client.get("/api/v1/members/"), 401, "not_authenticated")


def test_key_with_another_tenants_slug_in_url_gets_404(world_a, world_b):
    client = api_client_for(api_key=world_a.api_key())
    assert client.get("/api/v1/t/acme/members/").status_code == 200
    assert_error(client.get("/api/v1/t/beta/members/"), 404, "not_found")
    assert_error(client.get("/api/v1/t/no-such-tenant/members/"), 404, "not_found")


def test_key_implied_route_needs_a_key(world_a):
    session = api_client_for(world_a.owner)
    assert session.get("/api/v1/t/acme/members/").status_code == 200
    assert_error(session.get("/api/v1/members/"), 404, "not_found")
    keyed = api_client_for(api_key=world_a.api_key())
    assert keyed.get("/api/v1/members/").status_code == 200


def test_key_role_limits_what_it_may_do(world_a):
    marketing_key = api_client_for(api_key=world_a.api_key(role=Role.MARKETING))
    assert_error(marketing_key.get("/api/v1/audit-log/"), 403, "permission_denied")
    response = marketing_key.post(
        "/api/v1/invitations/", {"email": "x@example.com", "role": "marketing"}
    )
    assert_error(response, 403, "permission_denied")


def test_keys_cannot_mint_keys(world_a):
    client = api_client_for(api_key=world_a.api_key(scope=APIKey.Scope.WRITE, role=Role.ADMIN))
    assert client.get("/api/v1/api-keys/").status_code == 200
    response = client.post(
        "/api/v1/api-keys/", {"name": "child", "scope": "write", "role": "admin"}
    )
    assert_error(response, 403, "permission_denied")
    with tenant_scope(world_a.tenant.id):
        assert APIKey.objects.count() == 1


# --- The error format ---------------------------------------------------------------------


def test_error_format_400(world_a):
    response = api_client_for(world_a.owner).patch(
        "/api/v1/t/acme/settings/", {"time_zone": "Mars/Olympus"}
    )
    error = assert_error(response, 400, "invalid")
    assert list(error["fields"]) == ["time_zone"]
    assert isinstance(error["fields"]["time_zone"], list)


def test_error_format_401(world_a):
    error = assert_error(api_client_for().get("/api/v1/t/acme/members/"), 401, "not_authenticated")
    assert "fields" not in error


def test_error_format_403(world_a):
    reader = api_client_for(world_a.member(role=Role.READ_ONLY))
    assert_error(reader.patch("/api/v1/t/acme/settings/", {"name": "x"}), 403, "permission_denied")


def test_error_format_404_is_the_same_for_missing_and_unreachable(world_a, world_b):
    client = api_client_for(world_b.owner)
    unreachable = assert_error(client.get("/api/v1/t/acme/settings/"), 404, "not_found")
    missing = assert_error(client.get("/api/v1/t/nowhere/settings/"), 404, "not_found")
    assert unreachable == missing


def test_error_format_405(world_a):
    response = api_client_for(world_a.owner).delete("/api/v1/t/acme/settings/")
    assert_error(response, 405, "method_not_allowed")


@pytest.fixture
def throttle_rate(monkeypatch):
    """DRF copies DEFAULT_THROTTLE_RATES into the class at import, so overriding the
    setting changes nothing; patch the class attribute instead (monkeypatch restores it).
    Counters live in Redis under fresh key/user ids, so earlier tests do not count."""

    def set_rate(rate: str) -> None:
        monkeypatch.setattr(PerCallerRateThrottle, "THROTTLE_RATES", {"caller": rate})

    return set_rate


def test_error_format_429_and_per_key_budget(world_a, throttle_rate):
    # An hour's window: a fixed-window counter must not roll over mid-test.
    throttle_rate("3/hour")
    first = api_client_for(api_key=world_a.api_key())
    second = api_client_for(api_key=world_a.api_key())
    for _ in range(3):
        assert first.get("/api/v1/members/").status_code == 200
    response = first.get("/api/v1/members/")
    error = assert_error(response, 429, "throttled")
    assert "fields" not in error
    assert 0 < int(response["Retry-After"]) <= 3600
    # Another key of the same tenant has its own budget.
    assert second.get("/api/v1/members/").status_code == 200


def test_session_users_are_throttled_per_user(world_a, throttle_rate):
    throttle_rate("2/hour")
    owner = api_client_for(world_a.owner)
    other = api_client_for(world_a.member())
    assert owner.get("/api/v1/me/").status_code == 200
    assert owner.get("/api/v1/me/").status_code == 200
    assert_error(owner.get("/api/v1/me/"), 429, "throttled")
    assert other.get("/api/v1/me/").status_code == 200


# --- Schema and docs ----------------------------------------------------------------------


def test_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = out.read_text()
    for path in ("/api/v1/t/{tenant}/members/{id}/", "/api/v1/members/", "/api/v1/me/"):
        assert f"{path}:" in schema


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def test_docs_serve_only_local_assets(world_a):
    response = api_client_for(world_a.owner).get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    parser = _Assets()
    parser.feed(html)
    assert parser.urls, "the docs page references no assets"
    for url in parser.urls:
        assert url.startswith("/static/"), url
        assert finders.find(url.removeprefix("/static/")), f"{url} is not a local static file"
    # No CDN host anywhere in the page, including inline scripts.
    assert not re.search(r"https?://|//cdn|jsdelivr|unpkg|cdnjs", html)
    assert "/api/schema/" in html


def test_throttle_counts_in_redis_with_one_key_per_window(world_a, throttle_rate):
    from accounts.redis import redis_client
    from accounts.services import api_key_authenticate

    throttle_rate("5/hour")
    raw_key = world_a.api_key()
    client = api_client_for(api_key=raw_key)
    for _ in range(2):
        assert client.get("/api/v1/members/").status_code == 200
    key_id = api_key_authenticate(raw_key).pk
    redis = redis_client()
    keys = [k.decode() for k in redis.scan_iter(f"throttle:caller:key:{key_id}:*")]
    assert len(keys) == 1
    assert int(redis.get(keys[0])) == 2
    assert 0 < redis.ttl(keys[0]) <= 3601
