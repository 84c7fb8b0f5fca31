"""Celery tasks of the campaigns app."""

from celery import shared_task


@shared_task(name="campaigns.tasks.fold_campaign_counts")
def fold_campaign_counts() -> int:
    """Platform job (every minute): fold each campaign's CampaignCounts rows into one,
    so reading a campaign's figures stays a handful of rows (campaigns.counts)."""
    from campaigns.counts import counts_fold

    return counts_fold()


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


@shared_task(name="campaigns.tasks.evaluate_segments")
def evaluate_segments() -> int:
    """Platform job (beat, every five minutes): one evaluation task per tenant with an
    active sequence enrolling on a segment. Returns the number of tenants queued."""
    from campaigns.nurture.segments import tenants_with_segment_sequences

    tenant_ids = tenants_with_segment_sequences()
    for tenant_id in tenant_ids:
        evaluate_segments_tenant.delay(tenant_id)
    return len(tenant_ids)


# Not a tenant_task: each segment is evaluated in a transaction of its own.
@shared_task(name="campaigns.tasks.evaluate_segments_tenant")
def evaluate_segments_tenant(tenant_id: int) -> dict[str, int]:
    """Refresh a tenant's segments and enrol their new members
    (campaigns.nurture.segments). Safe to run twice or in parallel: the enrolment
    INSERT leaves live and finished leads alone, the member refresh is one statement
    under the segment's row lock."""
    from campaigns.nurture.segments import segments_evaluate_tenant

    return segments_evaluate_tenant(int(tenant_id))
