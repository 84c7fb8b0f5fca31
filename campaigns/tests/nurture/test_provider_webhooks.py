"""The mail provider's bounce and complaint webhooks, end to end: the dispatcher sends a
real mail (Django's locmem backend keeps the message object with the anymail metadata
it carries), then the provider's webhook is posted to anymail's tracking URL.

The provider is Postmark: its bounce and spam-complaint webhook bodies below are the
documented examples (https://postmarkapp.com/developer/webhooks/bounce-webhook,
.../spam-complaint-webhook), with the recipient and metadata of our mail. Postmark
authenticates with HTTP basic auth, the secret the test puts in settings.ANYMAIL.
"""

import base64
import datetime
import json
import secrets

import pytest
from anymail.signals import AnymailTrackingEvent, EventType
from django.core import mail
from django.urls import reverse

from accounts.tenancy import tenant_scope
from campaigns.models import Enrolment, OutgoingMessage, StepKind
from campaigns.nurture import dispatch
from campaigns.nurture.provider_webhooks import message_ref
from campaigns.tests.factories import (
    EmailTemplateFactory,
    EnrolmentFactory,
    SequenceFactory,
    sequence_with_steps,
)
from leads.models import Activity, ActivityType, ConsentStatus, Lead, Suppression
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

URL = "nurture:postmark_tracking_webhook"


@pytest.fixture
def webhook_secret(settings) -> str:
    secret = f"postmark:{secrets.token_urlsafe(16)}"
    settings.ANYMAIL = {"WEBHOOK_SECRET": [secret]}
    return secret


def auth(secret: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def sent_mail(world):
    """A one-step sequence whose mail the dispatcher sends: (enrolment, message row,
    the EmailMessage the backend got)."""
    tenant = world.tenant
    sequence = sequence_with_steps(
        tenant,
        [
            {"kind": StepKind.SEND_EMAIL, "template": EmailTemplateFactory(tenant=tenant)},
            {"kind": StepKind.WAIT, "config": {"seconds": 86400}},
        ],
    )
    lead = LeadFactory(tenant=tenant, email_consent=ConsentStatus.GRANTED)
    enrolment = EnrolmentFactory(tenant=tenant, sequence=sequence, lead=lead)
    mail.outbox.clear()
    report = dispatch.dispatch_batch(tenant.id, now=enrolment.next_due_at)
    assert report["sent"] == 1
    [sent] = mail.outbox
    with tenant_scope(tenant.id):
        message = OutgoingMessage.objects.get(enrolment=enrolment)
    assert message.status == OutgoingMessage.Status.SENT
    return enrolment, message, sent


def postmark_bounce(message: OutgoingMessage, metadata: dict) -> dict:
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "nurture",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": metadata,
        "ServerID": 23,
        "Description": "The server was unable to deliver your message "
        "(ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": message.to_email,
        "From": "marketing@sender.example.com",
        "BouncedAt": "2026-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": message.subject,
    }


def postmark_complaint(message: OutgoingMessage, metadata: dict) -> dict:
    return {
        "RecordType": "SpamComplaint",
        "MessageStream": "outbound",
        "ID": 42,
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "nurture",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "Metadata": metadata,
        "ServerID": 1234,
        "Description": "",
        "Details": "Test spam complaint details",
        "Email": message.to_email,
        "From": "marketing@sender.example.com",
        "BouncedAt": "2026-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": False,
        "Subject": message.subject,
    }


def post(client, payload: dict, secret: str):
    return client.post(
        reverse(URL), data=json.dumps(payload), content_type="application/json", **auth(secret)
    )


def email_activities(world, lead_id: int, type_: str) -> list[Activity]:
    with tenant_scope(world.tenant.id):
        return list(Activity.objects.filter(lead_id=lead_id, type=type_))


def test_the_sent_mail_carries_metadata_naming_its_row(world_a):
    _enrolment, message, sent = sent_mail(world_a)
    assert sent.metadata == {
        "ryorin_tenant": str(world_a.tenant.id),
        "ryorin_message": str(message.id),
    }


def test_a_bounce_suppresses_marks_bounced_exits_and_records_once(world_a, client, webhook_secret):
    enrolment, message, sent = sent_mail(world_a)
    payload = postmark_bounce(message, sent.metadata)
    response = post(client, payload, webhook_secret)
    assert response.status_code == 200, response.content
    with tenant_scope(world_a.tenant.id):
        message.refresh_from_db()
        enrolment.refresh_from_db()
        suppression = Suppression.objects.get(email=message.to_email)
    assert message.status == OutgoingMessage.Status.BOUNCED
    assert "550 5.1.1" in message.error
    assert suppression.reason == Suppression.Reason.BOUNCED
    assert enrolment.state == Enrolment.State.EXITED
    assert enrolment.exit_reason == Enrolment.ExitReason.BOUNCED
    [bounced] = email_activities(world_a, message.lead_id, ActivityType.EMAIL_BOUNCED)
    assert bounced.properties["message_id"] == message.id
    assert bounced.properties["sequence_id"] == enrolment.sequence_id
    assert bounced.properties["provider"] == "Postmark"

    # Postmark retries a webhook it thinks failed: nothing is recorded twice.
    assert post(client, payload, webhook_secret).status_code == 200
    assert len(email_activities(world_a, message.lead_id, ActivityType.EMAIL_BOUNCED)) == 1


def another_sequence_of(world, message) -> Enrolment:
    """The lead of `message` in a second sequence, active."""
    return EnrolmentFactory(
        tenant=world.tenant, lead_id=message.lead_id, sequence=SequenceFactory(tenant=world.tenant)
    )


def exit_reasons(world, *enrolments) -> dict[int, str]:
    """Each enrolment's exit reason ("" while it is live)."""
    with tenant_scope(world.tenant.id):
        return dict(
            Enrolment.objects.filter(pk__in=[e.pk for e in enrolments]).values_list(
                "pk", "exit_reason"
            )
        )


@pytest.mark.parametrize("address_changed", [False, True])
def test_a_bounce_ends_the_leads_other_sequences_while_the_address_is_its_own(
    world_a, client, webhook_secret, address_changed
):
    enrolment, message, sent = sent_mail(world_a)
    other = another_sequence_of(world_a, message)
    if address_changed:
        with tenant_scope(world_a.tenant.id):
            Lead.objects.filter(pk=message.lead_id).update(email="new-address@example.jp")
    response = post(client, postmark_bounce(message, sent.metadata), webhook_secret)
    assert response.status_code == 200, response.content
    with tenant_scope(world_a.tenant.id):
        assert Suppression.objects.filter(email=message.to_email).exists()
    # The bounced mail's enrolment ends either way; the lead's other sequence only
    # while the bounced address is still the lead's.
    assert exit_reasons(world_a, enrolment, other) == {
        enrolment.pk: "bounced",
        other.pk: "" if address_changed else "bounced",
    }


def test_a_complaint_suppresses_withdraws_consent_and_ends_every_sequence(
    world_a, client, webhook_secret
):
    enrolment, message, sent = sent_mail(world_a)
    other = another_sequence_of(world_a, message)
    response = post(client, postmark_complaint(message, sent.metadata), webhook_secret)
    assert response.status_code == 200, response.content
    with tenant_scope(world_a.tenant.id):
        message.refresh_from_db()
        lead = Lead.objects.get(pk=message.lead_id)
        suppression = Suppression.objects.get(email=message.to_email)
    states = exit_reasons(world_a, enrolment, other)
    assert message.status == OutgoingMessage.Status.SENT  # it was delivered
    assert suppression.reason == Suppression.Reason.COMPLAINED
    assert lead.email_consent == ConsentStatus.WITHDRAWN
    assert states == {enrolment.pk: "unsubscribed", other.pk: "unsubscribed"}
    [activity] = email_activities(world_a, lead.pk, ActivityType.EMAIL_UNSUBSCRIBED)
    assert activity.properties["reason"] == "complained"
    assert activity.properties["message_id"] == message.id

    assert (
        post(client, postmark_complaint(message, sent.metadata), webhook_secret).status_code == 200
    )
    assert len(email_activities(world_a, lead.pk, ActivityType.EMAIL_UNSUBSCRIBED)) == 1


def test_a_wrong_or_missing_secret_records_nothing(world_a, client, webhook_secret):
    _enrolment, message, sent = sent_mail(world_a)
    payload = postmark_bounce(message, sent.metadata)
    wrong = post(client, payload, "postmark:guessed")
    missing = client.post(reverse(URL), data=json.dumps(payload), content_type="application/json")
    assert wrong.status_code == 400
    assert missing.status_code == 400
    with tenant_scope(world_a.tenant.id):
        assert not Suppression.objects.exists()
        assert OutgoingMessage.objects.get(pk=message.pk).status == OutgoingMessage.Status.SENT


def test_without_a_configured_secret_the_webhook_refuses_to_run(world_a, client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": []}
    _enrolment, message, sent = sent_mail(world_a)
    response = client.post(
        reverse(URL),
        data=json.dumps(postmark_bounce(message, sent.metadata)),
        content_type="application/json",
    )
    assert response.status_code == 503
    with tenant_scope(world_a.tenant.id):
        assert not Suppression.objects.exists()


def test_an_event_naming_another_tenant_or_recipient_records_nothing(
    world_a, world_b, client, webhook_secret
):
    _enrolment, message, sent = sent_mail(world_a)
    # Tenant B's id with A's message id: B's scope does not see A's row.
    as_b = {**sent.metadata, "ryorin_tenant": str(world_b.tenant.id)}
    assert post(client, postmark_bounce(message, as_b), webhook_secret).status_code == 200
    # The right row, but the provider names another recipient.
    other = postmark_bounce(message, sent.metadata) | {"Email": "someone-else@example.com"}
    assert post(client, other, webhook_secret).status_code == 200
    for world in (world_a, world_b):
        with tenant_scope(world.tenant.id):
            assert not Suppression.objects.exists()
    with tenant_scope(world_a.tenant.id):
        assert OutgoingMessage.objects.get(pk=message.pk).status == OutgoingMessage.Status.SENT


def test_delivery_events_and_mails_that_are_not_ours_are_ignored(world_a, client, webhook_secret):
    _enrolment, message, sent = sent_mail(world_a)
    delivery = {
        "RecordType": "Delivery",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Recipient": message.to_email,
        "DeliveredAt": "2026-11-05T16:33:54Z",
        "Metadata": sent.metadata,
    }
    assert post(client, delivery, webhook_secret).status_code == 200
    system_mail = postmark_bounce(message, {})  # no metadata: a password reset, say
    assert post(client, system_mail, webhook_secret).status_code == 200
    with tenant_scope(world_a.tenant.id):
        assert not Suppression.objects.exists()
        assert OutgoingMessage.objects.get(pk=message.pk).status == OutgoingMessage.Status.SENT


def test_our_message_id_names_the_mail_when_the_provider_returns_no_metadata():
    event = AnymailTrackingEvent(
        event_type=EventType.BOUNCED,
        message_id="<ryorin.12.345@sender.example.com>",
        timestamp=datetime.datetime.now(datetime.UTC),
    )
    assert message_ref(event) == (12, 345)
    event.message_id = "883953f4-6105-42a2-a16a-77a8eac79483"
    assert message_ref(event) is None
    event.metadata = {"ryorin_tenant": "7", "ryorin_message": "not a number"}
    assert message_ref(event) is None


def test_a_bounced_address_is_on_the_suppression_list_of_the_api(world_a, client, webhook_secret):
    """The suppression list is the leads API's suppressions/ (list, add, remove)."""
    from tests.api_base import detail_url, list_url
    from tests.fixtures import api_client_for

    _enrolment, message, sent = sent_mail(world_a)
    assert post(client, postmark_bounce(message, sent.metadata), webhook_secret).status_code == 200
    api = api_client_for(world_a.owner)
    listed = api.get(list_url("suppression", world_a.tenant.slug), {"reason": "bounced"}).json()
    [row] = listed["results"]
    assert row["email"] == message.to_email
    response = api.delete(detail_url("suppression", world_a.tenant.slug, row["id"]))
    assert response.status_code == 204
    with tenant_scope(world_a.tenant.id):
        assert not Suppression.objects.exists()
