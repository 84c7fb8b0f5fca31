"""Per-caller rate limits: one budget per API key (per user for session calls, per IP
when anonymous), in fixed windows counted in Redis.

DRF's SimpleRateThrottle keeps a list of every request's timestamp and reads and
rewrites it, pickled, on each request: at 1,200/min that is a 1,200-float list per
call. A fixed-window counter is one INCR (with its EXPIRE, pipelined: one round trip).
The price is that a caller may spend two windows' budget across a window boundary.
"""

import time

from django.core.cache import cache
from rest_framework.throttling import SimpleRateThrottle

from accounts.redis import redis_client


class PerCallerRateThrottle(SimpleRateThrottle):
    scope = "caller"
    cache_format = "throttle:%(scope)s:%(ident)s"

    def get_cache_key(self, request, view) -> str:
        api_key = getattr(request, "auth", None)
        if api_key is not None and hasattr(api_key, "prefix"):
            ident = f"key:{api_key.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        now = time.time()
        window = int(now // self.duration)
        count = count_request(f"{key}:{window}", self.duration)
        self.wait_seconds = (window + 1) * self.duration - now
        return count <= self.num_requests

    def wait(self) -> float | None:
        return getattr(self, "wait_seconds", None)


def count_request(key: str, window_seconds: int) -> int:
    """Add one request to the window's counter and return the count so far. Also used
    by the public lead-capture endpoints (leads.capture.spam) for their own limits."""
    client = redis_client()
    if client is not None:
        pipeline = client.pipeline(transaction=False)
        pipeline.incr(key)
        pipeline.expire(key, window_seconds + 1, nx=True)
        count, _ = pipeline.execute()
        return int(count)
    # No Redis (development): the cache API, two calls, good enough for one process.
    cache.add(key, 0, window_seconds + 1)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, window_seconds + 1)
        return 1
