"""Nurturing in a real browser: build a sequence (email, wait, branch on the open,
reminder, end) in the builder, activate it, enrol a lead picked by search, see the
lead in the enrolment list at its next step with its due time (before and after the
dispatcher ran its first mail), and preview a template with the lead's own values."""

import re
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.tenancy import tenant_scope
from campaigns.models import Enrolment, Sequence, SequenceStep
from campaigns.nurture.dispatch import dispatch_batch
from campaigns.tests.factories import EmailTemplateFactory, SenderIdentityFactory
from leads.models import ConsentStatus
from leads.tests.factories import LeadFactory
from tests.fixtures import make_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"


def test_build_a_sequence_enrol_a_lead_and_preview_a_template(page: Page):
    world = make_world(name="Acme 株式会社", slug="acme")
    world.owner.language = "en"
    world.owner.save(update_fields=["language"])
    tenant = world.tenant
    first_mail = EmailTemplateFactory(tenant=tenant, name="資料のご案内")
    reminder = EmailTemplateFactory(tenant=tenant, name="リマインド", subject="再送: ご案内")
    SenderIdentityFactory(tenant=tenant, from_name="Acme マーケティング")
    lead = LeadFactory(
        tenant=tenant,
        family_name="山本",
        given_name="彩",
        email="yamamoto@example.co.jp",
        email_consent=ConsentStatus.GRANTED,
    )
    LeadFactory(tenant=tenant, family_name="中村")  # not picked

    page.goto("/accounts/login/")
    page.locator("input[name=username]").fill(world.owner.email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    expect(page).to_have_url(re.compile(r"/t/acme/$"))

    # A new sequence, from the side navigation.
    page.get_by_role("link", name="Nurturing", exact=True).click()
    page.get_by_role("link", name="New sequence").click()
    form = page.get_by_test_id("sequence-form")
    form.get_by_label("Name").fill("資料請求フォロー")
    form.get_by_label("Sender").select_option(index=1)
    form.get_by_role("button", name="Create and add steps").click()
    expect(page.get_by_role("heading", name="Sequence builder")).to_be_visible()

    # Five steps: each added row keeps what was typed in the others (not saved yet).
    rows = page.get_by_test_id("step-row")
    for kind in ("Send email", "Wait", "Branch", "Send email", "Send email"):
        page.get_by_test_id("new-step-kind").select_option(label=kind)
        page.get_by_test_id("add-step").click()
    expect(rows).to_have_count(5)
    rows.nth(0).get_by_label("Template").select_option(label="資料のご案内")
    rows.nth(1).get_by_label("Wait for").fill("2")
    rows.nth(1).get_by_label("Unit").select_option(label="days")
    branch = rows.nth(2)
    # A condition shows the inputs it uses.
    branch.get_by_label("Condition").select_option(label="Score at least")
    expect(branch.get_by_label("Compared value")).to_be_visible()
    expect(branch.get_by_label("Stage", exact=True)).to_be_hidden()
    branch.get_by_label("Condition").select_option(label="Lifecycle stage is")
    expect(branch.get_by_label("Stage", exact=True)).to_be_visible()
    expect(branch.get_by_label("Compared value")).to_be_hidden()
    branch.get_by_label("Condition").select_option(label="Opened the previous email")
    expect(branch.get_by_label("Stage", exact=True)).to_be_hidden()
    branch.get_by_label("If yes, go to").select_option(label="Step 5")
    branch.get_by_label("If not, go to").select_option(label="Step 4")
    rows.nth(3).get_by_label("Template").select_option(label="リマインド")
    # The last one becomes an end step: its inputs change without a reload.
    rows.nth(4).get_by_label("Kind of step").select_option(label="End")
    expect(rows.nth(4).get_by_label("Template")).to_be_hidden()
    expect(rows.nth(4).get_by_text("The lead's journey ends here.")).to_be_visible()
    page.get_by_test_id("save-sequence").click()

    expect(page.get_by_test_id("sequence-name")).to_have_text("資料請求フォロー")
    steps = page.get_by_test_id("steps").locator("li")
    expect(steps).to_have_count(5)
    expect(steps.nth(0)).to_contain_text("Send email: 資料のご案内")
    expect(steps.nth(1)).to_contain_text("Wait: 2 days")
    expect(steps.nth(2)).to_contain_text("Opened the previous email → step 5, else step 4")
    expect(steps.nth(4)).to_contain_text("End")
    page.get_by_test_id("activate-sequence").click()
    expect(page.get_by_test_id("sequence-status")).to_have_text("Active")
    with tenant_scope(tenant.id):
        sequence = Sequence.objects.get(name="資料請求フォロー")
        saved = list(
            SequenceStep.objects.filter(sequence=sequence).values_list("kind", "template_id")
        )
    assert saved == [
        ("send_email", first_mail.pk),
        ("wait", None),
        ("branch", None),
        ("send_email", reminder.pk),
        ("end", None),
    ]

    # Enrol the lead, found by name.
    page.get_by_test_id("enrolments-link").click()
    page.get_by_label("Find leads").fill("山本")
    picked = page.get_by_test_id("picker-lead")
    expect(picked).to_have_count(1)
    expect(picked).to_contain_text("yamamoto@example.co.jp")
    picked.get_by_role("checkbox").check()
    page.get_by_test_id("enrol-submit").click()
    expect(page.get_by_text("1 lead enrolled.")).to_be_visible()
    row = page.get_by_test_id("enrolment-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("山本 彩")
    expect(row.get_by_test_id("enrolment-state")).to_have_text("Active")
    expect(row.get_by_test_id("enrolment-step")).to_have_text("1. Send email: 資料のご案内")

    # The dispatcher sends the first mail and runs the wait: the lead now waits two
    # days for the branch.
    mail.outbox.clear()
    assert dispatch_batch(tenant.id)["sent"] == 1
    assert mail.outbox[0].to == ["yamamoto@example.co.jp"]
    with tenant_scope(tenant.id):
        due = Enrolment.objects.get(lead=lead).next_due_at
    assert due > timezone.now()
    page.reload()
    expect(row.get_by_test_id("enrolment-step")).to_have_text("3. Branch")
    local_due = due.astimezone(ZoneInfo(tenant.time_zone)).strftime("%Y-%m-%d %H:%M")
    expect(row.get_by_test_id("enrolment-due")).to_have_text(local_due)
    page.get_by_test_id("state-active").click()
    expect(page.get_by_test_id("enrolment-row")).to_have_count(1)

    # The template editor previews the mail with the lead's own values.
    page.get_by_role("link", name="Email templates").click()
    page.get_by_role("link", name="資料のご案内").click()
    page.get_by_test_id("preview-lead").fill("yamamoto")
    expect(page.get_by_test_id("preview-for")).to_contain_text("山本 彩")
    expect(page.get_by_test_id("preview-subject")).to_have_text("山本様、資料のご案内")
    frame = page.frame_locator("[data-testid=preview-html]")
    expect(frame.locator("body")).to_contain_text("山本様")
    # An unsaved edit is previewed as typed.
    page.get_by_label("Subject").fill("{{ lead.given_name }}さんへ")
    expect(page.get_by_test_id("preview-subject")).to_have_text("彩さんへ")
