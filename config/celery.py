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
# Each entry names a registered task (accounts/tests/test_tasks.py checks it); periodic
# tenant work should fan out one tenant_task per tenant rather than loop in one task.
app.conf.beat_schedule = {
    "accounts-expire-invitations": {
        "task": "accounts.tasks.expire_invitations",
        "schedule": 3600.0,
    },
    "accounts-sweep-undispatched-events": {
        "task": "accounts.tasks.sweep_undispatched_events",
        "schedule": 60.0,
    },
    "leads-refresh-scores": {
        "task": "leads.tasks.refresh_scores",
        "schedule": 300.0,
    },
    "campaigns-fold-campaign-counts": {
        "task": "campaigns.tasks.fold_campaign_counts",
        "schedule": 60.0,
    },
    "accounts-retry-webhook-deliveries": {
        "task": "accounts.tasks.retry_webhook_deliveries",
        "schedule": 15.0,
    },
    "pipeline-check-handoff-slas": {
        "task": "pipeline.tasks.check_handoff_slas",
        "schedule": 60.0,
    },
    "campaigns-nurture-dispatch": {
        "task": "campaigns.tasks.nurture_dispatch",
        "schedule": 10.0,
    },
    "campaigns-evaluate-segments": {
        "task": "campaigns.tasks.evaluate_segments",
        "schedule": 300.0,
    },
    "accounts-purge-idempotency-records": {
        "task": "accounts.tasks.purge_idempotency_records",
        "schedule": 3600.0,
    },
}
