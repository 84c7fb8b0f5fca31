"""Celery tasks of leads (autodiscovered from here)."""

from leads.capture.tasks import send_form_confirmation
from leads.imports.tasks import run_import

__all__ = ["run_import", "send_form_confirmation"]
