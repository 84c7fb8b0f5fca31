"""Who reaches a tenant: memberships, agency assignments, API keys and invitations.
Each change goes through its service, inside the scope of the tenant it touches."""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts import services
from accounts.admin.base import (
    CREATED_FILTER,
    TENANT_SEARCH,
    ServiceErrorsAsMessages,
    adopt,
    origin_of,
)
from accounts.models import AgencyAssignment, APIKey, Invitation, Membership, Tenant
from accounts.tenancy import tenant_scope

# --- Memberships ----------------------------------------------------------------------------


@admin.register(Membership)
class MembershipAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_select_related = ("user", "tenant")
    list_filter = ("role", "tenant__kind", CREATED_FILTER)
    search_fields = ("user__email", "user__full_name", *TENANT_SEARCH)
    ordering = ("tenant__name", "user__email")
    fields = ("tenant", "user", "role", "created_at")
    readonly_fields = ("tenant", "user", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # people join a tenant by invitation (or as its creator)

    def save_model(self, request: HttpRequest, obj: Membership, form, change: bool) -> None:
        if "role" in form.changed_data:
            with tenant_scope(obj.tenant_id):
                services.membership_change_role(
                    membership=Membership.objects.select_related("user").get(pk=obj.pk),
                    role=form.cleaned_data["role"],
                    origin=origin_of(request),
                )

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        with tenant_scope(obj.tenant_id):
            services.membership_remove(membership=obj, origin=origin_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        with transaction.atomic():  # all or nothing when one removal is refused
            for membership in queryset.select_related("user"):
                self.delete_model(request, membership)


# --- Agency access ------------------------------------------------------------------------


@admin.register(AgencyAssignment)
class AgencyAssignmentAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = ("user", "tenant", "agency", "role", "granted_by", "created_at")
    list_select_related = ("user", "tenant", "agency", "granted_by")
    list_filter = ("role", CREATED_FILTER)
    search_fields = ("user__email", *TENANT_SEARCH, "agency__name", "agency__slug")
    ordering = ("-created_at", "-id")
    autocomplete_fields = ("tenant", "user")

    def get_fields(self, request: HttpRequest, obj: AgencyAssignment | None = None):
        if obj is None:
            return ("tenant", "user", "role")
        return ("tenant", "agency", "user", "role", "granted_by", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: AgencyAssignment | None = None):
        return () if obj is None else ("tenant", "agency", "user", "granted_by", "created_at")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            kwargs["queryset"] = Tenant.objects.filter(managed_by__isnull=False)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: AgencyAssignment, form, change: bool) -> None:
        if change and "role" not in form.changed_data:
            return
        # The service checks the user belongs to the client's managing agency, and
        # updates the existing grant when there is one.
        assignment = services.agency_assignment_grant(
            client=obj.tenant, user=obj.user, role=obj.role, origin=origin_of(request)
        )
        adopt(obj, assignment)

    def delete_model(self, request: HttpRequest, obj: AgencyAssignment) -> None:
        services.agency_assignment_revoke(assignment=obj, origin=origin_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AgencyAssignment]):
        with transaction.atomic():
            for assignment in queryset.select_related("user"):
                self.delete_model(request, assignment)


# --- API keys -------------------------------------------------------------------------------


class APIKeyStatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return (("active", _("Active")), ("revoked", _("Revoked")))

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(APIKey)
class APIKeyAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = (
        "name",
        "prefix",
        "tenant",
        "scope",
        "role",
        "is_active",
        "created_by",
        "created_at",
        "last_used_at",
    )
    list_select_related = ("tenant", "created_by")
    list_filter = (APIKeyStatusFilter, "scope", "role", "tenant__kind", CREATED_FILTER)
    search_fields = ("name", "prefix", *TENANT_SEARCH, "created_by__email")
    ordering = ("-created_at", "-id")
    fields = (
        "tenant",
        "name",
        "prefix",
        "hashed_key",
        "scope",
        "role",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    readonly_fields = fields
    actions = ("revoke",)

    @admin.display(boolean=True, description=_("active"))
    def is_active(self, obj: APIKey) -> bool:
        return obj.is_active

    # Keys are created by a tenant's admins, who see the raw key once; here they can
    # only be looked at and revoked. Revoked keys stay, for the audit log's references.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: APIKey | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: APIKey | None = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.change_apikey")

    @admin.action(permissions=["revoke"], description=_("Revoke the selected API keys"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        revoked = 0
        with transaction.atomic():
            for api_key in queryset.filter(revoked_at__isnull=True):
                with tenant_scope(api_key.tenant_id):
                    services.api_key_revoke(api_key=api_key, origin=origin_of(request))
                revoked += 1
        self.message_user(
            request,
            ngettext("%d API key revoked.", "%d API keys revoked.", revoked) % revoked,
            messages.SUCCESS,
        )


# --- Invitations ----------------------------------------------------------------------------


class InvitationStatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return (
            ("pending", _("Pending")),
            ("accepted", _("Accepted")),
            ("revoked", _("Revoked")),
            ("expired", _("Expired")),
        )

    def queryset(self, request, queryset):
        now = timezone.now()
        open_ = Q(accepted_at__isnull=True, revoked_at__isnull=True)
        match self.value():
            case "pending":
                return queryset.filter(open_, expires_at__gt=now)
            case "accepted":
                return queryset.filter(accepted_at__isnull=False)
            case "revoked":
                return queryset.filter(revoked_at__isnull=False, accepted_at__isnull=True)
            case "expired":
                return queryset.filter(open_, expires_at__lte=now)
        return queryset


class InvitationAddForm(forms.ModelForm):
    class Meta:
        model = Invitation
        fields = ("tenant", "email", "role")


@admin.register(Invitation)
class InvitationAdmin(ServiceErrorsAsMessages, admin.ModelAdmin):
    list_display = (
        "email",
        "tenant",
        "role",
        "status",
        "invited_by",
        "created_at",
        "expires_at",
        "sent_at",
    )
    list_select_related = ("tenant", "invited_by")
    list_filter = (InvitationStatusFilter, "role", "tenant__kind", CREATED_FILTER)
    search_fields = ("email", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    autocomplete_fields = ("tenant",)
    actions = ("revoke",)
    readonly_fields = (
        "tenant",
        "email",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "sent_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    )

    @admin.display(description=_("status"))
    def status(self, obj: Invitation) -> str:
        if obj.accepted_at:
            return _("Accepted")
        if obj.revoked_at:
            return _("Revoked")
        return _("Pending") if obj.is_pending else _("Expired")

    def get_form(self, request: HttpRequest, obj: Invitation | None = None, **kwargs):
        if obj is None:
            kwargs["form"] = InvitationAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Invitation | None = None):
        return InvitationAddForm.Meta.fields if obj is None else self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Invitation | None = None):
        return () if obj is None else self.readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: Invitation | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Invitation | None = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.change_invitation")

    def save_model(self, request: HttpRequest, obj: Invitation, form, change: bool) -> None:
        # The service revokes older open invitations for the address, records the audit
        # entry and mails the link after commit.
        issued = services.invitation_create(
            tenant_id=obj.tenant_id, email=obj.email, role=obj.role, origin=origin_of(request)
        )
        adopt(obj, issued.invitation)

    @admin.action(permissions=["revoke"], description=_("Revoke the selected invitations"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        count = 0
        with transaction.atomic():
            for invitation in queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True):
                with tenant_scope(invitation.tenant_id):
                    services.invitation_revoke(invitation=invitation, origin=origin_of(request))
                count += 1
        self.message_user(
            request,
            ngettext("%d invitation revoked.", "%d invitations revoked.", count) % count,
            messages.SUCCESS,
        )
