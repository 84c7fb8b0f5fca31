"""Celery tasks of leads (autodiscovered from here)."""

from leads.imports.tasks import run_import

__all__ = ["run_import"]
