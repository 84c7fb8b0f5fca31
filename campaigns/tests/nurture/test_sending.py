"""The mail as a real SMTP server receives it (Japanese subject, sender name and body
encoded), the compliance footer and RFC 8058 headers, consent rules, and the public
unsubscribe endpoint (GET page, one-click POST without login, tampered tokens)."""

import email
import email.policy
import re

import pytest
from django.core import mail
from django.urls import reverse

from accounts.tenancy import tenant_scope
from campaigns.models import Enrolment
from campaigns.nurture.sending import (
    BadToken,
    build_email,
    may_receive_marketing,
    unsubscribe_token,
    unsubscribe_token_read,
)
from campaigns.tests.factories import (
    EmailTemplateFactory,
    EnrolmentFactory,
    OutgoingMessageFactory,
    SenderIdentityFactory,
)
from leads.models import Activity, ActivityType, ConsentStatus, Suppression
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


def built_for(world, **lead_fields):
    lead_fields.setdefault("email_consent", ConsentStatus.GRANTED)
    lead = LeadFactory(tenant=world.tenant, family_name="山田", **lead_fields)
    enrolment = EnrolmentFactory(tenant=world.tenant, lead=lead)
    outgoing = OutgoingMessageFactory(tenant=world.tenant, enrolment=enrolment)
    sender = SenderIdentityFactory(tenant=world.tenant, from_name="両輪商事 マーケティング部")
    template = EmailTemplateFactory(tenant=world.tenant)
    built = build_email(
        outgoing=outgoing, lead=lead, template=template, sender=sender, tenant=world.tenant
    )
    return built, lead, sender, outgoing


def test_the_raw_message_is_encoded_and_compliant(world_a, smtp):
    built, lead, sender, outgoing = built_for(world_a)
    assert built.message.send() == 1
    [envelope] = smtp.inbox.envelopes
    raw: bytes = envelope.original_content
    raw.decode("ascii")  # every byte on the wire is 7-bit: headers and bodies encoded
    # Unfolded (RFC 5322 2.2.3): long encoded headers span lines.
    headers = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").replace("\r\n ", " ")
    headers = headers.replace("\r\n", "\n")
    assert re.search(r"^Subject: =\?utf-8\?[bq]\?", headers, re.MULTILINE | re.IGNORECASE)
    assert re.search(
        r"^From: =\?utf-8\?[bq]\?.*<marketing\d+@sender\.example\.com>$",
        headers,
        re.MULTILINE | re.IGNORECASE,
    )
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "山田様、資料のご案内"
    assert parsed["From"].addresses[0].display_name == "両輪商事 マーケティング部"
    assert parsed["Reply-To"] == sender.reply_to
    assert parsed["Message-ID"] == built.message_id
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.search(r"^List-Unsubscribe: <https?://\S+>$", headers, re.MULTILINE)
    unsubscribe = re.fullmatch(r"<(https?://[^>]+)>", parsed["List-Unsubscribe"]).group(1)
    token = unsubscribe.rstrip("/").rsplit("/", 1)[-1]
    assert unsubscribe_token_read(token).lead_id == lead.pk
    assert unsubscribe_token_read(token).message_id == outgoing.pk
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    html = parsed.get_body(preferencelist=("html",)).get_content()
    for body in (text, html):
        assert "山田様" in body
        assert sender.from_name in body
        assert "東京都千代田区千代田1-1" in body
        assert unsubscribe.replace("&", "&amp;") in body or unsubscribe in body
    assert "配信停止" in text  # the tenant's language (ja) for the footer


def test_tokens_refuse_tampering(world_a):
    token = unsubscribe_token(tenant_id=world_a.tenant.id, lead_id=5, message_id=7)
    assert unsubscribe_token_read(token).lead_id == 5
    head, signature = token.rsplit(":", 1)
    for bad in (
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        head,
        "",
        "x" * 400,
        f"{head}:{signature[::-1]}",
    ):
        with pytest.raises(BadToken):
            unsubscribe_token_read(bad)
    from campaigns.nurture.sending import signing

    other_kind = signing.dumps([world_a.tenant.id, 5, 7], salt="ryorin.leads.tracking")
    with pytest.raises(BadToken):
        unsubscribe_token_read(other_kind)


def test_only_consenting_unsuppressed_leads_receive_marketing(world_a):
    with tenant_scope(world_a.tenant.id):
        ok = LeadFactory(tenant=world_a.tenant, email_consent=ConsentStatus.GRANTED)
        assert may_receive_marketing(ok)
        for consent in (ConsentStatus.UNKNOWN, ConsentStatus.PENDING, ConsentStatus.WITHDRAWN):
            assert not may_receive_marketing(
                LeadFactory(tenant=world_a.tenant, email_consent=consent)
            )
        assert not may_receive_marketing(
            LeadFactory(tenant=world_a.tenant, email="", email_consent=ConsentStatus.GRANTED)
        )
        bounced = LeadFactory(tenant=world_a.tenant, email_consent=ConsentStatus.GRANTED)
        Suppression.objects.create(
            tenant=world_a.tenant, email=bounced.email, reason=Suppression.Reason.BOUNCED
        )
        assert not may_receive_marketing(bounced)
        assert not may_receive_marketing(bounced, suppressed={bounced.email})
        assert may_receive_marketing(ok, suppressed={bounced.email})


def _url(world, lead, message_id=None):
    token = unsubscribe_token(tenant_id=world.tenant.id, lead_id=lead.pk, message_id=message_id)
    return reverse("nurture:unsubscribe", args=[token])


def test_get_shows_a_button_and_unsubscribes_nobody(world_a, client):
    lead = LeadFactory(tenant=world_a.tenant, email_consent=ConsentStatus.GRANTED)
    response = client.get(_url(world_a, lead))
    assert response.status_code == 200
    assert b'method="post"' in response.content
    lead.refresh_from_db()
    assert lead.email_consent == ConsentStatus.GRANTED


def test_one_click_post_unsubscribes_at_once_without_login(world_a, client):
    from django.test import Client

    lead = LeadFactory(tenant=world_a.tenant, email_consent=ConsentStatus.GRANTED)
    live = EnrolmentFactory(tenant=world_a.tenant, lead=lead)
    strict = Client(enforce_csrf_checks=True)  # a mail provider's POST carries no CSRF token
    for _ in range(2):  # repeated: still one activity
        response = strict.post(
            _url(world_a, lead, message_id=99),
            data="List-Unsubscribe=One-Click",
            content_type="application/x-www-form-urlencoded",
        )
        assert response.status_code == 200
    lead.refresh_from_db()
    assert lead.email_consent == ConsentStatus.WITHDRAWN
    with tenant_scope(world_a.tenant.id):
        assert Suppression.objects.get(email=lead.email).reason == "unsubscribed"
        activities = Activity.objects.filter(lead=lead, type=ActivityType.EMAIL_UNSUBSCRIBED)
        assert activities.count() == 1
        assert activities.get().properties == {"message_id": 99}
        live.refresh_from_db()
        assert (live.state, live.exit_reason) == (Enrolment.State.EXITED, "unsubscribed")
        assert not may_receive_marketing(lead)


def test_tampered_token_is_a_400_and_changes_nothing(world_a, client):
    lead = LeadFactory(tenant=world_a.tenant, email_consent=ConsentStatus.GRANTED)
    url = _url(world_a, lead)
    token = url.rstrip("/").rsplit("/", 1)[-1]
    forged = token.replace(token.split(":")[0], token.split(":")[0][:-2] + "xx")
    for bad_url in (reverse("nurture:unsubscribe", args=[forged]), url.replace(token, "abc")):
        assert client.post(bad_url).status_code == 400
        assert client.get(bad_url).status_code == 400
    lead.refresh_from_db()
    assert lead.email_consent == ConsentStatus.GRANTED
    with tenant_scope(world_a.tenant.id):
        assert not Activity.objects.filter(lead=lead).exists()
        assert not Suppression.objects.exists()


def test_a_token_of_tenant_a_never_touches_tenant_b(world_a, world_b, client):
    lead_b = LeadFactory(tenant=world_b.tenant, email_consent=ConsentStatus.GRANTED)
    token = unsubscribe_token(tenant_id=world_a.tenant.id, lead_id=lead_b.pk)
    assert client.post(reverse("nurture:unsubscribe", args=[token])).status_code == 200
    lead_b.refresh_from_db()
    assert lead_b.email_consent == ConsentStatus.GRANTED


def test_locmem_outbox_unused(world_a):
    # build_email builds only; sending is the dispatcher's job.
    built_for(world_a)
    assert mail.outbox == []
