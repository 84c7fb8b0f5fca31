"""Staff web UI of nurturing sequences: the list with figures, one sequence (its
statistics, steps and status), the builder (settings and the steps editor), and the
enrolments of a sequence (filter by state, enrol leads, pause/resume/remove).

Email templates, sender identities and sending settings: campaigns.nurture.web_mail;
what a step does, in one line: campaigns.nurture.labels.
Thin: forms shape the input, campaigns.nurture.services decides and writes,
campaigns.nurture.selectors reads.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from accounts.services import Origin
from accounts.web import error_messages, keyset_page, tenant_view
from campaigns.models import EmailTemplate, Enrolment, Sequence, StepKind
from campaigns.nurture import selectors, services
from campaigns.nurture.forms import (
    WAIT_UNITS,
    WEEKDAYS,
    SequenceSettingsForm,
    apply_op,
    change_choices,
    condition_choices,
    condition_inputs,
    row_from_step,
    rows_from_post,
    steps_from_rows,
)
from campaigns.nurture.labels import step_label
from campaigns.services import CAMPAIGN_WRITE_ROLES
from leads.models import LifecycleStage
from leads.selectors import lead_list, lead_search

WRITE_ROLES = CAMPAIGN_WRITE_ROLES
PAGE_SIZE = 50
PICKER_SIZE = 20
#: The editor input of the part of a step the services name (StepInvalid.field).
STEP_FIELD_INPUTS = {
    "kind": "kind",
    "template_id": "template",
    "config": "wait_amount",
    "config.condition": "condition",
    "config.condition.value": "condition_value",
    "config.condition.field": "condition_field",
    "config.then": "then",
    "config.else": "else",
    "config.title": "title",
    "config.field": "change",
    "config.stage": "change",
    "config.sequence_id": "sequence",
}


def can_write(request: HttpRequest) -> bool:
    return request.tenant_access.role in WRITE_ROLES


def _sequence_or_404(pk: int) -> Sequence:
    sequence = selectors.sequence_get(sequence_id=pk)
    if sequence is None:
        raise Http404
    return sequence


def id_page(queryset, cursor: str | None, size: int = PAGE_SIZE) -> tuple[list, str | None]:
    """A keyset page of a queryset ordered by descending id, after `cursor` (an id).
    Enrolments have no created_at for accounts.web.keyset_page; newest first by id
    reads the primary key backwards instead of sorting a big sequence's rows."""
    if cursor and cursor.isdigit():
        queryset = queryset.filter(pk__lt=int(cursor))
    items = list(queryset[: size + 1])
    return items[:size], (str(items[size - 1].pk) if len(items) > size else None)


def _sequence_names() -> dict[int, str]:
    return dict(Sequence.objects.order_by().values_list("id", "name")[:1000])


# --- Sequences -------------------------------------------------------------------------------


@tenant_view
def sequence_index(request: HttpRequest) -> HttpResponse:
    queryset = selectors.sequence_list()
    status = request.GET.get("status", "")
    if status in Sequence.Status.values:
        queryset = queryset.filter(status=status)
    page = keyset_page(queryset, request.GET.get("cursor"), size=PAGE_SIZE)
    stats = selectors.sequence_stats([sequence.pk for sequence in page.items])
    return TemplateResponse(
        request,
        "campaigns/nurture/sequences.html",
        {
            "rows": [{"sequence": s, "stats": stats[s.pk]} for s in page.items],
            "page": page,
            "status": status,
            "statuses": Sequence.Status.choices,
            "is_first_page": not request.GET.get("cursor"),
            "can_write": can_write(request),
        },
    )


@tenant_view(roles=WRITE_ROLES)
def sequence_create(request: HttpRequest) -> HttpResponse:
    form = SequenceSettingsForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                sequence = services.sequence_create(
                    tenant_id=request.tenant.id,
                    origin=Origin.from_request(request),
                    **form.service_fields(),
                )
        except ValidationError as exc:
            form.add_service_errors(exc.message_dict)
        else:
            messages.success(request, _("The sequence was created. Now add its steps."))
            return redirect(
                "campaigns:nurture_sequence_edit", tenant=request.tenant.slug, pk=sequence.pk
            )
    return TemplateResponse(
        request,
        "campaigns/nurture/sequence_new.html",
        {"form": form},
        status=400 if form.is_bound else 200,
    )


@tenant_view(isolation_model=Sequence)
def sequence_detail(request: HttpRequest, pk: int) -> HttpResponse:
    sequence = _sequence_or_404(pk)
    stats = selectors.sequence_stats_get(sequence.pk)
    names = _sequence_names()
    steps = selectors.sequence_steps(sequence)
    step_rows = []
    for step in selectors.email_steps_with_mail(sequence, stats):
        figures = stats.steps.get(step.pk) or selectors.MailFigures()
        step_rows.append({"step": step, "label": step_label(step), "figures": figures})
    return TemplateResponse(
        request,
        "campaigns/nurture/sequence.html",
        {
            "sequence": sequence,
            "stats": stats,
            "mail": stats.mail,
            "steps": [
                {"step": step, "label": step_label(step, names), "number": step.order + 1}
                for step in steps
            ],
            "step_stats": step_rows,
            "can_write": can_write(request),
        },
    )


@tenant_view(roles=WRITE_ROLES, isolation_model=Sequence)
@require_POST
def sequence_status(request: HttpRequest, pk: int) -> HttpResponse:
    sequence = _sequence_or_404(pk)
    status = request.POST.get("status", "")
    try:
        with transaction.atomic():
            services.sequence_set_status(
                sequence=sequence, status=status, origin=Origin.from_request(request)
            )
    except (ValidationError, PermissionDenied) as exc:
        for message in error_messages(exc):
            messages.error(request, message)
    else:
        if status == Sequence.Status.ACTIVE:
            messages.success(request, _("The sequence is active."))
        else:
            messages.success(request, _("The sequence is paused, and so are its enrolments."))
    return redirect("campaigns:nurture_sequence", tenant=request.tenant.slug, pk=sequence.pk)


# --- The builder -----------------------------------------------------------------------------


def _builder_context(request, sequence, form, rows, row_errors=None, errors=None) -> dict:
    row_errors = row_errors or {}
    count = len(rows)
    targets = [(str(i), _("Step %(n)d") % {"n": i + 1}) for i in range(count)]
    live_on_version = Enrolment.objects.filter(
        sequence=sequence, version=sequence.version, state__in=services.LIVE
    ).count()
    return {
        "sequence": sequence,
        "form": form,
        "rows": [
            {
                **row,
                "index": i,
                "number": i + 1,
                "errors": row_errors.get(i, {}),
                "row_errors": row_errors.get(i, {}).get("__all__", []),
                "condition_inputs": condition_inputs(row.get("condition", "")).split(),
            }
            for i, row in enumerate(rows)
        ],
        "step_count": count,
        "kinds": StepKind.choices,
        "templates": list(EmailTemplate.objects.order_by("name").values_list("id", "name")[:500]),
        "sequences": [(pk, name) for pk, name in _sequence_names().items() if pk != sequence.pk],
        "wait_units": [(unit, label) for unit, (_size, label) in WAIT_UNITS.items()],
        "weekdays": WEEKDAYS,
        "conditions": condition_choices(),
        "stages": LifecycleStage.choices,
        "changes": change_choices(),
        "targets": targets,
        "errors": errors or [],
        "live_on_version": live_on_version,
    }


def _steps_changed(sequence: Sequence, new_steps: list[dict]) -> bool:
    saved, _errors = steps_from_rows(
        [row_from_step(step) for step in selectors.sequence_steps(sequence)]
    )
    return saved != new_steps


def _settings_changes(sequence: Sequence, form: SequenceSettingsForm) -> dict:
    return {
        key: value
        for key, value in form.service_fields().items()
        if getattr(sequence, key) != value
    }


def _place_step_error(
    exc: services.StepsInvalid, rows: list[dict], row_errors: dict[int, dict[str, list[str]]]
) -> bool:
    """Put the services' refusal of a step on that step's input; False when it is
    about the steps as a whole."""
    step = exc.step
    if step is None or not 0 <= step.index < len(rows):
        return False
    name = STEP_FIELD_INPUTS.get(step.field, "__all__")
    row_errors.setdefault(step.index, {}).setdefault(name, []).extend(exc.messages)
    return True


@tenant_view(roles=WRITE_ROLES, isolation_model=Sequence)
def sequence_edit(request: HttpRequest, pk: int) -> HttpResponse:
    sequence = _sequence_or_404(pk)
    template = "campaigns/nurture/builder.html"
    if request.method != "POST":
        form = SequenceSettingsForm(initial=SequenceSettingsForm.initial_for(sequence))
        rows = [row_from_step(step) for step in selectors.sequence_steps(sequence)]
        return TemplateResponse(request, template, _builder_context(request, sequence, form, rows))
    form = SequenceSettingsForm(request.POST)
    rows = rows_from_post(request.POST)
    op = request.POST.get("op", "save")
    if op != "save":
        rows = apply_op(rows, op, request.POST.get("new_kind", ""))
        return TemplateResponse(request, template, _builder_context(request, sequence, form, rows))
    new_steps, row_errors = steps_from_rows(rows)
    errors: list[str] = []
    if form.is_valid() and not row_errors:
        origin = Origin.from_request(request)
        try:
            with transaction.atomic():
                changes = _settings_changes(sequence, form)
                if changes:
                    services.sequence_update(sequence=sequence, origin=origin, **changes)
                version = None
                if _steps_changed(sequence, new_steps):
                    version = services.sequence_steps_save(
                        sequence=sequence, steps=new_steps, origin=origin
                    )
        except services.StepsInvalid as exc:
            sequence.refresh_from_db()
            if not _place_step_error(exc, rows, row_errors):
                errors += exc.messages
        except ValidationError as exc:
            sequence.refresh_from_db()
            form.add_service_errors(exc.message_dict)
        else:
            if version is not None:
                messages.success(
                    request, _("The sequence was saved (steps: version %(v)d).") % {"v": version}
                )
            else:
                messages.success(request, _("The sequence was saved."))
            return redirect(
                "campaigns:nurture_sequence", tenant=request.tenant.slug, pk=sequence.pk
            )
    return TemplateResponse(
        request,
        template,
        _builder_context(request, sequence, form, rows, row_errors, errors),
        status=400,
    )


# --- Enrolments ------------------------------------------------------------------------------


def _enrolment_row(request: HttpRequest, enrolment: Enrolment, **extra) -> dict:
    kind = getattr(enrolment, "step_kind", None)
    if enrolment.state in services.LIVE and kind:
        label = str(StepKind(kind).label)
        template = getattr(enrolment, "step_template", None)
        at = f"{label}: {template}" if template else label
    else:
        at = ""
    return {
        "enrolment": enrolment,
        "step_number": enrolment.step_order + 1,
        "at": at,
        "can_write": can_write(request),
        **extra,
    }


@tenant_view(isolation_model=Sequence)
def enrolment_index(request: HttpRequest, pk: int) -> HttpResponse:
    sequence = _sequence_or_404(pk)
    state = request.GET.get("state", "")
    items, next_cursor = id_page(
        selectors.enrolment_list(sequence_id=sequence.pk, state=state), request.GET.get("cursor")
    )
    counts = selectors.enrolment_counts(sequence_id=sequence.pk)
    return TemplateResponse(
        request,
        "campaigns/nurture/enrolments.html",
        {
            "sequence": sequence,
            "rows": [_enrolment_row(request, e) for e in items],
            "next_cursor": next_cursor,
            "is_first_page": not request.GET.get("cursor"),
            "state": state,
            "states": [
                (value, label, counts.get(value, 0)) for value, label in Enrolment.State.choices
            ],
            "total": sum(counts.values()),
            "can_write": can_write(request),
        },
    )


@tenant_view(roles=WRITE_ROLES, isolation_model=Sequence)
def lead_picker(request: HttpRequest, pk: int) -> HttpResponse:
    """The enrol card's search results: leads to tick, those in the sequence marked."""
    sequence = _sequence_or_404(pk)
    q = request.GET.get("q", "").strip()
    leads = []
    if q:
        leads = list(lead_search(lead_list(), q).order_by("-created_at", "-id")[:PICKER_SIZE])
    live = set(
        Enrolment.objects.filter(
            sequence=sequence, lead_id__in=[lead.pk for lead in leads], state__in=services.LIVE
        ).values_list("lead_id", flat=True)
    )
    return TemplateResponse(
        request,
        "campaigns/nurture/_lead_picker.html",
        {"leads": [(lead, lead.pk in live) for lead in leads], "q": q},
    )


@tenant_view(roles=WRITE_ROLES, isolation_model=Sequence)
@require_POST
def enrol(request: HttpRequest, pk: int) -> HttpResponse:
    sequence = _sequence_or_404(pk)
    ids = [int(value) for value in request.POST.getlist("ids") if value.isdigit()]
    if not ids:
        messages.error(request, _("Select at least one lead."))
    else:
        try:
            with transaction.atomic():
                enrolled = services.enrol_leads(
                    tenant_id=request.tenant.id,
                    sequence_id=sequence.pk,
                    lead_ids=ids,
                    origin=Origin.from_request(request),
                )
        except (ValidationError, PermissionDenied) as exc:
            for message in error_messages(exc):
                messages.error(request, message)
        else:
            messages.success(
                request,
                ngettext("%(n)d lead enrolled.", "%(n)d leads enrolled.", len(enrolled))
                % {"n": len(enrolled)},
            )
            skipped = len(set(ids)) - len(enrolled)
            if skipped:
                messages.warning(
                    request,
                    ngettext(
                        "%(n)d lead was left out: already in the sequence, or finished it "
                        "and re-enrolment is off.",
                        "%(n)d leads were left out: already in the sequence, or finished it "
                        "and re-enrolment is off.",
                        skipped,
                    )
                    % {"n": skipped},
                )
    return redirect("campaigns:nurture_enrolments", tenant=request.tenant.slug, pk=sequence.pk)


@tenant_view(roles=WRITE_ROLES, isolation_model=Enrolment)
@require_POST
def enrolment_state(request: HttpRequest, pk: int) -> HttpResponse:
    enrolment = get_object_or_404(Enrolment.objects.all(), pk=pk)
    errors: list[str] = []
    try:
        with transaction.atomic():
            services.enrolment_set_state(
                enrolment=enrolment,
                action=request.POST.get("action", ""),
                origin=Origin.from_request(request),
            )
    except (ValidationError, PermissionDenied) as exc:
        errors = error_messages(exc)
    if request.htmx:
        fresh = selectors.enrolment_list(sequence_id=enrolment.sequence_id).get(pk=enrolment.pk)
        row = _enrolment_row(request, fresh, errors=errors, saved=not errors)
        return TemplateResponse(request, "campaigns/nurture/_enrolment_row.html", {"row": row})
    for message in errors:
        messages.error(request, message)
    return redirect(
        "campaigns:nurture_enrolments", tenant=request.tenant.slug, pk=enrolment.sequence_id
    )
