"""Django admin for platform administrators: users, tenants and what hangs off them.

Every view runs inside `unscoped(reason="platform admin")` (see accounts.admin_site),
so the changelists show every tenant's rows. Writes that carry a rule or belong in the
audit log go through accounts.services, each inside the scope of the tenant it
touches (row-level security then checks the write as it would for the tenant's own
staff):

- tenant create/update/(de)activate  → tenant_create, tenant_update, tenant_set_active
- membership role change / removal    → membership_change_role, membership_remove
- agency access grant/change/revoke   → agency_assignment_grant, agency_assignment_revoke
- API key revoke (action)             → api_key_revoke
- invitation create / revoke (action) → invitation_create, invitation_revoke

Where the admin edits rows directly, and why:

- Users: a platform table with no tenant and no rule beyond the model's; Django's auth
  forms hash passwords, and Django's own admin log records who changed what.
- Nothing else. Rows with no service for the change are read-only here: API keys are
  created by a tenant's admins (the raw key is shown once, to them), memberships are
  created by invitation, the audit log is append-only, tenants are deactivated rather
  than deleted.

A service refusing a change (ValidationError, e.g. demoting a tenant's last owner)
shows as an error message on the page; the view's transaction is rolled back.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.filters import DateFieldListFilter
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts import services
from accounts.models import (
    AgencyAssignment,
    APIKey,
    AuditLog,
    Invitation,
    Membership,
    Tenant,
    User,
)
from accounts.services import Origin
from accounts.tenancy import tenant_scope

# --- Shared pieces ----------------------------------------------------------------------


class ServiceErrorsAsMessages:
    """Turns a ValidationError raised by a service into an error message and a redirect
    back to the page. The admin's own atomic block (or ours, in actions) has already
    rolled the change back when the exception reaches here."""

    def _refused(self, request: HttpRequest, exc: ValidationError) -> HttpResponse:
        for message in exc.messages:
            self.message_user(request, message, messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:
            return self._refused(request, exc)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as exc:
            return self._refused(request, exc)

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except ValidationError as exc:
            return self._refused(request, exc)


def _origin(request: HttpRequest) -> Origin:
    return Origin.from_request(request)


def _adopt(obj, saved) -> None:
    """Give the admin's unsaved form instance the identity of the row a service saved,
    so the admin's log entry and redirect point at it."""
    for field in saved._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


CREATED_FILTER = ("created_at", DateFieldListFilter)
TENANT_SEARCH = ("tenant__name", "tenant__slug")


class ReadOnlyTenantRows(admin.TabularInline):
    """Members listed on a tenant or user page; changes go through the membership page."""

    model = Membership
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


# --- Users --------------------------------------------------------------------------------


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        # The manager stores emails lower-cased; the unique check must compare the same.
        return User.objects.normalize_email(self.cleaned_data["email"]).strip().lower()


class UserAdminChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def clean_email(self) -> str:
        return User.objects.normalize_email(self.cleaned_data["email"]).strip().lower()


class UserMembershipInline(ReadOnlyTenantRows):
    fk_name = "user"
    fields = ("tenant", "role", "created_at")
    readonly_fields = fields
    verbose_name_plural = _("tenant memberships")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return super().get_queryset(request).select_related("tenant")


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserAdminChangeForm
    add_form = UserCreationForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Personal info"), {"fields": ("full_name", "language")}),
        (
            _("Permissions"),
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "usable_password", "password1", "password2"),
            },
        ),
    )
    list_display = ("email", "full_name", "is_staff", "is_superuser", "is_active", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active", ("date_joined", DateFieldListFilter))
    search_fields = ("email", "full_name")
    ordering = ("email",)
    readonly_fields = ("last_login", "date_joined")

    def get_inlines(self, request: HttpRequest, obj: User | None) -> list:
        return [UserMembershipInline] if obj is not None else []


# --- Tenants ------------------------------------------------------------------------------


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
                origin=_origin(request),
            )
            _adopt(obj, created)
            return
        # The form has already written the new values into obj; the services compare
        # against the stored row, so start from it.
        stored = Tenant.objects.get(pk=obj.pk)
        changed = {name: data[name] for name in TENANT_UPDATE_FIELDS if name in form.changed_data}
        if changed:
            services.tenant_update(tenant=stored, origin=_origin(request), **changed)
        if "is_active" in form.changed_data:
            services.tenant_set_active(
                tenant=stored, is_active=data["is_active"], origin=_origin(request)
            )


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
                    origin=_origin(request),
                )

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        with tenant_scope(obj.tenant_id):
            services.membership_remove(membership=obj, origin=_origin(request))

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
            client=obj.tenant, user=obj.user, role=obj.role, origin=_origin(request)
        )
        _adopt(obj, assignment)

    def delete_model(self, request: HttpRequest, obj: AgencyAssignment) -> None:
        services.agency_assignment_revoke(assignment=obj, origin=_origin(request))

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
                    services.api_key_revoke(api_key=api_key, origin=_origin(request))
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
            tenant_id=obj.tenant_id, email=obj.email, role=obj.role, origin=_origin(request)
        )
        _adopt(obj, issued.invitation)

    @admin.action(permissions=["revoke"], description=_("Revoke the selected invitations"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        count = 0
        with transaction.atomic():
            for invitation in queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True):
                with tenant_scope(invitation.tenant_id):
                    services.invitation_revoke(invitation=invitation, origin=_origin(request))
                count += 1
        self.message_user(
            request,
            ngettext("%d invitation revoked.", "%d invitations revoked.", count) % count,
            messages.SUCCESS,
        )


# --- Audit log ------------------------------------------------------------------------------


class AuditActionFilter(admin.SimpleListFilter):
    """Filters by the action's family (the part before the dot). The choices are fixed
    rather than read with SELECT DISTINCT, which would scan the whole audit log."""

    title = _("action")
    parameter_name = "action_family"
    families = ("tenant", "membership", "agency", "api_key", "invitation", "user", "auth")

    def lookups(self, request, model_admin):
        return [(family, family) for family in self.families]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action__startswith=f"{self.value()}.")
        return queryset


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "action", "tenant", "actor", "api_key", "target_repr", "ip")
    list_select_related = ("tenant", "actor", "api_key")
    list_filter = (AuditActionFilter, "tenant__kind", CREATED_FILTER)
    search_fields = ("action", "target_repr", "target_id", "actor__email", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    # The log is the largest table here: skip the unfiltered COUNT(*) on every page.
    show_full_result_count = False
    fields = (
        "created_at",
        "tenant",
        "action",
        "actor",
        "api_key",
        "target_type",
        "target_id",
        "target_repr",
        "metadata",
        "ip_address",
        "user_agent",
    )
    readonly_fields = fields

    @admin.display(description=_("IP address"), ordering="ip_address")
    def ip(self, obj: AuditLog) -> str:
        return obj.ip_address or ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditLog | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditLog | None = None) -> bool:
        return False
