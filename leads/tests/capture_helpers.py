"""Shared pieces of the capture and tracking tests."""

import pytest

from accounts.redis import redis_client
from accounts.services import SYSTEM
from leads.capture.services import capture_form_create

EMAIL_FIELD = {
    "name": "email",
    "label": "メールアドレス",
    "type": "email",
    "required": True,
    "maps_to": "lead.email",
}
STANDARD_FIELDS = [
    EMAIL_FIELD,
    {"name": "sei", "label": "姓", "type": "text", "required": True, "maps_to": "lead.family_name"},
    {"name": "mei", "label": "名", "type": "text", "maps_to": "lead.given_name"},
    {"name": "company", "label": "会社名", "type": "text", "maps_to": "lead.company_name"},
    {"name": "tel", "label": "電話番号", "type": "tel", "maps_to": "lead.phone"},
    {"name": "pref", "label": "都道府県", "type": "select", "maps_to": "lead.prefecture"},
    {"name": "message", "label": "お問い合わせ内容", "type": "textarea"},
]
CONSENT_TEXT = "メールマガジンの受信に同意します"


def make_form(tenant, **kwargs):
    options = {
        "name": "資料請求",
        "fields": STANDARD_FIELDS,
        "consent_text": CONSENT_TEXT,
        "thank_you_message": "ありがとうございました。",
    }
    options.update(kwargs)
    return capture_form_create(tenant_id=tenant.id, origin=SYSTEM, **options)


def clear_capture_counters() -> None:
    client = redis_client()
    if client is not None:
        keys = list(client.scan_iter("capture:*"))
        if keys:
            client.delete(*keys)


@pytest.fixture(autouse=True)
def _fresh_capture_counters():
    """Rate-limit windows are shared by every test from 127.0.0.1; start each at zero."""
    clear_capture_counters()
    yield
    clear_capture_counters()
