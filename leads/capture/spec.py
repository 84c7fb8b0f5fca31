"""The field spec of a capture form, and the values a visitor submits through it.

A form's `fields` is a JSON list the tenant designs; each entry:

    {"name": "email", "label": "メールアドレス", "type": "email", "required": true,
     "maps_to": "lead.email", "choices": [], "placeholder": "", "help_text": ""}

`maps_to` is "lead.<field>", "custom.<key>" (a custom field definition of the tenant)
or "" (kept on the submission only, e.g. an inquiry message). Errors name the field's
index and attribute (`fields[2].maps_to`) and, in the message, the field's name, so a
form builder can point at the very input that is wrong.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from leads.models import CustomFieldDefinition, Prefecture
from leads.normalize import NormalizationError, normalize_email, normalize_phone

FIELD_TYPES = ("text", "email", "tel", "select", "checkbox", "textarea")
MAX_FIELDS = 50
MAX_CHOICES = 200
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

#: Lead fields a form may fill, and the input types that fit each.
LEAD_TARGETS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "family_name": ("text",),
    "given_name": ("text",),
    "family_name_kana": ("text",),
    "given_name_kana": ("text",),
    "phone": ("tel", "text"),
    "job_title": ("text", "select"),
    "department": ("text", "select"),
    "company_name": ("text",),
    "corporate_number": ("text",),
    "company_domain": ("text",),
    "prefecture": ("select",),
    "industry": ("text", "select"),
}

#: Custom field types, and the input types that fit each.
CUSTOM_TARGETS: dict[str, tuple[str, ...]] = {
    CustomFieldDefinition.Type.TEXT: ("text", "textarea", "select"),
    CustomFieldDefinition.Type.NUMBER: ("text",),
    CustomFieldDefinition.Type.DATE: ("text",),
    CustomFieldDefinition.Type.BOOLEAN: ("checkbox",),
    CustomFieldDefinition.Type.CHOICE: ("select",),
    CustomFieldDefinition.Type.EMAIL: ("email", "text"),
    CustomFieldDefinition.Type.URL: ("text",),
}

HONEYPOT_FIELD = "hp_website"
CONSENT_FIELD = "consent"
#: Names the public endpoint reads for itself; a designed field may not take them.
CONTEXT_FIELDS = ("page_url", "referrer", "visitor_key")
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
RESERVED_NAMES = frozenset(
    {
        HONEYPOT_FIELD,
        CONSENT_FIELD,
        *CONTEXT_FIELDS,
        *UTM_FIELDS,
        "rt",
        "lang",
        "csrfmiddlewaretoken",
    }
)

MAX_LENGTH = {"textarea": 5000}
DEFAULT_MAX_LENGTH = 500
TRUE_VALUES = frozenset({"1", "true", "on", "yes"})


def validate_form_spec(
    fields: Any, *, custom_fields: Iterable[CustomFieldDefinition]
) -> list[dict]:
    """The normalised spec, or ValidationError keyed `fields[<index>].<attribute>`."""
    if not isinstance(fields, list):
        raise ValidationError({"fields": [_("A list of fields is expected.")]})
    if len(fields) > MAX_FIELDS:
        raise ValidationError(
            {"fields": [_("A form has at most %(max)d fields.") % {"max": MAX_FIELDS}]}
        )
    definitions = {definition.key: definition for definition in custom_fields}
    errors: dict[str, list[str]] = {}
    cleaned: list[dict] = []
    seen_names: dict[str, int] = {}
    seen_targets: dict[str, int] = {}

    for index, raw in enumerate(fields):

        def error(attribute: str, message: str, index: int = index, raw: Any = raw) -> None:
            name = raw.get("name") if isinstance(raw, dict) else None
            who = _("Field %(number)d") % {"number": index + 1}
            if isinstance(name, str) and name:
                who = _("Field %(number)d (“%(name)s”)") % {"number": index + 1, "name": name}
            errors.setdefault(f"fields[{index}].{attribute}", []).append(
                _("%(field)s: %(problem)s") % {"field": who, "problem": message}
            )

        if not isinstance(raw, dict):
            error("name", _("each field must be an object."))
            continue
        unknown = sorted(
            set(raw)
            - {
                "name",
                "label",
                "type",
                "required",
                "maps_to",
                "choices",
                "placeholder",
                "help_text",
            }
        )
        for attribute in unknown:
            error(attribute, _("unknown attribute."))

        name = raw.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            error(
                "name",
                _("the name must start with a letter and use only a–z, 0–9 and _ (40 at most)."),
            )
        elif name in RESERVED_NAMES:
            error("name", _("“%(name)s” is reserved by the form itself.") % {"name": name})
        elif name in seen_names:
            error(
                "name",
                _("the name is already used by field %(number)d.")
                % {"number": seen_names[name] + 1},
            )
        else:
            seen_names[name] = index

        label = raw.get("label")
        if not isinstance(label, str) or not label.strip() or len(label) > 200:
            error("label", _("a label of 1 to 200 characters is required."))

        type_ = raw.get("type", "text")
        if type_ not in FIELD_TYPES:
            error(
                "type",
                _("unknown type “%(type)s”; use one of %(types)s.")
                % {"type": type_, "types": ", ".join(FIELD_TYPES)},
            )
            type_ = None

        required = raw.get("required", False)
        if not isinstance(required, bool):
            error("required", _("must be true or false."))
            required = False

        for attribute, limit in (("placeholder", 200), ("help_text", 500)):
            value = raw.get(attribute, "")
            if not isinstance(value, str) or len(value) > limit:
                error(attribute, _("text of at most %(max)d characters.") % {"max": limit})

        maps_to = raw.get("maps_to", "") or ""
        default_choices: list[str] = []
        if not isinstance(maps_to, str):
            error("maps_to", _("must be “lead.<field>”, “custom.<key>” or empty."))
            maps_to = ""
        elif maps_to.startswith("lead."):
            target = maps_to.removeprefix("lead.")
            if target not in LEAD_TARGETS:
                error(
                    "maps_to",
                    _("unknown lead field “%(field)s”; use one of %(fields)s.")
                    % {"field": target, "fields": ", ".join(LEAD_TARGETS)},
                )
            elif type_ and type_ not in LEAD_TARGETS[target]:
                error(
                    "type",
                    _("a field mapped to %(target)s must be of type %(types)s.")
                    % {"target": maps_to, "types": " / ".join(LEAD_TARGETS[target])},
                )
            if target == "prefecture":
                default_choices = list(Prefecture.values)
        elif maps_to.startswith("custom."):
            key = maps_to.removeprefix("custom.")
            definition = definitions.get(key)
            if definition is None:
                error(
                    "maps_to",
                    _("no custom field has the key “%(key)s”.") % {"key": key},
                )
            elif definition.type not in CUSTOM_TARGETS:
                error(
                    "maps_to",
                    _("custom fields of type “%(type)s” cannot be put on a form.")
                    % {"type": definition.get_type_display()},
                )
            else:
                if type_ and type_ not in CUSTOM_TARGETS[definition.type]:
                    error(
                        "type",
                        _("a field mapped to %(target)s must be of type %(types)s.")
                        % {"target": maps_to, "types": " / ".join(CUSTOM_TARGETS[definition.type])},
                    )
                # Stored as plain strings or {"value": …, "label": …}.
                default_choices = [
                    str(choice.get("value", "")) if isinstance(choice, dict) else str(choice)
                    for choice in definition.choices or []
                ]
        elif maps_to:
            error("maps_to", _("must be “lead.<field>”, “custom.<key>” or empty."))
        if maps_to and maps_to in seen_targets:
            error(
                "maps_to",
                _("%(target)s is already filled by field %(number)d.")
                % {"target": maps_to, "number": seen_targets[maps_to] + 1},
            )
        elif maps_to:
            seen_targets[maps_to] = index

        choices = raw.get("choices", [])
        if (
            not isinstance(choices, list)
            or len(choices) > MAX_CHOICES
            or not all(isinstance(c, str) and c.strip() and len(c) <= 200 for c in choices)
        ):
            error(
                "choices",
                _("a list of at most %(max)d non-empty texts is expected.") % {"max": MAX_CHOICES},
            )
            choices = []
        if type_ == "select":
            if not choices:
                choices = default_choices
            elif default_choices:
                outside = [choice for choice in choices if choice not in default_choices]
                if outside:
                    error(
                        "choices",
                        _("not allowed by %(target)s: %(values)s.")
                        % {"target": maps_to, "values": ", ".join(outside)},
                    )
            if not choices:
                error("choices", _("a select field needs choices."))
        elif choices:
            error("choices", _("only select fields have choices."))

        if type_ == "email" and maps_to == "lead.email" and not required:
            error("required", _("the email field must be required (leads are matched by it)."))

        cleaned.append(
            {
                "name": name,
                "label": label.strip() if isinstance(label, str) else label,
                "type": type_,
                "required": required,
                "maps_to": maps_to,
                "choices": choices if type_ == "select" else [],
                "placeholder": raw.get("placeholder", ""),
                "help_text": raw.get("help_text", ""),
            }
        )

    if not errors and "lead.email" not in seen_targets:
        errors["fields"] = [
            _("One field must map to lead.email: submissions are matched to leads by email.")
        ]
    if errors:
        raise ValidationError(errors)
    return cleaned


# --- Submitted values ---------------------------------------------------------------------


@dataclass
class CleanedSubmission:
    """What a visitor submitted, checked against the spec."""

    values: dict[str, Any] = field(default_factory=dict)  # by form field name
    email: str = ""
    lead_fields: dict[str, Any] = field(default_factory=dict)  # lead_upsert's `fields`
    consent: bool = False
    errors: dict[str, list[str]] = field(default_factory=dict)


def _first(data: Mapping, name: str) -> Any:
    # A QueryDict (form-encoded) or a JSON object: one value per name.
    if hasattr(data, "getlist"):
        values = data.getlist(name)
        return values[-1] if values else None
    return data.get(name)


def is_true(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in TRUE_VALUES


def clean_submission(
    spec: list[dict],
    data: Mapping,
    *,
    consent_shown: bool = False,
    consent_required: bool = False,
) -> CleanedSubmission:
    """Check each submitted value against its field; errors are keyed by field name."""
    result = CleanedSubmission()
    custom: dict[str, Any] = {}
    for spec_field in spec:
        name, type_ = spec_field["name"], spec_field["type"]
        raw = _first(data, name)
        messages: list[str] = []
        if type_ == "checkbox":
            value: Any = is_true(raw)
            if spec_field["required"] and not value:
                messages.append(_("Please tick this box."))
        else:
            value = "" if raw is None or isinstance(raw, dict | list) else str(raw).strip()
            limit = MAX_LENGTH.get(type_, DEFAULT_MAX_LENGTH)
            if not value:
                if spec_field["required"]:
                    messages.append(_("Please fill in this field."))
            elif len(value) > limit:
                messages.append(_("At most %(max)d characters, please.") % {"max": limit})
            elif type_ == "email":
                try:
                    value = normalize_email(value)
                except NormalizationError:
                    messages.append(_("Please enter a valid email address."))
            elif type_ == "tel":
                try:
                    value = normalize_phone(value)
                except NormalizationError:
                    messages.append(_("Please enter a valid phone number."))
            elif type_ == "select" and value not in spec_field["choices"]:
                messages.append(_("Choose one of the options."))
        if messages:
            result.errors[name] = messages
            continue
        result.values[name] = value
        maps_to = spec_field["maps_to"]
        if maps_to == "lead.email":
            result.email = value
        elif maps_to.startswith("lead.") and value not in ("", None):
            result.lead_fields[maps_to.removeprefix("lead.")] = value
        elif maps_to.startswith("custom.") and value not in ("", None):
            custom[maps_to.removeprefix("custom.")] = value
    if custom:
        result.lead_fields["custom"] = custom
    if consent_shown:
        result.consent = is_true(_first(data, CONSENT_FIELD))
        if consent_required and not result.consent:
            result.errors[CONSENT_FIELD] = [_("Please agree to continue.")]
    return result


def field_for_target(spec: list[dict], target: str) -> str | None:
    """The form field filling `target` ("lead.phone", "custom.size"), to name it in errors."""
    for spec_field in spec:
        if spec_field["maps_to"] == target:
            return spec_field["name"]
    return None
