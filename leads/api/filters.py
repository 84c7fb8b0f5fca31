"""django-filter filter sets of the leads API."""

import django_filters
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from leads import selectors
from leads.models import (
    Activity,
    ActivityType,
    Channel,
    Company,
    ConsentStatus,
    Lead,
    LeadScore,
    LifecycleStage,
    ScoringModel,
    Suppression,
)


def _membership_model():
    # CampaignMembership lives in campaigns (a higher app): reach it through the reverse
    # relation's model instead of importing it.
    return Lead._meta.get_field("campaign_memberships").related_model


class LeadFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="search",
        help_text=_("Prefix search over name, kana reading, email and company name."),
    )
    stage = django_filters.MultipleChoiceFilter(
        field_name="lifecycle_stage",
        choices=LifecycleStage.choices,
        distinct=False,
        help_text=_("Lifecycle stage; repeat for several."),
    )
    owner = django_filters.NumberFilter(field_name="owner_id", help_text=_("Owner's user id."))
    unowned = django_filters.BooleanFilter(
        field_name="owner", lookup_expr="isnull", help_text=_("Only leads without an owner.")
    )
    company = django_filters.NumberFilter(field_name="company_id")
    campaign = django_filters.NumberFilter(
        method="in_campaign",
        help_text=_("Leads that came from the campaign or are members of it."),
    )
    source_campaign = django_filters.NumberFilter(field_name="source_campaign_id")
    source = django_filters.MultipleChoiceFilter(
        field_name="source_channel",
        choices=Channel.choices,
        distinct=False,
        help_text=_("How the lead arrived."),
    )
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    tag = django_filters.CharFilter(method="with_tag", help_text=_("Tag name."))
    # distinct=False: one row per lead already; DISTINCT would sort every column.
    email_consent = django_filters.MultipleChoiceFilter(
        choices=ConsentStatus.choices, distinct=False
    )
    sales_contact_consent = django_filters.MultipleChoiceFilter(
        choices=ConsentStatus.choices, distinct=False
    )
    email = django_filters.CharFilter(method="with_email", help_text=_("Exact email."))
    score_min = django_filters.NumberFilter(
        method="with_score", help_text=_("Primary score at least this (leads never scored: 0).")
    )
    score_max = django_filters.NumberFilter(
        method="with_score", help_text=_("Primary score at most this.")
    )

    class Meta:
        model = Lead
        fields: list[str] = []

    def with_score(self, queryset: QuerySet[Lead], name: str, value) -> QuerySet[Lead]:
        """Leads whose primary model's total is in the range; a lead without a stored
        score counts as 0 (both bounds are applied together, once)."""
        if getattr(self, "_score_applied", False):
            return queryset
        self._score_applied = True
        low, high = self.form.cleaned_data.get("score_min"), self.form.cleaned_data.get("score_max")
        primary = ScoringModel.objects.filter(is_primary=True).values_list("id", flat=True).first()
        if primary is None:
            zero_in_range = (low is None or low <= 0) and (high is None or high >= 0)
            return queryset if zero_in_range else queryset.none()
        scores = LeadScore.objects.filter(model_id=primary)
        if low is not None:
            scores = scores.filter(total__gte=low)
        if high is not None:
            scores = scores.filter(total__lte=high)
        in_range = Q(id__in=scores.values("lead_id"))
        if (low is None or low <= 0) and (high is None or high >= 0):
            # Never-scored leads are 0, and 0 is in the range.
            scored = LeadScore.objects.filter(model_id=primary).values("lead_id")
            in_range |= ~Q(id__in=scored)
        return queryset.filter(in_range)

    def search(self, queryset: QuerySet[Lead], name: str, value: str) -> QuerySet[Lead]:
        return selectors.lead_search(queryset, value)

    def in_campaign(self, queryset: QuerySet[Lead], name: str, value: int) -> QuerySet[Lead]:
        members = _membership_model().objects.filter(campaign_id=value).values("lead_id")
        return queryset.filter(Q(source_campaign_id=value) | Q(id__in=members))

    def with_tag(self, queryset: QuerySet[Lead], name: str, value: str) -> QuerySet[Lead]:
        from leads.models import LeadTag

        tagged = LeadTag.objects.filter(tag__name=value).values("lead_id")
        return queryset.filter(id__in=tagged)

    def with_email(self, queryset: QuerySet[Lead], name: str, value: str) -> QuerySet[Lead]:
        from leads.normalize import NormalizationError, normalize_email

        try:
            return queryset.filter(email=normalize_email(value))
        except NormalizationError:
            return queryset.none()


class CompanyFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", help_text=_("Name, domain or 法人番号."))
    domain = django_filters.CharFilter()
    corporate_number = django_filters.CharFilter()
    prefecture = django_filters.CharFilter()

    class Meta:
        model = Company
        fields: list[str] = []

    def search(self, queryset: QuerySet[Company], name: str, value: str) -> QuerySet[Company]:
        return selectors.company_search(queryset, value)


class ActivityFilter(django_filters.FilterSet):
    lead = django_filters.NumberFilter(field_name="lead_id")
    campaign = django_filters.NumberFilter(field_name="campaign_id")
    type = django_filters.MultipleChoiceFilter(choices=ActivityType.choices, distinct=False)
    occurred_after = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = Activity
        fields: list[str] = []


class SuppressionFilter(django_filters.FilterSet):
    email = django_filters.CharFilter(field_name="email", lookup_expr="startswith")
    reason = django_filters.ChoiceFilter(choices=Suppression.Reason.choices)

    class Meta:
        model = Suppression
        fields: list[str] = []
