"""Users: the one place where the admin edits rows directly (see accounts.admin)."""

from django.contrib import admin
from django.contrib.admin.filters import DateFieldListFilter
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.admin.base import ReadOnlyTenantRows
from accounts.models import Membership, User


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
