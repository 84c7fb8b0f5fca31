"""Webhook endpoints and deliveries for platform administrators: read-only rows (the
signing secret never shows), plus actions that go through the services: enable or
disable endpoints, replay deliveries."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.admin.base import CREATED_FILTER, TENANT_SEARCH, origin_of
from accounts.webhooks import services as webhook_services
from accounts.webhooks.models import WebhookDelivery, WebhookEndpoint


class ReadOnly:
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("url", "tenant", "is_active", "disabled_reason", "failing_since", "created_at")
    list_select_related = ("tenant",)
    list_filter = ("is_active", "disabled_reason", CREATED_FILTER)
    search_fields = ("url", "description", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    fields = (
        "tenant",
        "url",
        "description",
        "events",
        "is_active",
        "disabled_at",
        "disabled_reason",
        "failing_since",
        "disabled_notice_sent_at",
        "created_by",
        "created_at",
        "secret_rotated_at",
    )
    readonly_fields = fields
    actions = ("enable", "disable")

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and request.user.is_staff  # actions only, no edit form

    def _set_active(self, request: HttpRequest, queryset, active: bool) -> None:
        for endpoint in queryset:
            webhook_services.webhook_endpoint_set_active(
                endpoint=endpoint, active=active, origin=origin_of(request)
            )
        self.message_user(request, _("%(count)d endpoints changed.") % {"count": len(queryset)})

    @admin.action(description=_("Enable the selected endpoints"))
    def enable(self, request: HttpRequest, queryset) -> None:
        self._set_active(request, queryset, True)

    @admin.action(description=_("Disable the selected endpoints"))
    def disable(self, request: HttpRequest, queryset) -> None:
        self._set_active(request, queryset, False)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnly, admin.ModelAdmin):
    list_display = (
        "id",
        "tenant",
        "endpoint",
        "event_name",
        "status",
        "attempts",
        "last_status_code",
        "last_duration_ms",
        "created_at",
    )
    list_select_related = ("tenant", "endpoint")
    list_filter = ("status", CREATED_FILTER)
    search_fields = ("event_name", "endpoint__url", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    fields = (
        "tenant",
        "endpoint",
        "event_id",
        "event_name",
        "status",
        "attempts",
        "next_attempt_at",
        "lease_until",
        "last_status_code",
        "last_duration_ms",
        "last_error",
        "replay_of",
        "created_at",
        "delivered_at",
        "body",
    )
    readonly_fields = fields
    actions = ("replay",)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and request.user.is_staff  # actions only, no edit form

    @admin.action(description=_("Replay the selected deliveries"))
    def replay(self, request: HttpRequest, queryset) -> None:
        replayed = 0
        for delivery in queryset.select_related("endpoint"):
            try:
                webhook_services.webhook_delivery_replay(
                    delivery=delivery, origin=origin_of(request)
                )
            except ValidationError as exc:
                for message in exc.messages:
                    self.message_user(request, message, messages.ERROR)
            else:
                replayed += 1
        self.message_user(request, _("%(count)d deliveries queued again.") % {"count": replayed})
