"""Scoring: models and rules (validated, versioned, audited), computing scores
set-based, the editor's preview, and the move to MQL.

* `scores_compute(tenant_id, lead_ids=None)` scores every active model for the tenant
  (or the given leads) with one statement per model (leads.scoring.compiler), then
  moves leads whose primary score reaches the threshold to MQL.
* `rescore_after_commit(tenant_id, lead_ids)` is what writers of activities and leads
  call: one Celery task per tenant per transaction, with every lead it touched.
* `scoring_preview(...)` counts how many leads would reach MQL under unsaved rules.
* MQL: a lead in subscriber, lead or recycled whose primary total reaches the threshold
  moves to MQL, with its transition, `lead.lifecycle_changed` and `lead.mql_reached`
  (the handoff queue listens to that). A lead whose score falls again is never moved
  back: sales decides what happens to an MQL (accept, reject, recycle).
"""

import datetime
import time
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import events
from accounts.services import Origin, audit_record
from accounts.tenancy import tenant_scope
from leads.models import (
    Activity,
    Channel,
    CompanyScore,
    Lead,
    LeadScore,
    LifecycleStage,
    LifecycleTransition,
    ScoringModel,
    ScoringRule,
)
from leads.scoring import fields as f
from leads.scoring.compiler import ModelSpec, RuleError, RuleSpec, ScoreQuery

MQL_FROM = (LifecycleStage.SUBSCRIBER, LifecycleStage.LEAD, LifecycleStage.RECYCLED)
MAX_RULES = 200
# Hash aggregation of a million leads' activities fits in memory instead of spilling.
RECOMPUTE_WORK_MEM = "256MB"


# --- Validation --------------------------------------------------------------------------


def _campaign_model():
    # leads may not import campaigns: the lazy foreign key knows the model.
    return Activity._meta.get_field("campaign").related_model


def rule_clean(data: dict[str, Any], fit_fields: dict[str, f.FitField]) -> RuleSpec:
    """A rule's fields checked and normalised; ValidationError names each bad field."""
    errors: dict[str, list[str]] = defaultdict(list)
    kind = data.get("kind")
    if kind not in ScoringRule.Kind.values:
        errors["kind"].append(_("Choose fit or behaviour."))
    points = data.get("points")
    if isinstance(points, bool) or not isinstance(points, int):
        errors["points"].append(_("Points are a whole number (negative allowed)."))
    elif abs(points) > 10_000:
        errors["points"].append(_("Points are between -10000 and 10000."))
    spec = RuleSpec(key=str(data.get("key", "")), kind=kind or "", points=points or 0)
    if kind == ScoringRule.Kind.FIT:
        _clean_fit(data, spec, fit_fields, errors)
    elif kind == ScoringRule.Kind.BEHAVIOUR:
        _clean_behaviour(data, spec, errors)
    if errors:
        raise ValidationError(dict(errors))
    return spec


def _clean_fit(data, spec: RuleSpec, fit_fields, errors) -> None:
    field = fit_fields.get(data.get("field") or "")
    if field is None:
        errors["field"].append(_("Choose a field of the lead or its company."))
        return
    spec.field = field.key
    operator = data.get("operator") or ""
    if operator not in f.OPERATORS[field.type]:
        errors["operator"].append(_("This operator does not apply to this field."))
        return
    spec.operator = operator
    value = data.get("value")
    if operator in f.NO_VALUE:
        spec.value = None
    elif operator in f.LIST_VALUE:
        if not isinstance(value, list) or not value or not all(_scalar(v) for v in value):
            errors["value"].append(_("Give a list of values."))
        else:
            spec.value = [str(v) for v in value]
            _check_choices(field, spec.value, errors)
    elif not _scalar(value) or str(value).strip() == "":
        errors["value"].append(_("Give a value."))
    elif field.type == f.NUMBER:
        try:
            spec.value = str(Decimal(str(value)))
        except InvalidOperation:
            errors["value"].append(_("Give a number."))
    else:
        spec.value = str(value).strip()
        _check_choices(field, [spec.value], errors)
    for extra in ("cap", "window_days", "activity_type", "property_key"):
        if data.get(extra):
            errors[extra].append(_("Only behaviour rules have this."))


def _check_choices(field: f.FitField, values: list[str], errors) -> None:
    if field.type in (f.CHOICE, f.ORDINAL) and field.choices:
        allowed = {value for value, _label in field.choices}
        if any(v not in allowed for v in values):
            errors["value"].append(_("Choose among the field's values."))


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | Decimal) and not isinstance(value, bool)


def _clean_behaviour(data, spec: RuleSpec, errors) -> None:
    activity_type = data.get("activity_type") or ""
    if activity_type and activity_type not in f.ACTIVITY_TYPES:
        errors["activity_type"].append(_("Unknown activity type."))
    spec.activity_type = activity_type
    key = data.get("property_key") or ""
    if key:
        if key not in f.BEHAVIOUR_PROPERTIES:
            errors["property_key"].append(_("Unknown activity property."))
        operator = data.get("property_operator") or ""
        value = data.get("property_value")
        if operator not in f.PROPERTY_OPERATORS:
            errors["property_operator"].append(_("Choose how to compare the property."))
        elif operator == "in":
            if not isinstance(value, list) or not value or not all(_scalar(v) for v in value):
                errors["property_value"].append(_("Give a list of values."))
            else:
                value = [str(v) for v in value]
        elif not _scalar(value) or str(value).strip() == "":
            errors["property_value"].append(_("Give a value."))
        else:
            value = str(value).strip()
        if key == f.CAMPAIGN_CHANNEL and operator in f.PROPERTY_OPERATORS:
            channels = set(_campaign_model()._meta.get_field("channel").flatchoices)
            known = {c for c, _label in channels}
            given = value if isinstance(value, list) else [value]
            if operator not in ("eq", "neq", "in") or any(v not in known for v in given):
                errors["property_value"].append(_("Choose campaign channels."))
        spec.property_key, spec.property_operator, spec.property_value = key, operator, value
    for name in ("cap", "window_days"):
        value = data.get(name)
        if value in (None, ""):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors[name].append(_("A whole number of at least 1."))
        else:
            setattr(spec, name, value)
    if data.get("field") or data.get("operator"):
        errors["field"].append(_("Only fit rules test a field."))


def _bands_clean(bands: Any) -> list[dict]:
    if bands in (None, ""):
        return []
    if not isinstance(bands, list) or len(bands) > 10:
        raise ValidationError({"bands": [_("Give up to 10 bands.")]})
    clean, keys = [], set()
    for band in bands:
        if not isinstance(band, dict) or not str(band.get("key", "")).strip():
            raise ValidationError({"bands": [_("Each band has a key.")]})
        minimum = band.get("min")
        if minimum is not None and (isinstance(minimum, bool) or not isinstance(minimum, int)):
            raise ValidationError({"bands": [_("A band's minimum is a whole number.")]})
        key = str(band["key"]).strip()[:40]
        if key in keys:
            raise ValidationError({"bands": [_("Band keys are unique.")]})
        keys.add(key)
        clean.append({"key": key, "label": str(band.get("label") or key)[:60], "min": minimum})
    return sorted(clean, key=lambda b: (b["min"] is not None, b["min"] or 0))


# --- Models and rules --------------------------------------------------------------------

MODEL_FIELDS = ("name", "description", "is_primary", "mql_threshold", "bands", "half_life_days")


def _model_clean(values: dict[str, Any]) -> dict[str, Any]:
    clean = {}
    errors: dict[str, list[str]] = {}
    for key, value in values.items():
        if key not in MODEL_FIELDS:
            errors[key] = [_("Unknown field.")]
        elif key == "bands":
            clean[key] = _bands_clean(value)
        elif key == "half_life_days":
            if value in (None, ""):
                clean[key] = None
            else:
                try:
                    clean[key] = Decimal(str(value))
                except InvalidOperation:
                    errors[key] = [_("Give a number of days.")]
                    continue
                if not Decimal("0.1") <= clean[key] <= Decimal("3650"):
                    errors[key] = [_("Between 0.1 and 3650 days.")]
        elif key == "mql_threshold":
            if isinstance(value, bool) or not isinstance(value, int):
                errors[key] = [_("A whole number.")]
            else:
                clean[key] = value
        elif key == "name":
            if not str(value or "").strip():
                errors[key] = [_("Give the model a name.")]
            clean[key] = str(value or "").strip()[:200]
        else:
            clean[key] = value
    if errors:
        raise ValidationError(errors)
    return clean


def _require_writer(origin: Origin) -> None:
    from django.core.exceptions import PermissionDenied

    from accounts.models import Role

    if origin.role is not None and origin.role not in (Role.OWNER, Role.ADMIN, Role.MARKETING):
        raise PermissionDenied(_("Only marketing and admins edit scoring."))


def scoring_model_create(
    *, tenant_id: int, origin: Origin, rules: list[dict] | None = None, **values: Any
) -> ScoringModel:
    _require_writer(origin)
    clean = _model_clean(values)
    with tenant_scope(tenant_id), transaction.atomic():
        fit_fields = f.fit_fields_for_tenant()
        specs = [rule_clean(rule, fit_fields) for rule in rules or []]
        if len(specs) > MAX_RULES:
            raise ValidationError({"rules": [_("A model has at most 200 rules.")]})
        if clean.get("is_primary") or not ScoringModel.objects.filter(is_primary=True).exists():
            ScoringModel.objects.filter(is_primary=True).update(is_primary=False)
            clean["is_primary"] = True
        if ScoringModel.objects.filter(name=clean.get("name", "")).exists():
            raise ValidationError({"name": [_("A scoring model with this name exists.")]})
        model = ScoringModel.objects.create(tenant_id=tenant_id, created_by=origin.actor, **clean)
        _rules_replace(model, specs)
        audit_record(
            tenant_id=tenant_id, origin=origin, action="scoring.model_created", target=model
        )
        _forget_tenant_scores(tenant_id)
        scores_recompute_later(tenant_id=tenant_id, model_id=model.id)
    return model


def scoring_model_update(
    *, model: ScoringModel, origin: Origin, rules: list[dict] | None = None, **values: Any
) -> ScoringModel:
    """Change the model and, when `rules` is given, replace its rules. Bumps the version:
    the periodic job recomputes the tenant's scores under it."""
    _require_writer(origin)
    clean = _model_clean(values)
    with tenant_scope(model.tenant_id), transaction.atomic():
        if "name" in clean and (
            ScoringModel.objects.filter(name=clean["name"]).exclude(pk=model.pk).exists()
        ):
            raise ValidationError({"name": [_("A scoring model with this name exists.")]})
        if clean.get("is_primary"):
            ScoringModel.objects.filter(is_primary=True).exclude(pk=model.pk).update(
                is_primary=False
            )
        elif clean.get("is_primary") is False and model.is_primary:
            raise ValidationError({"is_primary": [_("Make another model primary instead.")]})
        for key, value in clean.items():
            setattr(model, key, value)
        if rules is not None:
            fit_fields = f.fit_fields_for_tenant()
            specs = [rule_clean(rule, fit_fields) for rule in rules]
            if len(specs) > MAX_RULES:
                raise ValidationError({"rules": [_("A model has at most 200 rules.")]})
            _rules_replace(model, specs)
        model.version = F("version") + 1
        model.updated_at = timezone.now()
        model.save()
        model.refresh_from_db()
        audit_record(
            tenant_id=model.tenant_id,
            origin=origin,
            action="scoring.model_updated",
            target=model,
            metadata={"fields": sorted(clean), "rules": rules is not None},
        )
        scores_recompute_later(tenant_id=model.tenant_id, model_id=model.id)
    return model


def _rules_replace(model: ScoringModel, specs: list[RuleSpec]) -> None:
    ScoringRule.objects.filter(model=model).delete()
    ScoringRule.objects.bulk_create(
        [
            ScoringRule(
                tenant_id=model.tenant_id,
                model=model,
                kind=spec.kind,
                label="",
                field=spec.field,
                operator=spec.operator,
                value=spec.value,
                activity_type=spec.activity_type,
                property_key=spec.property_key,
                property_operator=spec.property_operator,
                property_value=spec.property_value,
                points=spec.points,
                cap=spec.cap,
                window_days=spec.window_days,
                position=position,
            )
            for position, spec in enumerate(specs)
        ]
    )


def scoring_model_delete(*, model: ScoringModel, origin: Origin) -> None:
    _require_writer(origin)
    with tenant_scope(model.tenant_id), transaction.atomic():
        if model.is_primary and ScoringModel.objects.exclude(pk=model.pk).exists():
            raise ValidationError({"is_primary": [_("Make another model primary first.")]})
        audit_record(
            tenant_id=model.tenant_id, origin=origin, action="scoring.model_deleted", target=model
        )
        LeadScore.objects.filter(model=model).delete()
        CompanyScore.objects.filter(model=model).delete()
        model.delete()
        _forget_tenant_scores(model.tenant_id)


# --- Computing ---------------------------------------------------------------------------


def _campaigns_by_channel() -> dict[str, list[int]]:
    by_channel: dict[str, list[int]] = defaultdict(list)
    for campaign_id, channel in _campaign_model().objects.values_list("id", "channel"):
        by_channel[channel].append(campaign_id)
    return dict(by_channel)


def _query(model: ScoringModel, rules: list[RuleSpec], tenant_id: int, now) -> ScoreQuery:
    return ScoreQuery(
        ModelSpec.of(model),
        rules,
        tenant_id=tenant_id,
        now=now,
        fit_fields=f.fit_fields_for_tenant(),
        campaigns_by_channel=_campaigns_by_channel(),
    )


def scores_compute(
    *, tenant_id: int, lead_ids: list[int] | None = None, model_id: int | None = None
) -> dict[str, int]:
    """Score the tenant's leads (all, or `lead_ids`) under every scoring model (or one),
    then move those whose primary score reaches the threshold to MQL. One transaction;
    returns {"scored": rows written, "mql": leads moved}."""
    now = timezone.now()
    written = moved = 0
    with tenant_scope(tenant_id), transaction.atomic():
        models = list(ScoringModel.objects.all() if model_id is None else
                      ScoringModel.objects.filter(pk=model_id))  # fmt: skip
        if not models or lead_ids == []:
            return {"scored": 0, "mql": 0}
        with connection.cursor() as cursor:
            # A full recompute runs alone in its tenant (exclusive lock); incremental
            # runs share the lock and run side by side, but two runs touching the same
            # lead take turns (its row lock, in id order): the later one's statement
            # then sees the other's activities, so no score is computed from an older
            # snapshot and written over a newer one.
            if lead_ids is None:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('leads.scoring'), %s)", [tenant_id]
                )
            else:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock_shared(hashtext('leads.scoring'), %s)",
                    [tenant_id],
                )
                cursor.execute(
                    f"SELECT id, company_id FROM {Lead._meta.db_table} WHERE tenant_id = %s"
                    " AND id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE",
                    [tenant_id, sorted(set(lead_ids))],
                )
                company_ids = sorted({company for _lead, company in cursor.fetchall() if company})
            if lead_ids is None:
                cursor.execute(f"SET LOCAL work_mem = '{RECOMPUTE_WORK_MEM}'")
            for model in models:
                rules = [RuleSpec.of(rule) for rule in model.rules.all()]
                try:
                    query = _query(model, rules, tenant_id, now)
                    scored = query.scored(lead_ids if lead_ids is None else None)
                    if lead_ids is not None:
                        statement = query.upsert(model.id, lead_ids)
                except RuleError as exc:  # a field removed since (a custom field deleted)
                    raise ValidationError({"rules": [str(exc)]}) from exc
                if lead_ids is None:
                    # The whole tenant is scored once, into a temporary table: the MERGE
                    # and the company rollup both read it (rolling up from LeadScore
                    # joined to leads was a second million-row join).
                    cursor.execute("DROP TABLE IF EXISTS scoring_scored")
                    cursor.execute(
                        f"CREATE TEMPORARY TABLE scoring_scored ON COMMIT DROP AS {scored}",
                        query.params,
                    )
                    cursor.execute("ANALYZE scoring_scored")
                    statement = query.merge(model.id, "scoring_scored")
                cursor.execute(statement, query.params)
                written += cursor.rowcount
                if lead_ids is None:
                    _roll_up_all_companies(cursor, tenant_id, model.id, now)
                    cursor.execute("DROP TABLE scoring_scored")
                    # Leads merged away since: their scores go (deleted leads' go with
                    # them, through Django's cascade).
                    cursor.execute(
                        f"""DELETE FROM {LeadScore._meta.db_table} s
                            USING {Lead._meta.db_table} l
                            WHERE s.tenant_id = %(t)s AND s.model_id = %(model)s
                              AND l.id = s.lead_id AND l.tenant_id = %(t)s
                              AND l.merged_into_id IS NOT NULL""",
                        {"t": tenant_id, "model": model.id},
                    )
                    ScoringModel.objects.filter(pk=model.pk).update(
                        scored_version=model.version, scored_at=now
                    )
        primary = next((m for m in models if m.is_primary), None)
        if primary is not None:
            moved = _promote_to_mql(tenant_id, primary, lead_ids, now)
        if lead_ids is not None and company_ids:
            # The companies roll up after commit, in a short transaction of their own:
            # inside this one, two runs whose leads share a company waited on each
            # other's company row until the slower one committed.
            events.after_commit_batch(
                "leads.scoring.companies", tenant_id, company_ids, _send_company_rollup
            )
    return {"scored": written, "mql": moved}


def _send_company_rollup(tenant_id: int, company_ids: list[int]) -> None:
    from leads.tasks import roll_up_company_scores

    roll_up_company_scores.delay(tenant_id, company_ids)


def company_scores_roll_up(*, tenant_id: int, company_ids: list[int]) -> int:
    """CompanyScore of these companies, from their live leads' current scores, under
    every model; returns the rows written. Rollups of a tenant take turns (and wait for
    a full recompute), so each reads every score committed before it started: the last
    one to run writes the right figures whatever order they ran in."""
    if not company_ids:
        return 0
    written = 0
    now = timezone.now()
    with tenant_scope(tenant_id), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock_shared(hashtext('leads.scoring'), %(t)s),"
            " pg_advisory_xact_lock(hashtext('leads.scoring.companies'), %(t)s)",
            {"t": tenant_id},
        )
        for model_id in ScoringModel.objects.values_list("id", flat=True):
            written += _roll_up_companies(cursor, tenant_id, model_id, company_ids, now)
    return written


def _roll_up_companies(
    cursor, tenant_id: int, model_id: int, company_ids: list[int], now: datetime.datetime
) -> int:
    """CompanyScore of the given companies from their live leads' scores (an upsert:
    rows that change are written; a company left without scored leads keeps its row
    until the next full recompute)."""
    scores, leads, companies = (
        LeadScore._meta.db_table,
        Lead._meta.db_table,
        CompanyScore._meta.db_table,
    )
    cursor.execute(
        f"""INSERT INTO {companies} AS c (tenant_id, model_id, company_id, total, best,
                leads, computed_at)
            SELECT %(t)s, %(model)s, l.company_id, sum(s.total)::int, max(s.total), count(*),
                   %(now)s
            FROM {scores} s JOIN {leads} l ON l.id = s.lead_id
            WHERE s.tenant_id = %(t)s AND s.model_id = %(model)s AND l.tenant_id = %(t)s
              AND l.merged_into_id IS NULL AND l.company_id = ANY(%(companies)s::bigint[])
            GROUP BY l.company_id
            ON CONFLICT (tenant_id, company_id, model_id) DO UPDATE
            SET total = EXCLUDED.total, best = EXCLUDED.best, leads = EXCLUDED.leads,
                computed_at = EXCLUDED.computed_at
            WHERE (c.total, c.best, c.leads)
                  IS DISTINCT FROM (EXCLUDED.total, EXCLUDED.best, EXCLUDED.leads)""",
        {"t": tenant_id, "model": model_id, "now": now, "companies": company_ids},
    )
    return cursor.rowcount


def _roll_up_all_companies(cursor, tenant_id: int, model_id: int, now: datetime.datetime) -> None:
    """CompanyScore of every company from the scores a full recompute just stored in
    scoring_scored (every live lead with its company); none left for a company without
    scored leads. Only rows that change are written."""
    companies = CompanyScore._meta.db_table
    params = {"t": tenant_id, "model": model_id, "now": now}
    # The whole tenant, from the scores just computed (scoring_scored: every live lead
    # with its company): the rollup once into a temporary table, then one MERGE from it
    # and one anti-join DELETE against it (companies left without scored leads). Both
    # temporary tables are analysed: without statistics the anti-join was planned as a
    # nested loop and ran for minutes on 100,000 companies. The rollup also gets a
    # unique index: the MERGE just filled the company scores, whose statistics can say
    # they hold a handful of rows, and a nested loop over them then scanned the whole
    # rollup once per row (minutes again, at 1,000,000 leads); with the index each
    # probe is one lookup whatever the plan.
    cursor.execute("DROP TABLE IF EXISTS scoring_company_rollup")
    cursor.execute(
        """CREATE TEMPORARY TABLE scoring_company_rollup ON COMMIT DROP AS
           SELECT company_id, sum(total)::int AS total, max(total) AS best, count(*) AS leads
           FROM scoring_scored WHERE company_id IS NOT NULL GROUP BY company_id"""
    )
    cursor.execute("CREATE UNIQUE INDEX ON scoring_company_rollup (company_id)")
    cursor.execute("ANALYZE scoring_company_rollup")
    cursor.execute(
        f"""MERGE INTO {companies} AS c USING scoring_company_rollup AS n
            ON c.tenant_id = %(t)s AND c.model_id = %(model)s AND c.company_id = n.company_id
            WHEN MATCHED AND (c.total, c.best, c.leads) IS DISTINCT FROM (n.total, n.best, n.leads)
              THEN UPDATE SET total = n.total, best = n.best, leads = n.leads,
                   computed_at = %(now)s
            WHEN NOT MATCHED THEN INSERT (tenant_id, model_id, company_id, total, best, leads,
                 computed_at)
              VALUES (%(t)s, %(model)s, n.company_id, n.total, n.best, n.leads, %(now)s)""",
        params,
    )
    cursor.execute(
        f"""DELETE FROM {companies} c WHERE c.tenant_id = %(t)s AND c.model_id = %(model)s
            AND NOT EXISTS (SELECT 1 FROM scoring_company_rollup n
                            WHERE n.company_id = c.company_id)""",
        params,
    )
    cursor.execute("DROP TABLE scoring_company_rollup")


def _promote_to_mql(
    tenant_id: int, model: ScoringModel, lead_ids: list[int] | None, now: datetime.datetime
) -> int:
    """Leads whose primary total reaches the threshold and that are not yet MQL (nor
    past it, nor disqualified) move to MQL, set-based, with their transitions; each
    emits `lead.lifecycle_changed` and `lead.mql_reached`."""
    lead_filter = "AND s.lead_id = ANY(%(leads)s::bigint[])" if lead_ids is not None else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH eligible AS (
                    SELECT l.id, l.lifecycle_stage AS from_stage, s.total
                    FROM {LeadScore._meta.db_table} s
                    JOIN {Lead._meta.db_table} l ON l.id = s.lead_id
                    WHERE s.tenant_id = %(t)s AND s.model_id = %(model)s
                      AND s.total >= %(threshold)s {lead_filter}
                      AND l.tenant_id = %(t)s AND l.merged_into_id IS NULL
                      AND l.lifecycle_stage = ANY(%(from)s::text[])
                    ORDER BY l.id
                    FOR UPDATE OF l
                ), moved AS (
                    UPDATE {Lead._meta.db_table} l SET lifecycle_stage = %(mql)s,
                        updated_at = %(now)s
                    FROM eligible e WHERE l.id = e.id
                    RETURNING l.id, e.from_stage, e.total, l.email, l.owner_id
                ), recorded AS (
                    INSERT INTO {LifecycleTransition._meta.db_table}
                        (tenant_id, lead_id, from_stage, to_stage, occurred_at, actor_id,
                         channel, reason)
                    SELECT %(t)s, id, from_stage, %(mql)s, %(now)s, NULL, %(channel)s,
                           %(reason)s
                    FROM moved
                    RETURNING id, lead_id
                )
                SELECT m.id, m.from_stage, m.total, m.email, m.owner_id, r.id
                FROM moved m JOIN recorded r ON r.lead_id = m.id""",
            {
                "t": tenant_id,
                "model": model.id,
                "threshold": model.mql_threshold,
                "leads": lead_ids,
                "from": list(MQL_FROM),
                "mql": LifecycleStage.MQL,
                "now": now,
                "channel": Channel.SYSTEM,
                "reason": _("The score reached the MQL threshold %(threshold)s (%(model)s).")
                % {"threshold": model.mql_threshold, "model": model.name},
            },
        )
        moved = cursor.fetchall()
    if not moved:
        return 0
    events.emit_many(
        "lead.lifecycle_changed",
        tenant_id=tenant_id,
        payloads=[
            {"v": 1, "lead_id": lead_id, "from": from_stage, "to": LifecycleStage.MQL,
             "channel": Channel.SYSTEM, "transition_id": transition_id}
            for lead_id, from_stage, _total, _email, _owner, transition_id in moved
        ],
    )  # fmt: skip
    events.emit_many(
        "lead.mql_reached",
        tenant_id=tenant_id,
        payloads=[
            {"v": 1, "lead_id": lead_id, "email": email, "score": total,
             "model_id": model.id, "threshold": model.mql_threshold, "from": from_stage,
             "owner_id": owner_id, "transition_id": transition_id}
            for lead_id, from_stage, total, email, owner_id, transition_id in moved
        ],
    )  # fmt: skip
    return len(moved)


def scoring_preview(
    *,
    tenant_id: int,
    rules: list[dict],
    mql_threshold: int,
    half_life_days: Any = None,
    bands: Any = None,
    model: ScoringModel | None = None,
) -> dict[str, int]:
    """How many live leads would reach MQL under these (unsaved) rules, and how many
    reach it now under the saved model (`model`), for the editor."""
    clean = _model_clean(
        {"mql_threshold": mql_threshold, "half_life_days": half_life_days, "bands": bands}
    )
    with tenant_scope(tenant_id), transaction.atomic():
        fit_fields = f.fit_fields_for_tenant()
        specs = []
        for position, rule in enumerate(rules):
            try:
                spec = rule_clean(rule, fit_fields)
            except ValidationError as exc:
                raise ValidationError({f"rules[{position}]": exc.messages}) from exc
            spec.key = f"new{position}"
            specs.append(spec)
        spec_model = ModelSpec(clean.get("half_life_days"), clean["mql_threshold"], clean["bands"])
        query = ScoreQuery(
            spec_model,
            specs,
            tenant_id=tenant_id,
            now=timezone.now(),
            fit_fields=fit_fields,
            campaigns_by_channel=_campaigns_by_channel(),
        )
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL work_mem = '{RECOMPUTE_WORK_MEM}'")
            cursor.execute(query.count_reaching(), query.params)
            reaching, total = cursor.fetchone()
            current = None
            if model is not None:
                current = LeadScore.objects.filter(
                    model=model, total__gte=model.mql_threshold
                ).count()
    return {"would_reach_mql": reaching, "leads": total, "reach_mql_now": current}


# --- After commit ------------------------------------------------------------------------


def _send_scoring(tenant_id: int, lead_ids: list[int]) -> None:
    from leads.tasks import score_leads

    score_leads.delay(tenant_id, sorted(lead_ids))


# Whether a tenant scores at all, remembered per process for a while: a tenant without
# scoring models pays for no task after each write. A model created in another process
# is seen within SCORING_KNOWN_FOR; its first full compute is queued at once anyway.
SCORING_KNOWN_FOR = 30.0
_tenant_scores: dict[int, tuple[float, bool]] = {}


def _tenant_scores_leads(tenant_id: int) -> bool:
    now = time.monotonic()
    known = _tenant_scores.get(tenant_id)
    if known is not None and known[0] > now:
        return known[1]
    with tenant_scope(tenant_id, savepoint=False):
        scores = ScoringModel.objects.exists()
    _tenant_scores[tenant_id] = (now + SCORING_KNOWN_FOR, scores)
    return scores


def _forget_tenant_scores(tenant_id: int) -> None:
    _tenant_scores.pop(tenant_id, None)


def rescore_after_commit(tenant_id: int, lead_ids: Iterable[int | None]) -> None:
    """Score these leads soon after the current transaction commits (one Celery task per
    tenant per transaction, whatever the number of calls); nothing for a tenant without
    scoring models."""
    ids = [lead_id for lead_id in lead_ids if lead_id is not None]
    if ids and _tenant_scores_leads(tenant_id):
        events.after_commit_batch("leads.scoring", tenant_id, ids, _send_scoring)


# --- Reading -----------------------------------------------------------------------------


def rule_catalogue() -> dict:
    """What rules may test, for editors: fit fields (with their operators and choices),
    behaviour properties, activity types, campaign channels (current tenant scope)."""
    campaign_channel = _campaign_model()._meta.get_field("channel")
    return {
        "fit_fields": [
            {
                "key": field.key,
                "label": str(field.label),
                "type": field.type,
                "operators": list(f.OPERATORS[field.type]),
                "choices": [{"value": v, "label": str(label)} for v, label in field.choices],
            }
            for field in f.fit_fields_for_tenant().values()
        ],
        "operators": {key: str(label) for key, label in f.OPERATOR_LABELS.items()},
        "no_value_operators": sorted(f.NO_VALUE),
        "list_operators": sorted(f.LIST_VALUE),
        "activity_types": [
            {"value": value, "label": str(label)} for value, label in Activity.type.field.choices
        ],
        "properties": [
            {"key": p.key, "label": str(p.label)} for p in f.BEHAVIOUR_PROPERTIES.values()
        ],
        "property_operators": list(f.PROPERTY_OPERATORS),
        "campaign_channels": [
            {"value": value, "label": str(label)} for value, label in campaign_channel.choices
        ],
    }


def rule_describe(rule: ScoringRule, fit_fields: dict[str, f.FitField] | None = None) -> str:
    """A rule in words, e.g. "Job title contains 部長" or "Page view, Page URL contains
    /pricing, last 30 days, at most 15"."""
    fit_fields = fit_fields if fit_fields is not None else f.FIT_FIELDS
    operator = str(f.OPERATOR_LABELS.get(rule.operator, rule.operator))
    if rule.kind == ScoringRule.Kind.FIT:
        field = fit_fields.get(rule.field)
        name = str(field.label) if field else rule.field
        if rule.operator in f.NO_VALUE:
            return f"{name} {operator}"
        value = ", ".join(rule.value) if isinstance(rule.value, list) else str(rule.value)
        return f"{name} {operator} {value}"
    labels = dict(Activity.type.field.choices)
    parts = [str(labels.get(rule.activity_type, _("Any activity")))]
    if rule.property_key:
        prop = f.BEHAVIOUR_PROPERTIES.get(rule.property_key)
        value = rule.property_value
        value = ", ".join(value) if isinstance(value, list) else str(value)
        prop_operator = str(f.OPERATOR_LABELS.get(rule.property_operator, rule.property_operator))
        parts.append(f"{prop.label if prop else rule.property_key} {prop_operator} {value}")
    if rule.window_days:
        parts.append(_("last %(days)s days") % {"days": rule.window_days})
    if rule.cap:
        parts.append(_("at most %(cap)s") % {"cap": rule.cap})
    return ", ".join(parts)


def lead_score_explained(lead: Lead) -> dict:
    """Why the lead scores what it does: per model (primary first), its fit, behaviour,
    total, band and threshold, and every rule with the points it gave."""
    with tenant_scope(lead.tenant_id):
        models = list(
            ScoringModel.objects.prefetch_related("rules").order_by("-is_primary", "name")
        )
        scores = {s.model_id: s for s in LeadScore.objects.filter(lead_id=lead.id)}
        fit_fields = f.fit_fields_for_tenant()
    result = []
    for model in models:
        score = scores.get(model.id)
        breakdown = score.breakdown if score else {}
        result.append(
            {
                "model": {"id": model.id, "name": model.name, "is_primary": model.is_primary},
                "fit": score.fit if score else 0,
                "behaviour": score.behaviour if score else 0,
                "total": score.total if score else 0,
                "band": score.band if score else "",
                "mql_threshold": model.mql_threshold,
                "computed_at": score.computed_at if score else None,
                "rules": [
                    {
                        "id": rule.id,
                        "kind": rule.kind,
                        "description": rule_describe(rule, fit_fields),
                        "points": rule.points,
                        "scored": breakdown.get(str(rule.id), 0),
                    }
                    for rule in model.rules.all()
                ],
            }
        )
    return {"lead_id": lead.id, "scores": result}


def scores_recompute_later(*, tenant_id: int, model_id: int | None = None) -> None:
    """Queue a full recompute of the tenant (one model, or all) after commit."""
    from leads.tasks import score_tenant

    transaction.on_commit(lambda: score_tenant.delay(tenant_id, model_id))
