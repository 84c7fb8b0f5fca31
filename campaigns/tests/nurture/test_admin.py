"""Nurturing in the platform admin: every page opens on both tenants' rows, edits go
through the services (merge fields checked, audited, in-use rows kept), read-only
models stay read-only, and the actions pause and activate through the services."""

import pytest
from django.contrib import messages
from django.urls import reverse

from accounts.models import AuditLog, User
from accounts.tenancy import tenant_scope, unscoped
from campaigns.models import (
    EmailTemplate,
    Enrolment,
    OutgoingMessage,
    SenderIdentity,
    SendingSettings,
    Sequence,
)
from campaigns.tests.factories import (
    EmailTemplateFactory,
    EnrolmentFactory,
    OutgoingMessageFactory,
    SendingSettingsFactory,
    SequenceStepFactory,
)

pytestmark = pytest.mark.django_db

MODELS = [SenderIdentity, EmailTemplate, Sequence, Enrolment, OutgoingMessage, SendingSettings]


@pytest.fixture
def admin(client, db):
    client.force_login(User.objects.create_superuser("root@ryorin.example", "correct horse"))
    return client


def changelist(model) -> str:
    return reverse(f"admin:campaigns_{model._meta.model_name}_changelist")


def change(obj) -> str:
    return reverse(f"admin:campaigns_{obj._meta.model_name}_change", args=[obj.pk])


def add(model) -> str:
    return reverse(f"admin:campaigns_{model._meta.model_name}_add")


def rows(world):
    """One row of every nurture model in the world's tenant, by model."""
    message = OutgoingMessageFactory(tenant=world.tenant)
    step = SequenceStepFactory(tenant=world.tenant, sequence=message.enrolment.sequence)
    return {
        SenderIdentity: message.enrolment.sequence.sender,
        EmailTemplate: step.template,
        Sequence: message.enrolment.sequence,
        Enrolment: message.enrolment,
        OutgoingMessage: message,
        SendingSettings: SendingSettingsFactory(tenant=world.tenant),
    }


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_page_opens_on_both_tenants_rows(
    admin, world_a, world_b, model, django_assert_max_num_queries
):
    made = {world.tenant.id: rows(world) for world in (world_a, world_b)}
    with django_assert_max_num_queries(15):
        response = admin.get(changelist(model))
    assert response.status_code == 200
    listed = {row.pk for row in response.context["cl"].result_list}
    assert {made[t][model].pk for t in made} <= listed
    response = admin.get(change(made[world_b.tenant.id][model]))
    assert response.status_code == 200


def test_read_only_models_have_no_add_or_edit(admin, world_a):
    made = rows(world_a)
    for model in (Sequence, Enrolment, OutgoingMessage):
        assert admin.get(add(model)).status_code == 403
        response = admin.post(change(made[model]), {})
        assert response.status_code == 403
    response = admin.get(change(made[Sequence]))
    [steps] = response.context["inline_admin_formsets"]  # the steps, read-only
    assert len(steps.formset.forms) == 2  # the message's step and the template's


def test_add_sender_goes_through_the_service(admin, world_a):
    form = {
        "tenant": world_a.tenant.pk,
        "from_name": "両輪商事",
        "from_email": "news@ryorin.example.jp",
        "reply_to": "",
        "postal_address": "東京都千代田区千代田1-1",
    }
    response = admin.post(add(SenderIdentity), form)
    assert response.status_code == 302, response.content
    with tenant_scope(world_a.tenant.id):
        sender = SenderIdentity.objects.get(from_email="news@ryorin.example.jp")
        assert AuditLog.objects.filter(action="sender.created", target_id=str(sender.pk)).exists()


def test_a_template_with_a_bad_merge_field_is_refused(admin, world_a):
    template = EmailTemplateFactory(tenant=world_a.tenant)
    form = {"name": template.name, "subject": "{{ lead.__class__ }}", "html": "", "text": "t"}
    response = admin.post(change(template), form, follow=True)
    assert response.status_code == 200
    assert any(m.level == messages.ERROR for m in response.context["messages"])
    with tenant_scope(world_a.tenant.id):
        assert EmailTemplate.objects.get(pk=template.pk).subject == template.subject


def test_a_template_in_use_is_kept(admin, world_a):
    step = SequenceStepFactory(tenant=world_a.tenant)
    response = admin.post(
        reverse("admin:campaigns_emailtemplate_delete", args=[step.template_id]),
        {"post": "yes"},
        follow=True,
    )
    assert response.context["protected"]  # the admin names the steps that use it
    with unscoped("test"):
        assert EmailTemplate.objects.filter(pk=step.template_id).exists()


def test_sending_settings_change_through_the_service(admin, world_a):
    settings = SendingSettingsFactory(tenant=world_a.tenant)
    form = {"per_minute": "50", "per_day": "2000", "quiet_start": "21:00", "quiet_end": "08:00"}
    response = admin.post(change(settings), form)
    assert response.status_code == 302, response.content
    with tenant_scope(world_a.tenant.id):
        settings.refresh_from_db()
        assert AuditLog.objects.filter(action="sending_settings.updated").exists()
    assert (settings.per_minute, settings.per_day) == (50, 2000)
    assert str(settings.quiet_start) == "21:00:00"


def test_actions_pause_enrolments_and_sequences_through_the_services(admin, world_a):
    step = SequenceStepFactory(tenant=world_a.tenant)
    enrolment = EnrolmentFactory(tenant=world_a.tenant, sequence=step.sequence)
    response = admin.post(
        changelist(Enrolment), {"action": "pause", "_selected_action": [enrolment.pk]}
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        assert Enrolment.objects.get(pk=enrolment.pk).state == Enrolment.State.PAUSED
        assert AuditLog.objects.filter(action="enrolment.pause").exists()
    response = admin.post(
        changelist(Sequence), {"action": "pause", "_selected_action": [step.sequence_id]}
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        assert Sequence.objects.get(pk=step.sequence_id).status == Sequence.Status.PAUSED
