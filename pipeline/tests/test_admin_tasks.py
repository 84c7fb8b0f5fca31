"""Tasks in the platform admin: both tenants' rows, read-only, and the actions (done,
unassign) through pipeline.services, audited, in each row's tenant."""

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditLog, Role
from accounts.tenancy import tenant_scope, unscoped
from accounts.tests.factories import UserFactory
from pipeline.models import Task
from pipeline.tests.factories import TaskFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:pipeline_task_changelist"


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_the_list_shows_both_tenants_read_only(
    staff_client, world_a, world_b, django_assert_max_num_queries
):
    made = [
        TaskFactory(tenant=w.tenant, assignee=w.owner) for w in (world_a, world_b) for _ in "abc"
    ]
    with django_assert_max_num_queries(12):
        response = staff_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert {t.pk for t in made} <= {row.pk for row in response.context["cl"].result_list}
    change = reverse("admin:pipeline_task_change", args=[made[-1].pk])
    assert staff_client.get(change).status_code == 200
    assert staff_client.post(change, {"title": "書き換え"}).status_code == 403
    assert staff_client.get(reverse("admin:pipeline_task_add")).status_code == 403
    done = staff_client.get(reverse(CHANGELIST), {"done": "no"}).context["cl"].result_list
    assert {t.pk for t in made} <= {row.pk for row in done}


def test_actions_complete_and_unassign_through_the_services(staff_client, world_a, world_b):
    rep = world_a.member(Role.INSIDE_SALES)
    a_task = TaskFactory(tenant=world_a.tenant, assignee=rep)
    b_task = TaskFactory(tenant=world_b.tenant, assignee=world_b.owner)
    finished = TaskFactory(tenant=world_a.tenant, assignee=rep, done_at=timezone.now())
    response = staff_client.post(
        reverse(CHANGELIST), {"action": "unassign", "_selected_action": [a_task.pk, finished.pk]}
    )
    assert response.status_code == 302
    with unscoped("test"):
        assert Task.objects.get(pk=a_task.pk).assignee_id is None
        assert Task.objects.get(pk=finished.pk).assignee_id == rep.pk  # done: left alone
    response = staff_client.post(
        reverse(CHANGELIST), {"action": "mark_done", "_selected_action": [a_task.pk, b_task.pk]}
    )
    assert response.status_code == 302
    with unscoped("test"):
        assert (
            Task.objects.filter(pk__in=[a_task.pk, b_task.pk], done_at__isnull=False).count() == 2
        )
    for world, task in ((world_a, a_task), (world_b, b_task)):
        with tenant_scope(world.tenant.id):
            assert AuditLog.objects.filter(action="task.done", target_id=str(task.pk)).exists()
    with tenant_scope(world_a.tenant.id):
        assert AuditLog.objects.filter(action="task.reassigned").count() == 1
