"""Reads of webhooks that the API, the UI and the admin share (in the current tenant)."""

from django.db.models import QuerySet

from accounts.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


def webhook_endpoint_list() -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.select_related("created_by").order_by("-created_at", "-id")


def webhook_delivery_list(endpoint_id: int | None = None) -> QuerySet[WebhookDelivery]:
    """Deliveries without their body (a list never needs it); newest first."""
    deliveries = WebhookDelivery.objects.defer("body")
    if endpoint_id is not None:
        deliveries = deliveries.filter(endpoint_id=endpoint_id)
    return deliveries.order_by("-created_at", "-id")


def webhook_attempt_list(delivery_id: int) -> QuerySet[WebhookAttempt]:
    return WebhookAttempt.objects.filter(delivery_id=delivery_id).order_by("number", "id")
