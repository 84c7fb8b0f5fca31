"""Accounts API routes. See config/api_urls.py for how they are mounted."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from accounts.api import views, webhooks

# Path-style routes (`<str:pk>`): a non-numeric id still reaches the view and gets a JSON 404.
router = SimpleRouter(use_regex_path=False)
router.register("members", views.MembershipViewSet, basename="member")
router.register("invitations", views.InvitationViewSet, basename="invitation")
router.register("agency-assignments", views.AgencyAssignmentViewSet, basename="agency-assignment")
router.register("api-keys", views.APIKeyViewSet, basename="api-key")
router.register("audit-log", views.AuditLogViewSet, basename="audit-log")
router.register("webhooks", webhooks.WebhookEndpointViewSet, basename="webhook")
router.register("webhook-deliveries", webhooks.WebhookDeliveryViewSet, basename="webhook-delivery")

# About the caller, not one tenant.
urlpatterns: list = [
    path("me/", views.MeView.as_view(), name="me"),
    path(
        "tenants/",
        views.TenantViewSet.as_view({"get": "list", "post": "create"}),
        name="tenants",
    ),
]

tenant_urlpatterns: list = [
    path("settings/", views.TenantSettingsView.as_view(), name="settings"),
    *router.urls,
]
