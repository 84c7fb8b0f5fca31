"""The company list in a real browser: reached from the side navigation, searched,
filtered and re-sorted with htmx (the URL follows), paged, and each row opening its
company page. Leaves a screenshot in /tmp."""

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.models import Role
from leads.tests.factories import CompanyFactory, LeadFactory
from tests.fixtures import make_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"
SCREENSHOT = "/tmp/ui-companies.png"  # noqa: S108 (a fixed path people look at)


def test_search_filter_sort_and_open_a_company(page: Page, monkeypatch):
    from leads.views import companies

    monkeypatch.setattr(companies, "PAGE_SIZE", 3)  # the live server runs in this process
    monkeypatch.setattr(companies._CompanyPager, "page_size", 3)
    world = make_world(name="Acme 株式会社", slug="acme")
    reader = world.member(Role.READ_ONLY)
    rows = [
        ("株式会社両輪商事", "ryorin-shoji.co.jp", "製造業", "13", 3),
        ("両輪テック合同会社", "ryorin-tech.jp", "情報通信業", "27", 1),
        ("東京物流株式会社", "tokyo-butsuryu.co.jp", "運輸業・郵便業", "13", 5),
        ("大阪精機株式会社", "osaka-seiki.co.jp", "製造業", "27", 0),
        ("株式会社ひかりデザイン", "hikari-design.jp", "学術研究・専門・技術サービス業", "13", 2),
    ]
    for name, domain, industry, prefecture, n in rows:
        company = CompanyFactory(
            tenant=world.tenant, name=name, domain=domain, industry=industry,
            prefecture=prefecture,
        )  # fmt: skip
        for _ in range(n):
            LeadFactory(tenant=world.tenant, company=company)

    page.goto("/accounts/login/")
    page.get_by_label("メールアドレス").fill(reader.email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    expect(page).to_have_url(re.compile(r"/t/acme/$"))

    page.get_by_role("navigation", name="メインナビゲーション").get_by_role(
        "link", name="会社", exact=True
    ).click()
    table = page.get_by_test_id("companies")
    # By name (legal forms aside), three to a page here.
    expect(table.locator("tbody tr")).to_have_count(3)
    page.get_by_role("link", name="次へ").click()
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(page).to_have_url(re.compile(r"cursor="))

    # Search: htmx swaps the results in, the URL follows.
    page.get_by_label("検索").fill("両輪")
    page.get_by_label("検索").press("Enter")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text("両輪テック合同会社")
    expect(page).to_have_url(re.compile(r"q=%E4%B8%A1%E8%BC%AA"))
    page.get_by_label("検索").fill("")
    page.get_by_label("検索").press("Enter")
    expect(table.locator("tbody tr")).to_have_count(3)
    page.get_by_label("都道府県").select_option("13")
    page.get_by_label("並び順").select_option("leads")
    expect(page).to_have_url(re.compile(r"sort=leads"))
    expect(table.locator("tbody tr").first).to_contain_text("東京物流株式会社")
    expect(table.locator("tbody tr td[data-testid=lead-count]")).to_have_text(["5", "3", "2"])
    expect(table).not_to_contain_text("大阪精機株式会社")
    page.screenshot(path=SCREENSHOT, full_page=True)

    table.get_by_role("link", name="東京物流株式会社").click()
    expect(page.get_by_test_id("company-name")).to_have_text("東京物流株式会社")
    expect(page.get_by_test_id("company-lead-count")).to_have_text("5")
