"""Saved segments: the filter means what the lead list means, is checked when saved
and when evaluated, and the periodic evaluation enrols set-based (live once, never
twice without re-enrolment, again only on coming back into the segment)."""

import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import QueryDict
from django.utils import timezone

from accounts.models import Role
from accounts.services import Origin
from accounts.tenancy import tenant_scope
from campaigns import tasks
from campaigns.models import Enrolment, Sequence
from campaigns.nurture import segments
from campaigns.nurture import services as nurture
from campaigns.nurture.models import Segment, SegmentMember
from campaigns.tests.factories import (
    CampaignFactory,
    EmailTemplateFactory,
    SenderIdentityFactory,
)
from leads import selectors as lead_selectors
from leads.forms import LeadListFilter
from leads.models import Lead, LifecycleStage
from leads.tests.factories import LeadFactory, LeadTagFactory, TagFactory

pytestmark = pytest.mark.django_db

MARKETER = Origin(role=Role.MARKETING)
State = Enrolment.State
TOKYO = ZoneInfo("Asia/Tokyo")


def segment(world, filter: str, name: str = "MQL 展示会") -> Segment:
    return segments.segment_create(
        tenant_id=world.tenant.id, origin=MARKETER, name=name, filter=filter
    )


def live_sequence(world, segment: Segment | None = None, **fields) -> Sequence:
    fields.setdefault("sender_id", SenderIdentityFactory(tenant=world.tenant).pk)
    sequence = nurture.sequence_create(
        tenant_id=world.tenant.id,
        origin=MARKETER,
        name=fields.pop("name", "セグメント育成"),
        enrol_on_segment_id=segment.pk if segment else None,
        **fields,
    )
    template = EmailTemplateFactory(tenant=world.tenant)
    nurture.sequence_steps_save(
        sequence=sequence, steps=[{"kind": "send_email", "template": template}], origin=MARKETER
    )
    return nurture.sequence_set_status(
        sequence=sequence, status=Sequence.Status.ACTIVE, origin=MARKETER
    )


def enrolled(world, sequence) -> list[tuple[int, str, str]]:
    with tenant_scope(world.tenant.id):
        return list(
            Enrolment.objects.filter(sequence=sequence)
            .order_by("lead_id", "id")
            .values_list("lead_id", "state", "source")
        )


def set_stage(lead: Lead, stage: str) -> None:
    with tenant_scope(lead.tenant_id):
        Lead.objects.filter(pk=lead.pk).update(lifecycle_stage=stage)


# --- The filter -------------------------------------------------------------------------------


def test_a_filter_is_stored_as_the_lead_lists_query_without_paging(world_a):
    cleaned = segments.segment_filter_clean(
        tenant=world_a.tenant,
        raw="https://app.example/t/acme/leads/?stage=mql&tag=展示会&cursor=abc&sort=name",
    )
    assert QueryDict(cleaned) == QueryDict("stage=mql&tag=展示会")


def test_unknown_parameters_and_refused_values_are_named(world_a, world_b):
    outsider = world_b.owner
    other_campaign = CampaignFactory(tenant=world_b.tenant)
    with pytest.raises(ValidationError) as caught:
        segments.segment_filter_clean(
            tenant=world_a.tenant,
            raw=f"stage=nope&colour=red&owner={outsider.pk}&campaign={other_campaign.pk}",
        )
    errors = caught.value.message_dict["filter"]
    assert len(errors) == 4
    assert any(e.startswith("colour: ") for e in errors)
    assert any("(stage)" in e for e in errors)
    assert any("(owner)" in e for e in errors)
    assert any("(campaign)" in e for e in errors)


def test_a_segment_matches_what_the_lead_list_shows(world_a):
    """Same query, same leads: the list's filter set read with the list's choices."""
    tenant = world_a.tenant
    tenant.time_zone = "Asia/Tokyo"
    tenant.save(update_fields=["time_zone"])
    tag = TagFactory(tenant=tenant, name="展示会")
    owner = world_a.member(role=Role.INSIDE_SALES)
    # Created 2026-11-24 00:30 in Tokyo (still the 23rd in UTC): inside "from the 24th".
    early = datetime.datetime(2026, 11, 24, 0, 30, tzinfo=TOKYO)
    wanted = LeadFactory(tenant=tenant, lifecycle_stage="mql", owner=owner, created_at=early)
    LeadTagFactory(tenant=tenant, lead=wanted, tag=tag)
    untagged = LeadFactory(tenant=tenant, lifecycle_stage="mql", owner=owner, created_at=early)
    before = LeadFactory(
        tenant=tenant,
        lifecycle_stage="mql",
        owner=owner,
        created_at=datetime.datetime(2026, 11, 23, 23, 30, tzinfo=TOKYO),
    )
    LeadTagFactory(tenant=tenant, lead=before, tag=tag)
    query = f"stage=mql&tag=展示会&owner={owner.pk}&created_from=2026-11-24"
    saved = segment(world_a, query)
    with tenant_scope(tenant.id):
        match = segments.segment_leads(saved)
        assert match.error == ""
        ids = set(match.leads.values_list("id", flat=True))
        with timezone.override(TOKYO):
            listed = LeadListFilter(
                QueryDict(query),
                queryset=lead_selectors.lead_list(),
                owner_choices=[(str(owner.pk), "x")],
            ).qs
            listed_ids = set(listed.values_list("id", flat=True))
    assert ids == listed_ids == {wanted.pk}
    assert untagged.pk not in ids
    assert before.pk not in ids
    assert segments.segment_count(saved) == (1, "")


def test_a_filter_that_no_longer_holds_matches_nobody(world_a):
    """The lead list would drop a refused value and show everyone; a segment must not."""
    leaving = world_a.member(role=Role.INSIDE_SALES)
    LeadFactory.create_batch(3, tenant=world_a.tenant, owner=leaving)
    LeadFactory(tenant=world_a.tenant)
    saved = segment(world_a, f"owner={leaving.pk}")
    assert segments.segment_count(saved) == (3, "")
    with tenant_scope(world_a.tenant.id):
        leaving.memberships.all().delete()
    count, problem = segments.segment_count(saved)
    assert count == 0
    assert "owner" in problem


# --- Writes -----------------------------------------------------------------------------------


def test_create_update_delete_and_their_rules(world_a):
    saved = segment(world_a, "stage=mql", name="MQL")
    assert saved.filter == "stage=mql"
    with pytest.raises(ValidationError) as caught:
        segment(world_a, "stage=lead", name="MQL")
    assert "name" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        segments.segment_update(segment=saved, origin=MARKETER, filter="stage=bogus")
    assert "filter" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        segments.segment_update(segment=saved, origin=MARKETER, colour="red")
    assert "colour" in caught.value.message_dict
    with pytest.raises(PermissionDenied):
        segments.segment_update(
            segment=saved, origin=Origin(role=Role.READ_ONLY), filter="stage=lead"
        )
    updated = segments.segment_update(segment=saved, origin=MARKETER, filter="?stage=lead")
    assert updated.filter == "stage=lead"
    sequence = live_sequence(world_a, updated)
    segments.segment_delete(segment=updated, origin=MARKETER)
    with tenant_scope(world_a.tenant.id):
        assert not Segment.objects.exists()
        # The sequence stays; it no longer enrols on a segment.
        assert Sequence.objects.get(pk=sequence.pk).enrol_on_segment_id is None


def test_a_sequence_cannot_enrol_on_another_tenants_segment(world_a, world_b):
    foreign = segment(world_b, "stage=mql")
    with pytest.raises(ValidationError) as caught:
        nurture.sequence_create(
            tenant_id=world_a.tenant.id,
            origin=MARKETER,
            name="x",
            enrol_on_segment_id=foreign.pk,
        )
    assert "enrol_on_segment" in caught.value.message_dict


# --- Evaluation -------------------------------------------------------------------------------


def test_evaluation_enrols_matching_leads_once(world_a, world_b):
    mqls = LeadFactory.create_batch(3, tenant=world_a.tenant, lifecycle_stage="mql")
    LeadFactory(tenant=world_a.tenant, lifecycle_stage="lead")
    LeadFactory(tenant=world_b.tenant, lifecycle_stage="mql")  # another tenant's MQL
    saved = segment(world_a, "stage=mql")
    sequence = live_sequence(world_a, saved)
    other = live_sequence(world_a, name="手動")  # not on the segment
    report = segments.segments_evaluate_tenant(world_a.tenant.id)
    assert report == {"segments": 1, "matched": 3, "entered": 3, "left": 0, "enrolled": 3}
    assert enrolled(world_a, sequence) == [
        (lead.pk, State.ACTIVE, Enrolment.Source.SEGMENT) for lead in mqls
    ]
    assert enrolled(world_a, other) == []
    # At once again: nothing new.
    again = segments.segments_evaluate_tenant(world_a.tenant.id)
    assert again == {"segments": 1, "matched": 3, "entered": 0, "left": 0, "enrolled": 0}
    with tenant_scope(world_a.tenant.id):
        saved.refresh_from_db()
        assert (saved.matched, saved.error) == (3, "")
        assert SegmentMember.objects.filter(segment=saved).count() == 3


def test_a_finished_lead_is_not_enrolled_again_without_reenrolment(world_a):
    lead = LeadFactory(tenant=world_a.tenant, lifecycle_stage="mql")
    saved = segment(world_a, "stage=mql")
    sequence = live_sequence(world_a, saved)
    segments.segments_evaluate_tenant(world_a.tenant.id)
    with tenant_scope(world_a.tenant.id):
        Enrolment.objects.filter(sequence=sequence).update(state=State.COMPLETED)
    # Leaves the segment and comes back: still not again (re-enrolment is off).
    set_stage(lead, "lead")
    segments.segments_evaluate_tenant(world_a.tenant.id)
    set_stage(lead, "mql")
    report = segments.segments_evaluate_tenant(world_a.tenant.id)
    assert (report["entered"], report["enrolled"]) == (1, 0)
    assert enrolled(world_a, sequence) == [(lead.pk, State.COMPLETED, "segment")]


def test_with_reenrolment_a_lead_goes_again_only_when_it_comes_back(world_a):
    lead = LeadFactory(tenant=world_a.tenant, lifecycle_stage="mql")
    saved = segment(world_a, "stage=mql")
    sequence = live_sequence(world_a, saved, allow_reenrolment=True)
    segments.segments_evaluate_tenant(world_a.tenant.id)
    with tenant_scope(world_a.tenant.id):
        Enrolment.objects.filter(sequence=sequence).update(state=State.COMPLETED)
    # Still in the segment: finishing the journey does not start it over.
    assert segments.segments_evaluate_tenant(world_a.tenant.id)["enrolled"] == 0
    set_stage(lead, "lead")
    left = segments.segments_evaluate_tenant(world_a.tenant.id)
    assert (left["left"], left["enrolled"]) == (1, 0)
    set_stage(lead, "mql")
    back = segments.segments_evaluate_tenant(world_a.tenant.id)
    assert (back["entered"], back["enrolled"]) == (1, 1)
    assert enrolled(world_a, sequence) == [
        (lead.pk, State.COMPLETED, "segment"),
        (lead.pk, State.ACTIVE, "segment"),
    ]


def test_a_live_lead_is_left_alone_and_a_lead_enrolled_by_hand_counts(world_a):
    by_hand, fresh = LeadFactory.create_batch(2, tenant=world_a.tenant, lifecycle_stage="mql")
    saved = segment(world_a, "stage=mql")
    sequence = live_sequence(world_a, saved)
    nurture.enrol_leads(tenant_id=world_a.tenant.id, sequence_id=sequence.pk, lead_ids=[by_hand.pk])
    assert segments.segments_evaluate_tenant(world_a.tenant.id)["enrolled"] == 1
    assert enrolled(world_a, sequence) == [
        (by_hand.pk, State.ACTIVE, "manual"),
        (fresh.pk, State.ACTIVE, "segment"),
    ]


def test_a_broken_filter_enrols_nobody_and_says_why(world_a):
    leaving = world_a.member(role=Role.INSIDE_SALES)
    LeadFactory.create_batch(2, tenant=world_a.tenant, owner=leaving)
    saved = segment(world_a, f"owner={leaving.pk}")
    sequence = live_sequence(world_a, saved)
    with tenant_scope(world_a.tenant.id):
        leaving.memberships.all().delete()
    report = segments.segments_evaluate_tenant(world_a.tenant.id)
    assert (report["matched"], report["enrolled"]) == (0, 0)
    assert enrolled(world_a, sequence) == []
    with tenant_scope(world_a.tenant.id):
        saved.refresh_from_db()
        assert "owner" in saved.error
        assert saved.matched == 0


def test_paused_sequences_are_not_evaluated(world_a):
    LeadFactory(tenant=world_a.tenant, lifecycle_stage="mql")
    saved = segment(world_a, "stage=mql")
    sequence = live_sequence(world_a, saved)
    nurture.sequence_set_status(sequence=sequence, status="paused", origin=MARKETER)
    assert segments.tenants_with_segment_sequences() == []
    assert segments.segments_evaluate_tenant(world_a.tenant.id)["segments"] == 0
    assert enrolled(world_a, sequence) == []


def test_the_periodic_task_without_a_worker_or_beat(world_a, world_b):
    """The beat entry's task, run in-process: it fans out one task per tenant with a
    segment sequence, and each enrols its tenant's matching leads only."""
    from config.celery import app

    entry = app.conf.beat_schedule["campaigns-evaluate-segments"]
    assert entry["task"] == tasks.evaluate_segments.name
    a_leads = LeadFactory.create_batch(2, tenant=world_a.tenant, lifecycle_stage="mql")
    b_lead = LeadFactory(tenant=world_b.tenant, lifecycle_stage="mql")
    a_sequence = live_sequence(world_a, segment(world_a, "stage=mql"))
    b_sequence = live_sequence(world_b, segment(world_b, "stage=mql"))
    assert tasks.evaluate_segments.apply().get() == 2
    assert [row[0] for row in enrolled(world_a, a_sequence)] == [x.pk for x in a_leads]
    assert [row[0] for row in enrolled(world_b, b_sequence)] == [b_lead.pk]
    # Run twice: the same result.
    assert tasks.evaluate_segments_tenant.apply(args=[world_a.tenant.id]).get()["enrolled"] == 0
    assert len(enrolled(world_a, a_sequence)) == 2


def test_stage_choices_are_the_lifecycle_stages():
    field = Sequence._meta.get_field("enrol_on_stage")
    assert [value for value, _label in field.choices] == LifecycleStage.values
