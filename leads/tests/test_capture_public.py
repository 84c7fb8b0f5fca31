"""The public side of capture forms: the hosted page, submissions, spam, tenants."""

import pytest
from django.core import mail
from django.urls import reverse

from accounts import events
from accounts.tenancy import tenant_scope
from campaigns.tests.factories import CampaignFactory
from leads.capture.spec import HONEYPOT_FIELD
from leads.models import (
    Activity,
    ActivityType,
    ConsentEvent,
    ConsentStatus,
    FormSubmission,
    Lead,
)
from leads.tests.capture_helpers import (  # noqa: F401 (autouse fixture)
    CONSENT_TEXT,
    _fresh_capture_counters,
    make_form,
)
from tests.fixtures import make_world

pytestmark = pytest.mark.django_db

VALID = {
    "email": "yamada@example.co.jp",
    "sei": "山田",
    "mei": "太郎",
    "company": "株式会社両輪商事",
    "tel": "03-1234-5678",
    "pref": "13",
    "message": "資料をください",
    "consent": "1",
}


def submit_url(form) -> str:
    return reverse("capture:submit", args=[form.key])


def form_url(form) -> str:
    return reverse("capture:form", args=[form.key])


@pytest.fixture
def hook_calls():
    """Records campaign.leads_responded calls, next to campaigns' own handler."""
    calls = []

    def record(**kwargs):
        calls.append(kwargs)

    events.on_hook("campaign.leads_responded")(record)
    yield calls
    events._hook_handlers["campaign.leads_responded"].remove(record)


def post_json(client, form, data, **extra):
    return client.post(
        submit_url(form),
        data,
        content_type="application/json",
        HTTP_ACCEPT="application/json",
        **extra,
    )


# --- The hosted page ----------------------------------------------------------------------


def test_hosted_page_renders_in_the_tenants_language(world_a, client):
    form = make_form(world_a.tenant)
    page = client.get(form_url(form) + "?utm_source=newsletter", HTTP_REFERER="https://t.co/x")
    assert page.status_code == 200
    html = page.content.decode()
    assert "メールアドレス" in html
    assert CONSENT_TEXT in html
    assert "送信" in html  # Japanese tenant: Japanese buttons
    assert 'name="utm_source" value="newsletter"' in html
    assert 'value="https://t.co/x"' in html  # the referrer travels in a hidden field
    assert f'name="{HONEYPOT_FIELD}"' in html
    assert "東京都" in html or "Tokyo" in html  # prefecture options are labelled
    # The language switch keeps the campaign parameters.
    assert "?utm_source=newsletter&amp;lang=en" in html


def test_hosted_page_in_english(client):
    world = make_world(language="en")
    form = make_form(world.tenant)
    html = client.get(form_url(form)).content.decode()
    assert "Submit" in html
    assert "送信" not in html
    # A Japanese tenant's page switches with ?lang=en
    jp_form = make_form(make_world().tenant)
    assert "Submit" in client.get(form_url(jp_form) + "?lang=en").content.decode()


def test_inactive_or_unknown_form_is_404(world_a, client):
    form = make_form(world_a.tenant, is_active=False)
    assert client.get(form_url(form)).status_code == 404
    assert post_json(client, form, VALID).status_code == 404
    assert client.get(reverse("capture:form", args=["no-such-key"])).status_code == 404
    # A switched-off tenant's forms answer 404 too, even once their key is known.
    live = make_form(world_a.tenant)
    assert client.get(form_url(live)).status_code == 200
    world_a.tenant.is_active = False
    world_a.tenant.save(update_fields=["is_active"])
    assert client.get(form_url(live)).status_code == 404
    with tenant_scope(world_a.tenant.id):
        assert not Lead.objects.exists()


# --- Submitting -------------------------------------------------------------------------------


def test_submission_creates_lead_activity_consent_submission_and_membership(
    world_a, client, hook_calls
):
    campaign = CampaignFactory(tenant=world_a.tenant)
    form = make_form(world_a.tenant, campaign_id=campaign.id)
    response = post_json(
        client,
        form,
        {
            **VALID,
            "page_url": "https://acme.example.jp/whitepaper?utm_source=google&utm_medium=cpc",
            "referrer": "https://www.google.com/",
            "utm_campaign": "spring",
        },
        HTTP_USER_AGENT="Mozilla/5.0 test",
        REMOTE_ADDR="203.0.113.7",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True
    assert body["token"]
    assert body["message"] == "ありがとうございました。"
    assert response["Access-Control-Allow-Origin"] == "*"

    with tenant_scope(world_a.tenant.id):
        lead = Lead.objects.get(email="yamada@example.co.jp")
        assert (lead.family_name, lead.given_name) == ("山田", "太郎")
        assert lead.phone == "+81312345678"
        assert lead.source_campaign_id == campaign.id
        assert lead.source_channel == "form"
        assert lead.email_consent == ConsentStatus.GRANTED

        submission = FormSubmission.objects.get(lead=lead)
        assert submission.form_id == form.id
        assert submission.data["message"] == "資料をください"
        assert submission.data["consent"] is True
        assert submission.ip_address == "203.0.113.7"
        assert submission.utm == {
            "utm_source": "google",
            "utm_medium": "cpc",
            "utm_campaign": "spring",
        }

        activity = Activity.objects.get(lead=lead, type=ActivityType.FORM_SUBMISSION)
        assert activity.campaign_id == campaign.id
        assert activity.properties["referrer"] == "https://www.google.com/"
        assert activity.properties["utm_source"] == "google"
        assert activity.properties["url"].startswith("https://acme.example.jp/whitepaper")

        consent = ConsentEvent.objects.get(lead=lead)
        assert consent.status == ConsentStatus.GRANTED
        assert consent.channel == "form"
        assert consent.proof["text"] == CONSENT_TEXT
        assert consent.proof["form_id"] == str(form.id)
        assert consent.proof["ip"] == "203.0.113.7"
        assert consent.proof["user_agent"] == "Mozilla/5.0 test"
        assert "資料請求" in consent.proof["note"]

    assert hook_calls == [
        {
            "tenant_id": world_a.tenant.id,
            "campaign_id": campaign.id,
            "lead_ids": [lead.id],
            "status": "responded",
        }
    ]
    if len(events._hook_handlers["campaign.leads_responded"]) > 1:  # campaigns' handler
        from campaigns.models import CampaignMembership

        with tenant_scope(world_a.tenant.id):
            assert CampaignMembership.objects.filter(campaign=campaign, lead=lead).exists()


def test_second_submission_dedupes_by_email_and_fills_only_empty_fields(world_a, client):
    form = make_form(world_a.tenant)
    assert post_json(client, form, {**VALID, "company": "", "consent": ""}).status_code == 200
    again = {**VALID, "email": "ＹＡＭＡＤＡ@Example.CO.JP", "sei": "別名", "company": "両輪商事"}
    assert post_json(client, form, again).status_code == 200
    with tenant_scope(world_a.tenant.id):
        lead = Lead.objects.get()
        assert lead.family_name == "山田"  # filled already: kept
        assert lead.company is not None  # was empty: filled
        assert FormSubmission.objects.filter(lead=lead).count() == 2
        assert Activity.objects.filter(lead=lead, type=ActivityType.FORM_SUBMISSION).count() == 2
        # No box ticked the first time: one consent event, from the second submission.
        assert ConsentEvent.objects.filter(lead=lead).count() == 1


def test_html_post_from_a_plain_embedded_form_redirects_to_thanks(world_a, client):
    form = make_form(world_a.tenant)
    response = client.post(
        submit_url(form), VALID, HTTP_REFERER="https://acme.example.jp/contact?utm_source=x"
    )
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("capture:thanks", args=[form.key]))
    thanks = client.get(response["Location"])
    assert "ありがとうございました。" in thanks.content.decode()
    with tenant_scope(world_a.tenant.id):
        submission = FormSubmission.objects.get()
        assert submission.page_url == "https://acme.example.jp/contact?utm_source=x"
        assert submission.utm == {"utm_source": "x"}


def test_redirect_url_gets_the_tracking_token(world_a, client):
    form = make_form(world_a.tenant, redirect_url="https://acme.example.jp/thanks?from=form")
    response = client.post(form_url(form), VALID)
    assert response.status_code == 302
    assert response["Location"].startswith("https://acme.example.jp/thanks?from=form&rt=")


def test_bad_fields_name_each_field_in_json(world_a, client):
    form = make_form(world_a.tenant, consent_required=True)
    response = post_json(client, form, {"email": "nope", "tel": "1", "pref": "99"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"email", "sei", "tel", "pref", "consent"}
    assert error["fields"]["email"] == ["有効なメールアドレスを入力してください。"]
    with tenant_scope(world_a.tenant.id):
        assert not Lead.objects.exists()
        assert not FormSubmission.objects.exists()


def test_bad_fields_rerender_the_hosted_page_with_messages(world_a, client):
    form = make_form(world_a.tenant)
    response = client.post(form_url(form), {**VALID, "email": "nope", "sei": ""})
    assert response.status_code == 400
    html = response.content.decode()
    assert "有効なメールアドレスを入力してください。" in html
    assert "この項目を入力してください。" in html
    assert 'value="太郎"' in html  # what the visitor typed is kept


def test_json_body_must_be_an_object(world_a, client):
    form = make_form(world_a.tenant)
    response = client.post(submit_url(form), "[1]", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_preflight_allows_any_origin_without_credentials(world_a, client):
    form = make_form(world_a.tenant)
    response = client.options(submit_url(form), HTTP_ORIGIN="https://acme.example.jp")
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response
    assert "Content-Type" in response["Access-Control-Allow-Headers"]


# --- Spam ---------------------------------------------------------------------------------------


def test_honeypot_is_silently_accepted_and_nothing_is_stored(world_a, client):
    form = make_form(world_a.tenant)
    response = post_json(client, form, {**VALID, HONEYPOT_FIELD: "http://spam.example"})
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert response.json()["token"] == ""
    html_response = client.post(form_url(form), {**VALID, HONEYPOT_FIELD: "x"})
    assert html_response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        assert not Lead.objects.exists()
        assert not FormSubmission.objects.exists()


def test_rate_limit_per_ip_answers_429(world_a, client, settings):
    settings.LEADS_CAPTURE_RATE_PER_IP = "2/min"
    form = make_form(world_a.tenant)
    for n in range(2):
        ok = post_json(
            client, form, {**VALID, "email": f"a{n}@example.jp"}, REMOTE_ADDR="198.51.100.1"
        )
        assert ok.status_code == 200
    refused = post_json(
        client, form, {**VALID, "email": "a3@example.jp"}, REMOTE_ADDR="198.51.100.1"
    )
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert "秒" in refused.json()["error"]["message"]
    assert int(refused["Retry-After"]) > 0
    # Another address still gets through.
    assert (
        post_json(
            client, form, {**VALID, "email": "b@example.jp"}, REMOTE_ADDR="198.51.100.2"
        ).status_code
        == 200
    )
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.count() == 3


def test_rate_limit_per_form_answers_429_page(world_a, client, settings):
    settings.LEADS_CAPTURE_RATE_PER_FORM = "1/min"
    form = make_form(world_a.tenant)
    assert client.post(form_url(form), VALID, REMOTE_ADDR="198.51.100.3").status_code == 302
    refused = client.post(form_url(form), VALID, REMOTE_ADDR="198.51.100.4")
    assert refused.status_code == 429
    assert "このフォーム" in refused.content.decode()


# --- Tenants ------------------------------------------------------------------------------------


def test_a_form_key_of_tenant_a_never_writes_into_b(world_a, world_b, client):
    form_a = make_form(world_a.tenant)
    with tenant_scope(world_b.tenant.id):
        b_lead = Lead.objects.create(tenant=world_b.tenant, email="yamada@example.co.jp")
    assert post_json(client, form_a, VALID).status_code == 200
    with tenant_scope(world_a.tenant.id):
        a_lead = Lead.objects.get(email="yamada@example.co.jp")
    assert a_lead.id != b_lead.id
    with tenant_scope(world_b.tenant.id):
        assert list(Lead.objects.values_list("id", flat=True)) == [b_lead.id]
        assert not FormSubmission.objects.exists()
        assert not Activity.objects.exists()
        assert not ConsentEvent.objects.exists()


# --- Double opt-in ------------------------------------------------------------------------------


def _link_in(message) -> str:
    line = next(line for line in message.body.splitlines() if "/f/confirm/" in line)
    return line.strip().split("testserver", 1)[-1].split("localhost:8000", 1)[-1]


def test_double_opt_in_end_to_end(world_a, client, django_capture_on_commit_callbacks):
    form = make_form(world_a.tenant, double_opt_in=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(client, form, VALID)
    assert response.json()["confirmation_pending"] is True
    with tenant_scope(world_a.tenant.id):
        lead = Lead.objects.get()
        assert lead.email_consent == ConsentStatus.PENDING
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["yamada@example.co.jp"]
    assert "確認" in message.subject  # Japanese tenant: Japanese mail
    path = _link_in(message)
    assert path.startswith("/f/confirm/")

    # A tampered link: 400, nothing changes.
    tampered = path[:-3] + ("x" if path[-3] != "x" else "y") + path[-2:]
    assert client.get(tampered).status_code == 400
    assert client.post(tampered).status_code == 400

    # Following the link shows a button; a mail scanner's GET confirms nothing.
    assert client.get(path).status_code == 200
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.get().email_consent == ConsentStatus.PENDING
    confirmed = client.post(path, REMOTE_ADDR="192.0.2.55")
    assert confirmed.status_code == 200
    assert 'data-testid="confirmed"' in confirmed.content.decode()
    with tenant_scope(world_a.tenant.id):
        lead = Lead.objects.get()
        assert lead.email_consent == ConsentStatus.GRANTED
        submission = FormSubmission.objects.get()
        assert submission.confirmed_at is not None
        events_ = list(ConsentEvent.objects.filter(lead=lead).order_by("occurred_at", "id"))
        assert [e.status for e in events_] == [ConsentStatus.PENDING, ConsentStatus.GRANTED]
        assert "192.0.2.55" in events_[1].proof["note"]
        assert events_[1].proof["text"] == CONSENT_TEXT
    # Confirming twice changes nothing more.
    assert client.post(path).status_code == 200
    with tenant_scope(world_a.tenant.id):
        assert ConsentEvent.objects.filter(lead=lead).count() == 2


def test_double_opt_in_mail_in_english_for_an_english_tenant(
    client, django_capture_on_commit_callbacks
):
    world = make_world(language="en")
    form = make_form(world.tenant, double_opt_in=True)
    with django_capture_on_commit_callbacks(execute=True):
        post_json(client, form, VALID)
    assert mail.outbox[0].subject.startswith("Please confirm")


def test_double_opt_in_without_the_box_ticked_sends_nothing(
    world_a, client, django_capture_on_commit_callbacks
):
    form = make_form(world_a.tenant, double_opt_in=True)
    with django_capture_on_commit_callbacks(execute=True):
        post_json(client, form, {**VALID, "consent": ""})
    assert mail.outbox == []
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.get().email_consent == ConsentStatus.UNKNOWN


def test_errors_from_the_lead_service_name_the_form_field(world_a, client):
    """A custom number field: the lead service checks the value and names `custom.<key>`;
    the visitor is told about the form's own field, and nothing is stored."""
    from leads.tests.factories import CustomFieldDefinitionFactory

    CustomFieldDefinitionFactory(tenant=world_a.tenant, key="employees", type="number")
    fields = [
        *make_form(world_a.tenant).fields,
        {"name": "staff", "label": "従業員数", "type": "text", "maps_to": "custom.employees"},
    ]
    form = make_form(world_a.tenant, fields=fields)
    response = post_json(client, form, {**VALID, "staff": "たくさん"})
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == ["staff"]
    html = client.post(form_url(form), {**VALID, "staff": "たくさん"})
    assert html.status_code == 400
    assert 'value="たくさん"' in html.content.decode()
    with tenant_scope(world_a.tenant.id):
        assert not Lead.objects.exists()
    # The same visitor, corrected, gets through.
    assert post_json(client, form, {**VALID, "staff": "120"}).status_code == 200
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.get().custom_fields == {"employees": 120}


def test_a_refusal_after_the_lead_is_written_leaves_nothing_behind(world_a, client):
    """The public view runs the submission in its own transaction without a savepoint:
    a ValidationError raised late (here by a campaign hook, after the lead and the
    submission row were written) must roll all of it back, and still answer 400."""
    from django.core.exceptions import ValidationError

    def refuse(**kwargs):
        raise ValidationError({"non_field_errors": ["The campaign is closed."]})

    events.on_hook("campaign.leads_responded")(refuse)
    try:
        campaign = CampaignFactory(tenant=world_a.tenant)
        form = make_form(world_a.tenant, campaign_id=campaign.id)
        response = post_json(client, form, VALID)
    finally:
        events._hook_handlers["campaign.leads_responded"].remove(refuse)
    assert response.status_code == 400, response.content
    with tenant_scope(world_a.tenant.id):
        assert not Lead.objects.exists()
        assert not FormSubmission.objects.exists()
        assert not Activity.objects.exists()
