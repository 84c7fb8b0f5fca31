"""Celery tasks of the campaigns app."""

from celery import shared_task


@shared_task(name="campaigns.tasks.fold_campaign_counts")
def fold_campaign_counts() -> int:
    """Platform job (every minute): fold each campaign's CampaignCounts rows into one,
    so reading a campaign's figures stays a handful of rows (campaigns.counts)."""
    from campaigns.counts import counts_fold

    return counts_fold()


@shared_task(name="campaigns.tasks.enrol_campaign_members")
def enrol_campaign_members(tenant_id: int, campaign_id: int, lead_ids: list[int]) -> list[int]:
    """New members of a campaign enter the sequences that enrol its members
    (idempotent: a lead already in a sequence is left alone)."""
    from campaigns.nurture.services import enrol_on_campaign

    return enrol_on_campaign(tenant_id=tenant_id, campaign_id=campaign_id, lead_ids=lead_ids)


@shared_task(name="campaigns.tasks.nurture_dispatch")
def nurture_dispatch() -> int:
    """Platform job (beat, every few seconds): one dispatch task per tenant with due
    nurture steps. Returns the number of tenants queued."""
    from campaigns.nurture.dispatch import tenants_with_due_work

    tenant_ids = tenants_with_due_work()
    for tenant_id in tenant_ids:
        nurture_dispatch_tenant.delay(tenant_id)
    return len(tenant_ids)


# Not a tenant_task: the dispatcher commits in several short transactions of its own
# (claim, rows before sending, each send's outcome), each in tenant_scope(tenant_id).
@shared_task(name="campaigns.tasks.nurture_dispatch_tenant")
def nurture_dispatch_tenant(tenant_id: int, max_batches: int = 50) -> dict[str, int]:
    """Run a tenant's due nurture steps (campaigns.nurture.dispatch). Safe to run
    twice or in parallel: claims skip locked rows, and each mail has one row."""
    from campaigns.nurture.dispatch import dispatch_tenant

    return dispatch_tenant(int(tenant_id), max_batches=int(max_batches))
