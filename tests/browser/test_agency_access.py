"""A client's admin lets an agency staff member in, and takes the access back, in a
real browser: both swaps are htmx, the page never reloads."""

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.models import Role
from accounts.tests.factories import AgencyFactory, MembershipFactory, TenantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"
SCREENSHOT = "/tmp/ui-agency-access.png"  # noqa: S108 (a fixed path people look at)


def test_grant_and_revoke_agency_access_with_htmx(page: Page):
    agency = AgencyFactory(name="Hikari Agency")
    client = TenantFactory(name="Client KK", slug="client-kk", managed_by=agency)
    MembershipFactory(tenant=agency, role=Role.OWNER)
    staff = MembershipFactory(tenant=agency, role=Role.MARKETING, user__full_name="佐藤 健").user
    admin = MembershipFactory(tenant=client, role=Role.ADMIN).user

    page.goto("/accounts/login/")
    page.get_by_label("メールアドレス").fill(admin.email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    expect(page).to_have_url(re.compile(r"/t/client-kk/$"))

    page.goto("/t/client-kk/settings/members/")
    section = page.locator("[data-testid=agency-access]")
    expect(section).to_contain_text("Hikari Agency")
    section.get_by_label("代理店スタッフ").select_option(label=f"佐藤 健 <{staff.email}>")
    section.get_by_label("ロール").select_option(Role.INSIDE_SALES)
    section.get_by_role("button", name="アクセスを付与").click()
    row = section.locator("[data-testid=agency-assignments] tbody tr", has_text=staff.email)
    expect(row).to_contain_text("インサイドセールス")
    expect(section).to_contain_text("アクセスできるようになりました")
    page.screenshot(path=SCREENSHOT, full_page=True)

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="取り消し").click()
    expect(section).to_contain_text("アクセスを付与された代理店スタッフはいません。")
    expect(page).to_have_url(re.compile(r"/t/client-kk/settings/members/$"))
