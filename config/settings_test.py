"""Settings for the test suite: the real PostgreSQL and Redis of the machine.

DATABASE_URL / REDIS_URL override the local defaults; under CI=true a missing service
fails the run instead of being skipped (see tests/fixtures.py).
"""

import os

os.environ["RYORIN_ENV"] = "test"
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ryorin")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
# Tasks run in-process unless a test starts a real worker (tests/test_celery_worker.py).
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")

from config.settings import *  # noqa: F403

MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
