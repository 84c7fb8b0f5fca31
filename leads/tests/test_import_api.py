"""The import API: upload, mapping, preview, run, status, error report; roles and
tenant isolation."""

import pytest
from django.urls import reverse

from accounts.models import Role
from accounts.tenancy import tenant_scope
from leads.models import ImportJob, Lead
from leads.tests.files import HEADER_JA, ROWS_JA, csv_bytes
from tests.api_base import assert_error
from tests.fixtures import api_client_for as _api_client_for


def api_client_for(**kwargs):
    """The assertions below read the English messages and CSV header."""
    client = _api_client_for(**kwargs)
    client.credentials(**client._credentials, HTTP_ACCEPT_LANGUAGE="en")
    return client


pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def url(world, name: str = "import-list", **kwargs) -> str:
    return reverse(f"api:tenant:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


def csv_upload(data: bytes, name: str = "list.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="text/csv")


def test_upload_map_preview_run_and_download_errors(world_a, django_capture_on_commit_callbacks):
    client = api_client_for(user=world_a.member(Role.MARKETING))
    rows = [*ROWS_JA, ["両輪", "鈴木 一郎", "", "broken@", "", "", "", ""]]
    response = client.post(
        url(world_a), {"file": csv_upload(csv_bytes(HEADER_JA, rows, encoding="cp932"))},
        format="multipart",
    )  # fmt: skip
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["file_format"] == "csv"
    assert body["encoding"] == "cp932 (Shift_JIS)"
    assert body["header"] == HEADER_JA
    assert body["mapping"]["メールアドレス"] == "lead.email"
    job_id = body["id"]

    # Map the phone column away and choose the policy.
    mapping = {**body["mapping"], "電話番号": ""}
    response = client.patch(
        url(world_a, "import-detail", pk=job_id), {"mapping": mapping, "policy": "overwrite"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["policy"] == "overwrite"

    preview = client.get(url(world_a, "import-preview", pk=job_id), {"rows": 5}).json()
    assert [row["row_number"] for row in preview["rows"]] == [2, 3, 4]
    assert preview["rows"][0]["values"]["email"] == "taro@ryorin.co.jp"
    assert "phone" not in preview["rows"][0]["values"]
    assert preview["rows"][2]["values"] is None
    assert preview["rows"][2]["problems"][0]["column"] == "メールアドレス"
    assert "lead.email" in preview["targets"]

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url(world_a, "import-run", pk=job_id), {"dry_run": False})
    assert response.status_code == 202, response.content
    status = client.get(url(world_a, "import-status", pk=job_id)).json()
    assert status == {"status": "succeeded", "phase": "", "processed_rows": 3, "total_rows": 3}
    detail = client.get(url(world_a, "import-detail", pk=job_id)).json()
    assert (detail["created_count"], detail["error_count"]) == (2, 1)

    response = client.get(url(world_a, "import-errors-csv", pk=job_id))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = response.content.decode("utf-8-sig")
    lines = text.strip().splitlines()
    assert lines[0] == "row,column,value,reason"
    assert lines[1].startswith("4,メールアドレス,broken@,")
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.count() == 2
        assert Lead.objects.get(email="taro@ryorin.co.jp").phone == ""

    # A finished import cannot run again.
    error = assert_error(client.post(url(world_a, "import-run", pk=job_id), {}), 400, "invalid")
    assert "status" in error["fields"]


def test_bad_uploads_and_bad_mappings_name_the_field(world_a):
    client = api_client_for(user=world_a.owner)
    error = assert_error(client.post(url(world_a), {}, format="multipart"), 400, "invalid")
    assert "file" in error["fields"]
    xls = csv_upload(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "old.xls")
    error = assert_error(client.post(url(world_a), {"file": xls}, format="multipart"), 400)
    assert ".xls" in error["fields"]["file"][0]
    response = client.post(
        url(world_a), {"file": csv_upload(b"email\r\na@b.jp\r\n")}, format="multipart"
    )
    job_id = response.json()["id"]
    detail = url(world_a, "import-detail", pk=job_id)
    error = assert_error(client.patch(detail, {"mapping": {"nope": "lead.email"}}), 400)
    assert "nope" in error["fields"]["mapping"][0]
    error = assert_error(client.patch(detail, {"mapping": {"email": "lead.shoe_size"}}), 400)
    assert "lead.shoe_size" in error["fields"]["mapping"][0]
    error = assert_error(client.patch(detail, {"consent_purposes": ["sales_contact"]}), 400)
    assert "consent_basis" in error["fields"]
    error = assert_error(client.patch(detail, {"campaign": 999999}), 400)
    assert "campaign" in error["fields"]


def test_upload_size_limit(world_a, monkeypatch):
    from leads.imports import services

    monkeypatch.setattr(services, "MAX_UPLOAD_BYTES", 10)
    client = api_client_for(user=world_a.owner)
    response = client.post(
        url(world_a), {"file": csv_upload(b"email\r\nlong@example.com\r\n")}, format="multipart"
    )
    assert "larger than" in assert_error(response, 400)["fields"]["file"][0]


@pytest.mark.parametrize("role", [Role.INSIDE_SALES, Role.FIELD_SALES, Role.READ_ONLY])
def test_only_marketing_admin_and_owner_import(world_a, role):
    client = api_client_for(user=world_a.member(role))
    assert client.get(url(world_a)).status_code == 403
    response = client.post(
        url(world_a), {"file": csv_upload(b"email\r\na@b.jp\r\n")}, format="multipart"
    )
    assert response.status_code == 403


def test_another_tenants_job_is_404(world_a, world_b):
    owner_a = api_client_for(user=world_a.owner)
    job_id = owner_a.post(
        url(world_a), {"file": csv_upload(b"email\r\na@b.jp\r\n")}, format="multipart"
    ).json()["id"]
    owner_b = api_client_for(user=world_b.owner)
    for name in ("import-detail", "import-preview", "import-status", "import-errors-csv"):
        assert owner_b.get(url(world_b, name, pk=job_id)).status_code == 404
    assert owner_b.post(url(world_b, "import-run", pk=job_id), {}).status_code == 404
    assert owner_b.patch(url(world_b, "import-detail", pk=job_id), {}).status_code == 404
    with tenant_scope(world_a.tenant.id):
        assert ImportJob.objects.get(pk=job_id).status == ImportJob.Status.UPLOADED
