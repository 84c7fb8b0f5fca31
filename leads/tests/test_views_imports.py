"""The import wizard of the staff UI: upload → mapping → preview → options → run →
progress → result and error report; roles and tenant isolation."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from accounts.models import Role
from accounts.tenancy import tenant_scope
from campaigns.tests.factories import CampaignFactory
from leads.models import ImportJob, Lead
from leads.tests.files import HEADER_JA, ROWS_JA, csv_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def url(world, name: str, **kwargs) -> str:
    return reverse(f"leads:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def upload(client, world, rows, name="展示会リスト.csv", encoding="cp932"):
    data = csv_bytes(HEADER_JA, rows, encoding=encoding)
    return client.post(url(world, "imports"), {"file": SimpleUploadedFile(name, data)})


def test_the_whole_wizard(world_a, django_capture_on_commit_callbacks):
    campaign = CampaignFactory(tenant=world_a.tenant, name="展示会")
    client = login(world_a.member(Role.MARKETING))
    assert client.get(url(world_a, "imports")).status_code == 200
    rows = [*ROWS_JA, ["両輪", "鈴木 一郎", "", "broken@", "", "", "", ""]]
    response = upload(client, world_a, rows)
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        job = ImportJob.objects.get()
    assert response["Location"] == url(world_a, "import_mapping", pk=job.pk)

    # Mapping: the suggestions are pre-selected.
    page = client.get(url(world_a, "import_mapping", pk=job.pk))
    form = page.context["form"]
    assert form["col_3"].value() == "lead.email"  # メールアドレス
    assert form["col_1"].value() == "lead.full_name"  # 氏名
    data = {f"col_{i}": form[f"col_{i}"].value() for i in range(len(HEADER_JA))}
    data["col_4"] = ""  # leave the phone out
    response = client.post(url(world_a, "import_mapping", pk=job.pk), data)
    assert response.status_code == 302

    # Preview: the bad email is marked on its cell.
    page = client.get(url(world_a, "import_preview", pk=job.pk))
    assert page.status_code == 200
    rows = page.context["rows"]
    assert [row["number"] for row in rows] == [2, 3, 4]
    assert rows[2]["cells"][3]["problems"]
    assert page.context["problem_rows"] == 1
    assert "broken@" in page.content.decode()

    # Options and run (Celery runs eagerly in tests, after the commit).
    assert client.get(url(world_a, "import_options", pk=job.pk)).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url(world_a, "import_options", pk=job.pk),
            {"policy": "fill_empty", "campaign": str(campaign.pk),
             "consent_purposes": ["sales_contact"], "consent_basis": "名刺交換"},
        )  # fmt: skip
    assert response.status_code == 302

    # Result with its counts; the progress partial has stopped polling.
    page = client.get(url(world_a, "import_detail", pk=job.pk))
    body = page.content.decode()
    assert 'data-testid="count-created">2<' in body
    assert 'data-testid="count-errors">1<' in body
    partial = client.get(url(world_a, "import_progress", pk=job.pk)).content.decode()
    assert "hx-get" not in partial
    with tenant_scope(world_a.tenant.id):
        taro = Lead.objects.get(email="taro@ryorin.co.jp")
        assert taro.phone == ""
        assert taro.sales_contact_consent == "granted"
        assert taro.campaign_memberships.filter(campaign=campaign).exists()

    report = client.get(url(world_a, "import_errors", pk=job.pk))
    text = report.content.decode("utf-8")
    assert text.startswith("\ufeff")
    assert "broken@" in text
    assert text.splitlines()[1].startswith("4,メールアドレス")


def test_dry_run_changes_nothing_then_runs_for_real(world_a, django_capture_on_commit_callbacks):
    client = login(world_a.owner)
    upload(client, world_a, ROWS_JA, encoding="utf-8-sig")
    with tenant_scope(world_a.tenant.id):
        job = ImportJob.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url(world_a, "import_options", pk=job.pk), {"policy": "skip", "dry_run": "on"})
    body = client.get(url(world_a, "import_detail", pk=job.pk)).content.decode()
    assert 'data-testid="count-created">2<' in body
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url(world_a, "import_rerun", pk=job.pk))
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.count() == 2


def test_a_bad_file_is_refused_with_a_reason(world_a):
    client = login(world_a.owner)
    response = client.post(url(world_a, "imports"), {"file": SimpleUploadedFile("empty.csv", b"")})
    assert response.status_code == 400
    assert response.context["form"].errors["file"]


def test_consent_purposes_need_a_basis(world_a):
    client = login(world_a.owner)
    upload(client, world_a, ROWS_JA)
    with tenant_scope(world_a.tenant.id):
        job = ImportJob.objects.get()
    response = client.post(
        url(world_a, "import_options", pk=job.pk),
        {"policy": "skip", "consent_purposes": ["email_marketing"]},
    )
    assert response.status_code == 400
    assert "consent_basis" in response.context["form"].errors


@pytest.mark.parametrize("role", [Role.INSIDE_SALES, Role.FIELD_SALES, Role.READ_ONLY])
def test_only_marketing_admins_and_owners_import(world_a, role):
    assert login(world_a.member(role)).get(url(world_a, "imports")).status_code == 403


def test_another_tenants_import_is_404(world_a, world_b):
    client = login(world_a.owner)
    upload(client, world_a, ROWS_JA)
    with tenant_scope(world_a.tenant.id):
        job = ImportJob.objects.get()
    other = login(world_b.owner)
    for name in ("import_detail", "import_mapping", "import_preview", "import_errors"):
        assert other.get(url(world_b, name, pk=job.pk)).status_code == 404, name
        assert other.get(url(world_a, name, pk=job.pk)).status_code == 404, name
