"""Public nurture URLs (mounted at the site root by config/urls.py, no login)."""

from django.urls import path

from campaigns.nurture import views

urlpatterns = [
    path("n/u/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("n/o/<str:token>.gif", views.opened, name="open"),
    path("n/c/<str:token>/", views.clicked, name="click"),
]
