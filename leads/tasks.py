"""Celery tasks of leads (autodiscovered from here)."""

from leads.capture.tasks import send_form_confirmation
from leads.imports.tasks import run_import
from leads.scoring.tasks import (
    refresh_scores,
    roll_up_company_scores,
    score_leads,
    score_tenant,
)

__all__ = [
    "refresh_scores",
    "roll_up_company_scores",
    "run_import",
    "score_leads",
    "score_tenant",
    "send_form_confirmation",
]
