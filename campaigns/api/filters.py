"""django-filter filter sets of the campaigns API."""

import django_filters
from django.utils.translation import gettext_lazy as _

from campaigns.models import Campaign, CampaignChannel, CampaignMembership


class CampaignFilter(django_filters.FilterSet):
    channel = django_filters.MultipleChoiceFilter(
        choices=CampaignChannel.choices, help_text=_("Repeat for several channels.")
    )
    status = django_filters.MultipleChoiceFilter(
        choices=Campaign.Status.choices, help_text=_("Repeat for several statuses.")
    )
    starts_after = django_filters.DateFilter(
        field_name="starts_on", lookup_expr="gte", help_text=_("Starts on or after this day.")
    )
    starts_before = django_filters.DateFilter(
        field_name="starts_on", lookup_expr="lt", help_text=_("Starts before this day.")
    )
    search = django_filters.CharFilter(
        field_name="name", lookup_expr="icontains", help_text=_("Part of the name.")
    )

    class Meta:
        model = Campaign
        fields = ["channel", "status", "starts_after", "starts_before", "search"]


class MemberFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=CampaignMembership.Status.choices, help_text=_("Repeat for several statuses.")
    )

    class Meta:
        model = CampaignMembership
        fields = ["status"]
