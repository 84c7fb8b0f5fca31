"""The scoring UI: create a model with starter rules, edit rules row by row (add,
remove, a bad row marked), preview before saving, and the score card on the lead page."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Role
from accounts.tenancy import tenant_scope
from leads.models import LeadScore, ScoringModel
from leads.scoring.services import scores_compute
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


def client_for(world, role=Role.MARKETING) -> Client:
    client = Client()
    client.force_login(world.member(role))
    return client


def urls(world, pk=None) -> dict[str, str]:
    kw = {"tenant": world.tenant.slug}
    result = {"index": reverse("leads:scoring", kwargs=kw)}
    if pk is not None:
        result["edit"] = reverse("leads:scoring_edit", kwargs={**kw, "pk": pk})
        result["preview"] = reverse("leads:scoring_preview", kwargs={**kw, "pk": pk})
    return result


def editor_post(rows: list[dict], op: str = "save", **model) -> dict:
    data = {
        "name": model.get("name", "標準"),
        "mql_threshold": model.get("mql_threshold", "50"),
        "half_life_days": model.get("half_life_days", ""),
        "warm_min": "20",
        "hot_min": "",
        "rule_count": str(len(rows)),
        "op": op,
    }
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"r-{i}-{key}"] = value
    return data


def create(world, client) -> ScoringModel:
    response = client.post(urls(world)["index"], {"name": "標準"})
    assert response.status_code == 302, response.content[:300]
    with tenant_scope(world.tenant.id):
        return ScoringModel.objects.get(name="標準")


def test_create_with_starter_rules_and_list(world_a):
    client = client_for(world_a)
    model = create(world_a, client)
    with tenant_scope(world_a.tenant.id):
        assert model.is_primary
        assert model.rules.count() == 5
    page = client.get(urls(world_a)["index"])
    assert page.status_code == 200
    assert "標準" in page.content.decode()
    editor = client.get(urls(world_a, model.pk)["edit"])
    assert editor.status_code == 200
    assert editor.content.decode().count('data-testid="rule-row"') == 5


def test_rows_are_added_removed_and_saved(world_a):
    client = client_for(world_a)
    model = create(world_a, client)
    rows = [
        {"kind": "fit", "field": "lead.job_title", "operator": "contains", "value": "部長",
         "points": "40"},
        {"kind": "behaviour", "activity_type": "page_view", "property_key": "url",
         "property_operator": "contains", "property_value": "/pricing", "points": "5",
         "cap": "15", "window_days": ""},
    ]  # fmt: skip
    added = client.post(urls(world_a, model.pk)["edit"], editor_post(rows, op="add_fit"))
    assert added.status_code == 200
    assert added.content.decode().count('data-testid="rule-row"') == 3
    removed = client.post(urls(world_a, model.pk)["edit"], editor_post(rows, op="remove:0"))
    assert removed.content.decode().count('data-testid="rule-row"') == 1

    saved = client.post(urls(world_a, model.pk)["edit"], editor_post(rows, mql_threshold="45"))
    assert saved.status_code == 302
    with tenant_scope(world_a.tenant.id):
        model.refresh_from_db()
        rules = list(model.rules.all())
    assert model.mql_threshold == 45
    assert [(r.kind, r.points, r.cap) for r in rules] == [("fit", 40, None), ("behaviour", 5, 15)]
    assert [b["key"] for b in model.bands] == ["cold", "warm"]


def test_a_bad_row_is_marked_and_nothing_is_saved(world_a):
    client = client_for(world_a)
    model = create(world_a, client)
    rows = [{"kind": "fit", "field": "company.size_band", "operator": "contains",
             "value": "100", "points": "5"}]  # fmt: skip
    response = client.post(urls(world_a, model.pk)["edit"], editor_post(rows))
    assert response.status_code == 400
    assert response.context["rows"][0]["errors"]
    with tenant_scope(world_a.tenant.id):
        assert model.rules.count() == 5  # the starter rules, untouched


def test_preview_counts_before_saving(world_a):
    client = client_for(world_a)
    model = create(world_a, client)
    for title in ("部長", "部長", "課長"):
        LeadFactory(tenant=world_a.tenant, job_title=title)
    rows = [{"kind": "fit", "field": "lead.job_title", "operator": "ends_with", "value": "長",
             "points": "60"}]  # fmt: skip
    response = client.post(urls(world_a, model.pk)["preview"], editor_post(rows))
    assert response.status_code == 200
    assert response.context["result"]["would_reach_mql"] == 3
    assert 'data-testid="would-reach"' in response.content.decode()
    with tenant_scope(world_a.tenant.id):
        assert not LeadScore.objects.exists()  # a preview saves nothing


def test_sales_see_the_editor_but_cannot_save(world_a):
    model = create(world_a, client_for(world_a))
    seller = client_for(world_a, Role.INSIDE_SALES)
    assert seller.get(urls(world_a, model.pk)["edit"]).status_code == 200
    response = seller.post(urls(world_a, model.pk)["edit"], editor_post([]))
    assert response.status_code == 403
    assert seller.post(urls(world_a, model.pk)["preview"], editor_post([])).status_code == 403


def test_the_lead_page_shows_the_score_rule_by_rule(world_a):
    client = client_for(world_a)
    model = create(world_a, client)
    lead = LeadFactory(tenant=world_a.tenant, job_title="営業部長")
    scores_compute(tenant_id=world_a.tenant.id, model_id=model.pk)
    page = client.get(
        reverse("leads:detail", kwargs={"tenant": world_a.tenant.slug, "pk": lead.pk})
    )
    html = page.content.decode()
    assert 'data-testid="score-card"' in html
    assert page.context["scores"][0]["total"] == 20
    assert "部長" in html


def test_another_tenant_gets_404(world_a, world_b):
    model = create(world_a, client_for(world_a))
    outsider = Client()
    outsider.force_login(world_b.owner)
    kw = {"tenant": world_b.tenant.slug, "pk": model.pk}
    assert outsider.get(reverse("leads:scoring_edit", kwargs=kw)).status_code == 404
