"""Stored campaign figures (campaigns.counts): the triggers keep CampaignCounts equal to
counting the memberships and leads themselves, through every kind of write; the fold
keeps one row per campaign; writers to one campaign never wait on each other."""

import threading

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum

from accounts.services import Origin
from accounts.tenancy import tenant_scope, unscoped
from campaigns import counts, selectors, services
from campaigns.models import CampaignCounts, CampaignMembership
from campaigns.tests.factories import CampaignFactory, CampaignMembershipFactory
from leads.models import Lead
from leads.services import lead_merge
from leads.services.leads import lead_delete
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

STATUSES = counts.STATUSES


def live(campaign_id: int) -> dict[str, int]:
    """The figures counted from the rows themselves."""
    figures = dict.fromkeys((*STATUSES, "leads_generated"), 0)
    with unscoped(reason="test: live count"):
        rows = (
            CampaignMembership.objects.filter(campaign_id=campaign_id)
            .values_list("status")
            .annotate(n=Count("pk"))
        )
        figures.update(dict(rows))
        figures["leads_generated"] = Lead.objects.filter(
            source_campaign_id=campaign_id, merged_into__isnull=True
        ).count()
    return figures


def stored(campaign_id: int) -> dict[str, int]:
    with unscoped(reason="test: stored count"):
        sums = CampaignCounts.objects.filter(campaign_id=campaign_id).aggregate(
            **{column: Sum(column) for column in counts.COLUMNS}
        )
    return {column: value or 0 for column, value in sums.items()}


def rows_of(campaign_id: int) -> int:
    with unscoped(reason="test: count rows"):
        return CampaignCounts.objects.filter(campaign_id=campaign_id).count()


def test_every_kind_of_write_keeps_the_stored_figures_exact(world_a):
    tenant = world_a.tenant
    origin = Origin(actor=world_a.owner)
    show, webinar = CampaignFactory(tenant=tenant), CampaignFactory(tenant=tenant)
    leads = [LeadFactory(tenant=tenant, source_campaign=show) for _ in range(6)]
    LeadFactory(tenant=tenant, source_campaign=webinar)
    LeadFactory(tenant=tenant)  # no source: counted nowhere
    assert stored(show.id) == live(show.id)
    assert stored(show.id)["leads_generated"] == 6

    # Bulk add, then a further status for some (ON CONFLICT … DO UPDATE), a status set
    # back by hand, a removal.
    ids = [lead.id for lead in leads]
    services.memberships_add_bulk(
        tenant_id=tenant.id, campaign_id=show.id, lead_ids=ids, status="registered"
    )
    services.memberships_add_bulk(
        tenant_id=tenant.id, campaign_id=show.id, lead_ids=ids[:3], status="attended"
    )
    with tenant_scope(tenant.id):
        first = CampaignMembership.objects.get(campaign=show, lead_id=ids[0])
        last = CampaignMembership.objects.get(campaign=show, lead_id=ids[-1])
    services.membership_set_status(membership=first, status="no_show", origin=origin)
    services.membership_remove(membership=last, origin=origin)
    figures = stored(show.id)
    assert figures == live(show.id)
    assert (figures["attended"], figures["no_show"], figures["registered"]) == (2, 1, 2)

    # A lead's source changes; a lead is merged into another; a lead is deleted.
    with tenant_scope(tenant.id):
        Lead.objects.filter(pk=ids[1]).update(source_campaign=webinar)
    lead_merge(keep=leads[2], merge=leads[3], origin=origin)
    lead_delete(lead=leads[4], origin=origin)
    for campaign in (show, webinar):
        assert stored(campaign.id) == live(campaign.id), campaign
    assert stored(show.id)["leads_generated"] == 3  # 6 - moved - merged - deleted
    assert stored(webinar.id)["leads_generated"] == 2


def test_fold_leaves_one_row_per_campaign_with_the_same_sums(world_a):
    tenant = world_a.tenant
    campaign = CampaignFactory(tenant=tenant)
    for _ in range(4):
        CampaignMembershipFactory(tenant=tenant, campaign=campaign)
    assert rows_of(campaign.id) >= 4
    before = stored(campaign.id)
    counts.counts_fold()
    assert rows_of(campaign.id) == 1
    assert stored(campaign.id) == before == live(campaign.id)
    assert counts.counts_fold() == 0  # nothing left to fold


def test_fold_drops_the_rows_of_a_deleted_campaign(world_a):
    tenant = world_a.tenant
    campaign = CampaignFactory(tenant=tenant)
    CampaignMembershipFactory(tenant=tenant, campaign=campaign)
    LeadFactory(tenant=tenant, source_campaign=campaign)
    services.campaign_delete(campaign=campaign, origin=Origin(actor=world_a.owner))
    counts.counts_fold()
    assert rows_of(campaign.id) == 0


def test_rebuild_agrees_with_the_triggers_and_install_recounts_an_empty_table(world_a, world_b):
    campaigns = []
    for world in (world_a, world_b):
        campaign = CampaignFactory(tenant=world.tenant)
        campaigns.append(campaign)
        for status in ("invited", "responded", "responded"):
            CampaignMembershipFactory(tenant=world.tenant, campaign=campaign, status=status)
        LeadFactory(tenant=world.tenant, source_campaign=campaign)
    incremental = [stored(c.id) for c in campaigns]
    counts.counts_rebuild(world_a.tenant.id)
    assert [stored(c.id) for c in campaigns] == incremental
    assert rows_of(campaigns[0].id) == 1

    with unscoped(reason="test: lose the stored figures"):
        CampaignCounts.objects.all().delete()
    assert counts.counts_install() is True  # what post_migrate runs
    assert [stored(c.id) for c in campaigns] == incremental
    assert counts.counts_install() is False  # idempotent: nothing to recount


def test_the_campaign_list_reads_the_stored_figures(world_a):
    tenant = world_a.tenant
    campaign = CampaignFactory(tenant=tenant, target_leads=10)
    CampaignMembershipFactory(tenant=tenant, campaign=campaign, status="attended")
    LeadFactory(tenant=tenant, source_campaign=campaign)
    with tenant_scope(tenant.id):
        figures = selectors.campaign_figures(selectors.campaign_get(campaign_id=campaign.id))
    assert figures.members["attended"] == 1
    assert figures.members["total"] == 1
    assert figures.leads_generated == 1
    # The list adds up the rows, not the memberships: a row written by hand shows.
    with tenant_scope(tenant.id):
        CampaignCounts.objects.create(tenant=tenant, campaign=campaign, invited=5)
        figures = selectors.campaign_figures(selectors.campaign_get(campaign_id=campaign.id))
    assert figures.members["invited"] == 5
    assert figures.members["total"] == 6
    assert "leads_generated" not in figures.members


@pytest.mark.django_db(transaction=True)
def test_two_writers_to_one_campaign_do_not_wait_on_each_other(world_a):
    """A transaction holding new members of a campaign open does not block another
    adding members to the same campaign: the figures are appended, never updated."""
    tenant = world_a.tenant
    campaign = CampaignFactory(tenant=tenant)
    first, second = LeadFactory(tenant=tenant), LeadFactory(tenant=tenant)
    dsn = connection.get_connection_params()
    app_role = settings.DB_APP_ROLE

    def add_member(conn: psycopg.Connection, lead_id: int) -> None:
        conn.execute(f'SET LOCAL ROLE "{app_role}"')
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", [str(tenant.id)])
        conn.execute(
            "INSERT INTO campaigns_campaignmembership "
            "(tenant_id, campaign_id, lead_id, status, created_at, updated_at) "
            "VALUES (%s, %s, %s, 'responded', now(), now())",
            [tenant.id, campaign.id, lead_id],
        )

    holder = psycopg.connect(**dsn)
    try:
        add_member(holder, first.id)  # open transaction, not committed
        done = threading.Event()

        def other() -> None:
            with psycopg.connect(**dsn) as conn:
                conn.execute("SET lock_timeout = '3s'")
                add_member(conn, second.id)
                conn.commit()
            done.set()

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=10)
        assert done.is_set(), "the second writer waited for the first"
        holder.commit()
    finally:
        holder.close()
    assert stored(campaign.id)["responded"] == 2 == live(campaign.id)["responded"]


def test_the_fold_runs_every_minute_as_a_task(world_a):
    from campaigns.tasks import fold_campaign_counts
    from config.celery import app

    entry = app.conf.beat_schedule["campaigns-fold-campaign-counts"]
    assert entry["task"] == fold_campaign_counts.name
    assert entry["schedule"] == 60.0
    campaign = CampaignFactory(tenant=world_a.tenant)
    for _ in range(3):
        CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign)
    assert fold_campaign_counts.apply().get() >= 1
    assert rows_of(campaign.id) == 1
