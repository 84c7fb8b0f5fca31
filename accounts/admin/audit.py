"""The audit log: read-only, append-only, filtered by action family."""

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.admin.base import CREATED_FILTER, TENANT_SEARCH
from accounts.models import AuditLog


class AuditActionFilter(admin.SimpleListFilter):
    """Filters by the action's family (the part before the dot). The choices are fixed
    rather than read with SELECT DISTINCT, which would scan the whole audit log."""

    title = _("action")
    parameter_name = "action_family"
    families = (
        "tenant",
        "membership",
        "agency",
        "api_key",
        "invitation",
        "webhook",
        "user",
        "auth",
        "lead",
        "company",
        "tag",
        "custom_field",
        "suppression",
        "import",
        "capture_form",
        "campaign",
    )

    def lookups(self, request, model_admin):
        return [(family, family) for family in self.families]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action__startswith=f"{self.value()}.")
        return queryset


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "action", "tenant", "actor", "api_key", "target_repr", "ip")
    list_select_related = ("tenant", "actor", "api_key")
    list_filter = (AuditActionFilter, "tenant__kind", CREATED_FILTER)
    search_fields = ("action", "target_repr", "target_id", "actor__email", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    # The log is the largest table here: skip the unfiltered COUNT(*) on every page.
    show_full_result_count = False
    fields = (
        "created_at",
        "tenant",
        "action",
        "actor",
        "api_key",
        "target_type",
        "target_id",
        "target_repr",
        "metadata",
        "ip_address",
        "user_agent",
    )
    readonly_fields = fields

    @admin.display(description=_("IP address"), ordering="ip_address")
    def ip(self, obj: AuditLog) -> str:
        return obj.ip_address or ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditLog | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditLog | None = None) -> bool:
        return False
