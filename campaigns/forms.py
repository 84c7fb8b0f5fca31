"""Forms of the campaigns staff UI. Shapes only: campaigns.services validates the rules
(dates in order, money in the currency's minor unit, the owner someone who works in the
tenant)."""

from django import forms
from django.utils.translation import gettext_lazy as _

from campaigns.models import Campaign, CampaignMembership
from leads.forms import OWNER_ERRORS

#: The campaign fields a person edits, in form order (the owner is picked among the people
#: who work in the tenant: members and agency staff serving it).
FIELDS = (
    "name",
    "channel",
    "status",
    "starts_on",
    "ends_on",
    "currency",
    "budget",
    "actual_cost",
    "target_leads",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "description",
)
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


class CampaignForm(forms.Form):
    """Fields and labels from the model; the services decide what is valid."""

    owner = forms.ChoiceField(
        label=_("Owner"), required=False, choices=[], error_messages=OWNER_ERRORS
    )

    def __init__(self, *args, owner_choices=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        fields = {}
        for name in FIELDS:
            field = Campaign._meta.get_field(name).formfield()
            if name in ("starts_on", "ends_on"):
                field.widget = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
            if name == "description":
                field.widget = forms.Textarea(attrs={"rows": 3})
            fields[name] = field
        fields["owner"] = self.fields["owner"]
        fields["owner"].choices = [("", _("No owner")), *owner_choices]
        self.fields = fields

    @classmethod
    def initial_for(cls, campaign: Campaign) -> dict:
        initial = {name: getattr(campaign, name) for name in FIELDS}
        initial["owner"] = str(campaign.owner_id or "")
        return initial

    def service_fields(self) -> dict:
        data = dict(self.cleaned_data)
        owner = data.pop("owner")
        data["owner_id"] = int(owner) if owner else None
        for name in ("budget", "actual_cost"):
            if data.get(name) is None:
                data[name] = 0
        if data.get("target_leads") is None:
            data["target_leads"] = 0
        return data

    def add_service_errors(self, message_dict: dict[str, list[str]]) -> None:
        for name, messages in message_dict.items():
            field = name if name in self.fields else None
            for message in messages:
                self.add_error(field, message)

    def utm_fields(self):
        return [self[name] for name in UTM_FIELDS]


class MemberStatusForm(forms.Form):
    """The inline status select of one member row (many per page, so no ids)."""

    status = forms.ChoiceField(
        label=_("Status"),
        choices=CampaignMembership.Status.choices,
        widget=forms.Select(attrs={"aria-label": _("Status")}),
    )

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("auto_id", False)
        super().__init__(*args, **kwargs)


class CostForm(forms.Form):
    add = forms.DecimalField(label=_("Add spend"), min_value=0, max_digits=14, decimal_places=2)
