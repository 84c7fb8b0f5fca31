"""Forms of the nurture staff UI, and the rows of the sequence builder's steps editor.

Shapes only: campaigns.nurture.services decides what is valid and saves. The model
forms build their fields from the model at request time (inside the tenant's scope,
so the choices of a foreign key are the tenant's rows), like campaigns.forms: to offer
one more field of a model, add its name to the form's `field_names`.

The steps editor travels as plain POST data, one row per step (`s-<i>-<attribute>`),
like the capture-form builder (leads.views.capture): adding, moving and removing rows
re-render the editor without saving. A row turns into the dict that
services.sequence_steps_save takes; what cannot be turned (a missing template, a wait
of "abc") is reported on the row's field.
"""

import copy

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Model
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.models import (
    EmailTemplate,
    SenderIdentity,
    SendingSettings,
    Sequence,
    SequenceStep,
    StepKind,
)
from campaigns.nurture.services import BRANCH_CONDITIONS, CHANGEABLE_LEAD_FIELDS
from leads.models import LifecycleStage


class ModelFieldsForm(forms.Form):
    """A form of some of a model's fields, built from the model when instantiated."""

    model: type[Model]
    field_names: tuple[str, ...] = ()
    widgets: dict[str, forms.Widget] = {}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        built = {}
        for name in self.field_names:
            extra = {"widget": copy.deepcopy(self.widgets[name])} if name in self.widgets else {}
            built[name] = self.model._meta.get_field(name).formfield(**extra)
        self.fields = built

    @classmethod
    def initial_for(cls, obj: Model) -> dict:
        initial = {}
        for name in cls.field_names:
            model_field = obj._meta.get_field(name)
            initial[name] = getattr(obj, model_field.attname)
        return initial

    def service_fields(self) -> dict:
        """cleaned_data as the services take it: a foreign key as `<name>_id`."""
        values = {}
        for name in self.field_names:
            model_field = self.model._meta.get_field(name)
            value = self.cleaned_data.get(name)
            if model_field.is_relation:
                values[model_field.attname] = value.pk if value is not None else None
            else:
                values[name] = value
        return values

    def add_service_errors(self, message_dict: dict[str, list[str]]) -> None:
        for key, messages in message_dict.items():
            name = key.removesuffix("_id")
            for message in messages:
                self.add_error(name if name in self.fields else None, message)


class SequenceSettingsForm(ModelFieldsForm):
    model = Sequence
    field_names = (
        "name",
        "sender",
        "enrol_on_campaign",
        "enrol_on_recycled",
        "enrol_on_form",
        "enrol_on_stage",
        "enrol_on_segment",
        "allow_reenrolment",
    )


class EmailTemplateForm(ModelFieldsForm):
    model = EmailTemplate
    field_names = ("name", "subject", "html", "text")
    widgets = {
        "html": forms.Textarea(attrs={"rows": 12, "class": "code-input", "spellcheck": "false"}),
        "text": forms.Textarea(attrs={"rows": 10, "class": "code-input"}),
    }


class SenderIdentityForm(ModelFieldsForm):
    model = SenderIdentity
    field_names = ("from_name", "from_email", "reply_to", "postal_address")
    widgets = {"postal_address": forms.Textarea(attrs={"rows": 3})}


class SendingSettingsForm(ModelFieldsForm):
    model = SendingSettings
    field_names = ("per_minute", "per_day", "quiet_start", "quiet_end")
    widgets = {
        "quiet_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        "quiet_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    }

    def clean(self) -> dict:
        data = super().clean()
        if (data.get("quiet_start") is None) != (data.get("quiet_end") is None):
            self.add_error("quiet_end", _("Quiet hours need a start and an end."))
        return data


class TestSendForm(forms.Form):
    to = forms.EmailField(label=gettext_lazy("Send a test to"))
    sender = forms.ModelChoiceField(label=gettext_lazy("Sender"), queryset=None)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["sender"].queryset = SenderIdentity.objects.order_by("-created_at", "-id")


# --- The steps editor ------------------------------------------------------------------------

WAIT_UNITS = {
    "days": (86400, gettext_lazy("days")),
    "hours": (3600, gettext_lazy("hours")),
    "minutes": (60, gettext_lazy("minutes")),
    "seconds": (1, gettext_lazy("seconds")),
}
WEEKDAYS = [
    (0, gettext_lazy("Mon")),
    (1, gettext_lazy("Tue")),
    (2, gettext_lazy("Wed")),
    (3, gettext_lazy("Thu")),
    (4, gettext_lazy("Fri")),
    (5, gettext_lazy("Sat")),
    (6, gettext_lazy("Sun")),
]
#: Branch conditions: label and the inputs each uses (value, field). A condition the
#: services know and this table does not still shows, with both inputs.
CONDITIONS = {
    "opened_previous": (gettext_lazy("Opened the previous email"), ()),
    "clicked_previous": (gettext_lazy("Clicked the previous email"), ()),
    "score_at_least": (gettext_lazy("Score at least"), ("value",)),
    "stage_is": (gettext_lazy("Lifecycle stage is"), ("stage",)),
    "field_equals": (gettext_lazy("Field equals"), ("field", "value")),
    "visited_page": (gettext_lazy("Visited a page whose address contains"), ("value",)),
    "attended_webinar": (gettext_lazy("Attended a webinar"), ()),
}
FIELD_LABELS = {
    "job_title": gettext_lazy("Job title"),
    "department": gettext_lazy("Department"),
    "phone": gettext_lazy("Phone"),
}
ROW_TEXT = (
    "kind",
    "template",
    "wait_amount",
    "wait_unit",
    "window_start",
    "window_end",
    "condition",
    "condition_field",
    "condition_value",
    "condition_stage",
    "then",
    "else",
    "title",
    "change",
    "change_value",
    "sequence",
)
MAX_ROWS = 100


def condition_inputs(condition: str) -> str:
    """The inputs a branch condition uses, space-separated (for the editor)."""
    return " ".join(CONDITIONS.get(condition, (None, ("field", "value")))[1])


def condition_choices() -> list[tuple[str, str, str]]:
    """(value, label, inputs) of every condition the services know."""
    known = [(key, str(label)) for key, (label, _inputs) in CONDITIONS.items()]
    others = [(key, key) for key in sorted(BRANCH_CONDITIONS - set(CONDITIONS))]
    return [(key, label, condition_inputs(key)) for key, label in known + others]


def change_choices() -> list[tuple[str, str]]:
    """What a change step sets: the lifecycle stage, or one of the lead's fields."""
    stages = [(f"stage:{value}", _("Stage → %(stage)s") % {"stage": label})
              for value, label in LifecycleStage.choices]  # fmt: skip
    fields = [
        (f"field:{name}", str(FIELD_LABELS.get(name, name)))
        for name in sorted(CHANGEABLE_LEAD_FIELDS)
    ]
    return stages + fields


def blank_row(kind: str = StepKind.SEND_EMAIL) -> dict:
    row = dict.fromkeys(ROW_TEXT, "")
    row.update(kind=kind, wait_unit="days", weekdays=[], condition="opened_previous")
    return row


def row_from_step(step: SequenceStep) -> dict:
    """The editor row of a saved step."""
    row = blank_row(step.kind)
    config = step.config or {}
    if step.kind == StepKind.SEND_EMAIL:
        row["template"] = str(step.template_id or "")
    elif step.kind == StepKind.WAIT:
        seconds = config.get("seconds")
        if seconds is not None:
            unit = next(u for u, (size, _label) in WAIT_UNITS.items() if seconds % size == 0)
            row["wait_amount"], row["wait_unit"] = str(seconds // WAIT_UNITS[unit][0]), unit
        row["weekdays"] = [str(day) for day in config.get("weekdays") or []]
        window = config.get("window") or ["", ""]
        row["window_start"], row["window_end"] = window[0], window[1]
    elif step.kind == StepKind.BRANCH:
        condition = config.get("condition") or {}
        row["condition"] = condition.get("type", "")
        if row["condition"] == "stage_is":
            row["condition_stage"] = str(condition.get("value", ""))
        else:
            row["condition_value"] = str(condition.get("value", ""))
        row["condition_field"] = str(condition.get("field", ""))
        row["then"] = str(config.get("then", ""))
        row["else"] = str(config.get("else", ""))
    elif step.kind == StepKind.CREATE_TASK:
        row["title"] = config.get("title", "")
    elif step.kind == StepKind.CHANGE_FIELD:
        if "stage" in config:
            row["change"] = f"stage:{config['stage']}"
        else:
            row["change"] = f"field:{config.get('field', '')}"
            row["change_value"] = config.get("value", "")
    elif step.kind == StepKind.ENROL:
        row["sequence"] = str(config.get("sequence_id", ""))
    return row


def rows_from_post(data) -> list[dict]:
    try:
        count = min(int(data.get("step_count", 0)), MAX_ROWS)
    except ValueError:
        count = 0
    rows = []
    for index in range(count):
        prefix = f"s-{index}-"
        row = {name: data.get(prefix + name, "").strip() for name in ROW_TEXT}
        row["weekdays"] = data.getlist(prefix + "weekdays")
        rows.append(row)
    return rows


def _remap_targets(rows: list[dict], moved: dict[int, int | None]) -> None:
    """Keep branch targets on the same steps after rows moved: `moved` maps each old
    position to its new one (None: removed, the target is cleared)."""
    for row in rows:
        for key in ("then", "else"):
            if row.get(key, "").isdigit():
                new = moved.get(int(row[key]))
                row[key] = "" if new is None else str(new)


def apply_op(rows: list[dict], op: str, new_kind: str = "") -> list[dict]:
    """The editor's buttons: add:<kind>, up:<i>, down:<i>, remove:<i>."""
    action, _sep, raw = op.partition(":")
    rows = [dict(row) for row in rows]
    if action == "add":
        kind = new_kind if new_kind in StepKind.values else StepKind.SEND_EMAIL
        return [*rows, blank_row(kind)] if len(rows) < MAX_ROWS else rows
    if not raw.isdigit() or int(raw) >= len(rows):
        return rows
    index = int(raw)
    order = list(range(len(rows)))
    if action == "remove":
        order.pop(index)
    elif action == "up" and index > 0:
        order[index - 1], order[index] = order[index], order[index - 1]
    elif action == "down" and index < len(rows) - 1:
        order[index + 1], order[index] = order[index], order[index + 1]
    else:
        return rows
    moved: dict[int, int | None] = dict.fromkeys(range(len(rows)))
    moved.update({old: new for new, old in enumerate(order)})
    result = [rows[old] for old in order]
    _remap_targets(result, moved)
    return result


def _whole(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValidationError(_("Enter a whole number.")) from None


def row_to_step(row: dict, index: int) -> tuple[dict, dict[str, list[str]]]:
    """The step dict services.sequence_steps_save takes for the row at `index`, and
    the errors of the row's fields ({} when it could be built; the services still
    check the rules). Written as the services store it (a branch's "else" is the next
    step unless chosen, weekdays in order), so an unchanged row gives the same dict."""
    kind = row.get("kind", "")
    errors: dict[str, list[str]] = {}
    config: dict = {}
    step: dict = {"kind": kind, "config": config}

    def fail(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    if kind not in StepKind.values:
        fail("kind", _("Choose a kind of step."))
    elif kind == StepKind.SEND_EMAIL:
        if row["template"].isdigit():
            step["template_id"] = int(row["template"])
        else:
            fail("template", _("Choose a template."))
    elif kind == StepKind.WAIT:
        if row["wait_amount"]:
            try:
                amount = _whole(row["wait_amount"])
                if amount < 0:
                    raise ValidationError(_("A wait cannot be negative."))
                config["seconds"] = amount * WAIT_UNITS.get(row["wait_unit"], (86400, ""))[0]
            except ValidationError as exc:
                fail("wait_amount", exc.messages[0])
        if row["weekdays"]:
            config["weekdays"] = sorted({int(day) for day in row["weekdays"] if day.isdigit()})
        if row["window_start"] or row["window_end"]:
            if not (row["window_start"] and row["window_end"]):
                fail("window_end", _("A time window needs a start and an end."))
            else:
                config["window"] = [row["window_start"], row["window_end"]]
        if not config and not errors:
            fail("wait_amount", _("Enter how long to wait, or days and hours to wait for."))
    elif kind == StepKind.BRANCH:
        condition: dict = {"type": row["condition"]}
        inputs = CONDITIONS.get(row["condition"], (None, ("field", "value")))[1]
        if row["condition"] not in BRANCH_CONDITIONS:
            fail("condition", _("Choose a condition."))
        if "stage" in inputs:
            if row["condition_stage"] in LifecycleStage.values:
                condition["value"] = row["condition_stage"]
            else:
                fail("condition_stage", _("Choose a stage."))
        if "field" in inputs:
            if row["condition_field"]:
                condition["field"] = row["condition_field"]
            elif row["condition"] in CONDITIONS:
                fail("condition_field", _("Name the field."))
        if "value" in inputs:
            if row["condition"] == "score_at_least":
                try:
                    condition["value"] = _whole(row["condition_value"])
                except ValidationError as exc:
                    fail("condition_value", exc.messages[0])
            elif row["condition_value"] or row["condition"] in CONDITIONS:
                condition["value"] = row["condition_value"]
        config["condition"] = condition
        if row["then"].isdigit():
            config["then"] = int(row["then"])
        else:
            fail("then", _("Choose the step to go to."))
        config["else"] = int(row["else"]) if row["else"].isdigit() else index + 1
    elif kind == StepKind.CREATE_TASK:
        if row["title"]:
            config["title"] = row["title"]
        else:
            fail("title", _("Give the task a title."))
    elif kind == StepKind.CHANGE_FIELD:
        target, _sep, name = row["change"].partition(":")
        if target == "stage":
            config["stage"] = name
        elif target == "field" and name:
            config["field"], config["value"] = name, row["change_value"]
        else:
            fail("change", _("Choose what to change."))
    elif kind == StepKind.ENROL:
        if row["sequence"].isdigit():
            config["sequence_id"] = int(row["sequence"])
        else:
            fail("sequence", _("Choose a sequence."))
    return step, errors


def steps_from_rows(rows: list[dict]) -> tuple[list[dict], dict[int, dict[str, list[str]]]]:
    """All rows as service steps, and the errors by row index."""
    steps, errors = [], {}
    for index, row in enumerate(rows):
        step, row_errors = row_to_step(row, index)
        steps.append(step)
        if row_errors:
            errors[index] = row_errors
    return steps, errors
