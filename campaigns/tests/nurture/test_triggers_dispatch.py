"""Dispatcher details against a real SMTP server (aiosmtpd), PostgreSQL and Redis: the
per-day limit counts the tenant's local day, the "opened/clicked the previous email"
branch looks at this enrolment's previous mail only, a task step becomes one
pipeline task however often it runs, and a step that fails stays with its enrolment."""

import datetime
import email
import email.policy
from zoneinfo import ZoneInfo

import pytest

from accounts.redis import redis_client
from accounts.tenancy import tenant_scope
from campaigns.models import Enrolment, OutgoingMessage, StepKind
from campaigns.nurture import dispatch
from campaigns.tests.factories import (
    EmailTemplateFactory,
    EnrolmentFactory,
    SendingSettingsFactory,
    SequenceFactory,
    sequence_with_steps,
)
from leads.models import Activity, ActivityType, ConsentStatus
from leads.tests.factories import LeadFactory
from pipeline.models import Task

pytestmark = pytest.mark.django_db

State = Enrolment.State
TOKYO = ZoneInfo("Asia/Tokyo")
needs_redis = pytest.mark.skipif(redis_client() is None, reason="limits are kept in Redis")


@pytest.fixture(autouse=True)
def _tokyo(world_a):
    world_a.tenant.time_zone = "Asia/Tokyo"
    world_a.tenant.save(update_fields=["time_zone"])
    client = redis_client()
    if client is not None:
        for key in client.scan_iter(f"nurture:rate:{world_a.tenant.id}:*"):
            client.delete(key)


def enrol(world, sequence, due):
    lead = LeadFactory(tenant=world.tenant, email_consent=ConsentStatus.GRANTED)
    return EnrolmentFactory(tenant=world.tenant, sequence=sequence, lead=lead, next_due_at=due)


def fresh(enrolment) -> Enrolment:
    with tenant_scope(enrolment.tenant_id):
        return Enrolment.objects.get(pk=enrolment.pk)


def message_of(enrolment, template) -> OutgoingMessage:
    with tenant_scope(enrolment.tenant_id):
        return OutgoingMessage.objects.get(enrolment=enrolment, step__template=template)


def track(enrolment, message, kind=ActivityType.EMAIL_OPENED, at=None) -> None:
    """What the open pixel / click redirect records (campaigns.nurture.tracking)."""
    with tenant_scope(enrolment.tenant_id):
        Activity.objects.create(
            tenant_id=enrolment.tenant_id,
            lead_id=enrolment.lead_id,
            type=kind,
            channel="tracking",
            occurred_at=at or message.sent_at + datetime.timedelta(minutes=5),
            properties={"message_id": message.pk, "sequence_id": enrolment.sequence_id},
        )


# --- Per-day limit in the tenant's day ------------------------------------------------------------


@needs_redis
def test_the_daily_limit_starts_again_at_the_tenants_midnight(world_a, smtp):
    """Tokyo is UTC+9: 23:30 on the 24th and 00:30 on the 25th in Tokyo are both the
    24th in UTC. One mail a day: the second goes out because a new Tokyo day began;
    the third, later that Tokyo day, waits."""
    SendingSettingsFactory(tenant=world_a.tenant, per_minute=100, per_day=1)
    template = EmailTemplateFactory(tenant=world_a.tenant)
    sequence = sequence_with_steps(
        world_a.tenant, [{"kind": StepKind.SEND_EMAIL, "template": template}]
    )
    late = datetime.datetime(2026, 11, 24, 23, 30, tzinfo=TOKYO)
    after_midnight = datetime.datetime(2026, 11, 25, 0, 30, tzinfo=TOKYO)
    assert late.astimezone(datetime.UTC).date() == after_midnight.astimezone(datetime.UTC).date()
    first = enrol(world_a, sequence, late)
    assert dispatch.dispatch_tenant(world_a.tenant.id, now=late)["sent"] == 1
    second = enrol(world_a, sequence, after_midnight)
    assert dispatch.dispatch_tenant(world_a.tenant.id, now=after_midnight)["sent"] == 1
    third = enrol(world_a, sequence, after_midnight)
    report = dispatch.dispatch_tenant(
        world_a.tenant.id, now=after_midnight + datetime.timedelta(minutes=30)
    )
    assert (report.get("sent", 0), report["rate_limited"]) == (0, 1)
    assert [fresh(e).state for e in (first, second, third)] == [
        State.COMPLETED,
        State.COMPLETED,
        State.ACTIVE,
    ]
    assert len(smtp.inbox.envelopes) == 2


# --- The previous email of this enrolment ---------------------------------------------------------


def two_mails_then_branch(world, condition="opened_previous"):
    """mail A → wait → mail B → wait → branch on B (then end, else reminder) → reminder."""
    a = EmailTemplateFactory(tenant=world.tenant, subject="A")
    b = EmailTemplateFactory(tenant=world.tenant, subject="B")
    reminder = EmailTemplateFactory(tenant=world.tenant, subject="再送 B")
    day = {"seconds": 86400}
    sequence = sequence_with_steps(
        world.tenant,
        [
            {"kind": StepKind.SEND_EMAIL, "template": a},
            {"kind": StepKind.WAIT, "config": day},
            {"kind": StepKind.SEND_EMAIL, "template": b},
            {"kind": StepKind.WAIT, "config": day},
            {
                "kind": StepKind.BRANCH,
                "config": {"condition": {"type": condition}, "then": 6, "else": 5},
            },
            {"kind": StepKind.SEND_EMAIL, "template": reminder},
            {"kind": StepKind.END},
        ],
    )
    return sequence, a, b, reminder


def run_days(world, start, days=3):
    for n in range(days):
        dispatch.dispatch_tenant(world.tenant.id, now=start + datetime.timedelta(days=n, seconds=n))


def subjects_to(smtp, address) -> list[str]:
    return [
        email.message_from_bytes(env.original_content, policy=email.policy.default)["Subject"]
        for env in smtp.inbox.envelopes
        if address in env.rcpt_tos
    ]


def test_the_branch_reads_the_previous_mail_not_an_earlier_one(world_a, smtp):
    start = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=TOKYO)
    sequence, a, b, _reminder = two_mails_then_branch(world_a)
    opened_a = enrol(world_a, sequence, start)
    opened_b = enrol(world_a, sequence, start)
    dispatch.dispatch_tenant(world_a.tenant.id, now=start)  # A to both
    track(opened_a, message_of(opened_a, a))  # opens A only
    dispatch.dispatch_tenant(world_a.tenant.id, now=start + datetime.timedelta(days=1, seconds=1))
    track(opened_b, message_of(opened_b, b))  # opens B (the previous mail)
    dispatch.dispatch_tenant(world_a.tenant.id, now=start + datetime.timedelta(days=2, seconds=2))
    # Opening A is not opening the previous mail (B): the reminder goes out.
    assert subjects_to(smtp, opened_a.lead.email) == ["A", "B", "再送 B"]
    assert subjects_to(smtp, opened_b.lead.email) == ["A", "B"]
    assert fresh(opened_a).state == fresh(opened_b).state == State.COMPLETED


def test_an_open_of_another_sequences_mail_does_not_count(world_a, smtp):
    start = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=TOKYO)
    sequence, _a, _b, _reminder = two_mails_then_branch(world_a, "clicked_previous")
    enrolment = enrol(world_a, sequence, start)
    other_template = EmailTemplateFactory(tenant=world_a.tenant, subject="別の案内")
    other = sequence_with_steps(
        world_a.tenant, [{"kind": StepKind.SEND_EMAIL, "template": other_template}]
    )
    elsewhere = EnrolmentFactory(
        tenant=world_a.tenant, sequence=other, lead=enrolment.lead, next_due_at=start
    )
    dispatch.dispatch_tenant(world_a.tenant.id, now=start)
    dispatch.dispatch_tenant(world_a.tenant.id, now=start + datetime.timedelta(days=1, seconds=1))
    # A click on the other sequence's mail, after B went out.
    track(
        elsewhere,
        message_of(elsewhere, other_template),
        kind=ActivityType.EMAIL_CLICKED,
        at=start + datetime.timedelta(days=1, hours=1),
    )
    dispatch.dispatch_tenant(world_a.tenant.id, now=start + datetime.timedelta(days=2, seconds=2))
    # (A and the other sequence's mail went out in one batch, in either order.)
    assert sorted(subjects_to(smtp, enrolment.lead.email)) == sorted(
        ["A", "別の案内", "B", "再送 B"]
    )


def test_a_branch_before_any_mail_is_not_taken(world_a, smtp):
    start = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=TOKYO)
    template = EmailTemplateFactory(tenant=world_a.tenant, subject="最初")
    sequence = sequence_with_steps(
        world_a.tenant,
        [
            {
                "kind": StepKind.BRANCH,
                "config": {"condition": {"type": "opened_previous"}, "then": 2, "else": 1},
            },
            {"kind": StepKind.SEND_EMAIL, "template": template},
            {"kind": StepKind.END},
        ],
    )
    enrolment = enrol(world_a, sequence, start)
    dispatch.dispatch_tenant(world_a.tenant.id, now=start)
    assert subjects_to(smtp, enrolment.lead.email) == ["最初"]


# --- Task steps -----------------------------------------------------------------------------------


def test_a_task_step_makes_one_task_for_the_owner(
    world_a, smtp, django_capture_on_commit_callbacks
):
    """send → task → wait: the task reaches pipeline through the outbox; run again (a
    worker that died before saving the enrolment), still one task."""
    owner = world_a.member()
    start = datetime.datetime(2026, 11, 24, 20, 0, tzinfo=TOKYO)
    template = EmailTemplateFactory(tenant=world_a.tenant)
    sequence = sequence_with_steps(
        world_a.tenant,
        [
            {"kind": StepKind.CREATE_TASK, "config": {"title": "電話でフォロー", "due_in_days": 1}},
            {"kind": StepKind.SEND_EMAIL, "template": template},
        ],
    )
    enrolment = enrol(world_a, sequence, start)
    with tenant_scope(world_a.tenant.id):
        enrolment.lead.owner = owner
        enrolment.lead.save(update_fields=["owner"])
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.dispatch_tenant(world_a.tenant.id, now=start)
    # The same step run a second time (the enrolment put back where it was).
    with tenant_scope(world_a.tenant.id):
        Enrolment.objects.filter(pk=enrolment.pk).update(
            step_order=0, state=State.ACTIVE, next_due_at=start
        )
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.dispatch_tenant(world_a.tenant.id, now=start + datetime.timedelta(minutes=1))
    with tenant_scope(world_a.tenant.id):
        [task] = Task.objects.all()
    assert (task.title, task.assignee_id, task.lead_id) == (
        "電話でフォロー",
        owner.pk,
        enrolment.lead_id,
    )
    assert (task.source, task.sequence_id, task.enrolment_id) == (
        Task.Source.NURTURE,
        sequence.pk,
        enrolment.pk,
    )
    assert task.due_date == datetime.date(2026, 11, 25)
    assert len(smtp.inbox.envelopes) == 1  # the mail itself was not sent twice


# --- A step that fails stays with its enrolment ---------------------------------------------------


def test_an_enrol_step_into_a_draft_sequence_does_nothing_and_the_journey_goes_on(world_a, smtp):
    """enrol (into a draft: refused) → change the job title → mail. The refused step is
    skipped with its reason on record; the next steps run, and the other leads of the
    batch are not held back."""
    from accounts.models import AuditLog

    start = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=TOKYO)
    draft = SequenceFactory(tenant=world_a.tenant, status="draft")
    template = EmailTemplateFactory(tenant=world_a.tenant, subject="ご案内")
    sequence = sequence_with_steps(
        world_a.tenant,
        [
            {"kind": StepKind.ENROL, "config": {"sequence_id": draft.pk}},
            {"kind": StepKind.CHANGE_FIELD, "config": {"field": "job_title", "value": "部長"}},
            {"kind": StepKind.SEND_EMAIL, "template": template},
        ],
    )
    refused = enrol(world_a, sequence, start)
    other = enrol(
        world_a,
        sequence_with_steps(world_a.tenant, [{"kind": StepKind.SEND_EMAIL, "template": template}]),
        start,
    )
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=start)
    assert (report["sent"], report["step_skipped"]) == (2, 1)
    assert subjects_to(smtp, refused.lead.email) == ["ご案内"]
    assert subjects_to(smtp, other.lead.email) == ["ご案内"]
    assert fresh(refused).state == State.COMPLETED
    with tenant_scope(world_a.tenant.id):
        assert not Enrolment.objects.filter(sequence=draft).exists()
        refused.lead.refresh_from_db()
        [entry] = AuditLog.objects.filter(action="enrolment.step_skipped")
    assert refused.lead.job_title == "部長"
    assert entry.target_id == str(refused.pk)
    assert entry.metadata["step"] == 0
    assert entry.metadata["kind"] == "enrol"
    assert entry.metadata["reason"] == "先にシーケンスを有効にしてください。"  # the service's words


def test_an_unexpected_failure_in_a_step_holds_back_only_its_enrolment(world_a, smtp, monkeypatch):
    """A field change that fails in the database (a bug, say) for one lead: its
    savepoint is rolled back, that enrolment tries the step again later, the rest of
    the batch goes on in the same transaction."""
    from django.db import connection

    from leads import services as lead_services

    start = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=TOKYO)
    template = EmailTemplateFactory(tenant=world_a.tenant, subject="ご案内")
    sequence = sequence_with_steps(
        world_a.tenant,
        [
            {"kind": StepKind.CHANGE_FIELD, "config": {"field": "job_title", "value": "部長"}},
            {"kind": StepKind.SEND_EMAIL, "template": template},
        ],
    )
    failing, fine = enrol(world_a, sequence, start), enrol(world_a, sequence, start)
    lead_update = lead_services.lead_update

    def broken(*, lead, **kwargs):
        if lead.pk == failing.lead_id:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 / 0")
        return lead_update(lead=lead, **kwargs)

    monkeypatch.setattr(lead_services, "lead_update", broken)
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=start)
    assert (report["sent"], report["step_error"]) == (1, 1)
    assert subjects_to(smtp, fine.lead.email) == ["ご案内"]
    held = fresh(failing)
    assert (held.state, held.step_order) == (State.ACTIVE, 0)
    assert held.next_due_at == start + dispatch.STEP_RETRY
    # Fixed in the meantime: the next try goes through.
    monkeypatch.setattr(lead_services, "lead_update", lead_update)
    dispatch.dispatch_tenant(world_a.tenant.id, now=start + dispatch.STEP_RETRY)
    assert subjects_to(smtp, failing.lead.email) == ["ご案内"]
    with tenant_scope(world_a.tenant.id):
        failing.lead.refresh_from_db()
    assert failing.lead.job_title == "部長"
