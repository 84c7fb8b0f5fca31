"""Staff web UI of the handoff: the inside-sales queue (nearest SLA deadline first,
accept or reject in one click), one handoff (qualify, reassign), and the routing and
SLA settings. Thin: forms check shapes, pipeline.services decide."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.models import ADMIN_ROLES
from accounts.services import Origin
from accounts.web import error_messages, tenant_view
from leads.models import Channel
from leads.views.common import owner_choices
from pipeline import selectors, services
from pipeline.forms import (
    BantForm,
    ChecklistForm,
    ReassignForm,
    RejectForm,
    RuleForm,
    SettingsForm,
    TeamForm,
)
from pipeline.models import Handoff, RoutingRule, Task, Team

ANSWER_ROLES = services.HANDOFF_ROLES
QUEUE_SIZE = 200
VIEWS = ("mine", "unassigned", "all")


def _origin(request: HttpRequest) -> Origin:
    return Origin.from_request(request)


def _handoff_or_404(pk: int) -> Handoff:
    handoff = selectors.handoff_get(pk)
    if handoff is None:
        raise Http404
    return handoff


def _row(request: HttpRequest, handoff: Handoff, **extra) -> dict:
    origin = _origin(request)
    return {
        "handoff": handoff,
        "can_answer": handoff.status in Handoff.ACTIVE and services.can_answer(origin, handoff),
        "overdue": handoff.status == Handoff.Status.OPEN and handoff.deadline <= timezone.now(),
        "reject_form": RejectForm(prefix=f"h{handoff.pk}"),
        **extra,
    }


@tenant_view
def queue(request: HttpRequest) -> HttpResponse:
    view = request.GET.get("view", "mine")
    if view not in VIEWS:
        view = "mine"
    owner_id = request.user.id if view == "mine" else None
    waiting = selectors.handoff_queue(owner_id=owner_id)
    accepted = selectors.handoff_queue(owner_id=owner_id, statuses=(Handoff.Status.ACCEPTED,))
    if view == "unassigned":
        waiting = waiting.filter(owner__isnull=True)
        accepted = accepted.none()
    return TemplateResponse(
        request,
        "pipeline/queue.html",
        {
            "view": view,
            "rows": [_row(request, h) for h in waiting[:QUEUE_SIZE]],
            "accepted": list(accepted[:QUEUE_SIZE]),
            "is_admin": request.tenant_access.role in ADMIN_ROLES,
        },
    )


def _qualify_form(settings, data=None):
    if settings.checklist:
        return ChecklistForm(data, checklist=settings.checklist)
    return BantForm(data)


def _detail(request: HttpRequest, handoff: Handoff, **forms) -> HttpResponse:
    settings = services.handoff_settings_get(request.tenant.id)
    origin = _origin(request)
    return TemplateResponse(
        request,
        "pipeline/handoff.html",
        {
            **_row(request, handoff),
            "qualify_form": forms.get("qualify_form") or _qualify_form(settings),
            "reassign_form": forms.get("reassign_form")
            or ReassignForm(
                owner_choices=owner_choices(request.tenant),
                initial={"owner": handoff.owner_id},
            ),
            "reject_form": forms.get("reject_form") or RejectForm(prefix=f"h{handoff.pk}"),
            "can_reassign": handoff.status in Handoff.ACTIVE
            and services.can_reassign(origin, handoff),
            "history": list(selectors.lead_handoffs(handoff.lead_id).exclude(pk=handoff.pk)[:10]),
        },
        status=400 if forms else 200,
    )


@tenant_view(isolation_model=Handoff)
def handoff_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _detail(request, _handoff_or_404(pk))


def _answered(request: HttpRequest, handoff: Handoff, message: str) -> HttpResponse:
    if request.htmx:
        fresh = selectors.handoff_get(handoff.pk)
        return TemplateResponse(
            request, "pipeline/_queue_row.html", {"row": _row(request, fresh, done=message)}
        )
    messages.success(request, message)
    if request.POST.get("next") == "handoff":
        return redirect("pipeline:handoff", tenant=request.tenant.slug, pk=handoff.pk)
    return redirect("pipeline:queue", tenant=request.tenant.slug)


def _failed(request: HttpRequest, handoff: Handoff, exc: Exception, **forms) -> HttpResponse:
    errors = error_messages(exc)
    if request.htmx:
        return TemplateResponse(
            request, "pipeline/_queue_row.html", {"row": _row(request, handoff, errors=errors)}
        )
    for error in errors:
        messages.error(request, error)
    return (
        _detail(request, handoff, **forms)
        if forms
        else redirect("pipeline:handoff", tenant=request.tenant.slug, pk=handoff.pk)
    )


@tenant_view(roles=ANSWER_ROLES, isolation_model=Handoff)
@require_POST
def accept(request: HttpRequest, pk: int) -> HttpResponse:
    handoff = _handoff_or_404(pk)
    try:
        with transaction.atomic():
            services.handoff_accept(handoff=handoff, origin=_origin(request), channel=Channel.UI)
    except (ValidationError, PermissionDenied) as exc:
        return _failed(request, handoff, exc)
    return _answered(
        request, handoff, _("Accepted: %(lead)s is now SAL.") % {"lead": handoff.lead.display_name}
    )


@tenant_view(roles=ANSWER_ROLES, isolation_model=Handoff)
@require_POST
def reject(request: HttpRequest, pk: int) -> HttpResponse:
    handoff = _handoff_or_404(pk)
    form = RejectForm(request.POST, prefix=f"h{handoff.pk}")
    if not form.is_valid():
        return _failed(request, handoff, ValidationError(_("Choose a reason.")))
    try:
        with transaction.atomic():
            services.handoff_reject(
                handoff=handoff,
                origin=_origin(request),
                reason=form.cleaned_data["reason"],
                comment=form.cleaned_data["comment"],
                channel=Channel.UI,
            )
    except (ValidationError, PermissionDenied) as exc:
        return _failed(request, handoff, exc)
    return _answered(
        request,
        handoff,
        _("Rejected (%(reason)s): %(lead)s is now %(stage)s.")
        % {
            "reason": handoff.get_reject_reason_display(),
            "lead": handoff.lead.display_name,
            "stage": _("recycled to nurturing")
            if handoff.reject_reason in services.RECYCLE_REASONS
            else _("disqualified"),
        },
    )


@tenant_view(roles=ANSWER_ROLES, isolation_model=Handoff)
@require_POST
def qualify(request: HttpRequest, pk: int) -> HttpResponse:
    handoff = _handoff_or_404(pk)
    settings = services.handoff_settings_get(request.tenant.id)
    form = _qualify_form(settings, request.POST)
    if not form.is_valid():
        return _detail(request, handoff, qualify_form=form)
    data = form.cleaned_data
    try:
        with transaction.atomic():
            services.handoff_qualify(
                handoff=handoff,
                origin=_origin(request),
                handover_note=data["handover_note"],
                budget=data.get("budget", ""),
                authority=data.get("authority", ""),
                need=data.get("need", ""),
                timeline=data.get("timeline", ""),
                answers=form.answers() if isinstance(form, ChecklistForm) else None,
                channel=Channel.UI,
            )
    except (ValidationError, PermissionDenied) as exc:
        for error in error_messages(exc):
            form.add_error(None, error)
        return _detail(request, handoff, qualify_form=form)
    messages.success(
        request, _("Qualified: %(lead)s is now SQL.") % {"lead": handoff.lead.display_name}
    )
    return redirect("pipeline:handoff", tenant=request.tenant.slug, pk=handoff.pk)


@tenant_view(roles=ANSWER_ROLES, isolation_model=Handoff)
@require_POST
def reassign(request: HttpRequest, pk: int) -> HttpResponse:
    handoff = _handoff_or_404(pk)
    form = ReassignForm(request.POST, owner_choices=owner_choices(request.tenant))
    if not form.is_valid():
        return _detail(request, handoff, reassign_form=form)
    try:
        with transaction.atomic():
            services.handoff_reassign(
                handoff=handoff, origin=_origin(request), owner_id=form.cleaned_data["owner"]
            )
    except (ValidationError, PermissionDenied) as exc:
        for error in error_messages(exc):
            form.add_error(None, error)
        return _detail(request, handoff, reassign_form=form)
    messages.success(request, _("Reassigned."))
    return redirect("pipeline:handoff", tenant=request.tenant.slug, pk=handoff.pk)


# --- Settings: SLA, teams, routing rules ---------------------------------------------------------


def _team_choices() -> list[tuple[str, str]]:
    return [(str(team.pk), team.name) for team in selectors.team_list()]


@tenant_view(roles=ADMIN_ROLES)
def settings_page(request: HttpRequest) -> HttpResponse:
    settings = services.handoff_settings_get(request.tenant.id)
    initial = {
        "sla_hours": settings.sla_hours,
        "reminder_minutes": settings.reminder_minutes,
        "workday_start": settings.workday_start,
        "workday_end": settings.workday_end,
        "working_days": settings.working_days,
        "observe_holidays": settings.observe_holidays,
        "closed_dates": "\n".join(settings.closed_dates),
        "checklist": "\n".join(f"{i['key']}: {i['label']}" for i in settings.checklist),
        "default_team": settings.default_team_id,
    }
    status = 200
    if request.method == "POST":
        form = SettingsForm(request.POST, team_choices=_team_choices())
        if form.is_valid():
            data = dict(form.cleaned_data)
            data["default_team_id"] = data.pop("default_team")
            try:
                with transaction.atomic():
                    services.handoff_settings_update(
                        tenant_id=request.tenant.id, origin=_origin(request), **data
                    )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    name = "default_team" if field == "default_team_id" else field
                    form.add_error(name if name in form.fields else None, errors)
            else:
                messages.success(request, _("Saved."))
                return redirect("pipeline:settings", tenant=request.tenant.slug)
        status = 400
    else:
        form = SettingsForm(initial=initial, team_choices=_team_choices())
    teams = list(selectors.team_list())
    members = selectors.team_members([team.pk for team in teams])
    return TemplateResponse(
        request,
        "pipeline/settings.html",
        {
            "form": form,
            "teams": [(team, members[team.pk]) for team in teams],
            "rules": list(selectors.routing_rule_list()),
        },
        status=status,
    )


@tenant_view(roles=ADMIN_ROLES, isolation_model=Team)
def team_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    team = None
    if pk is not None:
        team = Team.objects.filter(pk=pk).first()
        if team is None:
            raise Http404
    staff = owner_choices(request.tenant)
    if request.method == "POST":
        form = TeamForm(request.POST, staff_choices=staff)
        if form.is_valid():
            try:
                with transaction.atomic():
                    services.team_save(
                        tenant_id=request.tenant.id,
                        origin=_origin(request),
                        team=team,
                        name=form.cleaned_data["name"],
                        manager_id=form.cleaned_data["manager"],
                        member_ids=form.cleaned_data["members"],
                    )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, _("Saved."))
                return redirect("pipeline:settings", tenant=request.tenant.slug)
    else:
        initial = {}
        if team is not None:
            initial = {
                "name": team.name,
                "manager": team.manager_id,
                "members": [m.user_id for m in selectors.team_members([team.pk])[team.pk]],
            }
        form = TeamForm(initial=initial, staff_choices=staff)
    return TemplateResponse(
        request,
        "pipeline/team_form.html",
        {"form": form, "team": team},
        status=400 if form.is_bound else 200,
    )


@tenant_view(roles=ADMIN_ROLES, isolation_model=Team)
@require_POST
def team_delete(request: HttpRequest, pk: int) -> HttpResponse:
    team = Team.objects.filter(pk=pk).first()
    if team is None:
        raise Http404
    services.team_delete(team=team, origin=_origin(request))
    messages.success(request, _("Deleted."))
    return redirect("pipeline:settings", tenant=request.tenant.slug)


@tenant_view(roles=ADMIN_ROLES, isolation_model=RoutingRule)
def rule_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    rule = None
    if pk is not None:
        rule = RoutingRule.objects.filter(pk=pk).first()
        if rule is None:
            raise Http404
    choices = {"staff_choices": owner_choices(request.tenant), "team_choices": _team_choices()}
    if request.method == "POST":
        form = RuleForm(request.POST, **choices)
        if form.is_valid():
            data = dict(form.cleaned_data)
            data["user_id"] = data.pop("user")
            data["team_id"] = data.pop("team")
            try:
                with transaction.atomic():
                    services.routing_rule_save(
                        tenant_id=request.tenant.id, origin=_origin(request), rule=rule, **data
                    )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, _("Saved."))
                return redirect("pipeline:settings", tenant=request.tenant.slug)
    else:
        initial = {}
        if rule is not None:
            initial = {
                "name": rule.name,
                "position": rule.position,
                "is_active": rule.is_active,
                "prefectures": rule.prefectures,
                "industries": ", ".join(rule.industries),
                "size_bands": rule.size_bands,
                "target": rule.target,
                "user": rule.user_id,
                "team": rule.team_id,
            }
        form = RuleForm(initial=initial, **choices)
    return TemplateResponse(
        request,
        "pipeline/rule_form.html",
        {"form": form, "rule": rule},
        status=400 if form.is_bound else 200,
    )


@tenant_view(roles=ADMIN_ROLES, isolation_model=RoutingRule)
@require_POST
def rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    rule = RoutingRule.objects.filter(pk=pk).first()
    if rule is None:
        raise Http404
    services.routing_rule_delete(rule=rule, origin=_origin(request))
    messages.success(request, _("Deleted."))
    return redirect("pipeline:settings", tenant=request.tenant.slug)


# --- Tasks ------------------------------------------------------------------------------------

TASK_VIEWS = ("mine", "unassigned")
TASK_PAGE = 200


@tenant_view
def tasks(request: HttpRequest) -> HttpResponse:
    """A person's open sales tasks (nurture steps and hand-made), the earliest due first;
    or the unassigned ones, which anyone may do."""
    view = request.GET.get("view", "mine")
    if view not in TASK_VIEWS:
        view = "mine"
    rows = selectors.open_tasks(assignee_id=request.user.id if view == "mine" else None)
    return TemplateResponse(
        request,
        "pipeline/tasks.html",
        {
            "view": view,
            "tasks": list(rows[:TASK_PAGE]),
            "today": timezone.localdate(),
            "can_work": request.tenant_access.role in services.TASK_ROLES,
        },
    )


@tenant_view(roles=services.TASK_ROLES, isolation_model=Task)
@require_POST
def task_done(request: HttpRequest, pk: int) -> HttpResponse:
    task = Task.objects.filter(pk=pk).first()
    if task is None:
        raise Http404
    try:
        with transaction.atomic():
            services.task_complete(task=task, origin=_origin(request))
    except (ValidationError, PermissionDenied) as exc:
        for error in error_messages(exc):
            messages.error(request, error)
    else:
        messages.success(request, _("Done: %(title)s") % {"title": task.title})
    view = request.POST.get("view")
    url = redirect("pipeline:tasks", tenant=request.tenant.slug).url
    return redirect(f"{url}?view={view}" if view in TASK_VIEWS else url)
