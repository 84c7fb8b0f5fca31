"""Public nurture URLs (mounted at the site root by config/urls.py, no login): the
links of every mail, and the mail provider's bounce/complaint webhooks (basic-auth
secret, see campaigns.nurture.provider_webhooks)."""

from django.urls import include, path

from campaigns.nurture import provider_webhooks, views

urlpatterns = [
    path("n/u/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("n/o/<str:token>.gif", views.opened, name="open"),
    path("n/c/<str:token>/", views.clicked, name="click"),
    path("n/mail-events/", include(provider_webhooks.urlpatterns)),
]
