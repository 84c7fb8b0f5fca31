"""Handlers campaigns registers for the in-transaction hooks of lower apps (leads calls
them through accounts.events without importing campaigns). Registered in
CampaignsConfig.ready()."""

from campaigns.models import CampaignMembership
from campaigns.services import memberships_add_bulk


def leads_responded(
    *,
    tenant_id: int,
    campaign_id: int,
    lead_ids: list[int],
    status: str = CampaignMembership.Status.RESPONDED,
) -> dict[int, str]:
    """`campaign.leads_responded`: leads answered a campaign (a form submission, an
    import assigned to it). One set-based statement for the whole list; each lead's
    outcome comes back to the caller."""
    return memberships_add_bulk(
        tenant_id=tenant_id, campaign_id=campaign_id, lead_ids=lead_ids, status=status
    )
