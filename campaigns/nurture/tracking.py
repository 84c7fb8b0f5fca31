"""Open and click tracking of nurture mail: signed, tamper-proof tokens.

The open pixel's token names (tenant, lead, outgoing message); the click token also
carries the destination URL, so the redirect only ever goes where the mail's own
template linked (no open redirect) and a changed URL or id fails the signature.
Both become activities (email_opened / email_clicked, properties: message id, URL)
through leads' activity service, and so feed scoring.
"""

import functools
import re
from html import unescape
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.html import escape

OPEN_SALT = "ryorin.nurture.open"
CLICK_SALT = "ryorin.nurture.click"
MAX_TOKEN_LENGTH = 3000
MAX_URL_LENGTH = 2000

_HREF = re.compile(r'href="(https?://[^"]+)"', re.IGNORECASE)


class BadToken(ValueError):
    pass


def open_token(*, tenant_id: int, lead_id: int, message_id: int) -> str:
    return signing.dumps([tenant_id, lead_id, message_id], salt=OPEN_SALT)


def click_token(*, tenant_id: int, lead_id: int, message_id: int, url: str) -> str:
    return signing.dumps([tenant_id, lead_id, message_id, url], salt=CLICK_SALT, compress=True)


def _ids(value: object, n: int) -> list:
    if not isinstance(value, list) or len(value) != n:
        raise BadToken("not a tracking token")
    if not all(isinstance(part, int) and not isinstance(part, bool) for part in value[:3]):
        raise BadToken("not a tracking token")
    return value


def _loads(token: str, salt: str) -> object:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise BadToken("missing or malformed token")
    try:
        return signing.loads(token, salt=salt)
    except signing.BadSignature as exc:
        raise BadToken("bad signature") from exc


def open_token_read(token: str) -> tuple[int, int, int]:
    tenant_id, lead_id, message_id = _ids(_loads(token, OPEN_SALT), 3)
    return tenant_id, lead_id, message_id


def click_token_read(token: str) -> tuple[int, int, int, str]:
    tenant_id, lead_id, message_id, url = _ids(_loads(token, CLICK_SALT), 4)
    if not isinstance(url, str) or not safe_url(url):
        raise BadToken("not a tracking token")
    return tenant_id, lead_id, message_id, url


def safe_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and len(url) <= MAX_URL_LENGTH


_PLACEHOLDER = "0placeholder0"
_URL_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_:-]+$")  # signing's alphabet: reverse() leaves it


@functools.lru_cache(maxsize=32)
def _url_around_token(
    name: str, site_url: str, script_prefix: str, urlconf: str | None
) -> tuple[str, str]:
    before, after = reverse(name, args=[_PLACEHOLDER], urlconf=urlconf).split(_PLACEHOLDER)
    return site_url.rstrip("/") + before, after


def token_url(name: str, token: str) -> str:
    """The absolute URL of a token view: reverse() once per view, then the token put
    in (a mail has three or more of these; reverse() per link was a tenth of its
    build time)."""
    if not _URL_SAFE_TOKEN.match(token):
        return settings.SITE_URL.rstrip("/") + reverse(name, args=[token])
    before, after = _url_around_token(
        name, settings.SITE_URL, get_script_prefix(), get_urlconf() or settings.ROOT_URLCONF
    )
    return before + token + after


def track_html(html: str, *, tenant_id: int, lead_id: int, message_id: int, skip: str) -> str:
    """Links of the body go through the click redirect (all but `skip`, the opt-out
    link); the open pixel goes at the end."""

    def rewrite(match: re.Match) -> str:
        url = unescape(match.group(1))
        if url == skip or not safe_url(url):
            return match.group(0)
        token = click_token(tenant_id=tenant_id, lead_id=lead_id, message_id=message_id, url=url)
        return f'href="{escape(token_url("nurture:click", token))}"'

    pixel = token_url(
        "nurture:open", open_token(tenant_id=tenant_id, lead_id=lead_id, message_id=message_id)
    )
    return _HREF.sub(rewrite, html) + f'<img src="{escape(pixel)}" width="1" height="1" alt="">'
