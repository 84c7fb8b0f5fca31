"""Open pixel and click redirect: signed tokens, activities that feed scoring, and a
clear 400 with no activity for a tampered token."""

import email
import email.policy
import re
from html import unescape
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from accounts.tenancy import tenant_scope
from campaigns.nurture import tracking
from campaigns.nurture.sending import build_email
from campaigns.tests.factories import (
    EmailTemplateFactory,
    OutgoingMessageFactory,
    SenderIdentityFactory,
)
from leads.models import Activity, ActivityType, ConsentStatus
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(world_a):
    lead = LeadFactory(tenant=world_a.tenant, email_consent=ConsentStatus.GRANTED)
    outgoing = OutgoingMessageFactory(tenant=world_a.tenant, enrolment__lead=lead, lead=lead)
    return lead, outgoing


def activities(lead, kind):
    with tenant_scope(lead.tenant_id):
        return list(Activity.objects.filter(lead=lead, type=kind))


def test_links_and_pixel_in_the_built_mail(world_a, sent, client):
    lead, outgoing = sent
    template = EmailTemplateFactory(
        tenant=world_a.tenant,
        html='<p><a href="https://example.jp/seminar?id=1&amp;utm=mail">申込</a></p>',
    )
    built = build_email(
        outgoing=outgoing,
        lead=lead,
        template=template,
        sender=SenderIdentityFactory(tenant=world_a.tenant),
        tenant=world_a.tenant,
    )
    raw = built.message.message().as_bytes()
    html = (
        email.message_from_bytes(raw, policy=email.policy.default)
        .get_body(preferencelist=("html",))
        .get_content()
    )
    hrefs = [unescape(h) for h in re.findall(r'href="([^"]+)"', html)]
    click = next(h for h in hrefs if "/n/c/" in h)
    assert any("/n/u/" in h for h in hrefs)  # the opt-out link is left as it is
    assert "example.jp" not in click
    pixel = unescape(re.search(r'<img src="([^"]+)"', html).group(1))

    response = client.get(urlsplit(click).path)
    assert response.status_code == 302
    assert response["Location"] == "https://example.jp/seminar?id=1&utm=mail"
    [activity] = activities(lead, ActivityType.EMAIL_CLICKED)
    assert activity.properties["url"] == "https://example.jp/seminar?id=1&utm=mail"
    assert activity.properties["message_id"] == outgoing.pk

    response = client.get(urlsplit(pixel).path)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert len(activities(lead, ActivityType.EMAIL_OPENED)) == 1


def test_tampered_tokens_are_a_clear_400_and_record_nothing(world_a, sent, client):
    lead, outgoing = sent
    ids = {"tenant_id": world_a.tenant.id, "lead_id": lead.pk, "message_id": outgoing.pk}
    click = tracking.click_token(**ids, url="https://example.jp/")
    opened = tracking.open_token(**ids)
    evil = tracking.click_token(**ids, url="https://evil.example/")
    forged = [
        ("nurture:click", click[:-3] + "abc"),
        ("nurture:click", evil.split(":")[0] + ":" + click.split(":", 1)[1]),
        ("nurture:click", opened),  # a token of the other kind
        ("nurture:open", opened[:-3] + "xyz"),
        ("nurture:open", click),
        ("nurture:open", "not-a-token"),
    ]
    for name, token in forged:
        response = client.get(reverse(name, args=[token]))
        assert response.status_code == 400, (name, token)
        assert "not valid" in response.content.decode() or "無効" in response.content.decode()
    with tenant_scope(world_a.tenant.id):
        assert not Activity.objects.filter(lead=lead).exists()


def test_only_web_urls_are_signed_for_redirects(world_a, sent):
    lead, outgoing = sent
    for url in ("javascript:alert(1)", "//evil.example/", "ftp://x/", "https://"):
        token = tracking.click_token(
            tenant_id=world_a.tenant.id, lead_id=lead.pk, message_id=outgoing.pk, url=url
        )
        with pytest.raises(tracking.BadToken):
            tracking.click_token_read(token)


def test_a_token_never_reaches_another_tenants_lead(world_a, world_b, sent, client):
    lead_b = LeadFactory(tenant=world_b.tenant)
    _lead, outgoing = sent
    token = tracking.open_token(
        tenant_id=world_a.tenant.id, lead_id=lead_b.pk, message_id=outgoing.pk
    )
    assert client.get(reverse("nurture:open", args=[token])).status_code == 200
    with tenant_scope(world_b.tenant.id):
        assert not Activity.objects.filter(lead=lead_b).exists()


def test_token_urls_are_what_reverse_gives(settings):
    token = tracking.open_token(tenant_id=1, lead_id=2, message_id=3)
    site = settings.SITE_URL.rstrip("/")
    assert tracking.token_url("nurture:open", token) == site + reverse("nurture:open", args=[token])
    settings.SITE_URL = "https://mail.example.jp/"
    click = tracking.click_token(tenant_id=1, lead_id=2, message_id=3, url="https://a.jp/?x=1")
    assert tracking.token_url("nurture:click", click) == (
        "https://mail.example.jp" + reverse("nurture:click", args=[click])
    )
    # Outside signing's alphabet the URL is reverse()'s own (which quotes it).
    assert tracking.token_url("nurture:click", "a b") == "https://mail.example.jp/n/c/a%20b/"
