"""Leads in the platform admin: every tenant's rows, writes through the services."""

import pytest
from django.urls import reverse

from accounts.models import AuditLog
from accounts.tenancy import tenant_scope
from accounts.tests.factories import UserFactory
from leads.models import (
    Activity,
    Company,
    ConsentEvent,
    CustomFieldDefinition,
    Lead,
    LifecycleTransition,
    Suppression,
    Tag,
)
from leads.tests.factories import (
    ActivityFactory,
    CompanyFactory,
    ConsentEventFactory,
    CustomFieldDefinitionFactory,
    LeadFactory,
    LifecycleTransitionFactory,
    SuppressionFactory,
    TagFactory,
)

pytestmark = pytest.mark.django_db

MODELS = (
    Lead,
    Company,
    Tag,
    CustomFieldDefinition,
    Suppression,
    Activity,
    ConsentEvent,
    LifecycleTransition,
)


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def url(model, action="changelist", *args):
    return reverse(f"admin:leads_{model._meta.model_name}_{action}", args=args)


def test_every_changelist_and_change_page_renders_across_tenants(staff_client, world_a, world_b):
    lead_a = LeadFactory(tenant=world_a.tenant, email="a@example.com")
    lead_b = LeadFactory(tenant=world_b.tenant, email="b@example.com")
    rows = {
        Lead: lead_a,
        Company: CompanyFactory(tenant=world_a.tenant),
        Tag: TagFactory(tenant=world_a.tenant),
        CustomFieldDefinition: CustomFieldDefinitionFactory(tenant=world_a.tenant),
        Suppression: SuppressionFactory(tenant=world_a.tenant),
        Activity: ActivityFactory(tenant=world_a.tenant, lead=lead_a),
        ConsentEvent: ConsentEventFactory(tenant=world_a.tenant, lead=lead_a),
        LifecycleTransition: LifecycleTransitionFactory(tenant=world_a.tenant, lead=lead_a),
    }
    for model in MODELS:
        response = staff_client.get(url(model))
        assert response.status_code == 200, model
        response = staff_client.get(url(model, "change", rows[model].pk))
        assert response.status_code == 200, model
    listing = staff_client.get(url(Lead)).content.decode()
    assert "a@example.com" in listing
    assert "b@example.com" in listing
    page = staff_client.get(url(Lead, "change", lead_a.pk)).content.decode()
    assert "pricing" in page  # the activity inline shows the lead's activity
    assert lead_b.pk


def test_histories_are_read_only(staff_client, world_a):
    activity = ActivityFactory(tenant=world_a.tenant)
    assert staff_client.get(url(Activity, "add")).status_code == 403
    response = staff_client.post(url(Activity, "delete", activity.pk), {"post": "yes"})
    assert response.status_code == 403
    with tenant_scope(world_a.tenant.id):
        assert Activity.objects.filter(pk=activity.pk).exists()


def test_lead_add_and_change_go_through_the_services(staff_client, world_a):
    response = staff_client.post(
        url(Lead, "add"),
        {
            "tenant": world_a.tenant.pk,
            "email": " Admin.Made@Example.co.jp ",
            "family_name": "管理",
            "given_name": "",
            "family_name_kana": "かんり",
            "given_name_kana": "",
            "phone": "03-1234-5678",
            "job_title": "",
            "department": "",
            "lifecycle_stage": "lead",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    with tenant_scope(world_a.tenant.id):
        lead = Lead.objects.get()
        assert lead.transitions.count() == 1
    assert (lead.email, lead.family_name_kana, lead.phone) == (
        "admin.made@example.co.jp",
        "カンリ",
        "+81312345678",
    )
    change = {
        "email": lead.email,
        "family_name": "管理",
        "given_name": "",
        "family_name_kana": "カンリ",
        "given_name_kana": "",
        "phone": "+81312345678",
        "job_title": "",
        "department": "",
        "lifecycle_stage": "mql",
    }
    inline_management = {}
    for name in ("transitions", "consent_events", "activities"):
        inline_management |= {
            f"{name}-TOTAL_FORMS": "0",
            f"{name}-INITIAL_FORMS": "0",
            f"{name}-MIN_NUM_FORMS": "0",
            f"{name}-MAX_NUM_FORMS": "1000",
        }
    response = staff_client.post(url(Lead, "change", lead.pk), {**change, **inline_management})
    assert response.status_code == 302, response.content.decode()[:3000]
    with tenant_scope(world_a.tenant.id):
        assert list(lead.transitions.order_by("id").values_list("to_stage", flat=True)) == [
            "lead",
            "mql",
        ]


def test_invalid_admin_input_is_refused_with_the_services_message(staff_client, world_a):
    from django.conf import settings

    LeadFactory(tenant=world_a.tenant, email="taken@example.com")
    staff_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"  # the message in English
    response = staff_client.post(
        url(Lead, "add"),
        {"tenant": world_a.tenant.pk, "email": "TAKEN@example.com", "lifecycle_stage": "lead"},
        follow=True,
    )
    assert "A lead with this email exists." in response.content.decode()
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.count() == 1


def test_lead_delete_is_audited(staff_client, world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    response = staff_client.post(url(Lead, "delete", lead.pk), {"post": "yes"})
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        assert not Lead.objects.filter(pk=lead.pk).exists()
        assert AuditLog.objects.filter(action="lead.deleted").count() == 1


def test_suppression_add_normalises_the_address(staff_client, world_a):
    response = staff_client.post(
        url(Suppression, "add"),
        {
            "tenant": world_a.tenant.pk,
            "email": "ＳＴＯＰ@Example.com",
            "reason": "manual",
            "note": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    with tenant_scope(world_a.tenant.id):
        assert Suppression.objects.get().email == "stop@example.com"
