"""Pipeline API routes. See config/api_urls.py for how they are mounted."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from pipeline.api import task_views, views

router = SimpleRouter(use_regex_path=False)
router.register("handoffs", views.HandoffViewSet, basename="handoff")
router.register("teams", views.TeamViewSet, basename="team")
router.register("routing-rules", views.RoutingRuleViewSet, basename="routing-rule")
router.register("tasks", task_views.TaskViewSet, basename="task")

tenant_urlpatterns: list = [
    path("handoff-settings/", views.HandoffSettingsView.as_view(), name="handoff-settings"),
    *router.urls,
]
