"""The append-only logs (activities, consent events, lifecycle transitions) reference
leads, campaigns, visitors and users without database foreign keys (leads/models/
people.py says why): deleting through Django must still leave no row pointing at
nothing, and the indexes that replaced the constraints' must serve those deletes."""

import pytest
from django.db import connection

from accounts.services import Origin
from accounts.tenancy import tenant_scope, unscoped
from campaigns.models import CampaignMembership
from campaigns.services import campaign_delete
from campaigns.tests.factories import CampaignFactory, CampaignMembershipFactory
from leads.models import Activity, ConsentEvent, Lead, LifecycleTransition
from leads.services.leads import lead_delete
from leads.tests.factories import (
    ActivityFactory,
    ConsentEventFactory,
    LeadFactory,
    LifecycleTransitionFactory,
    VisitorFactory,
)

pytestmark = pytest.mark.django_db


LOG_FOREIGN_KEYS = (
    ("leads_activity", "lead_id"),
    ("leads_activity", "campaign_id"),
    ("leads_activity", "visitor_id"),
    ("leads_consentevent", "lead_id"),
    ("leads_consentevent", "actor_id"),
    ("leads_lifecycletransition", "lead_id"),
    ("leads_lifecycletransition", "actor_id"),
)


def _foreign_key_columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT a.attname FROM pg_constraint c
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
               WHERE c.conrelid = %s::regclass AND c.contype = 'f'""",
            [table],
        )
        return {row[0] for row in cursor.fetchall()}


def _indexed_first(table: str, column: str) -> bool:
    """Whether some index of the table starts with the column, or with the tenant and
    then the column (what a delete's lookup by that column needs: deletes run in the
    tenant's scope, where RLS adds the tenant)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT 1 FROM pg_index i
               JOIN pg_attribute a0 ON a0.attrelid = i.indrelid AND a0.attnum = i.indkey[0]
               LEFT JOIN pg_attribute a1
                 ON a1.attrelid = i.indrelid AND a1.attnum = i.indkey[1]
               WHERE i.indrelid = %s::regclass
                 AND (a0.attname = %s OR (a0.attname = 'tenant_id' AND a1.attname = %s))""",
            [table, column, column],
        )
        return cursor.fetchone() is not None


def test_log_tables_have_no_foreign_key_constraints_but_indexes_for_them():
    for table, column in LOG_FOREIGN_KEYS:
        assert column not in _foreign_key_columns(table), (table, column)
        assert _indexed_first(table, column), (table, column)
    # Leads and memberships keep theirs.
    assert {"company_id", "owner_id", "source_campaign_id", "merged_into_id"} <= (
        _foreign_key_columns("leads_lead")
    )
    assert {"campaign_id", "lead_id"} <= _foreign_key_columns("campaigns_campaignmembership")


def test_deleting_a_lead_removes_its_log_rows(world_a):
    tenant = world_a.tenant
    lead, other = LeadFactory(tenant=tenant), LeadFactory(tenant=tenant)
    for subject in (lead, other):
        ActivityFactory(tenant=tenant, lead=subject)
        ConsentEventFactory(tenant=tenant, lead=subject)
        LifecycleTransitionFactory(tenant=tenant, lead=subject)
        CampaignMembershipFactory(tenant=tenant, lead=subject)
    lead_delete(lead=lead, origin=Origin(actor=world_a.owner))
    with tenant_scope(tenant.id):
        for model in (Activity, ConsentEvent, LifecycleTransition, CampaignMembership):
            assert not model.objects.filter(lead_id=lead.id).exists(), model
            assert model.objects.filter(lead_id=other.id).count() == 1, model


def test_deleting_a_campaign_or_visitor_nulls_the_activities(world_a):
    tenant = world_a.tenant
    lead = LeadFactory(tenant=tenant)
    campaign = CampaignFactory(tenant=tenant)
    visitor = VisitorFactory(tenant=tenant)
    kept = ActivityFactory(tenant=tenant, lead=lead, campaign=campaign, visitor=visitor)
    campaign_delete(campaign=campaign, origin=Origin(actor=world_a.owner))
    with tenant_scope(tenant.id):
        visitor.delete()
        kept.refresh_from_db()
    assert kept.campaign_id is None
    assert kept.visitor_id is None


def test_deleting_a_user_nulls_the_actor_of_log_rows(world_a):
    tenant = world_a.tenant
    actor = world_a.member()
    lead = LeadFactory(tenant=tenant)
    consent = ConsentEventFactory(tenant=tenant, lead=lead, actor=actor)
    transition = LifecycleTransitionFactory(tenant=tenant, lead=lead, actor=actor)
    with unscoped(reason="test: a user's account erased"):
        actor.delete()
        consent.refresh_from_db()
        transition.refresh_from_db()
        assert Lead.objects.filter(pk=lead.pk).exists()
    assert consent.actor_id is None
    assert transition.actor_id is None
