"""Who reaches a tenant, on its members page: members and their roles, invitations,
and on a client an agency manages, the agency's access."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import selectors, services
from accounts.forms import AgencyAccessForm, InvitationForm, RoleForm
from accounts.models import ADMIN_ROLES, AgencyAssignment, Invitation, Membership
from accounts.services import Origin
from accounts.web import (
    agency_grant_roles,
    assignable_roles,
    can_manage_member,
    error_messages,
    is_admin,
    role_label,
    tenant_view,
)

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
        errors = error_messages(exc)
    else:
        errors = []
    if request.htmx:
        # Answer with the row itself (htmx would follow a redirect and swap the whole
        # members page into the row): nothing when removed, the row and why when not.
        if not errors:
            return HttpResponse("")
        choices = assignable_roles(request.tenant_access.role)
        row = {
            "membership": membership,
            "manageable": can_manage_member(request.tenant_access.role, membership.role)
            and membership.user_id != request.user.id,
            "role_form": RoleForm(initial={"role": membership.role}, role_choices=choices),
            "errors": errors,
        }
        return TemplateResponse(request, "accounts/_member_row.html", {"row": row})
    for message in errors:
        messages.error(request, message)
    if not errors:
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
