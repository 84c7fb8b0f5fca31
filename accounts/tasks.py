"""Celery tasks of accounts, and `tenant_task`, the decorator every tenant task uses.

Tasks take ids, never model instances; a tenant task's first argument is the tenant
id and its body runs inside tenant_scope(tenant_id), so a task can only touch the
tenant it was queued for. Tasks are idempotent: running one twice changes nothing more.
"""

import functools
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from accounts.tenancy import tenant_scope, unscoped


def tenant_task(*task_args: Any, **task_options: Any) -> Callable:
    """Like @shared_task, for tasks whose first argument is a tenant id."""

    def decorator(func: Callable) -> Any:
        @functools.wraps(func)
        def run_in_tenant(tenant_id: int, *args: Any, **kwargs: Any) -> Any:
            with tenant_scope(int(tenant_id)):
                return func(int(tenant_id), *args, **kwargs)

        return shared_task(*task_args, **task_options)(run_in_tenant)

    return decorator


@tenant_task(
    name="accounts.tasks.send_invitation_email",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def send_invitation_email(tenant_id: int, invitation_id: int, token: str) -> bool:
    """Mail the invitation link once; a retry after success sends nothing."""
    from accounts.models import Invitation

    invitation = (
        Invitation.objects.select_for_update()
        .select_related("tenant", "invited_by")
        .filter(pk=invitation_id)
        .first()
    )
    if invitation is None or invitation.sent_at is not None or not invitation.is_pending:
        return False
    link = settings.SITE_URL.rstrip("/") + reverse("invitation_accept", args=[token])
    with translation.override(invitation.tenant.language):
        context = {"invitation": invitation, "tenant": invitation.tenant, "link": link}
        subject = render_to_string("accounts/email/invitation_subject.txt", context).strip()
        body = render_to_string("accounts/email/invitation_body.txt", context)
    send_mail(subject, body, None, [invitation.email])
    invitation.sent_at = timezone.now()
    invitation.save(update_fields=["sent_at"])
    return True


@shared_task(name="accounts.tasks.expire_invitations")
def expire_invitations() -> int:
    """Platform job: mark expired pending invitations revoked, across all tenants."""
    from accounts.models import Invitation

    now = timezone.now()
    with unscoped(reason="periodic platform job: expire invitations"):
        return Invitation.objects.filter(
            accepted_at__isnull=True, revoked_at__isnull=True, expires_at__lte=now
        ).update(revoked_at=now)


@tenant_task(name="accounts.tasks.tenant_probe")
def tenant_probe(tenant_id: int) -> dict:
    """Reports which tenant the worker ran in, as the database sees it. Used by the
    worker health check and the tests that run a real worker."""
    from django.db import connection

    from accounts.models import Membership

    with connection.cursor() as cursor:
        db_tenant = None
        if connection.vendor == "postgresql":
            cursor.execute("SELECT current_setting('app.tenant_id', true), current_user")
            db_tenant, db_role = cursor.fetchone()
        else:
            db_role = None
    return {
        "tenant_id": tenant_id,
        "db_tenant_id": db_tenant,
        "db_role": db_role,
        "visible_member_tenants": sorted(
            set(Membership.objects.values_list("tenant_id", flat=True))
        ),
    }
