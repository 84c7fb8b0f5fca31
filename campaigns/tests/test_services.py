"""Campaign and membership services: validation, money, the status precedence of
adding members (set-based), the hook leads calls, role rules and auditing."""

from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import events
from accounts.models import AuditLog, Membership, Role
from accounts.services import SYSTEM, Origin
from accounts.tenancy import tenant_scope
from accounts.tests.factories import (
    AgencyAssignmentFactory,
    AgencyFactory,
    MembershipFactory,
    UserFactory,
)
from campaigns import services
from campaigns.models import Campaign, CampaignChannel, CampaignMembership
from campaigns.tests.factories import CampaignFactory, CampaignMembershipFactory
from leads.services import lead_merge
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

Status = CampaignMembership.Status
MARKETER = Origin(role=Role.MARKETING)


def create(world, **fields) -> Campaign:
    fields.setdefault("name", "秋の展示会")
    fields.setdefault("channel", CampaignChannel.TRADE_SHOW)
    return services.campaign_create(tenant_id=world.tenant.id, origin=MARKETER, **fields)


def field_errors(exc: ValidationError) -> set[str]:
    return set(exc.value.message_dict)


# --- Campaigns -----------------------------------------------------------------------------


def test_create_normalises_currency_and_money(world_a):
    campaign = create(world_a, currency="usd", budget="1200.50", actual_cost=Decimal("99"))
    with tenant_scope(world_a.tenant.id):
        stored = Campaign.objects.get(pk=campaign.pk)
    assert stored.currency == "USD"
    assert stored.budget == Decimal("1200.50")
    assert stored.actual_cost == Decimal("99.00")
    assert stored.name == "秋の展示会"


def test_create_defaults_to_yen_and_planned(world_a):
    campaign = create(world_a)
    assert campaign.currency == "JPY"
    assert campaign.status == Campaign.Status.PLANNED


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"starts_on": date(2025, 5, 2), "ends_on": date(2025, 5, 1)}, {"ends_on"}),
        ({"budget": Decimal("-1")}, {"budget"}),
        ({"actual_cost": "-0.01"}, {"actual_cost"}),
        ({"budget": 10.5}, {"budget"}),  # a float is not money
        ({"budget": "ten"}, {"budget"}),
        ({"budget": "NaN"}, {"budget"}),
        ({"budget": "1000.5"}, {"budget"}),  # yen has no decimals
        ({"currency": "YEN"}, {"currency"}),
        ({"currency": "XAU"}, {"currency"}),  # gold is not a currency to spend
        ({"channel": "carrier_pigeon"}, {"channel"}),
        ({"status": "paused"}, {"status"}),
        ({"name": "  "}, {"name"}),
        ({"target_leads": -5}, {"target_leads"}),
        ({"budget": "1" * 13}, {"budget"}),  # more digits than the column keeps
        ({"actual_cost": "1e30"}, {"actual_cost"}),
    ],
)
def test_create_refuses_invalid_fields_naming_them(world_a, fields, bad):
    with pytest.raises(ValidationError) as exc:
        create(world_a, **fields)
    assert field_errors(exc) == bad
    with tenant_scope(world_a.tenant.id):
        assert not Campaign.objects.exists()


def test_several_errors_are_reported_together(world_a):
    with pytest.raises(ValidationError) as exc:
        create(world_a, channel="fax", budget="-3", currency="???")
    assert field_errors(exc) == {"channel", "budget", "currency"}


def test_cents_are_fine_in_dollars_not_in_yen(world_a):
    assert create(world_a, currency="USD", budget="10.25").budget == Decimal("10.25")
    with pytest.raises(ValidationError):
        create(world_a, currency="JPY", budget="10.25")


def test_owner_must_reach_the_tenant(world_a, world_b):
    member = world_a.member(role=Role.MARKETING)
    assert create(world_a, owner_id=member.pk).owner_id == member.pk
    with pytest.raises(ValidationError) as exc:
        create(world_a, owner_id=world_b.owner.pk)
    assert field_errors(exc) == {"owner"}
    with pytest.raises(ValidationError):
        create(world_a, owner_id=UserFactory().pk)


def test_unknown_fields_are_a_programming_error(world_a):
    with pytest.raises(TypeError):
        create(world_a, tenant=world_a.tenant)


@pytest.mark.parametrize("role", [Role.INSIDE_SALES, Role.FIELD_SALES, Role.READ_ONLY])
def test_sales_and_read_only_cannot_write(world_a, role):
    origin = Origin(role=role)
    with pytest.raises(PermissionDenied):
        services.campaign_create(
            tenant_id=world_a.tenant.id, origin=origin, name="x", channel=CampaignChannel.SEO
        )
    campaign = CampaignFactory(tenant=world_a.tenant)
    with pytest.raises(PermissionDenied):
        services.campaign_update(campaign=campaign, origin=origin, name="y")
    with pytest.raises(PermissionDenied):
        services.campaign_delete(campaign=campaign, origin=origin)
    with pytest.raises(PermissionDenied):
        services.memberships_add_bulk(
            tenant_id=world_a.tenant.id, campaign_id=campaign.pk, lead_ids=[], origin=origin
        )


def test_update_checks_against_the_stored_row(world_a):
    campaign = create(world_a, starts_on=date(2025, 4, 1), ends_on=date(2025, 4, 30))
    stale = Campaign(pk=campaign.pk, tenant_id=world_a.tenant.id, name="stale")
    with pytest.raises(ValidationError) as exc:
        services.campaign_update(campaign=stale, origin=MARKETER, ends_on=date(2025, 3, 1))
    assert field_errors(exc) == {"ends_on"}
    updated = services.campaign_update(campaign=stale, origin=MARKETER, status="active")
    # Fields the caller did not name keep their stored values, not the stale object's.
    assert updated.name == "秋の展示会"
    assert updated.status == "active"
    assert updated.updated_at > campaign.updated_at


def test_update_refuses_amounts_finer_than_a_new_currency(world_a):
    campaign = create(world_a, currency="USD", budget="10.25")
    with pytest.raises(ValidationError) as exc:
        services.campaign_update(campaign=campaign, origin=MARKETER, currency="JPY")
    assert field_errors(exc) == {"budget"}


def test_money_changes_are_audited_others_not(world_a):
    campaign = create(world_a, budget="500000")
    services.campaign_update(campaign=campaign, origin=MARKETER, description="展示会ブース")
    services.campaign_update(campaign=campaign, origin=MARKETER, budget="600000")
    with tenant_scope(world_a.tenant.id):
        entries = list(AuditLog.objects.filter(target_id=str(campaign.pk)))
    assert [entry.action for entry in entries] == ["campaign.cost_changed"]
    assert entries[0].metadata == {"budget": {"from": "500000.00", "to": "600000.00"}}


def test_cost_update_sets_or_adds(world_a):
    campaign = create(world_a)
    services.campaign_cost_update(campaign=campaign, origin=MARKETER, actual_cost="120000")
    services.campaign_cost_update(campaign=campaign, origin=MARKETER, add="30000")
    updated = services.campaign_cost_update(campaign=campaign, origin=MARKETER, add=Decimal("5"))
    assert updated.actual_cost == Decimal("150005")
    with pytest.raises(ValidationError) as exc:
        services.campaign_cost_update(campaign=campaign, origin=MARKETER, add="-1")
    assert field_errors(exc) == {"add"}
    with pytest.raises(TypeError):
        services.campaign_cost_update(campaign=campaign, origin=MARKETER)


def test_delete_is_audited_and_leaves_the_leads(world_a):
    campaign = create(world_a, actual_cost="3000")
    lead = LeadFactory(tenant=world_a.tenant, source_campaign=campaign)
    CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign, lead=lead)
    services.campaign_delete(campaign=campaign, origin=MARKETER)
    with tenant_scope(world_a.tenant.id):
        assert not Campaign.objects.filter(pk=campaign.pk).exists()
        assert not CampaignMembership.objects.exists()
        lead.refresh_from_db()
        entry = AuditLog.objects.get(action="campaign.deleted")
    assert lead.source_campaign_id is None
    assert entry.target_repr == "秋の展示会"
    assert entry.metadata["actual_cost"] == "3000.00"


# --- Members -------------------------------------------------------------------------------


def statuses(world, campaign) -> dict[int, str]:
    with tenant_scope(world.tenant.id):
        return dict(
            CampaignMembership.objects.filter(campaign=campaign).values_list("lead_id", "status")
        )


def add(world, campaign, leads, status) -> dict[int, str]:
    return services.memberships_add_bulk(
        tenant_id=world.tenant.id,
        campaign_id=campaign.pk,
        lead_ids=[lead.pk for lead in leads],
        status=status,
    )


def test_bulk_add_is_one_statement_with_per_lead_results(world_a, world_b):
    campaign = CampaignFactory(tenant=world_a.tenant)
    leads = LeadFactory.create_batch(50, tenant=world_a.tenant)
    foreign = LeadFactory(tenant=world_b.tenant)
    with CaptureQueriesContext(connection) as queries:
        results = services.memberships_add_bulk(
            tenant_id=world_a.tenant.id,
            campaign_id=campaign.pk,
            lead_ids=[lead.pk for lead in leads] + [foreign.pk, 10**12, leads[0].pk],
            status=Status.REGISTERED,
        )
    inserts = [q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"]]
    # The memberships in one statement, and one event for nurturing.
    assert len(inserts) == 2
    assert "campaigns_campaignmembership" in inserts[0]
    assert '"accounts_domainevent"' in inserts[1]
    assert len(queries.captured_queries) <= 7  # scope, campaign check, the statements
    assert results == {
        **{lead.pk: services.ADDED for lead in leads},
        foreign.pk: services.NOT_FOUND,
        10**12: services.NOT_FOUND,
    }
    assert statuses(world_a, campaign) == {lead.pk: Status.REGISTERED for lead in leads}
    with tenant_scope(world_b.tenant.id):
        assert not CampaignMembership.objects.exists()


# (existing status, added status, resulting status)
PRECEDENCE = [
    (Status.INVITED, Status.REGISTERED, Status.REGISTERED),
    (Status.REGISTERED, Status.INVITED, Status.REGISTERED),
    (Status.REGISTERED, Status.RESPONDED, Status.RESPONDED),
    (Status.RESPONDED, Status.ATTENDED, Status.ATTENDED),
    (Status.ATTENDED, Status.RESPONDED, Status.ATTENDED),
    (Status.ATTENDED, Status.INVITED, Status.ATTENDED),
    (Status.INVITED, Status.NO_SHOW, Status.NO_SHOW),
    (Status.REGISTERED, Status.NO_SHOW, Status.NO_SHOW),
    (Status.RESPONDED, Status.NO_SHOW, Status.RESPONDED),
    (Status.ATTENDED, Status.NO_SHOW, Status.ATTENDED),
    (Status.NO_SHOW, Status.REGISTERED, Status.NO_SHOW),
    (Status.NO_SHOW, Status.INVITED, Status.NO_SHOW),
    (Status.NO_SHOW, Status.RESPONDED, Status.RESPONDED),
    (Status.NO_SHOW, Status.ATTENDED, Status.ATTENDED),
    (Status.RESPONDED, Status.RESPONDED, Status.RESPONDED),
]


def test_bulk_add_keeps_the_further_status(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    leads = LeadFactory.create_batch(len(PRECEDENCE), tenant=world_a.tenant)
    for lead, (existing, _, _) in zip(leads, PRECEDENCE, strict=True):
        CampaignMembershipFactory(
            tenant=world_a.tenant, campaign=campaign, lead=lead, status=existing
        )
    # One statement per added status, each over every lead of the table.
    results: dict[int, str] = {}
    for added in Status.values:
        chosen = [lead for lead, row in zip(leads, PRECEDENCE, strict=True) if row[1] == added]
        results |= add(world_a, campaign, chosen, added)
    expected = {lead.pk: row[2] for lead, row in zip(leads, PRECEDENCE, strict=True)}
    assert statuses(world_a, campaign) == expected
    for lead, (existing, _, final) in zip(leads, PRECEDENCE, strict=True):
        assert results[lead.pk] == (services.UNCHANGED if final == existing else services.UPDATED)


def test_bulk_add_to_another_tenants_campaign_is_refused(world_a, world_b):
    foreign_campaign = CampaignFactory(tenant=world_b.tenant)
    lead = LeadFactory(tenant=world_a.tenant)
    with pytest.raises(ValidationError) as exc:
        add(world_a, foreign_campaign, [lead], Status.RESPONDED)
    assert field_errors(exc) == {"campaign"}
    with tenant_scope(world_b.tenant.id):
        assert not CampaignMembership.objects.exists()


def test_bulk_add_refuses_unknown_status_and_bad_ids(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    lead = LeadFactory(tenant=world_a.tenant)
    with pytest.raises(ValidationError):
        add(world_a, campaign, [lead], "teleported")
    with pytest.raises(ValidationError):
        services.memberships_add_bulk(
            tenant_id=world_a.tenant.id, campaign_id=campaign.pk, lead_ids=["1"]
        )
    assert statuses(world_a, campaign) == {}


def test_merged_leads_are_not_added(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    keep = LeadFactory(tenant=world_a.tenant)
    merged = LeadFactory(tenant=world_a.tenant, merged_into=keep)
    assert add(world_a, campaign, [merged], Status.RESPONDED) == {merged.pk: services.NOT_FOUND}


def test_hook_adds_leads_in_the_callers_transaction(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    leads = LeadFactory.create_batch(3, tenant=world_a.tenant)
    with tenant_scope(world_a.tenant.id):
        [results] = events.hook(
            "campaign.leads_responded",
            tenant_id=world_a.tenant.id,
            campaign_id=campaign.pk,
            lead_ids=[lead.pk for lead in leads],
            status=Status.RESPONDED,
        )
    assert set(results.values()) == {services.ADDED}
    assert statuses(world_a, campaign) == dict.fromkeys((lead.pk for lead in leads), "responded")


def test_hook_rolls_back_with_the_caller(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    lead = LeadFactory(tenant=world_a.tenant)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), tenant_scope(world_a.tenant.id):
        events.hook(
            "campaign.leads_responded",
            tenant_id=world_a.tenant.id,
            campaign_id=campaign.pk,
            lead_ids=[lead.pk],
        )
        raise Abort
    assert statuses(world_a, campaign) == {}


def test_membership_add_one_and_status_changes(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    lead = LeadFactory(tenant=world_a.tenant)
    first = services.membership_add(
        campaign=campaign, lead=lead, origin=MARKETER, status=Status.REGISTERED
    )
    assert first.result == services.ADDED
    assert first.membership.status == Status.REGISTERED
    again = services.membership_add(
        campaign=campaign, lead=lead, origin=MARKETER, status=Status.INVITED
    )
    assert again.result == services.UNCHANGED
    assert again.membership.pk == first.membership.pk
    # A person correcting the status may go back.
    services.membership_set_status(
        membership=again.membership, status=Status.INVITED, origin=MARKETER
    )
    assert statuses(world_a, campaign) == {lead.pk: Status.INVITED}
    with pytest.raises(ValidationError):
        services.membership_set_status(
            membership=again.membership, status="vanished", origin=MARKETER
        )
    services.membership_remove(membership=again.membership, origin=MARKETER)
    assert statuses(world_a, campaign) == {}


def test_membership_add_of_an_unknown_lead_names_the_field(world_a, world_b):
    campaign = CampaignFactory(tenant=world_a.tenant)
    foreign = LeadFactory(tenant=world_b.tenant)
    with pytest.raises(ValidationError) as exc:
        services.membership_add(campaign=campaign, lead=foreign.pk, origin=MARKETER)
    assert field_errors(exc) == {"lead_id"}


def test_platform_origin_is_not_limited_by_role(world_a):
    campaign = services.campaign_create(
        tenant_id=world_a.tenant.id, origin=SYSTEM, name="demo", channel=CampaignChannel.EVENT
    )
    assert campaign.pk


def test_merging_leads_moves_memberships_keeping_the_further_status(world_a):
    one, two, three = CampaignFactory.create_batch(3, tenant=world_a.tenant)
    keep, merge = LeadFactory.create_batch(2, tenant=world_a.tenant)

    def member(campaign, lead, status):
        CampaignMembershipFactory(
            tenant=world_a.tenant, campaign=campaign, lead=lead, status=status
        )

    member(one, keep, Status.INVITED)
    member(one, merge, Status.ATTENDED)  # further: keep's membership takes it
    member(two, keep, Status.ATTENDED)
    member(two, merge, Status.REGISTERED)  # keep's is further already
    member(three, merge, Status.NO_SHOW)  # only merge was in it: moves over
    with tenant_scope(world_a.tenant.id):
        [moved] = events.hook(
            "campaign.leads_merged", tenant_id=world_a.tenant.id, keep_id=keep.pk, merge_id=merge.pk
        )
        rows = set(CampaignMembership.objects.values_list("campaign_id", "lead_id", "status"))
    assert moved == 1
    assert rows == {
        (one.pk, keep.pk, Status.ATTENDED),
        (two.pk, keep.pk, Status.ATTENDED),
        (three.pk, keep.pk, Status.NO_SHOW),
    }


def test_lead_merge_brings_the_memberships_along(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    keep, merge = LeadFactory.create_batch(2, tenant=world_a.tenant)
    CampaignMembershipFactory(tenant=world_a.tenant, campaign=campaign, lead=merge)
    lead_merge(keep=keep, merge=merge, origin=SYSTEM)
    assert statuses(world_a, campaign) == {keep.pk: Status.RESPONDED}


def test_agency_staff_serving_the_tenant_may_own_a_campaign(world_a):
    agency = AgencyFactory(name="ひかり広告")
    world_a.tenant.managed_by = agency
    world_a.tenant.save(update_fields=["managed_by"])
    manager = MembershipFactory(tenant=agency, role=Role.MARKETING).user
    planner = MembershipFactory(tenant=agency, role=Role.MARKETING).user
    AgencyAssignmentFactory(tenant=world_a.tenant, user=manager)
    campaign = create(world_a, owner_id=manager.pk)
    assert campaign.owner_id == manager.pk
    with pytest.raises(ValidationError) as exc:
        create(world_a, owner_id=planner.pk)  # agency staff without a grant to this client
    assert field_errors(exc) == {"owner"}
    # The manager leaves the agency: the campaign keeps its owner through other edits
    # (the form sends the owner unchanged), but nobody can make them owner again.
    with tenant_scope(agency.id):
        Membership.objects.filter(user=manager).delete()
    services.campaign_update(campaign=campaign, origin=MARKETER, name="改名", owner_id=manager.pk)
    other = create(world_a)
    with pytest.raises(ValidationError) as exc:
        services.campaign_update(campaign=other, origin=MARKETER, owner_id=manager.pk)
    assert field_errors(exc) == {"owner"}
