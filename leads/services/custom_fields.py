"""Per-tenant custom lead fields: their definitions and the validation of values.

Values live in Lead.custom_fields[key]. Every path that writes them (API, forms,
imports) validates through `custom_values_clean`, so a value's shape follows its
definition's type and choices; errors name the field as `custom.<key>`.
"""

import datetime
import math
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from accounts.services import Origin, audit_record
from accounts.tenancy import tenant_scope
from leads.models import CustomFieldDefinition
from leads.normalize import NormalizationError, fold, normalize_email

Type = CustomFieldDefinition.Type

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on", "はい", "有", "あり", "○", "〇"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "off", "いいえ", "無", "なし", "×", ""})
MAX_TEXT = 2000
_url_validator = URLValidator()


def field_name(key: str) -> str:
    return f"custom.{key}"


def definitions_for_tenant(tenant_id: int) -> dict[str, CustomFieldDefinition]:
    """The tenant's definitions by key (one query)."""
    with tenant_scope(tenant_id):
        return {definition.key: definition for definition in CustomFieldDefinition.objects.all()}


def _choice_values(definition: CustomFieldDefinition) -> list[str]:
    # Choices are stored as plain strings or {"value": …, "label": …}.
    values = []
    for choice in definition.choices or []:
        values.append(str(choice.get("value", "")) if isinstance(choice, dict) else str(choice))
    return values


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def custom_value_clean(definition: CustomFieldDefinition, value: Any) -> Any:
    """One value in its stored form; raises ValueError with a message for the user."""
    kind = definition.type
    if kind == Type.TEXT:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(_("Enter text."))
        text = fold(str(value))
        if len(text) > MAX_TEXT:
            raise ValueError(_("At most %(n)d characters.") % {"n": MAX_TEXT})
        return text
    if kind == Type.NUMBER:
        if isinstance(value, bool):
            raise ValueError(_("Enter a number."))
        try:
            number = Decimal(fold(str(value)).replace(",", ""))
        except InvalidOperation as exc:
            raise ValueError(_("Enter a number.")) from exc
        if not number.is_finite():
            raise ValueError(_("Enter a number."))
        as_float = float(number)
        if not math.isfinite(as_float):
            raise ValueError(_("Enter a number."))
        return int(number) if number == number.to_integral_value() else as_float
    if kind == Type.DATE:
        if isinstance(value, datetime.datetime):
            return value.date().isoformat()
        if isinstance(value, datetime.date):
            return value.isoformat()
        text = fold(str(value)).replace("/", "-")
        try:
            return datetime.date.fromisoformat(text).isoformat()
        except ValueError as exc:
            raise ValueError(_("Enter a date as YYYY-MM-DD.")) from exc
    if kind == Type.BOOLEAN:
        if isinstance(value, bool):
            return value
        word = fold(str(value)).casefold()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(_("Enter yes or no."))
    if kind == Type.CHOICE:
        text = fold(str(value))
        if text not in _choice_values(definition):
            raise ValueError(_("%(value)s is not one of the choices.") % {"value": text})
        return text
    if kind == Type.MULTI_CHOICE:
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        cleaned = [fold(str(item)) for item in items if fold(str(item))]
        allowed = _choice_values(definition)
        bad = [item for item in cleaned if item not in allowed]
        if bad:
            raise ValueError(_("%(value)s is not one of the choices.") % {"value": ", ".join(bad)})
        return list(dict.fromkeys(cleaned))
    if kind == Type.EMAIL:
        try:
            return normalize_email(str(value))
        except NormalizationError as exc:
            raise ValueError(_("Enter a valid email address.")) from exc
    if kind == Type.URL:
        text = fold(str(value))
        try:
            _url_validator(text)
        except ValidationError as exc:
            raise ValueError(_("Enter a valid URL.")) from exc
        return text
    raise ValueError(_("Unknown field type."))


def custom_values_clean(
    values: dict | None,
    definitions: dict[str, CustomFieldDefinition],
    *,
    check_required: bool,
    existing: dict | None = None,
) -> tuple[dict, dict[str, list[str]]]:
    """Validate `values` against the definitions: (cleaned values, errors by field).

    Empty values mean "no value" (None in the result, so an update can clear a key).
    With check_required, every required field must have a value in `values` or in
    `existing`. Pure Python, no query: imports and batch APIs call it per row.
    """
    cleaned: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    if values is not None and not isinstance(values, dict):
        return {}, {"custom": [_("Custom fields must be an object of key: value.")]}
    for key, value in (values or {}).items():
        definition = definitions.get(key)
        if definition is None:
            errors[field_name(key)] = [_("There is no custom field with this key.")]
            continue
        if _is_empty(value):
            cleaned[key] = None
            continue
        try:
            cleaned[key] = custom_value_clean(definition, value)
        except ValueError as exc:
            errors[field_name(key)] = [str(exc)]
    if check_required:
        for key, definition in definitions.items():
            if not definition.required or field_name(key) in errors:
                continue
            present = cleaned.get(key) if key in cleaned else (existing or {}).get(key)
            if _is_empty(present):
                errors[field_name(key)] = [_("This field is required.")]
    return cleaned, errors


def _definition_clean(definition: CustomFieldDefinition) -> None:
    if definition.type in (Type.CHOICE, Type.MULTI_CHOICE):
        if not isinstance(definition.choices, list) or not definition.choices:
            raise ValidationError({"choices": [_("A choice field needs at least one choice.")]})
    elif definition.choices:
        raise ValidationError({"choices": [_("Only choice fields have choices.")]})
    definition.full_clean(exclude=["tenant"])


def custom_field_create(
    *, tenant_id: int, origin: Origin, key: str, label: str, **fields: Any
) -> CustomFieldDefinition:
    """A new field definition; the key is unique per tenant and never changes."""
    with tenant_scope(tenant_id):
        definition = CustomFieldDefinition(tenant_id=tenant_id, key=key, label=label, **fields)
        _definition_clean(definition)
        if CustomFieldDefinition.objects.filter(key=key).exists():
            raise ValidationError({"key": [_("A custom field with this key exists.")]})
        try:
            with transaction.atomic():
                definition.save()
        except IntegrityError as exc:
            raise ValidationError({"key": [_("A custom field with this key exists.")]}) from exc
        audit_record(
            tenant_id=tenant_id, origin=origin, action="custom_field.created", target=definition
        )
        return definition


def custom_field_update(
    *, definition: CustomFieldDefinition, origin: Origin, **fields: Any
) -> CustomFieldDefinition:
    """Label, choices, required and position may change; key and type stay (values
    already stored were validated against them)."""
    for name in ("key", "type"):
        if name in fields and fields[name] != getattr(definition, name):
            raise ValidationError({name: [_("This cannot be changed once the field exists.")]})
        fields.pop(name, None)
    with tenant_scope(definition.tenant_id):
        for name, value in fields.items():
            setattr(definition, name, value)
        _definition_clean(definition)
        definition.save()
        audit_record(
            tenant_id=definition.tenant_id,
            origin=origin,
            action="custom_field.updated",
            target=definition,
            metadata={"fields": sorted(fields)},
        )
        return definition


def custom_field_delete(*, definition: CustomFieldDefinition, origin: Origin) -> None:
    """Removes the definition; values stay in the leads' JSON (harmless, and kept if
    the field is defined again)."""
    with tenant_scope(definition.tenant_id):
        audit_record(
            tenant_id=definition.tenant_id,
            origin=origin,
            action="custom_field.deleted",
            target=definition,
        )
        definition.delete()
