"""A scoring model's rules as one SQL statement.

`ScoreQuery(model, rules, …).sql(scope)` scores a whole tenant or a list of leads in one
statement: fit points from CASE expressions over the lead and its company, behaviour
points from one pass over the leads' activities (a FILTERed, decayed SUM per rule,
capped and rounded), the breakdown as a JSON object of the rules that scored. The same
query serves the recompute (an upsert into LeadScore that writes only rows that
changed), the incremental update after activities arrive, and the editor's preview (a
count, with unsaved rules). Values are parameters; names come from leads.scoring.fields.
"""

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from leads.models import Activity, Company, Lead, LeadScore
from leads.normalize import FREE_MAIL_DOMAINS
from leads.scoring import fields as f

SECONDS_PER_DAY = 86400
# jsonb_build_object takes at most 100 arguments: the breakdown is built in pieces.
BREAKDOWN_CHUNK = 40


class RuleError(ValueError):
    """A rule the compiler cannot turn into SQL (validation should have caught it)."""


@dataclass
class RuleSpec:
    """What the compiler needs of a rule; saved ScoringRules and unsaved preview rules
    alike. `key` names the rule in the breakdown (its id, as a string)."""

    key: str
    kind: str
    points: int
    field: str = ""
    operator: str = ""
    value: Any = None
    activity_type: str = ""
    property_key: str = ""
    property_operator: str = ""
    property_value: Any = None
    cap: int | None = None
    window_days: int | None = None

    @classmethod
    def of(cls, rule) -> "RuleSpec":
        return cls(
            key=str(rule.pk),
            kind=rule.kind,
            points=rule.points,
            field=rule.field,
            operator=rule.operator,
            value=rule.value,
            activity_type=rule.activity_type,
            property_key=rule.property_key,
            property_operator=rule.property_operator,
            property_value=rule.property_value,
            cap=rule.cap,
            window_days=rule.window_days,
        )


@dataclass
class ModelSpec:
    half_life_days: Decimal | None = None
    mql_threshold: int = 100
    bands: list[dict] = field(default_factory=list)

    @classmethod
    def of(cls, model) -> "ModelSpec":
        return cls(model.half_life_days, model.mql_threshold, list(model.bands or []))


def _table(model) -> str:
    return model._meta.db_table


class ScoreQuery:
    def __init__(
        self,
        model: ModelSpec,
        rules: list[RuleSpec],
        *,
        tenant_id: int,
        now: datetime.datetime,
        fit_fields: dict[str, f.FitField],
        campaigns_by_channel: dict[str, list[int]],
    ) -> None:
        self.model = model
        self.rules = rules
        self.now = now
        self.fit_fields = fit_fields
        self.campaigns_by_channel = campaigns_by_channel
        self.params: dict[str, Any] = {"t": tenant_id, "now": now}
        self.fit = [r for r in rules if r.kind == "fit"]
        self.behaviour = [r for r in rules if r.kind == "behaviour"]

    def _param(self, name: str, value: Any) -> str:
        self.params[name] = value
        return f"%({name})s"

    # --- Fit ------------------------------------------------------------------------

    def _fit_condition(self, rule: RuleSpec, n: int) -> str:
        spec = self.fit_fields.get(rule.field)
        if spec is None:
            raise RuleError(f"unknown field {rule.field!r}")
        op = rule.operator
        if op not in f.OPERATORS[spec.type]:
            raise RuleError(f"operator {op!r} does not apply to {rule.field!r}")
        sql = spec.sql
        if sql == "FREE_MAIL":
            domains = self._param("free_mail", sorted(FREE_MAIL_DOMAINS))
            sql = f"(split_part(l.email, '@', 2) = ANY({domains}))"
        value = rule.value
        if spec.type == f.BOOL:
            truth = f"coalesce({sql}, false)"
            return truth if op == "is_true" else f"NOT {truth}"
        if op == "is_empty":
            return f"coalesce({sql}::text, '') = ''"
        if op == "is_not_empty":
            return f"coalesce({sql}::text, '') <> ''"
        if spec.type == f.NUMBER:
            comparison = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[
                op
            ]
            return f"{sql} {comparison} {self._param(f'v{n}', Decimal(str(value)))}::numeric"
        if spec.type == f.ORDINAL and op in ("gte", "lte"):
            whens = " ".join(f"WHEN '{k}' THEN {rank}" for k, rank in spec.ranks.items())
            rank = f"(CASE {sql} {whens} END)"
            comparison = ">=" if op == "gte" else "<="
            return f"{rank} {comparison} {self._param(f'v{n}', spec.ranks[value])}"
        # Text compares case-folded; choices and ordinals exactly.
        fold = spec.type == f.TEXT
        subject = f"lower(coalesce({sql}, ''))" if fold else f"coalesce({sql}, '')"
        if op in f.LIST_VALUE:
            values = [str(v).lower() if fold else str(v) for v in value]
            match = f"{subject} = ANY({self._param(f'v{n}', values)}::text[])"
            return match if op == "in" else f"NOT ({match})"
        text = str(value).lower() if fold else str(value)
        param = self._param(f"v{n}", text)
        return {
            "eq": f"{subject} = {param}",
            "neq": f"{subject} <> {param}",
            "contains": f"strpos({subject}, {param}) > 0",
            "not_contains": f"strpos({subject}, {param}) = 0",
            "starts_with": f"starts_with({subject}, {param})",
            "ends_with": f"right({subject}, char_length({param})) = {param}",
        }[op]

    # --- Behaviour ------------------------------------------------------------------

    def _behaviour_filter(self, rule: RuleSpec, n: int) -> str:
        parts = []
        if rule.activity_type:
            if rule.activity_type not in f.ACTIVITY_TYPES:
                raise RuleError(f"unknown activity type {rule.activity_type!r}")
            parts.append(f"a.type = {self._param(f'type{n}', rule.activity_type)}")
        if rule.property_key:
            parts.append(self._property_condition(rule, n))
        if rule.window_days:
            since = self.now - datetime.timedelta(days=rule.window_days)
            parts.append(f"a.occurred_at >= {self._param(f'since{n}', since)}")
        return " AND ".join(parts) or "true"

    def _property_condition(self, rule: RuleSpec, n: int) -> str:
        op, value = rule.property_operator, rule.property_value
        if op not in f.PROPERTY_OPERATORS:
            raise RuleError(f"unknown property operator {op!r}")
        if rule.property_key == f.CAMPAIGN_CHANNEL:
            channels = value if op == "in" else [value]
            ids = sorted({i for c in channels for i in self.campaigns_by_channel.get(c, [])})
            match = f"a.campaign_id = ANY({self._param(f'campaigns{n}', ids)}::bigint[])"
            return f"NOT coalesce({match}, false)" if op == "neq" else match
        prop = f.BEHAVIOUR_PROPERTIES.get(rule.property_key)
        if prop is None:
            raise RuleError(f"unknown property {rule.property_key!r}")
        subject = f"lower(coalesce({prop.sql}, ''))"
        if op == "in":
            values = [str(v).lower() for v in value]
            return f"{subject} = ANY({self._param(f'pv{n}', values)}::text[])"
        param = self._param(f"pv{n}", str(value).lower())
        return {
            "eq": f"{subject} = {param}",
            "neq": f"{subject} <> {param}",
            "contains": f"strpos({subject}, {param}) > 0",
            "starts_with": f"starts_with({subject}, {param})",
        }[op]

    def _behaviour_value(self, rule: RuleSpec, n: int) -> str:
        """The rule's points: every matching activity's, decayed by its age, summed,
        capped in absolute value, rounded."""
        points = self._param(f"p{n}", rule.points)
        # `a.decay` is computed once per activity (in the scan below), not per rule.
        each = f"{points} * a.decay" if self.model.half_life_days else f"{points}::float8"
        total = f"coalesce(sum({each}) FILTER (WHERE {self._behaviour_filter(rule, n)}), 0)"
        if rule.cap is not None:
            cap = self._param(f"cap{n}", rule.cap)
            total = f"least(greatest({total}, -{cap}), {cap})"
        return f"round({total})::int"

    def _decay(self) -> str:
        """An activity's weight: 0.5 to the power of its age in half-lives (1 without
        decay; an activity dated in the future counts as now)."""
        if not self.model.half_life_days:
            return "1::float8"
        half_life = float(self.model.half_life_days) * SECONDS_PER_DAY
        age = "greatest(extract(epoch FROM (%(now)s - a.occurred_at)), 0)"
        return f"power(0.5, {age} / {self._param('half_life', half_life)})"

    def _activity_prefilter(self) -> list[str]:
        """Conditions every behaviour rule shares, so the scan reads fewer activities."""
        conditions = []
        if all(r.activity_type for r in self.behaviour):
            types = sorted({r.activity_type for r in self.behaviour})
            conditions.append(f"a.type = ANY({self._param('types', types)}::text[])")
        if all(r.window_days for r in self.behaviour):
            longest = max(r.window_days for r in self.behaviour)
            since = self.now - datetime.timedelta(days=longest)
            conditions.append(f"a.occurred_at >= {self._param('since', since)}")
        return conditions

    # --- The statement --------------------------------------------------------------

    def _band(self, total: str) -> str:
        bands = sorted(
            self.model.bands, key=lambda b: (b.get("min") is not None, b.get("min") or 0)
        )
        if not bands:
            return "''"
        whens = []
        for n, band in enumerate(reversed(bands)):
            key = self._param(f"band{n}", str(band.get("key", "")))
            if band.get("min") is None:
                whens.append(f"ELSE {key}")
            else:
                whens.append(
                    f"WHEN {total} >= {self._param(f'bandmin{n}', int(band['min']))} THEN {key}"
                )
        if not whens[-1].startswith("ELSE"):
            whens.append("ELSE ''")
        return f"(CASE {' '.join(whens)} END)"

    def scored(self, lead_ids: list[int] | None = None) -> str:
        """SELECT lead_id, company_id, fit, behaviour, total, band, breakdown of every
        live lead of the tenant (or of `lead_ids`)."""
        lead_filter = ""
        if lead_ids is not None:
            lead_filter = f" AND l.id = ANY({self._param('leads', lead_ids)}::bigint[])"
        fit_columns = [
            f"(CASE WHEN coalesce(({self._fit_condition(r, i)}), false) "
            f"THEN {self._param(f'p{i}', r.points)} ELSE 0 END) AS r{i}"
            for i, r in enumerate(self.rules)
            if r.kind == "fit"
        ]
        behaviour_rules = [(i, r) for i, r in enumerate(self.rules) if r.kind == "behaviour"]
        ctes = []
        joins = ""
        if behaviour_rules:
            where = ["a.tenant_id = %(t)s", "a.lead_id IS NOT NULL"]
            if lead_ids is not None:
                where.append("a.lead_id = ANY(%(leads)s::bigint[])")
            where += self._activity_prefilter()
            columns = ", ".join(
                f"{self._behaviour_value(r, i)} AS r{i}" for i, r in behaviour_rules
            )
            ctes.append(
                f"behaviour AS (SELECT a.lead_id, {columns} FROM (SELECT a.lead_id, a.type, "
                f"a.occurred_at, a.properties, a.campaign_id, {self._decay()} AS decay "
                f"FROM {_table(Activity)} a WHERE {' AND '.join(where)}) AS a "
                f"GROUP BY a.lead_id)"
            )
            joins = " LEFT JOIN behaviour b ON b.lead_id = l.id"
        behaviour_columns = [f"coalesce(b.r{i}, 0) AS r{i}" for i, _r in behaviour_rules]
        per_rule = ", ".join(["l.id AS lead_id", "l.company_id", *fit_columns, *behaviour_columns])
        ctes.append(
            f"per_rule AS (SELECT {per_rule} FROM {_table(Lead)} l "
            f"LEFT JOIN {_table(Company)} c ON c.id = l.company_id{joins} "
            f"WHERE l.tenant_id = %(t)s AND l.merged_into_id IS NULL{lead_filter})"
        )
        fit_sum = " + ".join(f"r{i}" for i, r in enumerate(self.rules) if r.kind == "fit") or "0"
        behaviour_sum = " + ".join(f"r{i}" for i, _r in behaviour_rules) or "0"
        pieces = []
        for start in range(0, len(self.rules), BREAKDOWN_CHUNK):
            chunk = list(enumerate(self.rules))[start : start + BREAKDOWN_CHUNK]
            args = ", ".join(
                f"{self._param(f'k{i}', r.key)}::text, nullif(r{i}, 0)" for i, r in chunk
            )
            pieces.append(f"jsonb_build_object({args})")
        breakdown = f"jsonb_strip_nulls({' || '.join(pieces)})" if pieces else "'{}'::jsonb"
        ctes.append(
            f"totals AS (SELECT lead_id, company_id, ({fit_sum})::int AS fit, ({behaviour_sum})"
            f"::int AS behaviour, {breakdown} AS breakdown FROM per_rule)"
        )
        return (
            f"WITH {', '.join(ctes)} SELECT lead_id, company_id, fit, behaviour, "
            f"fit + behaviour AS total, "
            f"{self._band('(fit + behaviour)')} AS band, breakdown FROM totals"
        )

    def upsert(self, model_id: int, lead_ids: list[int] | None = None) -> str:
        """Write the scores of `lead_ids` into LeadScore (INSERT … ON CONFLICT, safe
        against a concurrent writer of the same rows); only rows that changed are
        written."""
        self.params["model"] = model_id
        table = _table(LeadScore)
        return (
            f"INSERT INTO {table} AS s (tenant_id, model_id, lead_id, fit, behaviour, total, band, "
            f"breakdown, computed_at) SELECT %(t)s, %(model)s, lead_id, fit, behaviour, total, "
            f"band, breakdown, %(now)s FROM ({self.scored(lead_ids)}) AS scored "
            f"ON CONFLICT (tenant_id, model_id, lead_id) DO UPDATE SET fit = EXCLUDED.fit, "
            f"behaviour = EXCLUDED.behaviour, total = EXCLUDED.total, band = EXCLUDED.band, "
            f"breakdown = EXCLUDED.breakdown, computed_at = EXCLUDED.computed_at "
            f"WHERE (s.fit, s.behaviour, s.band, s.breakdown) IS DISTINCT FROM "
            f"(EXCLUDED.fit, EXCLUDED.behaviour, EXCLUDED.band, EXCLUDED.breakdown)"
        )

    def merge(self, model_id: int, source: str) -> str:
        """Scores from the table `source` (the rows of `scored()`, stored once by a full
        recompute) into LeadScore: one MERGE, whose join against the existing rows is
        planned as a whole (a hash join), where an upsert probes the unique index a
        million times. Writes only rows that changed."""
        self.params["model"] = model_id
        table = _table(LeadScore)
        return (
            f"MERGE INTO {table} AS s USING {source} AS n "
            f"ON s.tenant_id = %(t)s AND s.model_id = %(model)s AND s.lead_id = n.lead_id "
            f"WHEN MATCHED AND (s.fit, s.behaviour, s.band, s.breakdown) IS DISTINCT FROM "
            f"(n.fit, n.behaviour, n.band, n.breakdown) THEN UPDATE SET fit = n.fit, "
            f"behaviour = n.behaviour, total = n.total, band = n.band, "
            f"breakdown = n.breakdown, computed_at = %(now)s "
            f"WHEN NOT MATCHED THEN INSERT (tenant_id, model_id, lead_id, fit, behaviour, "
            f"total, band, breakdown, computed_at) VALUES (%(t)s, %(model)s, n.lead_id, n.fit, "
            f"n.behaviour, n.total, n.band, n.breakdown, %(now)s)"
        )

    def count_reaching(self) -> str:
        """How many live leads would reach the MQL threshold (the editor's preview)."""
        self.params["threshold"] = self.model.mql_threshold
        return (
            f"SELECT count(*) FILTER (WHERE total >= %(threshold)s), count(*) "
            f"FROM ({self.scored()}) AS scored"
        )
