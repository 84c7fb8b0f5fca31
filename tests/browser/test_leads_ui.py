"""Lead generation in a real browser: build a form, submit it as a visitor, find the lead
and its form submission; import a CSV through the wizard and see the result. Leaves
screenshots of the leads list and a lead page in /tmp for people to look at."""

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from accounts.models import Role
from campaigns.tests.factories import CampaignFactory
from leads.models import ActivityType, ConsentStatus
from leads.tests.factories import (
    ActivityFactory,
    CompanyFactory,
    LeadFactory,
    LeadTagFactory,
    TagFactory,
)
from leads.tests.files import HEADER_JA, ROWS_JA, csv_bytes
from tests.fixtures import make_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"
LIST_SCREENSHOT = "/tmp/ui-leads.png"  # noqa: S108 (a fixed path people look at)
LEAD_SCREENSHOT = "/tmp/ui-lead.png"  # noqa: S108
BUILDER_SCREENSHOT = "/tmp/ui-form-builder.png"  # noqa: S108


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def log_in(page: Page, email: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("メールアドレス").fill(email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    expect(page).to_have_url(re.compile(r"/t/acme/$"))


def test_build_a_form_submit_it_as_a_visitor_and_find_the_lead(
    page: Page, browser: Browser, live_server
):
    world = make_world(name="Acme 株式会社", slug="acme")
    campaign = CampaignFactory(tenant=world.tenant, name="ホワイトペーパー 2025")
    marketer = world.member(Role.MARKETING)
    log_in(page, marketer.email)

    # Build: create a form, tie it to the campaign, add a consent box; the preview follows.
    page.get_by_role("link", name="リード", exact=True).click()
    page.get_by_role("link", name="フォーム").click()
    page.get_by_label("フォーム名").fill("資料請求フォーム")
    page.get_by_role("button", name="フォームを作成").click()
    expect(page.get_by_role("heading", name="資料請求フォーム", level=1)).to_be_visible()
    page.get_by_label("キャンペーン").select_option(label=campaign.name)
    page.get_by_label("同意チェックボックスの文言").fill("製品情報のメールを受け取ります")
    preview = page.get_by_test_id("form-preview")
    expect(preview).to_contain_text("製品情報のメールを受け取ります")
    page.get_by_test_id("save-form").click()
    expect(page.locator(".message-success")).to_be_visible()
    page.screenshot(path=BUILDER_SCREENSHOT, full_page=True)
    public_path = urlsplit(page.get_by_test_id("public-url").inner_text()).path

    # A visitor (no session) fills in the hosted form.
    visitor = browser.new_context(base_url=live_server.url, locale="ja-JP")
    form_page = visitor.new_page()
    form_page.goto(public_path + "?utm_source=newsletter&utm_campaign=wp2025")
    form = form_page.get_by_test_id("capture-form")
    form.locator("input[name=company]").fill("株式会社両輪商事")
    form.locator("input[name=family_name]").fill("山田")
    form.locator("input[name=given_name]").fill("花子")
    form.get_by_label("メールアドレス").fill("hanako@ryorin-shoji.co.jp")
    form.get_by_label("製品情報のメールを受け取ります").check()
    form.get_by_role("button", name="送信").click()
    expect(form_page.get_by_test_id("thank-you")).to_be_visible()
    visitor.close()

    # Staff see the lead in the list and its submission on the lead page.
    page.get_by_role("link", name="リード", exact=True).click()
    table = page.get_by_test_id("leads")
    expect(table).to_contain_text("山田 花子")
    expect(table).to_contain_text("株式会社両輪商事")
    table.get_by_role("link", name="山田 花子").click()
    timeline = page.get_by_test_id("timeline")
    submission = timeline.locator("[data-kind=activity].tl-form_submission")
    expect(submission).to_contain_text("資料請求フォーム")
    expect(submission).to_contain_text("utm_campaign")
    expect(timeline).to_contain_text("ホワイトペーパー 2025")
    expect(page.get_by_test_id("consent")).to_contain_text("同意")


def test_import_a_csv_through_the_wizard(page: Page):
    world = make_world(name="Acme 株式会社", slug="acme")
    log_in(page, world.owner.email)
    page.goto("/t/acme/leads/imports/")
    rows = [*ROWS_JA, ["両輪", "鈴木 一郎", "", "broken@", "", "", "", ""]]
    page.get_by_label("ファイル").set_input_files(
        {"name": "展示会.csv", "mimeType": "text/csv",
         "buffer": csv_bytes(HEADER_JA, rows, encoding="cp932")}
    )  # fmt: skip
    page.get_by_role("button", name="アップロード").click()

    # Mapping: suggestions are selected; go on to the preview.
    expect(page.get_by_label("メールアドレス")).to_have_value("lead.email")
    page.get_by_role("button", name="プレビュー").click()
    preview = page.get_by_test_id("import-preview")
    expect(preview.locator(".cell-bad")).to_contain_text("broken@")
    page.get_by_role("link", name="次へ進む").click()
    page.get_by_role("button", name="インポートを開始").click()

    # The result (the progress bar polls until the job is done).
    expect(page.get_by_test_id("import-result")).to_have_text("インポートが完了しました")
    expect(page.get_by_test_id("count-created")).to_have_text("2")
    expect(page.get_by_test_id("count-errors")).to_have_text("1")
    expect(page.get_by_test_id("error-report")).to_be_visible()
    page.get_by_test_id("see-leads").click()
    table = page.get_by_test_id("leads")
    expect(table).to_contain_text("山田 太郎")
    expect(table).to_contain_text("佐藤 花子")


def test_leads_list_and_lead_page_screenshots(page: Page):
    world = make_world(name="Acme 株式会社", slug="acme")
    seller = world.member(Role.INSIDE_SALES, user__full_name="高橋 誠")
    campaign = CampaignFactory(tenant=world.tenant, name="Japan IT Week 春")
    tag = TagFactory(tenant=world.tenant, name="展示会")
    people = [
        ("株式会社両輪商事", "山田", "太郎", "ヤマダ", "タロウ", "mql", "営業部", "部長"),
        ("テスト工業株式会社", "佐藤", "花子", "サトウ", "ハナコ", "lead", "総務部", "課長"),
        ("株式会社サンプル", "鈴木", "一郎", "スズキ", "イチロウ", "sql", "情報システム部", ""),
        ("合同会社ミライ", "田中", "美咲", "タナカ", "ミサキ", "subscriber", "", "代表"),
    ]
    leads = []
    for company, family, given, fk, gk, stage, dept, title in people:
        lead = LeadFactory(
            tenant=world.tenant, company=CompanyFactory(tenant=world.tenant, name=company),
            family_name=family, given_name=given, family_name_kana=fk, given_name_kana=gk,
            lifecycle_stage=stage, department=dept, job_title=title, source_campaign=campaign,
            owner=seller if stage in ("mql", "sql") else None,
            email_consent=ConsentStatus.GRANTED if stage != "lead" else ConsentStatus.UNKNOWN,
        )  # fmt: skip
        LeadTagFactory(tenant=world.tenant, lead=lead, tag=tag)
        leads.append(lead)
    lead = leads[0]
    ActivityFactory(
        tenant=world.tenant, lead=lead, type=ActivityType.FORM_SUBMISSION, campaign=campaign,
        properties={"form_name": "資料請求フォーム", "url": "https://ryorin.example/whitepaper",
                    "utm_source": "newsletter"},
    )  # fmt: skip
    ActivityFactory(tenant=world.tenant, lead=lead, type=ActivityType.PAGE_VIEW)

    log_in(page, world.owner.email)
    page.goto("/t/acme/leads/")
    expect(page.get_by_test_id("leads")).to_contain_text("山田 太郎")
    # Filter by stage with htmx: the table changes, the URL follows.
    page.get_by_text("絞り込み").click()
    page.get_by_label("ステージ").select_option("mql")
    expect(page.get_by_test_id("leads")).not_to_contain_text("佐藤 花子")
    expect(page).to_have_url(re.compile(r"stage=mql"))
    page.goto("/t/acme/leads/")
    page.screenshot(path=LIST_SCREENSHOT, full_page=True)

    page.get_by_role("link", name="山田 太郎").click()
    page.get_by_label("メモ").fill("来週デモの日程を調整。")
    page.get_by_role("button", name="タイムラインに追加").click()
    expect(page.get_by_test_id("timeline")).to_contain_text("来週デモの日程を調整。")
    page.get_by_test_id("stage-form").get_by_label("新しいステージ").select_option("sal")
    page.get_by_test_id("stage-form").get_by_label("理由").fill("電話でニーズを確認")
    page.get_by_role("button", name="ステージを変更").click()
    expect(page.get_by_test_id("lead-stage")).to_have_text("SAL")
    expect(page.get_by_test_id("consent")).to_contain_text("同意")
    page.screenshot(path=LEAD_SCREENSHOT, full_page=True)
