"""The segment pages: list, new with a "matches N leads" preview, edit, delete; roles."""

import pytest
from django.urls import reverse

from accounts.models import Role
from accounts.tenancy import tenant_scope
from campaigns.nurture.models import Segment
from campaigns.tests.factories import SegmentFactory
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


def page(name, world, **kwargs) -> str:
    return reverse(f"campaigns:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


def test_preview_counts_without_saving_then_save(client, world_a):
    LeadFactory.create_batch(3, tenant=world_a.tenant, lifecycle_stage="mql")
    LeadFactory(tenant=world_a.tenant, lifecycle_stage="lead")
    client.force_login(world_a.member(Role.MARKETING))
    data = {"name": "MQL", "filter": "stage=mql&cursor=xyz"}
    response = client.post(page("segment_new", world_a), {**data, "preview": "1"})
    assert response.status_code == 200
    assert "現在 3 件のリードが該当します。" in response.content.decode()
    with tenant_scope(world_a.tenant.id):
        assert not Segment.objects.exists()
    response = client.post(page("segment_new", world_a), data)
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        saved = Segment.objects.get()
    assert (saved.name, saved.filter) == ("MQL", "stage=mql")
    listing = client.get(page("segments", world_a)).content.decode()
    assert f'data-testid="segment-{saved.pk}"' in listing
    edit = client.get(page("segment_edit", world_a, pk=saved.pk)).content.decode()
    assert "現在 3 件のリードが該当します。" in edit


def test_a_bad_filter_is_shown_on_the_form(client, world_a):
    client.force_login(world_a.member(Role.MARKETING))
    response = client.post(page("segment_new", world_a), {"name": "x", "filter": "colour=red"})
    assert response.status_code == 400
    assert "colour: リード一覧の絞り込み条件ではありません。" in response.content.decode()
    with tenant_scope(world_a.tenant.id):
        assert not Segment.objects.exists()


def test_edit_and_delete(client, world_a):
    segment = SegmentFactory(tenant=world_a.tenant, name="旧", filter="stage=lead")
    client.force_login(world_a.member(Role.MARKETING))
    response = client.post(
        page("segment_edit", world_a, pk=segment.pk), {"name": "新", "filter": "stage=sal"}
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        segment.refresh_from_db()
    assert (segment.name, segment.filter) == ("新", "stage=sal")
    assert client.post(page("segment_delete", world_a, pk=segment.pk)).status_code == 302
    with tenant_scope(world_a.tenant.id):
        assert not Segment.objects.filter(pk=segment.pk).exists()


def test_read_only_sees_the_list_but_cannot_change(client, world_a):
    segment = SegmentFactory(tenant=world_a.tenant)
    client.force_login(world_a.member(Role.READ_ONLY))
    listing = client.get(page("segments", world_a))
    assert listing.status_code == 200
    assert segment.name in listing.content.decode()
    assert client.get(page("segment_new", world_a)).status_code == 403
    assert client.post(page("segment_delete", world_a, pk=segment.pk)).status_code == 403
    with tenant_scope(world_a.tenant.id):
        assert Segment.objects.filter(pk=segment.pk).exists()
