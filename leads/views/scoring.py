"""Staff web UI of lead scoring: the models, the rule editor with its preview (how many
leads would become MQL before saving), and a recompute on demand.

The editor works like the form builder: rules are rows of one form (`r-<i>-<field>`),
"add" and "remove" are submit buttons handled server-side (no script needed), the
preview is an htmx POST of the form as it stands. Writes go through
leads.scoring.services, which validates every rule and names what is wrong.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.services import Origin
from accounts.web import tenant_view
from leads.models import LeadScore, ScoringModel
from leads.scoring import fields as f
from leads.scoring import services
from leads.views.common import MARKETING_ROLES

RULE_KEYS = (
    "kind", "field", "operator", "value", "activity_type", "property_key",
    "property_operator", "property_value", "points", "cap", "window_days",
)  # fmt: skip
STARTER_RULES = [
    {"kind": "fit", "field": "lead.job_title", "operator": "contains", "value": "部長",
     "points": 20},
    {"kind": "fit", "field": "lead.free_mail", "operator": "is_true", "value": None,
     "points": -20},
    {"kind": "behaviour", "activity_type": "page_view", "property_key": "url",
     "property_operator": "contains", "property_value": "/pricing", "points": 10, "cap": 30},
    {"kind": "behaviour", "activity_type": "form_submission", "points": 25},
    {"kind": "behaviour", "activity_type": "webinar_attendance", "points": 20},
]  # fmt: skip


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _row_from_rule(rule) -> dict:
    get = rule.get if isinstance(rule, dict) else lambda key, default=None: getattr(rule, key)
    row = {key: _text(get(key, None)) for key in RULE_KEYS}
    row["kind"] = get("kind", "fit") or "fit"
    return row


def _rows_from_post(post) -> list[dict]:
    count = min(int(post.get("rule_count") or 0), services.MAX_RULES)
    return [{key: post.get(f"r-{i}-{key}", "").strip() for key in RULE_KEYS} for i in range(count)]


def _int_or_text(raw: str):
    try:
        return int(raw)
    except ValueError:
        return raw


def _rule_data(row: dict) -> dict:
    """An edited row as rule_clean takes it: numbers as numbers, lists split on commas."""
    data: dict = {"kind": row["kind"], "points": _int_or_text(row["points"] or "x")}
    if row["kind"] == "fit":
        data["field"], data["operator"] = row["field"], row["operator"]
        if row["operator"] in f.LIST_VALUE:
            data["value"] = [v.strip() for v in row["value"].split(",") if v.strip()]
        elif row["operator"] not in f.NO_VALUE:
            data["value"] = row["value"]
    else:
        data["activity_type"] = row["activity_type"]
        if row["property_key"]:
            data["property_key"] = row["property_key"]
            data["property_operator"] = row["property_operator"]
            value = row["property_value"]
            if row["property_operator"] == "in":
                value = [v.strip() for v in value.split(",") if v.strip()]
            data["property_value"] = value
        for key in ("cap", "window_days"):
            if row[key]:
                data[key] = _int_or_text(row[key])
    return data


def _model_values(post) -> dict:
    bands = [{"key": "cold", "label": _("Cold"), "min": None}]
    for key, label in (("warm", _("Warm")), ("hot", _("Hot"))):
        raw = post.get(f"{key}_min", "").strip()
        if raw:
            bands.append({"key": key, "label": label, "min": _int_or_text(raw)})
    return {
        "name": post.get("name", "").strip(),
        "mql_threshold": _int_or_text(post.get("mql_threshold", "").strip() or "x"),
        "half_life_days": post.get("half_life_days", "").strip() or None,
        "bands": bands,
    }


def _apply_op(rows: list[dict], op: str) -> list[dict]:
    if op == "add_fit":
        return [*rows, {**dict.fromkeys(RULE_KEYS, ""), "kind": "fit", "points": "10"}]
    if op == "add_behaviour":
        return [*rows, {**dict.fromkeys(RULE_KEYS, ""), "kind": "behaviour", "points": "5"}]
    if op.startswith("remove:"):
        index = int(op.split(":", 1)[1])
        return [row for i, row in enumerate(rows) if i != index]
    return rows


def _editor_context(request, model, values, rows, errors=None, row_errors=None) -> dict:
    catalogue = services.rule_catalogue()
    bands = {b["key"]: b.get("min") for b in values.get("bands") or []}
    return {
        "model": model,
        "values": {
            **values,
            "warm_min": _text(bands.get("warm")),
            "hot_min": _text(bands.get("hot")),
        },
        "rows": [
            {**row, "index": i, "errors": (row_errors or {}).get(i, [])}
            for i, row in enumerate(rows)
        ],
        "rule_count": len(rows),
        "catalogue": catalogue,
        "errors": errors or [],
        "can_write": request.tenant_access.role in MARKETING_ROLES,
    }


@tenant_view
def index(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if request.tenant_access.role not in MARKETING_ROLES:
            return HttpResponse(status=403)
        name = request.POST.get("name", "").strip()
        try:
            with transaction.atomic():
                model = services.scoring_model_create(
                    tenant_id=request.tenant.id,
                    origin=Origin.from_request(request),
                    name=name,
                    mql_threshold=60,
                    half_life_days=30,
                    bands=[
                        {"key": "cold", "label": _("Cold"), "min": None},
                        {"key": "warm", "label": _("Warm"), "min": 30},
                        {"key": "hot", "label": _("Hot"), "min": 60},
                    ],
                    rules=STARTER_RULES,
                )
        except ValidationError as exc:
            for field_messages in exc.message_dict.values():
                for message in field_messages:
                    messages.error(request, message)
        else:
            return redirect("leads:scoring_edit", tenant=request.tenant.slug, pk=model.pk)
    models = list(ScoringModel.objects.prefetch_related("rules").order_by("-is_primary", "name"))
    rows = [
        {
            "model": model,
            "rules": len(model.rules.all()),
            "current": model.scored_version >= model.version,
            "mql": LeadScore.objects.filter(model=model, total__gte=model.mql_threshold).count(),
        }
        for model in models
    ]
    return TemplateResponse(
        request,
        "leads/scoring/index.html",
        {"rows": rows, "can_write": request.tenant_access.role in MARKETING_ROLES},
    )


@tenant_view(isolation_model=ScoringModel)
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    model = get_object_or_404(ScoringModel.objects.all(), pk=pk)
    if request.method != "POST":
        values = {
            "name": model.name,
            "mql_threshold": model.mql_threshold,
            "half_life_days": _text(model.half_life_days),
            "bands": model.bands,
            "is_primary": model.is_primary,
        }
        rows = [_row_from_rule(rule) for rule in model.rules.all()]
        return TemplateResponse(
            request, "leads/scoring/edit.html", _editor_context(request, model, values, rows)
        )
    if request.tenant_access.role not in MARKETING_ROLES:
        return HttpResponse(status=403)
    values = _model_values(request.POST)
    rows = _rows_from_post(request.POST)
    op = request.POST.get("op", "save")
    if op == "recompute":
        services.scores_recompute_later(tenant_id=request.tenant.id, model_id=model.id)
        messages.success(request, _("Every lead's score is being recomputed."))
        return redirect("leads:scoring_edit", tenant=request.tenant.slug, pk=model.pk)
    if op != "save":
        return TemplateResponse(
            request,
            "leads/scoring/edit.html",
            _editor_context(request, model, values, _apply_op(rows, op)),
        )
    errors, row_errors = _validate_rows(rows)
    if not errors and not row_errors:
        try:
            with transaction.atomic():
                services.scoring_model_update(
                    model=model,
                    origin=Origin.from_request(request),
                    rules=[_rule_data(row) for row in rows],
                    is_primary=model.is_primary or request.POST.get("is_primary") == "on",
                    **values,
                )
        except ValidationError as exc:
            errors = [m for field_messages in exc.message_dict.values() for m in field_messages]
        else:
            messages.success(
                request, _("The scoring model was saved; scores are being recomputed.")
            )
            return redirect("leads:scoring_edit", tenant=request.tenant.slug, pk=model.pk)
    return TemplateResponse(
        request,
        "leads/scoring/edit.html",
        _editor_context(request, model, values, rows, errors, row_errors),
        status=400,
    )


def _validate_rows(rows: list[dict]) -> tuple[list[str], dict[int, list[str]]]:
    """Each row checked on its own, so the editor marks the row that is wrong."""
    fit_fields = f.fit_fields_for_tenant()
    row_errors: dict[int, list[str]] = {}
    for index, row in enumerate(rows):
        try:
            services.rule_clean(_rule_data(row), fit_fields)
        except ValidationError as exc:
            row_errors[index] = [
                f"{key}: {message}" for key, messages_ in exc.message_dict.items()
                for message in messages_
            ]  # fmt: skip
    return [], row_errors


@tenant_view(roles=MARKETING_ROLES, isolation_model=ScoringModel)
@require_POST
def preview(request: HttpRequest, pk: int) -> HttpResponse:
    """How many leads would reach MQL under the rules as edited (nothing is saved)."""
    model = get_object_or_404(ScoringModel.objects.all(), pk=pk)
    values = _model_values(request.POST)
    rows = _rows_from_post(request.POST)
    context: dict = {"model": model}
    try:
        context["result"] = services.scoring_preview(
            tenant_id=request.tenant.id,
            rules=[_rule_data(row) for row in rows],
            mql_threshold=values["mql_threshold"],
            half_life_days=values["half_life_days"],
            bands=values["bands"],
            model=model,
        )
    except ValidationError as exc:
        context["errors"] = [m for messages_ in exc.message_dict.values() for m in messages_]
    return TemplateResponse(request, "leads/scoring/_preview.html", context)
