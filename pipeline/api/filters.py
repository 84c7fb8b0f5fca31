"""django-filter filter sets of the pipeline API."""

import django_filters
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from pipeline.models import Task


class TaskFilter(django_filters.FilterSet):
    assignee = django_filters.CharFilter(
        method="by_assignee",
        validators=[RegexValidator(r"^(me|none|[0-9]+)$", _("A user id, `me` or `none`."))],
        help_text=_("A user id, `me`, or `none` (unassigned)."),
    )
    # A choice, not a BooleanFilter: that one reads "perhaps" as no filter at all.
    done = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        method="by_done",
        help_text=_("true: done tasks only; false: open ones only."),
    )
    lead = django_filters.NumberFilter(field_name="lead_id")
    source = django_filters.ChoiceFilter(choices=Task.Source.choices)
    sequence = django_filters.NumberFilter(field_name="sequence_id")
    due_before = django_filters.DateFilter(
        field_name="due_date", lookup_expr="lte", help_text=_("Due on or before this day.")
    )

    class Meta:
        model = Task
        fields: list[str] = []

    def by_done(self, queryset: QuerySet[Task], name: str, value: str) -> QuerySet[Task]:
        return queryset.filter(done_at__isnull=value != "true")

    def by_assignee(self, queryset: QuerySet[Task], name: str, value: str) -> QuerySet[Task]:
        if value == "none":
            return queryset.filter(assignee__isnull=True)
        if value == "me":
            # An API key is nobody: it has no tasks of its own.
            user = getattr(self.request, "user", None)
            if not isinstance(user, User):
                return queryset.none()
            return queryset.filter(assignee_id=user.pk)
        return queryset.filter(assignee_id=int(value))
