"""The tenant context and manager: refusing to run without a tenant, nesting, escape."""

import pytest
from django.db import connection

from accounts.models import Membership
from accounts.tenancy import TenantNotSet, current_tenant_id, tenant_scope, unscoped

pytestmark = pytest.mark.django_db


def db_settings() -> tuple[str, str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, current_setting('role'), "
            "coalesce(current_setting('app.tenant_id', true), '')"
        )
        return cursor.fetchone()


def test_manager_refuses_to_query_without_a_tenant(world_a):
    with pytest.raises(TenantNotSet):
        list(Membership.objects.all())
    with pytest.raises(TenantNotSet):
        current_tenant_id()


def test_manager_filters_by_current_tenant(world_a, world_b):
    with tenant_scope(world_a.tenant.id):
        assert [m.user for m in Membership.objects.all()] == [world_a.owner]
    with tenant_scope(world_b.tenant.id):
        assert [m.user for m in Membership.objects.all()] == [world_b.owner]


def test_unscoped_sees_every_tenant_and_needs_a_reason(world_a, world_b):
    with unscoped(reason="test"):
        assert Membership.objects.count() == 2
    with pytest.raises(ValueError, match="reason"), unscoped(reason=""):
        pass


def test_nested_scope_restores_previous_tenant_and_role(world_a, world_b):
    outer_before = db_settings()
    with tenant_scope(world_a.tenant.id):
        assert db_settings()[1:] == ("ryorin_app", str(world_a.tenant.id))
        with tenant_scope(world_b.tenant.id):
            assert db_settings()[1:] == ("ryorin_app", str(world_b.tenant.id))
            assert current_tenant_id() == world_b.tenant.id
        assert db_settings()[1:] == ("ryorin_app", str(world_a.tenant.id))
        assert current_tenant_id() == world_a.tenant.id
        with unscoped(reason="test"):
            assert db_settings()[1:] == ("ryorin_platform", "")
        assert db_settings()[1:] == ("ryorin_app", str(world_a.tenant.id))
    # The test's own transaction is still open: nothing may leak into it.
    assert db_settings() == outer_before


def test_scope_left_by_an_exception_leaks_nothing(world_a):
    before = db_settings()
    with pytest.raises(RuntimeError), tenant_scope(world_a.tenant.id):
        raise RuntimeError("boom")
    assert db_settings() == before
    with pytest.raises(TenantNotSet):
        current_tenant_id()


def test_tenant_id_must_be_an_int():
    with pytest.raises(TypeError), tenant_scope("1"):  # type: ignore[arg-type]
        pass


def test_reentering_the_same_scope_sets_nothing_again(world_a):
    from django.test.utils import CaptureQueriesContext

    with tenant_scope(world_a.tenant.id):
        with CaptureQueriesContext(connection) as queries, tenant_scope(world_a.tenant.id):
            assert Membership.objects.count() == 1
        assert not any("set_config" in q["sql"] for q in queries.captured_queries)
        assert db_settings()[1:] == ("ryorin_app", str(world_a.tenant.id))


def test_a_failed_reentered_scope_leaves_the_callers_transaction_usable(world_a):
    from accounts.models import AuditLog

    def failing_service() -> None:
        with tenant_scope(world_a.tenant.id):
            AuditLog.objects.create(tenant=world_a.tenant, action="half-written")
            raise ValueError("refused")

    with tenant_scope(world_a.tenant.id):
        with pytest.raises(ValueError, match="refused"):
            failing_service()
        # The view goes on rendering in the same transaction, and the half write is gone.
        assert not AuditLog.objects.filter(action="half-written").exists()
        assert Membership.objects.count() == 1


def test_an_error_in_a_reentered_scope_still_rolls_back_its_savepointed_caller(world_a):
    from django.db import transaction

    from accounts.models import AuditLog

    def doomed_write() -> None:
        with transaction.atomic(), tenant_scope(world_a.tenant.id):
            AuditLog.objects.create(tenant=world_a.tenant, action="doomed")
            raise RuntimeError

    with tenant_scope(world_a.tenant.id):
        with pytest.raises(RuntimeError):
            doomed_write()
        # The enclosing transaction is still usable and the row is gone.
        assert not AuditLog.objects.filter(action="doomed").exists()


def test_single_write_reentry_can_skip_the_savepoint(world_a):
    from django.test.utils import CaptureQueriesContext

    with tenant_scope(world_a.tenant.id):
        with CaptureQueriesContext(connection) as queries:
            with tenant_scope(world_a.tenant.id, savepoint=False):
                Membership.objects.count()
        assert len(queries.captured_queries) == 1
    # Outside any scope the flag changes nothing: a scope still opens its transaction.
    with tenant_scope(world_a.tenant.id, savepoint=False):
        assert db_settings()[1:] == ("ryorin_app", str(world_a.tenant.id))
