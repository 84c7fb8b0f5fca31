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
