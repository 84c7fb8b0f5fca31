"""Public lead-capture routes, mounted at the site root in the "capture" namespace.
Deliberately public: each is identified by an unguessable form key or a signed token
(tests/test_isolation.py lists them in PUBLIC_ROUTES)."""

from django.urls import path

from leads.capture import public_views

app_name = "capture"

urlpatterns = [
    path("f/confirm/<str:token>/", public_views.confirm, name="confirm"),
    path("f/<str:key>/", public_views.hosted_form, name="form"),
    path("f/<str:key>/thanks/", public_views.thanks, name="thanks"),
    path("api/public/forms/<str:key>/submit/", public_views.submit, name="submit"),
    path("api/public/track/", public_views.track, name="track"),
]
