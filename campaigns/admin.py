"""Campaigns and their members in the platform admin (every tenant's rows: the admin
site runs each view in the named escape, see accounts.admin_site).

Writes go through campaigns.services inside the scope of the row's tenant, so the
admin keeps the same rules (validation, status precedence, audited deletes and cost
changes) and row-level security checks the write as for the tenant's own staff.
The platform origin has no tenant role, so the role rule does not limit it.
"""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.admin.base import (
    CREATED_FILTER,
    TENANT_SEARCH,
    ServiceErrorsAsMessages,
    adopt,
    origin_of,
)
from accounts.tenancy import tenant_scope
from campaigns import services
from campaigns.models import Campaign, CampaignMembership
from campaigns.nurture import admin as nurture_admin  # noqa: F401  (registers nurturing's)

# The service's field names, minus the tenant (fixed once created).
CAMPAIGN_FORM_FIELDS = (
    "name",
    "channel",
    "status",
    "description",
    ("starts_on", "ends_on"),
    ("currency", "budget", "actual_cost"),
    "target_leads",
    ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"),
    "owner",
)


def _service_fields(form, names) -> dict:
    """The form's changed values, keyed as campaigns.services takes them."""
    fields = {}
    for name in names:
        value = form.cleaned_data[name]
        if name == "owner":
            fields["owner_id"] = value.pk if value is not None else None
        else:
            fields[name] = value
    return fields


@admin.register(Campaign)
class CampaignAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = (
        "name",
        "tenant",
        "channel",
        "status",
        "starts_on",
        "ends_on",
        "budget",
        "actual_cost",
        "currency",
        "created_at",
    )
    list_select_related = ("tenant", "owner")
    list_filter = ("channel", "status", "currency", "tenant__kind", CREATED_FILTER)
    search_fields = ("name", "utm_campaign", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    autocomplete_fields = ("tenant", "owner")
    readonly_fields = ("created_at", "updated_at")

    def get_fieldsets(self, request: HttpRequest, obj: Campaign | None = None):
        head = ("tenant",) if obj is None else ("tenant", "created_at", "updated_at")
        return [(None, {"fields": (*head, *CAMPAIGN_FORM_FIELDS)})]

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None):
        return self.readonly_fields if obj is None else (*self.readonly_fields, "tenant")

    def save_model(self, request: HttpRequest, obj: Campaign, form, change: bool) -> None:
        origin = origin_of(request)
        with tenant_scope(obj.tenant_id):
            if change:
                fields = _service_fields(form, form.changed_data)
                saved = services.campaign_update(campaign=obj, origin=origin, **fields)
            else:
                names = [name for name in form.cleaned_data if name != "tenant"]
                fields = _service_fields(form, names)
                saved = services.campaign_create(tenant_id=obj.tenant_id, origin=origin, **fields)
        adopt(obj, saved)

    def delete_model(self, request: HttpRequest, obj: Campaign) -> None:
        services.campaign_delete(campaign=obj, origin=origin_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        with transaction.atomic():  # each deletion audited, all or nothing
            for campaign in queryset:
                self.delete_model(request, campaign)


@admin.register(CampaignMembership)
class CampaignMembershipAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = ("lead", "campaign", "tenant", "status", "created_at", "updated_at")
    list_select_related = ("lead", "campaign", "tenant")
    list_filter = ("status", "campaign__channel", "tenant__kind", CREATED_FILTER)
    search_fields = ("campaign__name", "lead__email", "lead__family_name", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    # Leads and campaigns are many: pick them by id, never in a <select> of all rows.
    raw_id_fields = ("campaign", "lead")
    readonly_fields = ("created_at", "updated_at")
    # Members are the largest table here: skip the unfiltered COUNT(*) on every page.
    show_full_result_count = False

    def get_fields(self, request: HttpRequest, obj: CampaignMembership | None = None):
        if obj is None:
            return ("campaign", "lead", "status")
        return ("tenant", "campaign", "lead", "status", "created_at", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: CampaignMembership | None = None):
        if obj is None:
            return ()
        return ("tenant", "campaign", "lead", "created_at", "updated_at")

    def save_model(self, request: HttpRequest, obj: CampaignMembership, form, change) -> None:
        origin = origin_of(request)
        if change:
            if "status" in form.changed_data:
                with tenant_scope(obj.tenant_id):
                    stored = CampaignMembership.objects.get(pk=obj.pk)
                    services.membership_set_status(
                        membership=stored, status=obj.status, origin=origin
                    )
            return
        campaign = obj.campaign
        if obj.lead.tenant_id != campaign.tenant_id:
            raise ValidationError(_("The lead and the campaign belong to different tenants."))
        added = services.membership_add(
            campaign=campaign, lead=obj.lead_id, status=obj.status, origin=origin
        )
        if added.result == services.UNCHANGED:
            self.message_user(
                request,
                _("The lead was already a member, at this status or further: kept %(status)s.")
                % {"status": added.membership.get_status_display()},
                messages.WARNING,
            )
        adopt(obj, added.membership)

    def delete_model(self, request: HttpRequest, obj: CampaignMembership) -> None:
        services.membership_remove(membership=obj, origin=origin_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CampaignMembership]):
        with transaction.atomic():
            for membership in queryset:
                self.delete_model(request, membership)
