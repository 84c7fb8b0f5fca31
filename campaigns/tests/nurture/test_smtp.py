"""The SMTP backend's cheap envelope addresses give what Django's parse gives, and
refuse what it refuses."""

import pytest
from django.core import mail
from django.core.mail.backends import smtp as django_smtp

from campaigns.nurture import smtp

ADDRESSES = [
    "taro.yamada@example.co.jp",
    "o'brien+news@mail.example.com",
    "UPPER.case@Example.COM",
    "ベンチ育成 マーケティング部 <news@bench-sender.example.com>",
    '"Sales, East" <sales@example.com>',
    "yamada@例え.jp",
    '"quoted local"@example.com',
    "a@localhost",
    "postmaster",  # a local mailbox: Django allows it
]
INVALID = [
    "two@@example.com",
    "a@example.com\r\nBcc: victim@example.com",
    "a@example.com, b@example.com",
]


@pytest.fixture
def backends(settings):
    options = {"host": "127.0.0.1", "port": 25, "timeout": 1}
    settings.MAILERS = {
        "ours": {"BACKEND": "campaigns.nurture.smtp.EmailBackend", "OPTIONS": options},
        "django": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": options},
    }
    ours, djangos = mail.mailers["ours"], mail.mailers["django"]
    assert isinstance(ours, smtp.EmailBackend)
    assert type(djangos) is django_smtp.EmailBackend
    return ours, djangos


@pytest.mark.parametrize("address", ADDRESSES)
@pytest.mark.parametrize("force_ascii", [True, False])
def test_the_same_envelope_address_as_django(backends, address, force_ascii):
    ours, djangos = backends
    for _ in range(2):  # the second time from the cache
        assert ours.prep_address(address, force_ascii) == djangos.prep_address(address, force_ascii)


@pytest.mark.parametrize("address", INVALID)
def test_the_same_refusals(backends, address):
    ours, djangos = backends
    with pytest.raises(ValueError, match="Invalid address") as refused:
        djangos.prep_address(address)
    for _ in range(2):
        with pytest.raises(ValueError, match="Invalid address") as ours_refused:
            ours.prep_address(address)
        assert str(ours_refused.value) == str(refused.value)
