"""Consent per purpose with history, and the suppression list."""

import pytest
from django.core.exceptions import ValidationError

from accounts.models import DomainEvent
from accounts.services import SYSTEM, Origin
from accounts.tenancy import tenant_scope
from leads import services
from leads.models import ConsentEvent, Suppression
from leads.tests.factories import LeadFactory, SuppressionFactory

pytestmark = pytest.mark.django_db


def test_purposes_are_kept_apart_with_history_and_proof(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    origin = Origin(actor=world_a.owner, ip_address="203.0.113.9")
    services.consent_record(
        lead=lead,
        purpose="sales_contact",
        status="granted",
        channel="import",
        origin=SYSTEM,
        basis="名刺交換 (展示会 2026)",
    )
    event = services.consent_record(
        lead=lead,
        purpose="email_marketing",
        status="granted",
        channel="form",
        origin=origin,
        proof={"form_key": "abc", "page_url": "https://example.co.jp/whitepaper"},
    )
    lead.refresh_from_db()
    assert (lead.email_consent, lead.sales_contact_consent) == ("granted", "granted")
    assert event.proof == {
        "form_key": "abc",
        "page_url": "https://example.co.jp/whitepaper",
        "ip": "203.0.113.9",
    }
    assert event.actor == world_a.owner
    services.consent_record(
        lead=lead, purpose="email_marketing", status="withdrawn", channel="api", origin=SYSTEM
    )
    lead.refresh_from_db()
    assert (lead.email_consent, lead.sales_contact_consent) == ("withdrawn", "granted")
    with tenant_scope(world_a.tenant.id):
        history = list(
            ConsentEvent.objects.filter(lead=lead).order_by("id").values_list("purpose", "status")
        )
        assert DomainEvent.objects.filter(name="lead.consent_changed").count() == 3
    assert history == [
        ("sales_contact", "granted"),
        ("email_marketing", "granted"),
        ("email_marketing", "withdrawn"),
    ]


def test_withdrawing_email_consent_suppresses_and_opt_in_lifts_unsubscribe(world_a):
    lead = LeadFactory(tenant=world_a.tenant, email="w@example.com")
    services.consent_record(
        lead=lead, purpose="email_marketing", status="withdrawn", channel="api", origin=SYSTEM
    )
    with tenant_scope(world_a.tenant.id):
        assert Suppression.objects.get(email="w@example.com").reason == "unsubscribed"
    services.consent_record(
        lead=lead, purpose="email_marketing", status="granted", channel="form", origin=SYSTEM
    )
    with tenant_scope(world_a.tenant.id):
        assert not Suppression.objects.filter(email="w@example.com").exists()


def test_opt_in_does_not_lift_a_bounce(world_a):
    lead = LeadFactory(tenant=world_a.tenant, email="b@example.com")
    SuppressionFactory(tenant=world_a.tenant, email="b@example.com", reason="bounced")
    services.consent_record(
        lead=lead, purpose="email_marketing", status="granted", channel="form", origin=SYSTEM
    )
    with tenant_scope(world_a.tenant.id):
        assert Suppression.objects.get(email="b@example.com").reason == "bounced"


def test_sales_contact_withdrawal_does_not_suppress_mail(world_a):
    lead = LeadFactory(tenant=world_a.tenant, email="s@example.com")
    services.consent_record(
        lead=lead, purpose="sales_contact", status="withdrawn", channel="api", origin=SYSTEM
    )
    with tenant_scope(world_a.tenant.id):
        assert not Suppression.objects.exists()


def test_consent_errors_name_fields(world_a):
    lead = LeadFactory(tenant=world_a.tenant)
    with pytest.raises(ValidationError) as info:
        services.consent_record(
            lead=lead, purpose="telepathy", status="maybe", channel="api", origin=SYSTEM
        )
    assert set(info.value.message_dict) == {"purpose", "status"}
    with pytest.raises(ValidationError) as info:
        services.consent_record(
            lead=lead,
            purpose="sales_contact",
            status="granted",
            channel="api",
            origin=SYSTEM,
            proof={"password": "x"},
        )
    assert set(info.value.message_dict) == {"proof"}


def test_suppression_is_per_tenant_by_normalised_email_and_idempotent(world_a, world_b):
    first = services.suppression_add(
        tenant_id=world_a.tenant.id, email="ＳＴＯＰ@Example.com", reason="manual"
    )
    again = services.suppression_add(
        tenant_id=world_a.tenant.id, email="stop@example.com", reason="bounced"
    )
    assert first.pk == again.pk
    assert (again.email, again.reason) == ("stop@example.com", "manual")
    services.suppression_add(tenant_id=world_b.tenant.id, email="stop@example.com", reason="manual")
    with tenant_scope(world_a.tenant.id):
        assert Suppression.objects.count() == 1
    services.suppression_remove(suppression=first, origin=SYSTEM)
    with tenant_scope(world_a.tenant.id):
        assert not Suppression.objects.exists()
    with pytest.raises(ValidationError):
        services.suppression_add(tenant_id=world_a.tenant.id, email="nope", reason="manual")
