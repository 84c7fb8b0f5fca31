"""Reminders before the deadline and escalation on breach: mailed through a real SMTP
server (aiosmtpd), once each, by the beat job."""

import datetime
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest
from aiosmtpd.controller import Controller

from accounts.models import DomainEvent, Role
from accounts.services import SYSTEM
from accounts.tenancy import tenant_scope
from leads.models import LifecycleStage
from leads.tests.factories import LeadFactory
from pipeline import services, tasks
from pipeline.models import Handoff
from pipeline.tests.factories import RoutingRuleFactory

pytestmark = pytest.mark.django_db


@dataclass
class Inbox:
    envelopes: list = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def mails(self) -> list[tuple[list[str], str, str]]:
        """(recipients, subject, body) of each message."""
        result = []
        for envelope in self.envelopes:
            message = message_from_bytes(envelope.content)
            subject = str(make_header(decode_header(message["Subject"])))
            body = message.get_payload(decode=True).decode(message.get_content_charset())
            result.append((sorted(envelope.rcpt_tos), subject, body))
        return result


@pytest.fixture
def smtp(settings) -> Iterator[Inbox]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 10},
        }
    }
    try:
        yield inbox
    finally:
        controller.stop()


def open_handoff(world, team, created: datetime.datetime) -> Handoff:
    lead = LeadFactory(
        tenant=world.tenant,
        lifecycle_stage=LifecycleStage.MQL,
        family_name="佐藤",
        given_name="一郎",
    )
    return services.handoff_create_for_lead(tenant_id=world.tenant.id, lead_id=lead.id, now=created)


def refreshed(world, handoff) -> Handoff:
    with tenant_scope(world.tenant.id):
        return Handoff.objects.get(pk=handoff.pk)


def test_reminder_then_escalation_once_each(world_a, world_b, sales, smtp):
    world_a.tenant.language = "en"
    world_a.tenant.save()
    RoutingRuleFactory(tenant=world_a.tenant, team=sales.team)
    created = datetime.datetime(2025, 10, 22, 1, 0, tzinfo=datetime.UTC)  # Wed 10:00 JST
    handoff = open_handoff(world_a, sales.team, created)
    assert handoff.owner_id == sales.reps[0].id
    # Tenant B has an unrelated handoff due at the same time: never mailed to A's people.
    b_handoff = open_handoff(world_b, None, created)

    before = handoff.remind_at - datetime.timedelta(minutes=1)
    assert services.sla_check(tenant_id=world_a.tenant.id, now=before) == {
        "reminded": 0,
        "breached": 0,
    }
    at_reminder = handoff.remind_at + datetime.timedelta(seconds=1)
    assert services.sla_check(tenant_id=world_a.tenant.id, now=at_reminder)["reminded"] == 1
    assert services.sla_check(tenant_id=world_a.tenant.id, now=at_reminder)["reminded"] == 0
    (reminder,) = smtp.mails()
    assert reminder[0] == [sales.reps[0].email]
    assert "Reminder" in reminder[1]
    assert "佐藤 一郎" in reminder[1]
    assert f"/t/{world_a.tenant.slug}/queue/{handoff.pk}/" in reminder[2]

    after = handoff.deadline + datetime.timedelta(seconds=1)
    assert services.sla_check(tenant_id=world_a.tenant.id, now=after)["breached"] == 1
    assert services.sla_check(tenant_id=world_a.tenant.id, now=after)["breached"] == 0
    escalation = smtp.mails()[1]
    assert escalation[0] == [sales.manager.email]
    assert "SLA breached" in escalation[1]
    assert len(smtp.mails()) == 2
    handoff = refreshed(world_a, handoff)
    assert (handoff.sla, handoff.escalated_at) == (Handoff.SLA.BREACHED, after)
    with tenant_scope(world_a.tenant.id):
        (event,) = DomainEvent.objects.filter(name="sla.breached")
    assert event.payload["escalated_to"] == [sales.manager.id]
    # Answering late keeps the breach.
    services.handoff_accept(handoff=handoff, origin=SYSTEM)
    assert refreshed(world_a, handoff).sla == Handoff.SLA.BREACHED
    assert refreshed(world_b, b_handoff).escalated_at is None


def test_without_a_team_manager_admins_hear_of_the_breach(world_a, smtp):
    admin = world_a.member(Role.ADMIN)
    created = datetime.datetime(2025, 10, 22, 1, 0, tzinfo=datetime.UTC)
    handoff = open_handoff(world_a, None, created)
    services.sla_check(tenant_id=world_a.tenant.id, now=handoff.deadline)
    # Past the deadline already: no reminder any more, the escalation to the admins.
    recipients = [mail[0] for mail in smtp.mails()]
    assert recipients == [sorted([world_a.owner.email, admin.email])]
    assert refreshed(world_a, handoff).sla == Handoff.SLA.BREACHED


def test_answered_handoffs_are_left_alone(world_a, sales, smtp):
    created = datetime.datetime(2025, 10, 22, 1, 0, tzinfo=datetime.UTC)
    handoff = open_handoff(world_a, None, created)
    services.handoff_reject(handoff=handoff, origin=SYSTEM, reason="not_now")
    far = handoff.deadline + datetime.timedelta(days=3)
    assert services.sla_check(tenant_id=world_a.tenant.id, now=far) == {
        "reminded": 0,
        "breached": 0,
    }
    assert smtp.mails() == []


def test_beat_job_fans_out_per_tenant(world_a, world_b, smtp, monkeypatch):
    created = datetime.datetime(2025, 10, 22, 1, 0, tzinfo=datetime.UTC)
    open_handoff(world_a, None, created)
    open_handoff(world_b, None, created)
    queued = []
    monkeypatch.setattr(
        tasks.check_tenant_slas, "delay", lambda tenant_id: queued.append(tenant_id)
    )
    assert tasks.check_handoff_slas() == 2
    assert sorted(queued) == sorted([world_a.tenant.id, world_b.tenant.id])
    assert tasks.check_tenant_slas(world_a.tenant.id)["breached"] == 1
    with pytest.raises(TypeError):
        tasks.check_tenant_slas("1")
