"""Admin pages of leads, companies, tags, custom fields, suppression and histories."""

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet, Subquery
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.admin.base import (
    CREATED_FILTER,
    TENANT_SEARCH,
    ServiceErrorsAsMessages,
    adopt,
    origin_of,
)
from leads import services
from leads.models import (
    Activity,
    Channel,
    Company,
    ConsentEvent,
    CustomFieldDefinition,
    Lead,
    LifecycleTransition,
    Suppression,
    Tag,
)

#: Rows shown in each history inline on a lead's page: the newest ones. The full
#: history is the filtered changelist of its own page.
INLINE_ROWS = 50


class ReadOnlyAdmin(admin.ModelAdmin):
    """Append-only rows: looked at, never edited here."""

    show_full_result_count = False  # the big tables: no COUNT(*) on every page

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class NewestRowsInline(admin.TabularInline):
    """A read-only history on the lead's page, limited to the newest INLINE_ROWS."""

    extra = 0
    can_delete = False
    show_change_link = True
    ordering_field = "occurred_at"

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        # The formset filters by lead afterwards; a sliced queryset cannot be filtered,
        # so the slice is an id subquery (index (tenant, lead, occurred_at) per lead).
        lead_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        if not lead_id or not str(lead_id).isdigit():
            return queryset.none()
        newest = (
            self.model.objects.filter(lead_id=int(lead_id))
            .order_by(f"-{self.ordering_field}", "-id")
            .values("id")[:INLINE_ROWS]
        )
        return queryset.filter(id__in=Subquery(newest)).order_by(f"-{self.ordering_field}", "-id")


class ActivityInline(NewestRowsInline):
    model = Activity
    fields = ("occurred_at", "type", "channel", "campaign", "properties")
    readonly_fields = fields
    verbose_name_plural = _("activities (newest 50)")


class TransitionInline(NewestRowsInline):
    model = LifecycleTransition
    fields = ("occurred_at", "from_stage", "to_stage", "actor", "channel", "reason")
    readonly_fields = fields
    verbose_name_plural = _("lifecycle transitions (newest 50)")


class ConsentInline(NewestRowsInline):
    model = ConsentEvent
    fields = ("occurred_at", "purpose", "status", "channel", "basis", "proof", "actor")
    readonly_fields = fields
    verbose_name_plural = _("consent history (newest 50)")


# --- Leads ------------------------------------------------------------------------------

LEAD_EDIT_FIELDS = (
    "email",
    ("family_name", "given_name"),
    ("family_name_kana", "given_name_kana"),
    "phone",
    ("job_title", "department"),
    "company",
    "owner",
    "lifecycle_stage",
)
LEAD_READ_ONLY = (
    "source_channel",
    "source_campaign",
    "email_consent",
    "sales_contact_consent",
    "custom_fields",
    "merged_into",
    "created_at",
    "updated_at",
)
#: Admin form field → the services' field name.
FORM_TO_SERVICE = {"company": "company_id", "owner": "owner_id"}


def _lead_fields(form, names) -> dict:
    fields = {}
    for name in names:
        if name in ("email", "tenant"):
            continue
        value = form.cleaned_data[name]
        if name in FORM_TO_SERVICE:
            fields[FORM_TO_SERVICE[name]] = value.pk if value is not None else None
        else:
            fields[name] = value
    return fields


@admin.register(Lead)
class LeadAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = (
        "display_name",
        "email",
        "tenant",
        "company",
        "lifecycle_stage",
        "email_consent",
        "sales_contact_consent",
        "source_channel",
        "created_at",
    )
    list_select_related = ("tenant", "company")
    list_filter = (
        "lifecycle_stage",
        "source_channel",
        "email_consent",
        "sales_contact_consent",
        "tenant__kind",
        CREATED_FILTER,
    )
    # Prefix searches ("^"): they stay on the indexes of a million-lead table.
    search_fields = ("^email", "^family_name", "^family_name_kana", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    raw_id_fields = ("company", "owner", "source_campaign", "merged_into")
    autocomplete_fields = ("tenant",)
    show_full_result_count = False
    list_per_page = 50
    inlines = (TransitionInline, ConsentInline, ActivityInline)

    def get_fieldsets(self, request: HttpRequest, obj: Lead | None = None):
        if obj is None:
            return [(None, {"fields": ("tenant", *LEAD_EDIT_FIELDS)})]
        return [
            (None, {"fields": ("tenant", *LEAD_EDIT_FIELDS)}),
            (_("Source, consent and history"), {"fields": LEAD_READ_ONLY}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Lead | None = None):
        return () if obj is None else ("tenant", *LEAD_READ_ONLY)

    def get_inlines(self, request: HttpRequest, obj: Lead | None = None):
        return self.inlines if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Lead, form, change: bool) -> None:
        origin = origin_of(request)
        if change:
            stored = Lead.objects.get(pk=obj.pk)
            extra = {"email": obj.email} if "email" in form.changed_data else {}
            saved = services.lead_update(
                lead=stored,
                fields=_lead_fields(form, form.changed_data),
                origin=origin,
                channel=Channel.UI,
                reason=str(_("Changed in the platform admin")),
                **extra,
            )
        else:
            saved = services.lead_create(
                tenant_id=obj.tenant_id,
                email=obj.email,
                fields=_lead_fields(form, form.cleaned_data),
                channel=Channel.UI,
                origin=origin,
            )
        adopt(obj, saved)

    def delete_model(self, request: HttpRequest, obj: Lead) -> None:
        services.lead_delete(lead=obj, origin=origin_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Lead]) -> None:
        with transaction.atomic():  # each deletion audited, all or nothing
            for lead in queryset:
                self.delete_model(request, lead)


# --- Companies, tags, custom fields, suppression -------------------------------------------

COMPANY_FIELDS = (
    "name",
    "corporate_number",
    "domain",
    "industry",
    ("size_band", "revenue_band"),
    ("prefecture", "address"),
)


@admin.register(Company)
class CompanyAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = ("name", "tenant", "corporate_number", "domain", "industry", "created_at")
    list_select_related = ("tenant",)
    list_filter = ("size_band", "revenue_band", "prefecture", "tenant__kind", CREATED_FILTER)
    search_fields = ("^name", "^name_key", "=corporate_number", "^domain", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    autocomplete_fields = ("tenant",)
    show_full_result_count = False

    def get_fields(self, request: HttpRequest, obj: Company | None = None):
        flat = [
            f for group in COMPANY_FIELDS for f in (group if isinstance(group, tuple) else (group,))
        ]
        return ("tenant", *flat) if obj is None else ("tenant", *flat, "created_at", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Company | None = None):
        return () if obj is None else ("tenant", "created_at", "updated_at")

    def save_model(self, request: HttpRequest, obj: Company, form, change: bool) -> None:
        origin = origin_of(request)
        if change:
            stored = Company.objects.get(pk=obj.pk)
            fields = {name: form.cleaned_data[name] for name in form.changed_data}
            saved = services.company_update(company=stored, origin=origin, **fields)
        else:
            fields = {k: v for k, v in form.cleaned_data.items() if k != "tenant"}
            saved = services.company_create(tenant_id=obj.tenant_id, origin=origin, **fields)
        adopt(obj, saved)

    def delete_model(self, request: HttpRequest, obj: Company) -> None:
        services.company_delete(company=obj, origin=origin_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Company]) -> None:
        with transaction.atomic():
            for company in queryset:
                self.delete_model(request, company)


@admin.register(Tag)
class TagAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = ("name", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("^name", *TENANT_SEARCH)
    ordering = ("tenant", "name")
    autocomplete_fields = ("tenant",)

    def get_readonly_fields(self, request: HttpRequest, obj: Tag | None = None):
        return () if obj is None else ("tenant",)

    def save_model(self, request: HttpRequest, obj: Tag, form, change: bool) -> None:
        origin = origin_of(request)
        if change:
            saved = services.tag_rename(
                tag=Tag.objects.get(pk=obj.pk), name=obj.name, origin=origin
            )
        else:
            saved = services.tag_create(tenant_id=obj.tenant_id, name=obj.name, origin=origin)
        adopt(obj, saved)

    def delete_model(self, request: HttpRequest, obj: Tag) -> None:
        services.tag_delete(tag=obj, origin=origin_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Tag]) -> None:
        with transaction.atomic():
            for tag in queryset:
                self.delete_model(request, tag)


@admin.register(CustomFieldDefinition)
class CustomFieldDefinitionAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = ("label", "key", "type", "required", "position", "tenant")
    list_select_related = ("tenant",)
    list_filter = ("type", "required")
    search_fields = ("^key", "label", *TENANT_SEARCH)
    ordering = ("tenant", "position", "id")
    autocomplete_fields = ("tenant",)
    fields = ("tenant", "key", "label", "type", "choices", "required", "position")

    def get_readonly_fields(self, request: HttpRequest, obj: CustomFieldDefinition | None = None):
        # Stored values were validated against the key and type: they stay.
        return () if obj is None else ("tenant", "key", "type")

    def save_model(self, request, obj: CustomFieldDefinition, form, change: bool) -> None:
        origin = origin_of(request)
        names = ("label", "choices", "required", "position")
        if change:
            stored = CustomFieldDefinition.objects.get(pk=obj.pk)
            fields = {name: form.cleaned_data[name] for name in form.changed_data if name in names}
            saved = services.custom_field_update(definition=stored, origin=origin, **fields)
        else:
            saved = services.custom_field_create(
                tenant_id=obj.tenant_id,
                origin=origin,
                key=obj.key,
                type=obj.type,
                **{name: form.cleaned_data[name] for name in names},
            )
        adopt(obj, saved)

    def delete_model(self, request, obj: CustomFieldDefinition) -> None:
        services.custom_field_delete(definition=obj, origin=origin_of(request))

    def delete_queryset(self, request, queryset: QuerySet[CustomFieldDefinition]) -> None:
        with transaction.atomic():
            for definition in queryset:
                self.delete_model(request, definition)


@admin.register(Suppression)
class SuppressionAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = ("email", "reason", "tenant", "created_at")
    list_select_related = ("tenant",)
    list_filter = ("reason", CREATED_FILTER)
    search_fields = ("^email", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    autocomplete_fields = ("tenant",)
    fields = ("tenant", "email", "reason", "note")
    show_full_result_count = False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # Add or remove an address; its reason is history.
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Suppression, form, change: bool) -> None:
        saved = services.suppression_add(
            tenant_id=obj.tenant_id, email=obj.email, reason=obj.reason, note=obj.note
        )
        adopt(obj, saved)

    def delete_model(self, request: HttpRequest, obj: Suppression) -> None:
        services.suppression_remove(suppression=obj, origin=origin_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Suppression]) -> None:
        with transaction.atomic():
            for suppression in queryset:
                self.delete_model(request, suppression)


# --- Histories (read-only) -----------------------------------------------------------------


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "type", "lead", "tenant", "channel", "campaign")
    list_select_related = ("lead", "tenant", "campaign")
    list_filter = ("type", "channel", ("occurred_at", admin.DateFieldListFilter))
    search_fields = ("^lead__email", *TENANT_SEARCH)
    ordering = ("-occurred_at", "-id")
    raw_id_fields = ("lead", "visitor", "campaign")


@admin.register(LifecycleTransition)
class LifecycleTransitionAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "lead", "from_stage", "to_stage", "actor", "channel", "tenant")
    list_select_related = ("lead", "actor", "tenant")
    list_filter = ("to_stage", "from_stage", "channel", ("occurred_at", admin.DateFieldListFilter))
    search_fields = ("^lead__email", "reason", *TENANT_SEARCH)
    ordering = ("-occurred_at", "-id")


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "lead", "purpose", "status", "channel", "basis", "tenant")
    list_select_related = ("lead", "tenant")
    list_filter = ("purpose", "status", "channel", ("occurred_at", admin.DateFieldListFilter))
    search_fields = ("^lead__email", *TENANT_SEARCH)
    ordering = ("-occurred_at", "-id")
