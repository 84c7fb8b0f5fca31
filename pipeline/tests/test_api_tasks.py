"""The tasks API: the generic endpoint tests (list, retrieve, create, error format,
tenant isolation, roles and key scopes), then the filters, creating a task by hand,
completing it once, and reassigning it (who may, to whom, not once done)."""

import datetime

import pytest
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditLog, Role
from accounts.tenancy import tenant_scope
from campaigns.tests.factories import SequenceFactory
from leads.tests.factories import LeadFactory
from pipeline.models import Task
from pipeline.tests.factories import TaskFactory
from tests.api_base import APIEndpointTests, assert_error, detail_url, list_url, result_ids
from tests.fixtures import TenantWorld, api_client_for

pytestmark = pytest.mark.django_db


class TestTasksAPI(APIEndpointTests):
    route = "task"
    actions = {"list", "retrieve", "create"}
    invalid_payload = {"lead_id": 1, "title": ""}
    invalid_field = "title"
    invalid_query = {"assignee": "someone"}

    def make_object(self, world: TenantWorld) -> Model:
        return TaskFactory(tenant=world.tenant, assignee=world.owner)

    def get_create_payload(self, world: TenantWorld) -> dict:
        lead = LeadFactory(tenant=world.tenant)
        return {"lead_id": lead.pk, "title": "電話でフォロー", "due_date": "2026-12-01"}

    def check_created(self, world: TenantWorld, response) -> None:
        super().check_created(world, response)
        body = response.json()
        assert body["source"] == Task.Source.MANUAL
        assert body["due_date"] == "2026-12-01"
        assert body["done"] is False


def url(world: TenantWorld, pk: int, name: str) -> str:
    return reverse(f"api:tenant:task-{name}", kwargs={"tenant": world.tenant.slug, "pk": pk})


def tasks_url(world: TenantWorld) -> str:
    return list_url("task", world.tenant.slug)


# --- The list and its filters -------------------------------------------------------------------


def test_filters_by_assignee_done_lead_source_sequence_and_due(world_a):
    rep = world_a.member(Role.INSIDE_SALES)
    other = world_a.member(Role.FIELD_SALES)
    lead = LeadFactory(tenant=world_a.tenant)
    sequence = SequenceFactory(tenant=world_a.tenant)
    today = datetime.date(2026, 11, 24)
    mine = TaskFactory(tenant=world_a.tenant, assignee=rep, lead=lead, due_date=today)
    mine_done = TaskFactory(tenant=world_a.tenant, assignee=rep, done_at=timezone.now())
    theirs = TaskFactory(
        tenant=world_a.tenant,
        assignee=other,
        source=Task.Source.NURTURE,
        sequence=sequence,
        due_date=today + datetime.timedelta(days=3),
    )
    nobodys = TaskFactory(tenant=world_a.tenant, lead=lead)
    client = api_client_for(rep)
    base = tasks_url(world_a)

    def ids(**query) -> set[int]:
        return result_ids(client.get(base, query))

    assert ids() == {mine.pk, mine_done.pk, theirs.pk, nobodys.pk}
    assert ids(assignee="me") == {mine.pk, mine_done.pk}
    assert ids(assignee="me", done="false") == {mine.pk}
    assert ids(done="true") == {mine_done.pk}
    assert ids(assignee="none") == {nobodys.pk}
    assert ids(assignee=str(other.pk)) == {theirs.pk}
    assert ids(lead=str(lead.pk)) == {mine.pk, nobodys.pk}
    assert ids(source="nurture") == {theirs.pk}
    assert ids(sequence=str(sequence.pk)) == {theirs.pk}
    assert ids(due_before="2026-11-25") == {mine.pk}
    body = client.get(base, {"lead": lead.pk}).json()["results"]
    row = next(item for item in body if item["id"] == mine.pk)
    assert row["lead"]["id"] == lead.pk
    assert row["assignee_id"] == rep.pk
    assert row["due_date"] == "2026-11-24"


def test_assignee_me_with_an_api_key_is_nobodys_tasks(world_a):
    TaskFactory(tenant=world_a.tenant, assignee=world_a.owner)
    TaskFactory(tenant=world_a.tenant)
    key = api_client_for(api_key=world_a.api_key(role=Role.ADMIN))
    assert result_ids(key.get(list_url("task", None), {"assignee": "me"})) == set()


def test_a_bad_filter_value_is_named(world_a):
    client = api_client_for(world_a.owner)
    error = assert_error(client.get(tasks_url(world_a), {"due_before": "soon"}), 400, "invalid")
    assert set(error["fields"]) == {"due_before"}
    error = assert_error(client.get(tasks_url(world_a), {"done": "perhaps"}), 400, "invalid")
    assert set(error["fields"]) == {"done"}


# --- Create ----------------------------------------------------------------------------------


def test_create_for_a_colleague_is_audited(world_a):
    marketer = world_a.member(Role.MARKETING)
    rep = world_a.member(Role.INSIDE_SALES)
    lead = LeadFactory(tenant=world_a.tenant)
    response = api_client_for(marketer).post(
        tasks_url(world_a), {"lead_id": lead.pk, "title": "  見積もり送付  ", "assignee_id": rep.pk}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["title"], body["assignee_id"], body["created_by_id"]) == (
        "見積もり送付",
        rep.pk,
        marketer.pk,
    )
    with tenant_scope(world_a.tenant.id):
        assert AuditLog.objects.filter(action="task.created", target_id=str(body["id"])).exists()


def test_create_names_a_lead_or_assignee_of_another_tenant(world_a, world_b):
    foreign_lead = LeadFactory(tenant=world_b.tenant)
    client = api_client_for(world_a.owner)
    error = assert_error(
        client.post(
            tasks_url(world_a),
            {"lead_id": foreign_lead.pk, "title": "電話", "assignee_id": world_b.owner.pk},
        ),
        400,
        "invalid",
    )
    assert set(error["fields"]) == {"lead_id", "assignee_id"}
    with tenant_scope(world_a.tenant.id):
        assert not Task.objects.exists()


# --- Complete --------------------------------------------------------------------------------


def test_the_assignee_completes_once_and_others_may_not(world_a):
    rep = world_a.member(Role.INSIDE_SALES)
    colleague = world_a.member(Role.INSIDE_SALES)
    task = TaskFactory(tenant=world_a.tenant, assignee=rep)
    assert_error(
        api_client_for(colleague).post(url(world_a, task.pk, "complete")), 403, "permission_denied"
    )
    assert_error(
        api_client_for(world_a.member(Role.READ_ONLY)).post(url(world_a, task.pk, "complete")),
        403,
        "permission_denied",
    )
    response = api_client_for(rep).post(url(world_a, task.pk, "complete"))
    assert response.status_code == 200, response.content
    first = response.json()
    assert first["done"] is True
    assert first["done_by_id"] == rep.pk
    # Done again: nothing changes (the same time, one audit entry).
    again = api_client_for(rep).post(url(world_a, task.pk, "complete")).json()
    assert again["done_at"] == first["done_at"]
    with tenant_scope(world_a.tenant.id):
        assert AuditLog.objects.filter(action="task.done", target_id=str(task.pk)).count() == 1


# --- Reassign --------------------------------------------------------------------------------


def test_the_assignee_hands_a_task_on_and_it_is_audited(world_a):
    rep = world_a.member(Role.INSIDE_SALES)
    field = world_a.member(Role.FIELD_SALES)
    task = TaskFactory(tenant=world_a.tenant, assignee=rep)
    response = api_client_for(rep).post(
        url(world_a, task.pk, "reassign"), {"assignee_id": field.pk}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["assignee_id"] == field.pk
    with tenant_scope(world_a.tenant.id):
        entry = AuditLog.objects.get(action="task.reassigned", target_id=str(task.pk))
    assert entry.metadata == {"from": rep.pk, "to": field.pk}
    # The previous assignee no longer may; the new one may give it to nobody.
    assert_error(
        api_client_for(rep).post(
            url(world_a, task.pk, "reassign"), {"assignee_id": rep.pk}, format="json"
        ),
        403,
        "permission_denied",
    )
    response = api_client_for(field).post(
        url(world_a, task.pk, "reassign"), {"assignee_id": None}, format="json"
    )
    assert response.json()["assignee_id"] is None


def test_anyone_takes_an_unassigned_task_and_admins_move_any(world_a):
    rep = world_a.member(Role.INSIDE_SALES)
    task = TaskFactory(tenant=world_a.tenant, assignee=None)
    response = api_client_for(rep).post(
        url(world_a, task.pk, "reassign"), {"assignee_id": rep.pk}, format="json"
    )
    assert response.json()["assignee_id"] == rep.pk
    admin = world_a.member(Role.ADMIN)
    response = api_client_for(admin).post(
        url(world_a, task.pk, "reassign"), {"assignee_id": admin.pk}, format="json"
    )
    assert response.json()["assignee_id"] == admin.pk


def test_reassign_refuses_outsiders_and_done_tasks(world_a, world_b):
    task = TaskFactory(tenant=world_a.tenant, assignee=world_a.owner)
    client = api_client_for(world_a.owner)
    reassign = url(world_a, task.pk, "reassign")
    error = assert_error(
        client.post(reassign, {"assignee_id": world_b.owner.pk}, format="json"), 400, "invalid"
    )
    assert list(error["fields"]) == ["assignee_id"]
    error = assert_error(client.post(reassign, {}, format="json"), 400, "invalid")
    assert list(error["fields"]) == ["assignee_id"]
    client.post(url(world_a, task.pk, "complete"))
    rep = world_a.member(Role.INSIDE_SALES)
    error = assert_error(
        client.post(reassign, {"assignee_id": rep.pk}, format="json"), 400, "invalid"
    )
    assert list(error["fields"]) == ["assignee_id"]
    with tenant_scope(world_a.tenant.id):
        assert Task.objects.get(pk=task.pk).assignee_id == world_a.owner.pk


def test_another_tenants_task_is_404_on_actions(world_a, world_b):
    task = TaskFactory(tenant=world_a.tenant)
    client = api_client_for(world_b.owner)
    for name in ("complete", "reassign"):
        assert_error(client.post(url(world_b, task.pk, name)), 404)
    assert_error(client.get(detail_url("task", world_b.tenant.slug, task.pk)), 404)
    with tenant_scope(world_a.tenant.id):
        assert Task.objects.get(pk=task.pk).done_at is None
