"""Per-sequence and per-step statistics (campaigns.nurture.selectors) with exact
figures: what each one counts, what it leaves out (another message's events, another
lead's, MQL before enrolling, another tenant), in a fixed number of queries."""

import datetime

import pytest
from django.utils import timezone

from accounts.tenancy import tenant_scope
from campaigns.models import Enrolment, OutgoingMessage, StepKind
from campaigns.nurture import selectors
from campaigns.tests.factories import (
    EnrolmentFactory,
    OutgoingMessageFactory,
    SequenceFactory,
    SequenceStepFactory,
)
from leads.models import ActivityType, LifecycleStage
from leads.tests.factories import ActivityFactory, LeadFactory, LifecycleTransitionFactory

pytestmark = pytest.mark.django_db

State = Enrolment.State
Exit = Enrolment.ExitReason
Sent = OutgoingMessage.Status
T0 = timezone.now() - datetime.timedelta(days=30)


def at(days: float) -> datetime.datetime:
    return T0 + datetime.timedelta(days=days)


def event(tenant, lead, message, kind: str, days: float):
    return ActivityFactory(
        tenant=tenant,
        lead=lead,
        type=kind,
        occurred_at=at(days),
        properties={"message_id": message.pk, "sequence_id": message.step.sequence_id},
    )


def build(tenant):
    """A sequence of mail A, a wait, mail B, and five leads that went different ways."""
    sequence = SequenceFactory(tenant=tenant)
    step_a = SequenceStepFactory(tenant=tenant, sequence=sequence, order=0)
    SequenceStepFactory(
        tenant=tenant, sequence=sequence, order=1, kind=StepKind.WAIT, template=None,
        config={"seconds": 86400},
    )  # fmt: skip
    step_b = SequenceStepFactory(tenant=tenant, sequence=sequence, order=2)
    leads = [LeadFactory(tenant=tenant) for _ in range(5)]

    def enrolment(lead, **kwargs):
        return EnrolmentFactory(
            tenant=tenant, sequence=sequence, lead=lead, enrolled_at=at(0), **kwargs
        )

    def message(e, step, days, status=Sent.SENT, sent=True):
        return OutgoingMessageFactory(
            tenant=tenant, enrolment=e, step=step, lead=e.lead, status=status,
            created_at=at(days), sent_at=at(days) if sent else None,
        )  # fmt: skip

    # 1: mail A opened twice and clicked; reached MQL between A and B; B opened.
    e1 = enrolment(leads[0])
    a1 = message(e1, step_a, 1)
    event(tenant, leads[0], a1, ActivityType.EMAIL_OPENED, 1.1)
    event(tenant, leads[0], a1, ActivityType.EMAIL_OPENED, 1.2)
    event(tenant, leads[0], a1, ActivityType.EMAIL_CLICKED, 1.3)
    LifecycleTransitionFactory(tenant=tenant, lead=leads[0], occurred_at=at(2))
    b1 = message(e1, step_b, 3)
    event(tenant, leads[0], b1, ActivityType.EMAIL_OPENED, 3.5)
    # 2: mail A accepted, then bounced (the provider's webhook).
    e2 = enrolment(leads[1], state=State.EXITED, exit_reason=Exit.BOUNCED)
    message(e2, step_a, 1, status=Sent.BOUNCED)
    # 3: mail A refused at sending (5xx): bounced, never sent.
    e3 = enrolment(leads[2], state=State.EXITED, exit_reason=Exit.BOUNCED)
    message(e3, step_a, 1, status=Sent.BOUNCED, sent=False)
    # 4: already MQL before enrolling; unsubscribed through mail A.
    LifecycleTransitionFactory(tenant=tenant, lead=leads[3], occurred_at=at(-1))
    e4 = enrolment(leads[3], state=State.EXITED, exit_reason=Exit.UNSUBSCRIBED)
    a4 = message(e4, step_a, 1)
    event(tenant, leads[3], a4, ActivityType.EMAIL_UNSUBSCRIBED, 1.4)
    # Lead 2 "opening" lead 4's message: neither lead 4's open nor lead 2's.
    event(tenant, leads[1], a4, ActivityType.EMAIL_OPENED, 1.5)
    # 5: replied to mail A.
    e5 = enrolment(leads[4], state=State.EXITED, exit_reason=Exit.REPLIED)
    message(e5, step_a, 1)
    # An open of a mail of another sequence, by lead 1: not this sequence's.
    other = OutgoingMessageFactory(
        tenant=tenant, lead=leads[0], status=Sent.SENT, created_at=at(1), sent_at=at(1)
    )
    event(tenant, leads[0], other, ActivityType.EMAIL_OPENED, 2)
    # A transition to another stage: not MQL.
    LifecycleTransitionFactory(
        tenant=tenant, lead=leads[4], to_stage=LifecycleStage.SAL, occurred_at=at(2)
    )
    return sequence, step_a, step_b, other


def figures(f: selectors.MailFigures) -> dict[str, int]:
    return {
        "sent": f.sent,
        "delivered": f.delivered,
        "opened": f.opened,
        "clicked": f.clicked,
        "replied": f.replied,
        "unsubscribed": f.unsubscribed,
        "bounced": f.bounced,
        "mql": f.mql,
    }


def test_sequence_and_step_figures(world_a, world_b, django_assert_num_queries):
    sequence, step_a, step_b, other = build(world_a.tenant)
    build(world_b.tenant)  # the same again in another tenant: counted nowhere here
    with tenant_scope(world_a.tenant.id), django_assert_num_queries(2):
        stats = selectors.sequence_stats([sequence.pk, other.step.sequence_id])
    mine = stats[sequence.pk]
    assert (mine.enrolled, mine.active, mine.paused, mine.completed, mine.exited) == (5, 1, 0, 0, 4)
    assert figures(mine.mail) == {
        "sent": 5,  # A to leads 1, 2, 4, 5 and B to lead 1
        "delivered": 4,  # less lead 2's bounce after sending
        "opened": 2,  # A and B of lead 1 (twice is once; a click is an open)
        "clicked": 1,
        "replied": 1,  # lead 5's enrolment
        "unsubscribed": 1,  # lead 4, through A
        "bounced": 2,  # leads 2 and 3
        "mql": 1,  # lead 1; lead 4 was MQL before enrolling
    }
    assert set(mine.steps) == {step_a.pk, step_b.pk}
    assert figures(mine.steps[step_a.pk]) == {
        "sent": 4, "delivered": 3, "opened": 1, "clicked": 1, "replied": 1,
        "unsubscribed": 1, "bounced": 2, "mql": 1,
    }  # fmt: skip
    assert figures(mine.steps[step_b.pk]) == {
        "sent": 1, "delivered": 1, "opened": 1, "clicked": 0, "replied": 0,
        "unsubscribed": 0, "bounced": 0, "mql": 0,  # lead 1 was MQL before B
    }  # fmt: skip
    assert mine.mail.rates["opened"] == "50.0%"
    assert mine.mail.rates["delivered"] == "80.0%"
    # The other sequence: one mail, opened; its enrolment is not of a lead that opened.
    theirs = stats[other.step.sequence_id]
    assert (theirs.mail.sent, theirs.mail.opened) == (1, 1)


def test_a_sequence_without_activity_has_zero_figures(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant)
    with tenant_scope(world_a.tenant.id):
        stats = selectors.sequence_stats_get(sequence.pk)
    assert stats.enrolled == 0
    assert figures(stats.mail) == dict.fromkeys(figures(stats.mail), 0)
    assert stats.mail.rates["opened"] == "—"
    assert selectors.sequence_stats([]) == {}


def test_replied_counts_on_the_last_mail_sent_before(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant)
    first = SequenceStepFactory(tenant=world_a.tenant, sequence=sequence, order=0)
    second = SequenceStepFactory(tenant=world_a.tenant, sequence=sequence, order=1)
    e = EnrolmentFactory(
        tenant=world_a.tenant, sequence=sequence, state=State.EXITED, exit_reason=Exit.REPLIED
    )
    for step, days in ((first, 1), (second, 2)):
        OutgoingMessageFactory(
            tenant=world_a.tenant, enrolment=e, step=step, status=Sent.SENT, sent_at=at(days)
        )
    with tenant_scope(world_a.tenant.id):
        stats = selectors.sequence_stats_get(sequence.pk)
    assert stats.steps[first.pk].replied == 0
    assert stats.steps[second.pk].replied == 1
    assert stats.mail.replied == 1


def test_enrolment_list_knows_the_step_each_stands_at(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant)
    SequenceStepFactory(tenant=world_a.tenant, sequence=sequence, order=0)
    SequenceStepFactory(
        tenant=world_a.tenant, sequence=sequence, order=1, kind=StepKind.END, template=None
    )
    at_wait = EnrolmentFactory(tenant=world_a.tenant, sequence=sequence, step_order=1)
    at_mail = EnrolmentFactory(tenant=world_a.tenant, sequence=sequence, step_order=0)
    done = EnrolmentFactory(
        tenant=world_a.tenant, sequence=sequence, step_order=2, state=State.COMPLETED
    )
    with tenant_scope(world_a.tenant.id):
        rows = {e.pk: e for e in selectors.enrolment_list(sequence_id=sequence.pk)}
        assert [
            e.pk for e in selectors.enrolment_list(sequence_id=sequence.pk, state="completed")
        ] == [done.pk]
        assert selectors.enrolment_counts(sequence_id=sequence.pk) == {"active": 2, "completed": 1}
    assert (rows[at_wait.pk].step_kind, rows[at_wait.pk].step_template) == ("end", None)
    assert rows[at_mail.pk].step_kind == "send_email"
    assert rows[at_mail.pk].step_template
    assert rows[done.pk].step_kind is None
