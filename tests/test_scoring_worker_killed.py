"""A Celery worker killed in the middle of a full score recompute: no point lost or
counted twice, no lead moved to MQL twice.

A real prefork worker (one child) runs `score_tenant` through the local Redis broker.
The test holds a row lock on one lead the recompute will move to MQL, so the task stops
after writing every score (uncommitted) inside its promotion step; the child is then
killed with SIGKILL. Its transaction dies with its connection; the parent re-queues
the task (acks_late + reject_on_worker_lost) and a new child runs it again once the
lock is released. The scores, transitions and events are then exactly those of one
clean run.
"""

import os
import signal
import subprocess
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection

from accounts.models import DomainEvent
from accounts.tenancy import tenant_scope
from leads.models import (
    ActivityType,
    LeadScore,
    LifecycleStage,
    LifecycleTransition,
    ScoringModel,
)
from leads.scoring import fields
from leads.scoring.services import _rules_replace, rule_clean
from leads.scoring.tasks import score_tenant
from leads.tests.factories import ActivityFactory, LeadFactory
from tests.test_celery_worker import (
    Worker,
    _test_database_url,
    broker_url,
    running_worker,
    sending_to,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]
__all__ = ["broker_url"]  # the fixture, imported for this module's worker

LEADS = 30


@pytest.fixture
def prefork_worker(django_db_setup, broker_url: str) -> Iterator[Worker]:
    # One child, so the test knows which process to kill.
    with (
        running_worker(worker_env(broker_url), pool="prefork", concurrency=1) as started,
        sending_to(started),
    ):
        yield started


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line) for line in out.stdout.split()]


def _promotion_waiting() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE '%%WITH eligible AS%%'"
        )
        return cursor.fetchone()[0] > 0


def test_a_worker_killed_mid_recompute_loses_and_doubles_nothing(prefork_worker, world_a):
    process, log_path = prefork_worker.process, prefork_worker.log_path
    tenant = world_a.tenant
    leads = [LeadFactory(tenant=tenant, lifecycle_stage=LifecycleStage.LEAD) for _ in range(LEADS)]
    for lead in leads:
        for _ in range(3):
            ActivityFactory(tenant=tenant, lead=lead, type=ActivityType.FORM_SUBMISSION)
    # Straight to the tables: the service would queue a recompute of its own.
    with tenant_scope(tenant.id):
        model = ScoringModel.objects.create(tenant_id=tenant.id, name="標準", is_primary=True,
                                            mql_threshold=50)  # fmt: skip
        fit_fields = fields.fit_fields_for_tenant()
        rule = {"kind": "behaviour", "activity_type": "form_submission", "points": 20}
        _rules_replace(model, [rule_clean(rule, fit_fields)])

    def tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])

    blocker = psycopg.connect(_test_database_url().replace("postgres://", "postgresql://"))
    try:
        blocker.execute("SELECT id FROM leads_lead WHERE id = %s FOR UPDATE", [leads[-1].id])
        score_tenant.delay(tenant.id, model.id)
        wait_for(_promotion_waiting, "the recompute to stop in its promotion step", tail)
        children = _children(process.pid)
        assert len(children) == 1, children
        os.kill(children[0], signal.SIGKILL)
        wait_for(
            lambda: any(pid != children[0] for pid in _children(process.pid)),
            "a new worker child",
            tail,
        )
        # The killed run wrote nothing that stayed.
        with tenant_scope(tenant.id):
            assert not LeadScore.objects.exists()
        wait_for(_promotion_waiting, "the re-queued task to reach the same step", tail)
    finally:
        blocker.rollback()
        blocker.close()

    def finished() -> bool:
        with tenant_scope(tenant.id):
            return LifecycleTransition.objects.filter(to_stage=LifecycleStage.MQL).count() == LEADS

    wait_for(finished, "the re-run to finish", tail)
    with tenant_scope(tenant.id):
        totals = list(LeadScore.objects.values_list("total", flat=True))
        transitions = LifecycleTransition.objects.filter(to_stage=LifecycleStage.MQL).count()
        reached = DomainEvent.objects.filter(name="lead.mql_reached").count()
    assert sorted(totals) == [60] * LEADS  # 3 x 20 each, counted once
    assert transitions == LEADS
    assert reached == LEADS
    assert "SIGKILL" in log_path.read_text(errors="replace") or "signal 9" in tail()
