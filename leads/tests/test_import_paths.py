"""The import's two apply paths follow the same rules: the set-based PostgreSQL one and
the ORM one that SQLite (the `./ryorin start` default) uses. Both run here on the same
file, in two tenants, and must leave the same leads, companies, memberships, activities
and consent; and the import tests run whole on SQLite in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from accounts.services import SYSTEM
from accounts.tenancy import tenant_scope
from campaigns.models import CampaignMembership
from campaigns.tests.factories import CampaignFactory
from leads.imports import engine, services
from leads.models import Activity, Company, ConsentEvent, ImportJob, Lead, LifecycleTransition
from leads.tests.factories import CompanyFactory, LeadFactory, SuppressionFactory
from leads.tests.files import csv_bytes

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]

HEADER = ["会社名", "法人番号", "氏名", "フリガナ", "メールアドレス", "電話番号", "都道府県",
          "役職", "来場日", "タグ"]  # fmt: skip
ROWS = [
    ["株式会社両輪商事", "7000012050002", "山田 太郎", "やまだ たろう", "taro@ryorin.co.jp",
     "03-1234-5678", "東京都", "部長", "2025/06/25", "展示会,VIP"],
    ["両輪商事", "", "佐藤 花子", "", "hanako@ryorin.co.jp", "", "大阪府", "", "2025/06/26", ""],
    ["既存会社", "", "既存 一郎", "", "KNOWN@example.jp", "0311112222", "", "課長",
     "2025/06/25", "展示会"],
    ["", "", "個人 二郎", "", "jiro@gmail.com", "", "", "", "", ""],
    ["新会社合同会社", "", "新 三郎", "", "saburo@newco.jp", "", "北海道", "", "", ""],
    ["新会社", "", "", "", "shiro@newco.jp", "", "", "担当", "", ""],
    ["悪い行", "123", "悪 太郎", "", "bad@", "", "", "", "", ""],
    ["", "", "", "", "out@example.jp", "", "", "", "", ""],
    ["", "", "", "", "hanako@ryorin.co.jp", "06-0000-0000", "", "主任", "", ""],
]  # fmt: skip


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def seed(world) -> int:
    LeadFactory(tenant=world.tenant, email="known@example.jp", job_title="", phone="",
                family_name="既存", given_name="一郎", email_consent="unknown")  # fmt: skip
    LeadFactory(tenant=world.tenant, email="out@example.jp", email_consent="withdrawn",
                family_name="退会", given_name="")  # fmt: skip
    CompanyFactory(tenant=world.tenant, name="既存会社", corporate_number="", domain="",
                   prefecture="")  # fmt: skip
    SuppressionFactory(tenant=world.tenant, email="jiro@gmail.com")
    return CampaignFactory(tenant=world.tenant, channel="trade_show").id


def import_file(world, campaign_id: int, policy: str, capture) -> ImportJob:
    job = services.import_create(
        tenant_id=world.tenant.id,
        file=SimpleUploadedFile("list.csv", csv_bytes(HEADER, ROWS, encoding="cp932")),
        origin=SYSTEM,
    )
    job = services.import_configure(
        job=job,
        origin=SYSTEM,
        policy=policy,
        campaign_id=campaign_id,
        consent_basis="名刺交換時に同意",
        consent_purposes=["email_marketing", "sales_contact"],
    )
    with capture(execute=True):
        services.import_start(job=job, origin=SYSTEM)
    with tenant_scope(world.tenant.id):
        return ImportJob.objects.get(pk=job.pk)


def outcome(world, job: ImportJob) -> dict:
    with tenant_scope(world.tenant.id):
        leads = {
            lead.email: (
                lead.family_name, lead.given_name, lead.family_name_kana, lead.phone,
                lead.job_title, lead.lifecycle_stage, lead.source_channel,
                lead.source_campaign_id is not None, lead.email_consent,
                lead.sales_contact_consent, sorted(lead.tags.values_list("name", flat=True)),
                lead.company and (lead.company.name, lead.company.corporate_number,
                                  lead.company.domain, lead.company.prefecture),
            )
            for lead in Lead.objects.select_related("company")
        }  # fmt: skip
        return {
            "leads": leads,
            "companies": sorted(Company.objects.values_list("name", "name_key", "domain")),
            "members": sorted(
                CampaignMembership.objects.values_list("lead__email", "status")
            ),
            "activities": sorted(
                (email, kind, when.date() if when.year == 2025 else "the import's time")
                for email, kind, when in Activity.objects.values_list(
                    "lead__email", "type", "occurred_at"
                )
            ),
            "consent": sorted(
                ConsentEvent.objects.values_list("lead__email", "purpose", "status", "basis")
            ),
            "transitions": sorted(
                LifecycleTransition.objects.values_list("lead__email", "from_stage", "to_stage")
            ),
            "counts": (job.status, job.created_count, job.updated_count, job.skipped_count,
                       job.error_count),
        }  # fmt: skip


@pytest.mark.parametrize("policy", ["skip", "fill_empty", "overwrite"])
def test_the_orm_path_imports_what_the_postgresql_path_imports(
    world_a, world_b, django_capture_on_commit_callbacks, monkeypatch, policy
):
    if connection.vendor != "postgresql":
        pytest.skip("compares with the PostgreSQL path")
    campaign_a, campaign_b = seed(world_a), seed(world_b)
    job_a = import_file(world_a, campaign_a, policy, django_capture_on_commit_callbacks)
    assert job_a.status == "succeeded", job_a.failure
    assert job_a.summary["steps"]["insert_leads"] >= 0  # the PostgreSQL path ran

    def orm_apply(job, prepared, cleaner, steps=None):
        return engine.OrmApply(job, prepared, steps or engine.Steps()).run()

    monkeypatch.setattr(engine, "apply", orm_apply)
    job_b = import_file(world_b, campaign_b, policy, django_capture_on_commit_callbacks)
    assert "leads" in job_b.summary["steps"]  # the ORM path ran
    expected, got = outcome(world_a, job_a), outcome(world_b, job_b)
    assert expected["counts"][0] == "succeeded"
    for key in expected:
        assert got[key] == expected[key], key
    # What the rules say, so a shared mistake cannot pass either.
    leads = got["leads"]
    assert "bad@" not in leads
    assert job_b.error_count == 1
    assert leads["taro@ryorin.co.jp"][2] == "ヤマダ"  # kana in katakana
    assert leads["jiro@gmail.com"][8] == "unknown"  # suppressed: no marketing mail
    assert leads["jiro@gmail.com"][9] == "granted"
    assert leads["out@example.jp"][8] == "withdrawn"  # an opt-out stays
    assert leads["saburo@newco.jp"][11] == leads["shiro@newco.jp"][11]  # one new company
    assert leads["hanako@ryorin.co.jp"][4] == "主任"  # the repeated row fills the gap


def test_imports_run_on_sqlite(tmp_path):
    """The import, bulk-upsert and activity-ingest tests, whole, on a SQLite database
    (the default of `./ryorin start`): DATABASE_URL empty selects SQLite."""
    if os.environ.get("RYORIN_SQLITE_RUN"):
        pytest.skip("already the SQLite run")
    # CI=false: this run is on SQLite on purpose, so the "CI needs PostgreSQL" guard
    # (tests/fixtures.py) must not stop it.
    env = {**os.environ, "DATABASE_URL": "", "RYORIN_SQLITE_RUN": "1", "CI": "false"}
    env["SQLITE_PATH"] = str(tmp_path / "ryorin.sqlite3")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "leads/tests/test_import_engine.py", "leads/tests/test_lead_bulk.py",
         "leads/tests/test_services_activities.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert " passed" in output, output[-3000:]
    assert " failed" not in output, output[-3000:]
