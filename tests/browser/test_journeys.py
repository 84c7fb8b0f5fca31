"""A staff member's first minutes, in a real browser: log in, switch tenant, switch
language, log out."""

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.models import Role
from accounts.tests.factories import MembershipFactory, TenantFactory
from tests.fixtures import make_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"
SCREENSHOT = "/tmp/ui-dashboard.png"  # noqa: S108 (a fixed path people look at)


def test_login_switch_tenant_switch_language_logout(page: Page):
    world = make_world(name="Acme 株式会社", slug="acme")
    beta = TenantFactory(name="Beta Corp", slug="beta")
    MembershipFactory(tenant=beta, user=world.owner, role=Role.MARKETING)
    for _ in range(2):
        world.member(Role.INSIDE_SALES)

    # Log in (the page is Japanese although the browser asks for English).
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.get_by_role("heading", name="Ryorin にログイン")).to_be_visible()
    page.get_by_label("メールアドレス").fill(world.owner.email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()

    # The first tenant's dashboard.
    expect(page).to_have_url(re.compile(r"/t/acme/$"))
    expect(page.get_by_role("heading", name="Acme 株式会社")).to_be_visible()
    expect(page.get_by_test_id("role")).to_have_text("オーナー")
    expect(page.get_by_test_id("member-count")).to_have_text("3")
    expect(page.locator(".nav-item.is-soon", has_text="商談")).to_contain_text("近日公開")
    page.screenshot(path=SCREENSHOT, full_page=True)

    # Switch tenant through the switcher.
    switcher = page.get_by_test_id("tenant-switcher")
    switcher.locator("summary").click()
    switcher.get_by_role("link", name=re.compile("Beta Corp")).click()
    expect(page).to_have_url(re.compile(r"/t/beta/$"))
    expect(page.get_by_role("heading", name="Beta Corp")).to_be_visible()
    expect(page.get_by_test_id("role")).to_have_text("マーケティング")
    # Marketing members do not see admin-only settings.
    expect(page.get_by_role("link", name="監査ログ")).to_have_count(0)

    # Switch the language to English; the page stays where it was.
    page.get_by_test_id("language-switch").get_by_role("button", name="English").click()
    expect(page).to_have_url(re.compile(r"/t/beta/$"))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_text("Your role")).to_be_visible()
    expect(page.get_by_test_id("role")).to_have_text("Marketing")
    expect(page.locator(".nav-item.is-soon", has_text="Deals")).to_contain_text("Coming soon")

    # The last tenant used is remembered.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/t/beta/$"))

    # Log out from the user menu.
    page.get_by_test_id("user-menu").locator("summary").click()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.get_by_role("heading", name="Log in to Ryorin")).to_be_visible()
    page.goto("/t/beta/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/t/beta/$"))


def test_inline_role_change_and_key_revoke_with_htmx(page: Page):
    world = make_world(name="Acme 株式会社", slug="acme")
    member = world.member(Role.MARKETING)
    world.api_key()
    page.goto("/accounts/login/")
    page.get_by_label("メールアドレス").fill(world.owner.email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    expect(page).to_have_url(re.compile(r"/t/acme/$"))

    # Changing the select saves the role in place (no submit button with JavaScript on).
    page.goto("/t/acme/settings/members/")
    row = page.locator("[data-testid=members] tbody tr", has_text=member.email)
    expect(row.get_by_role("button", name="変更")).to_be_hidden()
    row.get_by_label("ロール").select_option(Role.FIELD_SALES)
    expect(row).to_contain_text("保存しました")
    page.reload()
    expect(row.get_by_label("ロール")).to_have_value(Role.FIELD_SALES)

    page.goto("/t/acme/settings/api-keys/")
    page.once("dialog", lambda dialog: dialog.accept())
    row = page.locator("[data-testid=api-keys] tbody tr").first
    row.get_by_role("button", name="失効").click()
    # Swapped in place by htmx: same page, the row now says revoked.
    expect(row).to_contain_text("失効済み")
    expect(page).to_have_url(re.compile(r"/t/acme/settings/api-keys/$"))
