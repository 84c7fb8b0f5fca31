"""PostgreSQL row-level security for every tenant-owned table.

`ensure_row_level_security()` runs after every `migrate` (post_migrate), so a new
TenantModel gets its policies without anyone writing them: the app role sees and
writes only rows whose tenant_id equals `app.tenant_id` (SET LOCAL per transaction);
the platform role, used by the named escape `unscoped()`, sees every row. FORCE ROW
LEVEL SECURITY makes the policies bind the table owner too; only superusers and
BYPASSRLS roles skip them, which is why tenant work runs as the app role.
`tenant_tables_missing_rls()` is what the system check and the tests read back.
"""

from django.conf import settings
from django.db import connections

TENANT_POLICY = "tenant_isolation"
PLATFORM_POLICY = "platform_access"
TENANT_PREDICATE = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint"


def _quote(connection, name: str) -> str:
    return connection.ops.quote_name(name)


def ensure_roles(using: str = "default") -> None:
    """Create the app and platform roles (NOLOGIN, no BYPASSRLS) if they are missing,
    and let the connecting user SET ROLE to them."""
    connection = connections[using]
    app_role, platform_role = settings.DB_APP_ROLE, settings.DB_PLATFORM_ROLE
    with connection.cursor() as cursor:
        for role in (app_role, platform_role):
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
            if cursor.fetchone() is None:
                cursor.execute(
                    f"CREATE ROLE {_quote(connection, role)} NOLOGIN NOSUPERUSER NOBYPASSRLS"
                )
            cursor.execute(
                "SELECT pg_has_role(current_user, %s, 'MEMBER'), "
                "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
                [role],
            )
            is_member, is_superuser = cursor.fetchone()
            if not is_member and not is_superuser:
                cursor.execute(f"GRANT {_quote(connection, role)} TO CURRENT_USER")


def ensure_grants(using: str = "default") -> None:
    """The app and platform roles may read and write every table (RLS decides which
    rows), now and for tables created later by the same owner."""
    connection = connections[using]
    roles = ", ".join(
        _quote(connection, role) for role in (settings.DB_APP_ROLE, settings.DB_PLATFORM_ROLE)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {roles}")
        cursor.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {roles}"
        )
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {roles}")
        cursor.execute(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {roles}"
        )
        cursor.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {roles}"
        )


def tenant_tables() -> list[str]:
    from accounts.models import tenant_models

    return sorted({model._meta.db_table for model in tenant_models()})


def ensure_row_level_security(using: str = "default") -> list[str]:
    """Enable and force RLS with both policies on every tenant table; returns the
    tables changed. Idempotent: a table already set up is left alone."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    ensure_roles(using)
    ensure_grants(using)
    existing = set(connection.introspection.table_names())
    changed = []
    platform_role = _quote(connection, settings.DB_PLATFORM_ROLE)
    with connection.cursor() as cursor:
        for table in tenant_tables():
            if table not in existing:
                continue
            quoted = _quote(connection, table)
            cursor.execute(
                "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class "
                "WHERE oid = %s::regclass",
                [quoted],
            )
            forced = cursor.fetchone()[0]
            cursor.execute("SELECT policyname FROM pg_policies WHERE tablename = %s", [table])
            policies = {row[0] for row in cursor.fetchall()}
            if forced and {TENANT_POLICY, PLATFORM_POLICY} <= policies:
                continue
            cursor.execute(f"ALTER TABLE {quoted} ENABLE ROW LEVEL SECURITY")
            cursor.execute(f"ALTER TABLE {quoted} FORCE ROW LEVEL SECURITY")
            if TENANT_POLICY not in policies:
                cursor.execute(
                    f"CREATE POLICY {TENANT_POLICY} ON {quoted} FOR ALL TO PUBLIC "
                    f"USING ({TENANT_PREDICATE}) WITH CHECK ({TENANT_PREDICATE})"
                )
            if PLATFORM_POLICY not in policies:
                cursor.execute(
                    f"CREATE POLICY {PLATFORM_POLICY} ON {quoted} FOR ALL TO {platform_role} "
                    "USING (true) WITH CHECK (true)"
                )
            changed.append(table)
    return changed


def tenant_tables_missing_rls(using: str = "default") -> list[str]:
    """Tenant tables (and any table with a tenant_id column) lacking forced RLS or a policy."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
              AND (c.relname = ANY(%s) OR EXISTS (
                    SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))
              AND NOT (c.relrowsecurity AND c.relforcerowsecurity
                       AND EXISTS (SELECT 1 FROM pg_policies p
                                   WHERE p.schemaname = n.nspname AND p.tablename = c.relname
                                     AND p.policyname = %s))
            ORDER BY c.relname
            """,
            [tenant_tables(), TENANT_POLICY],
        )
        return [row[0] for row in cursor.fetchall()]
