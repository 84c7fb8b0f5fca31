"""django-filter filter sets of the accounts API."""

import django_filters
from django.utils.translation import gettext_lazy as _

from accounts.models import AuditLog, Membership, Role


class MembershipFilter(django_filters.FilterSet):
    role = django_filters.ChoiceFilter(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["role"]


class AuditLogFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(help_text=_("Exact action, e.g. api_key.created."))
    actor = django_filters.CharFilter(
        field_name="actor__email", lookup_expr="iexact", help_text=_("Email of the actor.")
    )
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditLog
        fields = ["action", "actor", "created_after", "created_before"]
