"""The leads list: filter, search, sort, keyset pages, bulk actions, CSV export.

Filtering is the API's filter set (leads.api.filters.LeadFilter) with UI widgets, so
the list and the API answer the same question the same way. The table is a partial
that htmx swaps when the filter changes; every page also works without JavaScript.

Adding leads to a campaign is a bulk action of the campaigns app (campaigns.views):
leads may not import campaigns, so this list only links to it when it exists.
"""

import csv
from collections.abc import Iterator

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from accounts import events
from accounts.models import Tenant
from accounts.services import Origin
from accounts.tenancy import tenant_scope
from accounts.web import error_messages, tenant_view
from leads import selectors, services
from leads.forms import SORT_CHOICES, BulkOwnerForm, BulkScope, BulkTagForm, LeadListFilter
from leads.models import Channel, ConsentStatus, Lead, LifecycleStage
from leads.services.bulk import leads_owner_assign
from leads.views.common import (
    LEAD_WRITE_ROLES,
    MARKETING_ROLES,
    campaign_choices,
    can_write,
    lead_page,
    owner_choices,
    tenant_url,
)

#: Query parameters that are not part of the filter.
NON_FILTER_PARAMS = ("cursor", "sort", "page_size")
#: Ids written per statement by a bulk action on "everything matching".
BULK_CHUNK = 10_000


def lead_filter(
    data: QueryDict, tenant: Tenant, owners: list[tuple[str, str]] | None = None
) -> LeadListFilter:
    return LeadListFilter(
        data,
        queryset=selectors.lead_list(),
        owner_choices=owner_choices(tenant) if owners is None else owners,
        campaign_choices=campaign_choices(),
    )


def filter_query(data: QueryDict) -> str:
    """The filter part of a query string (no cursor or sort): what "all matching" means."""
    query = data.copy()
    for name in NON_FILTER_PARAMS:
        query.pop(name, None)
    return query.urlencode()


def _list_context(request: HttpRequest) -> dict:
    owners = owner_choices(request.tenant)
    filterset = lead_filter(request.GET, request.tenant, owners)
    page = lead_page(filterset.qs.select_related("owner"), request)
    query = filter_query(request.GET)
    return {
        "filter": filterset,
        "page": page,
        "rows": page.rows,
        "sort_choices": SORT_CHOICES,
        "filter_query": query,
        "is_filtered": bool(query),
        "active_filters": filterset.active_count(),
        "is_first_page": not request.GET.get("cursor"),
        "can_write": can_write(request),
        "can_import": can_write(request, MARKETING_ROLES),
        "owner_form": BulkOwnerForm(owner_choices=owners, auto_id="bulk_%s"),
        "tag_form": BulkTagForm(auto_id="bulk_%s"),
        "campaign_choices": campaign_choices(),
        "add_to_campaign_url": tenant_url("campaigns:bulk_add", request),
        # Bulk actions of higher apps (nurture's "enrol in sequence"), rendered by them.
        "extra_bulk_actions": events.hook("leads.list_bulk_actions", request=request)
        if can_write(request)
        else [],
        "tag_names": list(
            selectors.tag_list().order_by("name").values_list("name", flat=True)[:300]
        ),
        "company": _filtered_company(filterset),
    }


def _filtered_company(filterset: LeadListFilter):
    if not filterset.form.is_valid() or not filterset.form.cleaned_data.get("company"):
        return None
    return selectors.company_list().filter(pk=filterset.form.cleaned_data["company"]).first()


@tenant_view
def index(request: HttpRequest) -> HttpResponse:
    context = _list_context(request)
    # htmx swaps only the results in; a history restore (back button) needs the page.
    partial = request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request
    response = TemplateResponse(
        request, "leads/_results.html" if partial else "leads/index.html", context
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- Bulk actions ----------------------------------------------------------------------------


def bulk_lead_ids(request: HttpRequest) -> list[int]:
    """The leads a bulk action applies to: the ticked rows, or every lead matching the
    filter the list showed (posted back as `filter`). Only the tenant's live leads."""
    if request.POST.get("scope") == BulkScope.ALL:
        queryset = lead_filter(QueryDict(request.POST.get("filter", "")), request.tenant).qs
    else:
        ids = [int(value) for value in request.POST.getlist("ids") if value.isdigit()]
        queryset = selectors.lead_list().filter(pk__in=ids)
    return list(queryset.prefetch_related(None).order_by("pk").values_list("pk", flat=True))


def chunks(ids: list[int], size: int = BULK_CHUNK) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def back_to_list(request: HttpRequest) -> HttpResponse:
    query = request.POST.get("return_query", "")
    url = tenant_url("leads:index", request)
    return redirect(f"{url}?{query}" if query else url)


@tenant_view(roles=LEAD_WRITE_ROLES)
@require_POST
def bulk_tag(request: HttpRequest) -> HttpResponse:
    form = BulkTagForm(request.POST)
    ids = bulk_lead_ids(request)
    if not ids:
        messages.error(request, _("Select at least one lead."))
    elif not form.is_valid():
        messages.error(request, _("Enter the tags to add."))
    else:
        try:
            with transaction.atomic():
                for chunk in chunks(ids):
                    services.lead_tags_add(
                        tenant_id=request.tenant.id, lead_ids=chunk, names=form.cleaned_data["tags"]
                    )
        except ValidationError as exc:
            for message in error_messages(exc):
                messages.error(request, message)
        else:
            messages.success(
                request,
                ngettext("Tagged %(n)d lead.", "Tagged %(n)d leads.", len(ids)) % {"n": len(ids)},
            )
    return back_to_list(request)


@tenant_view(roles=LEAD_WRITE_ROLES)
@require_POST
def bulk_owner(request: HttpRequest) -> HttpResponse:
    form = BulkOwnerForm(request.POST, owner_choices=owner_choices(request.tenant))
    ids = bulk_lead_ids(request)
    if not ids:
        messages.error(request, _("Select at least one lead."))
    elif not form.is_valid():
        for message in form.errors["owner"]:
            messages.error(request, message)
    else:
        try:
            with transaction.atomic():
                changed = sum(
                    leads_owner_assign(
                        tenant_id=request.tenant.id,
                        lead_ids=chunk,
                        owner_id=form.owner_id(),
                        origin=Origin.from_request(request),
                    )
                    for chunk in chunks(ids)
                )
        except ValidationError as exc:
            for message in error_messages(exc):
                messages.error(request, message)
        else:
            messages.success(
                request,
                ngettext(
                    "Changed the owner of %(n)d lead.", "Changed the owner of %(n)d leads.", changed
                )
                % {"n": changed},
            )
    return back_to_list(request)


# --- CSV export ----------------------------------------------------------------------------------


class _Echo:
    def write(self, value: str) -> str:
        return value


def spreadsheet_safe(value: str) -> str:
    # Cells people typed (names, company) must not run as formulas in a spreadsheet.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


EXPORT_CHUNK = 2000


def _export_rows(
    tenant_id: int, queryset: QuerySet[Lead], header: list[str], labels: dict, zone
) -> Iterator[str]:
    writer = csv.writer(_Echo())
    # A BOM, so Excel (Japanese editions included) opens the file as UTF-8.
    yield "\ufeff" + writer.writerow(header)
    # The response streams after the view (and its tenant scope) returned: open our own.
    with tenant_scope(tenant_id):
        rows = queryset.select_related("owner").order_by("-created_at", "-id")
        for lead in rows.iterator(chunk_size=EXPORT_CHUNK):
            values = [
                str(lead.pk),
                lead.family_name,
                lead.given_name,
                lead.family_name_kana,
                lead.given_name_kana,
                lead.email,
                lead.phone,
                lead.company.name if lead.company else "",
                lead.department,
                lead.job_title,
                labels["stage"].get(lead.lifecycle_stage, lead.lifecycle_stage),
                lead.owner.email if lead.owner else "",
                labels["source"].get(lead.source_channel, lead.source_channel),
                labels["consent"].get(lead.email_consent, lead.email_consent),
                labels["consent"].get(lead.sales_contact_consent, lead.sales_contact_consent),
                ", ".join(tag.name for tag in lead.tags.all()),
                timezone.localtime(lead.created_at, zone).strftime("%Y-%m-%d %H:%M"),
            ]
            yield writer.writerow([spreadsheet_safe(value) for value in values])


@tenant_view
def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    queryset = lead_filter(request.GET, request.tenant).qs
    header = [
        _("ID"),
        _("Family name"),
        _("Given name"),
        _("Family name (kana)"),
        _("Given name (kana)"),
        _("Email"),
        _("Phone"),
        _("Company"),
        _("Department"),
        _("Job title"),
        _("Stage"),
        _("Owner"),
        _("Source"),
        _("Email consent"),
        _("Sales contact consent"),
        _("Tags"),
        _("Created"),
    ]
    # Labels in the user's language now: the body is written after the view returns.
    labels = {
        "stage": {value: str(label) for value, label in LifecycleStage.choices},
        "source": {value: str(label) for value, label in Channel.choices},
        "consent": {value: str(label) for value, label in ConsentStatus.choices},
    }
    response = StreamingHttpResponse(
        _export_rows(request.tenant.id, queryset, header, labels, timezone.get_current_timezone()),
        content_type="text/csv; charset=utf-8",
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="leads-{stamp}.csv"'
    return response
