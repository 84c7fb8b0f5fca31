"""The MQL handoff in a real browser: an activity pushes a lead over the MQL threshold,
the lead appears in the right inside-sales rep's queue (a routing rule by prefecture,
round robin in a team), the rep rejects it with "not now", and the lead goes back to
nurturing (recycled), with the reason on its timeline and on the campaign's feedback.
Leaves a screenshot of the queue in /tmp."""

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.models import Role
from accounts.services import Origin
from accounts.tenancy import tenant_scope
from campaigns.tests.factories import CampaignFactory
from leads.models import LifecycleStage
from leads.scoring.services import scoring_model_create
from leads.tests.factories import CompanyFactory, LeadFactory
from pipeline.models import Handoff, RoutingRule
from pipeline.tests.factories import TeamFactory, TeamMemberFactory
from tests.fixtures import make_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"
QUEUE_SCREENSHOT = "/tmp/ui-handoff-queue.png"  # noqa: S108 (a fixed path people look at)


def log_in(page: Page, email: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("メールアドレス").fill(email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    expect(page).to_have_url(re.compile(r"/t/acme/$"))


def test_mql_reaches_the_right_queue_and_goes_back_to_nurturing(page: Page, live_server):
    world = make_world(name="Acme 株式会社", slug="acme")
    tenant = world.tenant
    marketer = world.member(Role.MARKETING)
    kanto = [world.member(Role.INSIDE_SALES, user__full_name=f"関東 {n}") for n in (1, 2)]
    kansai = world.member(Role.INSIDE_SALES, user__full_name="関西 担当")
    team = TeamFactory(tenant=tenant, name="関東チーム", manager=world.owner)
    for rep in kanto:
        TeamMemberFactory(tenant=tenant, team=team, user=rep)
    with tenant_scope(tenant.id):
        RoutingRule.objects.create(
            tenant=tenant, name="関西", position=0, target="user", user=kansai,
            prefectures=["27"],
        )  # fmt: skip
        RoutingRule.objects.create(
            tenant=tenant, name="関東", position=1, target="team", team=team, prefectures=["13"]
        )
    scoring_model_create(
        tenant_id=tenant.id,
        origin=Origin(actor=world.owner),
        name="標準",
        is_primary=True,
        mql_threshold=30,
        rules=[{"kind": "behaviour", "activity_type": "meeting", "points": 40}],
    )
    campaign = CampaignFactory(tenant=tenant, name="秋の展示会")
    lead = LeadFactory(
        tenant=tenant,
        family_name="高橋",
        given_name="誠",
        company=CompanyFactory(tenant=tenant, name="東京製作所", prefecture="13"),
        source_campaign=campaign,
    )

    # Marketing logs a meeting: the score passes the threshold, the lead becomes MQL and
    # is handed to the Tokyo team's next rep (the first one).
    log_in(page, marketer.email)
    page.goto(f"/t/acme/leads/{lead.pk}/")
    form = page.get_by_test_id("activity-form")
    form.locator("select[name=type]").select_option("meeting")
    form.locator("textarea[name=body]").fill("展示会ブースで商談")
    form.locator("button[type=submit]").click()
    expect(page.locator(".message-success")).to_be_visible()
    with tenant_scope(tenant.id):
        handoff = Handoff.objects.get(lead=lead)
    assert handoff.owner_id == kanto[0].id

    # The right person's queue shows it; another rep's does not.
    page.context.clear_cookies()
    log_in(page, kanto[1].email)
    page.get_by_role("link", name="引き継ぎキュー").click()
    expect(page.get_by_test_id("queue-empty")).to_be_visible()
    page.context.clear_cookies()
    log_in(page, kanto[0].email)
    page.get_by_role("link", name="引き継ぎキュー").click()
    row = page.get_by_test_id("handoff-row").filter(has_text="高橋 誠")
    expect(row).to_be_visible()
    expect(row).to_contain_text("秋の展示会")
    page.screenshot(path=QUEUE_SCREENSHOT, full_page=True)

    # Reject with "not now" in one go (htmx swaps the row).
    row.locator("select").select_option("not_now")
    row.locator("input[type=text]").fill("来期に再検討")
    row.locator("button", has_text=re.compile("差し戻し|Reject")).click()
    expect(page.get_by_test_id("handoff-row").filter(has_text="高橋 誠")).to_contain_text(
        re.compile("ナーチャリング|nurturing")
    )
    with tenant_scope(tenant.id):
        handoff.refresh_from_db()
        lead.refresh_from_db()
    assert (handoff.status, handoff.reject_reason) == ("rejected", "not_now")
    assert lead.lifecycle_stage == LifecycleStage.RECYCLED

    # Back in nurturing: the lead page shows the stage and the rep's reason.
    page.goto(f"/t/acme/leads/{lead.pk}/")
    expect(page.locator("body")).to_contain_text("来期に再検討")
    # Marketing sees the feedback on the campaign.
    page.goto(f"/t/acme/campaigns/{campaign.pk}/")
    expect(page.get_by_test_id("feedback-rejected")).to_have_text("1")
