"""Celery tasks of accounts, and `tenant_task`, the decorator every tenant task uses.

Tasks take ids, never model instances; a tenant task's first argument is the tenant
id and its body runs inside tenant_scope(tenant_id), so a task can only touch the
tenant it was queued for. Tasks are idempotent: running one twice changes nothing more.
Services queue them with transaction.on_commit, so a worker never looks for a row that
is not committed yet, and a rolled-back change queues nothing.
"""

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from accounts.tenancy import tenant_scope, unscoped


def _tenant_id(value: Any) -> int:
    # JSON gives back the int we sent; refuse anything else rather than guess a tenant.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a tenant task's first argument must be a tenant id, got {value!r}")
    return value


def tenant_task(*task_args: Any, **task_options: Any) -> Any:
    """Like @shared_task, for tasks whose first argument is a tenant id (after `self`
    with bind=True). The body, and so every query and the task's transaction, runs
    inside tenant_scope(tenant_id): as the app role, with row-level security set to
    that tenant. Usable bare (`@tenant_task`) or with Celery options."""
    if len(task_args) == 1 and callable(task_args[0]) and not task_options:
        return tenant_task()(task_args[0])
    bind = bool(task_options.get("bind"))

    def decorator(func: Callable) -> Any:
        if bind:

            @functools.wraps(func)
            def run_in_tenant(task: Any, tenant_id: int, *args: Any, **kwargs: Any) -> Any:
                with tenant_scope(_tenant_id(tenant_id)):
                    return func(task, tenant_id, *args, **kwargs)

        else:

            @functools.wraps(func)
            def run_in_tenant(tenant_id: int, *args: Any, **kwargs: Any) -> Any:
                with tenant_scope(_tenant_id(tenant_id)):
                    return func(tenant_id, *args, **kwargs)

        return shared_task(*task_args, **task_options)(run_in_tenant)

    return decorator


@tenant_task(
    name="accounts.tasks.send_invitation_email",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def send_invitation_email(tenant_id: int, invitation_id: int, token: str) -> bool:
    """Mail the invitation link once; a retry after success sends nothing.

    The row lock makes two deliveries of the task wait for each other, and the second
    then sees sent_at. The mail goes out before sent_at commits: a crash in between
    sends it again on retry (at least once, never lost)."""
    from accounts.models import Invitation

    invitation = (
        Invitation.objects.select_for_update(of=("self",))
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


EVENT_MAX_ATTEMPTS = 10
EVENT_SWEEP_AGE = timedelta(seconds=30)


EVENT_CLAIM_CHUNK = 500


@tenant_task(name="accounts.tasks.dispatch_events")
def dispatch_events(tenant_id: int, event_ids: list[int]) -> int:
    """Dispatch outbox events once each. Rows are claimed a chunk at a time with FOR
    UPDATE SKIP LOCKED, so two workers never hand the same event over at once; each
    event's handlers run in a savepoint of their own, a failure is recorded on that
    event (the sweep tries it again later), and the dispatched ones are marked with one
    UPDATE per chunk: a promotion of 10,000 leads to MQL is not 20,000 transactions."""
    from django.db import transaction
    from django.db.models import F

    from accounts.events import dispatch, handlers_for
    from accounts.models import DomainEvent

    dispatched = 0
    for start in range(0, len(event_ids), EVENT_CLAIM_CHUNK):
        chunk = event_ids[start : start + EVENT_CLAIM_CHUNK]
        with transaction.atomic():
            claimed = list(
                DomainEvent.objects.select_for_update(skip_locked=True)
                .filter(pk__in=chunk, dispatched_at__isnull=True)
                .order_by("pk")
            )
            done = []
            for event in claimed:
                if handlers_for(event.name):
                    try:
                        with transaction.atomic():
                            dispatch(event)
                    except Exception as exc:  # recorded on the event; the sweep retries it
                        DomainEvent.objects.filter(pk=event.pk).update(
                            attempts=F("attempts") + 1,
                            last_error=f"{type(exc).__name__}: {exc}"[:2000],
                        )
                        continue
                done.append(event.pk)
            if done:
                DomainEvent.objects.filter(pk__in=done).update(
                    dispatched_at=timezone.now(), attempts=F("attempts") + 1
                )
            dispatched += len(done)
    return dispatched


SIGNAL_DRAIN_CHUNK = 1000


@shared_task(name="accounts.tasks.dispatch_signalled_events")
def dispatch_signalled_events() -> int:
    """Dispatch the events whose ids committed transactions pushed to the Redis list
    (accounts.events._send_dispatch), until the list is empty. The queued flag is
    cleared first: ids pushed after that queue a task of their own."""
    from collections import defaultdict

    from accounts.events import SIGNAL_LIST, SIGNAL_QUEUED
    from accounts.redis import redis_client

    client = redis_client()
    client.delete(SIGNAL_QUEUED)
    dispatched = 0
    while entries := client.lpop(SIGNAL_LIST, SIGNAL_DRAIN_CHUNK):
        by_tenant: dict[int, list[int]] = defaultdict(list)
        for entry in entries:
            tenant, _, ids = entry.decode().partition(":")
            by_tenant[int(tenant)].extend(int(pk) for pk in ids.split(",") if pk)
        for tenant_id, ids in by_tenant.items():
            dispatched += dispatch_events(tenant_id, ids)
    return dispatched


@shared_task(name="accounts.tasks.sweep_undispatched_events")
def sweep_undispatched_events(limit: int = 5000) -> int:
    """Platform job: re-send events a crash (or a failing handler) left undispatched."""
    from collections import defaultdict

    from accounts.models import DomainEvent

    cutoff = timezone.now() - EVENT_SWEEP_AGE
    with unscoped(reason="periodic platform job: re-send undispatched domain events"):
        pending = list(
            DomainEvent.objects.filter(
                dispatched_at__isnull=True,
                occurred_at__lt=cutoff,
                attempts__lt=EVENT_MAX_ATTEMPTS,
            )
            .order_by("occurred_at")
            .values_list("tenant_id", "id")[:limit]
        )
    by_tenant: dict[int, list[int]] = defaultdict(list)
    for tenant_id, event_id in pending:
        by_tenant[tenant_id].append(event_id)
    for tenant_id, ids in by_tenant.items():
        dispatch_events.delay(tenant_id, ids)
    return len(pending)


@shared_task(name="accounts.tasks.purge_idempotency_records")
def purge_idempotency_records() -> int:
    """Platform job: forget idempotency keys older than their 24-hour lifetime."""
    from accounts.api.idempotency import idempotency_purge_expired

    return idempotency_purge_expired()


@tenant_task(bind=True, name="accounts.tasks.tenant_probe")
def tenant_probe(self, tenant_id: int) -> dict:
    """Reports which worker ran it and which tenant it ran in, as the database sees it.
    Used by the worker health check and the tests that run a real worker."""
    from django.db import connection

    from accounts.models import Membership

    db_tenant = db_role = None
    db_visible: list[int] = []
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('app.tenant_id', true), current_user")
            db_tenant, db_role = cursor.fetchone()
            # Raw SQL, past the ORM's tenant filter: what row-level security alone lets
            # this task see.
            table = connection.ops.quote_name(Membership._meta.db_table)
            cursor.execute(f"SELECT DISTINCT tenant_id FROM {table} ORDER BY tenant_id")
            db_visible = [row[0] for row in cursor.fetchall()]
    return {
        # Which worker ran it; None when run eagerly, in-process.
        "worker": None if self.request.is_eager else self.request.hostname,
        "tenant_id": tenant_id,
        "db_tenant_id": db_tenant,
        "db_role": db_role,
        "visible_member_tenants": sorted(
            set(Membership.objects.values_list("tenant_id", flat=True))
        ),
        "db_visible_member_tenants": db_visible,
    }


# --- Webhooks -------------------------------------------------------------------------------


@shared_task(name="accounts.tasks.deliver_webhooks")
def deliver_webhooks(tenant_id: int, delivery_ids: list[int]) -> dict:
    """Send the due deliveries among `delivery_ids`. Not a tenant_task on purpose: the
    claim and each result commit in transactions of their own (tenant-scoped), and the
    HTTP requests run outside any transaction. Idempotent: a delivery already claimed,
    finished or not yet due is skipped."""
    from accounts.webhooks.delivery import deliver

    return deliver(_tenant_id(tenant_id), [int(pk) for pk in delivery_ids])


@shared_task(name="accounts.tasks.retry_webhook_deliveries")
def retry_webhook_deliveries(limit: int = 5000) -> int:
    """Platform job: queue retries that are due, deliveries whose worker's lease ran out,
    and new deliveries whose task was lost."""
    from accounts.webhooks.delivery import retry_due

    return retry_due(limit)


@tenant_task(
    name="accounts.tasks.send_webhook_disabled_notice",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def send_webhook_disabled_notice(tenant_id: int, endpoint_id: int) -> int:
    """Mail the tenant's owners and admins that an endpoint was disabled for failing.
    Sent once per disabling (disabled_notice_sent_at, under a row lock)."""
    from accounts.models import ADMIN_ROLES, Membership, Tenant
    from accounts.webhooks.models import WebhookEndpoint

    endpoint = (
        WebhookEndpoint.objects.select_for_update()
        .filter(pk=endpoint_id, is_active=False, disabled_reason="failing")
        .first()
    )
    if endpoint is None or endpoint.disabled_notice_sent_at is not None:
        return 0
    tenant = Tenant.objects.get(pk=tenant_id)
    recipients = sorted(
        Membership.objects.filter(role__in=ADMIN_ROLES, user__is_active=True).values_list(
            "user__email", flat=True
        )
    )
    link = settings.SITE_URL.rstrip("/") + reverse(
        "accounts:webhooks", kwargs={"tenant": tenant.slug}
    )
    with translation.override(tenant.language):
        context = {"endpoint": endpoint, "tenant": tenant, "link": link}
        subject = render_to_string("accounts/email/webhook_disabled_subject.txt", context).strip()
        body = render_to_string("accounts/email/webhook_disabled_body.txt", context)
    if recipients:
        send_mail(subject, body, None, recipients)
    endpoint.disabled_notice_sent_at = timezone.now()
    endpoint.save(update_fields=["disabled_notice_sent_at"])
    return len(recipients)
