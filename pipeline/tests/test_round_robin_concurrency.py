"""Round robin under concurrency: MQLs routed at the same moment, each in its own
transaction and connection, still take strict turns (the team row is locked)."""

import itertools
import threading
from collections import Counter

import pytest
from django.db import connections

from accounts.models import Role
from accounts.services import SYSTEM
from accounts.tenancy import tenant_scope
from leads.models import LifecycleStage
from leads.tests.factories import LeadFactory
from pipeline import services
from pipeline.models import Handoff
from pipeline.tests.factories import TeamFactory, TeamMemberFactory


@pytest.mark.django_db(transaction=True)
def test_concurrent_mqls_take_turns(world_a, monkeypatch):
    # The handoff.created events are not under test. Dispatched eagerly from twelve
    # threads at once, Celery's process-wide "join will block" flag (set and restored
    # around each eager task, not thread-safe) could be left set for later tests.
    monkeypatch.setattr("accounts.events._send_dispatch", lambda tenant_id, ids: None)
    reps = [world_a.member(Role.INSIDE_SALES) for _ in range(3)]
    team = TeamFactory(tenant=world_a.tenant)
    for rep in reps:
        TeamMemberFactory(tenant=world_a.tenant, team=team, user=rep)
    services.handoff_settings_update(
        tenant_id=world_a.tenant.id, origin=SYSTEM, default_team_id=team.id
    )
    leads = [
        LeadFactory(tenant=world_a.tenant, lifecycle_stage=LifecycleStage.MQL) for _ in range(12)
    ]
    barrier = threading.Barrier(len(leads))
    errors: list[BaseException] = []

    def route(lead_id: int) -> None:
        try:
            barrier.wait(timeout=30)
            services.handoff_create_for_lead(tenant_id=world_a.tenant.id, lead_id=lead_id)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=route, args=(lead.id,)) for lead in leads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with tenant_scope(world_a.tenant.id):
        owners = list(Handoff.objects.order_by("id").values_list("owner_id", flat=True))
    assert len(owners) == 12
    # Fair: four each; and in commit order nobody gets two in a row.
    assert Counter(owners) == {rep.id: 4 for rep in reps}
    assert all(a != b for a, b in itertools.pairwise(owners))
