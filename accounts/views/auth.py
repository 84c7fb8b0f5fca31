"""Staff web UI of accounts, about the person rather than one tenant: sign-in and
password reset, the home redirect, creating a tenant, and the invitation link."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse, reverse_lazy
from django.utils.translation import gettext as _

from accounts import selectors, services
from accounts.auth_audit import password_reset_completed
from accounts.forms import LoginForm, SignupForm, TenantForm
from accounts.models import Invitation
from accounts.services import Origin
from accounts.web import LAST_TENANT_SESSION_KEY, error_messages


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
