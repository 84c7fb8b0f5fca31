"""Staff web UI of accounts. Thin: forms validate, services write, selectors read.
Every page of one tenant is a `tenant_view` (accounts.web), which owns the tenant
scope, access and time zone.

The modules: `auth` (sign-in, home, tenant creation, invitation links: about the
person), `members` (members, invitations, agency access). The tenant's own pages
(dashboard, API keys, audit log, settings) live here; accounts.urls names every view
as `views.<name>`.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import selectors, services
from accounts.forms import APIKeyForm, AuditLogFilterForm, TenantForm
from accounts.models import ADMIN_ROLES, APIKey
from accounts.services import Origin
from accounts.views.auth import (
    PasswordResetConfirmView,
    home,
    invitation_accept,
    login_view,
    logout_view,
    password_reset_complete_view,
    password_reset_confirm_view,
    password_reset_done_view,
    password_reset_view,
    tenant_create,
)
from accounts.views.members import (
    agency_access_grant,
    agency_access_revoke,
    invitation_create,
    invitation_revoke,
    member_remove,
    member_role_change,
    members,
)
from accounts.views.webhooks import (
    webhook_delete,
    webhook_delivery_replay,
    webhook_detail,
    webhook_rotate_secret,
    webhook_send_test,
    webhook_set_active,
    webhooks,
)
from accounts.web import error_messages, keyset_page, tenant_view

AUDIT_LOG_PAGE_SIZE = 50
# Offered as suggestions in the audit log filter; any prefix works.
KNOWN_AUDIT_ACTIONS = [
    "tenant.created",
    "tenant.updated",
    "membership.role_changed",
    "membership.removed",
    "invitation.created",
    "invitation.accepted",
    "invitation.revoked",
    "api_key.created",
    "api_key.revoked",
    "webhook.created",
    "webhook.disabled_failing",
    "agency.access_granted",
    "agency.access_revoked",
]


# --- Dashboard -------------------------------------------------------------------------------


@tenant_view
def dashboard(request: HttpRequest) -> HttpResponse:
    admin = request.tenant_access.role in ADMIN_ROLES
    context = {
        "member_count": selectors.membership_list().count(),
        "pending_invitation_count": selectors.invitation_pending_list().count() if admin else None,
        "active_api_key_count": (
            selectors.api_key_list().filter(revoked_at__isnull=True).count() if admin else None
        ),
        "recent_audit": list(selectors.audit_log_list()[:5]) if admin else [],
    }
    return TemplateResponse(request, "accounts/dashboard.html", context)


# --- API keys --------------------------------------------------------------------------------


def _api_keys_page(request: HttpRequest, form: APIKeyForm, status: int = 200) -> HttpResponse:
    context = {"api_keys": selectors.api_key_list(), "form": form}
    return TemplateResponse(request, "accounts/api_keys.html", context, status=status)


@tenant_view(roles=ADMIN_ROLES)
def api_keys(request: HttpRequest) -> HttpResponse:
    """GET lists the keys; POST creates one and shows its raw key on this one response."""
    if request.method != "POST":
        return _api_keys_page(request, APIKeyForm())
    form = APIKeyForm(request.POST)
    if not form.is_valid():
        return _api_keys_page(request, form, status=400)
    try:
        issued = services.api_key_create(
            tenant_id=request.tenant.id, origin=Origin.from_request(request), **form.cleaned_data
        )
    except ValidationError as exc:
        for message in error_messages(exc):
            form.add_error(None, message)
        return _api_keys_page(request, form, status=400)
    # Rendered, never redirected to: the raw key exists only in this response.
    response = TemplateResponse(
        request,
        "accounts/api_key_created.html",
        {"api_key": issued.api_key, "raw_key": issued.raw_key},
    )
    response["Cache-Control"] = "no-store"
    return response


@tenant_view(roles=ADMIN_ROLES, isolation_model=APIKey)
@require_POST
def api_key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    api_key = get_object_or_404(selectors.api_key_list(), pk=pk)
    services.api_key_revoke(api_key=api_key, origin=Origin.from_request(request))
    if request.htmx:
        return TemplateResponse(request, "accounts/_api_key_row.html", {"key": api_key})
    messages.success(request, _("The API key %(name)s was revoked.") % {"name": api_key.name})
    return redirect("accounts:api_keys", tenant=request.tenant.slug)


# --- Audit log and tenant settings -----------------------------------------------------------


@tenant_view(roles=ADMIN_ROLES)
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditLogFilterForm(request.GET or None)
    entries = selectors.audit_log_list()
    action = form.cleaned_data["action"].strip() if form.is_valid() else ""
    if action:
        entries = entries.filter(action__startswith=action)
    page = keyset_page(entries, request.GET.get("cursor"), AUDIT_LOG_PAGE_SIZE)
    context = {
        "form": form,
        "page": page,
        "action": action,
        "known_actions": KNOWN_AUDIT_ACTIONS,
        "is_first_page": not request.GET.get("cursor"),
    }
    return TemplateResponse(request, "accounts/audit_log.html", context)


@tenant_view(roles=ADMIN_ROLES)
def tenant_settings(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant
    initial = {"name": tenant.name, "time_zone": tenant.time_zone, "language": tenant.language}
    form = TenantForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        changed = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            services.tenant_update(tenant=tenant, origin=Origin.from_request(request), **changed)
        except ValidationError as exc:
            for message in error_messages(exc):
                form.add_error(None, message)
        else:
            messages.success(request, _("The settings were saved."))
            return redirect("accounts:tenant_settings", tenant=tenant.slug)
    return TemplateResponse(request, "accounts/tenant_settings.html", {"form": form})


__all__ = [
    "AUDIT_LOG_PAGE_SIZE",
    "KNOWN_AUDIT_ACTIONS",
    "PasswordResetConfirmView",
    "agency_access_grant",
    "agency_access_revoke",
    "api_key_revoke",
    "api_keys",
    "audit_log",
    "dashboard",
    "home",
    "invitation_accept",
    "invitation_create",
    "invitation_revoke",
    "login_view",
    "logout_view",
    "member_remove",
    "member_role_change",
    "members",
    "password_reset_complete_view",
    "password_reset_confirm_view",
    "password_reset_done_view",
    "password_reset_view",
    "tenant_create",
    "tenant_settings",
    "webhook_delete",
    "webhook_delivery_replay",
    "webhook_detail",
    "webhook_rotate_secret",
    "webhook_send_test",
    "webhook_set_active",
    "webhooks",
]
