"""Staff web UI of campaigns: the list with its figures, one campaign (members, cost,
leads generated), create/edit, member status, and the leads list's "add to campaign"
bulk action (here, not in leads: leads may not import campaigns; this view uses the
leads list's own filter to know which leads "all matching" means).

Thin: forms validate shapes, campaigns.services write and check roles, selectors read.
"""

from decimal import Decimal

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from accounts import events
from accounts.services import Origin
from accounts.web import error_messages, keyset_page, tenant_view
from campaigns import selectors, services
from campaigns.forms import CampaignForm, CostForm, MemberStatusForm
from campaigns.models import Campaign, CampaignMembership
from campaigns.money import minor_units
from leads.models import LifecycleStage
from leads.views.common import owner_choices, owner_choices_keeping
from leads.views.lists import back_to_list, bulk_lead_ids, chunks

WRITE_ROLES = services.CAMPAIGN_WRITE_ROLES
PAGE_SIZE = 50


def format_money(amount: Decimal | None, currency: str) -> str:
    """¥1,200,000 / 1,234.50 USD: grouped, with the currency's decimals."""
    if amount is None:
        return "—"
    text = f"{amount:,.{minor_units(currency)}f}"
    return f"¥{text}" if currency == "JPY" else f"{text} {currency}"


def _figures_row(campaign: Campaign) -> dict:
    figures = selectors.campaign_figures(campaign)
    progress = figures.target_progress
    currency = campaign.currency
    return {
        "campaign": campaign,
        "figures": figures,
        "budget": format_money(campaign.budget, currency),
        "cost": format_money(campaign.actual_cost, currency),
        "cost_per_lead": format_money(figures.cost_per_lead, currency),
        "budget_remaining": format_money(figures.budget_remaining, currency),
        "progress_percent": min(int(progress * 100), 100) if progress is not None else None,
        "progress_label": f"{progress * 100:.0f}%" if progress is not None else "",
    }


@tenant_view
def index(request: HttpRequest) -> HttpResponse:
    queryset = selectors.campaign_list()
    status = request.GET.get("status", "")
    if status in Campaign.Status.values:
        queryset = queryset.filter(status=status)
    page = keyset_page(queryset, request.GET.get("cursor"), size=PAGE_SIZE)
    return TemplateResponse(
        request,
        "campaigns/index.html",
        {
            "rows": [_figures_row(campaign) for campaign in page.items],
            "page": page,
            "status": status,
            "statuses": Campaign.Status.choices,
            "is_first_page": not request.GET.get("cursor"),
            "can_write": request.tenant_access.role in WRITE_ROLES,
        },
    )


def _campaign_or_404(pk: int) -> Campaign:
    campaign = selectors.campaign_get(campaign_id=pk)
    if campaign is None:
        raise Http404
    return campaign


def _save(request: HttpRequest, campaign: Campaign | None) -> HttpResponse:
    choices = owner_choices(request.tenant)
    if campaign is not None:
        choices = owner_choices_keeping(choices, campaign)
    if request.method == "POST":
        form = CampaignForm(request.POST, owner_choices=choices)
        if form.is_valid():
            origin = Origin.from_request(request)
            try:
                with transaction.atomic():
                    if campaign is None:
                        fields = form.service_fields()
                        campaign = services.campaign_create(
                            tenant_id=request.tenant.id,
                            origin=origin,
                            name=fields.pop("name"),
                            channel=fields.pop("channel"),
                            **fields,
                        )
                    else:
                        services.campaign_update(
                            campaign=campaign, origin=origin, **form.service_fields()
                        )
            except ValidationError as exc:
                form.add_service_errors(exc.message_dict)
            else:
                messages.success(request, _("The campaign was saved."))
                return redirect("campaigns:detail", tenant=request.tenant.slug, pk=campaign.pk)
        status = 400
    else:
        initial = CampaignForm.initial_for(campaign) if campaign else None
        form = CampaignForm(initial=initial, owner_choices=choices)
        status = 200
    return TemplateResponse(
        request, "campaigns/form.html", {"form": form, "campaign": campaign}, status=status
    )


@tenant_view(roles=WRITE_ROLES)
def create(request: HttpRequest) -> HttpResponse:
    return _save(request, None)


@tenant_view(roles=WRITE_ROLES, isolation_model=Campaign)
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _save(request, _campaign_or_404(pk))


def _member_row(request: HttpRequest, membership: CampaignMembership, **extra) -> dict:
    return {
        "membership": membership,
        "form": MemberStatusForm(initial={"status": membership.status}),
        "can_write": request.tenant_access.role in WRITE_ROLES,
        **extra,
    }


@tenant_view(isolation_model=Campaign)
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign_or_404(pk)
    members = selectors.campaign_membership_list(campaign_id=campaign.pk)
    member_status = request.GET.get("member_status", "")
    if member_status in CampaignMembership.Status.values:
        members = members.filter(status=member_status)
    page = keyset_page(members, request.GET.get("cursor"), size=PAGE_SIZE)
    by_stage = selectors.campaign_leads_by_stage(campaign_id=campaign.pk)
    return TemplateResponse(
        request,
        "campaigns/detail.html",
        {
            **_figures_row(campaign),
            "members": [_member_row(request, m) for m in page.items],
            "page": page,
            "member_status": member_status,
            "member_statuses": CampaignMembership.Status.choices,
            "is_first_page": not request.GET.get("cursor"),
            "by_stage": [
                (label, by_stage[value])
                for value, label in LifecycleStage.choices
                if value in by_stage
            ],
            "cost_form": CostForm(),
            "can_write": request.tenant_access.role in WRITE_ROLES,
            # Cards of higher apps (pipeline's sales feedback), which campaigns may not import.
            "extra_blocks": events.hook(
                "campaign.detail_blocks", campaign=campaign, request=request
            ),
        },
    )


@tenant_view(roles=WRITE_ROLES, isolation_model=Campaign)
@require_POST
def add_cost(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign_or_404(pk)
    form = CostForm(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                services.campaign_cost_update(
                    campaign=campaign,
                    origin=Origin.from_request(request),
                    add=form.cleaned_data["add"],
                )
        except ValidationError as exc:
            for message in error_messages(exc):
                messages.error(request, message)
        else:
            messages.success(request, _("The spend was added to the actual cost."))
    else:
        messages.error(request, _("Enter an amount."))
    return redirect("campaigns:detail", tenant=request.tenant.slug, pk=campaign.pk)


@tenant_view(roles=WRITE_ROLES, isolation_model=CampaignMembership)
@require_POST
def member_status(request: HttpRequest, pk: int) -> HttpResponse:
    membership = get_object_or_404(
        CampaignMembership.objects.select_related("lead", "lead__company"), pk=pk
    )
    form = MemberStatusForm(request.POST)
    errors: list[str] = []
    if form.is_valid():
        try:
            with transaction.atomic():
                services.membership_set_status(
                    membership=membership,
                    status=form.cleaned_data["status"],
                    origin=Origin.from_request(request),
                )
        except (ValidationError, PermissionDenied) as exc:
            errors = error_messages(exc)
    else:
        errors = [_("Choose a valid status.")]
    if request.htmx:
        row = _member_row(request, membership, errors=errors, saved=not errors)
        return TemplateResponse(request, "campaigns/_member_row.html", {"row": row})
    for message in errors:
        messages.error(request, message)
    return redirect("campaigns:detail", tenant=request.tenant.slug, pk=membership.campaign_id)


@tenant_view(roles=WRITE_ROLES, isolation_model=CampaignMembership)
@require_POST
def member_remove(request: HttpRequest, pk: int) -> HttpResponse:
    membership = get_object_or_404(CampaignMembership.objects.all(), pk=pk)
    services.membership_remove(membership=membership, origin=Origin.from_request(request))
    if request.htmx:
        return HttpResponse("")  # the row disappears
    messages.success(request, _("The lead was taken out of the campaign."))
    return redirect("campaigns:detail", tenant=request.tenant.slug, pk=membership.campaign_id)


@tenant_view(roles=WRITE_ROLES)
@require_POST
def bulk_add(request: HttpRequest) -> HttpResponse:
    """The leads list's "add to campaign": the ticked leads, or all matching its filter."""
    raw = request.POST.get("campaign", "")
    campaign = selectors.campaign_get(campaign_id=int(raw)) if raw.isdigit() else None
    ids = bulk_lead_ids(request)
    if campaign is None:
        messages.error(request, _("Choose a campaign."))
    elif not ids:
        messages.error(request, _("Select at least one lead."))
    else:
        added = 0
        try:
            with transaction.atomic():
                for chunk in chunks(ids):
                    results = services.memberships_add_bulk(
                        tenant_id=request.tenant.id,
                        campaign_id=campaign.pk,
                        lead_ids=chunk,
                        status=CampaignMembership.Status.RESPONDED,
                        origin=Origin.from_request(request),
                    )
                    added += sum(1 for result in results.values() if result == services.ADDED)
        except (ValidationError, PermissionDenied) as exc:
            for message in error_messages(exc):
                messages.error(request, message)
        else:
            messages.success(
                request,
                ngettext(
                    "%(n)d lead added to %(campaign)s.",
                    "%(n)d leads added to %(campaign)s.",
                    added,
                )
                % {"n": added, "campaign": campaign.name},
            )
    return back_to_list(request)
