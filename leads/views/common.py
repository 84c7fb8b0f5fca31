"""What the leads pages share: who may write, choices built from the tenant's data,
and keyset pages of the leads list."""

from dataclasses import dataclass

from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from rest_framework import exceptions

from accounts import selectors as account_selectors
from accounts.api.base import WRITER_ROLES
from accounts.models import Role, Tenant
from leads.api.pagination import LeadPagination
from leads.models import CaptureForm, Lead

#: Marketing and sales change leads (sales log calls and notes); read-only members look.
LEAD_WRITE_ROLES = WRITER_ROLES
#: Imports and capture forms shape what marketing collects: not sales.
MARKETING_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.MARKETING})


def can_write(request: HttpRequest, roles: frozenset = LEAD_WRITE_ROLES) -> bool:
    return request.tenant_access.role in roles


def campaign_model() -> type[Model]:
    # leads may not import campaigns (DESIGN.md): the lazy foreign key knows the model,
    # and its tenant manager limits it to the current tenant.
    return CaptureForm._meta.get_field("campaign").related_model


def membership_model() -> type[Model]:
    # A campaign membership, through the lead's reverse relation (no import of campaigns).
    return Lead._meta.get_field("campaign_memberships").related_model


def staff_label(member: account_selectors.StaffMember) -> str:
    name = member.user.get_full_name()
    if member.via_agency is None:
        return name
    return _("%(name)s (%(agency)s)") % {"name": name, "agency": member.via_agency.name}


def owner_choices(tenant: Tenant) -> list[tuple[str, str]]:
    """Everyone who may own the tenant's leads and campaigns: its members, then the
    agency staff who serve it, labelled with their agency ("山田 太郎 (Agency)")."""
    return [
        (str(member.user.id), staff_label(member))
        for member in account_selectors.tenant_staff(tenant)
    ]


def owner_choices_keeping(choices: list[tuple[str, str]], owned: Model) -> list[tuple[str, str]]:
    """The choices plus the current owner of `owned` (a lead, a campaign) when they no
    longer work in the tenant, so that saving the form keeps them (the services check
    only a new owner) instead of silently clearing the owner."""
    if owned.owner_id is None or any(value == str(owned.owner_id) for value, _label in choices):
        return choices
    label = _("%(name)s (no longer has access)") % {"name": owned.owner.get_full_name()}
    return [*choices, (str(owned.owner_id), label)]


def campaign_choices() -> list[tuple[str, str]]:
    campaigns = campaign_model().objects.order_by("-created_at", "-id").values_list("id", "name")
    return [(str(pk), name) for pk, name in campaigns[:500]]


def tenant_url(name: str, request: HttpRequest, **kwargs) -> str | None:
    """The URL of another app's page, or None when that app has no such page."""
    try:
        return reverse(name, kwargs={"tenant": request.tenant.slug, **kwargs})
    except NoReverseMatch:
        return None


# --- Keyset pages --------------------------------------------------------------------------


class UIPager:
    """Mixed into the API's keyset paginations (composite sort keys, both directions):
    answers cursors instead of absolute links, since the UI builds its own query
    strings."""

    page_size = 50

    def next_cursor(self) -> str | None:
        if not self.has_next or not self.rows:
            return None
        return self._encode(self.rows[-1], self.fields, backwards=False)

    def previous_cursor(self) -> str | None:
        if not self.has_previous or not self.rows:
            return None
        return self._encode(self.rows[0], self.fields, backwards=True)


class _LeadPager(UIPager, LeadPagination):
    pass


@dataclass(frozen=True, slots=True)
class Page:
    rows: list
    sort: str
    next_cursor: str | None
    previous_cursor: str | None


class _Params:
    """What the pager reads of a request: its query parameters."""

    def __init__(self, query_params) -> None:
        self.query_params = query_params


def keyset_page(pager: UIPager, queryset: QuerySet, request: HttpRequest) -> Page:
    """One page of the queryset in the requested sort; a cursor or sort we did not make
    (an edited URL) falls back to the first page in the default order."""
    try:
        rows = pager.paginate_queryset(queryset, _Params(request.GET))
    except exceptions.ValidationError:
        query = request.GET.copy()
        query.pop("cursor", None)
        if query.get("sort") not in pager.sorts:
            query.pop("sort", None)
        rows = pager.paginate_queryset(queryset, _Params(query))
    return Page(
        rows=rows,
        sort=pager.sort_name,
        next_cursor=pager.next_cursor(),
        previous_cursor=pager.previous_cursor(),
    )


def lead_page(queryset: QuerySet[Lead], request: HttpRequest) -> Page:
    """One page of the filtered leads (see keyset_page)."""
    return keyset_page(_LeadPager(), queryset, request)
