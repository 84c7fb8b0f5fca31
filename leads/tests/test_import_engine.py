"""The import job end to end on PostgreSQL: real files in, leads, companies, campaign
membership, activities and consent out; bad rows reported; failures leave nothing."""

import datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import translation

from accounts.services import SYSTEM
from accounts.tenancy import tenant_scope
from campaigns.models import CampaignMembership
from campaigns.tests.factories import CampaignFactory
from leads.imports import engine, services
from leads.models import (
    Activity,
    ActivityType,
    Company,
    ConsentEvent,
    ConsentStatus,
    ImportJob,
    ImportRowError,
    Lead,
    LifecycleTransition,
)
from leads.tests.factories import CompanyFactory, LeadFactory, SuppressionFactory
from leads.tests.files import HEADER_JA, ROWS_JA, VISIT_DAY, csv_bytes, xlsx_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _messages_in_english():
    """The assertions read the English messages (the app's default language is Japanese)."""
    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def upload(world, data: bytes, name: str = "list.csv", **config) -> ImportJob:
    job = services.import_create(
        tenant_id=world.tenant.id, file=SimpleUploadedFile(name, data), origin=SYSTEM
    )
    if config:
        job = services.import_configure(job=job, origin=SYSTEM, **config)
    return job


def run(job: ImportJob, capture, dry_run: bool = False) -> ImportJob:
    with capture(execute=True):
        services.import_start(job=job, origin=SYSTEM, dry_run=dry_run)
    with tenant_scope(job.tenant_id):
        return ImportJob.objects.get(pk=job.pk)


def leads_of(world) -> dict[str, Lead]:
    with tenant_scope(world.tenant.id):
        return {lead.email: lead for lead in Lead.objects.select_related("company")}


def test_excel_japan_trade_show_list_imports_everything(
    world_a, django_capture_on_commit_callbacks
):
    campaign = CampaignFactory(tenant=world_a.tenant, channel="trade_show")
    data = csv_bytes(HEADER_JA, ROWS_JA, encoding="cp932")
    job = upload(
        world_a,
        data,
        "来場者リスト.csv",
        campaign_id=campaign.id,
        consent_basis="名刺交換時に案内送付の同意を口頭で確認",
        consent_purposes=["sales_contact"],
    )
    assert job.encoding == "cp932 (Shift_JIS)"
    assert job.mapping["メールアドレス"] == "lead.email"
    job = run(job, django_capture_on_commit_callbacks)
    assert job.status == ImportJob.Status.SUCCEEDED, job.failure
    assert (job.total_rows, job.created_count, job.error_count) == (2, 2, 0)
    leads = leads_of(world_a)
    taro, hanako = leads["taro@ryorin.co.jp"], leads["hanako@test-kogyo.jp"]
    assert (taro.family_name, taro.given_name, taro.given_name_kana) == ("山田", "太郎", "タロウ")
    assert taro.phone == "+81312345678"
    assert hanako.phone == "+819012345678"  # full-width digits
    assert hanako.department == "総務部 人事課"  # the quoted line break, folded
    assert taro.company.corporate_number == "7000012050002"
    assert taro.company.domain == "ryorin.co.jp"
    assert hanako.company.name == "(株)テスト工業"  # width-folded
    assert hanako.company.name_key == "テスト工業"
    assert taro.source_campaign_id == campaign.id
    assert taro.source_channel == "import"
    assert taro.sales_contact_consent == ConsentStatus.GRANTED
    assert taro.email_consent == ConsentStatus.UNKNOWN
    with tenant_scope(world_a.tenant.id):
        members = set(
            CampaignMembership.objects.filter(campaign=campaign).values_list("lead_id", flat=True)
        )
        activities = list(Activity.objects.filter(lead=taro))
        consent = ConsentEvent.objects.get(lead=taro)
        transitions = LifecycleTransition.objects.filter(lead__in=[taro, hanako]).count()
    assert members == {taro.id, hanako.id}
    assert [a.type for a in activities] == [ActivityType.TRADE_SHOW_VISIT]
    assert activities[0].campaign_id == campaign.id
    assert activities[0].properties["row"] == 2
    assert (consent.channel, consent.basis) == ("import", "名刺交換時に案内送付の同意を口頭で確認")
    assert consent.proof["import_id"] == job.id
    assert transitions == 2
    assert job.summary["companies_created"] == 2
    assert job.summary["memberships"] == 2


def test_bad_rows_are_reported_by_spreadsheet_row_and_good_rows_still_import(
    world_a, django_capture_on_commit_callbacks
):
    rows = [
        ["両輪", "good1@ryorin.co.jp", "03-1111-2222", ""],
        ["両輪", "not-an-email", "", ""],
        ["両輪", "good2@ryorin.co.jp", "", "5.83568E+12"],
        ["", "", "", ""],  # an empty line: skipped, but it still counts as a row number
        ["両輪", "good3@ryorin.co.jp", "abc", ""],
        ["両輪", "good4@ryorin.co.jp", "", ""],
    ]
    job = upload(world_a, csv_bytes(["会社名", "email", "TEL", "法人番号"], rows))
    job = run(job, django_capture_on_commit_callbacks)
    assert job.status == ImportJob.Status.SUCCEEDED
    assert sorted(leads_of(world_a)) == ["good1@ryorin.co.jp", "good4@ryorin.co.jp"]
    with tenant_scope(world_a.tenant.id):
        errors = list(
            ImportRowError.objects.filter(job=job).values_list("row_number", "column", "value")
        )
    assert errors == [
        (3, "email", "not-an-email"),
        (4, "法人番号", "5.83568E+12"),
        (6, "TEL", "abc"),
    ]
    assert (job.created_count, job.error_count, job.total_rows) == (2, 3, 5)
    report = list(services.import_error_rows(job=job))
    assert report[0] == ["row", "column", "value", "reason"]
    assert "cannot be recovered" in report[2][3]


@pytest.mark.parametrize(
    ("policy", "expected_title", "expected_phone", "counts"),
    [
        ("skip", "", "+81300000000", (0, 0, 1)),
        ("fill_empty", "部長", "+81300000000", (0, 1, 0)),
        ("overwrite", "部長", "+81311112222", (0, 1, 0)),
    ],
)
def test_dedupe_policies_by_normalised_email(
    world_a, django_capture_on_commit_callbacks, policy, expected_title, expected_phone, counts
):
    existing = LeadFactory(
        tenant=world_a.tenant, email="taro@ryorin.co.jp", job_title="", phone="+81300000000"
    )
    data = csv_bytes(["Email", "Title", "Phone"], [["TARO@Ryorin.co.jp", "部長", "0311112222"]])
    job = run(upload(world_a, data, policy=policy), django_capture_on_commit_callbacks)
    assert (job.created_count, job.updated_count, job.skipped_count) == counts
    with tenant_scope(world_a.tenant.id):
        existing.refresh_from_db()
        assert Lead.objects.count() == 1
    assert existing.job_title == expected_title
    assert existing.phone == expected_phone


def test_the_same_email_twice_in_a_file_is_one_lead_with_both_rows_details(
    world_a, django_capture_on_commit_callbacks
):
    rows = [["a@ryorin.co.jp", "山田", ""], ["A@RYORIN.CO.JP", "", "部長"]]
    job = run(
        upload(world_a, csv_bytes(["email", "姓", "役職"], rows)),
        django_capture_on_commit_callbacks,
    )
    lead = leads_of(world_a)["a@ryorin.co.jp"]
    assert (lead.family_name, lead.job_title) == ("山田", "部長")
    assert job.summary["merged_duplicates"] == 1


def test_company_matching_order_and_free_mail(world_a, django_capture_on_commit_callbacks):
    by_number = CompanyFactory(
        tenant=world_a.tenant, name="旧社名", corporate_number="7000012050002", domain="x.jp"
    )
    by_domain = CompanyFactory(tenant=world_a.tenant, name="ドメイン社", domain="domain.co.jp")
    by_name = CompanyFactory(tenant=world_a.tenant, name="株式会社名前一致", domain="")
    rows = [
        ["全然違う名前", "a@other.co.jp", "7000012050002"],
        ["Some Name", "b@domain.co.jp", ""],
        ["(株)名前一致", "c@gmail.com", ""],  # free mail: the name decides
        ["", "d@gmail.com", ""],  # free mail, no name: no company
        ["新会社", "e@new.co.jp", ""],
        ["新会社 株式会社", "f@new.co.jp", ""],  # the row above just created it
    ]
    job = run(
        upload(world_a, csv_bytes(["会社名", "email", "法人番号"], rows)),
        django_capture_on_commit_callbacks,
    )
    leads = leads_of(world_a)
    assert leads["a@other.co.jp"].company_id == by_number.id
    assert leads["b@domain.co.jp"].company_id == by_domain.id
    assert leads["c@gmail.com"].company_id == by_name.id
    assert leads["d@gmail.com"].company_id is None
    assert leads["e@new.co.jp"].company_id == leads["f@new.co.jp"].company_id
    assert leads["e@new.co.jp"].company.domain == "new.co.jp"
    assert job.summary["companies_created"] == 1
    with tenant_scope(world_a.tenant.id):
        assert Company.objects.count() == 4


def test_a_failure_while_applying_leaves_nothing(
    world_a, django_capture_on_commit_callbacks, monkeypatch
):
    campaign = CampaignFactory(tenant=world_a.tenant)

    def explode(self, *args):
        raise RuntimeError("disk full")

    # Everything before activities (companies, leads, memberships) has been written.
    monkeypatch.setattr(engine.PostgresApply, "activities", explode)
    monkeypatch.setattr(engine.OrmApply, "activities", explode)
    data = csv_bytes(HEADER_JA, ROWS_JA)
    job = run(
        upload(world_a, data, campaign_id=campaign.id, consent_basis="x",
               consent_purposes=["sales_contact"]),
        django_capture_on_commit_callbacks,
    )  # fmt: skip
    assert job.status == ImportJob.Status.FAILED
    assert "disk full" in job.failure
    with tenant_scope(world_a.tenant.id):
        assert not Lead.objects.exists()
        assert not Company.objects.exists()
        assert not CampaignMembership.objects.exists()
        assert not LifecycleTransition.objects.exists()
        assert not ConsentEvent.objects.exists()
    # Fixed, it runs again from the file.
    monkeypatch.undo()
    job = run(job, django_capture_on_commit_callbacks)
    assert job.status == ImportJob.Status.SUCCEEDED
    assert len(leads_of(world_a)) == 2


def test_dry_run_counts_and_writes_nothing(world_a, django_capture_on_commit_callbacks):
    LeadFactory(tenant=world_a.tenant, email="taro@ryorin.co.jp", job_title="")
    data = csv_bytes(HEADER_JA, [*ROWS_JA, ["x", "y", "", "bad@", "", "", "", ""]])
    job = run(upload(world_a, data), django_capture_on_commit_callbacks, dry_run=True)
    assert job.status == ImportJob.Status.SUCCEEDED
    assert job.dry_run
    assert (job.created_count, job.updated_count, job.error_count) == (1, 1, 1)
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.count() == 1
        assert not Company.objects.exists()
        assert not Activity.objects.exists()
        assert Lead.objects.get().job_title == ""
    # The real run may follow the dry run.
    job = run(job, django_capture_on_commit_callbacks)
    assert (job.dry_run, job.created_count, job.updated_count) == (False, 1, 1)
    assert len(leads_of(world_a)) == 2


def test_progress_is_published_while_the_job_runs(
    world_a, django_capture_on_commit_callbacks, monkeypatch
):
    seen = []
    original = engine.progress_set

    def record(job_id, phase, processed, total):
        seen.append((phase, processed, total))
        original(job_id, phase, processed, total)

    monkeypatch.setattr(engine, "progress_set", record)
    monkeypatch.setattr(engine, "PROGRESS_EVERY", 2)
    rows = [[f"p{n}@ryorin.co.jp"] for n in range(5)]
    job = run(upload(world_a, csv_bytes(["email"], rows)), django_capture_on_commit_callbacks)
    assert ("validating", 2, 5) in seen
    assert ("validating", 4, 5) in seen
    assert seen[-1] == ("done", 5, 5)
    assert services.import_status(job=job) == {
        "status": "succeeded",
        "phase": "",
        "processed_rows": 5,
        "total_rows": 5,
    }


def test_xlsx_serial_dates_become_the_activity_time(world_a, django_capture_on_commit_callbacks):
    data = xlsx_bytes(
        {
            "Sheet1": [],
            "来場者": [
                ["メールアドレス", "氏名", "来場日", "電話番号"],
                ["v@ryorin.co.jp", "来場 一郎", VISIT_DAY, 312345678],
                ["w@ryorin.co.jp", "来場 二郎", 45414, None],
            ],
        }
    )
    job = run(upload(world_a, data, "booth.xlsx"), django_capture_on_commit_callbacks)
    assert job.status == ImportJob.Status.SUCCEEDED, job.failure
    assert job.sheet == "来場者"
    leads = leads_of(world_a)
    assert leads["v@ryorin.co.jp"].phone == "+81312345678"
    with tenant_scope(world_a.tenant.id):
        times = dict(Activity.objects.values_list("lead__email", "occurred_at"))
    tokyo = datetime.timezone(datetime.timedelta(hours=9))
    assert times["v@ryorin.co.jp"] == datetime.datetime(2024, 5, 1, tzinfo=tokyo)
    assert times["w@ryorin.co.jp"] == datetime.datetime(2024, 5, 2, tzinfo=tokyo)


def test_consent_never_overrides_a_withdrawal_or_the_suppression_list(
    world_a, django_capture_on_commit_callbacks
):
    LeadFactory(
        tenant=world_a.tenant, email="out@ryorin.co.jp", email_consent=ConsentStatus.WITHDRAWN
    )
    SuppressionFactory(tenant=world_a.tenant, email="bounced@ryorin.co.jp")
    rows = [["out@ryorin.co.jp"], ["bounced@ryorin.co.jp"], ["ok@ryorin.co.jp"]]
    run(
        upload(world_a, csv_bytes(["email"], rows), consent_basis="opt-in form at booth",
               consent_purposes=["email_marketing"]),
        django_capture_on_commit_callbacks,
    )  # fmt: skip
    leads = leads_of(world_a)
    assert leads["out@ryorin.co.jp"].email_consent == ConsentStatus.WITHDRAWN
    assert leads["bounced@ryorin.co.jp"].email_consent == ConsentStatus.UNKNOWN
    assert leads["ok@ryorin.co.jp"].email_consent == ConsentStatus.GRANTED
    with tenant_scope(world_a.tenant.id):
        assert list(ConsentEvent.objects.values_list("lead__email", flat=True)) == [
            "ok@ryorin.co.jp"
        ]


def test_the_job_runs_as_the_app_role_and_sees_only_its_tenant(
    world_a, world_b, django_capture_on_commit_callbacks
):
    # Another tenant's lead with the same email and company: neither is touched or matched.
    if connection.vendor != "postgresql":
        pytest.skip("database roles and row-level security are PostgreSQL's")
    other = LeadFactory(tenant=world_b.tenant, email="taro@ryorin.co.jp", job_title="")
    CompanyFactory(tenant=world_b.tenant, name="両輪商事", corporate_number="7000012050002")
    job = upload(world_a, csv_bytes(HEADER_JA, ROWS_JA[:1]))
    with tenant_scope(world_a.tenant.id), connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == "ryorin_app"
    job = run(job, django_capture_on_commit_callbacks)
    assert job.created_count == 1
    with tenant_scope(world_b.tenant.id):
        other.refresh_from_db()
        assert other.job_title == ""
        assert Company.objects.count() == 1
    assert leads_of(world_a)["taro@ryorin.co.jp"].company.tenant_id == world_a.tenant.id
