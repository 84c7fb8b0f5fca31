"""Scoring API: models with nested rules, validation, roles, preview, catalogue,
recompute, and a lead's score breakdown."""

import pytest

from accounts.models import Role
from accounts.tenancy import tenant_scope
from leads.models import LeadScore, ScoringModel
from leads.tests.factories import ActivityFactory, CustomFieldDefinitionFactory, LeadFactory
from tests.api_base import assert_error
from tests.fixtures import api_client_for

pytestmark = pytest.mark.django_db

BASE = "/api/v1/t/acme"
RULES = [
    {"kind": "fit", "field": "lead.job_title", "operator": "contains", "value": "部長",
     "points": 40},
    {"kind": "behaviour", "activity_type": "page_view", "property_key": "url",
     "property_operator": "contains", "property_value": "/pricing", "points": 15, "cap": 30},
]  # fmt: skip


@pytest.fixture
def client(world_a):
    return api_client_for(world_a.owner)


def create(client, **extra) -> dict:
    body = {"name": "標準", "mql_threshold": 50, "rules": RULES, **extra}
    response = client.post(f"{BASE}/scoring-models/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_create_list_and_change_a_model_with_its_rules(client):
    model = create(client, bands=[{"key": "hot", "min": 50}, {"key": "cold", "min": None}])
    assert model["is_primary"] is True  # the tenant's first model
    assert [r["points"] for r in model["rules"]] == [40, 15]
    assert model["rules"][1]["cap"] == 30
    assert [b["key"] for b in model["bands"]] == ["cold", "hot"]
    assert model["scores_current"] is False

    listed = client.get(f"{BASE}/scoring-models/").json()["results"]
    assert [m["id"] for m in listed] == [model["id"]]

    response = client.patch(
        f"{BASE}/scoring-models/{model['id']}/",
        {"mql_threshold": 60, "rules": RULES[:1]},
        format="json",
    )
    assert response.status_code == 200, response.content
    changed = response.json()
    assert changed["mql_threshold"] == 60
    assert len(changed["rules"]) == 1
    assert changed["version"] == model["version"] + 1


def test_bad_rules_answer_400_naming_the_field(client):
    body = {"name": "x", "rules": [{"kind": "fit", "field": "lead.shoe_size", "operator": "eq",
                                    "value": "28", "points": 5}]}  # fmt: skip
    error = assert_error(
        client.post(f"{BASE}/scoring-models/", body, format="json"), 400, "invalid"
    )
    assert "field" in error["fields"]
    body["rules"][0].update(field="lead.job_title", points="many")
    error = assert_error(
        client.post(f"{BASE}/scoring-models/", body, format="json"), 400, "invalid"
    )
    assert "rules" in error["fields"]
    assert client.get(f"{BASE}/scoring-models/").json()["results"] == []


def test_sales_read_scoring_but_only_marketing_and_admins_change_it(world_a, client):
    model = create(client)
    seller = api_client_for(world_a.member(role=Role.INSIDE_SALES))
    assert seller.get(f"{BASE}/scoring-models/{model['id']}/").status_code == 200
    response = seller.patch(f"{BASE}/scoring-models/{model['id']}/", {"name": "y"}, format="json")
    assert response.status_code == 403
    marketer = api_client_for(world_a.member(role=Role.MARKETING))
    response = marketer.patch(f"{BASE}/scoring-models/{model['id']}/", {"name": "y"}, format="json")
    assert response.status_code == 200


def test_preview_fields_recompute_and_the_lead_breakdown(
    world_a, client, django_capture_on_commit_callbacks
):
    tenant = world_a.tenant
    CustomFieldDefinitionFactory(tenant=tenant, key="budget", label="予算", type="number")
    boss = LeadFactory(tenant=tenant, job_title="営業部長")
    for _ in range(3):
        ActivityFactory(tenant=tenant, lead=boss, properties={"url": "https://x.jp/pricing"})
    LeadFactory(tenant=tenant, job_title="担当")
    model = create(client)

    preview = client.post(
        f"{BASE}/scoring-models/preview/",
        {"rules": RULES[:1], "mql_threshold": 30, "model": model["id"]},
        format="json",
    )
    assert preview.status_code == 200, preview.content
    assert preview.json() == {"would_reach_mql": 1, "leads": 2, "reach_mql_now": 0}

    catalogue = client.get(f"{BASE}/scoring-models/fields/").json()
    keys = {field["key"] for field in catalogue["fit_fields"]}
    assert {"lead.job_title", "company.size_band", "lead.custom.budget"} <= keys
    assert "campaign.channel" in {p["key"] for p in catalogue["properties"]}

    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = client.post(f"{BASE}/scoring-models/{model['id']}/recompute/")
    assert response.status_code == 202
    # The task goes to the broker only once the request commits.
    assert any("scores_recompute_later" in getattr(c, "__qualname__", "") for c in queued)
    with tenant_scope(tenant.id):
        score = LeadScore.objects.get(lead=boss)
        assert ScoringModel.objects.get(pk=model["id"]).scored_version == model["version"]
    assert (score.fit, score.behaviour, score.total) == (40, 30, 70)

    body = client.get(f"{BASE}/leads/{boss.id}/score/").json()
    primary = body["scores"][0]
    assert primary["total"] == 70
    assert primary["model"]["is_primary"] is True
    assert [(r["points"], r["scored"]) for r in primary["rules"]] == [(40, 40), (15, 30)]
    assert "部長" in primary["rules"][0]["description"]
    with tenant_scope(tenant.id):
        assert LeadScore.objects.get(lead=boss).lead.lifecycle_stage == "mql"


def test_another_tenant_cannot_reach_the_models(world_a, world_b, client):
    model = create(client)
    outsider = api_client_for(world_b.owner)
    assert outsider.get(f"/api/v1/t/beta/scoring-models/{model['id']}/").status_code == 404
    assert outsider.get("/api/v1/t/beta/scoring-models/").json()["results"] == []


def test_the_lead_list_filters_by_primary_score(world_a, client):
    tenant = world_a.tenant
    base = f"{BASE}/leads/"
    assert client.get(base, {"score_min": 1}).json()["results"] == []  # no model: all 0
    hot = LeadFactory(tenant=tenant, job_title="部長", email="hot@example.jp")
    warm = LeadFactory(tenant=tenant, job_title="課長", email="warm@example.jp")
    cold = LeadFactory(tenant=tenant, job_title="", email="cold@example.jp")
    create(
        client,
        rules=[
            {"kind": "fit", "field": "lead.job_title", "operator": "eq", "value": "部長",
             "points": 70},
            {"kind": "fit", "field": "lead.job_title", "operator": "eq", "value": "課長",
             "points": 20},
        ],
    )  # fmt: skip
    from leads.scoring.services import scores_compute

    scores_compute(tenant_id=tenant.id)
    with tenant_scope(tenant.id):
        LeadScore.objects.filter(lead=cold).delete()  # never scored: counts as 0

    def emails(**params) -> set[str]:
        response = client.get(base, params)
        assert response.status_code == 200, response.content
        return {row["email"] for row in response.json()["results"]}

    assert emails(score_min=50) == {hot.email}
    assert emails(score_max=30) == {warm.email, cold.email}
    assert emails(score_min=10, score_max=30) == {warm.email}
    assert emails() == {hot.email, warm.email, cold.email}
