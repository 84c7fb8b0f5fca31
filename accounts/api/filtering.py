"""django-filter for every list, skipped when a request names none of its filters.

Building and validating a FilterSet form costs about as much as the page's query on a
small list; with no filter parameter in the request it would filter nothing, so the
queryset is returned as it is.
"""

from django_filters.rest_framework import DjangoFilterBackend


class FilterBackend(DjangoFilterBackend):
    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is None:
            return queryset
        names = filterset_class.base_filters
        # A filter may read suffixed parameters (range widgets: created_after, size_min).
        if not any(
            key == name or key.startswith(f"{name}_")
            for key in request.query_params
            for name in names
        ):
            return queryset
        return super().filter_queryset(request, queryset, view)
