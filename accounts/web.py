"""The tenant boundary of the staff web UI, and the pieces every app's pages share.

`tenant_view` is to the web UI what `TenantScopedMixin` is to the API: it resolves the
tenant from the URL (`/t/<tenant>/…`), checks the user's access inside the tenant's
scope, and runs the whole view *and its template rendering* in that scope, so a lazy
queryset evaluated by a template is still filtered by the manager and by row-level
security. A tenant the user cannot reach answers 404, exactly like one that does not
exist; a role the page does not allow answers 403 (the user can see the tenant).

Other apps light up their entry of the side navigation by naming a URL as in NAV
(e.g. `leads:index`, mounted under /t/<tenant>/ by config.urls); until the URL exists
the entry shows as "coming soon".
"""

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

from accounts import selectors
from accounts.models import ADMIN_ROLES, Role, Tenant, User
from accounts.selectors import TenantAccess
from accounts.services import role_grantable
from accounts.tenancy import tenant_scope

LAST_TENANT_SESSION_KEY = "ryorin_last_tenant_id"

ViewFunc = Callable[..., HttpResponse]


def tenant_view(
    view: ViewFunc | None = None,
    *,
    roles: Iterable[str] | None = None,
    isolation_model: type[Model] | None = None,
) -> ViewFunc | Callable[[ViewFunc], ViewFunc]:
    """Decorate a view of one tenant's pages: `@tenant_view` or
    `@tenant_view(roles=ADMIN_ROLES, isolation_model=APIKey)`.

    The URL must capture `<slug:tenant>`; the view receives the request (with
    `request.tenant` and `request.tenant_access` set) and the other URL kwargs.
    `isolation_model` names the model of an object id in the URL, for the isolation
    test that walks the URL conf. Works on `SomeView.as_view()` too.
    """
    allowed = frozenset(roles) if roles is not None else None

    def decorator(func: ViewFunc) -> ViewFunc:
        @functools.wraps(func)
        def wrapper(request: HttpRequest, tenant: str, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            tenant_obj = selectors.tenant_get_by_slug(tenant)
            if tenant_obj is None:
                raise Http404
            with tenant_scope(tenant_obj.id), timezone.override(tenant_obj.time_zone):
                access = selectors.tenant_access_in_scope(request.user, tenant_obj)
                if access is None:
                    raise Http404
                if allowed is not None and access.role not in allowed:
                    raise PermissionDenied
                request.tenant = tenant_obj
                request.tenant_access = access
                if request.session.get(LAST_TENANT_SESSION_KEY) != tenant_obj.id:
                    # Written only on a change: an unchanged session is not saved again.
                    request.session[LAST_TENANT_SESSION_KEY] = tenant_obj.id
                response = func(request, *args, **kwargs)
                # Render inside the scope: templates evaluate lazy querysets.
                if callable(getattr(response, "render", None)) and not getattr(
                    response, "is_rendered", True
                ):
                    response.render()
            return response

        wrapper.tenant_isolation = "tenant"
        if isolation_model is not None:
            wrapper.isolation_model = isolation_model
        return wrapper

    if view is not None:
        return decorator(view)
    return decorator


def is_admin(access: TenantAccess | None) -> bool:
    return access is not None and access.role in ADMIN_ROLES


def assignable_roles(actor_role: str) -> list[tuple[str, str]]:
    """Roles an actor may hand out (services.role_grantable: only an owner makes owners)."""
    return [(value, label) for value, label in Role.choices if role_grantable(actor_role, value)]


def agency_grant_roles(actor_role: str) -> list[tuple[str, str]]:
    """Roles an agency staff member can be granted on a client: never owner."""
    return [(value, label) for value, label in assignable_roles(actor_role) if value != Role.OWNER]


def can_manage_member(actor_role: str, target_role: str) -> bool:
    """Admins manage members; an owner's membership is managed by owners only."""
    return actor_role in ADMIN_ROLES and role_grantable(actor_role, target_role)


def role_label(role: str) -> str:
    try:
        return str(Role(role).label)
    except ValueError:
        return role


# --- Service errors, in the user's language --------------------------------------------------

# Messages the services raise in English; listed so makemessages extracts them and
# `error_messages` can show them translated.
SERVICE_MESSAGES = [
    gettext_noop("This person is already a member."),
    gettext_noop("A tenant must keep at least one owner."),
    gettext_noop("Choose a role other than owner."),
    gettext_noop("Only an owner can make or change owners."),
    gettext_noop("This invitation is invalid, expired or already used."),
    gettext_noop("This invitation was sent to another email address."),
    gettext_noop("This field cannot be changed."),
    gettext_noop("An account with this email address already exists."),
    gettext_noop("This tenant is not managed by an agency."),
    gettext_noop("The user is not a member of the managing agency."),
]


def error_messages(exc: ValidationError | PermissionDenied) -> list[str]:
    """The messages of a service error, translated where we know them."""
    if isinstance(exc, ValidationError):
        return [gettext(message) for message in exc.messages]
    return [gettext(str(exc))] if str(exc) else [gettext("You are not allowed to do this.")]


# --- Navigation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    url: str | None  # None: not built yet, shown as "coming soon"
    active: bool = False


# (label, URL name, admin only). The URL takes the tenant slug as its only argument.
NAV = [
    (None, [(_("Dashboard"), "accounts:dashboard", False)]),
    (
        _("Marketing"),
        [
            (_("Leads"), "leads:index", False),
            (_("Companies"), "leads:companies", False),
            (_("Campaigns"), "campaigns:index", False),
            (_("Nurturing"), "campaigns:nurture_sequences", False),
            (_("Segments"), "campaigns:segments", False),
            (_("Lead scoring"), "leads:scoring", False),
        ],
    ),
    (
        _("Pipeline"),
        [
            (_("Inside sales queue"), "pipeline:queue", False),
            (_("My tasks"), "pipeline:tasks", False),
            (_("Deals"), "pipeline:deals", False),
        ],
    ),
    (None, [(_("Reporting"), "reporting:index", False)]),
    (
        _("Settings"),
        [
            (_("Members"), "accounts:members", False),
            (_("API keys"), "accounts:api_keys", True),
            (_("Webhooks"), "accounts:webhooks", True),
            (_("Audit log"), "accounts:audit_log", True),
            (_("Tenant settings"), "accounts:tenant_settings", True),
        ],
    ),
]


def navigation(request: HttpRequest) -> list[tuple[str | None, list[NavItem]]]:
    tenant: Tenant = request.tenant
    admin = is_admin(getattr(request, "tenant_access", None))
    match = getattr(request, "resolver_match", None)
    current = match.view_name if match else ""
    sections = []
    for title, entries in NAV:
        items = []
        for label, url_name, admin_only in entries:
            if admin_only and not admin:
                continue
            try:
                url = reverse(url_name, kwargs={"tenant": tenant.slug})
            except NoReverseMatch:
                url = None
            items.append(NavItem(label=str(label), url=url, active=current == url_name))
        if items:
            sections.append((title, items))
    return sections


@dataclass(frozen=True, slots=True)
class SwitcherEntry:
    tenant: Tenant
    role_label: str
    url: str
    current: bool


def tenant_switcher(user: User, current: Tenant | None) -> list[tuple[str | None, list]]:
    """The user's tenants for the switcher: direct ones first, then one group per agency
    through which the user reaches clients."""
    direct: list[SwitcherEntry] = []
    by_agency: dict[int, tuple[Tenant, list[SwitcherEntry]]] = {}
    for access in selectors.tenant_accesses(user):
        entry = SwitcherEntry(
            tenant=access.tenant,
            role_label=role_label(access.role),
            url=reverse("accounts:dashboard", kwargs={"tenant": access.tenant.slug}),
            current=current is not None and access.tenant.id == current.id,
        )
        if access.via_agency is None:
            direct.append(entry)
        else:
            agency = access.via_agency
            by_agency.setdefault(agency.id, (agency, []))[1].append(entry)
    groups: list[tuple[str | None, list]] = []
    if direct:
        groups.append((None, direct))
    for agency, entries in sorted(by_agency.values(), key=lambda item: item[0].name):
        groups.append((gettext("Through %(agency)s") % {"agency": agency.name}, entries))
    return groups


# --- Keyset pagination -----------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class KeysetPage:
    items: list
    next_cursor: str | None


def _encode_cursor(obj: Model) -> str:
    micros = (obj.created_at - EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{obj.pk}"


def keyset_page(queryset: QuerySet, cursor: str | None, size: int = 50) -> KeysetPage:
    """One page of a queryset ordered newest first by (created_at, id), after `cursor`.

    Keyset, not OFFSET: page 1,000 of an audit log costs what page 1 costs.
    """
    if cursor:
        try:
            micros, pk = (int(part) for part in cursor.split("-", 1))
        except ValueError:
            micros = pk = None
        if micros is not None:
            created_at = EPOCH + timedelta(microseconds=micros)
            queryset = queryset.filter(
                Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk)
            )
    items = list(queryset.order_by("-created_at", "-pk")[: size + 1])
    next_cursor = _encode_cursor(items[size - 1]) if len(items) > size else None
    return KeysetPage(items=items[:size], next_cursor=next_cursor)
