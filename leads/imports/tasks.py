"""The import's background job: a thin task around services.import_run."""

from django.db import OperationalError

from accounts.tasks import tenant_task


@tenant_task(
    name="leads.imports.tasks.run_import",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
)
def run_import(tenant_id: int, job_id: int) -> dict | None:
    """Runs inside tenant_scope(tenant_id): one transaction, so a crash commits nothing
    and the redelivered task starts again; a finished job is left alone."""
    from leads.imports.services import import_run

    job = import_run(tenant_id=tenant_id, job_id=job_id)
    if job is None:
        return None
    return {"status": job.status, "created": job.created_count, "errors": job.error_count}
