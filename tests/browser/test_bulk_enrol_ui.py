"""Enrolling leads in a sequence from the leads list, in a real browser: tick a lead and
enrol it, then enrol everything the filter matches (confirming the dialog) and see who
was left out; the lead page's timeline shows the enrolment, linking its sequence. The
Segments page is one click away in the side navigation."""

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.tenancy import tenant_scope
from campaigns.models import Enrolment
from campaigns.tests.factories import SequenceFactory
from leads.models import ConsentStatus, LifecycleStage
from leads.tests.factories import LeadFactory
from tests.fixtures import make_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"


def test_enrol_ticked_and_all_matching_leads_from_the_leads_list(page: Page):
    world = make_world(name="Acme 株式会社", slug="acme")
    world.owner.language = "en"
    world.owner.save(update_fields=["language"])
    tenant = world.tenant
    sequence = SequenceFactory(tenant=tenant, name="展示会フォロー")
    mqls = [
        LeadFactory(
            tenant=tenant,
            family_name=family,
            given_name="太郎",
            lifecycle_stage=LifecycleStage.MQL,
            email_consent=ConsentStatus.GRANTED,
        )
        for family in ("山本", "中村", "小林")
    ]
    LeadFactory(tenant=tenant, family_name="加藤", lifecycle_stage=LifecycleStage.LEAD)

    page.goto("/accounts/login/")
    page.locator("input[name=username]").fill(world.owner.email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    expect(page).to_have_url(re.compile(r"/t/acme/$"))

    # Tick one lead and enrol it.
    page.get_by_role("link", name="Leads", exact=True).click()
    results = page.get_by_test_id("lead-results")
    results.get_by_label("Select 山本 太郎").check()
    results.locator("#bulk_sequence").select_option(label="展示会フォロー")
    results.get_by_test_id("bulk-enrol").click()
    expect(page.get_by_text("1 lead enrolled in 展示会フォロー.")).to_be_visible()

    # Everything the filter matches: the two other MQLs join, the first is left out.
    page.goto("/t/acme/leads/?stage=mql")
    results = page.get_by_test_id("lead-results")
    results.locator("input[data-scope-all]").check()
    results.locator("#bulk_sequence").select_option(label="展示会フォロー")
    page.once("dialog", lambda dialog: dialog.accept())
    results.get_by_test_id("bulk-enrol").click()
    expect(page.get_by_text("2 leads enrolled in 展示会フォロー.")).to_be_visible()
    expect(page.get_by_text("1 lead was left out")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/t/acme/leads/\?stage=mql$"))
    with tenant_scope(tenant.id):
        enrolled = set(
            Enrolment.objects.filter(sequence=sequence).values_list("lead_id", flat=True)
        )
    assert enrolled == {lead.pk for lead in mqls}

    # The lead's timeline shows it, linking the sequence.
    page.goto(f"/t/acme/leads/{mqls[0].pk}/")
    entry = page.locator("li[data-kind=enrolment]")
    expect(entry).to_contain_text("Enrolled in a sequence")
    entry.get_by_role("link", name="展示会フォロー").click()
    expect(page).to_have_url(re.compile(rf"/t/acme/nurture/{sequence.pk}/$"))

    # Segments, from the side navigation.
    page.get_by_role("link", name="Segments", exact=True).click()
    expect(page.get_by_role("heading", name="Segments", exact=True)).to_be_visible()
