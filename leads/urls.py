"""Staff web UI routes of leads, mounted by config.urls under /t/<tenant>/ in the
"leads" namespace; every view is an accounts.web.tenant_view."""

from django.urls import path

from leads.views import capture, companies, detail, imports, lists, scoring

tenant_urlpatterns = [
    path("leads/", lists.index, name="index"),
    path("leads/export.csv", lists.export_csv, name="export"),
    path("leads/bulk/tag/", lists.bulk_tag, name="bulk_tag"),
    path("leads/bulk/owner/", lists.bulk_owner, name="bulk_owner"),
    path("leads/<int:pk>/", detail.detail, name="detail"),
    path("leads/<int:pk>/timeline/", detail.timeline, name="timeline"),
    path("leads/<int:pk>/edit/", detail.edit, name="edit"),
    path("leads/<int:pk>/stage/", detail.change_stage, name="stage"),
    path("leads/<int:pk>/consent/", detail.record_consent, name="consent"),
    path("leads/<int:pk>/activities/", detail.add_activity, name="activity_add"),
    path("leads/<int:pk>/merge/", detail.merge, name="merge"),
    path("companies/", companies.index, name="companies"),
    path("companies/<int:pk>/", detail.company, name="company"),
    path("leads/imports/", imports.index, name="imports"),
    path("leads/imports/<int:pk>/", imports.detail, name="import_detail"),
    path("leads/imports/<int:pk>/mapping/", imports.mapping, name="import_mapping"),
    path("leads/imports/<int:pk>/preview/", imports.preview, name="import_preview"),
    path("leads/imports/<int:pk>/options/", imports.options, name="import_options"),
    path("leads/imports/<int:pk>/progress/", imports.progress, name="import_progress"),
    path("leads/imports/<int:pk>/run/", imports.rerun, name="import_rerun"),
    path("leads/imports/<int:pk>/errors.csv", imports.errors_csv, name="import_errors"),
    path("scoring/", scoring.index, name="scoring"),
    path("scoring/<int:pk>/", scoring.edit, name="scoring_edit"),
    path("scoring/<int:pk>/preview/", scoring.preview, name="scoring_preview"),
    path("leads/forms/", capture.index, name="forms"),
    path("leads/forms/<int:pk>/", capture.edit, name="form_edit"),
    path("leads/forms/<int:pk>/preview/", capture.preview, name="form_preview"),
]
