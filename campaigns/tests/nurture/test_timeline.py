"""Nurturing on the lead timeline (campaigns registers into leads' extension point):
enrolled, finished or left (with the reason), and each mail sent, merged into the one
keyset-paged newest-first stream; on the lead page each names and links its sequence."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from accounts.tenancy import tenant_scope
from campaigns.models import Enrolment, OutgoingMessage
from campaigns.tests.factories import EnrolmentFactory, OutgoingMessageFactory, SequenceFactory
from leads import selectors
from leads.tests.factories import ActivityFactory, LeadFactory
from leads.views.detail import TIMELINE_PAGE

pytestmark = pytest.mark.django_db

State = Enrolment.State


def all_pages(lead, limit: int) -> list[tuple]:
    seen, cursor = [], None
    while True:
        entries, more = selectors.lead_timeline(lead, limit=limit, cursor=cursor)
        seen += [(e.kind, e.id, e.occurred_at) for e in entries]
        if not more:
            return seen
        cursor = selectors.decode_timeline_cursor(selectors.encode_timeline_cursor(entries[-1]))


def test_enrolments_and_mails_join_the_stream_and_page_across_boundaries(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    start = timezone.now() - timedelta(days=10)
    at = [start + timedelta(hours=hour) for hour in range(10)]
    activity = ActivityFactory(tenant=world_a.tenant, lead=lead, occurred_at=at[2])
    live = EnrolmentFactory(tenant=world_a.tenant, lead=lead, enrolled_at=at[0])
    over = EnrolmentFactory(
        tenant=world_a.tenant, lead=lead, enrolled_at=at[1], finished_at=at[7],
        state=State.EXITED, exit_reason=Enrolment.ExitReason.UNSUBSCRIBED,
    )  # fmt: skip
    sent = OutgoingMessageFactory(
        tenant=world_a.tenant, enrolment=live, status=OutgoingMessage.Status.SENT, sent_at=at[2]
    )
    OutgoingMessageFactory(tenant=world_a.tenant, enrolment=over)  # queued: not sent, not shown
    # Another lead's enrolment and mail never show.
    OutgoingMessageFactory(tenant=world_a.tenant, sent_at=at[3])

    expected = sorted(
        [("activity", activity.id, activity.occurred_at),
         ("enrolment", live.id, live.enrolled_at), ("enrolment", over.id, over.enrolled_at),
         ("enrolment_end", over.id, over.finished_at), ("email", sent.id, sent.sent_at)],
        key=lambda entry: (entry[2], entry[0], entry[1]),
        reverse=True,
    )  # fmt: skip
    with tenant_scope(world_a.tenant.id):
        for limit in (1, 2, 3, 50):
            assert all_pages(lead, limit) == expected, limit


def test_the_lead_page_names_and_links_the_sequence(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    sequence = SequenceFactory(tenant=world_a.tenant, name="展示会フォロー")
    start = timezone.now() - timedelta(days=3)
    enrolment = EnrolmentFactory(
        tenant=world_a.tenant, lead=lead, sequence=sequence, enrolled_at=start,
        source=Enrolment.Source.SEGMENT, state=State.EXITED,
        exit_reason=Enrolment.ExitReason.BOUNCED, finished_at=start + timedelta(days=2),
    )  # fmt: skip
    OutgoingMessageFactory(
        tenant=world_a.tenant, enrolment=enrolment, subject="資料のご案内",
        status=OutgoingMessage.Status.BOUNCED, sent_at=start + timedelta(days=1),
    )  # fmt: skip
    client = Client()
    client.force_login(world_a.member(Role.READ_ONLY, user__language="en"))
    response = client.get(
        reverse("leads:detail", kwargs={"tenant": world_a.tenant.slug, "pk": lead.pk})
    )
    assert response.status_code == 200
    items = [
        (item["kind"], item["title"], item["change"], item["badge"], item.get("body", ""))
        for item in response.context["timeline"]["items"]
    ]
    assert items == [
        ("enrolment_end", "Left a sequence", "展示会フォロー", "Bounced", ""),
        ("email", "Nurture mail sent", "展示会フォロー", "Bounced", "資料のご案内"),
        ("enrolment", "Enrolled in a sequence", "展示会フォロー", "Matched a segment", ""),
    ]
    link = reverse(
        "campaigns:nurture_sequence", kwargs={"tenant": world_a.tenant.slug, "pk": sequence.pk}
    )
    assert all(item["link"] == link for item in response.context["timeline"]["items"])
    assert f'href="{link}"' in response.content.decode()


def test_load_more_continues_through_nurture_entries(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    start = timezone.now() - timedelta(days=5)
    for minute in range(TIMELINE_PAGE // 2 + 2):  # two entries each: a page and a bit
        enrolment = EnrolmentFactory(
            tenant=world_a.tenant, lead=lead, enrolled_at=start + timedelta(minutes=minute)
        )
        OutgoingMessageFactory(
            tenant=world_a.tenant, enrolment=enrolment, sent_at=start + timedelta(minutes=minute)
        )
    client = Client()
    client.force_login(world_a.owner)
    detail = reverse("leads:detail", kwargs={"tenant": world_a.tenant.slug, "pk": lead.pk})
    first = client.get(detail).context["timeline"]
    assert len(first["items"]) == TIMELINE_PAGE
    more = client.get(
        reverse("leads:timeline", kwargs={"tenant": world_a.tenant.slug, "pk": lead.pk}),
        {"cursor": first["next_cursor"]},
    ).context["timeline"]
    items = first["items"] + more["items"]
    assert more["next_cursor"] is None
    assert len(items) == 2 * (TIMELINE_PAGE // 2 + 2)
    assert len({(item["kind"], item["id"]) for item in items}) == len(items)
    # At each minute the enrolment and its mail: "enrolment" sorts after "email".
    assert [item["kind"] for item in items[:2]] == ["enrolment", "email"]
