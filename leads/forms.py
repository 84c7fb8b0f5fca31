"""Forms of the leads staff UI. They validate input shapes; leads.services do the work
and enforce the rules (a service's ValidationError lands back on the form)."""

from datetime import datetime, time, timedelta

import django_filters
from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from leads.api.filters import CompanyFilter, LeadFilter
from leads.models import (
    ActivityType,
    Channel,
    ConsentPurpose,
    ConsentStatus,
    ImportJob,
    Lead,
    LifecycleStage,
    Prefecture,
    SizeBand,
)

#: Sorts of the leads list (names as the API's LeadPagination knows them).
SORT_CHOICES = [
    ("-created", _("Newest first")),
    ("created", _("Oldest first")),
    ("-updated", _("Recently updated")),
    ("name", _("Name (A→Z)")),
    ("-name", _("Name (Z→A)")),
]
UNOWNED = "none"
#: An owner picker's answer to someone who cannot work in the tenant (an edited form,
#: or a person whose access ended while the page was open); the services say the same.
OWNER_ERRORS = {
    "required": _("Choose an owner."),
    "invalid_choice": _(
        "This person does not work in this tenant: choose a member, or agency staff serving it."
    ),
}


def _day_start(value) -> datetime:
    # A date in the filter means a day in the tenant's time zone (tenant_view activates it).
    return timezone.make_aware(datetime.combine(value, time.min))


class LeadListFilter(LeadFilter):
    """The leads list's filter: the API's filter set (same semantics), with labels and
    the widgets a person uses (single choices, calendar days in the tenant's zone)."""

    q = django_filters.CharFilter(
        method="search",
        label=_("Search"),
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": _("Name, kana, email or company")}
        ),
    )
    stage = django_filters.ChoiceFilter(
        field_name="lifecycle_stage",
        choices=LifecycleStage.choices,
        label=_("Stage"),
        empty_label=_("All stages"),
    )
    owner = django_filters.ChoiceFilter(
        method="with_owner", choices=[], label=_("Owner"), empty_label=_("Anyone")
    )
    campaign = django_filters.ChoiceFilter(
        method="in_campaign", choices=[], label=_("Campaign"), empty_label=_("Any campaign")
    )
    source = django_filters.ChoiceFilter(
        field_name="source_channel",
        choices=Channel.choices,
        label=_("Source"),
        empty_label=_("Any source"),
    )
    created_from = django_filters.DateFilter(
        method="created_since",
        label=_("Created from"),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    created_to = django_filters.DateFilter(
        method="created_until",
        label=_("Created to"),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    tag = django_filters.CharFilter(
        method="with_tag", label=_("Tag"), widget=forms.TextInput(attrs={"list": "lead-tags"})
    )
    company = django_filters.NumberFilter(field_name="company_id", widget=forms.HiddenInput)
    email_consent = django_filters.ChoiceFilter(
        choices=ConsentStatus.choices, label=_("Email consent"), empty_label=_("Any")
    )
    sales_contact_consent = django_filters.ChoiceFilter(
        choices=ConsentStatus.choices, label=_("Sales contact consent"), empty_label=_("Any")
    )

    score_min = django_filters.NumberFilter(
        method="with_score", label=_("Score from"), widget=forms.NumberInput(attrs={"step": 1})
    )
    score_max = django_filters.NumberFilter(
        method="with_score", label=_("Score to"), widget=forms.NumberInput(attrs={"step": 1})
    )

    #: Filters the UI shows (the rest of the API's filters still apply from the URL).
    UI_FILTERS = (
        "q",
        "stage",
        "owner",
        "campaign",
        "source",
        "tag",
        "created_from",
        "created_to",
        "email_consent",
        "sales_contact_consent",
        "score_min",
        "score_max",
    )

    def __init__(self, *args, owner_choices=(), campaign_choices=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.filters["owner"].extra["choices"] = [(UNOWNED, _("No owner")), *owner_choices]
        self.filters["campaign"].extra["choices"] = list(campaign_choices)

    def with_owner(self, queryset: QuerySet[Lead], name: str, value: str) -> QuerySet[Lead]:
        if value == UNOWNED:
            return queryset.filter(owner__isnull=True)
        return queryset.filter(owner_id=int(value))

    def in_campaign(self, queryset: QuerySet[Lead], name: str, value) -> QuerySet[Lead]:
        return super().in_campaign(queryset, name, int(value))

    def created_since(self, queryset: QuerySet[Lead], name: str, value) -> QuerySet[Lead]:
        return queryset.filter(created_at__gte=_day_start(value))

    def created_until(self, queryset: QuerySet[Lead], name: str, value) -> QuerySet[Lead]:
        return queryset.filter(created_at__lt=_day_start(value + timedelta(days=1)))

    def active_count(self) -> int:
        data = self.form.cleaned_data if self.form.is_valid() else {}
        return sum(
            1 for name in self.UI_FILTERS if name != "q" and data.get(name) not in (None, "")
        )


# --- Companies ---------------------------------------------------------------------------------

#: Sorts of the company list (leads.views.companies).
COMPANY_SORT_CHOICES = [
    ("name", _("Name (A→Z)")),
    ("-created", _("Newest first")),
    ("leads", _("Most leads")),
]


class CompanyListFilter(CompanyFilter):
    """The company list's filter: the API's company filter set (the same search), with
    the industry, prefecture and size a person picks."""

    q = django_filters.CharFilter(
        method="search",
        label=_("Search"),
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": _("Name, domain or corporate number")}
        ),
    )
    # Free text on the company: the choices are the tenant's own values (any value in
    # the URL still filters, so a link made before the list was cached keeps working).
    industry = django_filters.CharFilter(
        field_name="industry", label=_("Industry"), widget=forms.Select
    )
    prefecture = django_filters.ChoiceFilter(
        choices=Prefecture.choices, label=_("Prefecture"), empty_label=_("All prefectures")
    )
    size = django_filters.ChoiceFilter(
        field_name="size_band", choices=SizeBand.choices, label=_("Size"), empty_label=_("Any size")
    )

    UI_FILTERS = ("q", "industry", "prefecture", "size")

    def __init__(self, *args, industries=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        values = list(industries)
        current = (self.data or {}).get("industry", "")
        if current and current not in values:
            values.append(current)
        self.form.fields["industry"].widget.choices = [
            ("", _("All industries")),
            *((value, value) for value in values),
        ]

    def is_filtered(self) -> bool:
        self.form.is_valid()  # cleaned_data holds the valid fields even when one is not
        data = self.form.cleaned_data
        return any(data.get(name) not in (None, "") for name in self.UI_FILTERS)


# --- Bulk actions ------------------------------------------------------------------------------


class BulkScope:
    SELECTED = "selected"
    ALL = "all"


class BulkTagForm(forms.Form):
    tags = forms.CharField(
        label=_("Tags"),
        max_length=500,
        help_text=_("Comma-separated; new tags are created."),
        widget=forms.TextInput(attrs={"list": "lead-tags"}),
    )


class BulkOwnerForm(forms.Form):
    owner = forms.ChoiceField(label=_("Owner"), choices=[], error_messages=OWNER_ERRORS)

    def __init__(self, *args, owner_choices=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].choices = [(UNOWNED, _("No owner")), *owner_choices]

    def owner_id(self) -> int | None:
        value = self.cleaned_data["owner"]
        return None if value == UNOWNED else int(value)


# --- One lead ------------------------------------------------------------------------------------


class LeadEditForm(forms.Form):
    """A lead's own fields. Custom fields are added per tenant definition as
    `custom__<key>` (validated again by the services, which name errors `custom.<key>`)."""

    family_name = forms.CharField(label=_("Family name"), max_length=100, required=False)
    given_name = forms.CharField(label=_("Given name"), max_length=100, required=False)
    family_name_kana = forms.CharField(
        label=_("Family name (kana)"), max_length=100, required=False
    )
    given_name_kana = forms.CharField(label=_("Given name (kana)"), max_length=100, required=False)
    email = forms.CharField(label=_("Email"), max_length=254, required=False)
    phone = forms.CharField(label=_("Phone"), max_length=40, required=False)
    company_name = forms.CharField(label=_("Company"), max_length=255, required=False)
    department = forms.CharField(label=_("Department"), max_length=200, required=False)
    job_title = forms.CharField(label=_("Job title"), max_length=200, required=False)
    owner = forms.ChoiceField(
        label=_("Owner"), choices=[], required=False, error_messages=OWNER_ERRORS
    )
    tags = forms.CharField(
        label=_("Tags"),
        max_length=1000,
        required=False,
        help_text=_("Comma-separated."),
        widget=forms.TextInput(attrs={"list": "lead-tags"}),
    )

    LEAD_FIELDS = (
        "family_name",
        "given_name",
        "family_name_kana",
        "given_name_kana",
        "phone",
        "department",
        "job_title",
    )

    def __init__(self, *args, owner_choices=(), definitions=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].choices = [("", _("No owner")), *owner_choices]
        self.definitions = list(definitions)
        for definition in self.definitions:
            self.fields[f"custom__{definition.key}"] = _custom_field(definition)

    @classmethod
    def initial_for(cls, lead: Lead) -> dict:
        initial = {name: getattr(lead, name) for name in cls.LEAD_FIELDS}
        initial.update(
            email=lead.email,
            company_name=lead.company.name if lead.company else "",
            owner=str(lead.owner_id or ""),
            tags=", ".join(tag.name for tag in lead.tags.all()),
        )
        for key, value in (lead.custom_fields or {}).items():
            initial[f"custom__{key}"] = value
        return initial

    def custom_bound_fields(self) -> list[forms.BoundField]:
        return [self[f"custom__{d.key}"] for d in self.definitions]

    def service_fields(self, lead: Lead) -> dict:
        """What changed, as lead_update's `fields` (the company re-matches only when its
        name changed, so an edit elsewhere never moves the lead to another company)."""
        data = self.cleaned_data
        fields = {name: data[name] for name in self.LEAD_FIELDS}
        fields["owner_id"] = int(data["owner"]) if data["owner"] else None
        fields["tags"] = data["tags"]
        current_company = lead.company.name if lead.company else ""
        if data["company_name"] != current_company:
            if data["company_name"]:
                fields["company_name"] = data["company_name"]
            else:
                fields["company_id"] = None
        custom = {}
        for definition in self.definitions:
            value = data.get(f"custom__{definition.key}")
            custom[definition.key] = None if value in (None, "", []) else _custom_value(value)
        if custom:
            fields["custom"] = custom
        return fields

    def add_service_errors(self, message_dict: dict[str, list[str]]) -> None:
        for name, messages in message_dict.items():
            field = {"owner_id": "owner", "company_id": "company_name"}.get(name, name)
            field = field.replace("custom.", "custom__")
            if field not in self.fields:
                field = None
            for message in messages:
                self.add_error(field, message)


def _custom_field(definition) -> forms.Field:
    kind = definition.type
    common = {"label": definition.label, "required": False}
    choices = [(c, c) for c in definition.choices or []]
    if kind == "number":
        return forms.DecimalField(**common)
    if kind == "date":
        return forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), **common)
    if kind == "boolean":
        return forms.NullBooleanField(**common)
    if kind == "choice":
        return forms.ChoiceField(choices=[("", "—"), *choices], **common)
    if kind == "multi_choice":
        return forms.MultipleChoiceField(
            choices=choices, widget=forms.CheckboxSelectMultiple, **common
        )
    if kind == "email":
        return forms.EmailField(**common)
    if kind == "url":
        return forms.URLField(**common)
    return forms.CharField(max_length=1000, **common)


def _custom_value(value):
    # The services take JSON-shaped values: dates as ISO strings, numbers as str.
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value.__class__.__name__ == "Decimal":
        return str(value)
    return value


class StageForm(forms.Form):
    to_stage = forms.ChoiceField(label=_("New stage"), choices=LifecycleStage.choices)
    reason = forms.CharField(label=_("Reason"), max_length=500, required=False)


class ConsentForm(forms.Form):
    purpose = forms.ChoiceField(label=_("Purpose"), choices=ConsentPurpose.choices)
    status = forms.ChoiceField(
        label=_("Status"),
        choices=[
            (ConsentStatus.GRANTED, _("Granted (opt-in)")),
            (ConsentStatus.WITHDRAWN, _("Withdrawn (opt-out)")),
        ],
    )
    basis = forms.CharField(
        label=_("How was it given?"),
        max_length=500,
        required=False,
        help_text=_("E.g. “asked on the phone on 4 June”."),
    )


#: What a person logs by hand on a lead.
MANUAL_ACTIVITY_TYPES = [
    (ActivityType.NOTE, ActivityType.NOTE.label),
    (ActivityType.CALL, ActivityType.CALL.label),
    (ActivityType.MEETING, ActivityType.MEETING.label),
]


class ActivityForm(forms.Form):
    type = forms.ChoiceField(label=_("Type"), choices=MANUAL_ACTIVITY_TYPES)
    body = forms.CharField(
        label=_("Note"), max_length=5000, widget=forms.Textarea(attrs={"rows": 3})
    )
    occurred_at = forms.DateTimeField(
        label=_("When"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
        help_text=_("Empty: now."),
    )


class MergeSearchForm(forms.Form):
    q = forms.CharField(
        label=_("Find the duplicate"),
        max_length=254,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": _("Email, name or company")}
        ),
    )


class MergeConfirmForm(forms.Form):
    merge_id = forms.IntegerField(widget=forms.HiddenInput)


# --- Import wizard --------------------------------------------------------------------------------


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label=_("File"),
        help_text=_("CSV (UTF-8, Shift_JIS, UTF-16) or Excel (.xlsx), with a header row."),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt,.tsv,.xlsx"}),
    )


class ImportMappingForm(forms.Form):
    """One select per column of the file: `col_<index>` → target ("" ignores it)."""

    def __init__(self, *args, header: list[str], targets: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.header = header
        choices = [("", _("— do not import —")), *targets]
        for index, name in enumerate(header):
            self.fields[f"col_{index}"] = forms.ChoiceField(
                label=name or _("(column %(n)d)") % {"n": index + 1},
                choices=choices,
                required=False,
            )

    def mapping(self) -> dict[str, str]:
        return {name: self.cleaned_data.get(f"col_{i}", "") for i, name in enumerate(self.header)}

    def rows(self):
        return [(name, self[f"col_{i}"]) for i, name in enumerate(self.header)]


class ImportOptionsForm(forms.Form):
    policy = forms.ChoiceField(
        label=_("When a lead with the same email exists"),
        choices=ImportJob.Policy.choices,
        widget=forms.RadioSelect,
    )
    campaign = forms.ChoiceField(label=_("Add the leads to a campaign"), required=False, choices=[])
    consent_purposes = forms.MultipleChoiceField(
        label=_("These people consented to"),
        choices=ConsentPurpose.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    consent_basis = forms.CharField(
        label=_("Stated basis of the consent"),
        max_length=500,
        required=False,
        help_text=_("E.g. “opted in at the booth of Japan IT Week, 2025-04”."),
    )
    dry_run = forms.BooleanField(
        label=_("Dry run: count what would change, change nothing"), required=False
    )

    def __init__(self, *args, campaign_choices=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["campaign"].choices = [("", _("No campaign")), *campaign_choices]

    def campaign_id(self) -> int | None:
        value = self.cleaned_data.get("campaign")
        return int(value) if value else None


# --- Capture-form builder --------------------------------------------------------------------


class CaptureSettingsForm(forms.Form):
    """A capture form's settings; its fields are edited as rows (see views.capture)."""

    name = forms.CharField(label=_("Form name"), max_length=200)
    campaign = forms.ChoiceField(label=_("Campaign"), required=False, choices=[])
    consent_text = forms.CharField(
        label=_("Consent checkbox text"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Empty: the form has no consent box."),
    )
    consent_required = forms.BooleanField(label=_("Consent required to submit"), required=False)
    double_opt_in = forms.BooleanField(
        label=_("Double opt-in: confirm the address by email"), required=False
    )
    thank_you_message = forms.CharField(
        label=_("Thank-you message"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    redirect_url = forms.CharField(
        label=_("Or redirect to"),
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"type": "url", "placeholder": "https://"}),
    )
    is_active = forms.BooleanField(label=_("Active (accepts submissions)"), required=False)

    def __init__(self, *args, campaign_choices=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["campaign"].choices = [("", _("No campaign")), *campaign_choices]

    def service_values(self) -> dict:
        data = dict(self.cleaned_data)
        campaign = data.pop("campaign")
        data["campaign_id"] = int(campaign) if campaign else None
        return data


class NewCaptureForm(forms.Form):
    name = forms.CharField(label=_("Form name"), max_length=200)
