"""The Celery app. Redis is the broker; with no broker configured tasks run eagerly
in-process (see CELERY_TASK_ALWAYS_EAGER in settings). The beat schedule lives here,
in code."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("ryorin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic work. Later issues add nurture dispatch, score decay, SLA checks, snapshots.
app.conf.beat_schedule = {
    "accounts-expire-invitations": {
        "task": "accounts.tasks.expire_invitations",
        "schedule": 3600.0,
    },
}
