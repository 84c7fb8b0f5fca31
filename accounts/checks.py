"""System checks: a tenant table without row-level security fails `manage.py check`."""

from django.core import checks
from django.db import connections
from django.db.utils import OperationalError, ProgrammingError


@checks.register(checks.Tags.database, deploy=True)
def tenant_tables_have_rls(app_configs=None, databases=None, **kwargs) -> list[checks.Error]:
    from accounts.rls import tenant_tables_missing_rls

    errors = []
    for alias in databases or []:
        if connections[alias].vendor != "postgresql":
            continue
        try:
            missing = tenant_tables_missing_rls(alias)
        except (OperationalError, ProgrammingError):
            continue  # database not reachable or not migrated: other checks say so
        errors.extend(
            checks.Error(
                f"Table {table!r} holds tenant rows but lacks forced row-level security "
                "or the tenant_isolation policy.",
                hint="Run `manage.py migrate` (post_migrate applies the policies).",
                id="accounts.E001",
            )
            for table in missing
        )
    return errors
