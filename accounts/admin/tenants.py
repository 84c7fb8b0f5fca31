"""Tenants: created, updated and (de)activated through the services, never deleted."""

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts import services
from accounts.admin.base import (
    CREATED_FILTER,
    ReadOnlyTenantRows,
    ServiceErrorsAsMessages,
    adopt,
    origin_of,
)
from accounts.models import Membership, Tenant, User


class TenantAddForm(forms.ModelForm):
    # An email, not a drop-down: there are too many users to list.
    owner = forms.EmailField(
        label=_("owner's email"),
        required=False,
        help_text=_("An existing user. Required unless the tenant is managed by an agency."),
    )

    class Meta:
        model = Tenant
        fields = (
            "name",
            "slug",
            "kind",
            "managed_by",
            "owner",
            "country",
            "time_zone",
            "language",
        )

    def clean_owner(self) -> User | None:
        email = self.cleaned_data["owner"].strip().lower()
        if not email:
            return None
        owner = User.objects.filter(email=email, is_active=True).first()
        if owner is None:
            raise forms.ValidationError(_("No active user has this email address."))
        return owner

    def clean(self) -> dict:
        cleaned = super().clean()
        if not cleaned.get("managed_by") and not cleaned.get("owner"):
            self.add_error("owner", _("Choose the owner of a tenant no agency manages."))
        return cleaned


class TenantMembershipInline(ReadOnlyTenantRows):
    fk_name = "tenant"
    fields = ("user", "role", "created_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return super().get_queryset(request).select_related("user").order_by("user__email")


TENANT_UPDATE_FIELDS = ("name", "country", "time_zone", "language")


@admin.register(Tenant)
class TenantAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "kind",
        "managed_by",
        "country",
        "language",
        "is_active",
        "created_at",
    )
    list_select_related = ("managed_by",)
    list_filter = ("kind", "is_active", "language", CREATED_FILTER)
    search_fields = ("name", "slug")
    ordering = ("name",)
    autocomplete_fields = ("managed_by",)
    fields = (
        "name",
        "slug",
        "kind",
        "managed_by",
        "country",
        "time_zone",
        "language",
        "is_active",
        "created_at",
    )

    def get_form(self, request: HttpRequest, obj: Tenant | None = None, **kwargs):
        if obj is None:
            kwargs["form"] = TenantAddForm
            kwargs["fields"] = TenantAddForm.Meta.fields
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Tenant | None = None):
        return TenantAddForm.Meta.fields if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None):
        # Slug, kind and agency shape URLs and who reaches the tenant: not edited here.
        return () if obj is None else ("slug", "kind", "managed_by", "created_at")

    def get_inlines(self, request: HttpRequest, obj: Tenant | None) -> list:
        return [TenantMembershipInline] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return False  # deleting cascades through all the tenant's data: deactivate instead

    def save_model(self, request: HttpRequest, obj: Tenant, form, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created = services.tenant_create(
                name=data["name"],
                slug=data["slug"],
                kind=data["kind"],
                managed_by=data["managed_by"],
                # tenant_create ignores the owner of a managed client (the agency reaches it).
                owner=data["owner"] or request.user,
                country=data["country"],
                time_zone=data["time_zone"],
                language=data["language"],
                origin=origin_of(request),
            )
            adopt(obj, created)
            return
        # The form has already written the new values into obj; the services compare
        # against the stored row, so start from it.
        stored = Tenant.objects.get(pk=obj.pk)
        changed = {name: data[name] for name in TENANT_UPDATE_FIELDS if name in form.changed_data}
        if changed:
            services.tenant_update(tenant=stored, origin=origin_of(request), **changed)
        if "is_active" in form.changed_data:
            services.tenant_set_active(
                tenant=stored, is_active=data["is_active"], origin=origin_of(request)
            )
