"""Celery tasks of scoring: thin wrappers around leads.scoring.services."""

import datetime

from celery import shared_task
from django.utils import timezone

from accounts.tasks import tenant_task
from accounts.tenancy import unscoped

# Decay changes every behaviour score a little each day: a daily recompute is enough
# for points that halve over days or weeks.
DECAY_EVERY = datetime.timedelta(days=1)


# An incremental run locks its leads' rows until it commits: a big batch (an import's
# 100,000 leads) is scored in transactions of this many, so edits of those leads wait
# for a chunk, not for the whole file.
SCORE_CHUNK = 2000


@shared_task(name="leads.tasks.score_leads")
def score_leads(tenant_id: int, lead_ids: list[int]) -> dict:
    """Score the leads a transaction touched (activities arrived, leads changed), a
    chunk per transaction (each in the tenant's scope: scores_compute sets it)."""
    from leads.scoring.services import scores_compute

    total = {"scored": 0, "mql": 0}
    ids = sorted({int(lead_id) for lead_id in lead_ids})
    for start in range(0, len(ids), SCORE_CHUNK):
        result = scores_compute(tenant_id=int(tenant_id), lead_ids=ids[start : start + SCORE_CHUNK])
        total["scored"] += result["scored"]
        total["mql"] += result["mql"]
    return total


@shared_task(name="leads.tasks.roll_up_company_scores")
def roll_up_company_scores(tenant_id: int, company_ids: list[int]) -> int:
    """Roll the scores of these companies' leads up (after incremental runs)."""
    from leads.scoring.services import company_scores_roll_up

    ids = sorted({int(company_id) for company_id in company_ids})
    return company_scores_roll_up(tenant_id=int(tenant_id), company_ids=ids)


@tenant_task(name="leads.tasks.score_tenant")
def score_tenant(tenant_id: int, model_id: int | None = None) -> dict:
    """Recompute the tenant's scores (a model changed, or its decay is due)."""
    from leads.scoring.services import scores_compute

    return scores_compute(tenant_id=tenant_id, model_id=model_id)


@shared_task(name="leads.tasks.refresh_scores")
def refresh_scores() -> int:
    """Platform job: recompute models whose rules changed since their last full
    recompute, and models with decay not recomputed for a day. One task per model."""
    from django.db.models import F, Q

    from leads.models import ScoringModel

    stale_before = timezone.now() - DECAY_EVERY
    with unscoped(reason="periodic platform job: find scoring models to recompute"):
        due = list(
            ScoringModel.objects.filter(
                Q(scored_version__lt=F("version"))
                | Q(half_life_days__isnull=False, scored_at__lt=stale_before)
                | Q(scored_at__isnull=True)
            ).values_list("tenant_id", "id")
        )
    for tenant_id, model_id in due:
        score_tenant.delay(tenant_id, model_id)
    return len(due)
