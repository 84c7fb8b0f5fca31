"""Campaigns API routes (mounted by config/api_urls.py)."""

from rest_framework.routers import SimpleRouter

from campaigns.api import views
from campaigns.nurture.api.urls import tenant_urlpatterns as nurture_urlpatterns

# Path-style routes (`<str:pk>`): a non-numeric id still reaches the view and gets a JSON 404.
router = SimpleRouter(use_regex_path=False)
router.register("campaigns", views.CampaignViewSet, basename="campaign")
router.register(
    "campaigns/<str:campaign_pk>/members", views.CampaignMemberViewSet, basename="campaign-member"
)

tenant_urlpatterns: list = [*router.urls, *nurture_urlpatterns]
