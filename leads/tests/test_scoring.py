"""Scoring: fit and behaviour rules computed in SQL, breakdowns, decay, caps, windows,
the move to MQL, incremental scoring after commit, the preview, validation."""

import datetime
import time

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import DomainEvent, Role
from accounts.services import Origin
from accounts.tenancy import tenant_scope, unscoped
from campaigns.models import CampaignChannel
from campaigns.tests.factories import CampaignFactory
from leads.models import (
    ActivityType,
    CustomFieldDefinition,
    Lead,
    LeadScore,
    LifecycleStage,
    LifecycleTransition,
    ScoringModel,
    SizeBand,
)
from leads.scoring import services
from leads.scoring.services import (
    rescore_after_commit,
    scores_compute,
    scoring_model_create,
    scoring_model_update,
    scoring_preview,
)
from leads.tests.factories import (
    ActivityFactory,
    CompanyFactory,
    CustomFieldDefinitionFactory,
    LeadFactory,
)

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def fit(field, operator, value, points, **extra):
    return {"kind": "fit", "field": field, "operator": operator, "value": value,
            "points": points, **extra}  # fmt: skip


def behaviour(points, activity_type="", **extra):
    return {"kind": "behaviour", "activity_type": activity_type, "points": points, **extra}


def make_model(world, rules, **values) -> ScoringModel:
    values.setdefault("name", "標準モデル")
    values.setdefault("mql_threshold", 50)
    return scoring_model_create(
        tenant_id=world.tenant.id, origin=Origin(actor=world.owner), rules=rules, **values
    )


def score_of(world, lead, model=None) -> LeadScore | None:
    with tenant_scope(world.tenant.id):
        scores = LeadScore.objects.filter(lead=lead)
        if model is not None:
            scores = scores.filter(model=model)
        return scores.first()


def rule_ids(model) -> list[str]:
    with tenant_scope(model.tenant_id):
        return [str(pk) for pk in model.rules.values_list("pk", flat=True)]


def test_fit_rules_on_lead_and_company_fields(world_a):
    tenant = world_a.tenant
    CustomFieldDefinitionFactory(
        tenant=tenant, key="employees", label="従業員数", type=CustomFieldDefinition.Type.NUMBER
    )
    big = CompanyFactory(tenant=tenant, industry="製造業", size_band=SizeBand.S300_999)
    small = CompanyFactory(tenant=tenant, industry="小売", size_band=SizeBand.S10_49)
    manager = LeadFactory(
        tenant=tenant, job_title="営業部長", email="bucho@big.co.jp", company=big,
        custom_fields={"employees": 500},
    )  # fmt: skip
    student = LeadFactory(tenant=tenant, job_title="学生", email="someone@gmail.com", company=small)
    nobody = LeadFactory(tenant=tenant, job_title="", email="x@example.jp")  # no company
    model = make_model(
        world_a,
        [
            fit("lead.job_title", "contains", "部長", 20),
            fit("company.industry", "in", ["製造業", "情報通信業"], 10),
            fit("company.size_band", "gte", SizeBand.S100_299, 15),
            fit("lead.free_mail", "is_true", None, -30),
            fit("lead.custom.employees", "gte", 100, 5),
        ],
    )
    ids = rule_ids(model)
    scores_compute(tenant_id=tenant.id)

    top = score_of(world_a, manager)
    assert (top.fit, top.behaviour, top.total) == (50, 0, 50)
    assert top.breakdown == {ids[0]: 20, ids[1]: 10, ids[2]: 15, ids[4]: 5}
    low = score_of(world_a, student)
    assert (low.total, low.breakdown) == (-30, {ids[3]: -30})
    none = score_of(world_a, nobody)
    assert (none.total, none.breakdown) == (0, {})


def test_behaviour_rules_filter_cap_window_and_decay(world_a):
    tenant = world_a.tenant
    webinar = CampaignFactory(tenant=tenant, channel=CampaignChannel.WEBINAR)
    show = CampaignFactory(tenant=tenant, channel=CampaignChannel.TRADE_SHOW)
    lead = LeadFactory(tenant=tenant)

    def act(kind, days_ago, **kwargs):
        ActivityFactory(
            tenant=tenant, lead=lead, type=kind,
            occurred_at=NOW - datetime.timedelta(days=days_ago), **kwargs,
        )  # fmt: skip

    for _ in range(4):  # 4 x 10 points, capped at 25
        act(ActivityType.PAGE_VIEW, 0, properties={"url": "https://ryorin.example/pricing"})
    act(ActivityType.PAGE_VIEW, 0, properties={"url": "https://ryorin.example/blog"})
    act(ActivityType.WEBINAR_ATTENDANCE, 0, campaign=webinar)
    act(ActivityType.WEBINAR_ATTENDANCE, 0, campaign=show)  # not a webinar campaign
    act(ActivityType.CONTENT_DOWNLOAD, 40)  # outside the 30-day window
    act(ActivityType.CONTENT_DOWNLOAD, 1)
    model = make_model(
        world_a,
        [
            behaviour(10, ActivityType.PAGE_VIEW, property_key="url",
                      property_operator="contains", property_value="/PRICING", cap=25),
            behaviour(30, "", property_key="campaign.channel", property_operator="eq",
                      property_value=CampaignChannel.WEBINAR),
            behaviour(8, ActivityType.CONTENT_DOWNLOAD, window_days=30),
        ],
    )  # fmt: skip
    ids = rule_ids(model)
    scores_compute(tenant_id=tenant.id)
    score = score_of(world_a, lead)
    assert score.breakdown == {ids[0]: 25, ids[1]: 30, ids[2]: 8}
    assert (score.fit, score.behaviour, score.total) == (0, 63, 63)

    # A half-life of 7 days: last week's download is worth half, today's the whole.
    scoring_model_update(model=model, origin=Origin(actor=world_a.owner), half_life_days=7)
    act(ActivityType.CONTENT_DOWNLOAD, 7)
    scores_compute(tenant_id=tenant.id)
    score = score_of(world_a, lead)
    # 8 x 0.5^(1/7) + 8 x 0.5 = 7.26 + 4 -> 11
    assert score.breakdown[ids[2]] == 11


def test_negative_behaviour_points_are_capped_in_absolute_value(world_a):
    tenant = world_a.tenant
    lead = LeadFactory(tenant=tenant)
    for _ in range(5):
        ActivityFactory(tenant=tenant, lead=lead, type=ActivityType.EMAIL_BOUNCED)
    model = make_model(world_a, [behaviour(-10, ActivityType.EMAIL_BOUNCED, cap=30)])
    scores_compute(tenant_id=tenant.id)
    assert score_of(world_a, lead).breakdown == {rule_ids(model)[0]: -30}


def test_reaching_the_threshold_moves_leads_to_mql_and_never_back(world_a):
    tenant = world_a.tenant
    fresh = LeadFactory(tenant=tenant, job_title="部長", lifecycle_stage=LifecycleStage.LEAD)
    recycled = LeadFactory(tenant=tenant, job_title="部長", lifecycle_stage=LifecycleStage.RECYCLED)
    accepted = LeadFactory(tenant=tenant, job_title="部長", lifecycle_stage=LifecycleStage.SAL)
    gone = LeadFactory(tenant=tenant, job_title="部長", lifecycle_stage=LifecycleStage.DISQUALIFIED)
    below = LeadFactory(tenant=tenant, job_title="課長", lifecycle_stage=LifecycleStage.LEAD)
    model = make_model(world_a, [fit("lead.job_title", "eq", "部長", 60)], mql_threshold=50)
    result = scores_compute(tenant_id=tenant.id)
    assert result["mql"] == 2
    with tenant_scope(tenant.id):
        stages = dict(Lead.objects.values_list("id", "lifecycle_stage"))
        transitions = list(
            LifecycleTransition.objects.filter(to_stage=LifecycleStage.MQL).values_list(
                "lead_id", "from_stage"
            )
        )
        reached = list(DomainEvent.objects.filter(name="lead.mql_reached"))
    assert stages[fresh.id] == stages[recycled.id] == LifecycleStage.MQL
    assert stages[accepted.id] == LifecycleStage.SAL
    assert stages[gone.id] == LifecycleStage.DISQUALIFIED
    assert stages[below.id] == LifecycleStage.LEAD
    assert sorted(transitions) == sorted(
        [(fresh.id, LifecycleStage.LEAD), (recycled.id, LifecycleStage.RECYCLED)]
    )
    assert sorted(e.payload["lead_id"] for e in reached) == sorted([fresh.id, recycled.id])
    assert all(e.payload["score"] == 60 for e in reached)

    # The rule loosens: scores fall below the threshold, nobody is demoted, and a second
    # run moves nobody again.
    scoring_model_update(
        model=model,
        origin=Origin(actor=world_a.owner),
        rules=[fit("lead.job_title", "eq", "部長", 10)],
    )
    assert scores_compute(tenant_id=tenant.id)["mql"] == 0
    with tenant_scope(tenant.id):
        assert Lead.objects.get(pk=fresh.id).lifecycle_stage == LifecycleStage.MQL
        assert score_of(world_a, fresh).total == 10


def test_incremental_scoring_touches_only_the_given_leads(world_a):
    tenant = world_a.tenant
    first, second = LeadFactory(tenant=tenant), LeadFactory(tenant=tenant)
    make_model(world_a, [behaviour(5, ActivityType.PAGE_VIEW)])
    ActivityFactory(tenant=tenant, lead=first)
    ActivityFactory(tenant=tenant, lead=second)
    scores_compute(tenant_id=tenant.id, lead_ids=[first.id])
    assert score_of(world_a, first).total == 5
    assert score_of(world_a, second) is None


def test_rescore_after_commit_sends_one_task_per_tenant_with_every_lead(
    world_a, world_b, django_capture_on_commit_callbacks, monkeypatch
):
    """Eager Celery in tests: the tasks run at commit, one per tenant, with every lead
    the transaction touched."""
    a1, a2 = LeadFactory(tenant=world_a.tenant), LeadFactory(tenant=world_a.tenant)
    b1 = LeadFactory(tenant=world_b.tenant)
    make_model(world_a, [fit("lead.job_title", "is_empty", None, 3)])
    make_model(world_b, [fit("lead.job_title", "is_empty", None, 4)])
    calls = []
    original = services.scores_compute

    def spy(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(services, "scores_compute", spy)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        rescore_after_commit(world_a.tenant.id, [a1.id])
        rescore_after_commit(world_a.tenant.id, [a2.id, None])
        rescore_after_commit(world_b.tenant.id, [b1.id])
        assert calls == []  # nothing before commit
    assert len(callbacks) == 1
    assert sorted((c["tenant_id"], tuple(c["lead_ids"])) for c in calls) == sorted(
        [(world_a.tenant.id, tuple(sorted([a1.id, a2.id]))), (world_b.tenant.id, (b1.id,))]
    )
    assert score_of(world_a, a1).total == score_of(world_a, a2).total == 3
    assert score_of(world_b, b1).total == 4


def test_preview_counts_leads_reaching_mql_under_unsaved_rules(world_a):
    tenant = world_a.tenant
    for title in ("部長", "部長", "課長", ""):
        LeadFactory(tenant=tenant, job_title=title)
    model = make_model(world_a, [fit("lead.job_title", "eq", "部長", 60)], mql_threshold=50)
    scores_compute(tenant_id=tenant.id)
    preview = scoring_preview(
        tenant_id=tenant.id,
        rules=[fit("lead.job_title", "ends_with", "長", 60)],
        mql_threshold=50,
        model=model,
    )
    assert preview == {"would_reach_mql": 3, "leads": 4, "reach_mql_now": 2}
    # Nothing was saved by the preview.
    assert score_of(world_a, LeadFactory(tenant=tenant, job_title="課長")) is None


def test_bad_rules_name_the_field_and_save_nothing(world_a):
    with pytest.raises(ValidationError) as caught:
        make_model(world_a, [fit("lead.salary", "eq", "1", 5)])
    assert "field" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        make_model(world_a, [fit("company.size_band", "contains", "100", 5)])
    assert "operator" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        make_model(world_a, [behaviour(5, "page_view", cap=0)])
    assert "cap" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        make_model(world_a, [behaviour(5, "page_view", property_key="campaign.channel",
                                       property_operator="eq", property_value="fax")])  # fmt: skip
    assert "property_value" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        make_model(world_a, [fit("lead.job_title", "eq", "x", True)])
    assert "points" in caught.value.message_dict
    with tenant_scope(world_a.tenant.id):
        assert not ScoringModel.objects.exists()


def test_one_primary_model_and_versions_bump(world_a):
    first = make_model(world_a, [], name="A")
    second = make_model(world_a, [], name="B", is_primary=True)
    with tenant_scope(world_a.tenant.id):
        first.refresh_from_db()
    assert (first.is_primary, second.is_primary) == (False, True)
    assert first.version == 1
    updated = scoring_model_update(model=first, origin=Origin(actor=world_a.owner), rules=[])
    assert updated.version == 2
    with pytest.raises(ValidationError):
        make_model(world_a, [], name="A")
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        scoring_model_update(model=first, origin=Origin(role=Role.INSIDE_SALES), name="C")


def test_scores_stay_in_their_tenant(world_a, world_b):
    mine = LeadFactory(tenant=world_a.tenant, job_title="部長")
    theirs = LeadFactory(tenant=world_b.tenant, job_title="部長")
    make_model(world_a, [fit("lead.job_title", "eq", "部長", 10)])
    scores_compute(tenant_id=world_a.tenant.id)
    with unscoped(reason="test: every tenant's scores"):
        scored = set(LeadScore.objects.values_list("lead_id", flat=True))
    assert scored == {mine.id}
    assert theirs.id not in scored


def test_merged_leads_are_not_scored(world_a):
    keep = LeadFactory(tenant=world_a.tenant, job_title="部長")
    merged = LeadFactory(tenant=world_a.tenant, job_title="部長", merged_into=keep)
    make_model(world_a, [fit("lead.job_title", "eq", "部長", 10)])
    scores_compute(tenant_id=world_a.tenant.id)
    assert score_of(world_a, keep).total == 10
    assert score_of(world_a, merged) is None


def test_writes_of_activities_and_leads_rescore_after_commit(
    world_a, django_capture_on_commit_callbacks
):
    """Activities through the batch service, a new lead, a changed lead and a merge each
    lead to their leads being scored once the transaction commits (eager Celery)."""
    from leads.services import activities_ingest, lead_create, lead_merge, lead_update

    tenant = world_a.tenant
    origin = Origin(actor=world_a.owner)
    make_model(
        world_a,
        [
            fit("lead.job_title", "contains", "部長", 30),
            behaviour(20, ActivityType.FORM_SUBMISSION),
        ],
    )
    lead = LeadFactory(tenant=tenant, email="a@example.jp")
    with django_capture_on_commit_callbacks(execute=True):
        activities_ingest(
            tenant_id=tenant.id,
            items=[{"email": "a@example.jp", "type": "form_submission"}],
            channel="api",
        )
    assert score_of(world_a, lead).total == 20

    with django_capture_on_commit_callbacks(execute=True):
        lead_update(lead=lead, fields={"job_title": "営業部長"}, origin=origin)
    score = score_of(world_a, lead)
    assert (score.fit, score.behaviour) == (30, 20)
    with tenant_scope(tenant.id):
        assert Lead.objects.get(pk=lead.pk).lifecycle_stage == LifecycleStage.MQL

    with django_capture_on_commit_callbacks(execute=True):
        other = lead_create(
            tenant_id=tenant.id, email="b@example.jp", fields={"job_title": "部長"},
            origin=origin,
        )  # fmt: skip
    assert score_of(world_a, other).total == 30

    with django_capture_on_commit_callbacks(execute=True):
        lead_merge(keep=lead, merge=other, origin=origin)
    assert score_of(world_a, other) is None  # the merged lead's scores go
    assert score_of(world_a, lead).total == 50


def test_a_tenant_without_scoring_models_queues_no_scoring(
    world_a, django_capture_on_commit_callbacks
):
    from leads.services import activities_ingest

    LeadFactory(tenant=world_a.tenant, email="a@example.jp")

    def scoring_flushes() -> int:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            activities_ingest(
                tenant_id=world_a.tenant.id,
                items=[{"email": "a@example.jp", "type": "page_view"}],
                channel="api",
            )
        return sum(
            1
            for c in callbacks
            if getattr(getattr(c, "__self__", None), "key", None) == "leads.scoring"
        )

    assert scoring_flushes() == 0
    make_model(world_a, [behaviour(1, ActivityType.PAGE_VIEW)])  # the process learns at once
    assert scoring_flushes() == 1


def test_a_big_batch_is_scored_in_chunks_of_its_own_transaction(world_a, monkeypatch):
    from leads.scoring import tasks

    leads = [LeadFactory(tenant=world_a.tenant, job_title="部長") for _ in range(5)]
    make_model(world_a, [fit("lead.job_title", "eq", "部長", 10)], mql_threshold=1000)
    monkeypatch.setattr(tasks, "SCORE_CHUNK", 2)
    calls = []
    original = services.scores_compute

    def spy(**kwargs):
        calls.append(kwargs["lead_ids"])
        return original(**kwargs)

    monkeypatch.setattr(services, "scores_compute", spy)
    result = tasks.score_leads(world_a.tenant.id, [lead.id for lead in reversed(leads)])
    assert result == {"scored": 5, "mql": 0}
    assert [len(chunk) for chunk in calls] == [2, 2, 1]
    assert all(score_of(world_a, lead).total == 10 for lead in leads)


def test_companies_roll_up_their_leads_scores(world_a, django_capture_on_commit_callbacks):
    from django.test import Client
    from django.urls import reverse

    from leads.models import CompanyScore

    tenant = world_a.tenant
    acme, empty = CompanyFactory(tenant=tenant), CompanyFactory(tenant=tenant)
    boss = LeadFactory(tenant=tenant, company=acme, job_title="部長")
    LeadFactory(tenant=tenant, company=acme, job_title="部長")
    LeadFactory(tenant=tenant, company=acme, job_title="担当")
    model = make_model(world_a, [fit("lead.job_title", "eq", "部長", 30)], mql_threshold=1000)
    scores_compute(tenant_id=tenant.id)
    with tenant_scope(tenant.id):
        rollup = CompanyScore.objects.get(company=acme, model=model)
        assert not CompanyScore.objects.filter(company=empty).exists()
    assert (rollup.total, rollup.best, rollup.leads) == (60, 30, 3)

    # An incremental run updates the companies of its leads, after commit.
    with tenant_scope(tenant.id):
        Lead.objects.filter(pk=boss.pk).update(job_title="担当")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        scores_compute(tenant_id=tenant.id, lead_ids=[boss.id])
    with tenant_scope(tenant.id):
        rollup = CompanyScore.objects.get(company=acme, model=model)
    assert (rollup.total, rollup.best, rollup.leads) == (60, 30, 3)  # not yet
    for callback in callbacks:
        callback()
    with tenant_scope(tenant.id):
        rollup = CompanyScore.objects.get(company=acme, model=model)
    assert (rollup.total, rollup.best, rollup.leads) == (30, 30, 3)

    viewer = Client()
    viewer.force_login(world_a.owner)
    page = viewer.get(reverse("leads:company", kwargs={"tenant": tenant.slug, "pk": acme.pk}))
    assert 'data-testid="company-score"' in page.content.decode()
    assert page.context["scores"][0].total == 30

    # A company left without scored leads loses its row at the next full recompute.
    with tenant_scope(tenant.id):
        Lead.objects.filter(company=acme).update(company=empty)
    scores_compute(tenant_id=tenant.id)
    with tenant_scope(tenant.id):
        assert not CompanyScore.objects.filter(company=acme).exists()
        assert CompanyScore.objects.get(company=empty, model=model).leads == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_for_one_lead_never_write_an_older_score_over_a_newer(world_a):
    """Run A scores the lead and holds its transaction open; meanwhile a second activity
    commits and run B scores the same lead. B must wait for A (the lead's row lock) and
    then see both activities: the stored score counts both, never A's older one."""
    import threading

    from django.db import connection, transaction

    tenant = world_a.tenant
    lead = LeadFactory(tenant=tenant)
    make_model(world_a, [behaviour(10, ActivityType.FORM_SUBMISSION)], mql_threshold=1000)
    ActivityFactory(tenant=tenant, lead=lead, type=ActivityType.FORM_SUBMISSION)
    a_scored, release, b_done = threading.Event(), threading.Event(), threading.Event()
    waited = {}

    def run_a():
        try:
            with transaction.atomic():
                scores_compute(tenant_id=tenant.id, lead_ids=[lead.id])
                a_scored.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    def run_b():
        try:
            a_scored.wait(timeout=10)
            ActivityFactory(tenant=tenant, lead=lead, type=ActivityType.FORM_SUBMISSION)
            started = time.monotonic()
            scores_compute(tenant_id=tenant.id, lead_ids=[lead.id])
            waited["seconds"] = time.monotonic() - started
            b_done.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for thread in threads:
        thread.start()
    assert a_scored.wait(timeout=10)
    assert not b_done.wait(timeout=1.0), "B scored the lead while A still held it"
    release.set()
    for thread in threads:
        thread.join(timeout=20)
    assert b_done.is_set()
    assert waited["seconds"] >= 0.9
    assert score_of(world_a, lead).total == 20


@pytest.mark.django_db(transaction=True)
def test_runs_for_leads_of_one_company_do_not_wait_on_each_other(world_a):
    """Incremental runs leave the company rollup to a task after commit: a run holding
    its transaction open does not hold the company's row, so another run for another
    lead of the same company finishes at once, and the rollups that follow count both."""
    import threading

    from django.db import connection, transaction

    from leads.models import CompanyScore

    tenant = world_a.tenant
    acme = CompanyFactory(tenant=tenant)
    first, second = LeadFactory.create_batch(2, tenant=tenant, company=acme)
    model = make_model(world_a, [behaviour(10, ActivityType.FORM_SUBMISSION)], mql_threshold=1000)
    for lead in (first, second):
        ActivityFactory(tenant=tenant, lead=lead, type=ActivityType.FORM_SUBMISSION)
    a_scored, release = threading.Event(), threading.Event()

    def run_a():
        try:
            with transaction.atomic():
                scores_compute(tenant_id=tenant.id, lead_ids=[first.id])
                a_scored.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    thread = threading.Thread(target=run_a)
    thread.start()
    try:
        assert a_scored.wait(timeout=10)
        started = time.monotonic()
        scores_compute(tenant_id=tenant.id, lead_ids=[second.id])  # eager: rolls up now
        assert time.monotonic() - started < 0.9, "B waited for A's transaction"
        with tenant_scope(tenant.id):
            rollup = CompanyScore.objects.get(company=acme, model=model)
        # A's new score is not committed yet: its lead still counts with its old 0.
        assert (rollup.total, rollup.leads) == (10, 2)
    finally:
        release.set()
        thread.join(timeout=20)
    with tenant_scope(tenant.id):
        rollup = CompanyScore.objects.get(company=acme, model=model)
    assert (rollup.total, rollup.best, rollup.leads) == (20, 10, 2)
