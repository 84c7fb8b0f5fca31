"""The dispatcher against a real SMTP server (aiosmtpd) and PostgreSQL: a three-step
sequence with a wait and a branch, consent, retries after a crash, transient and
permanent SMTP errors, quiet hours and rate limits, two dispatchers in parallel,
changes made by others while a batch runs, each kind of branch, field and stage
changes, and enrolling into another sequence."""

import datetime
import threading
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.redis import redis_client
from accounts.tenancy import tenant_scope
from campaigns.models import Enrolment, OutgoingMessage, Sequence, SequenceStep, StepKind
from campaigns.nurture import dispatch
from campaigns.tests.factories import (
    EmailTemplateFactory,
    EnrolmentFactory,
    SendingSettingsFactory,
    SequenceFactory,
    sequence_with_steps,
)
from leads.models import Activity, ActivityType, ConsentStatus, Suppression
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

State = Enrolment.State
TOKYO = ZoneInfo("Asia/Tokyo")
NOON = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=TOKYO)  # a Tuesday


def three_steps(world) -> Sequence:
    """send → wait a day → branch (opened → end, else a reminder) → reminder → end."""
    tenant = world.tenant
    first = EmailTemplateFactory(tenant=tenant, subject="資料のご案内")
    reminder = EmailTemplateFactory(tenant=tenant, subject="再送：資料のご案内")
    rows = [
        {"kind": StepKind.SEND_EMAIL, "template": first},
        {"kind": StepKind.WAIT, "config": {"seconds": 86400}},
        {
            "kind": StepKind.BRANCH,
            "config": {"condition": {"type": "opened_previous"}, "then": 4, "else": 3},
        },
        {"kind": StepKind.SEND_EMAIL, "template": reminder},
        {"kind": StepKind.END},
    ]
    return sequence_with_steps(tenant, rows)


def enrol(world, sequence, n=1, **lead_fields):
    lead_fields.setdefault("email_consent", ConsentStatus.GRANTED)
    out = []
    for _ in range(n):
        lead = LeadFactory(tenant=world.tenant, **lead_fields)
        out.append(
            # Enrolled the day before NOON, whatever today is: branches count only what
            # happened since enrolling.
            EnrolmentFactory(
                tenant=world.tenant,
                sequence=sequence,
                lead=lead,
                enrolled_at=NOON - datetime.timedelta(days=1),
                next_due_at=NOON,
            )
        )
    return out


def fresh(enrolment) -> Enrolment:
    with tenant_scope(enrolment.tenant_id):
        return Enrolment.objects.get(pk=enrolment.pk)


def messages(world):
    with tenant_scope(world.tenant.id):
        return list(OutgoingMessage.objects.order_by("id"))


def subjects(smtp) -> list[str]:
    import email
    import email.policy

    return [
        email.message_from_bytes(env.original_content, policy=email.policy.default)["Subject"]
        for env in smtp.inbox.envelopes
    ]


@pytest.fixture(autouse=True)
def _tokyo(world_a):
    world_a.tenant.time_zone = "Asia/Tokyo"
    world_a.tenant.save(update_fields=["time_zone"])
    client = redis_client()
    if client is not None:
        for key in client.scan_iter(f"nurture:rate:{world_a.tenant.id}:*"):
            client.delete(key)


def test_three_steps_with_a_wait_and_a_branch_not_opened(world_a, smtp):
    [enrolment] = enrol(world_a, three_steps(world_a))
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert report["sent"] == 1
    assert subjects(smtp) == ["資料のご案内"]
    after_first = fresh(enrolment)
    assert after_first.step_order == 2  # past the wait, at the branch
    assert after_first.next_due_at == NOON + datetime.timedelta(days=1)
    # Nothing more is due until the wait ends.
    assert dispatch.dispatch_tenant(world_a.tenant.id, now=NOON + datetime.timedelta(hours=23)) == {
        "claimed": 0
    }
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON + datetime.timedelta(days=1, seconds=1))
    assert subjects(smtp) == ["資料のご案内", "再送：資料のご案内"]
    done = fresh(enrolment)
    assert (done.state, done.next_due_at) == (State.COMPLETED, None)
    sent = messages(world_a)
    assert [m.status for m in sent] == ["sent", "sent"]
    assert all(m.provider_message_id.startswith("<ryorin.") for m in sent)
    assert sent[0].raw_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_branch_skips_the_reminder_when_the_mail_was_opened(world_a, smtp):
    [enrolment] = enrol(world_a, three_steps(world_a))
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    [first] = messages(world_a)
    with tenant_scope(world_a.tenant.id):
        # As the open pixel records it: the activity names the mail (tracking).
        Activity.objects.create(
            tenant=world_a.tenant,
            lead_id=enrolment.lead_id,
            type=ActivityType.EMAIL_OPENED,
            channel="tracking",
            occurred_at=NOON + datetime.timedelta(hours=2),
            properties={"message_id": first.id, "sequence_id": enrolment.sequence_id},
        )
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON + datetime.timedelta(days=1, seconds=1))
    assert subjects(smtp) == ["資料のご案内"]
    assert fresh(enrolment).state == State.COMPLETED


def test_no_consent_or_suppressed_never_receive(world_a, smtp):
    sequence = three_steps(world_a)
    [unknown] = enrol(world_a, sequence, email_consent=ConsentStatus.UNKNOWN)
    [suppressed] = enrol(world_a, sequence)
    with tenant_scope(world_a.tenant.id):
        Suppression.objects.create(
            tenant=world_a.tenant,
            email=suppressed.lead.email,
            reason=Suppression.Reason.COMPLAINED,
        )
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert smtp.inbox.envelopes == []
    assert messages(world_a) == []
    for enrolment in (unknown, suppressed):
        left = fresh(enrolment)
        assert (left.state, left.exit_reason) == (State.EXITED, Enrolment.ExitReason.NO_CONSENT)


def test_a_retry_after_a_crash_never_sends_a_sent_mail_again(world_a, smtp):
    """A worker died after sending (row sent) but before moving the enrolment on: the
    next run advances it without a second mail. One that died before the outcome was
    known (row 'sending', lease over) is sent once more, with the same Message-ID."""
    sequence = three_steps(world_a)
    sent_before, in_doubt = enrol(world_a, sequence, n=2)
    with tenant_scope(world_a.tenant.id):
        step = SequenceStep.objects.get(sequence=sequence, order=0)
        for enrolment, status in ((sent_before, "sent"), (in_doubt, "sending")):
            OutgoingMessage.objects.create(
                tenant=world_a.tenant,
                enrolment=enrolment,
                step=step,
                lead=enrolment.lead,
                to_email=enrolment.lead.email,
                status=status,
                attempts=1,
                next_attempt_at=NOON - datetime.timedelta(seconds=1),
            )
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert [env.rcpt_tos for env in smtp.inbox.envelopes] == [[in_doubt.lead.email]]
    for enrolment in (sent_before, in_doubt):
        assert fresh(enrolment).step_order == 2
    with tenant_scope(world_a.tenant.id):
        assert OutgoingMessage.objects.get(enrolment=in_doubt).attempts == 2
        assert OutgoingMessage.objects.filter(status="sent").count() == 2


def test_a_row_leased_by_another_worker_is_left_alone(world_a, smtp):
    sequence = three_steps(world_a)
    [enrolment] = enrol(world_a, sequence)
    with tenant_scope(world_a.tenant.id):
        OutgoingMessage.objects.create(
            tenant=world_a.tenant,
            enrolment=enrolment,
            step=SequenceStep.objects.get(sequence=sequence, order=0),
            lead=enrolment.lead,
            to_email=enrolment.lead.email,
            status="sending",
            attempts=1,
            next_attempt_at=NOON + datetime.timedelta(seconds=60),
        )
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert smtp.inbox.envelopes == []
    assert fresh(enrolment).step_order == 0


def test_an_smtp_server_refusing_for_a_while(world_a, smtp):
    [enrolment] = enrol(world_a, three_steps(world_a))
    smtp.inbox.refuse["*"] = "451 4.3.0 Try again later"
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert report["deferred"] == 1
    [row] = messages(world_a)
    assert (row.status, row.attempts) == ("queued", 1)
    assert fresh(enrolment).next_due_at == NOON + dispatch.backoff(1)
    # Still refusing at the first retry: the wait doubles.
    later = NOON + dispatch.backoff(1)
    dispatch.dispatch_tenant(world_a.tenant.id, now=later)
    assert fresh(enrolment).next_due_at == later + dispatch.backoff(2)
    smtp.inbox.refuse.clear()
    dispatch.dispatch_tenant(world_a.tenant.id, now=later + dispatch.backoff(2))
    [row] = messages(world_a)
    assert (row.status, row.attempts) == ("sent", 3)
    assert len(smtp.inbox.envelopes) == 1
    assert fresh(enrolment).step_order == 2


def test_a_server_that_is_down_defers_the_whole_batch(world_a, smtp, settings):
    enrolments = enrol(world_a, three_steps(world_a), n=3)
    from campaigns.tests.nurture.conftest import free_port

    settings.MAILERS["default"]["OPTIONS"]["port"] = free_port()  # nothing listens there
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert report["deferred"] == 3
    assert {fresh(e).next_due_at for e in enrolments} == {NOON + dispatch.backoff(1)}


def test_a_permanent_refusal_bounces_and_suppresses(world_a, smtp):
    [enrolment] = enrol(world_a, three_steps(world_a))
    smtp.inbox.refuse[enrolment.lead.email] = "550 5.1.1 No such user"
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    [row] = messages(world_a)
    assert row.status == "bounced"
    left = fresh(enrolment)
    assert (left.state, left.exit_reason) == (State.EXITED, Enrolment.ExitReason.BOUNCED)
    with tenant_scope(world_a.tenant.id):
        assert Suppression.objects.get(email=enrolment.lead.email).reason == "bounced"
        assert Activity.objects.filter(
            lead_id=enrolment.lead_id, type=ActivityType.EMAIL_BOUNCED
        ).exists()


def test_a_refused_sender_defers_its_mail_and_bounces_no_recipient(world_a, smtp):
    """A 5xx to MAIL FROM (a relay that does not take the tenant's domain) is about
    the sender, not the recipients: nobody is suppressed or bounced, the sender's
    other mails in the batch wait without asking the server again, and mail of
    another sender goes out."""
    refused = three_steps(world_a)
    waiting = enrol(world_a, refused, n=3)
    [other] = enrol(world_a, three_steps(world_a))
    smtp.inbox.refuse_senders[refused.sender.from_email] = "550 5.7.1 Sender not allowed"
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert (report["sent"], report["deferred"]) == (1, 3)
    assert "bounced" not in report
    assert smtp.inbox.senders_tried.count(refused.sender.from_email) == 1
    assert [env.rcpt_tos for env in smtp.inbox.envelopes] == [[other.lead.email]]
    for enrolment in waiting:
        held = fresh(enrolment)
        assert (held.state, held.step_order) == (State.ACTIVE, 0)
        assert held.next_due_at == NOON + dispatch.backoff(1)
    with tenant_scope(world_a.tenant.id):
        assert not Suppression.objects.exists()
        assert not Activity.objects.filter(type=ActivityType.EMAIL_BOUNCED).exists()
        rows = OutgoingMessage.objects.filter(enrolment__in=waiting)
        assert {(r.status, r.attempts) for r in rows} == {("queued", 1)}
        assert all("Sender not allowed" in r.error for r in rows)
    # The relay takes the sender again: the held mails go out.
    smtp.inbox.refuse_senders.clear()
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON + dispatch.backoff(1))
    assert len(smtp.inbox.envelopes) == 4
    assert {fresh(e).step_order for e in waiting} == {2}


def test_a_bounce_ends_every_sequence_of_the_lead(world_a, smtp):
    """The address takes no mail: the lead leaves all its sequences, and a mail of
    another of its sequences in the same batch is not attempted."""
    first, second, paused = three_steps(world_a), three_steps(world_a), three_steps(world_a)
    [bouncing] = enrol(world_a, first)
    lead = bouncing.lead
    also_due = EnrolmentFactory(tenant=world_a.tenant, sequence=second, lead=lead, next_due_at=NOON)
    waiting = EnrolmentFactory(
        tenant=world_a.tenant, sequence=paused, lead=lead, state=State.PAUSED
    )
    [bystander] = enrol(world_a, second)
    smtp.inbox.refuse[lead.email] = "550 5.1.1 No such user"
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON + datetime.timedelta(seconds=1))
    assert (report["bounced"], report["skipped_bounced"], report["sent"]) == (1, 1, 1)
    assert [env.rcpt_tos for env in smtp.inbox.envelopes] == [[bystander.lead.email]]
    for enrolment in (bouncing, also_due, waiting):
        left = fresh(enrolment)
        assert (left.state, left.exit_reason) == (State.EXITED, Enrolment.ExitReason.BOUNCED)
    assert fresh(bystander).state == State.ACTIVE
    with tenant_scope(world_a.tenant.id):
        statuses = dict(
            OutgoingMessage.objects.filter(lead=lead).values_list("enrolment_id", "status")
        )
        assert Activity.objects.filter(lead=lead, type=ActivityType.EMAIL_BOUNCED).count() == 1
    # Whichever of the two was tried first bounced; the other was not tried.
    assert set(statuses) == {bouncing.pk, also_due.pk}
    assert sorted(statuses.values()) == ["bounced", "skipped"]


def test_a_step_that_writes_right_after_a_mail_waits_for_the_next_claim(world_a, smtp):
    """Mail, then a stage change: the change runs from the next claim, so a pause
    made while the batch was sending holds it."""
    from leads.models import Lead

    sequence = sequence_with_steps(
        world_a.tenant,
        [
            {"kind": StepKind.SEND_EMAIL, "template": EmailTemplateFactory(tenant=world_a.tenant)},
            {"kind": StepKind.CHANGE_FIELD, "config": {"stage": "mql"}},
            {"kind": StepKind.END},
        ],
    )
    going_on, paused = enrol(world_a, sequence, n=2, lifecycle_stage="lead")
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert report["sent"] == 2
    for enrolment in (going_on, paused):
        after_mail = fresh(enrolment)
        assert (after_mail.step_order, after_mail.next_due_at) == (1, NOON)
    from accounts.services import SYSTEM
    from campaigns.nurture import services

    services.enrolment_set_state(enrolment=paused, action="pause", origin=SYSTEM)
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert (report["claimed"], report["completed"]) == (1, 1)
    with tenant_scope(world_a.tenant.id):
        stages = dict(Lead.objects.values_list("pk", "lifecycle_stage"))
    assert stages[going_on.lead_id] == "mql"
    assert stages[paused.lead_id] == "lead"
    assert (fresh(paused).state, fresh(paused).step_order) == (State.PAUSED, 1)
    assert len(smtp.inbox.envelopes) == 2


def test_quiet_hours_across_midnight_hold_mail_until_morning(world_a, smtp):
    SendingSettingsFactory(
        tenant=world_a.tenant, quiet_start=datetime.time(21), quiet_end=datetime.time(8)
    )
    [enrolment] = enrol(world_a, three_steps(world_a))
    late = datetime.datetime(2026, 11, 24, 23, 30, tzinfo=TOKYO)
    dispatch.dispatch_tenant(world_a.tenant.id, now=late)
    assert smtp.inbox.envelopes == []
    morning = datetime.datetime(2026, 11, 25, 8, 0, tzinfo=TOKYO)
    assert fresh(enrolment).next_due_at == morning
    dispatch.dispatch_tenant(world_a.tenant.id, now=morning)
    assert len(smtp.inbox.envelopes) == 1


@pytest.mark.skipif(redis_client() is None, reason="rate limits are kept in Redis")
def test_per_minute_limit(world_a, smtp):
    SendingSettingsFactory(tenant=world_a.tenant, per_minute=2)
    enrolments = enrol(world_a, three_steps(world_a), n=5)
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert (report["sent"], report["rate_limited"]) == (2, 3)
    next_minute = NOON + datetime.timedelta(minutes=1)
    waiting = [fresh(e) for e in enrolments]
    assert sorted(e.next_due_at for e in waiting if e.step_order == 0) == [next_minute] * 3
    dispatch.dispatch_tenant(world_a.tenant.id, now=next_minute)
    assert len(smtp.inbox.envelopes) == 4


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_in_parallel_never_send_one_step_twice(world_a, smtp):
    enrolments = enrol(world_a, three_steps(world_a), n=60)
    start = threading.Barrier(2)
    reports = []

    def run():
        try:
            start.wait()
            reports.append(dispatch.dispatch_tenant(world_a.tenant.id, now=NOON))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    recipients = [env.rcpt_tos[0] for env in smtp.inbox.envelopes]
    assert sorted(recipients) == sorted(e.lead.email for e in enrolments)
    assert sum(r.get("sent", 0) for r in reports) == 60
    assert {fresh(e).step_order for e in enrolments} == {2}


def test_a_leased_reminder_is_not_mistaken_for_the_sent_first_mail(world_a, smtp):
    """A's first mail was sent and its reminder is leased by another worker; B is at
    the first step, also leased. A's sent first-mail row must not count for its
    reminder: A waits for the lease, nothing is skipped."""
    sequence = three_steps(world_a)
    a, b = enrol(world_a, sequence, n=2)
    leased = NOON + datetime.timedelta(seconds=60)
    with tenant_scope(world_a.tenant.id):
        first = SequenceStep.objects.get(sequence=sequence, order=0)
        reminder = SequenceStep.objects.get(sequence=sequence, order=3)
        Enrolment.objects.filter(pk=a.pk).update(step_order=3)
        # The sent row written last, so a lookup by enrolment alone would meet it last.
        for enrolment, step, status in ((a, reminder, "sending"), (b, first, "sending"),
                                        (a, first, "sent")):  # fmt: skip
            OutgoingMessage.objects.create(
                tenant=world_a.tenant, enrolment=enrolment, step=step, lead=enrolment.lead,
                to_email=enrolment.lead.email, status=status, attempts=1,
                next_attempt_at=leased,
            )  # fmt: skip
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert "already_sent" not in report, report
    assert smtp.inbox.envelopes == []
    assert (fresh(a).step_order, fresh(a).state) == (3, State.ACTIVE)
    assert fresh(a).next_due_at == NOON + dispatch.LEASE
    assert fresh(b).step_order == 0


@pytest.mark.django_db(transaction=True)
def test_a_sent_mark_is_one_statement_under_row_level_security(world_a, world_b, smtp):
    """Outside a transaction (as in a worker) each mail's row is marked sent by one
    query that sets the app role and tenant itself: row-level security applies (the
    wrong tenant's mark changes nothing) and nothing is left set afterwards."""
    enrolments = enrol(world_a, three_steps(world_a), n=3)
    assert not connection.in_atomic_block
    with CaptureQueriesContext(connection) as queries:
        dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    marks = [q["sql"] for q in queries if "SET status = 'sent'" in q["sql"]]
    assert len(marks) == 3
    assert all(mark.startswith("SELECT set_config('role', 'ryorin_app', true)") for mark in marks)
    rows = messages(world_a)
    assert [row.status for row in rows] == ["sent"] * 3
    assert sorted(row.enrolment_id for row in rows) == sorted(e.id for e in enrolments)
    assert all(row.subject == "資料のご案内" for row in rows)
    for row in rows:
        assert row.provider_message_id.startswith(f"<ryorin.{world_a.tenant.id}.{row.id}@")
    assert all(row.raw_headers["List-Unsubscribe-Post"] for row in rows)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_setting('app.tenant_id', true)")
        user, tenant = cursor.fetchone()
    assert user == connection.settings_dict["USER"]
    assert tenant in ("", None)

    with tenant_scope(world_a.tenant.id):
        OutgoingMessage.objects.filter(pk=rows[0].pk).update(status="sending")
    built = SimpleNamespace(
        message=SimpleNamespace(extra_headers={}), subject="x", message_id="<x@y>"
    )
    dispatch._mark_sent(world_b.tenant.id, rows[0].pk, built)  # another tenant's row
    assert messages(world_a)[0].status == "sending"
    dispatch._mark_sent(world_a.tenant.id, rows[0].pk, built)
    assert (messages(world_a)[0].status, messages(world_a)[0].subject) == ("sent", "x")


def branch_first(world, condition: dict) -> Sequence:
    """branch (condition → end, else a mail) → the mail → end."""
    tenant = world.tenant
    mail = EmailTemplateFactory(tenant=tenant, subject="ご案内")
    rows = [
        {"kind": StepKind.BRANCH, "config": {"condition": condition, "then": 2, "else": 1}},
        {"kind": StepKind.SEND_EMAIL, "template": mail},
        {"kind": StepKind.END},
    ]
    return sequence_with_steps(tenant, rows)


def record(world, enrolment, type_, minutes: int, **properties) -> None:
    """An activity `minutes` after (or, negative, before) the lead's enrolment."""
    with tenant_scope(world.tenant.id):
        Activity.objects.create(
            tenant=world.tenant,
            lead_id=enrolment.lead_id,
            type=type_,
            channel="tracking",
            occurred_at=enrolment.enrolled_at + datetime.timedelta(minutes=minutes),
            properties=properties,
        )


def mailed(world) -> set[int]:
    return {m.lead_id for m in messages(world)}


def test_the_visited_a_page_branch_counts_matching_views_since_enrolment(world_a, smtp):
    sequence = branch_first(world_a, {"type": "visited_page", "value": "/pricing"})
    visited, before, elsewhere = enrol(world_a, sequence, n=3)
    record(world_a, visited, ActivityType.PAGE_VIEW, 5, url="https://acme.example.jp/Pricing/")
    record(world_a, before, ActivityType.PAGE_VIEW, -5, url="https://acme.example.jp/pricing")
    record(world_a, elsewhere, ActivityType.PAGE_VIEW, 5, url="https://acme.example.jp/about")
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    # The visitor took the "then" path (end); the others get the mail.
    assert mailed(world_a) == {before.lead_id, elsewhere.lead_id}
    assert {fresh(e).state for e in (visited, before, elsewhere)} == {State.COMPLETED}


def test_the_attended_a_webinar_branch(world_a, smtp):
    sequence = branch_first(world_a, {"type": "attended_webinar"})
    attended, earlier, viewer = enrol(world_a, sequence, n=3)
    record(world_a, attended, ActivityType.WEBINAR_ATTENDANCE, 30)
    record(world_a, earlier, ActivityType.WEBINAR_ATTENDANCE, -30)
    record(world_a, viewer, ActivityType.PAGE_VIEW, 30, url="https://acme.example.jp/webinar")
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert mailed(world_a) == {earlier.lead_id, viewer.lead_id}


def test_a_visited_a_page_branch_needs_the_address_part(world_a):
    from accounts.services import SYSTEM
    from campaigns.nurture import services

    sequence = SequenceFactory(tenant=world_a.tenant)
    steps = [
        {"kind": "branch", "config": {"condition": {"type": "visited_page"}, "then": 1}},
        {"kind": "end"},
    ]
    with pytest.raises(services.StepsInvalid) as caught:
        services.sequence_steps_save(sequence=sequence, steps=steps, origin=SYSTEM)
    assert (caught.value.step.index, caught.value.step.field) == (0, "config.condition.value")


# --- Changes made by others while a batch runs ------------------------------------------------


def stop_four_ways(world, enrolments) -> None:
    """What other transactions do to enrolments: a person pauses one and removes
    another, one lead unsubscribes, one becomes SQL."""
    from accounts.models import Role
    from accounts.services import Origin
    from campaigns.nurture import services

    paused, removed, unsubscribed, became_sql = enrolments
    marketer = Origin(role=Role.MARKETING)
    services.enrolment_set_state(enrolment=paused, action="pause", origin=marketer)
    services.enrolment_set_state(enrolment=removed, action="remove", origin=marketer)
    services.lead_unsubscribe(tenant_id=world.tenant.id, lead_id=unsubscribed.lead_id)
    services.lead_stage_changed(
        tenant_id=world.tenant.id, lead_id=became_sql.lead_id, to_stage="sql"
    )


def assert_stopped_stand(enrolments) -> None:
    paused, removed, unsubscribed, became_sql = (fresh(e) for e in enrolments)
    assert paused.state == State.PAUSED
    assert (removed.state, removed.exit_reason) == (State.EXITED, Enrolment.ExitReason.REMOVED)
    assert (unsubscribed.state, unsubscribed.exit_reason) == (
        State.EXITED,
        Enrolment.ExitReason.UNSUBSCRIBED,
    )
    assert (became_sql.state, became_sql.exit_reason) == (
        State.EXITED,
        Enrolment.ExitReason.BECAME_SQL,
    )


def test_enrolments_stopped_after_the_claim_get_no_mail_and_stay_stopped(
    world_a, smtp, monkeypatch
):
    """Between the claim and the sending, others pause, remove, unsubscribe and exit
    four of five enrolments: only the fifth is mailed, and the batch's write-back
    does not make the four active again."""
    *stopped, going_on = enrol(world_a, three_steps(world_a), n=5)
    write_rows = dispatch._write_rows

    def others_first(tenant_id, batch):
        stop_four_ways(world_a, stopped)
        return write_rows(tenant_id, batch)

    monkeypatch.setattr(dispatch, "_write_rows", others_first)
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert [env.rcpt_tos for env in smtp.inbox.envelopes] == [[going_on.lead.email]]
    assert (report["sent"], report["stopped_meanwhile"]) == (1, 4)
    assert_stopped_stand(stopped)
    assert fresh(going_on).step_order == 2
    assert mailed(world_a) == {going_on.lead_id}
    # A paused one resumed later gets its mail then, once.
    from accounts.services import SYSTEM
    from campaigns.nurture import services

    monkeypatch.setattr(dispatch, "_write_rows", write_rows)
    services.enrolment_set_state(enrolment=stopped[0], action="resume", origin=SYSTEM)
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON + dispatch.LEASE)
    assert mailed(world_a) == {going_on.lead_id, stopped[0].lead_id}


def test_a_change_made_while_the_mails_went_out_wins_over_the_write_back(
    world_a, smtp, monkeypatch
):
    enrolments = enrol(world_a, three_steps(world_a), n=4)
    save = dispatch._save

    def others_first(*args):
        stop_four_ways(world_a, enrolments)
        return save(*args)

    monkeypatch.setattr(dispatch, "_save", others_first)
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert_stopped_stand(enrolments)
    assert (report["sent"], report["changed_meanwhile"]) == (4, 4)
    # Nothing is due any more: the stopped ones get no second mail.
    monkeypatch.setattr(dispatch, "_save", save)
    later = NOON + datetime.timedelta(days=2)
    assert dispatch.dispatch_tenant(world_a.tenant.id, now=later) == {"claimed": 0}
    assert len(smtp.inbox.envelopes) == 4


def test_a_mail_that_cannot_be_built_holds_back_only_its_enrolment(world_a, smtp):
    """A sequence activated without a sender before activation required one: its
    mail retries later (and in the end fails); the other leads of the batch get theirs."""
    broken = three_steps(world_a)
    with tenant_scope(world_a.tenant.id):
        Sequence.objects.filter(pk=broken.pk).update(sender=None)
    [stuck] = enrol(world_a, broken)
    [fine] = enrol(world_a, three_steps(world_a))
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert (report["sent"], report["deferred"]) == (1, 1)
    assert [env.rcpt_tos for env in smtp.inbox.envelopes] == [[fine.lead.email]]
    assert fresh(fine).step_order == 2
    held = fresh(stuck)
    assert (held.state, held.step_order) == (State.ACTIVE, 0)
    assert held.next_due_at == NOON + dispatch.backoff(1)
    with tenant_scope(world_a.tenant.id):
        row = OutgoingMessage.objects.get(enrolment=stuck)
    assert (row.status, row.attempts) == ("queued", 1)


# --- The other branches, field and stage changes, enrolling into another sequence ------------


def test_the_score_at_least_branch_reads_the_primary_models_score(world_a, smtp):
    from leads.tests.factories import LeadScoreFactory, ScoringModelFactory

    primary = ScoringModelFactory(tenant=world_a.tenant, is_primary=True)
    other_model = ScoringModelFactory(tenant=world_a.tenant)
    sequence = branch_first(world_a, {"type": "score_at_least", "value": 50})
    reached, exactly, below, unscored, other_only = enrol(world_a, sequence, n=5)
    for enrolment, model, total in (
        (reached, primary, 80),
        (exactly, primary, 50),
        (below, primary, 49),
        (other_only, other_model, 90),  # a score of another model does not count
    ):
        LeadScoreFactory(tenant=world_a.tenant, model=model, lead=enrolment.lead, total=total)
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    # At or above the threshold: the "then" path (end, no mail).
    assert mailed(world_a) == {below.lead_id, unscored.lead_id, other_only.lead_id}


def test_a_score_branch_whose_value_is_not_a_number_is_not_taken(world_a, smtp):
    from leads.tests.factories import LeadScoreFactory, ScoringModelFactory

    primary = ScoringModelFactory(tenant=world_a.tenant, is_primary=True)
    sequence = branch_first(world_a, {"type": "score_at_least", "value": "many"})
    [enrolment] = enrol(world_a, sequence)
    LeadScoreFactory(tenant=world_a.tenant, model=primary, lead=enrolment.lead, total=100)
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert "step_error" not in report
    assert mailed(world_a) == {enrolment.lead_id}


def test_the_stage_is_branch(world_a, smtp):
    sequence = branch_first(world_a, {"type": "stage_is", "value": "mql"})
    [mql] = enrol(world_a, sequence, lifecycle_stage="mql")
    [lead] = enrol(world_a, sequence, lifecycle_stage="lead")
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert mailed(world_a) == {lead.lead_id}
    assert fresh(mql).state == fresh(lead).state == State.COMPLETED


def test_the_field_equals_branch_on_a_lead_field_and_a_custom_field(world_a, smtp):
    on_title = branch_first(
        world_a, {"type": "field_equals", "field": "job_title", "value": "部長"}
    )
    [manager] = enrol(world_a, on_title, job_title="部長")
    [engineer] = enrol(world_a, on_title, job_title="エンジニア")
    on_custom = branch_first(
        world_a, {"type": "field_equals", "field": "industry", "value": "製造業"}
    )
    [maker] = enrol(world_a, on_custom, custom_fields={"industry": "製造業"})
    [retail] = enrol(world_a, on_custom, custom_fields={"industry": "小売"})
    [unset] = enrol(world_a, on_custom, custom_fields={})
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert mailed(world_a) == {engineer.lead_id, retail.lead_id, unset.lead_id}
    assert {manager.lead_id, maker.lead_id}.isdisjoint(mailed(world_a))


def test_change_stage_and_change_field_steps_update_the_lead(world_a, smtp):
    from accounts.models import DomainEvent
    from leads.models import Channel, Lead, LifecycleTransition

    sequence = sequence_with_steps(
        world_a.tenant,
        [
            {"kind": StepKind.CHANGE_FIELD, "config": {"stage": "mql"}},
            {
                "kind": StepKind.CHANGE_FIELD,
                "config": {"field": "department", "value": "情報システム部"},
            },
            {"kind": StepKind.END},
        ],
    )
    [enrolment] = enrol(world_a, sequence, lifecycle_stage="lead", department="総務部")
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert report["completed"] == 1
    assert fresh(enrolment).state == State.COMPLETED
    with tenant_scope(world_a.tenant.id):
        lead = Lead.objects.get(pk=enrolment.lead_id)
        [transition] = LifecycleTransition.objects.filter(lead=lead)
        changed = DomainEvent.objects.filter(
            name="lead.lifecycle_changed", payload__lead_id=lead.pk
        ).values_list("payload", flat=True)
    assert (lead.lifecycle_stage, lead.department) == ("mql", "情報システム部")
    assert (transition.from_stage, transition.to_stage) == ("lead", "mql")
    assert (transition.channel, transition.reason) == (Channel.SYSTEM, f"sequence:{sequence.pk}")
    assert transition.actor_id is None
    assert [(p["from"], p["to"]) for p in changed] == [("lead", "mql")]
    assert smtp.inbox.envelopes == []


def test_an_enrol_step_puts_the_lead_in_the_other_sequence(world_a, smtp):
    target = three_steps(world_a)
    sequence = sequence_with_steps(
        world_a.tenant,
        [
            {"kind": StepKind.ENROL, "config": {"sequence_id": target.pk}},
            {"kind": StepKind.END},
        ],
    )
    [enrolment] = enrol(world_a, sequence)
    dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    assert fresh(enrolment).state == State.COMPLETED
    with tenant_scope(world_a.tenant.id):
        [joined] = Enrolment.objects.filter(sequence=target)
    assert joined.lead_id == enrolment.lead_id
    assert (joined.state, joined.source, joined.version, joined.step_order) == (
        State.ACTIVE,
        Enrolment.Source.SEQUENCE,
        target.version,
        0,
    )
    # The next run sends the other sequence's first mail.
    # (enrol_leads makes it due at the real time of the step.)
    dispatch.dispatch_tenant(world_a.tenant.id, now=timezone.now() + datetime.timedelta(seconds=1))
    assert subjects(smtp) == ["資料のご案内"]


# --- A mail provider's refusals (anymail) ----------------------------------------------------


class ProviderBackend(BaseEmailBackend):
    """A mail provider's backend (anymail) that refuses every mail: the recipients
    (refusal="recipients") or the API call with an HTTP status."""

    def __init__(self, *, refusal: str = "api", status: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.refusal, self.status = refusal, status

    def send_messages(self, email_messages):
        import requests
        from anymail.exceptions import (
            AnymailAPIError,
            AnymailRecipientsRefused,
            AnymailRequestsAPIError,
        )

        if self.refusal == "recipients":
            raise AnymailRecipientsRefused(esp_name="Provider")
        if self.status is None:
            raise AnymailAPIError("no answer from the provider", esp_name="Provider")
        # As anymail's requests-based backends raise it: the status from the response.
        response = requests.Response()
        response.status_code, response.reason = self.status, "Refused"
        response._content = b'{"message": "refused"}'
        raise AnymailRequestsAPIError("refused", response=response, esp_name="Provider")


@pytest.mark.parametrize(
    ("options", "bounced"),
    [
        ({"refusal": "recipients"}, True),
        ({"status": 400}, True),
        ({"status": 422}, True),
        ({"status": 429}, False),  # too many requests: later
        ({"status": 401}, False),  # our API key, not the recipient
        ({"status": 403}, False),
        ({"status": 500}, False),
        ({"status": None}, False),
    ],
)
def test_a_mail_providers_refusal_bounces_like_an_smtp_5xx(world_a, settings, options, bounced):
    settings.MAILERS = {
        "default": {
            "BACKEND": f"{__name__}.ProviderBackend",
            "OPTIONS": options,
        }
    }
    [enrolment] = enrol(world_a, three_steps(world_a))
    report = dispatch.dispatch_tenant(world_a.tenant.id, now=NOON)
    [row] = messages(world_a)
    left = fresh(enrolment)
    with tenant_scope(world_a.tenant.id):
        suppressed = Suppression.objects.filter(email=enrolment.lead.email).exists()
    if bounced:
        assert report["bounced"] == 1
        assert row.status == "bounced"
        assert (left.state, left.exit_reason) == (State.EXITED, Enrolment.ExitReason.BOUNCED)
        assert suppressed
    else:
        assert report["deferred"] == 1
        assert (row.status, left.state) == ("queued", State.ACTIVE)
        assert left.next_due_at == NOON + dispatch.backoff(1)
        assert not suppressed
