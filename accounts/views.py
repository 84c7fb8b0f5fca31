"""Staff web UI of accounts: sign-in, the tenant home, dashboard and settings pages.

Thin: forms validate, services write, selectors read. Every page of one tenant is a
`tenant_view` (accounts.web), which owns the tenant scope, access and time zone.
"""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse, reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import selectors, services
from accounts.auth_audit import password_reset_completed
from accounts.forms import (
    AgencyAccessForm,
    APIKeyForm,
    AuditLogFilterForm,
    InvitationForm,
    LoginForm,
    RoleForm,
    SignupForm,
    TenantForm,
)
from accounts.models import ADMIN_ROLES, AgencyAssignment, APIKey, Invitation, Membership
from accounts.services import Origin
from accounts.web import (
    LAST_TENANT_SESSION_KEY,
    agency_grant_roles,
    assignable_roles,
    can_manage_member,
    error_messages,
    is_admin,
    keyset_page,
    role_label,
    tenant_view,
)

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
    "agency.access_granted",
    "agency.access_revoked",
]


def _dashboard(tenant_slug: str) -> HttpResponse:
    return redirect("accounts:dashboard", tenant=tenant_slug)


# --- Sign-in -----------------------------------------------------------------------------------

login_view = auth_views.LoginView.as_view(
    template_name="accounts/login.html",
    authentication_form=LoginForm,
    redirect_authenticated_user=True,
)
logout_view = auth_views.LogoutView.as_view()
password_reset_view = auth_views.PasswordResetView.as_view(
    template_name="accounts/password_reset_form.html",
    email_template_name="accounts/auth/password_reset_email.txt",
    subject_template_name="accounts/auth/password_reset_subject.txt",
)
password_reset_done_view = auth_views.PasswordResetDoneView.as_view(
    template_name="accounts/password_reset_done.html"
)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("password_reset_complete")

    def form_valid(self, form):
        response = super().form_valid(form)
        password_reset_completed(self.request, form.user)
        return response


password_reset_confirm_view = PasswordResetConfirmView.as_view()
password_reset_complete_view = auth_views.PasswordResetCompleteView.as_view(
    template_name="accounts/password_reset_complete.html"
)


# --- Home and tenant creation ----------------------------------------------------------------


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The last tenant used (or the first one), else the page to create one."""
    accesses = selectors.tenant_accesses(request.user)
    if accesses:
        last_id = request.session.get(LAST_TENANT_SESSION_KEY)
        access = next((a for a in accesses if a.tenant.id == last_id), accesses[0])
        return _dashboard(access.tenant.slug)
    return TemplateResponse(request, "accounts/no_tenant.html", {"form": TenantForm()})


@login_required
def tenant_create(request: HttpRequest) -> HttpResponse:
    form = TenantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            tenant = services.tenant_create(
                owner=request.user, origin=Origin.from_request(request), **form.cleaned_data
            )
        except ValidationError as exc:
            for message in error_messages(exc):
                form.add_error(None, message)
        else:
            messages.success(request, _("%(name)s was created.") % {"name": tenant.name})
            return _dashboard(tenant.slug)
    return TemplateResponse(request, "accounts/no_tenant.html", {"form": form})


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


# --- Members and invitations -----------------------------------------------------------------


def _members_context(
    request: HttpRequest,
    invite_form: InvitationForm | None = None,
    agency_form: AgencyAccessForm | None = None,
) -> dict:
    role = request.tenant_access.role
    admin = role in ADMIN_ROLES
    choices = assignable_roles(role)
    members = list(selectors.membership_list())
    rows = [
        {
            "membership": m,
            "manageable": can_manage_member(role, m.role) and m.user_id != request.user.id,
            "role_form": RoleForm(initial={"role": m.role}, role_choices=choices),
        }
        for m in members
    ]
    return {
        "rows": rows,
        "is_admin": admin,
        "invite_form": invite_form or InvitationForm(role_choices=choices),
        "invitations": list(selectors.invitation_pending_list()) if admin else [],
        "agency_access": _agency_access_context(request, agency_form),
    }


@tenant_view
def members(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "accounts/members.html", _members_context(request))


@tenant_view(roles=ADMIN_ROLES)
@require_POST
def invitation_create(request: HttpRequest) -> HttpResponse:
    form = InvitationForm(request.POST, role_choices=assignable_roles(request.tenant_access.role))
    if form.is_valid():
        try:
            services.invitation_create(
                tenant_id=request.tenant.id,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                origin=Origin.from_request(request),
            )
        except ValidationError as exc:
            for message in error_messages(exc):
                form.add_error("email", message)
        else:
            messages.success(
                request,
                _("An invitation was sent to %(email)s.") % {"email": form.cleaned_data["email"]},
            )
            return redirect("accounts:members", tenant=request.tenant.slug)
    return TemplateResponse(
        request, "accounts/members.html", _members_context(request, form), status=400
    )


@tenant_view(roles=ADMIN_ROLES, isolation_model=Invitation)
@require_POST
def invitation_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = get_object_or_404(selectors.invitation_list(), pk=pk)
    services.invitation_revoke(invitation=invitation, origin=Origin.from_request(request))
    if request.htmx:
        return HttpResponse("")  # the row disappears
    messages.success(
        request, _("The invitation to %(email)s was revoked.") % {"email": invitation.email}
    )
    return redirect("accounts:members", tenant=request.tenant.slug)


def _member_or_403(request: HttpRequest, pk: int) -> Membership:
    membership = get_object_or_404(selectors.membership_list(), pk=pk)
    if not can_manage_member(request.tenant_access.role, membership.role):
        raise PermissionDenied
    return membership


@tenant_view(roles=ADMIN_ROLES, isolation_model=Membership)
@require_POST
def member_role_change(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _member_or_403(request, pk)
    choices = assignable_roles(request.tenant_access.role)
    form = RoleForm(request.POST, role_choices=choices)
    errors: list[str] = []
    if form.is_valid():
        try:
            services.membership_change_role(
                membership=membership,
                role=form.cleaned_data["role"],
                origin=Origin.from_request(request),
            )
        except ValidationError as exc:
            errors = error_messages(exc)
            membership.refresh_from_db()
    else:
        errors = [_("Choose a valid role.")]
    if request.htmx:
        row = {
            "membership": membership,
            "manageable": can_manage_member(request.tenant_access.role, membership.role)
            and membership.user_id != request.user.id,
            "role_form": RoleForm(initial={"role": membership.role}, role_choices=choices),
            "errors": errors,
            "saved": not errors,
        }
        return TemplateResponse(request, "accounts/_member_row.html", {"row": row})
    for message in errors:
        messages.error(request, message)
    if not errors:
        messages.success(request, _("The role was changed."))
    return redirect("accounts:members", tenant=request.tenant.slug)


@tenant_view(roles=ADMIN_ROLES, isolation_model=Membership)
@require_POST
def member_remove(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _member_or_403(request, pk)
    try:
        services.membership_remove(membership=membership, origin=Origin.from_request(request))
    except ValidationError as exc:
        for message in error_messages(exc):
            messages.error(request, message)
    else:
        messages.success(request, _("%(email)s was removed.") % {"email": membership.user.email})
    return redirect("accounts:members", tenant=request.tenant.slug)


# --- Agency access ---------------------------------------------------------------------------
# On a client an agency manages: who of the agency reaches it, and the explicit grants.


def _agency_access_form(request: HttpRequest, data=None) -> AgencyAccessForm:
    return AgencyAccessForm(
        data,
        staff=selectors.agency_staff_grantable(request.tenant),
        role_choices=agency_grant_roles(request.tenant_access.role),
    )


def _agency_access_context(
    request: HttpRequest, form: AgencyAccessForm | None = None, notice: str = ""
) -> dict | None:
    """The "Agency access" section of the members page; None when no agency manages the
    tenant. Admins of the client (direct, or the agency's admins reaching it) get the
    controls; everyone else sees the list."""
    tenant = request.tenant
    if tenant.managed_by_id is None:
        return None
    can_manage = is_admin(request.tenant_access)
    return {
        "agency": tenant.managed_by,
        "assignments": list(selectors.agency_assignment_list()),
        "can_manage": can_manage,
        "form": (form or _agency_access_form(request)) if can_manage else None,
        "notice": notice,
    }


def _agency_access_section(
    request: HttpRequest, form: AgencyAccessForm | None = None, notice: str = ""
) -> HttpResponse:
    """The section alone, for htmx to swap in place."""
    context = {"agency_access": _agency_access_context(request, form, notice)}
    return TemplateResponse(request, "accounts/_agency_access.html", context)


def _managed_client_or_404(request: HttpRequest) -> None:
    if request.tenant.managed_by_id is None:
        raise Http404


@tenant_view(roles=ADMIN_ROLES)
@require_POST
def agency_access_grant(request: HttpRequest) -> HttpResponse:
    _managed_client_or_404(request)
    form = _agency_access_form(request, request.POST)
    if form.is_valid():
        staff, role = form.cleaned_data["user"], form.cleaned_data["role"]
        try:
            services.agency_assignment_grant(
                client=request.tenant, user=staff, role=role, origin=Origin.from_request(request)
            )
        except ValidationError as exc:
            for message in error_messages(exc):
                form.add_error(None, message)
        else:
            notice = _("%(person)s now reaches this tenant as %(role)s.") % {
                "person": staff.get_full_name(),
                "role": role_label(role),
            }
            if request.htmx:
                return _agency_access_section(request, notice=notice)
            messages.success(request, notice)
            return redirect(_agency_access_url(request))
    if request.htmx:
        # 200, not 400: htmx swaps only successful responses, and the errors are the content.
        return _agency_access_section(request, form)
    return TemplateResponse(
        request, "accounts/members.html", _members_context(request, agency_form=form), status=400
    )


@tenant_view(roles=ADMIN_ROLES, isolation_model=AgencyAssignment)
@require_POST
def agency_access_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = get_object_or_404(selectors.agency_assignment_list(), pk=pk)
    services.agency_assignment_revoke(assignment=assignment, origin=Origin.from_request(request))
    notice = _("%(person)s no longer reaches this tenant through the agency.") % {
        "person": assignment.user.get_full_name()
    }
    if (
        assignment.user_id == request.user.id
        and selectors.tenant_access_in_scope(request.user, request.tenant) is None
    ):
        # Revoked one's own grant: this tenant is out of reach now, so go home.
        messages.success(request, notice)
        if request.htmx:
            return HttpResponse(headers={"HX-Redirect": reverse("home")})
        return redirect("home")
    if request.htmx:
        return _agency_access_section(request, notice=notice)
    messages.success(request, notice)
    return redirect(_agency_access_url(request))


def _agency_access_url(request: HttpRequest) -> str:
    return reverse("accounts:members", kwargs={"tenant": request.tenant.slug}) + "#agency-access"


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


# --- Invitation links ------------------------------------------------------------------------


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The link in the invitation email. Logged in as the invited email: confirm and
    join. Not logged in: sign up (or log in, if the account exists). Else: say so."""
    invitation = services.invitation_get_by_token(token)
    if invitation is None or not invitation.is_pending:
        return TemplateResponse(
            request, "accounts/invitation_accept.html", {"state": "invalid"}, status=404
        )
    context: dict = {"invitation": invitation, "tenant": invitation.tenant}
    user = request.user
    if user.is_authenticated:
        if user.email.lower() != invitation.email:
            context["state"] = "wrong_email"
            return TemplateResponse(request, "accounts/invitation_accept.html", context, status=403)
        if request.method == "POST":
            services.invitation_accept(token=token, user=user, origin=Origin.from_request(request))
            return _joined(request, invitation)
        context["state"] = "confirm"
        return TemplateResponse(request, "accounts/invitation_accept.html", context)
    if selectors.user_exists_with_email(invitation.email):
        context["state"] = "login"
        return TemplateResponse(request, "accounts/invitation_accept.html", context)
    form = SignupForm(request.POST or None, email=invitation.email)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.invitation_accept_new_user(
                token=token,
                full_name=form.cleaned_data["full_name"],
                password=form.cleaned_data["password1"],
                origin=Origin.from_request(request),
            )
        except ValidationError as exc:
            for message in error_messages(exc):
                form.add_error(None, message)
        else:
            login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
            return _joined(request, invitation)
    context.update(state="signup", form=form)
    return TemplateResponse(request, "accounts/invitation_accept.html", context)


def _joined(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    messages.success(request, _("Welcome to %(tenant)s.") % {"tenant": invitation.tenant.name})
    return redirect(reverse("accounts:dashboard", kwargs={"tenant": invitation.tenant.slug}))
