"""The nurture staff UI: sequences list and page, the builder (settings, steps editor,
versions, errors at the step and field), status, enrolments (list, enrol, pause /
resume / remove), templates (editor, preview with a real lead, test send), senders
and sending settings; who may do what."""

import datetime

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditLog, Role
from accounts.services import Origin
from accounts.tenancy import tenant_scope
from campaigns.models import (
    EmailTemplate,
    Enrolment,
    SenderIdentity,
    SendingSettings,
    Sequence,
    SequenceStep,
    StepKind,
)
from campaigns.nurture import selectors
from campaigns.nurture import services as nurture
from campaigns.nurture.web import id_page
from campaigns.tests.factories import (
    EmailTemplateFactory,
    EnrolmentFactory,
    SenderIdentityFactory,
    SequenceFactory,
    SequenceStepFactory,
)
from leads.tests.factories import CompanyFactory, LeadFactory

pytestmark = pytest.mark.django_db

MARKETER = Origin(role=Role.MARKETING)


def url(world, name: str, **kwargs) -> str:
    return reverse(f"campaigns:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


def login(user) -> Client:
    """A client of `user`, in English (the app starts in Japanese)."""
    user.language = "en"
    user.save(update_fields=["language"])
    client = Client()
    client.force_login(user)
    return client


def row_data(index: int, kind: str, **values) -> dict:
    return {f"s-{index}-kind": kind, **{f"s-{index}-{k}": v for k, v in values.items()}}


def builder_post(rows: list[dict], name: str = "資料請求フォロー", **extra) -> dict:
    data = {"name": name, "step_count": str(len(rows)), **extra}
    for row in rows:
        data.update(row)
    return data


def three_steps(template) -> list[dict]:
    return [
        row_data(0, "send_email", template=str(template.pk)),
        row_data(1, "wait", wait_amount="3", wait_unit="days"),
        row_data(2, "branch", condition="opened_previous", then="3", **{"else": ""}),
        row_data(3, "end"),
    ]


def saved_steps(sequence: Sequence, version: int | None = None) -> list[SequenceStep]:
    with tenant_scope(sequence.tenant_id):
        sequence.refresh_from_db()
        return list(
            SequenceStep.objects.filter(
                sequence=sequence, version=version or sequence.version
            ).order_by("order")
        )


# --- Sequences -------------------------------------------------------------------------------


def test_list_shows_each_sequence_with_its_figures(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant, name="ウェビナー後フォロー")
    EnrolmentFactory.create_batch(2, tenant=world_a.tenant, sequence=sequence)
    EnrolmentFactory(tenant=world_a.tenant, sequence=sequence, state=Enrolment.State.COMPLETED)
    response = login(world_a.member(Role.READ_ONLY)).get(url(world_a, "nurture_sequences"))
    assert response.status_code == 200
    assert "ウェビナー後フォロー" in response.content.decode()
    stats = response.context["rows"][0]["stats"]
    assert (stats.enrolled, stats.active, stats.completed) == (3, 2, 1)
    assert "New sequence" not in response.content.decode()


def test_navigation_links_to_nurturing(world_a):
    response = login(world_a.owner).get(url(world_a, "nurture_sequences"))
    nav = [item for _title, items in response.context["nav_sections"] for item in items]
    entry = next(item for item in nav if item.url == url(world_a, "nurture_sequences"))
    assert entry.active


def test_create_sequence_then_builder(world_a):
    sender = SenderIdentityFactory(tenant=world_a.tenant)
    client = login(world_a.member(Role.MARKETING))
    response = client.post(
        url(world_a, "nurture_sequence_create"),
        {"name": "新規リード育成", "sender": str(sender.pk), "allow_reenrolment": "on"},
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        sequence = Sequence.objects.get(name="新規リード育成")
    assert sequence.sender_id == sender.pk
    assert sequence.allow_reenrolment
    assert response["Location"] == url(world_a, "nurture_sequence_edit", pk=sequence.pk)
    assert client.get(response["Location"]).status_code == 200
    # A name is required; the error is on the field.
    response = client.post(url(world_a, "nurture_sequence_create"), {"name": ""})
    assert response.status_code == 400
    assert "name" in response.context["form"].errors


def test_builder_saves_the_steps_of_every_kind(world_a):
    template = EmailTemplateFactory(tenant=world_a.tenant, name="資料のご案内")
    other = SequenceFactory(tenant=world_a.tenant, name="別シーケンス")
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    rows = [
        row_data(0, "send_email", template=str(template.pk)),
        row_data(
            1,
            "wait",
            wait_amount="2",
            wait_unit="hours",
            weekdays=["0", "2"],
            window_start="09:00",
            window_end="18:00",
        ),
        row_data(
            2, "branch", condition="score_at_least", condition_value="40", then="4", **{"else": "3"}
        ),
        row_data(3, "create_task", title="電話でフォロー"),
        row_data(4, "change_field", change="stage:mql"),
        row_data(5, "change_field", change="field:job_title", change_value="部長"),
        row_data(6, "enrol", sequence=str(other.pk)),
        row_data(7, "end"),
    ]
    response = login(world_a.member(Role.MARKETING)).post(
        url(world_a, "nurture_sequence_edit", pk=sequence.pk), builder_post(rows)
    )
    assert response.status_code == 302, response.context and response.context["rows"]
    steps = saved_steps(sequence)
    assert [(s.kind, s.template_id, s.config) for s in steps] == [
        ("send_email", template.pk, {}),
        ("wait", None, {"seconds": 7200, "weekdays": [0, 2], "window": ["09:00", "18:00"]}),
        ("branch", None, {"condition": {"type": "score_at_least", "value": 40},
                          "then": 4, "else": 3}),
        ("create_task", None, {"title": "電話でフォロー"}),
        ("change_field", None, {"stage": "mql"}),
        ("change_field", None, {"field": "job_title", "value": "部長"}),
        ("enrol", None, {"sequence_id": other.pk}),
        ("end", None, {}),
    ]  # fmt: skip
    assert sequence.name == "資料請求フォロー"
    # The editor shows them back as they were saved.
    response = login(world_a.owner).get(url(world_a, "nurture_sequence_edit", pk=sequence.pk))
    shown = response.context["rows"]
    assert shown[1]["wait_amount"] == "2"
    assert shown[1]["wait_unit"] == "hours"
    assert shown[1]["weekdays"] == ["0", "2"]
    assert shown[2]["then"] == "4"
    assert shown[2]["condition_value"] == "40"
    assert shown[2]["condition_inputs"] == ["value"]  # the score; no field, no stage
    assert shown[5]["change"] == "field:job_title"


def test_editing_a_live_sequence_makes_a_new_version_only_when_steps_change(world_a):
    template = EmailTemplateFactory(tenant=world_a.tenant)
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    client = login(world_a.member(Role.MARKETING))
    edit = url(world_a, "nurture_sequence_edit", pk=sequence.pk)
    sender = {"sender": str(sequence.sender_id)}
    assert client.post(edit, builder_post(three_steps(template), **sender)).status_code == 302
    nurture.sequence_set_status(sequence=sequence, status="active", origin=MARKETER)
    lead = LeadFactory(tenant=world_a.tenant)
    nurture.enrol_leads(tenant_id=world_a.tenant.id, sequence_id=sequence.pk, lead_ids=[lead.pk])
    response = client.get(edit)
    assert response.context["live_on_version"] == 1
    # Only the name changes: the steps stay version 1.
    response = client.post(edit, builder_post(three_steps(template), name="改名", **sender))
    assert response.status_code == 302
    assert saved_steps(sequence)[0].version == 1
    assert sequence.name == "改名"
    # A changed wait: version 2; the enrolment keeps version 1.
    rows = three_steps(template)
    rows[1] = row_data(1, "wait", wait_amount="5", wait_unit="days")
    response = client.post(edit, builder_post(rows, name="改名", **sender))
    assert response.status_code == 302
    assert saved_steps(sequence)[1].config == {"seconds": 5 * 86400}
    assert sequence.version == 2
    assert saved_steps(sequence, version=1)[1].config == {"seconds": 3 * 86400}
    with tenant_scope(world_a.tenant.id):
        assert Enrolment.objects.get(lead=lead).version == 1


def test_a_live_sequence_keeps_its_sender_and_a_draft_needs_one_to_go_live(world_a):
    template = EmailTemplateFactory(tenant=world_a.tenant)
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT, sender=None)
    client = login(world_a.member(Role.MARKETING))
    edit = url(world_a, "nurture_sequence_edit", pk=sequence.pk)
    assert client.post(edit, builder_post(three_steps(template))).status_code == 302
    status = url(world_a, "nurture_sequence_status", pk=sequence.pk)
    response = client.post(status, {"status": "active"}, follow=True)
    assert "Choose a sender: an active sequence needs one." in response.content.decode()
    sequence.refresh_from_db()
    assert sequence.status == Sequence.Status.DRAFT
    sender = SenderIdentityFactory(tenant=world_a.tenant)
    rows = three_steps(template)
    assert client.post(edit, builder_post(rows, sender=str(sender.pk))).status_code == 302
    client.post(status, {"status": "active"})
    sequence.refresh_from_db()
    assert sequence.status == Sequence.Status.ACTIVE
    # Saving the live sequence without its sender: refused, shown at the sender field.
    response = client.post(edit, builder_post(rows, sender=""))
    assert response.status_code == 400
    assert response.context["form"].errors["sender"] == [
        "Choose a sender: an active sequence needs one."
    ]
    sequence.refresh_from_db()
    assert sequence.sender_id == sender.pk


def test_builder_errors_come_back_on_the_step_and_field(world_a):
    template = EmailTemplateFactory(tenant=world_a.tenant)
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    client = login(world_a.member(Role.MARKETING))
    edit = url(world_a, "nurture_sequence_edit", pk=sequence.pk)
    # Shapes: no template, a wait of "abc", a branch without a target.
    rows = [
        row_data(0, "send_email", template=""),
        row_data(1, "wait", wait_amount="abc", wait_unit="days"),
        row_data(2, "branch", condition="opened_previous", then=""),
        row_data(3, "end"),
    ]
    response = client.post(edit, builder_post(rows))
    assert response.status_code == 400
    shown = response.context["rows"]
    assert "template" in shown[0]["errors"]
    assert "wait_amount" in shown[1]["errors"]
    assert "then" in shown[2]["errors"]
    assert shown[3]["errors"] == {}
    # Kept as typed, nothing saved.
    assert shown[1]["wait_amount"] == "abc"
    assert saved_steps(sequence) == []
    # A rule of the services (a branch goes forward): on the step it is about.
    rows = [
        row_data(0, "send_email", template=str(template.pk)),
        row_data(1, "wait", wait_amount="1", wait_unit="days"),
        row_data(2, "branch", condition="opened_previous", then="0"),
    ]
    response = client.post(edit, builder_post(rows))
    assert response.status_code == 400
    shown = response.context["rows"]
    assert shown[2]["errors"] == {"then": ["Step 3: a branch goes to a later step."]}
    assert shown[0]["errors"] == {}
    assert saved_steps(sequence) == []

    # A settings error (the name) and the steps together roll back as one.
    response = client.post(edit, builder_post(three_steps(template), name=""))
    assert response.status_code == 400
    assert "name" in response.context["form"].errors
    assert saved_steps(sequence) == []
    # Taking every step out: an error about the steps as a whole.
    assert client.post(edit, builder_post(three_steps(template))).status_code == 302
    response = client.post(edit, builder_post([]))
    assert response.status_code == 400
    assert response.context["errors"] == ["A sequence has at least one step."]
    assert len(saved_steps(sequence)) == 4


def test_builder_adds_and_moves_rows_without_saving(world_a):
    template = EmailTemplateFactory(tenant=world_a.tenant)
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    client = login(world_a.member(Role.MARKETING))
    edit = url(world_a, "nurture_sequence_edit", pk=sequence.pk)
    rows = three_steps(template)
    response = client.post(edit, builder_post(rows, op="add", new_kind="create_task"))
    assert response.status_code == 200
    assert [r["kind"] for r in response.context["rows"]] == [
        "send_email", "wait", "branch", "end", "create_task",
    ]  # fmt: skip
    # Moving the end step up: the branch's target follows it (step 4 -> step 3).
    response = client.post(edit, builder_post(rows, op="up:3"))
    shown = response.context["rows"]
    assert [r["kind"] for r in shown] == ["send_email", "wait", "end", "branch"]
    assert shown[3]["then"] == "2"
    # Removing a branch's target clears it.
    response = client.post(edit, builder_post(rows, op="remove:3"))
    assert response.context["rows"][2]["then"] == ""
    assert saved_steps(sequence) == []


def test_activate_and_pause(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    client = login(world_a.member(Role.MARKETING))
    status = url(world_a, "nurture_sequence_status", pk=sequence.pk)
    response = client.post(status, {"status": "active"}, follow=True)
    assert "Add steps before activating." in response.content.decode()
    SequenceStepFactory(tenant=world_a.tenant, sequence=sequence, order=0)
    client.post(status, {"status": "active"})
    sequence.refresh_from_db()
    assert sequence.status == Sequence.Status.ACTIVE
    enrolment = EnrolmentFactory(tenant=world_a.tenant, sequence=sequence)
    client.post(status, {"status": "paused"})
    with tenant_scope(world_a.tenant.id):
        assert Enrolment.objects.get(pk=enrolment.pk).state == Enrolment.State.PAUSED
    page = client.get(url(world_a, "nurture_sequence", pk=sequence.pk))
    assert 'data-testid="activate-sequence"' in page.content.decode()


def test_sequence_page_shows_steps_and_figures(world_a):
    template = EmailTemplateFactory(tenant=world_a.tenant, name="導入事例")
    sequence = SequenceFactory(
        tenant=world_a.tenant, enrol_on_stage="recycled", enrol_on_recycled=True
    )
    step = SequenceStepFactory(tenant=world_a.tenant, sequence=sequence, order=0, template=template)
    SequenceStepFactory(
        tenant=world_a.tenant, sequence=sequence, order=1, kind=StepKind.WAIT,
        template=None, config={"seconds": 2 * 86400},
    )  # fmt: skip
    response = login(world_a.member(Role.READ_ONLY)).get(
        url(world_a, "nurture_sequence", pk=sequence.pk)
    )
    assert response.status_code == 200
    labels = [item["label"] for item in response.context["steps"]]
    assert labels == ["Send email: 導入事例", "Wait: 2 days"]
    assert [row["step"].pk for row in response.context["step_stats"]] == [step.pk]
    body = response.content.decode()
    assert 'data-testid="edit-sequence"' not in body
    assert "leads reaching Recycled" in body
    assert "leads recycled by sales" in body


# --- Enrolments ------------------------------------------------------------------------------


def test_enrolment_list_shows_where_each_lead_stands(world_a):
    template = EmailTemplateFactory(tenant=world_a.tenant, name="フォロー2通目")
    sequence = SequenceFactory(tenant=world_a.tenant)
    SequenceStepFactory(tenant=world_a.tenant, sequence=sequence, order=0)
    SequenceStepFactory(tenant=world_a.tenant, sequence=sequence, order=1, template=template)
    due = timezone.now() + datetime.timedelta(days=3)
    lead = LeadFactory(tenant=world_a.tenant, family_name="山田", given_name="花子")
    waiting = EnrolmentFactory(
        tenant=world_a.tenant, sequence=sequence, lead=lead, step_order=1, next_due_at=due
    )
    gone = EnrolmentFactory(
        tenant=world_a.tenant, sequence=sequence, state=Enrolment.State.EXITED,
        exit_reason=Enrolment.ExitReason.UNSUBSCRIBED, next_due_at=None,
    )  # fmt: skip
    client = login(world_a.member(Role.INSIDE_SALES))
    response = client.get(url(world_a, "nurture_enrolments", pk=sequence.pk))
    assert response.status_code == 200
    rows = {row["enrolment"].pk: row for row in response.context["rows"]}
    assert rows[waiting.pk]["at"] == "Send email: フォロー2通目"
    assert rows[waiting.pk]["step_number"] == 2
    body = response.content.decode()
    assert "山田 花子" in body
    assert timezone.localtime(due).strftime("%Y-%m-%d %H:%M") in body
    assert "Unsubscribed" in body
    assert rows[gone.pk]["at"] == ""
    # Filtered by state.
    response = client.get(url(world_a, "nurture_enrolments", pk=sequence.pk), {"state": "exited"})
    assert [row["enrolment"].pk for row in response.context["rows"]] == [gone.pk]


def test_enrol_picked_leads(world_a, world_b):
    sequence = SequenceFactory(tenant=world_a.tenant)
    SequenceStepFactory(tenant=world_a.tenant, sequence=sequence, order=0)
    company = CompanyFactory(tenant=world_a.tenant, name="両輪商事")
    first = LeadFactory(tenant=world_a.tenant, family_name="佐藤", company=company)
    second = LeadFactory(tenant=world_a.tenant, family_name="佐藤二")
    foreign = LeadFactory(tenant=world_b.tenant, family_name="佐藤")
    client = login(world_a.member(Role.MARKETING))
    picker = client.get(url(world_a, "nurture_lead_picker", pk=sequence.pk), {"q": "佐藤"})
    assert {lead.pk for lead, _in in picker.context["leads"]} == {first.pk, second.pk}
    response = client.post(
        url(world_a, "nurture_enrol", pk=sequence.pk),
        {"ids": [str(first.pk), str(foreign.pk)]},
        follow=True,
    )
    body = response.content.decode()
    assert "1 lead enrolled." in body
    assert "1 lead was left out" in body
    with tenant_scope(world_a.tenant.id):
        assert list(Enrolment.objects.values_list("lead_id", flat=True)) == [first.pk]
    picker = client.get(url(world_a, "nurture_lead_picker", pk=sequence.pk), {"q": "佐藤"})
    assert {lead.pk: live for lead, live in picker.context["leads"]}[first.pk] is True


def test_enrol_into_a_draft_is_refused(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    lead = LeadFactory(tenant=world_a.tenant)
    response = login(world_a.owner).post(
        url(world_a, "nurture_enrol", pk=sequence.pk), {"ids": [str(lead.pk)]}, follow=True
    )
    assert "Activate the sequence first." in response.content.decode()
    with tenant_scope(world_a.tenant.id):
        assert not Enrolment.objects.exists()


def test_pause_resume_remove_an_enrolment(world_a):
    enrolment = EnrolmentFactory(tenant=world_a.tenant)
    client = login(world_a.member(Role.MARKETING))
    state_url = url(world_a, "nurture_enrolment_state", pk=enrolment.pk)

    def state() -> tuple[str, str]:
        with tenant_scope(world_a.tenant.id):
            found = Enrolment.objects.get(pk=enrolment.pk)
            return found.state, found.exit_reason

    response = client.post(state_url, {"action": "pause"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert f'id="enrolment-{enrolment.pk}"' in response.content.decode()
    assert state() == ("paused", "")
    client.post(state_url, {"action": "resume"})
    assert state() == ("active", "")
    client.post(state_url, {"action": "remove"})
    assert state() == ("exited", "removed")
    # Not possible any more: the error comes back on the row.
    response = client.post(state_url, {"action": "pause"}, HTTP_HX_REQUEST="true")
    assert "Not possible in this state." in response.content.decode()


# --- Templates, senders, settings ------------------------------------------------------------


def test_template_create_and_merge_errors(world_a):
    client = login(world_a.member(Role.MARKETING))
    response = client.post(
        url(world_a, "nurture_template_create"),
        {"name": "お礼", "subject": "{{ lead.family_name }}様 ご来場御礼",
         "text": "{{ lead.family_name|default:\"ご担当者\" }}様", "html": ""},
    )  # fmt: skip
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        template = EmailTemplate.objects.get(name="お礼")
    response = client.post(
        url(world_a, "nurture_template", pk=template.pk),
        {"name": "お礼", "subject": "{{ lead.__class__ }}", "text": "本文", "html": ""},
    )
    assert response.status_code == 400
    assert "subject" in response.context["form"].errors
    template.refresh_from_db()
    assert template.subject == "{{ lead.family_name }}様 ご来場御礼"


def test_preview_renders_a_real_lead(world_a):
    sender = SenderIdentityFactory(tenant=world_a.tenant, from_name="両輪マーケ")
    company = CompanyFactory(tenant=world_a.tenant, name="株式会社テスト")
    lead = LeadFactory(
        tenant=world_a.tenant, family_name="<鈴木>", email="suzuki@example.jp", company=company
    )
    response = login(world_a.member(Role.MARKETING)).post(
        url(world_a, "nurture_template_preview"),
        {
            "subject": "{{ lead.family_name }}様へ",
            "text": "{{ company.name }}の{{ lead.family_name }}様",
            "html": "<p>{{ lead.family_name }}様</p>",
            "preview_lead": "suzuki@",
            "preview_sender": str(sender.pk),
        },
    )
    assert response.status_code == 200
    preview = response.context["preview"]
    assert response.context["preview_lead"].pk == lead.pk
    assert preview.subject == "<鈴木>様へ"
    assert preview.text.startswith("株式会社テストの<鈴木>様")
    assert "両輪マーケ" in preview.text  # the compliance footer
    assert "<p>&lt;鈴木&gt;様</p>" in preview.html  # escaped in HTML
    # A broken part says so; the others still render.
    response = login(world_a.owner).post(
        url(world_a, "nurture_template_preview"),
        {"subject": "{{ oops", "text": "{{ lead.email }}", "preview_lead": str(lead.pk)},
    )
    assert "subject" in response.context["preview"].errors
    assert response.context["preview"].text.startswith("suzuki@example.jp")


def test_test_send_goes_to_the_address_only(world_a):
    sender = SenderIdentityFactory(tenant=world_a.tenant, from_email="news@ryorin.example")
    lead = LeadFactory(tenant=world_a.tenant, family_name="高橋", email="takahashi@example.jp")
    template = EmailTemplateFactory(tenant=world_a.tenant)
    mail.outbox.clear()
    response = login(world_a.member(Role.MARKETING)).post(
        url(world_a, "nurture_template_test_send", pk=template.pk),
        {
            "subject": "{{ lead.family_name }}様 ご案内",
            "text": "{{ lead.family_name }}様",
            "html": "<p>{{ lead.family_name }}様</p>",
            "preview_lead": str(lead.pk),
            "preview_sender": str(sender.pk),
            "to": "me@ryorin.example",
        },
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert "me@ryorin.example" in response.content.decode()
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["me@ryorin.example"]
    assert sent.subject == "[Test] 高橋様 ご案内"
    assert "news@ryorin.example" in sent.from_email
    assert "/n/u/preview/" in sent.body  # an unsubscribe link that unsubscribes nobody
    assert "takahashi" not in str(sent.message())  # nothing of the lead's own address
    with tenant_scope(world_a.tenant.id):
        assert AuditLog.objects.filter(action="email_template.test_sent").count() == 1
    # A bad address is refused, nothing sent.
    response = login(world_a.owner).post(
        url(world_a, "nurture_template_test_send", pk=template.pk),
        {"subject": "s", "text": "t", "to": "not-an-address", "preview_sender": str(sender.pk)},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 400
    assert len(mail.outbox) == 1


def test_senders_and_sending_settings(world_a):
    client = login(world_a.member(Role.MARKETING))
    response = client.post(
        url(world_a, "nurture_senders"),
        {"from_name": "両輪 マーケティング部", "from_email": "mk@ryorin.example",
         "reply_to": "", "postal_address": "東京都千代田区1-1"},
    )  # fmt: skip
    assert response.status_code == 302
    response = client.post(
        url(world_a, "nurture_senders"),
        {"from_name": "住所なし", "from_email": "x@ryorin.example", "postal_address": ""},
    )
    assert response.status_code == 400
    assert "postal_address" in response.context["form"].errors
    with tenant_scope(world_a.tenant.id):
        sender = SenderIdentity.objects.get()
    response = client.post(
        url(world_a, "nurture_sender", pk=sender.pk),
        {"from_name": "両輪", "from_email": "mk@ryorin.example", "postal_address": "大阪"},
    )
    assert response.status_code == 302
    sender.refresh_from_db()
    assert (sender.from_name, sender.postal_address) == ("両輪", "大阪")

    settings_url = url(world_a, "nurture_settings")
    response = client.post(
        settings_url, {"per_minute": "60", "per_day": "5000", "quiet_start": "21:00"}
    )
    assert response.status_code == 400
    assert "quiet_end" in response.context["form"].errors
    response = client.post(
        settings_url,
        {"per_minute": "60", "per_day": "5000", "quiet_start": "21:00", "quiet_end": "08:00"},
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        saved = SendingSettings.objects.get()
    assert (saved.per_minute, saved.per_day) == (60, 5000)
    assert (saved.quiet_start, saved.quiet_end) == (datetime.time(21), datetime.time(8))


# --- Roles and tenants -----------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.INSIDE_SALES, Role.FIELD_SALES, Role.READ_ONLY])
def test_only_marketing_admins_and_owners_change_nurturing(world_a, role):
    sequence = SequenceFactory(tenant=world_a.tenant)
    enrolment = EnrolmentFactory(tenant=world_a.tenant, sequence=sequence)
    template = EmailTemplateFactory(tenant=world_a.tenant)
    sender = SenderIdentityFactory(tenant=world_a.tenant)
    client = login(world_a.member(role))
    for name in ("nurture_sequences", "nurture_templates", "nurture_senders", "nurture_settings"):
        assert client.get(url(world_a, name)).status_code == 200
    assert client.get(url(world_a, "nurture_sequence", pk=sequence.pk)).status_code == 200
    assert client.get(url(world_a, "nurture_enrolments", pk=sequence.pk)).status_code == 200
    forbidden = [
        ("get", url(world_a, "nurture_sequence_create")),
        ("get", url(world_a, "nurture_sequence_edit", pk=sequence.pk)),
        ("post", url(world_a, "nurture_sequence_status", pk=sequence.pk)),
        ("post", url(world_a, "nurture_enrol", pk=sequence.pk)),
        ("get", url(world_a, "nurture_lead_picker", pk=sequence.pk)),
        ("post", url(world_a, "nurture_enrolment_state", pk=enrolment.pk)),
        ("get", url(world_a, "nurture_template_create")),
        ("get", url(world_a, "nurture_template", pk=template.pk)),
        ("post", url(world_a, "nurture_template_preview")),
        ("post", url(world_a, "nurture_template_test_send", pk=template.pk)),
        ("post", url(world_a, "nurture_senders")),
        ("get", url(world_a, "nurture_sender", pk=sender.pk)),
        ("post", url(world_a, "nurture_settings")),
    ]
    for method, path in forbidden:
        assert getattr(client, method)(path).status_code == 403, path
    with tenant_scope(world_a.tenant.id):
        assert Enrolment.objects.get(pk=enrolment.pk).state == Enrolment.State.ACTIVE


def test_another_tenant_gets_404(world_a, world_b):
    sequence = SequenceFactory(tenant=world_a.tenant)
    enrolment = EnrolmentFactory(tenant=world_a.tenant, sequence=sequence)
    template = EmailTemplateFactory(tenant=world_a.tenant)
    client = login(world_b.owner)
    assert client.get(url(world_a, "nurture_sequences")).status_code == 404
    assert client.get(url(world_b, "nurture_sequence", pk=sequence.pk)).status_code == 404
    assert client.get(url(world_b, "nurture_sequence_edit", pk=sequence.pk)).status_code == 404
    assert client.get(url(world_b, "nurture_enrolments", pk=sequence.pk)).status_code == 404
    assert client.get(url(world_b, "nurture_template", pk=template.pk)).status_code == 404
    response = client.post(
        url(world_b, "nurture_enrolment_state", pk=enrolment.pk), {"action": "remove"}
    )
    assert response.status_code == 404
    with tenant_scope(world_a.tenant.id):
        assert Enrolment.objects.get(pk=enrolment.pk).state == Enrolment.State.ACTIVE


def test_enrolment_pages_go_by_id(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant)
    made = [EnrolmentFactory(tenant=world_a.tenant, sequence=sequence).pk for _ in range(3)]
    with tenant_scope(world_a.tenant.id):
        queryset = selectors.enrolment_list(sequence_id=sequence.pk)
        first, cursor = id_page(queryset, None, size=2)
        second, last = id_page(queryset, cursor, size=2)
    assert [e.pk for e in first] == [made[2], made[1]]
    assert [e.pk for e in second] == [made[0]]
    assert last is None


def test_builder_saves_a_visited_a_page_branch_and_names_a_missing_address(world_a):
    template = EmailTemplateFactory(tenant=world_a.tenant)
    sequence = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    client = login(world_a.member(Role.MARKETING))
    edit = url(world_a, "nurture_sequence_edit", pk=sequence.pk)

    def rows(address: str) -> list[dict]:
        return [
            row_data(0, "send_email", template=str(template.pk)),
            row_data(
                1,
                "branch",
                condition="visited_page",
                condition_value=address,
                then="3",
                **{"else": "2"},
            ),
            row_data(2, "send_email", template=str(template.pk)),
            row_data(3, "end"),
        ]

    response = client.post(edit, builder_post(rows("")))
    assert response.status_code == 400
    assert response.context["rows"][1]["errors"] == {
        "condition_value": ["Step 2: give the part of the page address to look for."]
    }
    assert client.post(edit, builder_post(rows("/pricing"))).status_code == 302
    branch = [step for step in saved_steps(sequence) if step.kind == StepKind.BRANCH]
    assert branch[0].config["condition"] == {"type": "visited_page", "value": "/pricing"}
