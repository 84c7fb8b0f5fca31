"""The process's Redis client, for the few hot paths that need one round trip where the
cache API would take two (throttle counters) — None when no Redis is configured."""

import functools

import redis
from django.conf import settings


@functools.cache
def redis_client() -> redis.Redis | None:
    if not settings.REDIS_URL:
        return None
    # redis-py's pool reconnects after a fork (it checks the pid), so gunicorn or Celery
    # workers forked after this was created still get connections of their own.
    return redis.Redis.from_url(settings.REDIS_URL)
