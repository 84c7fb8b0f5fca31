"""Forms of the handoff UI: shapes only; pipeline.services checks the meaning."""

from django import forms
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from leads.models import Prefecture, SizeBand
from pipeline.models import RejectReason, RoutingRule


class RejectForm(forms.Form):
    reason = forms.ChoiceField(
        label=_("Reason"), choices=[("", _("Choose a reason…")), *RejectReason.choices]
    )
    comment = forms.CharField(label=_("Comment"), max_length=1000, required=False)


class BantForm(forms.Form):
    budget = forms.CharField(label=_("Budget"), max_length=500)
    authority = forms.CharField(label=_("Authority"), max_length=500)
    need = forms.CharField(label=_("Need"), max_length=500)
    timeline = forms.CharField(label=pgettext_lazy("qualification", "Timeline"), max_length=500)
    handover_note = forms.CharField(
        label=_("Hand-over note for field sales"), widget=forms.Textarea(attrs={"rows": 4})
    )


class ChecklistForm(forms.Form):
    """The tenant's own checklist: one field per item."""

    handover_note = forms.CharField(
        label=_("Hand-over note for field sales"), widget=forms.Textarea(attrs={"rows": 4})
    )

    def __init__(self, *args, checklist: list[dict], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.checklist = checklist
        for item in checklist:
            self.fields[f"answer_{item['key']}"] = forms.CharField(
                label=item["label"], max_length=1000
            )
        self.order_fields([f"answer_{item['key']}" for item in checklist] + ["handover_note"])

    def answers(self) -> dict:
        return {item["key"]: self.cleaned_data[f"answer_{item['key']}"] for item in self.checklist}


class ReassignForm(forms.Form):
    owner = forms.TypedChoiceField(label=_("New owner"), coerce=int)

    def __init__(self, *args, owner_choices: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].choices = owner_choices


WEEKDAYS = [
    (0, _("Monday")),
    (1, _("Tuesday")),
    (2, _("Wednesday")),
    (3, _("Thursday")),
    (4, _("Friday")),
    (5, _("Saturday")),
    (6, _("Sunday")),
]


class SettingsForm(forms.Form):
    sla_hours = forms.DecimalField(
        label=_("SLA (business hours)"), min_value=0.25, max_digits=6, decimal_places=2
    )
    reminder_minutes = forms.IntegerField(
        label=_("Reminder before the deadline (business minutes)"), min_value=0
    )
    workday_start = forms.TimeField(
        label=_("Working day starts"), widget=forms.TimeInput(attrs={"type": "time"})
    )
    workday_end = forms.TimeField(
        label=_("Working day ends"), widget=forms.TimeInput(attrs={"type": "time"})
    )
    working_days = forms.TypedMultipleChoiceField(
        label=_("Working days"), choices=WEEKDAYS, coerce=int, widget=forms.CheckboxSelectMultiple
    )
    observe_holidays = forms.BooleanField(label=_("Public holidays are days off"), required=False)
    closed_dates = forms.CharField(
        label=_("Other closed dates"),
        required=False,
        help_text=_("YYYY-MM-DD, one per line (year-end, company holidays)."),
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    checklist = forms.CharField(
        label=_("Qualification checklist"),
        required=False,
        help_text=_(
            "One item per line as key: label. Empty: BANT (budget, authority, need, timeline)."
        ),
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    default_team = forms.TypedChoiceField(
        label=_("Default team"), coerce=int, required=False, empty_value=None
    )

    def __init__(self, *args, team_choices: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["default_team"].choices = [("", _("None: unassigned")), *team_choices]

    def clean_closed_dates(self) -> list[str]:
        return [
            line.strip() for line in self.cleaned_data["closed_dates"].splitlines() if line.strip()
        ]

    def clean_checklist(self) -> list[dict]:
        items = []
        for line in self.cleaned_data["checklist"].splitlines():
            if not line.strip():
                continue
            key, _sep, label = line.partition(":")
            items.append({"key": key.strip(), "label": label.strip()})
        return items


class TeamForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    manager = forms.TypedChoiceField(
        label=_("Manager"), coerce=int, required=False, empty_value=None
    )
    members = forms.TypedMultipleChoiceField(
        label=_("Members"), coerce=int, required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args, staff_choices: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["manager"].choices = [("", _("No manager")), *staff_choices]
        self.fields["members"].choices = staff_choices


class RuleForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    position = forms.IntegerField(label=_("Order"), min_value=0, initial=0)
    is_active = forms.BooleanField(label=_("Active"), required=False, initial=True)
    prefectures = forms.MultipleChoiceField(
        label=_("Prefectures"), choices=Prefecture.choices, required=False
    )
    industries = forms.CharField(
        label=_("Industries"), required=False, help_text=_("Comma-separated; empty: any.")
    )
    size_bands = forms.MultipleChoiceField(
        label=_("Company sizes"), choices=SizeBand.choices, required=False
    )
    target = forms.ChoiceField(label=_("Route to"), choices=RoutingRule.Target.choices)
    user = forms.TypedChoiceField(label=_("Person"), coerce=int, required=False, empty_value=None)
    team = forms.TypedChoiceField(label=_("Team"), coerce=int, required=False, empty_value=None)

    def __init__(self, *args, staff_choices, team_choices, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["user"].choices = [("", "—"), *staff_choices]
        self.fields["team"].choices = [("", "—"), *team_choices]

    def clean_industries(self) -> list[str]:
        return [v.strip() for v in self.cleaned_data["industries"].split(",") if v.strip()]
