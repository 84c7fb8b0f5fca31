"""Segments in the platform admin: both tenants' rows listed, made and changed through
campaigns.nurture.segments (a refused filter named, nothing saved), deleted through it
(audited), and "evaluate now" enrolling as the beat task does."""

import pytest
from django.contrib import messages
from django.urls import reverse

from accounts.models import AuditLog, Role, User
from accounts.services import Origin
from accounts.tenancy import tenant_scope, unscoped
from campaigns.models import Enrolment, Segment, Sequence
from campaigns.nurture import services as nurture
from campaigns.tests.factories import (
    EmailTemplateFactory,
    SegmentFactory,
    SenderIdentityFactory,
)
from leads.models import LifecycleStage
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

MARKETER = Origin(role=Role.MARKETING)


@pytest.fixture
def admin(client, db):
    client.force_login(User.objects.create_superuser("root@ryorin.example", "correct horse"))
    return client


CHANGELIST = "admin:campaigns_segment_changelist"


def change(segment) -> str:
    return reverse("admin:campaigns_segment_change", args=[segment.pk])


def test_the_list_shows_both_tenants_and_pages_open(
    admin, world_a, world_b, django_assert_max_num_queries
):
    made = [SegmentFactory(tenant=w.tenant) for w in (world_a, world_b) for _ in range(3)]
    with django_assert_max_num_queries(12):
        response = admin.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert {s.pk for s in made} <= {row.pk for row in response.context["cl"].result_list}
    assert admin.get(change(made[-1])).status_code == 200
    assert admin.get(reverse("admin:campaigns_segment_add")).status_code == 200


def test_add_goes_through_the_service_and_stores_the_lists_query(admin, world_a):
    response = admin.post(
        reverse("admin:campaigns_segment_add"),
        {"tenant": world_a.tenant.pk, "name": "MQL", "filter": "?stage=mql&cursor=abc"},
    )
    assert response.status_code == 302, response.content
    with tenant_scope(world_a.tenant.id):
        segment = Segment.objects.get(name="MQL")
        assert segment.filter == "stage=mql"
        assert AuditLog.objects.filter(action="segment.created", target_id=str(segment.pk)).exists()


def test_a_refused_filter_is_named_and_nothing_changes(admin, world_a):
    segment = SegmentFactory(tenant=world_a.tenant, filter="stage=mql")
    response = admin.post(
        change(segment), {"name": segment.name, "filter": "colour=red"}, follow=True
    )
    errors = [str(m) for m in response.context["messages"] if m.level == messages.ERROR]
    assert any("colour" in error for error in errors)
    with tenant_scope(world_a.tenant.id):
        assert Segment.objects.get(pk=segment.pk).filter == "stage=mql"


def test_delete_goes_through_the_service(admin, world_a):
    segment = SegmentFactory(tenant=world_a.tenant)
    response = admin.post(
        reverse("admin:campaigns_segment_delete", args=[segment.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    with unscoped("test"):
        assert not Segment.objects.filter(pk=segment.pk).exists()
    with tenant_scope(world_a.tenant.id):
        assert AuditLog.objects.filter(action="segment.deleted").exists()


def test_evaluate_now_enrols_the_members_in_active_sequences(admin, world_a):
    leads = [LeadFactory(tenant=world_a.tenant, lifecycle_stage=LifecycleStage.MQL) for _ in "ab"]
    LeadFactory(tenant=world_a.tenant, lifecycle_stage=LifecycleStage.LEAD)
    segment = SegmentFactory(tenant=world_a.tenant, filter="stage=mql")
    sequence = nurture.sequence_create(
        tenant_id=world_a.tenant.id,
        origin=MARKETER,
        name="MQL 育成",
        enrol_on_segment_id=segment.pk,
        sender_id=SenderIdentityFactory(tenant=world_a.tenant).pk,
    )
    nurture.sequence_steps_save(
        sequence=sequence,
        steps=[{"kind": "send_email", "template": EmailTemplateFactory(tenant=world_a.tenant)}],
        origin=MARKETER,
    )
    nurture.sequence_set_status(sequence=sequence, status=Sequence.Status.ACTIVE, origin=MARKETER)
    response = admin.post(
        reverse(CHANGELIST), {"action": "evaluate", "_selected_action": [segment.pk]}, follow=True
    )
    assert "2" in " ".join(str(m) for m in response.context["messages"])
    with tenant_scope(world_a.tenant.id):
        enrolled = set(
            Enrolment.objects.filter(sequence=sequence).values_list("lead_id", flat=True)
        )
        assert Segment.objects.get(pk=segment.pk).matched == 2
    assert enrolled == {lead.pk for lead in leads}
