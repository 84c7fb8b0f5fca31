"""What scoring rules may test, and how each test becomes SQL.

Fit rules name a field of the lead (`lead.*`, including `lead.custom.<key>`) or of its
company (`company.*`) and an operator valid for the field's type. Behaviour rules name
an activity type and optionally a property of the activity (`url`, `utm_source`, …, or
`campaign.channel`). Every value reaches SQL as a parameter; field and property names
come only from these tables, never from the request.
"""

from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext_lazy as _

from leads.models import (
    ActivityType,
    Channel,
    CustomFieldDefinition,
    LifecycleStage,
    Prefecture,
    RevenueBand,
    SizeBand,
)

TEXT, CHOICE, ORDINAL, NUMBER, BOOL = "text", "choice", "ordinal", "number", "bool"

OPERATORS: dict[str, tuple[str, ...]] = {
    TEXT: (
        "eq", "neq", "contains", "not_contains", "starts_with", "ends_with", "in", "not_in",
        "is_empty", "is_not_empty",
    ),
    CHOICE: ("eq", "neq", "in", "not_in", "is_empty", "is_not_empty"),
    ORDINAL: ("eq", "neq", "in", "gte", "lte", "is_empty", "is_not_empty"),
    NUMBER: ("eq", "neq", "gt", "gte", "lt", "lte", "is_empty", "is_not_empty"),
    BOOL: ("is_true", "is_false"),
}  # fmt: skip
OPERATOR_LABELS = {
    "eq": _("is"),
    "neq": _("is not"),
    "contains": _("contains"),
    "not_contains": _("does not contain"),
    "starts_with": _("starts with"),
    "ends_with": _("ends with"),
    "in": _("is one of"),
    "not_in": _("is none of"),
    "is_empty": _("is empty"),
    "is_not_empty": _("is not empty"),
    "gt": _("greater than"),
    "gte": _("at least"),
    "lt": _("less than"),
    "lte": _("at most"),
    "is_true": _("is true"),
    "is_false": _("is false"),
}
NO_VALUE = frozenset({"is_empty", "is_not_empty", "is_true", "is_false"})
LIST_VALUE = frozenset({"in", "not_in"})


@dataclass(frozen=True)
class FitField:
    key: str
    label: Any
    sql: str  # over `l` (the lead) and `c` (its company, LEFT JOINed)
    type: str
    choices: tuple[tuple[str, Any], ...] = ()
    # ORDINAL: each choice's rank, so "employees at least 100-299" compares ranks.
    ranks: dict[str, int] = field(default_factory=dict)


def _ordinal(choices) -> dict[str, int]:
    return {value: rank for rank, (value, _label) in enumerate(choices, start=1)}


_FIT_FIELDS = (
    FitField("lead.job_title", _("Job title"), "l.job_title", TEXT),
    FitField("lead.department", _("Department"), "l.department", TEXT),
    FitField("lead.email", _("Email"), "l.email", TEXT),
    FitField("lead.email_domain", _("Email domain"), "split_part(l.email, '@', 2)", TEXT),
    FitField("lead.free_mail", _("Free-mail address"), "FREE_MAIL", BOOL),
    FitField("lead.phone", _("Phone"), "l.phone", TEXT),
    FitField(
        "lead.lifecycle_stage", _("Lifecycle stage"), "l.lifecycle_stage", CHOICE,
        tuple(LifecycleStage.choices),
    ),
    FitField(
        "lead.source_channel", _("Source"), "l.source_channel", CHOICE, tuple(Channel.choices)
    ),
    FitField("company.name", _("Company name"), "c.name", TEXT),
    FitField("company.domain", _("Company domain"), "c.domain", TEXT),
    FitField("company.industry", _("Industry"), "c.industry", TEXT),
    FitField(
        "company.prefecture", _("Prefecture"), "c.prefecture", CHOICE, tuple(Prefecture.choices)
    ),
    FitField(
        "company.size_band", _("Employees"), "c.size_band", ORDINAL, tuple(SizeBand.choices),
        _ordinal(SizeBand.choices),
    ),
    FitField(
        "company.revenue_band", _("Annual revenue"), "c.revenue_band", ORDINAL,
        tuple(RevenueBand.choices), _ordinal(RevenueBand.choices),
    ),
    FitField("company.has_company", _("Has a company"), "(c.id IS NOT NULL)", BOOL),
)  # fmt: skip
FIT_FIELDS = {f.key: f for f in _FIT_FIELDS}

CUSTOM_PREFIX = "lead.custom."
_CUSTOM_TYPES = {
    CustomFieldDefinition.Type.TEXT: TEXT,
    CustomFieldDefinition.Type.EMAIL: TEXT,
    CustomFieldDefinition.Type.URL: TEXT,
    CustomFieldDefinition.Type.CHOICE: CHOICE,
    CustomFieldDefinition.Type.NUMBER: NUMBER,
    CustomFieldDefinition.Type.BOOLEAN: BOOL,
}


def custom_fit_field(definition: CustomFieldDefinition) -> FitField | None:
    """The fit field of a custom field definition (dates and multiple choices are not
    scored). Keys are slugs (CustomFieldDefinition.key), safe inside a SQL literal."""
    kind = _CUSTOM_TYPES.get(definition.type)
    if kind is None:
        return None
    key = definition.key
    if kind == NUMBER:
        # Only JSON numbers count: a stored string never reaches the cast.
        sql = (
            f"(CASE WHEN jsonb_typeof(l.custom_fields -> '{key}') = 'number' "
            f"THEN (l.custom_fields ->> '{key}')::numeric END)"
        )
    elif kind == BOOL:
        sql = f"(l.custom_fields -> '{key}' = 'true'::jsonb)"
    else:
        sql = f"(l.custom_fields ->> '{key}')"
    choices = tuple((c, c) for c in (definition.choices or [])) if kind == CHOICE else ()
    return FitField(f"{CUSTOM_PREFIX}{key}", definition.label, sql, kind, choices)


def fit_fields_for_tenant() -> dict[str, FitField]:
    """The built-in fields and the current tenant's custom ones (in its tenant scope)."""
    fields = dict(FIT_FIELDS)
    for definition in CustomFieldDefinition.objects.all():
        custom = custom_fit_field(definition)
        if custom is not None:
            fields[custom.key] = custom
    return fields


@dataclass(frozen=True)
class BehaviourProperty:
    key: str
    label: Any
    sql: str  # over `a` (the activity); CAMPAIGN_CHANNEL is resolved to campaign ids


CAMPAIGN_CHANNEL = "campaign.channel"
_PROPERTIES = (
    BehaviourProperty("url", _("Page URL"), "a.properties ->> 'url'"),
    BehaviourProperty("referrer", _("Referrer"), "a.properties ->> 'referrer'"),
    BehaviourProperty("utm_source", "utm_source", "a.properties ->> 'utm_source'"),
    BehaviourProperty("utm_medium", "utm_medium", "a.properties ->> 'utm_medium'"),
    BehaviourProperty("utm_campaign", "utm_campaign", "a.properties ->> 'utm_campaign'"),
    BehaviourProperty("title", _("Title"), "a.properties ->> 'title'"),
    BehaviourProperty(CAMPAIGN_CHANNEL, _("Campaign channel"), ""),
)
BEHAVIOUR_PROPERTIES = {p.key: p for p in _PROPERTIES}
PROPERTY_OPERATORS = ("eq", "neq", "contains", "starts_with", "in")
ACTIVITY_TYPES = tuple(ActivityType.values)
