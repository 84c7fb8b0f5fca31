"""Every write to nurturing: sender identities, templates, sequences and their
versioned steps, enrolments. One function per use case, transactional.

Rules enforced here:
- Marketing, admins and owners write (campaigns.services.require_campaign_writer).
- Steps are versioned. Saving the steps of a sequence that has enrolments on its
  current version makes a new version; those enrolments go on with the version they
  joined (nothing sent twice, nobody skipped). A sequence without such enrolments
  has its steps replaced in place.
- A lead is in a sequence at most once at a time (the partial unique index decides
  under concurrency: INSERT … ON CONFLICT DO NOTHING). After finishing, a lead joins
  again only if the sequence allows re-enrolment.
- Pausing a sequence pauses its active enrolments; resuming resumes them.
- Leads reaching SQL or customer leave every sequence (exit reason recorded).
"""

import datetime
import re
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.services import Origin, audit_record
from accounts.tenancy import tenant_scope
from campaigns.models import (
    EmailTemplate,
    Enrolment,
    SenderIdentity,
    SendingSettings,
    Sequence,
    SequenceStep,
    StepKind,
)
from campaigns.nurture import render
from campaigns.nurture.timing import parse_clock, wait_config_clean
from campaigns.services import require_campaign_writer
from leads.models import CustomFieldDefinition, Lead, LifecycleStage
from leads.normalize import NormalizationError, fold, normalize_email
from leads.services.custom_fields import custom_value_clean

State = Enrolment.State
LIVE = [State.ACTIVE.value, State.PAUSED.value]

SENDER_FIELDS = frozenset({"from_name", "from_email", "reply_to", "postal_address"})
TEMPLATE_FIELDS = frozenset({"name", "subject", "html", "text"})
SEQUENCE_FIELDS = frozenset(
    {
        "name",
        "sender_id",
        "enrol_on_campaign_id",
        "enrol_on_recycled",
        "enrol_on_form_id",
        "enrol_on_stage",
        "enrol_on_segment_id",
        "allow_reenrolment",
    }
)
CHANGEABLE_LEAD_FIELDS = frozenset({"job_title", "department", "phone"})
BRANCH_CONDITIONS = frozenset(
    {
        "score_at_least",
        "stage_is",
        "field_equals",
        "opened_previous",
        "clicked_previous",
        "visited_page",
        "attended_webinar",
    }
)
#: The lead's own fields a field_equals branch compares (campaigns.nurture.dispatch._branch
#: reads these from the lead; any other name from the lead's custom fields).
BRANCH_LEAD_FIELDS = frozenset({"job_title", "department", "email", "family_name", "given_name"})
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def _check_fields(fields: dict, allowed: frozenset) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValidationError({key: [_("Unknown field.")] for key in unknown})


def _save(obj, origin: Origin, action: str, metadata: dict | None = None):
    obj.full_clean()
    obj.save()
    audit_record(
        tenant_id=obj.tenant_id, origin=origin, action=action, target=obj, metadata=metadata or {}
    )
    return obj


# --- Sender identities and templates ---------------------------------------------------------


def sender_identity_create(*, tenant_id: int, origin: Origin, **fields) -> SenderIdentity:
    """A sender needs a name, an address and a postal address (特定電子メール法)."""
    require_campaign_writer(origin)
    _check_fields(fields, SENDER_FIELDS)
    with tenant_scope(tenant_id):
        return _save(SenderIdentity(tenant_id=tenant_id, **fields), origin, "sender.created")


def sender_identity_update(*, sender: SenderIdentity, origin: Origin, **changes) -> SenderIdentity:
    require_campaign_writer(origin)
    _check_fields(changes, SENDER_FIELDS)
    with tenant_scope(sender.tenant_id):
        for key, value in changes.items():
            setattr(sender, key, value)
        return _save(sender, origin, "sender.updated", {"fields": sorted(changes)})


def _template_clean(template: EmailTemplate) -> None:
    errors = {}
    for field in ("subject", "html", "text"):
        try:
            render.parse(getattr(template, field))
        except render.TemplateSyntaxError as exc:
            errors[field] = [str(exc)]
    if "\n" in template.subject or "\r" in template.subject:
        errors.setdefault("subject", []).append(_("A subject is one line."))
    if errors:
        raise ValidationError(errors)


def email_template_create(*, tenant_id: int, origin: Origin, **fields) -> EmailTemplate:
    """Merge fields are checked when saved: a template that does not parse is refused."""
    require_campaign_writer(origin)
    _check_fields(fields, TEMPLATE_FIELDS)
    template = EmailTemplate(tenant_id=tenant_id, **fields)
    _template_clean(template)
    with tenant_scope(tenant_id):
        return _save(template, origin, "email_template.created")


def email_template_update(*, template: EmailTemplate, origin: Origin, **changes) -> EmailTemplate:
    require_campaign_writer(origin)
    _check_fields(changes, TEMPLATE_FIELDS)
    for key, value in changes.items():
        setattr(template, key, value)
    template.updated_at = timezone.now()
    _template_clean(template)
    with tenant_scope(template.tenant_id):
        return _save(template, origin, "email_template.updated", {"fields": sorted(changes)})


def sending_settings_get(tenant_id: int) -> SendingSettings:
    """The tenant's limits and quiet hours (defaults until changed)."""
    with tenant_scope(tenant_id):
        found = SendingSettings.objects.first()
        return found or SendingSettings(tenant_id=tenant_id)


def sending_settings_update(*, tenant_id: int, origin: Origin, **changes) -> SendingSettings:
    require_campaign_writer(origin)
    _check_fields(changes, frozenset({"per_minute", "per_day", "quiet_start", "quiet_end"}))
    if ("quiet_start" in changes) != ("quiet_end" in changes):
        raise ValidationError({"quiet_end": [_("Quiet hours need a start and an end.")]})
    for key in ("quiet_start", "quiet_end"):
        if changes.get(key) is not None:
            changes[key] = parse_clock(changes[key])
    with tenant_scope(tenant_id):
        current = sending_settings_get(tenant_id)
        for key, value in changes.items():
            setattr(current, key, value)
        return _save(current, origin, "sending_settings.updated", {"fields": sorted(changes)})


# --- Sequences and steps --------------------------------------------------------------------


def sequence_create(*, tenant_id: int, origin: Origin, **fields) -> Sequence:
    require_campaign_writer(origin)
    _check_fields(fields, SEQUENCE_FIELDS)
    with tenant_scope(tenant_id):
        return _save(Sequence(tenant_id=tenant_id, **fields), origin, "sequence.created")


def _no_sender() -> ValidationError:
    return ValidationError({"sender": [_("Choose a sender: an active sequence needs one.")]})


def sequence_update(*, sequence: Sequence, origin: Origin, **changes) -> Sequence:
    """An active sequence keeps a sender (its mails cannot go out without one)."""
    require_campaign_writer(origin)
    _check_fields(changes, SEQUENCE_FIELDS)
    with tenant_scope(sequence.tenant_id):
        for key, value in changes.items():
            setattr(sequence, key, value)
        if sequence.status == Sequence.Status.ACTIVE and sequence.sender_id is None:
            raise _no_sender()
        sequence.updated_at = timezone.now()
        return _save(sequence, origin, "sequence.updated", {"fields": sorted(changes)})


class StepInvalid(ValidationError):
    """A step that cannot be saved. `index` (0-based) and `field` ("kind", "template_id",
    "config", "config.then", …) name the bad part, so the API can answer per step."""

    def __init__(self, message: str, *, index: int, field: str):
        super().__init__(message)
        self.index, self.field = index, field


def _step_clean(tenant_id: int, index: int, count: int, raw: dict) -> SequenceStep:
    kind = raw.get("kind")
    config = raw.get("config") or {}
    n = {"n": index + 1}

    def invalid(message: str, field: str) -> StepInvalid:
        return StepInvalid(message, index=index, field=field)

    if kind not in StepKind.values:
        raise invalid(_("Step %(n)d: not a step kind.") % n, "kind")
    if not isinstance(config, dict):
        raise invalid(_("Step %(n)d: settings are an object.") % n, "config")

    def target(value, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
            raise invalid(
                _("Step %(n)d: a branch goes to a step of this sequence.") % n, f"config.{field}"
            )
        if value <= index:
            # Only forward: a sequence always ends, no loop can mail someone forever.
            raise invalid(_("Step %(n)d: a branch goes to a later step.") % n, f"config.{field}")
        return value

    template = None
    if kind == StepKind.SEND_EMAIL:
        template = raw.get("template")
        if template is None and raw.get("template_id") is not None:
            template = EmailTemplate.objects.filter(pk=raw["template_id"]).first()
        if template is None:
            raise invalid(_("Step %(n)d: choose a template.") % n, "template_id")
        config = {}
    elif kind == StepKind.WAIT:
        try:
            config = wait_config_clean(config)
        except ValidationError as exc:
            raise invalid(
                _("Step %(n)d: %(error)s") % {**n, "error": " ".join(exc.messages)}, "config"
            ) from None
    elif kind == StepKind.BRANCH:
        condition = config.get("condition") or {}
        if not isinstance(condition, dict) or condition.get("type") not in BRANCH_CONDITIONS:
            raise invalid(_("Step %(n)d: not a branch condition.") % n, "config.condition")
        if condition["type"] == "visited_page" and not str(condition.get("value") or "").strip():
            raise invalid(
                _("Step %(n)d: give the part of the page address to look for.") % n,
                "config.condition.value",
            )
        if condition["type"] in ("score_at_least", "stage_is", "field_equals"):
            condition = _branch_condition_clean(condition, index)
        config = {
            "condition": condition,
            "then": target(config.get("then"), "then"),
            "else": target(config.get("else", index + 1), "else"),
        }
    elif kind == StepKind.CREATE_TASK:
        title = str(config.get("title") or "").strip()
        if not title:
            raise invalid(_("Step %(n)d: a task needs a title.") % n, "config.title")
        due = config.get("due_in_days")
        config = {"title": title[:200]}
        if due not in (None, ""):
            # Days after the step runs (the tenant's calendar days); none: no due date.
            if isinstance(due, bool) or not isinstance(due, int) or not 0 <= due <= 365:
                raise invalid(
                    _("Step %(n)d: a task is due 0 to 365 days later.") % n, "config.due_in_days"
                )
            config["due_in_days"] = due
    elif kind == StepKind.CHANGE_FIELD:
        if "stage" in config:
            if config["stage"] not in LifecycleStage.values:
                raise invalid(_("Step %(n)d: not a lifecycle stage.") % n, "config.stage")
            config = {"stage": config["stage"]}
        elif config.get("field") in CHANGEABLE_LEAD_FIELDS:
            config = {"field": config["field"], "value": str(config.get("value", ""))[:200]}
        else:
            raise invalid(_("Step %(n)d: not a field to change.") % n, "config.field")
    elif kind == StepKind.ENROL:
        other = config.get("sequence_id")
        if (
            isinstance(other, bool)
            or not isinstance(other, int)
            or not Sequence.objects.filter(pk=other).exists()
        ):
            raise invalid(_("Step %(n)d: choose a sequence.") % n, "config.sequence_id")
        config = {"sequence_id": other}
    else:
        config = {}
    return SequenceStep(tenant_id=tenant_id, kind=kind, template=template, config=config)


def _branch_condition_clean(condition: dict, index: int) -> dict:
    """A score, stage or field condition as the dispatcher compares it, or StepInvalid
    naming config.condition.value or .field: one it could never take is not saved.
    A score threshold is a whole number (given as one or as digits; it may be below
    zero, since rules take points away too); a stage is a lifecycle stage; a field is
    one of BRANCH_LEAD_FIELDS or a key of the tenant's custom fields, and the value is
    written as that field holds its values (width-folded text, a lower-case address,
    a custom field's number, date or yes/no as custom_value_clean stores them)."""
    kind, value = condition["type"], condition.get("value")
    n = {"n": index + 1}

    def invalid(message: str, field: str = "config.condition.value") -> StepInvalid:
        return StepInvalid(message, index=index, field=field)

    if kind == "score_at_least":
        if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(fold(value)):
            value = int(fold(value))
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(_("Step %(n)d: the score to reach is a whole number.") % n)
        return {"type": kind, "value": value}
    if kind == "stage_is":
        if not isinstance(value, str) or value not in LifecycleStage.values:
            raise invalid(_("Step %(n)d: not a lifecycle stage.") % n)
        return {"type": kind, "value": LifecycleStage(value).value}
    name = condition.get("field")
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise invalid(_("Step %(n)d: name the field to compare.") % n, "config.condition.field")
    if name in BRANCH_LEAD_FIELDS:
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise invalid(_("Step %(n)d: the value to compare is text.") % n)
        if name != "email":
            return {"type": kind, "field": name, "value": fold(value)}
        try:
            return {"type": kind, "field": name, "value": normalize_email(value)}
        except NormalizationError:
            error = _("Enter a valid email address.")
            raise invalid(_("Step %(n)d: %(error)s") % {**n, "error": error}) from None
    definition = CustomFieldDefinition.objects.filter(key=name).first()
    if definition is None:
        raise invalid(_("Step %(n)d: not a field of leads.") % n, "config.condition.field")
    if definition.type == CustomFieldDefinition.Type.MULTI_CHOICE:
        raise invalid(
            _("Step %(n)d: a multiple-choice field cannot be compared with one value.") % n,
            "config.condition.field",
        )
    if value is None or (isinstance(value, str) and not value.strip()):
        # An empty custom field holds null (or no key), never "": no lead would match.
        raise invalid(_("Step %(n)d: give the value the field must equal.") % n)
    try:
        value = custom_value_clean(definition, value)
    except ValueError as exc:
        raise invalid(_("Step %(n)d: %(error)s") % {**n, "error": exc}) from None
    return {"type": kind, "field": name, "value": value}


class StepsInvalid(ValidationError):
    """sequence_steps_save's refusal: {"steps": [message]}, and `step` the StepInvalid
    that names the step and field (None for the list as a whole)."""

    def __init__(self, message: str, step: StepInvalid | None = None):
        super().__init__({"steps": [message]})
        self.step = step


def sequence_steps_save(*, sequence: Sequence, steps: list[dict], origin: Origin) -> int:
    """Replace the steps of a sequence; returns the version now current. When live
    enrolments run the current version, the steps become a new version and those
    enrolments keep theirs (see the module docstring)."""
    require_campaign_writer(origin)
    if not isinstance(steps, list) or not steps:
        raise StepsInvalid(_("A sequence has at least one step."))
    if len(steps) > 100:
        raise StepsInvalid(_("A sequence has at most 100 steps."))
    tenant_id = sequence.tenant_id
    with tenant_scope(tenant_id):
        sequence = Sequence.objects.select_for_update().get(pk=sequence.pk)
        try:
            built = [_step_clean(tenant_id, i, len(steps), raw) for i, raw in enumerate(steps)]
        except StepInvalid as exc:
            raise StepsInvalid(exc.messages[0], exc) from None
        in_use = Enrolment.objects.filter(sequence=sequence, version=sequence.version).exists()
        if in_use:
            sequence.version += 1
            sequence.updated_at = timezone.now()
            sequence.save(update_fields=["version", "updated_at"])
        else:
            SequenceStep.objects.filter(sequence=sequence, version=sequence.version).delete()
        for order, step in enumerate(built):
            step.sequence, step.version, step.order = sequence, sequence.version, order
        SequenceStep.objects.bulk_create(built)
        audit_record(
            tenant_id=tenant_id,
            origin=origin,
            action="sequence.steps_saved",
            target=sequence,
            metadata={"version": sequence.version, "steps": len(built)},
        )
        return sequence.version


def sequence_set_status(*, sequence: Sequence, status: str, origin: Origin) -> Sequence:
    """Activate, pause or resume. Pausing pauses the active enrolments (their due time
    kept); activating again resumes them. Activating needs at least one step and a
    sender (without one every mail of the sequence would fail at sending)."""
    require_campaign_writer(origin)
    if status not in Sequence.Status.values:
        raise ValidationError({"status": [_("Not a sequence status.")]})
    with tenant_scope(sequence.tenant_id):
        sequence = Sequence.objects.select_for_update().get(pk=sequence.pk)
        if status == sequence.status:
            return sequence
        if status == Sequence.Status.DRAFT:
            raise ValidationError({"status": [_("A sequence cannot go back to draft.")]})
        if status == Sequence.Status.ACTIVE:
            if not SequenceStep.objects.filter(
                sequence=sequence, version=sequence.version
            ).exists():
                raise ValidationError({"status": [_("Add steps before activating.")]})
            if sequence.sender_id is None:
                raise _no_sender()
            Enrolment.objects.filter(sequence=sequence, state=State.PAUSED).update(
                state=State.ACTIVE
            )
        else:
            Enrolment.objects.filter(sequence=sequence, state=State.ACTIVE).update(
                state=State.PAUSED
            )
        before = sequence.status
        sequence.status = status
        sequence.updated_at = timezone.now()
        sequence.save(update_fields=["status", "updated_at"])
        audit_record(
            tenant_id=sequence.tenant_id,
            origin=origin,
            action="sequence.status_changed",
            target=sequence,
            metadata={"from": before, "to": status},
        )
        return sequence


# --- Enrolments -----------------------------------------------------------------------------


def enrol_insert(
    *,
    tenant_id: int,
    sequence: Sequence,
    source: str,
    now: datetime.datetime,
    candidates: str,
    params: dict,
    again: str | None = None,
    since: datetime.datetime | None = None,
) -> list[int]:
    """The one enrolment INSERT … SELECT every path uses (by hand, campaign, form,
    stage, recycled, segment): the leads `candidates` yields (SQL with a `lead_id`
    column, of the tenant's leads; `params` named) enter `sequence`, due `now`, except
    a lead live in it (the partial unique index, so concurrent enrolments cannot
    double) and a lead that went through it before unless re-enrolment is allowed
    (`again`, SQL over the candidate row `c`, narrows when it is). `since`: leave out
    leads enrolled in it at or after that time (an event delivered twice enrols once).
    Returns the ids of the leads enrolled."""
    state = State.ACTIVE if sequence.status == Sequence.Status.ACTIVE else State.PAUSED
    again_sql = ("TRUE" if again is None else again) if sequence.allow_reenrolment else "FALSE"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Enrolment._meta.db_table}
                (tenant_id, lead_id, sequence_id, version, step_order, next_due_at,
                 state, exit_reason, source, enrolled_at)
            SELECT %(tenant)s, c.lead_id, %(sequence)s, %(version)s, 0, %(now)s,
                   %(state)s, '', %(source)s, %(now)s
            FROM ({candidates}) c
            WHERE NOT EXISTS (
                      SELECT 1 FROM {Enrolment._meta.db_table} done
                      WHERE done.tenant_id = %(tenant)s AND done.sequence_id = %(sequence)s
                        AND done.lead_id = c.lead_id
                        AND (NOT ({again_sql}) OR done.enrolled_at >= %(since)s))
            ORDER BY c.lead_id
            ON CONFLICT (tenant_id, sequence_id, lead_id)
                WHERE state IN ('active', 'paused') DO NOTHING
            RETURNING lead_id
            """,
            {
                **params,
                "tenant": tenant_id,
                "sequence": sequence.pk,
                "version": sequence.version,
                "now": now,
                "state": state,
                "source": source,
                "since": since or datetime.datetime.max.replace(tzinfo=datetime.UTC),
            },
        )
        return sorted(row[0] for row in cursor.fetchall())


def enrol_leads(
    *,
    tenant_id: int,
    sequence_id: int,
    lead_ids: Iterable[int],
    source: str = Enrolment.Source.MANUAL,
    now: datetime.datetime | None = None,
    origin: Origin | None = None,
    since: datetime.datetime | None = None,
) -> list[int]:
    """Enrol leads of the tenant in a sequence, due now; returns the ids of the leads
    enrolled. Leads already in it, leads of another tenant or missing, and leads that
    finished it when re-enrolment is off are left out. One statement, whatever the
    number of leads; the partial unique index settles concurrent enrolments. Leads
    without marketing consent are enrolled: the send step checks consent when it runs
    (consent may be given in between) and exits them then. `since`: see
    enrol_insert (the event handlers pass the event's time)."""
    if origin is not None:
        require_campaign_writer(origin)
    if source not in Enrolment.Source.values:
        raise ValidationError({"source": [_("Not an enrolment source.")]})
    ids = sorted({int(lead_id) for lead_id in lead_ids})
    now = now or timezone.now()
    with tenant_scope(tenant_id):
        sequence = Sequence.objects.filter(pk=sequence_id).first()
        if sequence is None:
            raise ValidationError({"sequence": [_("No such sequence.")]}, code="not_found")
        if sequence.status == Sequence.Status.DRAFT:
            raise ValidationError({"sequence": [_("Activate the sequence first.")]})
        if not ids:
            return []
        return enrol_insert(
            tenant_id=tenant_id,
            sequence=sequence,
            source=source,
            now=now,
            candidates=f"""
                SELECT lead.id AS lead_id FROM {Lead._meta.db_table} lead
                WHERE lead.tenant_id = %(tenant)s AND lead.id = ANY(%(ids)s)""",
            params={"ids": ids},
            since=since,
        )


def _enrol_in_active(
    *,
    tenant_id: int,
    trigger: dict,
    lead_ids: list[int],
    source: str,
    since: datetime.datetime | None = None,
) -> list[int]:
    """Enrol the leads in each active sequence of the tenant whose fields match
    `trigger` ({"enrol_on_form_id": 7})."""
    enrolled: list[int] = []
    with tenant_scope(tenant_id):
        for sequence_id in Sequence.objects.filter(
            status=Sequence.Status.ACTIVE, **trigger
        ).values_list("id", flat=True):
            enrolled += enrol_leads(
                tenant_id=tenant_id,
                sequence_id=sequence_id,
                lead_ids=lead_ids,
                source=source,
                since=since,
            )
    return enrolled


def enrol_on_campaign(*, tenant_id: int, campaign_id: int, lead_ids: list[int]) -> list[int]:
    """Leads that joined a campaign enter the active sequences that enrol its members."""
    return _enrol_in_active(
        tenant_id=tenant_id,
        trigger={"enrol_on_campaign_id": campaign_id},
        lead_ids=lead_ids,
        source=Enrolment.Source.CAMPAIGN,
    )


def enrol_on_form(
    *, tenant_id: int, form_id: int, lead_id: int, since: datetime.datetime | None = None
) -> list[int]:
    """A lead that submitted a capture form enters the active sequences that enrol the
    form's submitters. Each submission is a new chance only where re-enrolment is
    allowed; `since` (the event's time) keeps a redelivered event from enrolling the
    lead a second time."""
    return _enrol_in_active(
        tenant_id=tenant_id,
        trigger={"enrol_on_form_id": form_id},
        lead_ids=[lead_id],
        source=Enrolment.Source.FORM,
        since=since,
    )


def _finish(enrolments, state: str, reason: str = "") -> int:
    return enrolments.update(
        state=state, exit_reason=reason, finished_at=timezone.now(), next_due_at=None
    )


def lead_exit_sequences(
    *, tenant_id: int, lead_id: int, reason: str, keep: list[int] | None = None
) -> int:
    """The lead leaves every sequence it is active or paused in (but the enrolments
    in `keep`), for `reason`: it became SQL or a customer, unsubscribed, complained,
    or its address bounced. Returns how many enrolments ended."""
    with tenant_scope(tenant_id):
        live = Enrolment.objects.filter(lead_id=lead_id, state__in=LIVE)
        if keep:
            live = live.exclude(pk__in=keep)
        return _finish(live, State.EXITED, reason)


def lead_stage_changed(
    *, tenant_id: int, lead_id: int, to_stage: str, since: datetime.datetime | None = None
) -> None:
    """A lead changed lifecycle stage: SQL or customer leave every sequence; recycled
    leads ("not now" from sales) enter the sequences that take them; a lead reaching a
    stage enters the sequences that enrol on that stage. Idempotent (the event may be
    delivered twice; `since`, the event's time, keeps a sequence that allows
    re-enrolment from taking the lead twice for one change)."""
    exits = {
        LifecycleStage.SQL: Enrolment.ExitReason.BECAME_SQL,
        LifecycleStage.CUSTOMER: Enrolment.ExitReason.BECAME_CUSTOMER,
    }
    with tenant_scope(tenant_id):
        if to_stage in exits:
            lead_exit_sequences(tenant_id=tenant_id, lead_id=lead_id, reason=exits[to_stage])
        if to_stage == LifecycleStage.RECYCLED:
            _enrol_in_active(
                tenant_id=tenant_id,
                trigger={"enrol_on_recycled": True},
                lead_ids=[lead_id],
                source=Enrolment.Source.RECYCLED,
                since=since,
            )
        _enrol_in_active(
            tenant_id=tenant_id,
            trigger={"enrol_on_stage": to_stage},
            lead_ids=[lead_id],
            source=Enrolment.Source.STAGE,
            since=since,
        )


def enrolment_set_state(*, enrolment: Enrolment, action: str, origin: Origin) -> Enrolment:
    """pause / resume / remove (exit, removed by hand) / replied (exit, replied: reply
    detection, or a person marking it through the API)."""
    require_campaign_writer(origin)
    with tenant_scope(enrolment.tenant_id):
        enrolment = Enrolment.objects.select_for_update().get(pk=enrolment.pk)
        live = enrolment.state in LIVE
        if action == "pause" and enrolment.state == State.ACTIVE:
            enrolment.state = State.PAUSED
        elif action == "resume" and enrolment.state == State.PAUSED:
            enrolment.state = State.ACTIVE
        elif action in ("remove", "replied") and live:
            enrolment.state = State.EXITED
            enrolment.exit_reason = (
                Enrolment.ExitReason.REMOVED if action == "remove" else Enrolment.ExitReason.REPLIED
            )
            enrolment.finished_at = timezone.now()
            enrolment.next_due_at = None
        elif action not in ("pause", "resume", "remove", "replied"):
            raise ValidationError({"action": [_("Not an enrolment action.")]})
        else:
            raise ValidationError({"state": [_("Not possible in this state.")]})
        enrolment.save(update_fields=["state", "exit_reason", "finished_at", "next_due_at"])
        audit_record(
            tenant_id=enrolment.tenant_id,
            origin=origin,
            action=f"enrolment.{action}",
            target=enrolment,
        )
        return enrolment


def lead_unsubscribe(*, tenant_id: int, lead_id: int, message_id: int | None = None) -> bool:
    """The one-click (RFC 8058) or confirmed unsubscribe of a mail's link: takes effect
    at once. An `email_unsubscribed` activity withdraws marketing consent and puts the
    address on the suppression list (leads services); the lead leaves its sequences.
    Idempotent: a lead already withdrawn and suppressed gets no second activity.
    False when the lead no longer exists."""
    from leads.models import ActivityType, Channel, ConsentStatus, Suppression
    from leads.services import activity_record, email_clean

    with tenant_scope(tenant_id):
        lead = Lead.objects.filter(pk=lead_id).first()
        if lead is None:
            return False
        address = email_clean(lead.email or "")
        done = lead.email_consent == ConsentStatus.WITHDRAWN and (
            not address or Suppression.objects.filter(email=address).exists()
        )
        if not done:
            activity_record(
                tenant_id=tenant_id,
                type=ActivityType.EMAIL_UNSUBSCRIBED,
                lead=lead,
                channel=Channel.TRACKING,
                properties={"message_id": message_id} if message_id else {},
            )
        lead_exit_sequences(
            tenant_id=tenant_id, lead_id=lead_id, reason=Enrolment.ExitReason.UNSUBSCRIBED
        )
        return True


def mail_event_record(
    *, tenant_id: int, lead_id: int, message_id: int, kind: str, url: str = ""
) -> bool:
    """An open (pixel) or click (redirect) of a nurture mail becomes an activity of the
    lead (email_opened / email_clicked: scoring and branches read them). The token
    was signed for this tenant, lead and message; a lead or message that no longer
    exists records nothing. False when nothing was recorded."""
    from campaigns.models import OutgoingMessage
    from leads.models import ActivityType, Channel
    from leads.services import activity_record

    types = {"opened": ActivityType.EMAIL_OPENED, "clicked": ActivityType.EMAIL_CLICKED}
    with tenant_scope(tenant_id):
        lead = Lead.objects.filter(pk=lead_id).first()
        message = (
            OutgoingMessage.objects.filter(pk=message_id, lead_id=lead_id)
            .values("enrolment__sequence_id")
            .first()
        )
        if lead is None or message is None:
            return False
        properties = {"message_id": message_id, "sequence_id": message["enrolment__sequence_id"]}
        if url:
            properties["url"] = url
        activity_record(
            tenant_id=tenant_id,
            type=types[kind],
            lead=lead,
            channel=Channel.TRACKING,
            properties=properties,
        )
        return True


# --- Deleting; previews and test sends; the provider's bounce and complaint reports -----------


def _delete_unless_used(obj, *, field: str, used_by, action: str, metadata: dict, origin: Origin):
    """Delete `obj` (audited) unless sequences use it; `used_by` is their queryset."""
    require_campaign_writer(origin)
    with tenant_scope(obj.tenant_id):
        used = list(used_by.values_list("name", flat=True)[:5])
        if used:
            raise ValidationError(
                {field: [_("Used by sequences: %(names)s.") % {"names": ", ".join(used)}]}
            )
        audit_record(
            tenant_id=obj.tenant_id, origin=origin, action=action, target=obj, metadata=metadata
        )
        obj.delete()


def sender_identity_delete(*, sender: SenderIdentity, origin: Origin) -> None:
    """A sender that a sequence uses stays: its mails name it. Change the sequences first."""
    _delete_unless_used(
        sender,
        field="sender",
        used_by=Sequence.objects.filter(sender=sender),
        action="sender.deleted",
        metadata={"from_email": sender.from_email},
        origin=origin,
    )


def email_template_delete(*, template: EmailTemplate, origin: Origin) -> None:
    """A template that a step uses (any version: older versions still run) stays."""
    _delete_unless_used(
        template,
        field="template",
        used_by=Sequence.objects.filter(
            id__in=SequenceStep.objects.filter(template=template).values("sequence_id")
        ),
        action="email_template.deleted",
        metadata={"name": template.name},
        origin=origin,
    )


def sequence_delete(*, sequence: Sequence, origin: Origin) -> None:
    """Only a sequence nobody has gone through is deleted: enrolments and their mails are
    history the statistics and the leads' timelines stand on (pause it instead). A
    sequence that another sequence's step enrols into stays too."""
    require_campaign_writer(origin)
    with tenant_scope(sequence.tenant_id):
        sequence = Sequence.objects.select_for_update().get(pk=sequence.pk)
        if Enrolment.objects.filter(sequence=sequence).exists():
            raise ValidationError(
                {"sequence": [_("Leads have been enrolled in it: pause it instead.")]}
            )
        referring = list(
            Sequence.objects.filter(
                id__in=SequenceStep.objects.filter(
                    kind=StepKind.ENROL, config__sequence_id=sequence.pk
                ).values("sequence_id")
            )
            .exclude(pk=sequence.pk)
            .values_list("name", flat=True)[:5]
        )
        if referring:
            raise ValidationError(
                {
                    "sequence": [
                        _("Steps of these sequences enrol into it: %(names)s.")
                        % {"names": ", ".join(referring)}
                    ]
                }
            )
        audit_record(
            tenant_id=sequence.tenant_id,
            origin=origin,
            action="sequence.deleted",
            target=sequence,
            metadata={"name": sequence.name},
        )
        sequence.delete()


def _preview_mail(*, template: EmailTemplate, lead: Lead, sender: SenderIdentity, tenant):
    from campaigns.models import OutgoingMessage
    from campaigns.nurture.sending import build_email, unsubscribe_url

    # No outgoing row, no tracking; the unsubscribe link is a placeholder that
    # unsubscribes nobody (a colleague clicking it in a test mail must not opt the
    # lead whose data fills the template out).
    return build_email(
        outgoing=OutgoingMessage(),
        lead=lead,
        template=template,
        sender=sender,
        tenant=tenant,
        track=False,
        unsubscribe=unsubscribe_url("preview"),
    )


def email_template_render(
    *, template: EmailTemplate, lead: Lead, sender: SenderIdentity, tenant
) -> dict[str, str]:
    """The mail `lead` would get from `sender`: subject, plain text and HTML with the
    compliance footer (no tracking, a placeholder unsubscribe link)."""
    built = _preview_mail(template=template, lead=lead, sender=sender, tenant=tenant)
    alternatives = [content for content, mimetype in built.message.alternatives]
    return {
        "subject": built.subject,
        "text": built.message.body,
        "html": alternatives[0] if alternatives else "",
    }


def email_template_test_send(
    *,
    template: EmailTemplate,
    lead: Lead,
    sender: SenderIdentity,
    tenant,
    to: str,
    origin: Origin,
) -> str:
    """Send the mail `lead` would get to `to` (someone checking it), through the default
    mailer, its subject marked as a test. No outgoing row, no activity, no tracking:
    nothing counts it. Audited. Returns the Message-ID. The mail server refusing it is
    a ValidationError naming `to`."""
    import smtplib

    from django.core.validators import validate_email

    require_campaign_writer(origin)
    try:
        validate_email(to)
    except ValidationError:
        raise ValidationError({"to": [_("Enter a valid email address.")]}) from None
    built = _preview_mail(template=template, lead=lead, sender=sender, tenant=tenant)
    message = built.message
    message.to = [to]
    message.subject = _("[Test] %(subject)s") % {"subject": built.subject}
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as exc:
        raise ValidationError(
            {"to": [_("The mail server did not take the mail: %(error)s") % {"error": exc}]}
        ) from None
    with tenant_scope(template.tenant_id):
        audit_record(
            tenant_id=template.tenant_id,
            origin=origin,
            action="email_template.test_sent",
            target=template,
            metadata={"to": to, "lead_id": lead.id, "sender_id": sender.id},
        )
    return built.message_id


PROVIDER_BOUNCED = "bounced"
PROVIDER_COMPLAINED = "complained"


def mail_provider_event_record(
    *,
    tenant_id: int,
    message_id: int,
    event: str,
    recipient: str = "",
    detail: str = "",
    provider: str = "",
) -> bool:
    """The mail provider reports, after it took a mail, that it bounced (or was
    rejected) or that its recipient marked it as spam (campaigns.nurture.
    provider_webhooks).

    - bounced: the message is marked bounced, its address goes on the suppression list
      (bounced), an email_bounced activity is recorded and its enrolment exits
      (bounced), with every other sequence of the lead while the address is still
      its own, as when the mail server refuses it at sending.
    - complained: the address is suppressed (complained) and an email_unsubscribed
      activity withdraws the lead's marketing consent; the lead leaves its sequences
      (unsubscribed), as with the unsubscribe link. The message stays sent: it was
      delivered.

    The recipient the provider names must be the message's, else nothing is recorded.
    Idempotent: a provider retrying its webhook records nothing twice. False when
    nothing matched."""
    from campaigns.models import OutgoingMessage
    from leads.models import ActivityType, Channel, ConsentStatus, Suppression
    from leads.services import activity_record, email_clean, suppression_add

    if event not in (PROVIDER_BOUNCED, PROVIDER_COMPLAINED):
        raise ValueError(f"not a provider event: {event}")
    with tenant_scope(tenant_id):
        message = (
            OutgoingMessage.objects.select_for_update()
            .select_related("enrolment")
            .filter(pk=message_id)
            .first()
        )
        if message is None:
            return False
        if recipient and recipient.strip().lower() != message.to_email.strip().lower():
            return False
        lead = Lead.objects.filter(pk=message.lead_id).first()
        properties = {
            "message_id": message.id,
            "sequence_id": message.enrolment.sequence_id,
            "provider": provider[:50],
        }
        if detail:
            properties["error"] = detail[:500]
        if event == PROVIDER_COMPLAINED:
            suppression_add(
                tenant_id=tenant_id,
                email=message.to_email,
                reason=Suppression.Reason.COMPLAINED,
                note=detail[:500],
            )
            if lead is not None:
                if lead.email_consent != ConsentStatus.WITHDRAWN:
                    activity_record(
                        tenant_id=tenant_id,
                        type=ActivityType.EMAIL_UNSUBSCRIBED,
                        lead=lead,
                        channel=Channel.TRACKING,
                        properties={**properties, "reason": "complained"},
                    )
                lead_exit_sequences(
                    tenant_id=tenant_id, lead_id=lead.id, reason=Enrolment.ExitReason.UNSUBSCRIBED
                )
            return True
        first = message.status != OutgoingMessage.Status.BOUNCED
        if first:
            message.status = OutgoingMessage.Status.BOUNCED
            message.error = detail[:2000]
            message.save(update_fields=["status", "error"])
        suppression_add(
            tenant_id=tenant_id,
            email=message.to_email,
            reason=Suppression.Reason.BOUNCED,
            note=detail[:500],
        )
        if first and lead is not None:
            activity_record(
                tenant_id=tenant_id,
                type=ActivityType.EMAIL_BOUNCED,
                lead=lead,
                channel=Channel.TRACKING,
                properties=properties,
            )
        _finish(
            Enrolment.objects.filter(pk=message.enrolment_id, state__in=LIVE),
            State.EXITED,
            Enrolment.ExitReason.BOUNCED,
        )
        # The address takes no mail: while it is still the lead's, the lead leaves its
        # other sequences too (none of them could reach it).
        if lead is not None and email_clean(lead.email or "") == email_clean(message.to_email):
            lead_exit_sequences(
                tenant_id=tenant_id, lead_id=lead.id, reason=Enrolment.ExitReason.BOUNCED
            )
        return True
