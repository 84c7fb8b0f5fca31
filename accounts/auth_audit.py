"""Sign-in events in the audit log: login, logout, failed login, password reset.

Django announces these only through its auth signals, so this is the one place we
listen to signals; the handlers do nothing but call the audit service. They are
platform events (no tenant): the platform admin reads them across tenants.
"""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.http import HttpRequest

from accounts.models import User
from accounts.services import Origin, audit_record


def _origin(request: HttpRequest | None, user: User | None) -> Origin:
    if request is None:
        return Origin(actor=user)
    origin = Origin.from_request(request)
    return Origin(actor=user, ip_address=origin.ip_address, user_agent=origin.user_agent, role=None)


def on_logged_in(sender, request: HttpRequest | None, user: User, **kwargs) -> None:
    audit_record(tenant_id=None, origin=_origin(request, user), action="auth.login", target=user)


def on_logged_out(sender, request: HttpRequest | None, user: User | None, **kwargs) -> None:
    if user is not None:
        audit_record(
            tenant_id=None, origin=_origin(request, user), action="auth.logout", target=user
        )


def on_login_failed(sender, credentials: dict, request: HttpRequest | None = None, **kwargs):
    # Django has already masked secrets in `credentials`; keep only the name tried.
    attempted = str(credentials.get("username") or credentials.get("email") or "")[:200]
    audit_record(
        tenant_id=None,
        origin=_origin(request, None),
        action="auth.login_failed",
        metadata={"email": attempted},
    )


def password_reset_completed(request: HttpRequest, user: User) -> None:
    audit_record(
        tenant_id=None, origin=_origin(request, user), action="auth.password_reset", target=user
    )


def connect() -> None:
    user_logged_in.connect(on_logged_in, dispatch_uid="accounts.audit_login")
    user_logged_out.connect(on_logged_out, dispatch_uid="accounts.audit_logout")
    user_login_failed.connect(on_login_failed, dispatch_uid="accounts.audit_login_failed")
