"""The ModelSerializer every app's API uses.

DRF's ModelSerializer introspects the model and builds its fields again for every
serializer instance (for a list: once for the list, once per nested serializer), which
costs more than rendering a 20-row page. Fields that depend only on Meta are the same
every time, so they are built once per class and copied (unbound) for each instance.
A serializer whose fields depend on the request must override get_fields itself.
"""

import copy

from rest_framework import serializers


class ModelSerializer(serializers.ModelSerializer):
    def get_fields(self) -> dict:
        cls = type(self)
        built = cls.__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            cls._built_fields = built
        return copy.deepcopy(built)
