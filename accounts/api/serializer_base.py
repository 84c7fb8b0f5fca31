"""The ModelSerializer every app's API uses: DRF's, made cheap on read.

1. DRF's ModelSerializer introspects the model and builds its fields again for every
   serializer instance; fields that depend only on Meta are the same every time, so
   they are built once per class and copied (unbound) for each instance. A serializer
   whose fields depend on the request must override get_fields itself.
2. to_representation walks DRF's generic field protocol for every field of every row
   (generator, source lookup, SkipField handling), which costs more than the page's
   query on a 50-row list. The plain cases — a model attribute rendered by an integer,
   string, boolean, choice, date/time or nested serializer field — are compiled once per
   serializer instance into (name, attribute, render) steps; anything else (related
   fields, method fields, dotted or callable sources, write-only fields) takes DRF's own
   path. The output is identical (tests/test_serializer_base.py checks it).
"""

import copy
from typing import Any

from rest_framework import fields as drf_fields
from rest_framework import relations, serializers

# Field classes whose to_representation needs nothing but the attribute value.
PLAIN_FIELDS = (
    drf_fields.IntegerField,
    drf_fields.CharField,  # EmailField, SlugField, URLField, RegexField...
    drf_fields.BooleanField,
    drf_fields.ChoiceField,
    drf_fields.DateTimeField,
    drf_fields.DateField,
    drf_fields.DecimalField,
    drf_fields.FloatField,
    drf_fields.UUIDField,
    drf_fields.JSONField,
    serializers.BaseSerializer,
)

Step = tuple[str, str | None, drf_fields.Field]


class ModelSerializer(serializers.ModelSerializer):
    def get_fields(self) -> dict:
        cls = type(self)
        built = cls.__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            cls._built_fields = built
        return copy.deepcopy(built)

    def _compiled_steps(self) -> list[Step]:
        steps = self.__dict__.get("_steps")
        if steps is None:
            steps = []
            for field in self._readable_fields:
                attribute = None
                if (
                    isinstance(field, PLAIN_FIELDS)
                    and not isinstance(field, relations.RelatedField | serializers.ListSerializer)
                    and len(field.source_attrs) == 1
                    and field.source != "*"
                ):
                    attribute = field.source_attrs[0]
                steps.append((field.field_name, attribute, field))
            self.__dict__["_steps"] = steps
        return steps

    def to_representation(self, instance: Any) -> dict:
        result: dict = {}
        for name, attribute, field in self._compiled_steps():
            value = _MISSING if attribute is None else getattr(instance, attribute, _MISSING)
            if value is _MISSING or callable(value):
                represented = _drf_representation(field, instance)
                if represented is not _SKIP:
                    result[name] = represented
            elif value is None:
                result[name] = None
            else:
                result[name] = field.to_representation(value)
        return result


_MISSING = object()
_SKIP = object()


def _drf_representation(field: drf_fields.Field, instance: Any) -> Any:
    """DRF's own per-field path (Serializer.to_representation's loop body)."""
    try:
        attribute = field.get_attribute(instance)
    except drf_fields.SkipField:
        return _SKIP
    check_for_none = attribute.pk if isinstance(attribute, relations.PKOnlyObject) else attribute
    return None if check_for_none is None else field.to_representation(attribute)
