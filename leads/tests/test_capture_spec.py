"""The form spec a tenant designs: what is accepted, and errors that point at the field."""

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from leads.capture.spec import clean_submission, validate_form_spec
from leads.models import CustomFieldDefinition
from leads.tests.capture_helpers import EMAIL_FIELD, STANDARD_FIELDS


@pytest.fixture(autouse=True)
def _english():
    with translation.override("en"):
        yield


def definition(key: str, type_: str, choices=None) -> CustomFieldDefinition:
    return CustomFieldDefinition(key=key, label=key, type=type_, choices=choices or [])


def errors_of(fields, custom=()) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        validate_form_spec(fields, custom_fields=custom)
    return caught.value.message_dict


def test_a_standard_form_is_accepted_and_normalised():
    spec = validate_form_spec(STANDARD_FIELDS, custom_fields=[])
    assert [f["name"] for f in spec] == ["email", "sei", "mei", "company", "tel", "pref", "message"]
    assert spec[2]["required"] is False  # defaulted
    assert spec[5]["choices"][0] == "01"  # prefecture choices filled in (JIS codes)
    assert spec[6]["maps_to"] == ""  # kept on the submission only


def test_custom_fields_map_by_key_and_type():
    custom = [
        definition("newsletter", CustomFieldDefinition.Type.BOOLEAN),
        definition("size", CustomFieldDefinition.Type.CHOICE, ["1-9", "10-99"]),
    ]
    spec = validate_form_spec(
        [
            EMAIL_FIELD,
            {"name": "nl", "label": "NL", "type": "checkbox", "maps_to": "custom.newsletter"},
            {"name": "size", "label": "規模", "type": "select", "maps_to": "custom.size"},
        ],
        custom_fields=custom,
    )
    assert spec[2]["choices"] == ["1-9", "10-99"]


def test_errors_name_the_index_attribute_and_field_name():
    errors = errors_of(
        [
            EMAIL_FIELD,
            {"name": "company", "label": "会社", "type": "text", "maps_to": "lead.nope"},
            {"name": "Bad Name", "label": "", "type": "radio"},
            {"name": "company", "label": "dup", "type": "text"},
        ]
    )
    assert "fields[1].maps_to" in errors
    assert "“company”" in errors["fields[1].maps_to"][0]
    assert "nope" in errors["fields[1].maps_to"][0]
    assert {"fields[2].name", "fields[2].label", "fields[2].type"} <= set(errors)
    assert "fields[3].name" in errors  # the name is already used by field 2


def test_type_must_fit_the_target():
    errors = errors_of(
        [
            {
                "name": "email",
                "label": "E",
                "type": "text",
                "required": True,
                "maps_to": "lead.email",
            },
        ]
    )
    assert list(errors) == ["fields[0].type"]


def test_unknown_custom_key_and_missing_choices():
    errors = errors_of(
        [
            EMAIL_FIELD,
            {"name": "x", "label": "X", "type": "text", "maps_to": "custom.missing"},
            {"name": "y", "label": "Y", "type": "select"},
            {"name": "z", "label": "Z", "type": "text", "choices": ["a"]},
        ]
    )
    assert "missing" in errors["fields[1].maps_to"][0]
    assert "fields[2].choices" in errors
    assert "fields[3].choices" in errors


def test_a_form_needs_a_required_email_field():
    assert "fields" in errors_of([{"name": "sei", "label": "姓", "type": "text"}])
    errors = errors_of([{**EMAIL_FIELD, "required": False}])
    assert list(errors) == ["fields[0].required"]


def test_reserved_names_and_duplicate_targets():
    errors = errors_of(
        [
            EMAIL_FIELD,
            {"name": "utm_source", "label": "src", "type": "text"},
            {"name": "email2", "label": "E2", "type": "email", "maps_to": "lead.email"},
        ]
    )
    assert "reserved" in errors["fields[1].name"][0]
    assert "fields[2].maps_to" in errors


def test_not_a_list():
    assert "fields" in errors_of({"name": "email"})


def test_clean_submission_checks_each_value_and_maps_to_lead_fields():
    spec = validate_form_spec(STANDARD_FIELDS, custom_fields=[])
    cleaned = clean_submission(
        spec,
        {
            "email": " ＴＡＲＯ@Example.co.jp ",
            "sei": "山田",
            "tel": "03-1234-5678",
            "pref": "13",
            "consent": "on",
        },
        consent_shown=True,
    )
    assert cleaned.errors == {}
    assert cleaned.email == "taro@example.co.jp"
    assert cleaned.lead_fields == {
        "family_name": "山田",
        "phone": "+81312345678",
        "prefecture": "13",
    }
    assert cleaned.consent is True

    bad = clean_submission(
        spec,
        {"email": "not-an-email", "tel": "12", "pref": "99"},
        consent_required=True,
        consent_shown=True,
    )
    assert set(bad.errors) == {"email", "sei", "tel", "pref", "consent"}


def test_messages_are_japanese_by_default():
    with translation.override("ja"):
        errors = errors_of([{"name": "email", "label": "E", "type": "radio"}])
    assert errors["fields[0].type"][0].startswith("項目 1（「email」）：不明な種類")
