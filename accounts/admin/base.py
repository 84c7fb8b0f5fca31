"""Pieces every admin page of accounts shares: service errors shown as messages, the
origin of an admin action, and adopting the row a service saved."""

from django.contrib import admin, messages
from django.contrib.admin.filters import DateFieldListFilter
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts.models import Membership
from accounts.services import Origin


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


def origin_of(request: HttpRequest) -> Origin:
    return Origin.from_request(request)


def adopt(obj, saved) -> None:
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
