"""The capture-form builder: the tenant's forms, and one form's editor with its fields
(add, remove, reorder, map to lead or custom fields, required), settings, a live preview
(htmx re-renders the hosted form's own field partial as you type) and the public URL
and embed code to copy.

The field rows travel as plain POST data (`f-<i>-<attribute>`); reordering and adding
rows re-render the editor without saving, so unsaved edits are never lost. The spec is
validated by leads.capture (services and spec); its errors name `fields[<i>].<attr>`,
which come back on the row they belong to.
"""

import re

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.services import Origin
from accounts.web import tenant_view
from leads import selectors
from leads.capture import services
from leads.capture.public_views import embed_snippet, form_context, public_url
from leads.capture.spec import CUSTOM_TARGETS, FIELD_TYPES, LEAD_TARGETS, validate_form_spec
from leads.forms import CaptureSettingsForm, NewCaptureForm
from leads.models import CaptureForm
from leads.views.common import MARKETING_ROLES, campaign_choices, can_write

#: Labels of the lead fields a form may fill.
LEAD_TARGET_LABELS = {
    "email": gettext_lazy("Email"),
    "family_name": gettext_lazy("Family name"),
    "given_name": gettext_lazy("Given name"),
    "family_name_kana": gettext_lazy("Family name (kana)"),
    "given_name_kana": gettext_lazy("Given name (kana)"),
    "phone": gettext_lazy("Phone"),
    "job_title": gettext_lazy("Job title"),
    "department": gettext_lazy("Department"),
    "company_name": gettext_lazy("Company"),
    "corporate_number": gettext_lazy("Corporate number"),
    "company_domain": gettext_lazy("Company website or domain"),
    "prefecture": gettext_lazy("Prefecture"),
    "industry": gettext_lazy("Industry"),
}
TYPE_LABELS = {
    "text": gettext_lazy("Text"),
    "email": gettext_lazy("Email"),
    "tel": gettext_lazy("Phone"),
    "select": gettext_lazy("Choice"),
    "checkbox": gettext_lazy("Checkbox"),
    "textarea": gettext_lazy("Long text"),
}
#: A new form starts with what nearly every B2B form asks.
STARTER_FIELDS = [
    {"name": "company", "label": "会社名", "type": "text", "required": True,
     "maps_to": "lead.company_name"},
    {"name": "family_name", "label": "姓", "type": "text", "required": True,
     "maps_to": "lead.family_name"},
    {"name": "given_name", "label": "名", "type": "text", "required": True,
     "maps_to": "lead.given_name"},
    {"name": "email", "label": "メールアドレス", "type": "email", "required": True,
     "maps_to": "lead.email"},
]  # fmt: skip
ROW_ATTRIBUTES = ("label", "name", "type", "maps_to", "placeholder", "help_text")
SPEC_ERROR = re.compile(r"^fields\[(\d+)\]\.(\w+)$")


def _targets() -> list[tuple[str, str]]:
    targets = [("", _("— keep on the submission only —"))]
    targets += [(f"lead.{key}", str(LEAD_TARGET_LABELS.get(key, key))) for key in LEAD_TARGETS]
    for definition in selectors.custom_field_list():
        if definition.type in CUSTOM_TARGETS:
            targets.append((f"custom.{definition.key}", f"{definition.label} ({definition.key})"))
    return targets


def _rows_from_spec(fields: list[dict]) -> list[dict]:
    return [
        {
            **{attribute: field.get(attribute, "") or "" for attribute in ROW_ATTRIBUTES},
            "type": field.get("type") or "text",
            "required": bool(field.get("required")),
            "choices": "\n".join(field.get("choices") or []),
        }
        for field in fields
    ]


def _rows_from_post(data) -> list[dict]:
    try:
        count = min(int(data.get("field_count", 0)), 60)
    except ValueError:
        count = 0
    rows = []
    for index in range(count):
        prefix = f"f-{index}-"
        if f"{prefix}type" not in data:
            continue
        row = {attribute: data.get(prefix + attribute, "").strip() for attribute in ROW_ATTRIBUTES}
        row["required"] = data.get(prefix + "required") in ("on", "1", "true")
        row["choices"] = data.get(prefix + "choices", "")
        rows.append(row)
    return rows


def _spec(rows: list[dict]) -> list[dict]:
    """Rows as the spec services take; a blank name is derived from what the field fills."""
    spec = []
    for index, row in enumerate(rows):
        name = row["name"]
        if not name:
            target = row["maps_to"].split(".", 1)[-1] if row["maps_to"] else ""
            name = re.sub(r"[^a-z0-9_]", "_", target.lower()) or f"field_{index + 1}"
        item = {
            "name": name,
            "label": row["label"],
            "type": row["type"],
            "required": row["required"],
            "maps_to": row["maps_to"],
            "placeholder": row["placeholder"],
            "help_text": row["help_text"],
        }
        choices = [line.strip() for line in row["choices"].splitlines() if line.strip()]
        if row["type"] == "select" and choices:
            item["choices"] = choices
        spec.append(item)
    return spec


def _apply_op(rows: list[dict], op: str) -> list[dict]:
    """Add, remove or move a row (the editor's buttons)."""
    action, _sep, raw = op.partition(":")
    if action == "add":
        return [*rows, {**dict.fromkeys(ROW_ATTRIBUTES, ""), "type": "text", "required": False,
                        "choices": ""}]  # fmt: skip
    if not raw.isdigit() or int(raw) >= len(rows):
        return rows
    index = int(raw)
    rows = list(rows)
    if action == "remove":
        rows.pop(index)
    elif action == "up" and index > 0:
        rows[index - 1], rows[index] = rows[index], rows[index - 1]
    elif action == "down" and index < len(rows) - 1:
        rows[index + 1], rows[index] = rows[index], rows[index + 1]
    return rows


def _split_errors(exc: ValidationError) -> tuple[dict[int, list[str]], dict[str, list[str]]]:
    by_row: dict[int, list[str]] = {}
    other: dict[str, list[str]] = {}
    for key, field_messages in exc.message_dict.items():
        match = SPEC_ERROR.match(key)
        if match:
            by_row.setdefault(int(match[1]), []).extend(field_messages)
        else:
            other.setdefault(key, []).extend(field_messages)
    return by_row, other


# --- Pages -------------------------------------------------------------------------------------


@tenant_view(roles=MARKETING_ROLES)
def index(request: HttpRequest) -> HttpResponse:
    form = NewCaptureForm()
    if request.method == "POST":
        form = NewCaptureForm(request.POST)
        if form.is_valid():
            try:
                with transaction.atomic():
                    created = services.capture_form_create(
                        tenant_id=request.tenant.id,
                        origin=Origin.from_request(request),
                        name=form.cleaned_data["name"],
                        fields=STARTER_FIELDS,
                        thank_you_message=_("Thank you. We will be in touch shortly."),
                    )
            except ValidationError as exc:
                for field_messages in exc.message_dict.values():
                    for message in field_messages:
                        form.add_error(None, message)
            else:
                return redirect("leads:form_edit", tenant=request.tenant.slug, pk=created.pk)
    forms_ = CaptureForm.objects.annotate(submission_count=Count("submissions")).order_by(
        "-created_at", "-id"
    )
    campaigns = dict(campaign_choices())
    rows = [
        {"form": f, "campaign": campaigns.get(str(f.campaign_id)), "url": public_url(f)}
        for f in forms_[:200]
    ]
    return TemplateResponse(
        request,
        "leads/capture/index.html",
        {"rows": rows, "new_form": form},
        status=400 if form.errors else 200,
    )


def _editor_context(request, form_obj, settings_form, rows, row_errors=None, errors=None) -> dict:
    row_errors = row_errors or {}
    return {
        "capture_form": form_obj,
        "settings_form": settings_form,
        "rows": [
            {**row, "index": i, "errors": row_errors.get(i, [])} for i, row in enumerate(rows)
        ],
        "field_count": len(rows),
        "targets": _targets(),
        "types": [(value, TYPE_LABELS[value]) for value in FIELD_TYPES],
        "errors": errors or [],
        "preview": _preview_context(form_obj, settings_form, rows),
        "public_url": public_url(form_obj),
        "public_path": public_url(form_obj).split("://", 1)[-1].split("/", 1)[-1],
        "embed_html": embed_snippet(form_obj),
        "can_write": can_write(request, MARKETING_ROLES),
    }


def _settings_initial(form_obj: CaptureForm) -> dict:
    return {
        "name": form_obj.name,
        "campaign": str(form_obj.campaign_id or ""),
        "consent_text": form_obj.consent_text,
        "consent_required": form_obj.consent_required,
        "double_opt_in": form_obj.double_opt_in,
        "thank_you_message": form_obj.thank_you_message,
        "redirect_url": form_obj.redirect_url,
        "is_active": form_obj.is_active,
    }


@tenant_view(roles=MARKETING_ROLES, isolation_model=CaptureForm)
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    form_obj = get_object_or_404(CaptureForm.objects.all(), pk=pk)
    choices = campaign_choices()
    if request.method != "POST":
        settings_form = CaptureSettingsForm(
            initial=_settings_initial(form_obj), campaign_choices=choices
        )
        rows = _rows_from_spec(form_obj.fields)
        return TemplateResponse(
            request,
            "leads/capture/edit.html",
            _editor_context(request, form_obj, settings_form, rows),
        )
    settings_form = CaptureSettingsForm(request.POST, campaign_choices=choices)
    rows = _rows_from_post(request.POST)
    op = request.POST.get("op", "save")
    if op != "save":
        rows = _apply_op(rows, op)
        settings_form.is_valid()
        return TemplateResponse(
            request,
            "leads/capture/edit.html",
            _editor_context(request, form_obj, settings_form, rows),
        )
    row_errors: dict[int, list[str]] = {}
    errors: list[str] = []
    if settings_form.is_valid():
        try:
            with transaction.atomic():
                services.capture_form_update(
                    form=form_obj,
                    origin=Origin.from_request(request),
                    fields=_spec(rows),
                    **settings_form.service_values(),
                )
        except ValidationError as exc:
            form_obj.refresh_from_db()
            row_errors, other = _split_errors(exc)
            for key, field_messages in other.items():
                name = "campaign" if key == "campaign_id" else key
                for message in field_messages:
                    if name in settings_form.fields:
                        settings_form.add_error(name, message)
                    else:
                        errors.append(message)
        else:
            messages.success(request, _("The form was saved."))
            return redirect("leads:form_edit", tenant=request.tenant.slug, pk=form_obj.pk)
    return TemplateResponse(
        request,
        "leads/capture/edit.html",
        _editor_context(request, form_obj, settings_form, rows, row_errors, errors),
        status=400,
    )


def _preview_context(form_obj: CaptureForm, settings_form, rows: list[dict]) -> dict:
    """The hosted form's own field partial, for the fields as edited (unsaved)."""
    spec = _spec(rows)
    problems: list[str] = []
    try:
        spec = validate_form_spec(spec, custom_fields=list(selectors.custom_field_list()))
    except ValidationError as exc:
        problems = [m for messages_ in exc.message_dict.values() for m in messages_]
        for item in spec:
            if item["type"] not in FIELD_TYPES:
                item["type"] = "text"
            item.setdefault("choices", [])
    data = settings_form.cleaned_data if settings_form.is_bound and settings_form.is_valid() else {}
    draft = CaptureForm(
        key=form_obj.key,
        name=data.get("name", form_obj.name),
        fields=spec,
        consent_text=data.get("consent_text", form_obj.consent_text),
        consent_required=data.get("consent_required", form_obj.consent_required),
    )
    return {**form_context(draft, action="#"), "problems": problems}


@tenant_view(roles=MARKETING_ROLES, isolation_model=CaptureForm)
@require_POST
def preview(request: HttpRequest, pk: int) -> HttpResponse:
    form_obj = get_object_or_404(CaptureForm.objects.all(), pk=pk)
    settings_form = CaptureSettingsForm(request.POST, campaign_choices=campaign_choices())
    context = _preview_context(form_obj, settings_form, _rows_from_post(request.POST))
    return TemplateResponse(request, "leads/capture/_preview.html", {"preview": context})
