"""Admin pages of capture forms, submissions, imports, row errors and scoring: every
tenant's rows, read-only, with the two actions support needs."""

import pytest
from django.urls import reverse

from accounts.models import AuditLog
from accounts.tenancy import tenant_scope
from accounts.tests.factories import UserFactory
from leads.models import (
    CaptureForm,
    CompanyScore,
    FormSubmission,
    ImportJob,
    ImportRowError,
    LeadScore,
    ScoringModel,
)
from leads.tests.factories import (
    CaptureFormFactory,
    CompanyScoreFactory,
    FormSubmissionFactory,
    ImportJobFactory,
    ImportRowErrorFactory,
    LeadScoreFactory,
    ScoringRuleFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def url(model, action="changelist", *args):
    return reverse(f"admin:leads_{model._meta.model_name}_{action}", args=args)


def test_every_page_renders_across_tenants_and_nothing_is_editable(staff_client, world_a, world_b):
    rule = ScoringRuleFactory(tenant=world_a.tenant)
    job = ImportJobFactory(tenant=world_b.tenant)
    rows = {
        CaptureForm: CaptureFormFactory(tenant=world_a.tenant),
        FormSubmission: FormSubmissionFactory(tenant=world_a.tenant),
        ImportJob: job,
        ImportRowError: ImportRowErrorFactory(tenant=world_b.tenant, job=job),
        ScoringModel: rule.model,
        LeadScore: LeadScoreFactory(tenant=world_a.tenant, model=rule.model),
        CompanyScore: CompanyScoreFactory(tenant=world_a.tenant, model=rule.model),
    }
    for model, row in rows.items():
        assert staff_client.get(url(model)).status_code == 200, model
        page = staff_client.get(url(model, "change", row.pk))
        assert page.status_code == 200, model
        assert staff_client.get(url(model, "add")).status_code == 403, model
        response = staff_client.post(url(model, "delete", row.pk), {"post": "yes"})
        assert response.status_code == 403, model
    model_page = staff_client.get(url(ScoringModel, "change", rule.model.pk)).content.decode()
    assert "部長" in model_page  # the rules inline describes each rule


def test_switching_forms_off_goes_through_the_service(staff_client, world_a):
    form = CaptureFormFactory(tenant=world_a.tenant, is_active=True)
    response = staff_client.post(
        url(CaptureForm), {"action": "deactivate", "_selected_action": [form.pk]}
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        form.refresh_from_db()
        assert form.is_active is False
        assert AuditLog.objects.filter(target_id=str(form.pk)).exists()


def test_recompute_action_queues_the_models_recompute(
    staff_client, world_a, django_capture_on_commit_callbacks
):
    rule = ScoringRuleFactory(tenant=world_a.tenant)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = staff_client.post(
            url(ScoringModel), {"action": "recompute", "_selected_action": [rule.model.pk]}
        )
    assert response.status_code == 302
    assert len(queued) == 1
