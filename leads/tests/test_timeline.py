"""The lead timeline with campaign memberships: a join at the membership's created_at,
a status change at its updated_at when later, in one keyset-paged newest-first stream
with activities, transitions and consent changes."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from accounts.tenancy import tenant_scope
from campaigns.models import CampaignMembership
from campaigns.tests.factories import CampaignFactory, CampaignMembershipFactory
from leads import selectors
from leads.tests.factories import (
    ActivityFactory,
    ConsentEventFactory,
    LeadFactory,
    LifecycleTransitionFactory,
)
from leads.views.detail import TIMELINE_PAGE

pytestmark = pytest.mark.django_db

Status = CampaignMembership.Status


def url(world, name: str, **kwargs) -> str:
    return reverse(f"leads:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


def member(world, lead, at, *, changed_at=None, status=Status.REGISTERED, name=None):
    campaign = CampaignFactory(tenant=world.tenant, **({"name": name} if name else {}))
    return CampaignMembershipFactory(
        tenant=world.tenant, campaign=campaign, lead=lead, status=status,
        created_at=at, updated_at=changed_at or at,
    )  # fmt: skip


def all_pages(lead, limit: int) -> list[tuple]:
    """Every entry, following the cursor page by page as the UI and API do."""
    seen, cursor = [], None
    while True:
        entries, more = selectors.lead_timeline(lead, limit=limit, cursor=cursor)
        seen += [(e.kind, e.id, e.occurred_at) for e in entries]
        if not more:
            return seen
        cursor = selectors.decode_timeline_cursor(selectors.encode_timeline_cursor(entries[-1]))


def test_memberships_join_the_stream_and_page_across_boundaries(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    start = timezone.now() - timedelta(days=10)
    at = [start + timedelta(hours=hour) for hour in range(12)]
    activities = [ActivityFactory(tenant=world_a.tenant, lead=lead, occurred_at=at[i])
                  for i in (0, 2, 4, 6, 8, 10)]  # fmt: skip
    # Joined and never changed; joined then changed later; a join and an activity at
    # the very same moment (ties are broken by kind, then id); a change at the same
    # moment as a consent event.
    still = member(world_a, lead, at[1])
    moved = member(world_a, lead, at[3], changed_at=at[9], status=Status.ATTENDED)
    tied = member(world_a, lead, at[4])
    consent = ConsentEventFactory(tenant=world_a.tenant, lead=lead, occurred_at=at[9])
    transition = LifecycleTransitionFactory(tenant=world_a.tenant, lead=lead, occurred_at=at[11])
    # Another lead's membership never shows.
    member(world_a, LeadFactory(tenant=world_a.tenant), at[5])

    expected = sorted(
        [("activity", a.id, a.occurred_at) for a in activities]
        + [("campaign", m.id, m.created_at) for m in (still, moved, tied)]
        + [("campaign_status", moved.id, moved.updated_at),
           ("consent", consent.id, consent.occurred_at),
           ("transition", transition.id, transition.occurred_at)],
        key=lambda entry: (entry[2], entry[0], entry[1]),
        reverse=True,
    )  # fmt: skip
    with tenant_scope(world_a.tenant.id):
        for limit in (1, 2, 3, 4, 5, 50):
            assert all_pages(lead, limit) == expected, limit
        entries, _more = selectors.lead_timeline(lead, limit=50)
    by_kind = {(e.kind, e.id): e.data for e in entries}
    assert by_kind[("campaign", still.id)]["changed_later"] is False
    assert by_kind[("campaign", moved.id)]["changed_later"] is True
    assert by_kind[("campaign_status", moved.id)]["status"] == Status.ATTENDED


def test_the_lead_page_shows_joins_and_status_changes(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    start = timezone.now() - timedelta(days=3)
    member(world_a, lead, start, name="春のウェビナー", status=Status.REGISTERED)
    member(world_a, lead, start + timedelta(hours=1), changed_at=start + timedelta(days=1),
           name="展示会 2025", status=Status.ATTENDED)  # fmt: skip
    client = Client()
    client.force_login(world_a.member(Role.READ_ONLY))
    response = client.get(url(world_a, "detail", pk=lead.pk))
    assert response.status_code == 200
    items = [
        (item["kind"], item["title"], item["campaign"], item["status_label"])
        for item in response.context["timeline"]["items"]
    ]
    assert items == [
        ("campaign_status", "キャンペーンのステータス変更", "展示会 2025", "参加"),
        # Its status when it joined is not known any more: none is shown.
        ("campaign", "キャンペーンのメンバーに追加", "展示会 2025", ""),
        ("campaign", "キャンペーンのメンバーに追加", "春のウェビナー", "登録"),
    ]
    body = response.content.decode()
    with tenant_scope(world_a.tenant.id):
        campaign_id = CampaignMembership.objects.get(campaign__name="春のウェビナー").campaign_id
    assert reverse("campaigns:detail", kwargs={"tenant": "acme", "pk": campaign_id}) in body


def test_load_more_continues_after_a_page_full_of_memberships(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    start = timezone.now() - timedelta(days=5)
    for minute in range(TIMELINE_PAGE - 2):
        ActivityFactory(
            tenant=world_a.tenant, lead=lead, occurred_at=start + timedelta(minutes=minute + 10)
        )
    # Five memberships around the page boundary: the oldest activities and the joins
    # share the last rows of page one and the first rows of page two.
    for minute in range(5):
        member(world_a, lead, start + timedelta(minutes=minute * 3), name=f"メルマガ {minute}")
    client = Client()
    client.force_login(world_a.owner)
    first = client.get(url(world_a, "detail", pk=lead.pk)).context["timeline"]
    assert len(first["items"]) == TIMELINE_PAGE
    more = client.get(url(world_a, "timeline", pk=lead.pk), {"cursor": first["next_cursor"]})
    second = more.context["timeline"]
    assert second["next_cursor"] is None
    items = first["items"] + second["items"]
    assert len(items) == TIMELINE_PAGE - 2 + 5
    assert len({(item["kind"], item["id"]) for item in items}) == len(items)
    times = [item["at"] for item in items]
    assert times == sorted(times, reverse=True)
    # Activities at minutes 37…10, joins at 12, 9, 6, 3 and 0: the join at 12 comes
    # before the activity of the same minute (ties by kind), the one at 9 ends page one.
    assert [item["campaign"] for item in first["items"][25:]] == ["メルマガ 4", None, None, None,
                                                                  "メルマガ 3"]  # fmt: skip
    assert [item["campaign"] for item in second["items"]] == [
        "メルマガ 2",
        "メルマガ 1",
        "メルマガ 0",
    ]
