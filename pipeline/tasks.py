"""Celery tasks of pipeline: thin, calling pipeline.services."""

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from accounts.tasks import _tenant_id
from accounts.tenancy import unscoped


@shared_task(name="pipeline.tasks.check_handoff_slas")
def check_handoff_slas() -> int:
    """Platform job (beat, every minute): queue one SLA check per tenant that has a
    reminder or an escalation due. Only the tenant ids cross tenants; each check runs
    in its tenant's scope."""
    from pipeline.models import Handoff

    now = timezone.now()
    with unscoped(reason="periodic platform job: tenants with handoff SLA work due"):
        tenant_ids = sorted(
            set(
                # remind_at <= deadline, so both cases have remind_at <= now: the partial
                # index on (remind_at) WHERE status = 'open' bounds the scan.
                Handoff.objects.filter(status=Handoff.Status.OPEN, remind_at__lte=now)
                .filter(
                    Q(reminder_sent_at__isnull=True, remind_at__lte=now, deadline__gt=now)
                    | Q(escalated_at__isnull=True, deadline__lte=now)
                )
                .values_list("tenant_id", flat=True)
                .distinct()
            )
        )
    for tenant_id in tenant_ids:
        check_tenant_slas.delay(tenant_id)
    return len(tenant_ids)


@shared_task(
    name="pipeline.tasks.check_tenant_slas",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def check_tenant_slas(tenant_id: int) -> dict:
    """Reminders and escalations of one tenant. Not a tenant_task on purpose: each
    handoff is claimed and marked in a transaction of its own (services.sla_check), so
    a mail server failing half-way keeps what was sent marked as sent."""
    from pipeline.services import sla_check

    return sla_check(tenant_id=_tenant_id(tenant_id))
