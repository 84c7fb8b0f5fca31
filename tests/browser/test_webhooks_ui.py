"""Webhook settings in a real browser: add an endpoint (secret shown once), send a test
event to a real local receiver, and see the delivery in the log."""

import json
import re

import pytest
from playwright.sync_api import Page, expect

from accounts.tests.webhook_receiver import Receiver
from accounts.webhooks.signing import verify_signature
from tests.fixtures import make_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"


def test_create_endpoint_and_see_a_delivery(page: Page):
    world = make_world(name="Acme 株式会社", slug="acme")
    world.owner.language = "en"
    world.owner.save(update_fields=["language"])
    receiver = Receiver().start()
    try:
        page.goto("/accounts/login/")
        page.locator("input[name=username]").fill(world.owner.email)
        page.locator("input[name=password]").fill(PASSWORD)
        page.get_by_role("button", name="ログイン").click()
        expect(page).to_have_url(re.compile(r"/t/acme/$"))

        page.get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
        form = page.get_by_test_id("webhook-form")
        form.get_by_label("URL").fill(receiver.url)
        form.get_by_label("Description").fill("CRM")
        events = page.get_by_test_id("webhook-events")
        events.get_by_label(re.compile(r"lead\.created")).check()
        events.get_by_label(re.compile(r"lead\.lifecycle_changed")).check()
        form.get_by_role("button", name="Add endpoint").click()

        expect(page.get_by_role("heading", name="Endpoint added")).to_be_visible()
        secret = page.get_by_test_id("signing-secret").inner_text()
        assert secret.startswith("whsec_")
        page.get_by_role("link", name="Done").click()

        expect(page.get_by_test_id("webhook-status")).to_have_text("Active")
        page.get_by_test_id("webhook-test").click()
        expect(page.get_by_text("A test event was queued")).to_be_visible()
        row = page.get_by_test_id("delivery-row").first
        expect(row).to_contain_text("webhook.test")
        expect(row.get_by_test_id("delivery-status")).to_have_text("Succeeded")
        expect(row.get_by_test_id("delivery-code")).to_have_text("200")

        assert len(receiver.requests) == 1
        request = receiver.requests[0]
        assert json.loads(request.body)["type"] == "webhook.test"
        verify_signature(secret, request.body, request.headers["ryorin-signature"])
    finally:
        receiver.stop()
