"""Nurture API routes (mounted by campaigns/api/urls.py under /api/v1/t/<tenant>/ and,
for tenant API keys, /api/v1/)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from campaigns.nurture.api import segment_views, views

# Path-style routes (`<str:pk>`): a non-numeric id still reaches the view and gets a JSON 404.
router = SimpleRouter(use_regex_path=False)
router.register("sender-identities", views.SenderIdentityViewSet, basename="sender-identity")
router.register("email-templates", views.EmailTemplateViewSet, basename="email-template")
router.register("sequences", views.SequenceViewSet, basename="sequence")
router.register("enrolments", views.EnrolmentViewSet, basename="enrolment")
router.register("outgoing-messages", views.OutgoingMessageViewSet, basename="outgoing-message")
router.register("segments", segment_views.SegmentViewSet, basename="segment")

tenant_urlpatterns: list = [
    *router.urls,
    path("sending-settings/", views.SendingSettingsView.as_view(), name="sending-settings"),
]
