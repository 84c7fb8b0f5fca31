"""The handoff's life: created from MQL events (once), routed, answered, qualified."""

import datetime
import zoneinfo

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from accounts.models import DomainEvent, Role
from accounts.services import SYSTEM, Origin
from accounts.tenancy import tenant_scope
from campaigns.tests.factories import CampaignFactory
from leads.models import LifecycleStage, LifecycleTransition
from leads.services import lead_change_stage
from leads.tests.factories import CompanyFactory, LeadFactory
from pipeline import selectors, services
from pipeline.models import Handoff, HandoffSettings, RejectReason, RoutingRule
from pipeline.tests.factories import RoutingRuleFactory, TeamMemberFactory

pytestmark = pytest.mark.django_db

TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")


def mql(world, **fields):
    fields.setdefault("lifecycle_stage", LifecycleStage.MQL)
    return LeadFactory(tenant=world.tenant, **fields)


def create(world, lead, now=None) -> Handoff | None:
    return services.handoff_create_for_lead(tenant_id=world.tenant.id, lead_id=lead.id, now=now)


def stage_of(world, lead) -> str:
    with tenant_scope(world.tenant.id):
        return type(lead).objects.get(pk=lead.pk).lifecycle_stage


def events(world, name) -> list[DomainEvent]:
    with tenant_scope(world.tenant.id):
        return list(DomainEvent.objects.filter(name=name).order_by("id"))


# --- Creation from events ----------------------------------------------------------------------


def test_manual_mql_reaches_the_queue_once_through_events(
    world_a, sales, django_capture_on_commit_callbacks
):
    services.handoff_settings_update(
        tenant_id=world_a.tenant.id, origin=SYSTEM, default_team_id=sales.team.id
    )
    lead = LeadFactory(tenant=world_a.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        lead_change_stage(
            lead=lead, to_stage=LifecycleStage.MQL, origin=Origin(actor=world_a.owner), channel="ui"
        )
    with tenant_scope(world_a.tenant.id):
        handoffs = list(Handoff.objects.filter(lead=lead))
    assert len(handoffs) == 1
    assert handoffs[0].owner_id == sales.reps[0].id
    assert handoffs[0].routed_by == Handoff.Routing.ROUND_ROBIN
    assert len(events(world_a, "handoff.created")) == 1


def test_handler_is_idempotent_for_both_mql_events(world_a, sales):
    lead = mql(world_a)
    with tenant_scope(world_a.tenant.id):
        changed = DomainEvent.objects.create(
            tenant=world_a.tenant,
            name="lead.lifecycle_changed",
            payload={"v": 1, "lead_id": lead.id, "from": "lead", "to": "mql"},
        )
        reached = DomainEvent.objects.create(
            tenant=world_a.tenant, name="lead.mql_reached", payload={"v": 1, "lead_id": lead.id}
        )
        other = DomainEvent.objects.create(
            tenant=world_a.tenant,
            name="lead.lifecycle_changed",
            payload={"v": 1, "lead_id": lead.id, "from": "lead", "to": "sal"},
        )
    for event in (changed, reached, changed, other, reached):
        with tenant_scope(world_a.tenant.id):
            services.on_mql_event(event)
    with tenant_scope(world_a.tenant.id):
        assert Handoff.objects.filter(lead=lead).count() == 1


def test_no_handoff_for_a_lead_that_is_no_longer_mql(world_a):
    lead = LeadFactory(tenant=world_a.tenant, lifecycle_stage=LifecycleStage.SAL)
    assert create(world_a, lead) is None


def test_after_rejection_a_new_mql_gets_a_new_handoff(world_a, sales):
    lead = mql(world_a)
    first = create(world_a, lead)
    services.handoff_reject(handoff=first, origin=SYSTEM, reason=RejectReason.NOT_NOW)
    assert stage_of(world_a, lead) == LifecycleStage.RECYCLED
    assert create(world_a, lead) is None  # a late duplicate of the old event
    lead_change_stage(lead=lead, to_stage=LifecycleStage.MQL, origin=SYSTEM, channel="system")
    second = create(world_a, lead)
    assert second is not None
    assert second.pk != first.pk


def test_deadline_and_reminder_follow_the_tenant_calendar(world_a):
    # Friday 31 Oct 2025 17:00 JST, SLA 8 h, reminder 60 min: weekend + 文化の日.
    now = datetime.datetime(2025, 10, 31, 17, 0, tzinfo=TOKYO)
    handoff = create(world_a, mql(world_a), now=now)
    assert handoff.deadline == datetime.datetime(2025, 11, 4, 16, 0, tzinfo=TOKYO)
    assert handoff.remind_at == datetime.datetime(2025, 11, 4, 15, 0, tzinfo=TOKYO)
    assert handoff.routed_by == Handoff.Routing.UNROUTED
    assert handoff.owner_id is None


def test_deadline_in_the_tenant_time_zone_and_settings(world_a):
    world_a.tenant.time_zone = "America/New_York"
    world_a.tenant.country = "US"
    world_a.tenant.save()
    services.handoff_settings_update(
        tenant_id=world_a.tenant.id,
        origin=SYSTEM,
        sla_hours=4,
        workday_start=datetime.time(8),
        workday_end=datetime.time(17),
    )
    # Friday 16:00 New York: 1 h Friday, 3 h Monday from 8:00.
    ny = zoneinfo.ZoneInfo("America/New_York")
    handoff = create(world_a, mql(world_a), now=datetime.datetime(2025, 10, 24, 16, tzinfo=ny))
    assert handoff.deadline == datetime.datetime(2025, 10, 27, 11, tzinfo=ny)


# --- Routing ---------------------------------------------------------------------------------


def test_round_robin_takes_turns_and_skips_unavailable(world_a, sales):
    services.handoff_settings_update(
        tenant_id=world_a.tenant.id, origin=SYSTEM, default_team_id=sales.team.id
    )
    third = world_a.member(Role.INSIDE_SALES)
    member = TeamMemberFactory(tenant=world_a.tenant, team=sales.team, user=third)
    owners = [create(world_a, mql(world_a)).owner_id for _ in range(3)]
    assert owners == [sales.reps[0].id, sales.reps[1].id, third.id]
    services.team_member_set_available(
        member=member, origin=Origin(actor=third, role=Role.INSIDE_SALES), available=False
    )
    owners = [create(world_a, mql(world_a)).owner_id for _ in range(3)]
    assert owners == [sales.reps[0].id, sales.reps[1].id, sales.reps[0].id]


def test_territory_rules_in_order(world_a, sales):
    tokyo_rep = world_a.member(Role.INSIDE_SALES)
    RoutingRuleFactory(
        tenant=world_a.tenant,
        name="東京・製造",
        position=1,
        target=RoutingRule.Target.USER,
        user=tokyo_rep,
        team=None,
        prefectures=["13"],
        industries=["製造業"],
    )
    RoutingRuleFactory(
        tenant=world_a.tenant, name="大企業", position=2, team=sales.team, size_bands=["5000+"]
    )
    tokyo_maker = CompanyFactory(tenant=world_a.tenant, prefecture="13", industry=" 製造業 ")
    osaka_big = CompanyFactory(tenant=world_a.tenant, prefecture="27", size_band="5000+")
    osaka_small = CompanyFactory(tenant=world_a.tenant, prefecture="27", size_band="1-9")

    first = create(world_a, mql(world_a, company=tokyo_maker))
    assert (first.owner_id, first.routed_by) == (tokyo_rep.id, Handoff.Routing.RULE_USER)
    second = create(world_a, mql(world_a, company=osaka_big))
    assert (second.owner_id, second.team_id) == (sales.reps[0].id, sales.team.id)
    third = create(world_a, mql(world_a, company=osaka_small))
    assert third.owner_id is None
    assert third.routed_by == Handoff.Routing.UNROUTED


def test_existing_owner_rule(world_a, sales):
    RoutingRuleFactory(
        tenant=world_a.tenant, target=RoutingRule.Target.EXISTING_OWNER, team=None, position=0
    )
    RoutingRuleFactory(tenant=world_a.tenant, team=sales.team, position=1)
    account_owner = world_a.member(Role.FIELD_SALES)
    company = CompanyFactory(tenant=world_a.tenant)
    LeadFactory(tenant=world_a.tenant, company=company, owner=account_owner)
    handoff = create(world_a, mql(world_a, company=company))
    assert (handoff.owner_id, handoff.routed_by) == (
        account_owner.id,
        Handoff.Routing.EXISTING_OWNER,
    )
    # No one owns anything at this company: the next rule (the team) takes it.
    handoff = create(world_a, mql(world_a, company=CompanyFactory(tenant=world_a.tenant)))
    assert handoff.owner_id == sales.reps[0].id


def test_rule_for_a_person_who_left_is_passed_over(world_a, world_b, sales):
    outsider = world_b.member(Role.INSIDE_SALES)
    with tenant_scope(world_a.tenant.id):
        RoutingRule.objects.create(
            tenant=world_a.tenant, name="x", target="user", user=outsider, position=0
        )
    handoff = create(world_a, mql(world_a))
    assert handoff.owner_id is None


# --- Answers ---------------------------------------------------------------------------------


def test_accept_then_qualify(world_a, sales):
    campaign = CampaignFactory(tenant=world_a.tenant)
    RoutingRuleFactory(tenant=world_a.tenant, team=sales.team)
    lead = mql(world_a, source_campaign=campaign)
    handoff = create(world_a, lead)
    rep = Origin(actor=sales.reps[0], role=Role.INSIDE_SALES)
    services.handoff_accept(handoff=handoff, origin=rep)
    assert stage_of(world_a, lead) == LifecycleStage.SAL
    assert (handoff.status, handoff.sla) == (Handoff.Status.ACCEPTED, Handoff.SLA.MET)
    with pytest.raises(ValidationError) as exc:
        services.handoff_qualify(handoff=handoff, origin=rep, handover_note="", budget="500万円")
    assert set(exc.value.message_dict) == {"handover_note", "authority", "need", "timeline"}
    qualification = services.handoff_qualify(
        handoff=handoff,
        origin=rep,
        budget="500万円",
        authority="情報システム部長",
        need="SFA刷新",
        timeline="来期",
        handover_note="来週デモ希望",
    )
    assert qualification.handover_note == "来週デモ希望"
    assert handoff.status == Handoff.Status.QUALIFIED
    assert stage_of(world_a, lead) == LifecycleStage.SQL
    with tenant_scope(world_a.tenant.id):
        reasons = list(
            LifecycleTransition.objects.filter(lead=lead)
            .order_by("id")
            .values_list("to_stage", "reason")
        )
    assert reasons[-1][0] == LifecycleStage.SQL
    assert "来週デモ希望" in reasons[-1][1]
    assert [e.payload["handoff_id"] for e in events(world_a, "handoff.accepted")] == [handoff.id]
    assert len(events(world_a, "handoff.qualified")) == 1


def test_qualify_with_the_tenants_checklist(world_a):
    services.handoff_settings_update(
        tenant_id=world_a.tenant.id,
        origin=SYSTEM,
        checklist=[{"key": "pain", "label": "課題"}, {"key": "decision", "label": "決裁"}],
    )
    handoff = create(world_a, mql(world_a))
    services.handoff_accept(handoff=handoff, origin=SYSTEM)
    with pytest.raises(ValidationError) as exc:
        services.handoff_qualify(
            handoff=handoff, origin=SYSTEM, handover_note="n", answers={"pain": "工数"}
        )
    assert "answers" in exc.value.message_dict
    qualification = services.handoff_qualify(
        handoff=handoff,
        origin=SYSTEM,
        handover_note="n",
        answers={"pain": "工数", "decision": "社長"},
    )
    assert qualification.answers == {"pain": "工数", "decision": "社長"}


@pytest.mark.parametrize(
    ("reason", "stage"),
    [
        (RejectReason.NOT_NOW, LifecycleStage.RECYCLED),
        (RejectReason.BAD_FIT, LifecycleStage.DISQUALIFIED),
        (RejectReason.DUPLICATE, LifecycleStage.DISQUALIFIED),
    ],
)
def test_reject_recycles_or_disqualifies(world_a, reason, stage):
    lead = mql(world_a)
    handoff = create(world_a, lead)
    services.handoff_reject(handoff=handoff, origin=SYSTEM, reason=reason, comment="予算凍結")
    assert stage_of(world_a, lead) == stage
    assert (handoff.status, handoff.reject_reason) == (Handoff.Status.REJECTED, reason)
    (event,) = events(world_a, "handoff.rejected")
    assert event.payload["reason"] == reason
    assert event.payload["lead_stage"] == stage
    with tenant_scope(world_a.tenant.id):
        transition = LifecycleTransition.objects.filter(lead=lead).latest("id")
    assert str(RejectReason(reason).label) in transition.reason
    assert "予算凍結" in transition.reason


def test_reject_needs_a_reason_and_other_needs_a_comment(world_a):
    handoff = create(world_a, mql(world_a))
    with pytest.raises(ValidationError) as exc:
        services.handoff_reject(handoff=handoff, origin=SYSTEM, reason="")
    assert "reason" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        services.handoff_reject(handoff=handoff, origin=SYSTEM, reason=RejectReason.OTHER)
    assert "comment" in exc.value.message_dict
    services.handoff_reject(handoff=handoff, origin=SYSTEM, reason="other", comment="退職済み")
    with pytest.raises(ValidationError):
        services.handoff_accept(handoff=handoff, origin=SYSTEM)


def test_late_answer_records_a_breach(world_a):
    past = datetime.datetime(2025, 10, 1, 10, tzinfo=TOKYO)
    handoff = create(world_a, mql(world_a), now=past)
    services.handoff_accept(handoff=handoff, origin=SYSTEM)
    assert handoff.sla == Handoff.SLA.BREACHED


def test_who_may_answer_and_reassign(world_a, sales):
    RoutingRuleFactory(tenant=world_a.tenant, team=sales.team)
    handoff = create(world_a, mql(world_a))
    assert handoff.owner_id == sales.reps[0].id
    other_rep = Origin(actor=sales.reps[1], role=Role.INSIDE_SALES)
    marketer = Origin(actor=world_a.member(Role.MARKETING), role=Role.MARKETING)
    for origin in (other_rep, marketer):
        with pytest.raises(PermissionDenied):
            services.handoff_accept(handoff=handoff, origin=origin)
    with pytest.raises(PermissionDenied):
        services.handoff_reassign(handoff=handoff, origin=other_rep, owner_id=sales.reps[1].id)
    manager = Origin(actor=sales.manager, role=Role.INSIDE_SALES)
    services.handoff_reassign(handoff=handoff, origin=manager, owner_id=sales.reps[1].id)
    assert (handoff.owner_id, handoff.routed_by) == (sales.reps[1].id, Handoff.Routing.MANUAL)
    (event,) = events(world_a, "handoff.reassigned")
    assert event.payload["previous_owner_id"] == sales.reps[0].id
    services.handoff_accept(handoff=handoff, origin=other_rep)
    assert handoff.responded_by_id == sales.reps[1].id


def test_reassign_only_to_staff_of_the_tenant(world_a, world_b):
    handoff = create(world_a, mql(world_a))
    with pytest.raises(ValidationError) as exc:
        services.handoff_reassign(handoff=handoff, origin=SYSTEM, owner_id=world_b.owner.id)
    assert "owner" in exc.value.message_dict


def test_unassigned_handoff_is_claimed_by_who_accepts_it(world_a):
    handoff = create(world_a, mql(world_a))
    rep = world_a.member(Role.INSIDE_SALES)
    services.handoff_accept(handoff=handoff, origin=Origin(actor=rep, role=Role.INSIDE_SALES))
    assert handoff.owner_id == rep.id


# --- Settings --------------------------------------------------------------------------------


def test_settings_validation_names_fields(world_a):
    with pytest.raises(ValidationError) as exc:
        services.handoff_settings_update(
            tenant_id=world_a.tenant.id,
            origin=SYSTEM,
            sla_hours=0,
            workday_start=datetime.time(18),
            workday_end=datetime.time(9),
            working_days=[7],
            closed_dates=["2025-13-01"],
            checklist=[{"key": "a"}],
        )
    assert set(exc.value.message_dict) == {
        "sla_hours", "workday_end", "working_days", "closed_dates", "checklist"
    }  # fmt: skip
    with pytest.raises(PermissionDenied):
        services.handoff_settings_update(
            tenant_id=world_a.tenant.id,
            origin=Origin(actor=world_a.owner, role=Role.INSIDE_SALES),
            sla_hours=4,
        )
    with tenant_scope(world_a.tenant.id):
        assert not HandoffSettings.objects.exists()


def test_team_members_must_be_staff(world_a, world_b):
    with pytest.raises(ValidationError) as exc:
        services.team_save(
            tenant_id=world_a.tenant.id, origin=SYSTEM, name="x", member_ids=[world_b.owner.id]
        )
    assert "members" in exc.value.message_dict
    rep = world_a.member(Role.INSIDE_SALES)
    team = services.team_save(
        tenant_id=world_a.tenant.id, origin=SYSTEM, name="x", member_ids=[rep.id]
    )
    with tenant_scope(world_a.tenant.id):
        members = selectors.team_members([team.id])[team.id]
    assert [m.user_id for m in members] == [rep.id]


# --- Selectors -------------------------------------------------------------------------------


def test_queue_sorted_by_deadline_then_score(world_a):
    from leads.models import LeadScore, ScoringModel

    with tenant_scope(world_a.tenant.id):
        model = ScoringModel.objects.create(tenant=world_a.tenant, name="m", is_primary=True)
    now = datetime.datetime(2025, 10, 22, 10, tzinfo=TOKYO)
    low, high, later = mql(world_a), mql(world_a), mql(world_a)
    for lead, total in ((low, 10), (high, 90), (later, 99)):
        with tenant_scope(world_a.tenant.id):
            LeadScore.objects.create(tenant=world_a.tenant, model=model, lead=lead, total=total)
    for lead, at in ((low, now), (high, now), (later, now + datetime.timedelta(hours=1))):
        create(world_a, lead, now=at)
    unscored = mql(world_a)
    create(world_a, unscored, now=now)
    with tenant_scope(world_a.tenant.id):
        order = [h.lead_id for h in selectors.handoff_queue()]
    assert order == [high.id, low.id, unscored.id, later.id]


def test_feedback_per_campaign(world_a):
    webinar = CampaignFactory(tenant=world_a.tenant, name="ウェビナー")
    fair = CampaignFactory(tenant=world_a.tenant, name="展示会")
    handoffs = [create(world_a, mql(world_a, source_campaign=c)) for c in (webinar, webinar, fair)]
    services.handoff_accept(handoff=handoffs[0], origin=SYSTEM)
    services.handoff_reject(handoff=handoffs[1], origin=SYSTEM, reason="not_now")
    services.handoff_reject(handoff=handoffs[2], origin=SYSTEM, reason="no_budget")
    with tenant_scope(world_a.tenant.id):
        rows = {row["campaign_name"]: row for row in selectors.handoff_feedback_by_campaign()}
    assert rows["ウェビナー"]["handoffs"] == 2
    assert rows["ウェビナー"]["accepted"] == 1
    assert rows["ウェビナー"]["rejected_by_reason"]["not_now"] == 1
    assert rows["展示会"]["rejected_by_reason"]["no_budget"] == 1
    assert rows["展示会"]["accepted"] == 0


def test_lead_moved_on_by_hand_withdraws_its_handoff(
    world_a, sales, django_capture_on_commit_callbacks
):
    lead = mql(world_a)
    # One block: the test's transaction never commits, so every event of it is flushed
    # by the callbacks this block captures.
    with django_capture_on_commit_callbacks(execute=True):
        handoff = create(world_a, lead)
        lead_change_stage(
            lead=lead, to_stage=LifecycleStage.DISQUALIFIED, origin=SYSTEM, channel="ui"
        )
    with tenant_scope(world_a.tenant.id):
        handoff.refresh_from_db()
        assert handoff.status == Handoff.Status.WITHDRAWN
        assert not selectors.handoff_queue().filter(pk=handoff.pk).exists()
    assert len(events(world_a, "handoff.withdrawn")) == 1
    # The queue's own answers never withdraw: accept moves the lead to SAL after the
    # handoff, and the event that follows finds them in step.
    with django_capture_on_commit_callbacks(execute=True):
        other = create(world_a, mql(world_a))
        services.handoff_accept(handoff=other, origin=SYSTEM)
    with tenant_scope(world_a.tenant.id):
        assert Handoff.objects.get(pk=other.pk).status == Handoff.Status.ACCEPTED


def test_merged_lead_withdraws_its_handoff(world_a, django_capture_on_commit_callbacks):
    from leads.services import lead_merge

    keep = LeadFactory(tenant=world_a.tenant)
    duplicate = mql(world_a)
    with django_capture_on_commit_callbacks(execute=True):
        handoff = create(world_a, duplicate)
        lead_merge(keep=keep, merge=duplicate, origin=SYSTEM)
    with tenant_scope(world_a.tenant.id):
        assert Handoff.objects.get(pk=handoff.pk).status == Handoff.Status.WITHDRAWN
