"""Staff web UI routes of campaigns, mounted by config.urls under /t/<tenant>/ in the
"campaigns" namespace; every view is an accounts.web.tenant_view."""

from django.urls import path

from campaigns import views

tenant_urlpatterns = [
    path("campaigns/", views.index, name="index"),
    path("campaigns/new/", views.create, name="create"),
    path("campaigns/add-leads/", views.bulk_add, name="bulk_add"),
    path("campaigns/<int:pk>/", views.detail, name="detail"),
    path("campaigns/<int:pk>/edit/", views.edit, name="edit"),
    path("campaigns/<int:pk>/cost/", views.add_cost, name="add_cost"),
    path("campaigns/members/<int:pk>/status/", views.member_status, name="member_status"),
    path("campaigns/members/<int:pk>/remove/", views.member_remove, name="member_remove"),
]
