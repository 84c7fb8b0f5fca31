"""Nurture services: versioned steps, enrolment once at a time (and re-enrolment),
pausing, exits on stage changes, enrolment on campaign join and recycling."""

import datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError
from django.utils import translation

from accounts.models import DomainEvent, Role
from accounts.services import Origin
from accounts.tenancy import tenant_scope
from campaigns import hooks, services
from campaigns.models import Enrolment, Sequence, SequenceStep, StepKind
from campaigns.nurture import services as nurture
from campaigns.tests.factories import (
    CampaignFactory,
    EmailTemplateFactory,
    EnrolmentFactory,
    SenderIdentityFactory,
)
from leads.models import CustomFieldDefinition
from leads.tests.factories import CustomFieldDefinitionFactory, LeadFactory

pytestmark = pytest.mark.django_db

MARKETER = Origin(role=Role.MARKETING)
State = Enrolment.State


def steps(template) -> list[dict]:
    return [
        {"kind": "send_email", "template": template},
        {"kind": "wait", "config": {"seconds": 3 * 86400}},
        {
            "kind": "branch",
            "config": {"condition": {"type": "opened_previous"}, "then": 4, "else": 3},
        },
        {"kind": "send_email", "template": template},
        {"kind": "end"},
    ]


def live_sequence(world, **fields) -> Sequence:
    fields.setdefault("sender_id", SenderIdentityFactory(tenant=world.tenant).pk)
    sequence = nurture.sequence_create(
        tenant_id=world.tenant.id, origin=MARKETER, name="資料請求フォロー", **fields
    )
    template = EmailTemplateFactory(tenant=world.tenant)
    nurture.sequence_steps_save(sequence=sequence, steps=steps(template), origin=MARKETER)
    return nurture.sequence_set_status(
        sequence=sequence, status=Sequence.Status.ACTIVE, origin=MARKETER
    )


def test_steps_are_validated(world_a):
    sequence = nurture.sequence_create(tenant_id=world_a.tenant.id, origin=MARKETER, name="s")
    template = EmailTemplateFactory(tenant=world_a.tenant)
    bad = [
        [{"kind": "send_email"}],
        [{"kind": "wait", "config": {}}],
        [{"kind": "wait", "config": {"window": ["18:00", "09:00"]}}],
        [{"kind": "branch", "config": {"condition": {"type": "opened_previous"}, "then": 0}}],
        [{"kind": "branch", "config": {"condition": {"type": "eval"}, "then": 1}}, {"kind": "end"}],
        [{"kind": "change_field", "config": {"field": "tenant_id", "value": "2"}}],
        [{"kind": "launch"}],
        [],
    ]
    for raw in bad:
        with pytest.raises(ValidationError):
            nurture.sequence_steps_save(sequence=sequence, steps=raw, origin=MARKETER)
    with tenant_scope(world_a.tenant.id):
        assert not SequenceStep.objects.exists()
    assert (
        nurture.sequence_steps_save(sequence=sequence, steps=steps(template), origin=MARKETER) == 1
    )


VALUE, FIELD = "config.condition.value", "config.condition.field"


def branch_on(condition: dict) -> list[dict]:
    return [
        {"kind": "wait", "config": {"seconds": 60}},
        {"kind": "branch", "config": {"condition": condition, "then": 2}},
        {"kind": "end"},
    ]


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        ({"type": "score_at_least", "value": "many"}, VALUE),
        ({"type": "score_at_least"}, VALUE),
        ({"type": "score_at_least", "value": "4.5"}, VALUE),
        ({"type": "score_at_least", "value": 4.5}, VALUE),
        ({"type": "score_at_least", "value": True}, VALUE),
        ({"type": "stage_is", "value": "emperor"}, VALUE),
        ({"type": "stage_is"}, VALUE),
        ({"type": "field_equals", "value": "部長"}, FIELD),
        ({"type": "field_equals", "field": "  ", "value": "部長"}, FIELD),
        ({"type": "field_equals", "field": ["job_title"], "value": "x"}, FIELD),
        ({"type": "field_equals", "field": "nickname", "value": "x"}, FIELD),
        ({"type": "field_equals", "field": "job_title", "value": 3}, VALUE),
        ({"type": "field_equals", "field": "email", "value": "not an address"}, VALUE),
        ({"type": "field_equals", "field": "employees", "value": "many"}, VALUE),
        ({"type": "field_equals", "field": "employees", "value": " "}, VALUE),
        ({"type": "field_equals", "field": "interests", "value": "AI"}, FIELD),
    ],
)  # fmt: skip
def test_a_branch_condition_it_could_never_take_is_refused(world_a, condition, field):
    """The dispatcher would never take these: saved, they would silently send every
    lead down the "else" path."""
    CustomFieldDefinitionFactory(
        tenant=world_a.tenant, key="employees", type=CustomFieldDefinition.Type.NUMBER
    )
    CustomFieldDefinitionFactory(
        tenant=world_a.tenant, key="interests", type=CustomFieldDefinition.Type.MULTI_CHOICE,
        choices=["AI", "IoT"],
    )  # fmt: skip
    sequence = nurture.sequence_create(tenant_id=world_a.tenant.id, origin=MARKETER, name="s")
    with translation.override("en"), pytest.raises(nurture.StepsInvalid) as caught:
        nurture.sequence_steps_save(sequence=sequence, steps=branch_on(condition), origin=MARKETER)
    assert (caught.value.step.index, caught.value.step.field) == (1, field)
    assert caught.value.messages[0].startswith("Step 2: ")
    with tenant_scope(world_a.tenant.id):
        assert not SequenceStep.objects.exists()


@pytest.mark.parametrize(
    ("condition", "saved"),
    [
        ({"type": "score_at_least", "value": 50}, {"type": "score_at_least", "value": 50}),
        ({"type": "score_at_least", "value": " 50 "}, {"type": "score_at_least", "value": 50}),
        ({"type": "score_at_least", "value": "５０"}, {"type": "score_at_least", "value": 50}),
        # Rules may take points away: a score can be below zero.
        ({"type": "score_at_least", "value": "-10"}, {"type": "score_at_least", "value": -10}),
        ({"type": "stage_is", "value": "mql", "extra": 1}, {"type": "stage_is", "value": "mql"}),
        (
            {"type": "field_equals", "field": " job_title ", "value": "ﾏｰｹﾃｨﾝｸﾞ部長"},
            {"type": "field_equals", "field": "job_title", "value": "マーケティング部長"},
        ),
        (  # "the department is blank"
            {"type": "field_equals", "field": "department"},
            {"type": "field_equals", "field": "department", "value": ""},
        ),
        (
            {"type": "field_equals", "field": "email", "value": "Tanaka@Example.CO.JP"},
            {"type": "field_equals", "field": "email", "value": "tanaka@example.co.jp"},
        ),
        (  # as the lead's custom field holds it, so the dispatcher's == can match
            {"type": "field_equals", "field": "employees", "value": "1,200"},
            {"type": "field_equals", "field": "employees", "value": 1200},
        ),
        (
            {"type": "field_equals", "field": "industry", "value": "製造業"},
            {"type": "field_equals", "field": "industry", "value": "製造業"},
        ),
    ],
)
def test_a_branch_condition_is_saved_as_the_dispatcher_compares_it(world_a, condition, saved):
    CustomFieldDefinitionFactory(
        tenant=world_a.tenant, key="employees", type=CustomFieldDefinition.Type.NUMBER
    )
    CustomFieldDefinitionFactory(tenant=world_a.tenant, key="industry")
    sequence = nurture.sequence_create(tenant_id=world_a.tenant.id, origin=MARKETER, name="s")
    nurture.sequence_steps_save(sequence=sequence, steps=branch_on(condition), origin=MARKETER)
    with tenant_scope(world_a.tenant.id):
        step = SequenceStep.objects.get(sequence=sequence, kind=StepKind.BRANCH)
    assert step.config == {"condition": saved, "then": 2, "else": 2}


def test_a_custom_field_of_another_tenant_is_not_a_field(world_a, world_b):
    CustomFieldDefinitionFactory(tenant=world_b.tenant, key="industry")
    sequence = nurture.sequence_create(tenant_id=world_a.tenant.id, origin=MARKETER, name="s")
    condition = {"type": "field_equals", "field": "industry", "value": "製造業"}
    with pytest.raises(nurture.StepsInvalid) as caught:
        nurture.sequence_steps_save(sequence=sequence, steps=branch_on(condition), origin=MARKETER)
    assert caught.value.step.field == "config.condition.field"


def test_only_writers_edit_sequences(world_a):
    with pytest.raises(PermissionDenied):
        nurture.sequence_create(
            tenant_id=world_a.tenant.id, origin=Origin(role=Role.FIELD_SALES), name="x"
        )


def test_editing_a_live_sequence_makes_a_new_version_and_keeps_enrolments_on_theirs(world_a):
    sequence = live_sequence(world_a)
    lead = LeadFactory(tenant=world_a.tenant)
    assert nurture.enrol_leads(
        tenant_id=world_a.tenant.id, sequence_id=sequence.pk, lead_ids=[lead.pk]
    ) == [lead.pk]
    template = EmailTemplateFactory(tenant=world_a.tenant)
    version = nurture.sequence_steps_save(
        sequence=sequence, steps=[{"kind": "send_email", "template": template}], origin=MARKETER
    )
    assert version == 2
    with tenant_scope(world_a.tenant.id):
        enrolment = Enrolment.objects.get(lead=lead)
        assert enrolment.version == 1
        assert SequenceStep.objects.filter(sequence=sequence, version=1).count() == 5
        assert SequenceStep.objects.filter(sequence=sequence, version=2).count() == 1
    # Saving again without enrolments on version 2 replaces it in place.
    assert (
        nurture.sequence_steps_save(sequence=sequence, steps=steps(template), origin=MARKETER) == 2
    )
    other = LeadFactory(tenant=world_a.tenant)
    nurture.enrol_leads(tenant_id=world_a.tenant.id, sequence_id=sequence.pk, lead_ids=[other.pk])
    with tenant_scope(world_a.tenant.id):
        assert Enrolment.objects.get(lead=other).version == 2


def test_a_lead_is_in_a_sequence_once_at_a_time(world_a):
    sequence = live_sequence(world_a, allow_reenrolment=True)
    lead = LeadFactory(tenant=world_a.tenant)
    enrol = lambda: nurture.enrol_leads(  # noqa: E731
        tenant_id=world_a.tenant.id, sequence_id=sequence.pk, lead_ids=[lead.pk, lead.pk]
    )
    assert enrol() == [lead.pk]
    assert enrol() == []
    with tenant_scope(world_a.tenant.id):
        enrolment = Enrolment.objects.get(lead=lead)
    nurture.enrolment_set_state(enrolment=enrolment, action="remove", origin=MARKETER)
    assert enrol() == [lead.pk]  # re-enrolment allowed by this sequence
    with tenant_scope(world_a.tenant.id):
        assert Enrolment.objects.filter(lead=lead).count() == 2
        # The database itself refuses a second live enrolment.
        with pytest.raises(IntegrityError):
            EnrolmentFactory(tenant=world_a.tenant, sequence=sequence, lead=lead)


def test_no_reenrolment_unless_allowed(world_a):
    sequence = live_sequence(world_a)
    lead = LeadFactory(tenant=world_a.tenant)
    nurture.enrol_leads(tenant_id=world_a.tenant.id, sequence_id=sequence.pk, lead_ids=[lead.pk])
    with tenant_scope(world_a.tenant.id):
        enrolment = Enrolment.objects.get(lead=lead)
    nurture.enrolment_set_state(enrolment=enrolment, action="replied", origin=MARKETER)
    assert (
        nurture.enrol_leads(
            tenant_id=world_a.tenant.id, sequence_id=sequence.pk, lead_ids=[lead.pk]
        )
        == []
    )
    enrolment.refresh_from_db()
    assert (enrolment.state, enrolment.exit_reason) == (State.EXITED, "replied")


def test_enrolling_skips_other_tenants_leads_and_drafts_refuse(world_a, world_b):
    sequence = live_sequence(world_a)
    foreign = LeadFactory(tenant=world_b.tenant)
    assert (
        nurture.enrol_leads(
            tenant_id=world_a.tenant.id, sequence_id=sequence.pk, lead_ids=[foreign.pk]
        )
        == []
    )
    with pytest.raises(ValidationError):  # another tenant's sequence is not found
        nurture.enrol_leads(
            tenant_id=world_b.tenant.id, sequence_id=sequence.pk, lead_ids=[foreign.pk]
        )
    draft = nurture.sequence_create(tenant_id=world_a.tenant.id, origin=MARKETER, name="d")
    with pytest.raises(ValidationError):
        nurture.enrol_leads(
            tenant_id=world_a.tenant.id,
            sequence_id=draft.pk,
            lead_ids=[LeadFactory(tenant=world_a.tenant).pk],
        )


def test_pausing_a_sequence_pauses_its_enrolments_and_resuming_resumes_them(world_a):
    sequence = live_sequence(world_a)
    leads = LeadFactory.create_batch(3, tenant=world_a.tenant)
    nurture.enrol_leads(
        tenant_id=world_a.tenant.id, sequence_id=sequence.pk, lead_ids=[x.pk for x in leads]
    )
    with tenant_scope(world_a.tenant.id):
        removed = Enrolment.objects.get(lead=leads[0])
    nurture.enrolment_set_state(enrolment=removed, action="remove", origin=MARKETER)
    nurture.sequence_set_status(sequence=sequence, status="paused", origin=MARKETER)
    with tenant_scope(world_a.tenant.id):
        states = dict(Enrolment.objects.values_list("lead_id", "state"))
    assert states == {leads[0].pk: State.EXITED, leads[1].pk: State.PAUSED, leads[2].pk: "paused"}
    # Enrolled while paused: waits paused too.
    late = LeadFactory(tenant=world_a.tenant)
    nurture.enrol_leads(tenant_id=world_a.tenant.id, sequence_id=sequence.pk, lead_ids=[late.pk])
    nurture.sequence_set_status(sequence=sequence, status="active", origin=MARKETER)
    with tenant_scope(world_a.tenant.id):
        states = dict(Enrolment.objects.values_list("lead_id", "state"))
    assert states == {
        leads[0].pk: State.EXITED,
        leads[1].pk: State.ACTIVE,
        leads[2].pk: State.ACTIVE,
        late.pk: State.ACTIVE,
    }


def _stage_event(tenant, lead, to) -> DomainEvent:
    return DomainEvent(
        tenant=tenant,
        name="lead.lifecycle_changed",
        payload={"v": 1, "lead_id": lead.pk, "from": "mql", "to": to},
    )


def test_sql_leaves_sequences_and_recycled_enters_those_that_take_them(world_a):
    keeper = live_sequence(world_a)
    recycle = live_sequence(world_a, enrol_on_recycled=True)
    lead = LeadFactory(tenant=world_a.tenant)
    nurture.enrol_leads(tenant_id=world_a.tenant.id, sequence_id=keeper.pk, lead_ids=[lead.pk])
    hooks.lead_lifecycle_changed(_stage_event(world_a.tenant, lead, "sql"))
    with tenant_scope(world_a.tenant.id):
        enrolment = Enrolment.objects.get(sequence=keeper, lead=lead)
        assert (enrolment.state, enrolment.exit_reason) == (State.EXITED, "became_sql")
        assert enrolment.next_due_at is None
    for _ in range(2):  # delivered twice: still one enrolment
        hooks.lead_lifecycle_changed(_stage_event(world_a.tenant, lead, "recycled"))
    with tenant_scope(world_a.tenant.id):
        recycled = Enrolment.objects.get(sequence=recycle, lead=lead)
        assert (recycled.state, recycled.source) == (State.ACTIVE, Enrolment.Source.RECYCLED)
        assert not Enrolment.objects.filter(sequence=keeper, state=State.ACTIVE).exists()


def test_the_lifecycle_handler_is_registered():
    from accounts import events

    assert hooks.lead_lifecycle_changed in events.handlers_for("lead.lifecycle_changed")


def test_new_campaign_members_enter_its_sequences_after_commit(
    world_a, django_capture_on_commit_callbacks
):
    campaign = CampaignFactory(tenant=world_a.tenant)
    sequence = live_sequence(world_a, enrol_on_campaign_id=campaign.pk)
    leads = LeadFactory.create_batch(2, tenant=world_a.tenant)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.memberships_add_bulk(
            tenant_id=world_a.tenant.id, campaign_id=campaign.pk, lead_ids=[x.pk for x in leads]
        )
    assert callbacks
    with tenant_scope(world_a.tenant.id):
        enrolled = Enrolment.objects.filter(sequence=sequence)
        assert sorted(enrolled.values_list("lead_id", flat=True)) == sorted(x.pk for x in leads)
        assert {e.source for e in enrolled} == {Enrolment.Source.CAMPAIGN}
    # Members already there: no event, no second enrolment.
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.memberships_add_bulk(
            tenant_id=world_a.tenant.id, campaign_id=campaign.pk, lead_ids=[leads[0].pk]
        )
    assert not callbacks
    with tenant_scope(world_a.tenant.id):
        sent = DomainEvent.objects.filter(name="campaign.members_added")
        assert [e.payload["lead_ids"] for e in sent] == [[x.pk for x in leads]]
        assert Enrolment.objects.filter(sequence=sequence).count() == 2


def test_the_campaign_members_handler_is_registered():
    from accounts import events

    assert hooks.members_added in events.handlers_for("campaign.members_added")


def test_enrolment_actions(world_a):
    sequence = live_sequence(world_a)
    lead = LeadFactory(tenant=world_a.tenant)
    nurture.enrol_leads(tenant_id=world_a.tenant.id, sequence_id=sequence.pk, lead_ids=[lead.pk])
    with tenant_scope(world_a.tenant.id):
        enrolment = Enrolment.objects.get(lead=lead)
    enrolment = nurture.enrolment_set_state(enrolment=enrolment, action="pause", origin=MARKETER)
    assert enrolment.state == State.PAUSED
    with pytest.raises(ValidationError):
        nurture.enrolment_set_state(enrolment=enrolment, action="pause", origin=MARKETER)
    enrolment = nurture.enrolment_set_state(enrolment=enrolment, action="resume", origin=MARKETER)
    assert enrolment.state == State.ACTIVE
    with pytest.raises(ValidationError):
        nurture.enrolment_set_state(enrolment=enrolment, action="explode", origin=MARKETER)


def test_sender_identity_needs_postal_address(world_a):
    with pytest.raises(ValidationError) as caught:
        nurture.sender_identity_create(
            tenant_id=world_a.tenant.id,
            origin=MARKETER,
            from_name="営業部",
            from_email="info@example.jp",
            postal_address="",
        )
    assert "postal_address" in caught.value.message_dict


def test_templates_must_parse(world_a):
    with pytest.raises(ValidationError) as caught:
        nurture.email_template_create(
            tenant_id=world_a.tenant.id,
            origin=MARKETER,
            name="t",
            subject="{{ lead.__class__ }}",
            text="{% load os %}",
        )
    assert set(caught.value.message_dict) == {"subject", "text"}
    template = nurture.email_template_create(
        tenant_id=world_a.tenant.id,
        origin=MARKETER,
        name="t",
        subject='{{ lead.family_name|default:"ご担当者" }}様',
        text="本文",
    )
    assert template.pk


def test_quiet_hours_need_both_ends(world_a):
    with pytest.raises(ValidationError):
        nurture.sending_settings_update(
            tenant_id=world_a.tenant.id, origin=MARKETER, quiet_start="21:00"
        )
    saved = nurture.sending_settings_update(
        tenant_id=world_a.tenant.id, origin=MARKETER, quiet_start="21:00", quiet_end="08:00"
    )
    assert saved.quiet_end == datetime.time(8)
    assert nurture.sending_settings_get(world_a.tenant.id).pk == saved.pk


def test_step_kinds_are_all_accepted(world_a):
    sequence = nurture.sequence_create(tenant_id=world_a.tenant.id, origin=MARKETER, name="s")
    other = live_sequence(world_a)
    template = EmailTemplateFactory(tenant=world_a.tenant)
    raw = [
        {"kind": "send_email", "template_id": template.pk},
        {"kind": "wait", "config": {"weekdays": [0, 1, 2, 3, 4], "window": ["09:00", "18:00"]}},
        {"kind": "create_task", "config": {"title": "電話フォロー"}},
        {"kind": "change_field", "config": {"stage": "mql"}},
        {"kind": "enrol", "config": {"sequence_id": other.pk}},
        {"kind": "end"},
    ]
    nurture.sequence_steps_save(sequence=sequence, steps=raw, origin=MARKETER)
    with tenant_scope(world_a.tenant.id):
        kinds = list(SequenceStep.objects.filter(sequence=sequence).values_list("kind", flat=True))
    assert kinds == [k.value for k in StepKind if k != StepKind.BRANCH]
