"""Handlers campaigns registers for the in-transaction hooks and the outbox events of
lower apps (leads calls them through accounts.events without importing campaigns).
Registered in CampaignsConfig.ready()."""

from accounts.models import DomainEvent
from campaigns.models import CampaignMembership
from campaigns.services import memberships_add_bulk, memberships_merge_leads


def leads_responded(
    *,
    tenant_id: int,
    campaign_id: int,
    lead_ids: list[int],
    status: str = CampaignMembership.Status.RESPONDED,
) -> dict[int, str]:
    """`campaign.leads_responded`: leads answered a campaign (a form submission, an
    import assigned to it). One set-based statement for the whole list; each lead's
    outcome comes back to the caller. A hook's work commits or rolls back with the
    caller's: it joins the caller's transaction without a savepoint of its own."""
    return memberships_add_bulk(
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        lead_ids=lead_ids,
        status=status,
        savepoint=False,
    )


def leads_merged(*, tenant_id: int, keep_id: int, merge_id: int) -> int:
    """`campaign.leads_merged`: lead `merge_id` was merged into `keep_id`; its campaign
    memberships follow it (see memberships_merge_leads)."""
    return memberships_merge_leads(tenant_id=tenant_id, keep_id=keep_id, merge_id=merge_id)


def lead_lifecycle_changed(event: DomainEvent) -> None:
    """`lead.lifecycle_changed` (outbox, at least once): SQL/customer leave their
    sequences; recycled leads, and leads reaching a stage, enter the sequences that take
    them (nurture services)."""
    from campaigns.nurture.services import lead_stage_changed

    lead_id, to_stage = event.payload.get("lead_id"), event.payload.get("to")
    if isinstance(lead_id, int) and isinstance(to_stage, str):
        lead_stage_changed(
            tenant_id=event.tenant_id, lead_id=lead_id, to_stage=to_stage, since=event.occurred_at
        )


def form_submitted(event: DomainEvent) -> None:
    """`form.submitted` (outbox, at least once): the lead enters the sequences that
    enrol the form's submitters (nurture services)."""
    from campaigns.nurture.services import enrol_on_form

    lead_id, form_id = event.payload.get("lead_id"), event.payload.get("form_id")
    if isinstance(lead_id, int) and isinstance(form_id, int):
        enrol_on_form(
            tenant_id=event.tenant_id, form_id=form_id, lead_id=lead_id, since=event.occurred_at
        )


def members_added(event: DomainEvent) -> None:
    """`campaign.members_added` (outbox, at least once): new members of a campaign enter
    the active sequences that enrol its members (idempotent: a lead already in a
    sequence is left alone)."""
    from campaigns.nurture.services import enrol_on_campaign

    campaign_id, lead_ids = event.payload.get("campaign_id"), event.payload.get("lead_ids")
    if isinstance(campaign_id, int) and isinstance(lead_ids, list):
        enrol_on_campaign(tenant_id=event.tenant_id, campaign_id=campaign_id, lead_ids=lead_ids)
