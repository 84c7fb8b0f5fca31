"""The capture-form builder: list, create, edit rows (add, move, remove), settings, live
preview, spec errors on their row; roles and tenant isolation."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Role
from accounts.tenancy import tenant_scope
from leads.models import CaptureForm
from leads.tests.factories import CaptureFormFactory

pytestmark = pytest.mark.django_db


def url(world, name: str, **kwargs) -> str:
    return reverse(f"leads:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_data(form: CaptureForm, rows: list[dict], **settings) -> dict:
    data = {
        "name": form.name, "campaign": "", "consent_text": "", "thank_you_message": "ありがとう",
        "redirect_url": "", "is_active": "on", "field_count": str(len(rows)), **settings,
    }  # fmt: skip
    for index, row in enumerate(rows):
        for key, value in row.items():
            if key == "required":
                if value:
                    data[f"f-{index}-required"] = "on"
            else:
                data[f"f-{index}-{key}"] = value
    return data


EMAIL_ROW = {"label": "メールアドレス", "name": "email", "type": "email", "maps_to": "lead.email",
             "required": True}  # fmt: skip
COMPANY_ROW = {"label": "会社名", "name": "", "type": "text", "maps_to": "lead.company_name",
               "required": False}  # fmt: skip


def test_create_a_form_and_edit_it(world_a):
    client = login(world_a.member(Role.MARKETING))
    assert client.get(url(world_a, "forms")).status_code == 200
    response = client.post(url(world_a, "forms"), {"name": "資料請求"})
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        form = CaptureForm.objects.get(name="資料請求")
    page = client.get(url(world_a, "form_edit", pk=form.pk))
    body = page.content.decode()
    assert page.status_code == 200
    assert f"/f/{form.key}/" in body  # public URL
    assert "&lt;form" in body  # embed code, escaped for display
    assert 'data-field="email"' in body  # preview renders the hosted form's fields

    response = client.post(
        url(world_a, "form_edit", pk=form.pk),
        post_data(form, [COMPANY_ROW, EMAIL_ROW], consent_text="案内メールを受け取る"),
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        form.refresh_from_db()
    assert [f["maps_to"] for f in form.fields] == ["lead.company_name", "lead.email"]
    assert form.fields[0]["name"] == "company_name"  # derived from what it fills
    assert form.consent_text == "案内メールを受け取る"


def test_row_operations_rerender_without_saving(world_a):
    form = CaptureFormFactory(tenant=world_a.tenant)
    saved = list(form.fields)
    client = login(world_a.owner)
    rows = [COMPANY_ROW, EMAIL_ROW]
    response = client.post(
        url(world_a, "form_edit", pk=form.pk), {**post_data(form, rows), "op": "down:0"}
    )
    assert response.status_code == 200
    assert [row["maps_to"] for row in response.context["rows"]] == [
        "lead.email",
        "lead.company_name",
    ]
    response = client.post(
        url(world_a, "form_edit", pk=form.pk), {**post_data(form, rows), "op": "add"}
    )
    assert len(response.context["rows"]) == 3
    response = client.post(
        url(world_a, "form_edit", pk=form.pk), {**post_data(form, rows), "op": "remove:0"}
    )
    assert [row["maps_to"] for row in response.context["rows"]] == ["lead.email"]
    with tenant_scope(world_a.tenant.id):
        form.refresh_from_db()
    assert form.fields == saved


def test_spec_errors_land_on_their_row(world_a):
    form = CaptureFormFactory(tenant=world_a.tenant)
    response = login(world_a.owner).post(
        url(world_a, "form_edit", pk=form.pk),
        post_data(form, [{**COMPANY_ROW, "type": "email"}, EMAIL_ROW]),
    )
    assert response.status_code == 400
    rows = response.context["rows"]
    assert rows[0]["errors"]
    assert rows[1]["errors"] == []


def test_a_form_without_email_is_refused(world_a):
    form = CaptureFormFactory(tenant=world_a.tenant)
    response = login(world_a.owner).post(
        url(world_a, "form_edit", pk=form.pk), post_data(form, [COMPANY_ROW])
    )
    assert response.status_code == 400
    assert response.context["errors"]


def test_live_preview_renders_unsaved_fields(world_a):
    form = CaptureFormFactory(tenant=world_a.tenant)
    rows = [EMAIL_ROW, {"label": "ご相談内容", "name": "message", "type": "textarea",
                        "maps_to": "", "required": False}]  # fmt: skip
    response = login(world_a.member(Role.MARKETING)).post(
        url(world_a, "form_preview", pk=form.pk),
        post_data(form, rows, consent_text="同意します"),
        HTTP_HX_REQUEST="true",
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "ご相談内容" in body
    assert "<textarea" in body
    assert "同意します" in body
    assert "<html" not in body


@pytest.mark.parametrize("role", [Role.INSIDE_SALES, Role.READ_ONLY])
def test_sales_and_read_only_do_not_build_forms(world_a, role):
    form = CaptureFormFactory(tenant=world_a.tenant)
    client = login(world_a.member(role))
    assert client.get(url(world_a, "forms")).status_code == 403
    assert client.get(url(world_a, "form_edit", pk=form.pk)).status_code == 403


def test_another_tenants_form_is_404(world_a, world_b):
    form = CaptureFormFactory(tenant=world_a.tenant)
    other = login(world_b.owner)
    assert other.get(url(world_b, "form_edit", pk=form.pk)).status_code == 404
    assert other.get(url(world_a, "form_edit", pk=form.pk)).status_code == 404
    assert other.post(url(world_b, "form_preview", pk=form.pk), {}).status_code == 404
