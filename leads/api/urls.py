"""Leads API routes. See config/api_urls.py for how they are mounted.

The capture-forms and imports APIs give their own route lists (`form_urlpatterns`,
`import_urlpatterns`); they are included when their modules exist.
"""

from importlib import import_module

from rest_framework.routers import SimpleRouter

from leads.api import scoring, views

# Path-style routes (`<str:pk>`): a non-numeric id still reaches the view and gets a JSON 404.
router = SimpleRouter(use_regex_path=False)
router.register("leads", views.LeadViewSet, basename="lead")
router.register("companies", views.CompanyViewSet, basename="company")
router.register("activities", views.ActivityViewSet, basename="activity")
router.register("tags", views.TagViewSet, basename="tag")
router.register("custom-fields", views.CustomFieldViewSet, basename="custom-field")
router.register("suppressions", views.SuppressionViewSet, basename="suppression")
router.register("scoring-models", scoring.ScoringModelViewSet, basename="scoring-model")

tenant_urlpatterns: list = [*router.urls]

for _module, _name in (
    ("leads.api.imports", "import_urlpatterns"),
    ("leads.api.forms", "form_urlpatterns"),
):
    try:
        tenant_urlpatterns += getattr(import_module(_module), _name)
    except ModuleNotFoundError as exc:
        if exc.name != _module:
            raise
