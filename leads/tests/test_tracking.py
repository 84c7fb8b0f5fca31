"""Cookie-less tracking: anonymous page views, identification by signed token, merging."""

import json

import pytest
from django.urls import reverse

from accounts.tenancy import tenant_scope
from leads.capture import tokens
from leads.models import Activity, ActivityType, Lead, Visitor
from leads.tests.capture_helpers import (  # noqa: F401 (autouse fixture)
    _fresh_capture_counters,
    make_form,
)
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

VISITOR = "v0123456789abcdef"


def track(client, body, **extra):
    # navigator.sendBeacon posts a string: text/plain, no preflight.
    return client.post(
        reverse("capture:track"), json.dumps(body), content_type="text/plain", **extra
    )


def page(n: int) -> str:
    return f"https://acme.example.jp/page{n}?utm_source=mail&utm_campaign=spring"


def test_anonymous_views_merge_into_the_lead_on_form_submission(world_a, client):
    form = make_form(world_a.tenant)
    for n in range(3):
        response = track(client, {"key": form.key, "url": page(n), "visitor": VISITOR})
        assert response.status_code == 204, response.content
        assert response["Access-Control-Allow-Origin"] == "*"
    with tenant_scope(world_a.tenant.id):
        visitor = Visitor.objects.get(key=VISITOR)
        anonymous = Activity.objects.filter(visitor=visitor, lead__isnull=True)
        assert anonymous.count() == 3
        assert anonymous.first().properties["utm_campaign"] == "spring"

    response = client.post(
        reverse("capture:submit", args=[form.key]),
        {"email": "visitor@example.jp", "sei": "佐藤", "visitor_key": VISITOR},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    token = response.json()["token"]
    with tenant_scope(world_a.tenant.id):
        lead = Lead.objects.get(email="visitor@example.jp")
        assert Visitor.objects.get(key=VISITOR).lead_id == lead.id
        assert not Activity.objects.filter(visitor__key=VISITOR, lead__isnull=True).exists()
        assert Activity.objects.filter(lead=lead, type=ActivityType.PAGE_VIEW).count() == 3
        assert Activity.objects.filter(lead=lead, type=ActivityType.FORM_SUBMISSION).count() == 1
    assert tokens.read_tracking_token(token) == tokens.LeadRef(world_a.tenant.id, lead.id)

    # Later views of the known visitor go straight to the lead, token or not.
    assert track(client, {"key": form.key, "url": page(9), "visitor": VISITOR}).status_code == 204
    with tenant_scope(world_a.tenant.id):
        assert Activity.objects.filter(lead=lead, type=ActivityType.PAGE_VIEW).count() == 4


def test_an_email_link_token_identifies_the_visitor(world_a, client):
    form = make_form(world_a.tenant)
    with tenant_scope(world_a.tenant.id):
        lead = LeadFactory(tenant=world_a.tenant)
    track(client, {"key": form.key, "url": page(1), "visitor": VISITOR})
    token = tokens.tracking_token(tenant_id=world_a.tenant.id, lead_id=lead.id)
    # A token alone is enough to name the tenant.
    response = track(client, {"url": page(2) + f"&rt={token}", "visitor": VISITOR, "token": token})
    assert response.status_code == 204, response.content
    with tenant_scope(world_a.tenant.id):
        assert Activity.objects.filter(lead=lead).count() == 2  # the earlier one moved too
        assert Visitor.objects.get(key=VISITOR).lead_id == lead.id


def test_tampered_token_is_400_and_nothing_is_stored(world_a, client):
    form = make_form(world_a.tenant)
    with tenant_scope(world_a.tenant.id):
        lead = LeadFactory(tenant=world_a.tenant)
    token = tokens.tracking_token(tenant_id=world_a.tenant.id, lead_id=lead.id)
    signature = token.rpartition(":")[2]
    # Point the token at another lead, keep the old signature.
    forged = tokens.tracking_token(tenant_id=world_a.tenant.id, lead_id=lead.id + 1)
    forged = forged.rpartition(":")[0] + ":" + signature
    for bad in (forged, token[:-2] + "xx", "garbage"):
        response = track(
            client, {"key": form.key, "url": page(1), "visitor": VISITOR, "token": bad}
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_token"
        assert "nothing was recorded" in error["message"]
    with tenant_scope(world_a.tenant.id):
        assert not Activity.objects.exists()
        assert not Visitor.objects.exists()


def test_a_token_of_tenant_b_with_a_form_key_of_a_is_refused(world_a, world_b, client):
    form_a = make_form(world_a.tenant)
    with tenant_scope(world_b.tenant.id):
        b_lead = LeadFactory(tenant=world_b.tenant)
    token = tokens.tracking_token(tenant_id=world_b.tenant.id, lead_id=b_lead.id)
    response = track(
        client, {"key": form_a.key, "url": page(1), "visitor": VISITOR, "token": token}
    )
    assert response.status_code == 400
    for tenant in (world_a.tenant, world_b.tenant):
        with tenant_scope(tenant.id):
            assert not Activity.objects.exists()


def test_a_confirmation_token_is_not_a_tracking_token(world_a, client):
    token = tokens.confirmation_token(tenant_id=world_a.tenant.id, submission_id=1)
    response = track(client, {"url": page(1), "visitor": VISITOR, "token": token})
    assert response.status_code == 400


def test_bad_input_names_the_field(world_a, client):
    form = make_form(world_a.tenant)
    response = track(client, {"key": form.key, "url": "javascript:alert(1)", "visitor": "x"})
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"url", "visitor"}
    assert track(client, {"key": "nope", "url": page(1), "visitor": VISITOR}).status_code == 404
    assert track(client, {"url": page(1), "visitor": VISITOR}).status_code == 400
    assert (
        client.post(reverse("capture:track"), "not json", content_type="text/plain").status_code
        == 400
    )
    with tenant_scope(world_a.tenant.id):
        assert not Activity.objects.exists()


def test_tracking_is_rate_limited_per_ip(world_a, client, settings):
    settings.LEADS_TRACK_RATE_PER_IP = "1/min"
    form = make_form(world_a.tenant)
    body = {"key": form.key, "url": page(1), "visitor": VISITOR}
    assert track(client, body, REMOTE_ADDR="198.51.100.9").status_code == 204
    assert track(client, body, REMOTE_ADDR="198.51.100.9").status_code == 429


def test_tracking_sets_no_cookie(world_a, client):
    form = make_form(world_a.tenant)
    response = track(client, {"key": form.key, "url": page(1), "visitor": VISITOR})
    assert response.cookies == {} or not any(response.cookies.values())


def test_the_script_is_small_and_served_by_us(client):
    from django.contrib.staticfiles import finders

    path = finders.find("leads/ryorin.js")
    assert path is not None
    with open(path, encoding="utf-8") as script:
        source = script.read()
    assert len(source.encode()) < 4096
    assert "document.cookie" not in source
    assert "localStorage" in source
    assert "/api/public/track/" in source
