"""Celery tasks of the campaigns app."""

from celery import shared_task


@shared_task(name="campaigns.tasks.fold_campaign_counts")
def fold_campaign_counts() -> int:
    """Platform job (every minute): fold each campaign's CampaignCounts rows into one,
    so reading a campaign's figures stays a handful of rows (campaigns.counts)."""
    from campaigns.counts import counts_fold

    return counts_fold()
