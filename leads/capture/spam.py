"""Spam protection of the public endpoints: a honeypot field and fixed-window rate limits.

The endpoints are cross-site by design (a tenant's page posts to us), so CSRF tokens
cannot protect them; these do. Limits are counted in Redis, every limit of a request
in one round trip (INCR and EXPIRE pipelined), and set in settings:

    LEADS_CAPTURE_RATE_PER_IP   = "20/min"   # submissions from one address, all forms
    LEADS_CAPTURE_RATE_PER_FORM = "600/min"  # submissions to one form, all addresses
    LEADS_TRACK_RATE_PER_IP     = "600/min"  # tracking calls from one address

A load test from one machine raises the first (see the benchmark's settings).
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from accounts.api.throttling import count_request
from accounts.redis import redis_client
from leads.capture.spec import HONEYPOT_FIELD

DEFAULT_RATES = {
    "LEADS_CAPTURE_RATE_PER_IP": "20/min",
    "LEADS_CAPTURE_RATE_PER_FORM": "600/min",
    "LEADS_TRACK_RATE_PER_IP": "600/min",
}
PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


@dataclass(frozen=True, slots=True)
class Limited:
    """A refused request: which limit, and how long until the window turns."""

    scope: str  # "ip" or "form"
    retry_after: int


def parse_rate(rate: str) -> tuple[int, int]:
    """ "20/min" → (20, 60)."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip().lower()]


def _rate(setting: str) -> tuple[int, int] | None:
    value = getattr(settings, setting, DEFAULT_RATES[setting])
    return parse_rate(value) if value else None


def client_ip(request: HttpRequest) -> str:
    # REMOTE_ADDR: a proxy in front must set it from X-Forwarded-For (as gunicorn
    # behind nginx does with forwarded_allow_ips); trusting the header here would let
    # anyone pick a fresh address per request and walk past the limit.
    return request.META.get("REMOTE_ADDR") or "unknown"


@dataclass(frozen=True, slots=True)
class _Window:
    scope: str
    key: str
    limit: int
    period: int
    retry_after: int


def _window(scope: str, ident: str, setting: str, now: float) -> _Window | None:
    rate = _rate(setting)
    if rate is None:
        return None
    limit, period = rate
    window = int(now // period)
    return _Window(
        scope=scope,
        key=f"capture:{setting}:{ident}:{window}",
        limit=limit,
        period=period,
        retry_after=max(1, int((window + 1) * period - now) + 1),
    )


def _count(windows: list[_Window]) -> Limited | None:
    """Count the request in each window, in one Redis round trip; the first window over
    its limit refuses it. A refused request is taken back out of the windows after that
    one (a second round trip, only when refusing), so an address over its own limit
    does not spend the form's budget: counted one by one, it never reached them."""
    client = redis_client()
    if client is None:
        for window in windows:
            if count_request(window.key, window.period) > window.limit:
                return Limited(scope=window.scope, retry_after=window.retry_after)
        return None
    pipeline = client.pipeline(transaction=False)
    for window in windows:
        pipeline.incr(window.key)
        pipeline.expire(window.key, window.period + 1, nx=True)
    counts = pipeline.execute()[::2]
    for position, (window, count) in enumerate(zip(windows, counts, strict=True)):
        if int(count) > window.limit:
            later = windows[position + 1 :]
            if later:
                undo = client.pipeline(transaction=False)
                for other in later:
                    undo.decr(other.key)
                undo.execute()
            return Limited(scope=window.scope, retry_after=window.retry_after)
    return None


def submission_limited(request: HttpRequest, form_key: str) -> Limited | None:
    """Count this submission against the address's and the form's budgets."""
    now = time.time()
    windows = [
        _window("ip", client_ip(request), "LEADS_CAPTURE_RATE_PER_IP", now),
        _window("form", form_key, "LEADS_CAPTURE_RATE_PER_FORM", now),
    ]
    return _count([window for window in windows if window is not None])


def tracking_limited(request: HttpRequest) -> Limited | None:
    window = _window("ip", client_ip(request), "LEADS_TRACK_RATE_PER_IP", time.time())
    return _count([window]) if window is not None else None


def honeypot_filled(data: Mapping[str, Any]) -> bool:
    """The hidden field people never see and bots fill in."""
    value = data.get(HONEYPOT_FIELD)
    return bool(str(value or "").strip())
