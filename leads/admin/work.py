"""Admin pages of capture forms and their submissions, imports and their row errors,
and scoring (models with their rules, lead and company scores).

Platform administrators look and act on a tenant's behalf here; the tenants build
forms, run imports and edit scoring in their own UI. So these pages are read-only,
with the actions support needs: switch a form off (through the service, audited), and
queue a recompute of a model's scores.
"""

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts.admin.base import CREATED_FILTER, TENANT_SEARCH, origin_of
from accounts.tenancy import tenant_scope
from leads.admin.people import ReadOnlyAdmin
from leads.capture import services as capture_services
from leads.models import (
    CaptureForm,
    CompanyScore,
    FormSubmission,
    ImportJob,
    ImportRowError,
    LeadScore,
    ScoringModel,
    ScoringRule,
)
from leads.scoring.services import rule_describe, scores_recompute_later


@admin.register(CaptureForm)
class CaptureFormAdmin(ReadOnlyAdmin):
    list_display = ("name", "tenant", "campaign", "is_active", "double_opt_in", "created_at")
    list_select_related = ("tenant", "campaign")
    list_filter = ("is_active", "double_opt_in", CREATED_FILTER)
    search_fields = ("name", "^key", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    actions = ("deactivate",)

    @admin.action(description=_("Switch the selected forms off (their public page answers 404)"))
    def deactivate(self, request: HttpRequest, queryset: QuerySet[CaptureForm]) -> None:
        origin = origin_of(request)
        with transaction.atomic():
            forms = [form for form in queryset if form.is_active]
            for form in forms:
                with tenant_scope(form.tenant_id):
                    capture_services.capture_form_update(form=form, origin=origin, is_active=False)
        self.message_user(
            request,
            ngettext("%(n)d form switched off.", "%(n)d forms switched off.", len(forms))
            % {"n": len(forms)},
            messages.SUCCESS,
        )

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # The action needs the change permission; the page itself stays read-only.
        return obj is None and request.user.is_superuser


@admin.register(FormSubmission)
class FormSubmissionAdmin(ReadOnlyAdmin):
    list_display = ("submitted_at", "form", "lead", "tenant", "confirmed_at", "ip_address")
    list_select_related = ("form", "lead", "tenant")
    list_filter = (("submitted_at", admin.DateFieldListFilter),)
    search_fields = ("^lead__email", "form__name", *TENANT_SEARCH)
    ordering = ("-submitted_at", "-id")
    raw_id_fields = ("form", "lead")


class ImportRowErrorInline(admin.TabularInline):
    model = ImportRowError
    fields = ("row_number", "column", "value", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[ImportRowError]:
        return super().get_queryset(request).order_by("row_number", "id")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ImportJob)
class ImportJobAdmin(ReadOnlyAdmin):
    list_display = (
        "original_name", "tenant", "status", "total_rows", "created_count", "updated_count",
        "error_count", "created_at",
    )  # fmt: skip
    list_select_related = ("tenant",)
    list_filter = ("status", "file_format", "policy", CREATED_FILTER)
    search_fields = ("original_name", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    raw_id_fields = ("campaign", "created_by")
    inlines = (ImportRowErrorInline,)


@admin.register(ImportRowError)
class ImportRowErrorAdmin(ReadOnlyAdmin):
    list_display = ("job", "row_number", "column", "reason", "tenant")
    list_select_related = ("job", "tenant")
    search_fields = ("reason", "column", *TENANT_SEARCH)
    ordering = ("job", "row_number", "id")
    raw_id_fields = ("job",)


class ScoringRuleInline(admin.TabularInline):
    model = ScoringRule
    fields = ("position", "kind", "description", "points", "cap", "window_days")
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0

    @admin.display(description=_("rule"))
    def description(self, rule: ScoringRule) -> str:
        return rule_describe(rule)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ScoringModel)
class ScoringModelAdmin(ReadOnlyAdmin):
    list_display = (
        "name", "tenant", "is_primary", "mql_threshold", "half_life_days", "version",
        "scored_version", "scored_at",
    )  # fmt: skip
    list_select_related = ("tenant",)
    list_filter = ("is_primary",)
    search_fields = ("name", *TENANT_SEARCH)
    ordering = ("tenant", "-is_primary", "name")
    inlines = (ScoringRuleInline,)
    actions = ("recompute",)

    @admin.action(description=_("Recompute every lead's score under the selected models"))
    def recompute(self, request: HttpRequest, queryset: QuerySet[ScoringModel]) -> None:
        models = list(queryset)
        for model in models:
            scores_recompute_later(tenant_id=model.tenant_id, model_id=model.id)
        self.message_user(
            request,
            ngettext("%(n)d recompute queued.", "%(n)d recomputes queued.", len(models))
            % {"n": len(models)},
            messages.SUCCESS,
        )

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and request.user.is_superuser


@admin.register(LeadScore)
class LeadScoreAdmin(ReadOnlyAdmin):
    list_display = ("lead", "model", "total", "fit", "behaviour", "band", "tenant", "computed_at")
    list_select_related = ("lead", "model", "tenant")
    search_fields = ("^lead__email", *TENANT_SEARCH)
    ordering = ("-computed_at", "-id")
    raw_id_fields = ("lead", "model")


@admin.register(CompanyScore)
class CompanyScoreAdmin(ReadOnlyAdmin):
    list_display = ("company", "model", "total", "best", "leads", "tenant", "computed_at")
    list_select_related = ("company", "model", "tenant")
    search_fields = ("company__name", *TENANT_SEARCH)
    ordering = ("-computed_at", "-id")
    raw_id_fields = ("company", "model")
