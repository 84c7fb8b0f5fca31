"""lead_merge: everything of the duplicate moves to the kept lead, in one transaction."""

import pytest
from django.core.exceptions import ValidationError

from accounts import events
from accounts.models import AuditLog
from accounts.services import SYSTEM, Origin
from accounts.tenancy import tenant_scope
from leads import services
from leads.models import Activity, ConsentEvent, FormSubmission, Lead, LifecycleTransition
from leads.tests.factories import (
    ActivityFactory,
    CompanyFactory,
    ConsentEventFactory,
    FormSubmissionFactory,
    LeadFactory,
    LeadTagFactory,
    TagFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook_calls(monkeypatch):
    calls = []
    handlers = {"campaign.leads_merged": [lambda **kwargs: calls.append(kwargs)]}
    monkeypatch.setattr(events, "_hook_handlers", handlers)
    return calls


def test_merge_moves_history_fills_empty_fields_and_frees_the_email(world_a, hook_calls):
    t = world_a.tenant
    company = CompanyFactory(tenant=t)
    keep = LeadFactory(tenant=t, email="", phone="", job_title="部長", lifecycle_stage="lead")
    merge = LeadFactory(
        tenant=t,
        email="dup@example.com",
        phone="+81312345678",
        job_title="課長",
        company=company,
        lifecycle_stage="mql",
        email_consent="granted",
        custom_fields={"plan": "pro"},
    )
    ActivityFactory.create_batch(3, tenant=t, lead=merge)
    ConsentEventFactory(tenant=t, lead=merge)
    FormSubmissionFactory(tenant=t, lead=merge)
    shared, only_merge = TagFactory(tenant=t), TagFactory(tenant=t)
    LeadTagFactory(tenant=t, lead=keep, tag=shared)
    LeadTagFactory(tenant=t, lead=merge, tag=shared)
    LeadTagFactory(tenant=t, lead=merge, tag=only_merge)
    older = LeadFactory(tenant=t, email="", merged_into=merge)

    result = services.lead_merge(keep=keep, merge=merge, origin=Origin(actor=world_a.owner))

    assert result.pk == keep.pk
    keep.refresh_from_db()
    merge.refresh_from_db()
    older.refresh_from_db()
    assert keep.email == "dup@example.com"
    assert (keep.phone, keep.job_title) == ("+81312345678", "部長")  # filled, not overwritten
    assert keep.company_id == company.id
    assert keep.email_consent == "granted"
    assert keep.custom_fields == {"plan": "pro"}
    assert keep.lifecycle_stage == "mql"  # the further funnel stage
    assert (merge.email, merge.merged_into_id) == ("", keep.pk)
    assert older.merged_into_id == keep.pk
    with tenant_scope(t.id):
        assert Activity.objects.filter(lead=keep).count() == 3
        assert ConsentEvent.objects.filter(lead=keep).count() == 1
        assert FormSubmission.objects.filter(lead=keep).count() == 1
        assert not LifecycleTransition.objects.filter(lead=merge).exists()
        assert LifecycleTransition.objects.filter(lead=keep, to_stage="mql").exists()
        assert set(keep.tags.values_list("id", flat=True)) == {shared.id, only_merge.id}
        assert not merge.tags.exists()
        audit = AuditLog.objects.get(action="lead.merged")
    assert audit.metadata["merged_id"] == merge.pk
    assert hook_calls == [{"tenant_id": t.id, "keep_id": keep.pk, "merge_id": merge.pk}]


def test_merge_refuses_itself_merged_and_other_tenants(world_a, world_b, hook_calls):
    a = LeadFactory(tenant=world_a.tenant)
    b = LeadFactory(tenant=world_b.tenant)
    with pytest.raises(ValidationError):
        services.lead_merge(keep=a, merge=a, origin=SYSTEM)
    with pytest.raises(ValidationError):
        services.lead_merge(keep=a, merge=b, origin=SYSTEM)
    c = LeadFactory(tenant=world_a.tenant)
    services.lead_merge(keep=a, merge=c, origin=SYSTEM)
    with pytest.raises(ValidationError):
        services.lead_merge(keep=a, merge=c, origin=SYSTEM)
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.get(pk=c.pk).merged_into_id == a.pk


def test_merge_rolls_back_entirely_when_a_hook_fails(world_a, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("campaigns failed")

    monkeypatch.setattr(events, "_hook_handlers", {"campaign.leads_merged": [broken]})
    keep = LeadFactory(tenant=world_a.tenant)
    merge = LeadFactory(tenant=world_a.tenant)
    ActivityFactory(tenant=world_a.tenant, lead=merge)
    with pytest.raises(RuntimeError):
        services.lead_merge(keep=keep, merge=merge, origin=SYSTEM)
    merge.refresh_from_db()
    assert merge.merged_into_id is None
    with tenant_scope(world_a.tenant.id):
        assert Activity.objects.filter(lead=merge).count() == 1
