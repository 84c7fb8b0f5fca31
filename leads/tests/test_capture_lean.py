"""The lean submission path: its query budget, the form a process remembers between
submissions (and everything that makes it stale), and the rate-limit counters counted
in one round trip."""

import pytest
from django.urls import reverse

from accounts.services import SYSTEM
from accounts.tenancy import tenant_scope
from campaigns.models import CampaignMembership
from campaigns.tests.factories import CampaignFactory
from leads.capture.services import capture_form_remembered, capture_form_update
from leads.models import Activity, CaptureForm, ConsentEvent, FormSubmission, Lead, Visitor
from leads.tests.capture_helpers import (  # noqa: F401 (autouse fixture)
    _fresh_capture_counters,
    make_form,
)

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
    "page_url": "https://acme.example.jp/whitepaper?utm_source=google",
    "referrer": "https://www.google.com/",
}


def post(client, form, data, **extra):
    return client.post(
        reverse("capture:submit", args=[form.key]),
        data,
        content_type="application/json",
        HTTP_ACCEPT="application/json",
        **extra,
    )


def submission(n: int, **changes) -> dict:
    return {
        **VALID,
        "email": f"lead{n}@example.co.jp",
        "visitor_key": f"visitor-{n:04d}",
        **changes,
    }


# --- Query budget ---------------------------------------------------------------------------


def test_a_new_leads_submission_stays_within_its_query_budget(
    world_a, client, django_assert_max_num_queries
):
    """Everything a submission writes (lead, transition, company match, submission,
    membership, visitor, activity, consent and three outbox events) in at most 11
    statements here: the tenant scope's SAVEPOINT, SET LOCAL, restore and RELEASE
    (BEGIN, SET LOCAL and COMMIT outside a test), one lookup, the lead with its
    transition, the submission with the visitor (the INSERT checks the remembered
    form), the membership, the activity, the consent with the lead's status, and the
    three events in one INSERT (events.collecting). It was 38 before the lean path."""
    campaign = CampaignFactory(tenant=world_a.tenant)
    form = make_form(world_a.tenant, campaign_id=campaign.id)
    assert post(client, form, submission(1)).status_code == 200  # remembers the form
    with django_assert_max_num_queries(11):
        response = post(client, form, submission(2))
    assert response.status_code == 200, response.content
    with tenant_scope(world_a.tenant.id):
        lead = Lead.objects.get(email="lead2@example.co.jp")
        assert lead.company is not None
        assert lead.source_campaign_id == campaign.id
        assert lead.email_consent == "granted"
        assert FormSubmission.objects.filter(lead=lead).count() == 1
        assert CampaignMembership.objects.get(lead=lead).status == "responded"
        assert Activity.objects.get(lead=lead).visitor.key == "visitor-0002"
        assert ConsentEvent.objects.filter(lead=lead).count() == 1


def test_a_known_leads_submission_stays_within_its_query_budget(
    world_a, client, django_assert_max_num_queries
):
    form = make_form(world_a.tenant)
    assert post(client, form, submission(1, mei="")).status_code == 200
    with django_assert_max_num_queries(15):
        response = post(client, form, submission(1))
    assert response.status_code == 200, response.content
    with tenant_scope(world_a.tenant.id):
        lead = Lead.objects.get()
        assert lead.given_name == "太郎"  # was empty: filled
        assert FormSubmission.objects.filter(lead=lead).count() == 2


# --- The remembered form ----------------------------------------------------------------------


def test_an_edited_form_is_used_at_once(world_a, client):
    form = make_form(world_a.tenant)
    assert post(client, form, submission(1)).status_code == 200
    assert capture_form_remembered(form.key) is not None
    fields = [
        {**field, "required": True} if field["name"] == "tel" else field for field in form.fields
    ]
    capture_form_update(form=form, origin=SYSTEM, fields=fields)
    assert capture_form_remembered(form.key) is None
    response = post(client, form, submission(2, tel=""))
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["tel"]


def test_a_deactivated_form_answers_404_at_once(world_a, client):
    form = make_form(world_a.tenant)
    assert post(client, form, submission(1)).status_code == 200
    capture_form_update(form=form, origin=SYSTEM, is_active=False)
    assert post(client, form, submission(2)).status_code == 404
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.count() == 1


def test_a_form_changed_by_another_process_is_noticed(world_a, client):
    """Another worker's edit does not reach this process's memory: the submission's
    INSERT notices that the stored form is not the remembered one, everything is rolled
    back and the submission runs again on the stored form."""
    form = make_form(world_a.tenant)
    assert post(client, form, submission(1)).status_code == 200
    fields = [
        {**field, "required": True} if field["name"] == "tel" else field for field in form.fields
    ]
    with tenant_scope(world_a.tenant.id):
        CaptureForm.objects.filter(pk=form.pk).update(
            fields=fields, thank_you_message="変更後", updated_at=form.updated_at.replace(year=2030)
        )
    assert capture_form_remembered(form.key) is not None  # stale, and about to be noticed
    refused = post(client, form, submission(2, tel=""))
    assert refused.status_code == 400
    assert list(refused.json()["error"]["fields"]) == ["tel"]
    accepted = post(client, form, submission(3))
    assert accepted.status_code == 200
    assert accepted.json()["message"] == "変更後"
    with tenant_scope(world_a.tenant.id):
        assert sorted(Lead.objects.values_list("email", flat=True)) == [
            "lead1@example.co.jp",
            "lead3@example.co.jp",
        ]
        assert FormSubmission.objects.count() == 2


def test_a_form_deactivated_by_another_process_stores_nothing(world_a, client):
    form = make_form(world_a.tenant)
    assert post(client, form, submission(1)).status_code == 200
    with tenant_scope(world_a.tenant.id):
        CaptureForm.objects.filter(pk=form.pk).update(is_active=False)
    assert post(client, form, submission(2)).status_code == 404
    assert capture_form_remembered(form.key) is None
    with tenant_scope(world_a.tenant.id):
        assert list(Lead.objects.values_list("email", flat=True)) == ["lead1@example.co.jp"]
        assert not Activity.objects.filter(lead__email="lead2@example.co.jp").exists()
        assert FormSubmission.objects.count() == 1
        assert not Visitor.objects.filter(key="visitor-0002").exists()


def test_a_switched_off_tenant_stores_nothing(world_a, client):
    form = make_form(world_a.tenant)
    assert post(client, form, submission(1)).status_code == 200
    world_a.tenant.is_active = False
    world_a.tenant.save(update_fields=["is_active"])
    assert post(client, form, submission(2)).status_code == 404
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.count() == 1


def test_the_tenants_new_language_is_used_at_once(world_a, client):
    form = make_form(world_a.tenant)
    assert post(client, form, submission(1)).status_code == 200
    world_a.tenant.language = "en"
    world_a.tenant.save(update_fields=["language"])
    assert post(client, form, submission(2)).status_code == 200
    with tenant_scope(world_a.tenant.id):
        consent = ConsentEvent.objects.get(lead__email="lead2@example.co.jp")
    assert consent.basis.startswith("Ticked the consent box")


def test_a_deleted_campaign_is_dropped_from_the_form_at_once(world_a, client):
    """Deleting the campaign sets the form's campaign to NULL in the database only; the
    remembered form still names it, and the submission must not fail for it."""
    campaign = CampaignFactory(tenant=world_a.tenant)
    form = make_form(world_a.tenant, campaign_id=campaign.id)
    assert post(client, form, submission(1)).status_code == 200
    with tenant_scope(world_a.tenant.id):
        campaign.delete()
    response = post(client, form, submission(2))
    assert response.status_code == 200, response.content
    with tenant_scope(world_a.tenant.id):
        lead = Lead.objects.get(email="lead2@example.co.jp")
        assert lead.source_campaign_id is None
        assert not CampaignMembership.objects.filter(lead=lead).exists()
        assert Activity.objects.get(lead=lead).campaign_id is None


# --- Rate limits in one round trip ------------------------------------------------------------


def test_an_address_over_its_limit_does_not_spend_the_forms_budget(world_a, client, settings):
    settings.LEADS_CAPTURE_RATE_PER_IP = "1/min"
    settings.LEADS_CAPTURE_RATE_PER_FORM = "2/min"
    form = make_form(world_a.tenant)
    assert post(client, form, submission(1), REMOTE_ADDR="198.51.100.10").status_code == 200
    for n in range(2, 5):  # refused by its own limit, again and again
        refused = post(client, form, submission(n), REMOTE_ADDR="198.51.100.10")
        assert refused.status_code == 429
        assert "ネットワーク" in refused.json()["error"]["message"]
    # The form's budget still has one submission left, for another address.
    assert post(client, form, submission(5), REMOTE_ADDR="198.51.100.11").status_code == 200
    refused = post(client, form, submission(6), REMOTE_ADDR="198.51.100.12")
    assert refused.status_code == 429
    assert "このフォーム" in refused.json()["error"]["message"]
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.count() == 2
