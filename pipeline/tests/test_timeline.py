"""Sales tasks on the lead timeline (pipeline registers into leads' extension point):
made and done, merged into the one keyset-paged newest-first stream, a constant number
of queries per page however many rows, shown on the lead page and in the API."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from accounts.tenancy import tenant_scope
from campaigns.tests.factories import (
    CampaignFactory,
    CampaignMembershipFactory,
    EnrolmentFactory,
    OutgoingMessageFactory,
    SequenceFactory,
)
from leads import selectors
from leads.tests.factories import ActivityFactory, ConsentEventFactory, LeadFactory
from pipeline.models import Task
from pipeline.tests.factories import TaskFactory
from tests.fixtures import api_client_for

pytestmark = pytest.mark.django_db


def all_pages(lead, limit: int) -> list[tuple]:
    """Every entry, following the cursor page by page as the UI and API do."""
    seen, cursor = [], None
    while True:
        entries, more = selectors.lead_timeline(lead, limit=limit, cursor=cursor)
        seen += [(e.kind, e.id, e.occurred_at) for e in entries]
        if not more:
            return seen
        cursor = selectors.decode_timeline_cursor(selectors.encode_timeline_cursor(entries[-1]))


def test_the_kinds_are_registered_and_their_cursors_decode():
    assert {"task", "task_done", "enrolment", "enrolment_end", "email"} <= set(
        selectors.timeline_kinds()
    )
    at = timezone.now()
    entry = selectors.TimelineEntry("task_done", 7, at, {})
    assert selectors.decode_timeline_cursor(selectors.encode_timeline_cursor(entry)) == (
        at,
        "task_done",
        7,
    )
    with pytest.raises(ValueError, match="leads"):
        selectors.register_timeline_source("activity", "x", lambda lead, past, limit: [])


def test_tasks_made_and_done_join_the_stream_and_page_across_boundaries(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    start = timezone.now() - timedelta(days=10)
    at = [start + timedelta(hours=hour) for hour in range(12)]
    activities = [ActivityFactory(tenant=world_a.tenant, lead=lead, occurred_at=at[i])
                  for i in (0, 3, 6, 9)]  # fmt: skip
    # Open; done later; made at the very moment of an activity (ties: by kind, then
    # id); done at the same moment as a consent change; two made at one instant.
    open_task = TaskFactory(tenant=world_a.tenant, lead=lead, created_at=at[1])
    done = TaskFactory(tenant=world_a.tenant, lead=lead, created_at=at[2], done_at=at[8])
    tied = TaskFactory(tenant=world_a.tenant, lead=lead, created_at=at[3], done_at=at[10])
    twins = [TaskFactory(tenant=world_a.tenant, lead=lead, created_at=at[5]) for _ in "ab"]
    consent = ConsentEventFactory(tenant=world_a.tenant, lead=lead, occurred_at=at[10])
    # Another lead's task never shows.
    TaskFactory(tenant=world_a.tenant, created_at=at[4], done_at=at[7])

    expected = sorted(
        [("activity", a.id, a.occurred_at) for a in activities]
        + [("task", t.id, t.created_at) for t in (open_task, done, tied, *twins)]
        + [("task_done", t.id, t.done_at) for t in (done, tied)]
        + [("consent", consent.id, consent.occurred_at)],
        key=lambda entry: (entry[2], entry[0], entry[1]),
        reverse=True,
    )
    with tenant_scope(world_a.tenant.id):
        for limit in (1, 2, 3, 4, 5, 50):
            assert all_pages(lead, limit) == expected, limit
        entries, _more = selectors.lead_timeline(lead, limit=50)
    data = {(e.kind, e.id): e.data for e in entries}
    assert data[("task", done.id)]["title"] == done.title
    assert data[("task_done", done.id)]["title"] == done.title


def test_a_page_costs_the_same_queries_however_many_rows(world_a):
    def queries_for(lead) -> int:
        with tenant_scope(world_a.tenant.id), CaptureQueriesContext(connection) as captured:
            selectors.lead_timeline(lead, limit=5)
        return len(captured.captured_queries)

    few, many = LeadFactory(tenant=world_a.tenant), LeadFactory(tenant=world_a.tenant)
    now = timezone.now()
    TaskFactory(tenant=world_a.tenant, lead=few, done_at=now)
    for minutes in range(12):
        at = now - timedelta(minutes=minutes)
        TaskFactory(tenant=world_a.tenant, lead=many, created_at=at, done_at=at)
        ActivityFactory(tenant=world_a.tenant, lead=many, occurred_at=at)
        EnrolmentFactory(tenant=world_a.tenant, lead=many, enrolled_at=at, finished_at=at)
        message = OutgoingMessageFactory(tenant=world_a.tenant, lead=many, sent_at=at)
        assert message.lead_id == many.pk
    # One query per kind: leads' five, pipeline's two, nurture's three.
    assert queries_for(few) == queries_for(many) == 5 + 2 + 3


def test_the_lead_page_shows_tasks_with_assignee_due_day_and_origin(world_a):
    rep = world_a.member(Role.INSIDE_SALES, user__full_name="営業 花子")
    lead = LeadFactory(tenant=world_a.tenant)
    sequence = SequenceFactory(tenant=world_a.tenant)
    start = timezone.now() - timedelta(days=2)
    TaskFactory(
        tenant=world_a.tenant, lead=lead, title="電話でフォロー", assignee=rep,
        due_date=(start + timedelta(days=3)).date(), created_at=start,
        source=Task.Source.NURTURE, sequence=sequence,
        done_at=start + timedelta(days=1), done_by=rep,
    )  # fmt: skip
    TaskFactory(
        tenant=world_a.tenant,
        lead=lead,
        title="見積もり送付",
        created_at=start + timedelta(hours=1),
    )
    client = Client()
    # In English: the labels stay what this test says whatever the catalogue holds.
    client.force_login(world_a.member(Role.READ_ONLY, user__language="en"))
    response = client.get(
        reverse("leads:detail", kwargs={"tenant": world_a.tenant.slug, "pk": lead.pk})
    )
    assert response.status_code == 200
    items = [
        (item["kind"], item["title"], item["change"], item["badge"], item["body"])
        for item in response.context["timeline"]["items"]
    ]
    due = (start + timedelta(days=3)).date().isoformat()
    assert items == [
        ("task_done", "Task done", "電話でフォロー", "", ""),
        ("task", "Task created", "見積もり送付", "", "Not assigned yet"),
        ("task", "Task created", "電話でフォロー", "Nurture sequence",
         f"Assigned to 営業 花子 · Due {due}"),
    ]  # fmt: skip
    assert response.context["timeline"]["items"][0]["actor"] == rep
    body = response.content.decode()
    assert 'data-kind="task_done"' in body
    assert "電話でフォロー" in body


def test_the_api_timeline_carries_tasks(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    task = TaskFactory(tenant=world_a.tenant, lead=lead, assignee=world_a.owner)
    campaign = CampaignFactory(tenant=world_a.tenant)
    CampaignMembershipFactory(tenant=world_a.tenant, lead=lead, campaign=campaign)
    response = api_client_for(world_a.owner).get(
        reverse("api:tenant:lead-timeline", kwargs={"tenant": world_a.tenant.slug, "pk": lead.pk})
    )
    assert response.status_code == 200, response.content
    by_kind = {entry["kind"]: entry for entry in response.json()["results"]}
    assert by_kind["task"]["id"] == task.pk
    assert by_kind["task"]["data"]["assignee_id"] == world_a.owner.pk
    assert "campaign" in by_kind
