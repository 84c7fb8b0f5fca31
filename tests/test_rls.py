"""PostgreSQL row-level security, tested with raw SQL below the ORM.

The test database connection logs in as a superuser, which skips every policy; each
query here therefore runs as the app role (SET LOCAL ROLE), as the app itself does,
and the first test proves the policies filter rows that the superuser does see.
"""

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.utils import DatabaseError

from accounts.models import tenant_models
from accounts.rls import PLATFORM_POLICY, TENANT_POLICY, tenant_tables, tenant_tables_missing_rls
from tests.isolation import ROW_MAKERS

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows_in_both(world_a, world_b):
    """One row of every tenant-owned model in tenant A and in tenant B."""
    for maker in ROW_MAKERS.values():
        maker(world_a.tenant)
        maker(world_b.tenant)
    return world_a, world_b


def tenant_ids_seen(table: str, *, role: str, tenant: str | None) -> list[int]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('role', %s, true)", [role])
        if tenant is not None:
            cursor.execute("SELECT set_config('app.tenant_id', %s, true)", [tenant])
        cursor.execute(f'SELECT DISTINCT tenant_id FROM "{table}" ORDER BY 1')
        seen = [row[0] for row in cursor.fetchall()]
        transaction.set_rollback(True)
    return seen


def test_every_tenant_model_has_a_row_maker():
    missing = [m._meta.label for m in tenant_models() if m not in ROW_MAKERS]
    assert missing == [], f"add these to tests/isolation.py ROW_MAKERS: {missing}"


def test_every_tenant_table_has_forced_rls_and_both_policies():
    assert tenant_tables_missing_rls() == []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, array_agg(policyname::text ORDER BY policyname) FROM pg_policies "
            "GROUP BY tablename"
        )
        policies = dict(cursor.fetchall())
    for table in tenant_tables():
        assert set(policies.get(table, [])) >= {TENANT_POLICY, PLATFORM_POLICY}, table


def test_roles_are_unprivileged():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname IN (%s, %s)",
            [settings.DB_APP_ROLE, settings.DB_PLATFORM_ROLE],
        )
        roles = {name: (superuser, bypass) for name, superuser, bypass in cursor.fetchall()}
        cursor.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename = ANY(%s) AND tableowner IN (%s, %s)",
            [tenant_tables(), settings.DB_APP_ROLE, settings.DB_PLATFORM_ROLE],
        )
        owned_by_app_roles = cursor.fetchone()[0]
    assert roles == {
        settings.DB_APP_ROLE: (False, False),
        settings.DB_PLATFORM_ROLE: (False, False),
    }
    assert owned_by_app_roles == 0


def test_superuser_sees_both_tenants_so_the_policy_is_what_filters(rows_in_both):
    a, b = rows_in_both
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone()[0] is True
    for table in tenant_tables():
        with connection.cursor() as cursor:
            cursor.execute(
                f'SELECT DISTINCT tenant_id FROM "{table}" WHERE tenant_id IN (%s, %s)',
                [a.tenant.id, b.tenant.id],
            )
            assert {row[0] for row in cursor.fetchall()} == {a.tenant.id, b.tenant.id}, table


def test_app_role_with_no_tenant_sees_no_rows(rows_in_both):
    for table in tenant_tables():
        assert tenant_ids_seen(table, role=settings.DB_APP_ROLE, tenant=None) == [], table
        assert tenant_ids_seen(table, role=settings.DB_APP_ROLE, tenant="") == [], table


def test_app_role_with_tenant_b_sees_only_b(rows_in_both):
    _, b = rows_in_both
    for table in tenant_tables():
        seen = tenant_ids_seen(table, role=settings.DB_APP_ROLE, tenant=str(b.tenant.id))
        assert seen == [b.tenant.id], table


def test_platform_role_sees_every_tenant(rows_in_both):
    a, b = rows_in_both
    for table in tenant_tables():
        seen = tenant_ids_seen(table, role=settings.DB_PLATFORM_ROLE, tenant=None)
        assert {a.tenant.id, b.tenant.id} <= set(seen), table


def test_app_role_cannot_write_into_another_tenant(rows_in_both):
    a, b = rows_in_both
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('role', %s, true), set_config('app.tenant_id', %s, true)",
            [settings.DB_APP_ROLE, str(b.tenant.id)],
        )
        # Moving B's row into A is refused by WITH CHECK...
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            cursor.execute(
                "UPDATE accounts_auditlog SET tenant_id = %s WHERE tenant_id = %s",
                [a.tenant.id, b.tenant.id],
            )
        # ...and so is inserting a row for A.
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            cursor.execute(
                "INSERT INTO accounts_auditlog (tenant_id, action, target_type, target_id,"
                " target_repr, metadata, user_agent, created_at)"
                " VALUES (%s, 'x', '', '', '', '{}', '', now())",
                [a.tenant.id],
            )
        # Deleting A's rows silently touches nothing: they are invisible.
        cursor.execute("DELETE FROM accounts_auditlog WHERE tenant_id = %s", [a.tenant.id])
        assert cursor.rowcount == 0
        transaction.set_rollback(True)


def test_app_role_cannot_switch_off_rls_or_truncate(rows_in_both):
    for statement in (
        "ALTER TABLE accounts_membership DISABLE ROW LEVEL SECURITY",
        "TRUNCATE accounts_membership CASCADE",
    ):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('role', %s, true)", [settings.DB_APP_ROLE])
            with pytest.raises(DatabaseError), transaction.atomic():
                cursor.execute(statement)
            transaction.set_rollback(True)


def test_tenant_id_is_pinned_by_rls_not_by_a_foreign_key():
    """Bulk writes pay no per-row RI trigger for tenant_id; WITH CHECK (tested above)
    is what keeps a row in its tenant."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.conrelid::regclass::text
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
            WHERE c.contype = 'f' AND a.attname = 'tenant_id'
            """
        )
        tables_with_fk = sorted(row[0] for row in cursor.fetchall())
    assert tables_with_fk == []
