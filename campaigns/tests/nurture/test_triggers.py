"""Automatic enrolment on a form submission and on reaching a stage (through the
outbox, as delivered after commit), the sequence settings that name them, and the
create-task step's due days."""

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts.models import DomainEvent, Role
from accounts.services import SYSTEM, Origin
from accounts.tenancy import tenant_scope
from campaigns import hooks
from campaigns.models import Enrolment, Sequence
from campaigns.nurture import services as nurture
from campaigns.nurture.forms import SequenceSettingsForm
from campaigns.tests.factories import EmailTemplateFactory, SenderIdentityFactory
from leads.models import Channel, Lead
from leads.services import lead_change_stage
from leads.tests.capture_helpers import (  # noqa: F401 (autouse fixture)
    _fresh_capture_counters,
    make_form,
)
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

MARKETER = Origin(role=Role.MARKETING)
State = Enrolment.State

SUBMISSION = {
    "email": "yamada@example.co.jp",
    "sei": "山田",
    "mei": "太郎",
    "company": "株式会社両輪商事",
    "tel": "03-1234-5678",
    "pref": "13",
    "message": "資料をください",
    "consent": "1",
}


def live_sequence(world, **fields) -> Sequence:
    fields.setdefault("sender_id", SenderIdentityFactory(tenant=world.tenant).pk)
    sequence = nurture.sequence_create(
        tenant_id=world.tenant.id, origin=MARKETER, name=fields.pop("name", "自動育成"), **fields
    )
    template = EmailTemplateFactory(tenant=world.tenant)
    nurture.sequence_steps_save(
        sequence=sequence, steps=[{"kind": "send_email", "template": template}], origin=MARKETER
    )
    return nurture.sequence_set_status(
        sequence=sequence, status=Sequence.Status.ACTIVE, origin=MARKETER
    )


def enrolments(world, sequence) -> list[tuple[int, str, str]]:
    with tenant_scope(world.tenant.id):
        return list(
            Enrolment.objects.filter(sequence=sequence)
            .order_by("id")
            .values_list("lead_id", "state", "source")
        )


def submit(client, form, **changes):
    return client.post(
        reverse("capture:submit", args=[form.key]),
        {**SUBMISSION, **changes},
        content_type="application/json",
        HTTP_ACCEPT="application/json",
    )


# --- Form submitted -----------------------------------------------------------------------------


def test_a_form_submission_enrols_the_lead_in_the_forms_sequences(
    world_a, client, django_capture_on_commit_callbacks
):
    form = make_form(world_a.tenant)
    other_form = make_form(world_a.tenant, name="セミナー申込")
    on_form = live_sequence(world_a, enrol_on_form_id=form.pk)
    on_other = live_sequence(world_a, name="セミナー", enrol_on_form_id=other_form.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert submit(client, form).status_code == 200
    with tenant_scope(world_a.tenant.id):
        lead = Lead.objects.get(email="yamada@example.co.jp")
        [event] = DomainEvent.objects.filter(name="form.submitted")
        assert (event.payload["form_id"], event.payload["lead_id"]) == (form.pk, lead.pk)
        assert event.dispatched_at is not None
    assert enrolments(world_a, on_form) == [(lead.pk, State.ACTIVE, Enrolment.Source.FORM)]
    assert enrolments(world_a, on_other) == []


def test_a_redelivered_form_event_enrols_once_even_with_reenrolment(world_a):
    form = make_form(world_a.tenant)
    sequence = live_sequence(world_a, enrol_on_form_id=form.pk, allow_reenrolment=True)
    lead = LeadFactory(tenant=world_a.tenant)
    with tenant_scope(world_a.tenant.id):
        event = DomainEvent.objects.create(
            tenant=world_a.tenant,
            name="form.submitted",
            payload={"v": 1, "form_id": form.pk, "lead_id": lead.pk},
        )
    hooks.form_submitted(event)
    with tenant_scope(world_a.tenant.id):
        Enrolment.objects.filter(sequence=sequence).update(state=State.COMPLETED)
    hooks.form_submitted(event)  # the same event again, after the journey ended
    assert enrolments(world_a, sequence) == [(lead.pk, State.COMPLETED, "form")]
    # A later submission is a new chance (re-enrolment allowed).
    with tenant_scope(world_a.tenant.id):
        later = DomainEvent.objects.create(
            tenant=world_a.tenant,
            name="form.submitted",
            payload={"v": 1, "form_id": form.pk, "lead_id": lead.pk},
            occurred_at=event.occurred_at + datetime.timedelta(days=1),
        )
    hooks.form_submitted(later)
    assert [row[1] for row in enrolments(world_a, sequence)] == [State.COMPLETED, State.ACTIVE]


def test_the_trigger_handlers_are_registered():
    from accounts import events

    assert hooks.form_submitted in events.handlers_for("form.submitted")
    assert hooks.lead_lifecycle_changed in events.handlers_for("lead.lifecycle_changed")


# --- Stage reached ------------------------------------------------------------------------------


def test_reaching_a_stage_enrols_in_the_sequences_of_that_stage(
    world_a, django_capture_on_commit_callbacks
):
    on_mql = live_sequence(world_a, enrol_on_stage="mql")
    on_sal = live_sequence(world_a, name="SAL", enrol_on_stage="sal")
    paused = live_sequence(world_a, name="停止中", enrol_on_stage="mql")
    nurture.sequence_set_status(sequence=paused, status="paused", origin=MARKETER)
    lead = LeadFactory(tenant=world_a.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        lead_change_stage(lead=lead, to_stage="mql", origin=SYSTEM, channel=Channel.SYSTEM)
    assert enrolments(world_a, on_mql) == [(lead.pk, State.ACTIVE, Enrolment.Source.STAGE)]
    assert enrolments(world_a, on_sal) == []
    assert enrolments(world_a, paused) == []


def test_a_redelivered_stage_event_enrols_once(world_a):
    sequence = live_sequence(world_a, enrol_on_stage="mql", allow_reenrolment=True)
    lead = LeadFactory(tenant=world_a.tenant)
    with tenant_scope(world_a.tenant.id):
        event = DomainEvent.objects.create(
            tenant=world_a.tenant,
            name="lead.lifecycle_changed",
            payload={"v": 1, "lead_id": lead.pk, "from": "lead", "to": "mql"},
        )
    hooks.lead_lifecycle_changed(event)
    with tenant_scope(world_a.tenant.id):
        Enrolment.objects.filter(sequence=sequence).update(state=State.COMPLETED)
    hooks.lead_lifecycle_changed(event)
    assert enrolments(world_a, sequence) == [(lead.pk, State.COMPLETED, "stage")]


def test_a_sequence_on_sql_takes_the_lead_after_it_left_the_others(world_a):
    """SQL exits every sequence first; a sequence that enrols on SQL then takes it."""
    nurturing = live_sequence(world_a, name="育成")
    onboarding = live_sequence(world_a, name="商談準備", enrol_on_stage="sql")
    lead = LeadFactory(tenant=world_a.tenant)
    nurture.enrol_leads(tenant_id=world_a.tenant.id, sequence_id=nurturing.pk, lead_ids=[lead.pk])
    nurture.lead_stage_changed(tenant_id=world_a.tenant.id, lead_id=lead.pk, to_stage="sql")
    assert enrolments(world_a, nurturing) == [(lead.pk, State.EXITED, "manual")]
    assert enrolments(world_a, onboarding) == [(lead.pk, State.ACTIVE, "stage")]


# --- Settings -----------------------------------------------------------------------------------


def test_trigger_settings_are_checked(world_a, world_b):
    foreign_form = make_form(world_b.tenant)
    with pytest.raises(ValidationError) as caught:
        nurture.sequence_create(
            tenant_id=world_a.tenant.id, origin=MARKETER, name="x", enrol_on_stage="hot"
        )
    assert "enrol_on_stage" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        nurture.sequence_create(
            tenant_id=world_a.tenant.id,
            origin=MARKETER,
            name="x",
            enrol_on_form_id=foreign_form.pk,
        )
    assert "enrol_on_form" in caught.value.message_dict
    form = make_form(world_a.tenant)
    sequence = nurture.sequence_create(tenant_id=world_a.tenant.id, origin=MARKETER, name="x")
    updated = nurture.sequence_update(
        sequence=sequence, origin=MARKETER, enrol_on_form_id=form.pk, enrol_on_stage="mql"
    )
    assert (updated.enrol_on_form_id, updated.enrol_on_stage) == (form.pk, "mql")


def test_the_settings_form_offers_the_triggers_of_this_tenant(world_a, world_b):
    from campaigns.nurture.segments import segment_create

    mine = make_form(world_a.tenant, name="資料請求A")
    make_form(world_b.tenant, name="資料請求B")
    segment = segment_create(
        tenant_id=world_a.tenant.id, origin=MARKETER, name="MQL", filter="stage=mql"
    )
    with tenant_scope(world_a.tenant.id):
        form = SequenceSettingsForm()
        forms_offered = [c[1] for c in form.fields["enrol_on_form"].choices][1:]
        assert forms_offered == ["資料請求A"]
        assert [str(c[1]) for c in form.fields["enrol_on_segment"].choices][1:] == ["MQL"]
        bound = SequenceSettingsForm(
            {
                "name": "自動",
                "enrol_on_form": str(mine.pk),
                "enrol_on_stage": "mql",
                "enrol_on_segment": str(segment.pk),
            }
        )
        assert bound.is_valid(), bound.errors
        fields = bound.service_fields()
    assert (fields["enrol_on_form_id"], fields["enrol_on_stage"]) == (mine.pk, "mql")
    assert fields["enrol_on_segment_id"] == segment.pk


def test_a_task_step_takes_due_days(world_a):
    sequence = nurture.sequence_create(tenant_id=world_a.tenant.id, origin=MARKETER, name="x")
    with pytest.raises(ValidationError) as caught:
        nurture.sequence_steps_save(
            sequence=sequence,
            steps=[{"kind": "create_task", "config": {"title": "電話", "due_in_days": 400}}],
            origin=MARKETER,
        )
    assert "0〜365日後" in caught.value.messages[0]
    nurture.sequence_steps_save(
        sequence=sequence,
        steps=[{"kind": "create_task", "config": {"title": "電話", "due_in_days": 2}}],
        origin=MARKETER,
    )
    with tenant_scope(world_a.tenant.id):
        [step] = sequence.steps.all()
    assert step.config == {"title": "電話", "due_in_days": 2}
