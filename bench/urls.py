"""The app's URLs plus the bare baseline views; mounted only by bench.settings."""

from django.urls import include, path

from bench import bare_leads, bare_views

urlpatterns = [
    path("bench/bare/members/", bare_views.members, name="bench-bare-members"),
    path("bench/bare/members-sql/", bare_views.members_sql, name="bench-bare-members-sql"),
    path("bench/bare/members-rls/", bare_views.members_rls, name="bench-bare-members-rls"),
    path("bench/bare/write/<int:member_id>/", bare_views.write, name="bench-bare-write"),
    path("bench/bare/activities/", bare_leads.activities_batch, name="bench-bare-activities"),
    path("bench/bare/forms/<int:form_id>/", bare_leads.form_insert, name="bench-bare-form"),
    path("", include("config.urls")),
]
