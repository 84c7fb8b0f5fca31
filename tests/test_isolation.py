"""Tenant isolation, walked from the URL conf: no route lets tenant B reach tenant A.

Every route must say what it is: `tenant_isolation = "tenant"` on views of one
tenant's data (API base classes and the UI's tenant_view set it), `"user"` on API
views about the caller, or be listed in PUBLIC_ROUTES. Then, for every tenant route,
tenant B's owner (session) and B's admin API key ask for tenant A's data and must get
404 — never the data, never 403 — and B's lists never contain A's rows. A new route
that is not isolated, or that nobody declared, fails here.
"""

import re

import pytest
from django.db.models import Model
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from accounts.models import Role, tenant_models
from accounts.tenancy import tenant_scope
from tests.fixtures import api_client_for
from tests.isolation import ROW_MAKERS

pytestmark = pytest.mark.django_db

# Routes that show no tenant's data, each for a stated reason.
PUBLIC_ROUTES = [
    r"^admin/",  # platform admin: staff only, crosses tenants through unscoped() on purpose
    r"^api/(schema|docs|redoc)/",  # the API description, same for everyone
    r"^i18n/",  # language switch
    r"^accounts/",  # login, logout, password reset: about the person, not a tenant
    r"^invitations/",  # the token names one invitation; only its holder can use it
    r"^$",  # home: redirects to a tenant the user reaches
    r"^tenants/new/",  # create a tenant of one's own
    r"^f/",  # hosted capture forms: the unguessable form key (or signed token) names one form
    r"^api/public/",  # form submissions and tracking: found by form key or signed token
    r"^n/",  # nurture mail links (unsubscribe, tracking): the signed token names one lead
    r"^static/",
    r"^media/",
]

# Path converters (<int:pk>) and regex groups ((?P<pk>[^/.]+)) alike.
KWARG = re.compile(r"\(\?P<(?P<group>\w+)>[^)]*\)|<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def all_routes() -> list[tuple[str, URLPattern]]:
    def walk(resolver: URLResolver, prefix: str):
        for pattern in resolver.url_patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern, route)
            else:
                yield route, pattern

    return list(walk(get_resolver(), ""))


def view_attr(pattern: URLPattern, name: str):
    callback = pattern.callback
    for holder in (getattr(callback, "cls", None), getattr(callback, "view_class", None), callback):
        if holder is not None and hasattr(holder, name):
            return getattr(holder, name)
    return None


def view_model(pattern: URLPattern) -> type[Model] | None:
    model = view_attr(pattern, "isolation_model") or view_attr(pattern, "model")
    queryset = view_attr(pattern, "queryset")
    if model is None and queryset is not None:
        model = queryset.model
    return model


def route_kind(route: str) -> str:
    if route.startswith("api/v1/t/<slug:tenant>/") or route.startswith("t/<slug:tenant>/"):
        return "tenant-in-url"
    if route.startswith("api/v1/"):
        return "api"
    return "other"


def fill(
    route: str, tenant_slug: str, object_id: int | None, parents: dict[str, int] | None = None
) -> str:
    def replace(match: re.Match) -> str:
        name = match["group"] or match["name"]
        if name == "tenant":
            return tenant_slug
        if name == "format":
            return "json"
        if parents and name in parents:
            return str(parents[name])
        assert object_id is not None, f"{route}: no object for <{name}>"
        return str(object_id)

    path = "/" + KWARG.sub(replace, route).replace("^", "").replace("$", "").replace("\\.", ".")
    # The path must reach the very route under test, or a 404 would prove nothing.
    assert resolve(path).route == route, f"{path} does not resolve to {route}"
    return path


def parent_ids(pattern: URLPattern, row: Model) -> dict[str, int]:
    """A nested route's parent kwargs, from the row: the view's `isolation_parents` maps
    each URL kwarg to the row's attribute ({"campaign_pk": "campaign_id"})."""
    parents = view_attr(pattern, "isolation_parents") or {}
    return {kwarg: getattr(row, attribute) for kwarg, attribute in parents.items()}


def test_every_route_declares_its_isolation():
    undeclared = []
    for route, pattern in all_routes():
        declared = view_attr(pattern, "tenant_isolation")
        kind = route_kind(route)
        if kind == "tenant-in-url" and declared != "tenant":
            undeclared.append(f"{route} (tenant in URL, but view is {declared!r})")
        elif kind == "api" and declared not in ("tenant", "user"):
            undeclared.append(f"{route} (API view declares {declared!r})")
        elif (
            kind == "other"
            and declared is None
            and not any(re.search(rule, route) for rule in PUBLIC_ROUTES)
        ):
            undeclared.append(f"{route} (not a tenant route and not in PUBLIC_ROUTES)")
    assert undeclared == []


@pytest.fixture
def rows(world_a, world_b):
    """One row of every tenant-owned model in each tenant: {model: (a_row, b_row)}."""
    return {
        model: (maker(world_a.tenant), maker(world_b.tenant)) for model, maker in ROW_MAKERS.items()
    }


def tenant_routes() -> list[tuple[str, URLPattern]]:
    return [
        (route, pattern)
        for route, pattern in all_routes()
        if view_attr(pattern, "tenant_isolation") == "tenant"
        and route_kind(route) == "tenant-in-url"
    ]


def object_kwargs(route: str) -> list[str]:
    names = [m["group"] or m["name"] for m in KWARG.finditer(route)]
    return [name for name in names if name not in ("tenant", "format")]


def test_there_are_tenant_routes_to_check():
    routes = [route for route, _ in tenant_routes()]
    assert any(route.startswith("api/v1/t/") for route in routes)
    assert any(route.startswith("t/") for route in routes)


def _get_or_post(client, path: str):
    response = client.get(path)
    if response.status_code == 405:
        response = client.post(path)
    return response


def test_tenant_b_gets_404_for_every_route_of_tenant_a(world_a, world_b, rows):
    b_session = api_client_for(user=world_b.owner)
    b_key = api_client_for(api_key=world_b.api_key(role=Role.ADMIN))
    problems = []
    for route, pattern in tenant_routes():
        a_object_id = None
        a_parents: dict[str, int] = {}
        if object_kwargs(route):
            model = view_model(pattern)
            if model is None or model not in rows:
                problems.append(f"{route}: declare `isolation_model` or `queryset` on the view")
                continue
            a_object_id = rows[model][0].pk
            a_parents = parent_ids(pattern, rows[model][0])
        clients = [("B session", b_session)]
        if route.startswith("api/"):
            clients.append(("B api key", b_key))
        # A's tenant in the URL.
        for who, client in clients:
            path = fill(route, world_a.tenant.slug, a_object_id, a_parents)
            status = _get_or_post(client, path).status_code
            if status != 404:
                problems.append(f"{who} GET/POST {path} → {status}")
        if a_object_id is None:
            continue
        # Control: B reaches its own object through the same route, so the 404s
        # above and below come from isolation, not from a broken URL.
        b_row = rows[view_model(pattern)][1]
        b_parents = parent_ids(pattern, b_row)
        status = b_session.get(fill(route, world_b.tenant.slug, b_row.pk, b_parents)).status_code
        if status == 404:
            problems.append(f"control: B session GET its own object on {route} → 404")
        # B's own tenant in the URL, A's object id: every method must answer 404. On a
        # nested route also under B's own parent, when the route names the object itself.
        paths = [fill(route, world_b.tenant.slug, a_object_id, a_parents)]
        if set(object_kwargs(route)) - set(b_parents):
            paths.append(fill(route, world_b.tenant.slug, a_object_id, b_parents))
        for path in paths:
            for who, client in clients:
                for method in ("get", "post", "put", "patch", "delete"):
                    status = getattr(client, method)(path).status_code
                    if status not in (404, 405):
                        problems.append(f"{who} {method.upper()} {path} → {status}")
    assert problems == []


def test_tenant_b_lists_never_contain_tenant_a_rows(world_a, world_b, rows):
    b_session = api_client_for(user=world_b.owner)
    b_key = api_client_for(api_key=world_b.api_key(role=Role.ADMIN))
    a_ids = {model: rows[model][0].pk for model in rows}
    checked = 0
    problems = []
    for route, pattern in tenant_routes():
        if not route.startswith("api/") or object_kwargs(route):
            continue
        model = view_model(pattern)
        for who, client, path in (
            ("B session", b_session, fill(route, world_b.tenant.slug, None)),
            ("B api key", b_key, fill(route.replace("t/<slug:tenant>/", ""), "", None)),
        ):
            response = client.get(path)
            if response.status_code != 200 or model is None:
                continue
            body = response.json()
            items = body.get("results", body) if isinstance(body, dict) else body
            if not isinstance(items, list):
                continue
            checked += 1
            leaked = [item for item in items if item.get("id") == a_ids.get(model)]
            if leaked:
                problems.append(f"{who} {path} lists tenant A's {model.__name__}")
    assert problems == []
    assert checked > 0


def test_every_tenant_model_is_covered_by_a_row_maker():
    assert set(tenant_models()) <= set(ROW_MAKERS)


def test_rows_made_for_a_are_invisible_in_b(world_a, world_b, rows):
    for model, (a_row, b_row) in rows.items():
        with tenant_scope(world_b.tenant.id):
            assert not model.objects.filter(pk=a_row.pk).exists(), model
            assert model.objects.filter(pk=b_row.pk).exists(), model
