"""The capture forms API: CRUD through the generic endpoint tests (isolation included),
spec errors in the API's error format, and the embed code."""

import pytest
from django.urls import reverse

from accounts.models import Role
from accounts.tenancy import tenant_scope
from campaigns.tests.factories import CampaignFactory
from leads.models import CaptureForm
from leads.tests.capture_helpers import STANDARD_FIELDS, make_form
from leads.tests.factories import CaptureFormFactory
from tests.api_base import APIEndpointTests, assert_error
from tests.fixtures import api_client_for

pytestmark = pytest.mark.django_db


class TestCaptureFormsAPI(APIEndpointTests):
    route = "capture-form"
    create_payload = {"name": "資料請求フォーム", "fields": STANDARD_FIELDS, "consent_text": "同意"}
    update_payload = {"name": "改名", "is_active": False}
    invalid_payload = {"name": "x", "fields": [{"name": "email", "label": "E", "type": "radio"}]}
    invalid_field = "fields[0].type"

    def make_object(self, world):
        return CaptureFormFactory(tenant=world.tenant)


def forms_url(world) -> str:
    return reverse("api:tenant:capture-form-list", kwargs={"tenant": world.tenant.slug})


def form_url(world, pk) -> str:
    return reverse("api:tenant:capture-form-detail", kwargs={"tenant": world.tenant.slug, "pk": pk})


def test_create_answers_with_public_url_and_embed_code(world_a):
    campaign = CampaignFactory(tenant=world_a.tenant)
    response = api_client_for(world_a.owner).post(
        forms_url(world_a),
        {"name": "展示会フォーム", "fields": STANDARD_FIELDS, "campaign_id": campaign.id},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    key = body["key"]
    assert body["campaign_id"] == campaign.id
    assert body["public_url"].endswith(f"/f/{key}/")
    assert body["submit_url"].endswith(f"/api/public/forms/{key}/submit/")
    html = body["embed_html"]
    assert f'action="{body["submit_url"]}"' in html
    assert f'data-ryorin-form="{key}"' in html
    assert 'name="email"' in html
    assert "hp_website" in html
    assert body["script_url"].endswith("/static/leads/ryorin.js")
    assert body["script_url"] in html
    assert "cdn" not in html.lower()


def test_spec_errors_name_index_and_attribute(world_a):
    fields = [
        *STANDARD_FIELDS,
        {"name": "size", "label": "規模", "type": "text", "maps_to": "custom.size"},
    ]
    response = api_client_for(world_a.owner).post(
        forms_url(world_a), {"name": "x", "fields": fields}, format="json"
    )
    error = assert_error(response, 400, "invalid")
    assert list(error["fields"]) == ["fields[7].maps_to"]
    assert "size" in error["fields"]["fields[7].maps_to"][0]


def test_campaign_of_another_tenant_is_refused(world_a, world_b):
    other = CampaignFactory(tenant=world_b.tenant)
    response = api_client_for(world_a.owner).post(
        forms_url(world_a),
        {"name": "x", "fields": STANDARD_FIELDS, "campaign_id": other.id},
        format="json",
    )
    error = assert_error(response, 400, "invalid")
    assert "campaign_id" in error["fields"]


def test_double_opt_in_needs_consent_text(world_a):
    response = api_client_for(world_a.owner).post(
        forms_url(world_a),
        {"name": "x", "fields": STANDARD_FIELDS, "double_opt_in": True},
        format="json",
    )
    assert "consent_text" in assert_error(response, 400, "invalid")["fields"]


def test_update_keeps_the_key_and_inside_sales_cannot_write(world_a):
    form = make_form(world_a.tenant)
    owner = api_client_for(world_a.owner)
    response = owner.patch(form_url(world_a, form.pk), {"thank_you_message": "感謝"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["key"] == form.key
    assert response.json()["thank_you_message"] == "感謝"
    seller = api_client_for(world_a.member(role=Role.INSIDE_SALES))
    assert seller.get(form_url(world_a, form.pk)).status_code == 200
    assert seller.patch(form_url(world_a, form.pk), {"name": "x"}, format="json").status_code == 403


def test_filter_by_active(world_a):
    active = make_form(world_a.tenant)
    inactive = make_form(world_a.tenant, is_active=False)
    response = api_client_for(world_a.owner).get(forms_url(world_a), {"is_active": "false"})
    ids = {row["id"] for row in response.json()["results"]}
    assert ids == {inactive.id}
    assert active.id not in ids


def test_delete_removes_the_form(world_a):
    form = make_form(world_a.tenant)
    response = api_client_for(world_a.owner).delete(form_url(world_a, form.pk))
    assert response.status_code == 204
    with tenant_scope(world_a.tenant.id):
        assert not CaptureForm.objects.filter(pk=form.pk).exists()
