"""The leads list's "enrol in sequence" bulk action: offered through the hook to those
who may enrol (active sequences only), enrols the ticked leads or every lead matching
the list's filter through the services, says how many were enrolled, left out and
cannot be mailed; refuses drafts, another tenant's sequence and read-only members.
Also the side navigation's Segments entry."""

import pytest
from django.contrib.messages import constants, get_messages
from django.test import Client
from django.urls import reverse

from accounts.models import Role
from accounts.tenancy import tenant_scope
from campaigns.models import Enrolment, Sequence
from campaigns.tests.factories import EnrolmentFactory, SequenceFactory
from leads.models import ConsentStatus, LifecycleStage
from leads.tests.factories import LeadFactory, SuppressionFactory

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def enrol_url(world) -> str:
    return reverse("campaigns:nurture_bulk_enrol", kwargs={"tenant": world.tenant.slug})


def leads_url(world) -> str:
    return reverse("leads:index", kwargs={"tenant": world.tenant.slug})


def enrolled(world, sequence) -> set[int]:
    with tenant_scope(world.tenant.id):
        return set(Enrolment.objects.filter(sequence=sequence).values_list("lead_id", flat=True))


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def consenting(world, **fields):
    return LeadFactory(tenant=world.tenant, email_consent=ConsentStatus.GRANTED, **fields)


def test_the_leads_list_offers_active_sequences_to_writers_only(world_a, world_b):
    SequenceFactory(tenant=world_a.tenant, name="展示会フォロー")
    SequenceFactory(tenant=world_a.tenant, name="下書き", status=Sequence.Status.DRAFT)
    SequenceFactory(tenant=world_b.tenant, name="他社のシーケンス")
    LeadFactory(tenant=world_a.tenant)
    body = login(world_a.member(Role.MARKETING)).get(leads_url(world_a)).content.decode()
    assert 'data-testid="bulk-enrol"' in body
    assert enrol_url(world_a) in body
    assert "展示会フォロー" in body
    assert "下書き" not in body
    assert "他社のシーケンス" not in body
    # Inside sales change leads but do not enrol them; read-only members change nothing.
    for role in (Role.INSIDE_SALES, Role.READ_ONLY):
        body = login(world_a.member(role)).get(leads_url(world_a)).content.decode()
        assert 'data-testid="bulk-enrol"' not in body


def test_no_active_sequence_no_control(world_a):
    SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.PAUSED)
    LeadFactory(tenant=world_a.tenant)
    body = login(world_a.owner).get(leads_url(world_a)).content.decode()
    assert 'data-testid="bulk-enrol"' not in body


def test_enrol_the_ticked_leads_and_say_who_was_left_out(world_a, world_b):
    sequence = SequenceFactory(tenant=world_a.tenant, name="展示会フォロー")
    fresh = consenting(world_a)
    already = consenting(world_a)
    EnrolmentFactory(tenant=world_a.tenant, sequence=sequence, lead=already)
    theirs = LeadFactory(tenant=world_b.tenant)
    response = login(world_a.member(Role.MARKETING)).post(
        enrol_url(world_a),
        {
            "sequence": sequence.pk,
            "scope": "selected",
            "ids": [fresh.pk, already.pk, theirs.pk],
            "return_query": "stage=lead",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == leads_url(world_a) + "?stage=lead"
    assert enrolled(world_a, sequence) == {fresh.pk, already.pk}
    with tenant_scope(world_a.tenant.id):
        source = Enrolment.objects.get(sequence=sequence, lead=fresh).source
    assert source == Enrolment.Source.MANUAL
    # One enrolled, one left out (in it already); another tenant's lead is no lead of
    # this tenant, counted as nothing. Both can be mailed: no third message.
    (done, left_out) = [(m.level, str(m)) for m in get_messages(response.wsgi_request)]
    assert done[0] == constants.SUCCESS
    assert "1" in done[1]
    assert "展示会フォロー" in done[1]
    assert left_out[0] == constants.WARNING
    assert "1" in left_out[1]


def test_enrol_every_lead_matching_the_filter_and_count_those_not_mailed(world_a):
    sequence = SequenceFactory(tenant=world_a.tenant, name="MQL育成")
    mailable = [consenting(world_a, lifecycle_stage=LifecycleStage.MQL) for _ in range(2)]
    no_consent = LeadFactory(
        tenant=world_a.tenant,
        lifecycle_stage=LifecycleStage.MQL,
        email_consent=ConsentStatus.WITHDRAWN,
    )
    suppressed = consenting(world_a, lifecycle_stage=LifecycleStage.MQL)
    SuppressionFactory(tenant=world_a.tenant, email=suppressed.email)
    LeadFactory(tenant=world_a.tenant, lifecycle_stage=LifecycleStage.LEAD)  # not matching
    response = login(world_a.owner).post(
        enrol_url(world_a), {"sequence": sequence.pk, "scope": "all", "filter": "stage=mql"}
    )
    assert response.status_code == 302
    assert enrolled(world_a, sequence) == {
        *(lead.pk for lead in mailable),
        no_consent.pk,
        suppressed.pk,
    }
    (done, not_mailed) = [(m.level, str(m)) for m in get_messages(response.wsgi_request)]
    assert done[0] == constants.SUCCESS
    assert "4" in done[1]
    assert not_mailed[0] == constants.WARNING
    assert "2" in not_mailed[1]  # no consent, suppressed


def test_a_draft_or_another_tenants_sequence_is_refused(world_a, world_b):
    lead = consenting(world_a)
    draft = SequenceFactory(tenant=world_a.tenant, status=Sequence.Status.DRAFT)
    theirs = SequenceFactory(tenant=world_b.tenant)
    for sequence in (draft, theirs):
        response = login(world_a.owner).post(
            enrol_url(world_a), {"sequence": sequence.pk, "ids": [lead.pk]}
        )
        assert response.status_code == 302
        assert len(texts(response)) == 1  # the error, nothing else
    assert enrolled(world_a, draft) == set()
    assert enrolled(world_b, theirs) == set()
    # Nothing selected: an error, nothing enrolled.
    sequence = SequenceFactory(tenant=world_a.tenant)
    response = login(world_a.owner).post(enrol_url(world_a), {"sequence": sequence.pk})
    assert len(texts(response)) == 1
    assert enrolled(world_a, sequence) == set()


def test_roles_that_may_not_enrol_get_403_and_other_tenants_404(world_a, world_b):
    sequence = SequenceFactory(tenant=world_a.tenant)
    lead = consenting(world_a)
    for role in (Role.READ_ONLY, Role.INSIDE_SALES):
        response = login(world_a.member(role)).post(
            enrol_url(world_a), {"sequence": sequence.pk, "ids": [lead.pk]}
        )
        assert response.status_code == 403
    response = login(world_b.owner).post(
        enrol_url(world_a), {"sequence": sequence.pk, "ids": [lead.pk]}
    )
    assert response.status_code == 404
    assert login(world_a.owner).get(enrol_url(world_a)).status_code == 405
    assert enrolled(world_a, sequence) == set()


def test_the_side_navigation_links_to_segments(world_a):
    response = login(world_a.member(Role.READ_ONLY)).get(
        reverse("campaigns:segments", kwargs={"tenant": world_a.tenant.slug})
    )
    assert response.status_code == 200
    nav = [item for _title, items in response.context["nav_sections"] for item in items]
    entry = next(
        item
        for item in nav
        if item.url == reverse("campaigns:segments", kwargs={"tenant": world_a.tenant.slug})
    )
    assert entry.active
