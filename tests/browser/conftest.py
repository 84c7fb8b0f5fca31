"""Playwright against pytest-django's live_server, driving Debian's Chromium headless.

Sync Playwright runs an event loop in this thread, which trips Django's async-safety
check on the test's own database calls; the live server runs in its own thread, so
allowing it here is safe.
"""

import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.exit(f"CI needs Chromium at {CHROMIUM}", returncode=3)
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:
    # An English browser on purpose: the app must still start in Japanese.
    context = browser.new_context(
        base_url=live_server.url, locale="en-US", viewport={"width": 1440, "height": 900}
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()
