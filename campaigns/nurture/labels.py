"""One line saying what a step of a sequence does, for the staff UI ("Wait: 3 days",
"Branch: Opened the previous email → step 5, else step 4")."""

from django.utils.translation import gettext as _

from campaigns.models import SequenceStep, StepKind
from campaigns.nurture.forms import CONDITIONS, WAIT_UNITS, WEEKDAYS
from leads.models import LifecycleStage


def _duration(seconds: int) -> str:
    for size, label in WAIT_UNITS.values():
        if seconds and seconds % size == 0:
            return f"{seconds // size} {label}"
    return _("no time")


def step_label(step: SequenceStep, sequence_names: dict[int, str] | None = None) -> str:
    """One line saying what a step does ("Wait 3 days", "Branch: opened … → step 4")."""
    config = step.config or {}
    kind = step.kind
    if kind == StepKind.SEND_EMAIL:
        name = step.template.name if step.template_id and step.template else ""
        return _("Send email: %(template)s") % {"template": name}
    if kind == StepKind.WAIT:
        parts = []
        if config.get("seconds"):
            parts.append(_duration(config["seconds"]))
        if config.get("weekdays"):
            days = dict(WEEKDAYS)
            parts.append(", ".join(str(days[d]) for d in config["weekdays"] if d in days))
        if config.get("window"):
            parts.append("–".join(config["window"]))
        return _("Wait: %(when)s") % {"when": " · ".join(parts)}
    if kind == StepKind.BRANCH:
        condition = config.get("condition") or {}
        label = CONDITIONS.get(condition.get("type"), (condition.get("type", ""), ()))[0]
        detail = " ".join(
            str(condition[key])
            for key in ("field", "value")
            if condition.get(key) not in (None, "")
        )
        return _("Branch: %(condition)s%(detail)s → step %(then)s, else step %(else)s") % {
            "condition": label,
            "detail": f" {detail}" if detail else "",
            "then": config.get("then", 0) + 1,
            "else": config.get("else", 0) + 1,
        }
    if kind == StepKind.CREATE_TASK:
        return _("Create a task: %(title)s") % {"title": config.get("title", "")}
    if kind == StepKind.CHANGE_FIELD:
        if "stage" in config:
            stage = dict(LifecycleStage.choices).get(config["stage"], config["stage"])
            return _("Set the stage to %(stage)s") % {"stage": stage}
        return _("Set %(field)s to “%(value)s”") % {
            "field": config.get("field", ""),
            "value": config.get("value", ""),
        }
    if kind == StepKind.ENROL:
        other = config.get("sequence_id")
        name = (sequence_names or {}).get(other, f"#{other}")
        return _("Enrol in %(sequence)s") % {"sequence": name}
    return str(StepKind(kind).label) if kind in StepKind.values else kind
