"""The nurture API: the generic endpoint tests (CRUD, error format, tenant isolation,
roles and key scopes) for sender identities, templates, sequences, enrolments and
outgoing messages, then what is particular to each: template preview and test send
(to a real SMTP server), steps with per-step errors and versions, activate/pause,
enrolling by ids or a lead filter with a result per lead, pause/resume/remove/replied,
a message's events, sending settings."""

import email
import email.policy

import pytest
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext
from rest_framework.response import Response

from accounts.models import AuditLog, Role
from accounts.tenancy import tenant_scope
from campaigns.models import Enrolment, OutgoingMessage, Sequence, SequenceStep
from campaigns.nurture import services
from campaigns.tests.factories import (
    EmailTemplateFactory,
    EnrolmentFactory,
    OutgoingMessageFactory,
    SegmentFactory,
    SenderIdentityFactory,
    SequenceFactory,
    SequenceStepFactory,
)
from campaigns.tests.nurture.test_selectors import build as build_sequence_with_figures
from leads.models import ActivityType, Channel, LifecycleStage
from leads.services import activity_record
from leads.tests.factories import CaptureFormFactory, CompanyFactory, LeadFactory
from tests.api_base import APIEndpointTests, assert_error, detail_url, list_url
from tests.fixtures import TenantWorld, api_client_for

State = Enrolment.State


class TestSenderIdentitiesAPI(APIEndpointTests):
    route = "sender-identity"
    create_payload = {
        "from_name": "両輪商事 マーケティング部",
        "from_email": "marketing@ryorin.example.jp",
        "reply_to": "sales@ryorin.example.jp",
        "postal_address": "〒100-0001 東京都千代田区千代田1-1",
    }
    update_payload = {"from_name": "両輪商事 営業企画部"}
    invalid_payload = {"from_name": "x", "from_email": "not-an-address", "postal_address": "x"}
    invalid_field = "from_email"

    def make_object(self, world: TenantWorld) -> Model:
        return SenderIdentityFactory(tenant=world.tenant)


class TestEmailTemplatesAPI(APIEndpointTests):
    route = "email-template"
    create_payload = {
        "name": "資料のご案内",
        "subject": '{{ lead.family_name|default:"ご担当者" }}様、資料のご案内',
        "text": "ご案内です。",
    }
    update_payload = {"subject": "新しい件名"}
    invalid_payload = {"name": "x", "subject": "{{ lead.family_name", "text": "t"}
    invalid_field = "subject"

    def make_object(self, world: TenantWorld) -> Model:
        return EmailTemplateFactory(tenant=world.tenant)


class TestSequencesAPI(APIEndpointTests):
    route = "sequence"
    create_payload = {"name": "ウェビナー後フォロー", "allow_reenrolment": True}
    update_payload = {"name": "ウェビナー後フォロー（改）", "enrol_on_recycled": True}
    invalid_payload = {"name": ""}
    invalid_field = "name"

    def make_object(self, world: TenantWorld) -> Model:
        return SequenceFactory(tenant=world.tenant)

    def check_created(self, world: TenantWorld, response: Response) -> None:
        super().check_created(world, response)
        body = response.json()
        assert body["status"] == Sequence.Status.DRAFT
        assert body["version"] == 1
        assert body["enrolments"] == {"active": 0, "paused": 0, "completed": 0, "exited": 0}


class TestEnrolmentsAPI(APIEndpointTests):
    route = "enrolment"
    actions = {"list", "retrieve"}
    invalid_query = {"state": "sleeping"}

    def make_object(self, world: TenantWorld) -> Model:
        lead = LeadFactory(tenant=world.tenant, company=CompanyFactory(tenant=world.tenant))
        return EnrolmentFactory(tenant=world.tenant, lead=lead)


class TestOutgoingMessagesAPI(APIEndpointTests):
    route = "outgoing-message"
    actions = {"list", "retrieve"}
    invalid_query = {"status": "lost"}

    def make_object(self, world: TenantWorld) -> Model:
        return OutgoingMessageFactory(tenant=world.tenant)


pytestmark = pytest.mark.django_db


def url(route: str, world: TenantWorld, pk=None, action: str | None = None) -> str:
    if route == "sending-settings":
        return reverse("api:tenant:sending-settings", kwargs={"tenant": world.tenant.slug})
    if action is None:
        return (
            list_url(route, world.tenant.slug)
            if pk is None
            else detail_url(route, world.tenant.slug, pk)
        )
    kwargs = {"tenant": world.tenant.slug}
    if pk is not None:
        kwargs["pk"] = pk
    return reverse(f"api:tenant:{route}-{action}", kwargs=kwargs)


def marketer(world: TenantWorld):
    return api_client_for(world.member(role=Role.MARKETING))


# --- Roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "may_write"),
    [
        (Role.OWNER, True),
        (Role.ADMIN, True),
        (Role.MARKETING, True),
        (Role.INSIDE_SALES, False),
        (Role.FIELD_SALES, False),
        (Role.READ_ONLY, False),
    ],
)
def test_everyone_reads_only_marketing_and_admins_write(world_a, role, may_write):
    sequence = SequenceFactory(tenant=world_a.tenant)
    lead = LeadFactory(tenant=world_a.tenant)
    enrolment = EnrolmentFactory(tenant=world_a.tenant, sequence=sequence)
    client = api_client_for(world_a.member(role=role))
    for route in ("sequence", "enrolment", "email-template", "sender-identity"):
        assert client.get(url(route, world_a)).status_code == 200
    assert client.get(url("sending-settings", world_a)).status_code == 200
    writes = [
        client.post(url("sequence", world_a), {"name": "n"}),
        client.post(url("sequence", world_a, sequence.pk, "pause")),
        client.post(
            url("enrolment", world_a, action="enrol"),
            {"sequence_id": sequence.pk, "lead_id": lead.pk},
        ),
        client.post(url("enrolment", world_a, enrolment.pk, "replied")),
        client.patch(url("sending-settings", world_a), {"per_minute": 10}),
    ]
    for response in writes:
        if may_write:
            assert response.status_code in (200, 201), response.content
        else:
            assert_error(response, 403, "permission_denied")


# --- Templates: preview and test send --------------------------------------------------------


def test_preview_renders_the_mail_a_real_lead_would_get(world_a):
    lead = LeadFactory(tenant=world_a.tenant, family_name="佐藤")
    sender = SenderIdentityFactory(tenant=world_a.tenant, from_name="両輪商事")
    template = EmailTemplateFactory(
        tenant=world_a.tenant,
        html='<p>{{ lead.family_name }}様 <a href="https://x.jp/">資料</a></p>',
    )
    client = api_client_for(world_a.member(role=Role.READ_ONLY))  # a read: everyone
    response = client.get(
        url("email-template", world_a, template.pk, "preview"),
        {"lead_id": lead.pk, "sender_id": sender.pk},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["subject"] == "佐藤様、資料のご案内"
    assert body["text"].startswith("佐藤様")
    assert "両輪商事" in body["text"]
    assert "東京都千代田区千代田1-1" in body["html"]
    assert 'href="https://x.jp/"' in body["html"]  # no click tracking in a preview
    assert "/n/o/" not in body["html"]  # nor the open pixel
    assert "/n/u/preview/" in body["text"]  # a placeholder unsubscribes nobody


def test_preview_names_a_missing_lead_or_sender(world_a, world_b):
    template = EmailTemplateFactory(tenant=world_a.tenant)
    b_lead = LeadFactory(tenant=world_b.tenant)
    client = api_client_for(world_a.owner)
    path = url("email-template", world_a, template.pk, "preview")
    error = assert_error(client.get(path, {"lead_id": b_lead.pk}), 400, "invalid")
    assert set(error["fields"]) == {"lead_id"}
    lead = LeadFactory(tenant=world_a.tenant)
    error = assert_error(client.get(path, {"lead_id": lead.pk}), 400, "invalid")
    assert set(error["fields"]) == {"sender_id"}  # the tenant has no sender yet
    assert_error(client.get(path), 400, "invalid")


def test_test_send_goes_through_the_mail_server_marked_as_a_test(world_a, smtp):
    lead = LeadFactory(tenant=world_a.tenant, family_name="佐藤")
    SenderIdentityFactory(tenant=world_a.tenant)
    template = EmailTemplateFactory(tenant=world_a.tenant)
    response = marketer(world_a).post(
        url("email-template", world_a, template.pk, "test-send"),
        {"lead_id": lead.pk, "to": "checker@ryorin.example.jp"},
    )
    assert response.status_code == 200, response.content
    [envelope] = smtp.inbox.envelopes
    assert envelope.rcpt_tos == ["checker@ryorin.example.jp"]
    parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert parsed["Subject"] == "[テスト] 佐藤様、資料のご案内" or parsed["Subject"].endswith(
        "佐藤様、資料のご案内"
    )
    assert parsed["Subject"] != "佐藤様、資料のご案内"
    assert parsed["Message-ID"] == response.json()["message_id"]
    with tenant_scope(world_a.tenant.id):
        assert not OutgoingMessage.objects.exists()
        assert AuditLog.objects.filter(action="email_template.test_sent").count() == 1


def test_test_send_errors_name_the_address(world_a, smtp):
    lead = LeadFactory(tenant=world_a.tenant)
    SenderIdentityFactory(tenant=world_a.tenant)
    template = EmailTemplateFactory(tenant=world_a.tenant)
    client = marketer(world_a)
    path = url("email-template", world_a, template.pk, "test-send")
    error = assert_error(client.post(path, {"lead_id": lead.pk, "to": "nobody"}), 400)
    assert set(error["fields"]) == {"to"}
    smtp.inbox.refuse["*"] = "550 5.1.1 no such user"
    error = assert_error(client.post(path, {"lead_id": lead.pk, "to": "gone@example.jp"}), 400)
    assert "550" in error["fields"]["to"][0]


def test_a_template_in_use_is_not_deleted(world_a):
    step = SequenceStepFactory(tenant=world_a.tenant)
    response = marketer(world_a).delete(url("email-template", world_a, step.template_id))
    error = assert_error(response, 400, "invalid")
    assert step.sequence.name in error["fields"]["template"][0]


def test_a_sender_in_use_is_not_deleted(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant)
    response = marketer(world_a).delete(url("sender-identity", world_a, sequence.sender_id))
    assert_error(response, 400, "invalid")


# --- Sequences: steps, status, references ----------------------------------------------------


def test_steps_are_read_and_replaced_with_a_new_version_when_leads_run_them(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    template = EmailTemplateFactory(tenant=world_a.tenant)
    client = marketer(world_a)
    path = url("sequence", world_a, sequence.pk, "steps")
    steps = [
        {"kind": "send_email", "template_id": template.pk},
        {"kind": "wait", "config": {"seconds": 86400}},
        {
            "kind": "branch",
            "config": {"condition": {"type": "opened_previous"}, "then": 4, "else": 3},
        },
        {"kind": "send_email", "template_id": template.pk},
        {"kind": "end"},
    ]
    response = client.put(path, {"steps": steps})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == 1
    assert [step["kind"] for step in body["steps"]] == [s["kind"] for s in steps]
    assert [step["order"] for step in body["steps"]] == [0, 1, 2, 3, 4]
    assert body["steps"][2]["config"]["then"] == 4
    assert client.get(path).json() == body

    assert client.post(url("sequence", world_a, sequence.pk, "activate")).status_code == 200
    EnrolmentFactory(tenant=world_a.tenant, sequence=sequence)
    response = client.put(path, {"steps": steps[:1]})
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 2
    with tenant_scope(world_a.tenant.id):
        assert SequenceStep.objects.filter(sequence=sequence, version=1).count() == 5


@pytest.mark.parametrize(
    ("steps", "index", "field"),
    [
        ([{"kind": "wait", "config": {"seconds": 60}}, {"kind": "teleport"}], "1", "kind"),
        ([{"kind": "send_email"}], "0", "template_id"),
        ([{"kind": "send_email", "template_id": 999_999_999}], "0", "template_id"),
        (
            [
                {"kind": "wait", "config": {"seconds": 60}},
                {"kind": "end"},
                {
                    "kind": "branch",
                    "config": {"condition": {"type": "stage_is", "value": "mql"}, "then": 0},
                },
            ],
            "2",
            "config.then",
        ),
        (
            [
                {
                    "kind": "branch",
                    "config": {"condition": {"type": "score_at_least", "value": "many"}, "then": 1},
                },
                {"kind": "end"},
            ],
            "0",
            "config.condition.value",
        ),
        (
            [
                {"kind": "end"},
                {
                    "kind": "branch",
                    "config": {"condition": {"type": "stage_is", "value": "emperor"}, "then": 2},
                },
                {"kind": "end"},
            ],
            "1",
            "config.condition.value",
        ),
        (
            [
                {
                    "kind": "branch",
                    "config": {"condition": {"type": "field_equals", "value": "x"}, "then": 1},
                },
                {"kind": "end"},
            ],
            "0",
            "config.condition.field",
        ),
        ([{"kind": "create_task", "config": {"title": " "}}], "0", "config.title"),
        ([{"kind": "wait", "config": {"seconds": -5}}], "0", "config"),
    ],
)
def test_a_bad_step_is_named_by_position_and_field(world_a, steps, index, field):
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    response = marketer(world_a).put(
        url("sequence", world_a, sequence.pk, "steps"), {"steps": steps}
    )
    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]["steps"]) == {index}, error
    assert set(error["fields"]["steps"][index]) == {field}, error
    with tenant_scope(world_a.tenant.id):
        assert not SequenceStep.objects.filter(sequence=sequence).exists()


def test_a_branch_condition_is_checked_and_saved_as_the_dispatcher_reads_it(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    client = marketer(world_a)
    path = url("sequence", world_a, sequence.pk, "steps")

    def steps(condition: dict) -> dict:
        return {
            "steps": [
                {"kind": "wait", "config": {"seconds": 60}},
                {"kind": "branch", "config": {"condition": condition, "then": 2}},
                {"kind": "end"},
            ]
        }

    error = assert_error(client.put(path, steps({"type": "score_at_least", "value": "many"})), 400)
    with translation.override("ja"):  # the tenant's language (the user chose none)
        message = gettext("Step %(n)d: the score to reach is a whole number.") % {"n": 2}
    assert error["fields"]["steps"] == {"1": {"config.condition.value": [message]}}
    response = client.put(path, steps({"type": "score_at_least", "value": "40"}))
    assert response.status_code == 200, response.content
    assert response.json()["steps"][1]["config"]["condition"] == {
        "type": "score_at_least",
        "value": 40,
    }


def test_another_tenants_template_is_not_a_template(world_a, world_b):
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    b_template = EmailTemplateFactory(tenant=world_b.tenant)
    response = marketer(world_a).put(
        url("sequence", world_a, sequence.pk, "steps"),
        {"steps": [{"kind": "send_email", "template_id": b_template.pk}]},
    )
    error = assert_error(response, 400, "invalid")
    assert error["fields"]["steps"] == {
        "0": {"template_id": [error["fields"]["steps"]["0"]["template_id"][0]]}
    }


def test_activate_needs_steps_and_pause_pauses_the_enrolments(world_a):
    client = marketer(world_a)
    draft = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    error = assert_error(client.post(url("sequence", world_a, draft.pk, "activate")), 400)
    assert set(error["fields"]) == {"status"}
    step = SequenceStepFactory(tenant=world_a.tenant)
    enrolment = EnrolmentFactory(tenant=world_a.tenant, sequence=step.sequence)
    response = client.post(url("sequence", world_a, step.sequence_id, "pause"))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "paused"
    assert response.json()["enrolments"]["paused"] == 1
    with tenant_scope(world_a.tenant.id):
        assert Enrolment.objects.get(pk=enrolment.pk).state == State.PAUSED
    response = client.post(url("sequence", world_a, step.sequence_id, "activate"))
    assert response.json()["enrolments"]["active"] == 1


def test_activate_needs_a_sender_and_an_active_sequence_keeps_it(world_a):
    """Without a sender every mail of the sequence would fail at sending."""
    client = marketer(world_a)
    step = SequenceStepFactory(
        tenant=world_a.tenant,
        sequence=SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT, sender=None),
    )
    sequence_id = step.sequence_id
    error = assert_error(client.post(url("sequence", world_a, sequence_id, "activate")), 400)
    assert set(error["fields"]) == {"sender"}
    sender = SenderIdentityFactory(tenant=world_a.tenant)
    response = client.patch(url("sequence", world_a, sequence_id), {"sender_id": sender.pk})
    assert response.status_code == 200, response.content
    response = client.post(url("sequence", world_a, sequence_id, "activate"))
    assert response.json()["status"] == "active"
    response = client.patch(url("sequence", world_a, sequence_id), {"sender_id": None})
    assert set(assert_error(response, 400)["fields"]) == {"sender"}
    with tenant_scope(world_a.tenant.id):
        assert Sequence.objects.get(pk=sequence_id).sender_id == sender.pk


def test_a_sequence_leads_went_through_is_not_deleted(world_a):
    enrolment = EnrolmentFactory(tenant=world_a.tenant)
    response = marketer(world_a).delete(url("sequence", world_a, enrolment.sequence_id))
    assert_error(response, 400, "invalid")
    with tenant_scope(world_a.tenant.id):
        assert Sequence.objects.filter(pk=enrolment.sequence_id).exists()


def test_references_to_another_tenants_rows_are_refused(world_a, world_b):
    b_sender = SenderIdentityFactory(tenant=world_b.tenant)
    b_form = CaptureFormFactory(tenant=world_b.tenant)
    b_segment = SegmentFactory(tenant=world_b.tenant)
    response = marketer(world_a).post(
        url("sequence", world_a),
        {
            "name": "n",
            "sender_id": b_sender.pk,
            "enrol_on_form_id": b_form.pk,
            "enrol_on_segment_id": b_segment.pk,
        },
    )
    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {"sender_id", "enrol_on_form_id", "enrol_on_segment_id"}
    with tenant_scope(world_a.tenant.id):
        assert not Sequence.objects.exists()


def test_triggers_are_set_and_shown(world_a):
    form = CaptureFormFactory(tenant=world_a.tenant)
    segment = SegmentFactory(tenant=world_a.tenant)
    response = marketer(world_a).post(
        url("sequence", world_a),
        {
            "name": "資料請求フォロー",
            "enrol_on_form_id": form.pk,
            "enrol_on_stage": LifecycleStage.MQL,
            "enrol_on_segment_id": segment.pk,
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["enrol_on_form_id"], body["enrol_on_stage"], body["enrol_on_segment_id"]) == (
        form.pk,
        LifecycleStage.MQL,
        segment.pk,
    )


# --- Sequences: figures ----------------------------------------------------------------------


def test_stats_give_the_figures_of_the_sequence_and_of_each_email_step(world_a, world_b):
    """The figures of the selectors' own test (campaigns/tests/nurture/test_selectors.py:
    five leads that opened, clicked, bounced, unsubscribed, replied, reached MQL)."""
    sequence, step_a, step_b, _other = build_sequence_with_figures(world_a.tenant)
    build_sequence_with_figures(world_b.tenant)  # counted nowhere here
    client = api_client_for(world_a.member(role=Role.READ_ONLY))  # a read: everyone
    response = client.get(url("sequence", world_a, sequence.pk, "stats"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["sequence_id"], body["version"]) == (sequence.pk, sequence.version)
    assert body["enrolments"] == {
        "enrolled": 5, "active": 1, "paused": 0, "completed": 0, "exited": 4,
    }  # fmt: skip
    assert body["mail"] == {
        "sent": 5, "delivered": 4, "opened": 2, "clicked": 1, "replied": 1,
        "unsubscribed": 1, "bounced": 2, "mql": 1,
        "rates": {
            "delivered": 0.8, "opened": 0.5, "clicked": 0.25, "replied": 0.25,
            "unsubscribed": 0.25,
        },
    }  # fmt: skip
    # The email steps in order (the wait between them has no figures).
    assert [(s["step_id"], s["order"], s["version"]) for s in body["steps"]] == [
        (step_a.pk, 0, 1),
        (step_b.pk, 2, 1),
    ]
    assert body["steps"][0]["template_id"] == step_a.template_id
    assert body["steps"][0]["template_name"] == step_a.template.name
    assert body["steps"][0]["mail"] == {
        "sent": 4, "delivered": 3, "opened": 1, "clicked": 1, "replied": 1,
        "unsubscribed": 1, "bounced": 2, "mql": 1,
        "rates": {
            "delivered": 0.75, "opened": 1 / 3, "clicked": 1 / 3, "replied": 1 / 3,
            "unsubscribed": 1 / 3,
        },
    }  # fmt: skip
    assert body["steps"][1]["mail"] == {
        "sent": 1, "delivered": 1, "opened": 1, "clicked": 0, "replied": 0,
        "unsubscribed": 0, "bounced": 0, "mql": 0,
        "rates": {
            "delivered": 1.0, "opened": 1.0, "clicked": 0.0, "replied": 0.0,
            "unsubscribed": 0.0,
        },
    }  # fmt: skip


def test_stats_of_a_sequence_without_mail_have_no_rates_yet(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    step = SequenceStepFactory(tenant=world_a.tenant, sequence=sequence, order=0)
    response = api_client_for(world_a.owner).get(url("sequence", world_a, sequence.pk, "stats"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["enrolments"]["enrolled"] == 0
    assert body["mail"]["sent"] == 0
    assert body["mail"]["rates"] == dict.fromkeys(
        ("delivered", "opened", "clicked", "replied", "unsubscribed")
    )
    # A step of the current version shows before it sent anything, with zeros.
    [row] = body["steps"]
    assert (row["step_id"], row["mail"]["sent"], row["mail"]["rates"]["opened"]) == (
        step.pk, 0, None,
    )  # fmt: skip


def test_stats_of_an_earlier_version_stay_while_its_mails_count(world_a):
    template = EmailTemplateFactory(tenant=world_a.tenant)
    sequence = SequenceFactory(tenant=world_a.tenant)
    old = SequenceStepFactory(tenant=world_a.tenant, sequence=sequence, order=0, template=template)
    enrolment = EnrolmentFactory(tenant=world_a.tenant, sequence=sequence)
    OutgoingMessageFactory(
        tenant=world_a.tenant, enrolment=enrolment, lead=enrolment.lead, step=old,
        status=OutgoingMessage.Status.SENT, sent_at=enrolment.enrolled_at,
    )  # fmt: skip
    response = marketer(world_a).put(
        url("sequence", world_a, sequence.pk, "steps"),
        {"steps": [{"kind": "send_email", "template_id": template.pk}]},
    )
    assert response.json()["version"] == 2
    body = marketer(world_a).get(url("sequence", world_a, sequence.pk, "stats")).json()
    assert body["version"] == 2
    assert [(s["version"], s["mail"]["sent"]) for s in body["steps"]] == [(2, 0), (1, 1)]
    assert body["steps"][1]["step_id"] == old.pk
    assert body["mail"]["sent"] == 1


def test_stats_take_the_same_queries_whatever_the_number_of_steps(world_a):
    sequence, *_rest = build_sequence_with_figures(world_a.tenant)
    client = api_client_for(world_a.owner)
    path = url("sequence", world_a, sequence.pk, "stats")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        assert response.status_code == 200, response.content
        return len(captured)

    before = queries()
    for order in range(3, 9):
        step = SequenceStepFactory(tenant=world_a.tenant, sequence=sequence, order=order)
        enrolment = EnrolmentFactory(tenant=world_a.tenant, sequence=sequence)
        OutgoingMessageFactory(
            tenant=world_a.tenant, enrolment=enrolment, lead=enrolment.lead, step=step,
            status=OutgoingMessage.Status.SENT, sent_at=enrolment.enrolled_at,
        )  # fmt: skip
    assert queries() == before
    assert len(client.get(path).json()["steps"]) == 8
    # The request's own (caller, tenant, role, the tenant scope in and out: 7), then the
    # sequence, its figures (enrolments, mails: 2) and its email steps.
    assert before <= 11


def test_stats_of_another_tenants_sequence_are_404(world_a, world_b):
    sequence, *_rest = build_sequence_with_figures(world_a.tenant)
    b_owner = api_client_for(world_b.owner)
    b_key = api_client_for(api_key=world_b.api_key(role=Role.ADMIN))
    assert_error(b_owner.get(url("sequence", world_a, sequence.pk, "stats")), 404, "not_found")
    assert_error(b_owner.get(url("sequence", world_b, sequence.pk, "stats")), 404, "not_found")
    keyed = reverse("api:keytenant:sequence-stats", kwargs={"pk": sequence.pk})
    assert_error(b_key.get(keyed), 404, "not_found")
    # Not a number: the same JSON 404.
    assert_error(b_owner.get(url("sequence", world_b, "abc", "stats")), 404, "not_found")


# --- Enrolments --------------------------------------------------------------------------------


def test_enrol_a_list_gives_a_result_per_lead(world_a, world_b):
    sequence = SequenceFactory(tenant=world_a.tenant)
    new = LeadFactory(tenant=world_a.tenant)
    already = EnrolmentFactory(tenant=world_a.tenant, sequence=sequence).lead
    finished = EnrolmentFactory(
        tenant=world_a.tenant, sequence=sequence, state=State.COMPLETED
    ).lead
    foreign = LeadFactory(tenant=world_b.tenant)
    response = marketer(world_a).post(
        url("enrolment", world_a, action="enrol"),
        {"sequence_id": sequence.pk, "lead_ids": [new.pk, already.pk, finished.pk, foreign.pk]},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert {r["lead_id"]: r["result"] for r in body["results"]} == {
        new.pk: "enrolled",
        already.pk: "already_enrolled",
        finished.pk: "finished",
        foreign.pk: "not_found",
    }
    assert body["counts"] == {"enrolled": 1, "already_enrolled": 1, "finished": 1, "not_found": 1}
    with tenant_scope(world_a.tenant.id):
        assert Enrolment.objects.get(lead=new, sequence=sequence).state == State.ACTIVE


def test_enrol_the_leads_a_filter_selects(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant)
    mqls = [
        LeadFactory(tenant=world_a.tenant, lifecycle_stage=LifecycleStage.MQL) for _ in range(3)
    ]
    LeadFactory(tenant=world_a.tenant, lifecycle_stage=LifecycleStage.LEAD)
    client = marketer(world_a)
    path = url("enrolment", world_a, action="enrol")
    response = client.post(
        path, {"sequence_id": sequence.pk, "lead_filter": {"stage": [LifecycleStage.MQL]}}
    )
    assert response.status_code == 200, response.content
    assert sorted(r["lead_id"] for r in response.json()["results"]) == sorted(m.pk for m in mqls)
    assert response.json()["counts"]["enrolled"] == 3

    error = assert_error(
        client.post(path, {"sequence_id": sequence.pk, "lead_filter": {"stage": "emperor"}}), 400
    )
    assert "stage" in error["fields"]["lead_filter"]
    error = assert_error(
        client.post(path, {"sequence_id": sequence.pk, "lead_filter": {"colour": "red"}}), 400
    )
    assert "colour" in error["fields"]["lead_filter"]
    error = assert_error(client.post(path, {"sequence_id": sequence.pk}), 400)
    assert "lead_ids" in error["fields"]


def test_enrolling_in_a_draft_or_unknown_sequence_is_refused(world_a, world_b):
    lead = LeadFactory(tenant=world_a.tenant)
    client = marketer(world_a)
    path = url("enrolment", world_a, action="enrol")
    draft = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    foreign = SequenceFactory(tenant=world_b.tenant)
    for sequence in (draft, foreign):
        error = assert_error(
            client.post(path, {"sequence_id": sequence.pk, "lead_id": lead.pk}), 400
        )
        assert set(error["fields"]) == {"sequence"}
    with tenant_scope(world_b.tenant.id):
        assert not Enrolment.objects.exists()


def test_pause_resume_remove_and_replied(world_a):
    client = marketer(world_a)
    enrolment = EnrolmentFactory(tenant=world_a.tenant)
    response = client.post(url("enrolment", world_a, enrolment.pk, "pause"))
    assert response.json()["state"] == State.PAUSED
    response = client.post(url("enrolment", world_a, enrolment.pk, "resume"))
    assert response.json()["state"] == State.ACTIVE
    response = client.post(url("enrolment", world_a, enrolment.pk, "replied"))
    assert response.status_code == 200, response.content
    assert response.json()["state"] == State.EXITED
    assert response.json()["exit_reason"] == Enrolment.ExitReason.REPLIED
    assert response.json()["next_due_at"] is None
    # Finished: nothing more to do with it.
    error = assert_error(client.post(url("enrolment", world_a, enrolment.pk, "remove")), 400)
    assert set(error["fields"]) == {"state"}
    other = EnrolmentFactory(tenant=world_a.tenant)
    response = client.post(url("enrolment", world_a, other.pk, "remove"))
    assert response.json()["exit_reason"] == Enrolment.ExitReason.REMOVED
    with tenant_scope(world_a.tenant.id):
        assert AuditLog.objects.filter(action="enrolment.replied").count() == 1


def test_enrolments_filter_by_sequence_state_and_lead(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant)
    mine = EnrolmentFactory(tenant=world_a.tenant, sequence=sequence)
    paused = EnrolmentFactory(tenant=world_a.tenant, sequence=sequence, state=State.PAUSED)
    elsewhere = EnrolmentFactory(tenant=world_a.tenant)
    client = api_client_for(world_a.owner)
    path = url("enrolment", world_a)

    def ids(params) -> set[int]:
        return {row["id"] for row in client.get(path, params).json()["results"]}

    assert ids({"sequence": sequence.pk}) == {mine.pk, paused.pk}
    assert ids({"sequence": sequence.pk, "state": "paused"}) == {paused.pk}
    assert ids({"lead": elsewhere.lead_id}) == {elsewhere.pk}
    first = client.get(path, {"page_size": 2}).json()
    assert len(first["results"]) == 2
    assert first["next"]
    rest = client.get(first["next"]).json()
    assert {r["id"] for r in first["results"] + rest["results"]} == {
        mine.pk,
        paused.pk,
        elsewhere.pk,
    }


# --- Outgoing messages and their events --------------------------------------------------------


def test_a_messages_events_are_its_own_email_activities(world_a):
    message = OutgoingMessageFactory(tenant=world_a.tenant, status=OutgoingMessage.Status.SENT)
    other = OutgoingMessageFactory(
        tenant=world_a.tenant, enrolment=EnrolmentFactory(tenant=world_a.tenant, lead=message.lead)
    )
    with tenant_scope(world_a.tenant.id):
        for message_id, kind in (
            (message.pk, ActivityType.EMAIL_OPENED),
            (message.pk, ActivityType.EMAIL_CLICKED),
            (other.pk, ActivityType.EMAIL_OPENED),
        ):
            activity_record(
                tenant_id=world_a.tenant.id,
                type=kind,
                lead=message.lead,
                channel=Channel.TRACKING,
                properties={"message_id": message_id},
            )
        activity_record(
            tenant_id=world_a.tenant.id,
            type=ActivityType.NOTE,
            lead=message.lead,
            channel=Channel.API,
            properties={"message_id": message.pk},
        )
    client = api_client_for(world_a.owner)
    response = client.get(url("outgoing-message", world_a, message.pk, "events"))
    assert response.status_code == 200, response.content
    assert sorted(row["type"] for row in response.json()["results"]) == [
        "email_clicked",
        "email_opened",
    ]
    listed = client.get(url("outgoing-message", world_a), {"status": "sent"}).json()["results"]
    assert [row["id"] for row in listed] == [message.pk]
    assert listed[0]["sequence_id"] == message.enrolment.sequence_id


# --- Sending settings ------------------------------------------------------------------------


def test_sending_settings_read_defaults_and_change(world_a):
    client = marketer(world_a)
    path = url("sending-settings", world_a)
    assert client.get(path).json() == {
        "per_minute": 600,
        "per_day": 100000,
        "quiet_start": None,
        "quiet_end": None,
    }
    response = client.patch(path, {"per_day": 5000, "quiet_start": "21:00", "quiet_end": "08:00"})
    assert response.status_code == 200, response.content
    assert response.json() == {
        "per_minute": 600,
        "per_day": 5000,
        "quiet_start": "21:00:00",
        "quiet_end": "08:00:00",
    }
    assert client.get(path).json()["per_day"] == 5000
    error = assert_error(client.patch(path, {"quiet_start": "22:00"}), 400)
    assert set(error["fields"]) == {"quiet_end"}
    error = assert_error(client.patch(path, {"per_minute": 0}), 400)
    assert set(error["fields"]) == {"per_minute"}


def test_sending_settings_of_another_tenant_are_404(world_a, world_b):
    client = api_client_for(world_b.owner)
    assert_error(client.get(url("sending-settings", world_a)), 404)
    assert_error(client.patch(url("sending-settings", world_a), {"per_day": 1}), 404)
    assert services.sending_settings_get(world_a.tenant.id).per_day == 100_000
