"""The queue, handoff and settings pages."""

import pytest
from django.urls import reverse

from accounts.models import Role
from accounts.tenancy import tenant_scope
from campaigns.tests.factories import CampaignFactory
from leads.models import Lead, LifecycleStage
from leads.tests.factories import LeadFactory
from pipeline import services
from pipeline.models import Handoff, HandoffSettings, RoutingRule, Team
from pipeline.tests.factories import RoutingRuleFactory

pytestmark = pytest.mark.django_db


def page(name, world, **kwargs):
    return reverse(f"pipeline:{name}", kwargs={"tenant": world.tenant.slug, **kwargs})


@pytest.fixture
def routed(world_a, sales):
    RoutingRuleFactory(tenant=world_a.tenant, team=sales.team)
    campaign = CampaignFactory(tenant=world_a.tenant, name="秋のウェビナー")
    lead = LeadFactory(
        tenant=world_a.tenant,
        lifecycle_stage=LifecycleStage.MQL,
        source_campaign=campaign,
        family_name="鈴木",
        given_name="次郎",
    )
    handoff = services.handoff_create_for_lead(tenant_id=world_a.tenant.id, lead_id=lead.id)
    return handoff


def test_queue_shows_my_handoffs_and_answers_in_one_click(client, world_a, sales, routed):
    client.force_login(sales.reps[0])
    response = client.get(page("queue", world_a))
    assert response.status_code == 200
    assert "鈴木 次郎" in response.content.decode()
    client.force_login(sales.reps[1])
    assert "鈴木 次郎" not in client.get(page("queue", world_a)).content.decode()
    assert "鈴木 次郎" in client.get(page("queue", world_a) + "?view=all").content.decode()

    client.force_login(sales.reps[0])
    response = client.post(
        page("reject", world_a, pk=routed.pk),
        {f"h{routed.pk}-reason": "not_now", f"h{routed.pk}-comment": "来期予算"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert 'id="handoff-' in response.content.decode()
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.get(pk=routed.lead_id).lifecycle_stage == LifecycleStage.RECYCLED
        assert Handoff.objects.get(pk=routed.pk).reject_reason == "not_now"


def test_reject_without_reason_is_refused(client, world_a, sales, routed):
    client.force_login(sales.reps[0])
    response = client.post(
        page("reject", world_a, pk=routed.pk), {}, headers={"HX-Request": "true"}
    )
    assert 'role="alert"' in response.content.decode()
    with tenant_scope(world_a.tenant.id):
        assert Handoff.objects.get(pk=routed.pk).status == Handoff.Status.OPEN


def test_accept_then_qualify_on_the_handoff_page(client, world_a, sales, routed):
    client.force_login(sales.reps[0])
    response = client.post(page("accept", world_a, pk=routed.pk), {"next": "handoff"})
    assert response.status_code == 302
    response = client.get(page("handoff", world_a, pk=routed.pk))
    assert 'data-testid="qualify-form"' in response.content.decode()
    response = client.post(page("qualify", world_a, pk=routed.pk), {"handover_note": "x"})
    assert response.status_code == 400
    response = client.post(
        page("qualify", world_a, pk=routed.pk),
        {"budget": "有", "authority": "部長", "need": "有", "timeline": "Q3", "handover_note": "x"},
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        assert Lead.objects.get(pk=routed.lead_id).lifecycle_stage == LifecycleStage.SQL


def test_other_reps_cannot_answer(client, world_a, sales, routed):
    client.force_login(sales.reps[1])
    client.post(page("accept", world_a, pk=routed.pk))
    with tenant_scope(world_a.tenant.id):
        assert Handoff.objects.get(pk=routed.pk).status == Handoff.Status.OPEN
    marketer = world_a.member(Role.MARKETING)
    client.force_login(marketer)
    assert client.post(page("accept", world_a, pk=routed.pk)).status_code == 403


def test_campaign_page_shows_sales_feedback(client, world_a, sales, routed):
    services.handoff_reject(handoff=routed, origin=services.Origin(), reason="no_budget")
    client.force_login(world_a.owner)
    url = reverse(
        "campaigns:detail", kwargs={"tenant": world_a.tenant.slug, "pk": routed.source_campaign_id}
    )
    body = client.get(url).content.decode()
    assert 'data-testid="sales-feedback"' in body
    assert 'data-testid="feedback-rejected">1<' in body


def test_settings_pages(client, world_a, sales):
    client.force_login(world_a.owner)
    assert client.get(page("settings", world_a)).status_code == 200
    response = client.post(
        page("settings", world_a),
        {
            "sla_hours": "4",
            "reminder_minutes": "30",
            "workday_start": "10:00",
            "workday_end": "19:00",
            "working_days": ["0", "1", "2", "3", "4"],
            "observe_holidays": "on",
            "closed_dates": "2025-12-31\n2026-01-02",
            "checklist": "pain: 課題\ndecision: 決裁者",
            "default_team": str(sales.team.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()
    with tenant_scope(world_a.tenant.id):
        settings = HandoffSettings.objects.get()
    assert settings.checklist == [
        {"key": "pain", "label": "課題"},
        {"key": "decision", "label": "決裁者"},
    ]
    assert settings.default_team_id == sales.team.pk
    response = client.post(
        page("rule_new", world_a),
        {
            "name": "東京",
            "position": "0",
            "is_active": "on",
            "prefectures": ["13"],
            "target": "team",
            "team": str(sales.team.pk),
        },
    )
    assert response.status_code == 302
    response = client.post(
        page("team_new", world_a),
        {"name": "新チーム", "manager": str(sales.manager.pk), "members": [str(sales.reps[0].pk)]},
    )
    assert response.status_code == 302
    with tenant_scope(world_a.tenant.id):
        assert RoutingRule.objects.get(name="東京").prefectures == ["13"]
        assert Team.objects.filter(name="新チーム").exists()
    rep = sales.reps[0]
    client.force_login(rep)
    assert client.get(page("settings", world_a)).status_code == 403
