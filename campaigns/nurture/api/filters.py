"""django-filter filter sets of the nurture API."""

import django_filters
from django.utils.translation import gettext_lazy as _

from campaigns.models import Enrolment, OutgoingMessage, SenderIdentity


class EnrolmentFilter(django_filters.FilterSet):
    sequence = django_filters.NumberFilter(field_name="sequence_id")
    lead = django_filters.NumberFilter(field_name="lead_id")
    state = django_filters.MultipleChoiceFilter(
        choices=Enrolment.State.choices, distinct=False, help_text=_("Repeat for several.")
    )
    exit_reason = django_filters.MultipleChoiceFilter(
        choices=Enrolment.ExitReason.choices, distinct=False
    )
    source = django_filters.MultipleChoiceFilter(choices=Enrolment.Source.choices, distinct=False)

    class Meta:
        model = Enrolment
        fields: list[str] = []


class OutgoingMessageFilter(django_filters.FilterSet):
    sequence = django_filters.NumberFilter(field_name="enrolment__sequence_id")
    enrolment = django_filters.NumberFilter(field_name="enrolment_id")
    lead = django_filters.NumberFilter(field_name="lead_id")
    status = django_filters.MultipleChoiceFilter(
        choices=OutgoingMessage.Status.choices, distinct=False, help_text=_("Repeat for several.")
    )
    sent_after = django_filters.IsoDateTimeFilter(field_name="sent_at", lookup_expr="gte")
    sent_before = django_filters.IsoDateTimeFilter(field_name="sent_at", lookup_expr="lt")

    class Meta:
        model = OutgoingMessage
        fields: list[str] = []


class SenderIdentityFilter(django_filters.FilterSet):
    from_email = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = SenderIdentity
        fields: list[str] = []
