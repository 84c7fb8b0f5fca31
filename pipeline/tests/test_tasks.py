"""Sales tasks: made once per (enrolment, step) from `nurture.task_requested`, made by
hand, done by their assignee; the "my tasks" page."""

import datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from accounts import events
from accounts.models import DomainEvent, Role
from accounts.services import Origin
from accounts.tenancy import tenant_scope
from leads.tests.factories import LeadFactory
from pipeline import services
from pipeline.models import Task
from pipeline.tests.factories import TaskFactory

pytestmark = pytest.mark.django_db


def task_event(world, lead, **payload) -> DomainEvent:
    body = {
        "v": 1,
        "lead_id": lead.pk,
        "owner_id": lead.owner_id,
        "title": "電話でフォロー",
        "sequence_id": None,
        "enrolment_id": 501,
        "step_id": 9001,
        **payload,
    }
    with tenant_scope(world.tenant.id):
        return DomainEvent.objects.create(
            tenant=world.tenant, name="nurture.task_requested", payload=body
        )


def tasks_of(world) -> list[Task]:
    with tenant_scope(world.tenant.id):
        return list(Task.objects.order_by("id"))


def test_the_handler_is_registered():
    assert services.on_task_requested in events.handlers_for("nurture.task_requested")


def test_one_task_per_enrolment_and_step_however_often_delivered(world_a):
    rep = world_a.member(Role.INSIDE_SALES)
    lead = LeadFactory(tenant=world_a.tenant, owner=rep)
    event = task_event(world_a, lead)
    for _ in range(3):
        services.on_task_requested(event)
    # Another step of the same enrolment is another task.
    services.on_task_requested(task_event(world_a, lead, step_id=9002, title="訪問"))
    made = tasks_of(world_a)
    assert [(t.title, t.assignee_id, t.source, t.step_id) for t in made] == [
        ("電話でフォロー", rep.pk, Task.Source.NURTURE, 9001),
        ("訪問", rep.pk, Task.Source.NURTURE, 9002),
    ]


def test_the_due_date_is_a_day_of_the_tenants_calendar(world_a):
    world_a.tenant.time_zone = "Asia/Tokyo"
    world_a.tenant.save(update_fields=["time_zone"])
    lead = LeadFactory(tenant=world_a.tenant)
    # 2026-11-24 20:00 UTC is already the 25th in Tokyo.
    services.on_task_requested(
        task_event(world_a, lead, due_in_days=2, requested_at="2026-11-24T20:00:00+00:00")
    )
    services.on_task_requested(task_event(world_a, lead, step_id=1, due_in_days="soon"))
    first, second = tasks_of(world_a)
    assert first.due_date == datetime.date(2026, 11, 27)
    assert first.created_at == datetime.datetime(2026, 11, 24, 20, 0, tzinfo=datetime.UTC)
    assert second.due_date is None


def test_an_owner_who_left_gets_no_task_and_a_deleted_lead_none_at_all(world_a, world_b):
    outsider = world_b.owner  # works in tenant B only
    lead = LeadFactory(tenant=world_a.tenant, owner=outsider)
    services.on_task_requested(task_event(world_a, lead))
    [task] = tasks_of(world_a)
    assert task.assignee_id is None
    gone = LeadFactory(tenant=world_a.tenant)
    event = task_event(world_a, gone, enrolment_id=777)
    with tenant_scope(world_a.tenant.id):
        gone.delete()
    services.on_task_requested(event)
    assert len(tasks_of(world_a)) == 1


def test_a_malformed_event_makes_nothing(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    services.on_task_requested(task_event(world_a, lead, step_id=None))
    services.on_task_requested(task_event(world_a, lead, enrolment_id="1"))
    assert tasks_of(world_a) == []


def test_a_task_by_hand_is_checked(world_a, world_b):
    rep = world_a.member(Role.FIELD_SALES)
    origin = Origin(actor=rep, role=Role.FIELD_SALES)
    lead = LeadFactory(tenant=world_a.tenant)
    foreign_lead = LeadFactory(tenant=world_b.tenant)
    with pytest.raises(ValidationError) as caught:
        services.task_create(
            tenant_id=world_a.tenant.id,
            origin=origin,
            lead_id=foreign_lead.pk,
            title=" ",
            assignee_id=world_b.owner.pk,
        )
    assert set(caught.value.message_dict) == {"title", "lead_id", "assignee_id"}
    with pytest.raises(PermissionDenied):
        services.task_create(
            tenant_id=world_a.tenant.id,
            origin=Origin(role=Role.READ_ONLY),
            lead_id=lead.pk,
            title="見積",
        )
    task = services.task_create(
        tenant_id=world_a.tenant.id,
        origin=origin,
        lead_id=lead.pk,
        title="見積を送る",
        assignee_id=rep.pk,
        due_date=datetime.date(2026, 12, 1),
    )
    assert (task.source, task.created_by_id, task.assignee_id) == (
        Task.Source.MANUAL,
        rep.pk,
        rep.pk,
    )


def test_done_by_the_assignee_once_not_by_someone_else(world_a):
    rep, other = world_a.member(Role.INSIDE_SALES), world_a.member(Role.INSIDE_SALES)
    task = TaskFactory(tenant=world_a.tenant, assignee=rep)
    with pytest.raises(PermissionDenied):
        services.task_complete(task=task, origin=Origin(actor=other, role=Role.INSIDE_SALES))
    done = services.task_complete(task=task, origin=Origin(actor=rep, role=Role.INSIDE_SALES))
    assert done.done_by_id == rep.pk
    assert done.done_at is not None
    again = services.task_complete(task=task, origin=Origin(actor=world_a.owner, role=Role.OWNER))
    assert (again.done_at, again.done_by_id) == (done.done_at, rep.pk)


# --- The page -----------------------------------------------------------------------------------


def page(name, world, **kwargs) -> str:
    return reverse(f"pipeline:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


def test_my_tasks_shows_my_open_tasks_and_marks_them_done(client, world_a, world_b):
    rep, other = world_a.member(Role.INSIDE_SALES), world_a.member(Role.INSIDE_SALES)
    mine = TaskFactory(tenant=world_a.tenant, assignee=rep, title="資料送付の電話")
    TaskFactory(tenant=world_a.tenant, assignee=other, title="他人のタスク")
    TaskFactory(tenant=world_a.tenant, assignee=None, title="担当なしのタスク")
    TaskFactory(tenant=world_b.tenant, assignee=rep, title="別テナントのタスク")
    client.force_login(rep)
    body = client.get(page("tasks", world_a)).content.decode()
    assert "資料送付の電話" in body
    assert "他人のタスク" not in body
    assert "担当なしのタスク" not in body
    assert "別テナントのタスク" not in body
    assert (
        "担当なしのタスク"
        in client.get(page("tasks", world_a) + "?view=unassigned").content.decode()
    )
    response = client.post(page("task_done", world_a, pk=mine.pk), {"view": "mine"})
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        mine.refresh_from_db()
    assert mine.done_by_id == rep.pk
    after = client.get(page("tasks", world_a)).content.decode()
    assert f'data-testid="task-{mine.pk}"' not in after
    assert "完了しました：資料送付の電話" in after  # the confirmation, once


def test_someone_elses_task_cannot_be_marked_done_and_read_only_cannot_post(client, world_a):
    rep, other = world_a.member(Role.INSIDE_SALES), world_a.member(Role.INSIDE_SALES)
    theirs = TaskFactory(tenant=world_a.tenant, assignee=other)
    client.force_login(rep)
    client.post(page("task_done", world_a, pk=theirs.pk))
    with tenant_scope(world_a.tenant.id):
        theirs.refresh_from_db()
    assert theirs.done_at is None
    viewer = world_a.member(Role.READ_ONLY)
    client.force_login(viewer)
    assert client.get(page("tasks", world_a)).status_code == 200
    assert client.post(page("task_done", world_a, pk=theirs.pk)).status_code == 403
