"""Pipeline in the platform admin (every tenant's rows: the admin site runs each view in
the named escape, see accounts.admin_site). Handoffs, qualifications and settings are
read here; tenants change them in their own pages. Writes the admin does make (delete a
team or a rule, switch a rule, run the SLA check, mark tasks done or unassign them) go
through pipeline.services in the row's tenant scope."""

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts.admin.base import TENANT_SEARCH, ServiceErrorsAsMessages, origin_of
from pipeline import services
from pipeline.models import (
    Handoff,
    HandoffSettings,
    Qualification,
    RoutingRule,
    Task,
    Team,
    TeamMember,
)


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class QualificationInline(admin.StackedInline):
    model = Qualification
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Handoff)
class HandoffAdmin(ReadOnly):
    list_display = (
        "id", "lead", "owner", "status", "sla", "deadline", "reject_reason", "source_campaign",
        "tenant",
    )  # fmt: skip
    list_select_related = ("lead", "owner", "source_campaign", "tenant")
    list_filter = ("status", "sla", "reject_reason", "routed_by")
    search_fields = ("^lead__email", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    inlines = [QualificationInline]
    actions = ["run_sla_check"]
    show_full_result_count = False

    @admin.action(description=_("Run the SLA check (reminders, escalations) of their tenants"))
    def run_sla_check(self, request: HttpRequest, queryset: QuerySet[Handoff]) -> None:
        tenant_ids = sorted(set(queryset.values_list("tenant_id", flat=True)))
        reminded = breached = 0
        for tenant_id in tenant_ids:
            result = services.sla_check(tenant_id=tenant_id)
            reminded += result["reminded"]
            breached += result["breached"]
        self.message_user(
            request,
            _("%(reminded)s reminded, %(breached)s escalated.")
            % {"reminded": reminded, "breached": breached},
            messages.SUCCESS,
        )


class TeamMemberInline(admin.TabularInline):
    model = TeamMember
    extra = 0
    can_delete = False
    fields = ("user", "is_available", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Team)
class TeamAdmin(ServiceErrorsAsMessages, ReadOnly):
    list_display = ("name", "manager", "tenant")
    list_select_related = ("manager", "tenant")
    search_fields = ("^name", *TENANT_SEARCH)
    ordering = ("tenant", "name")
    inlines = [TeamMemberInline]

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_staff

    def delete_model(self, request: HttpRequest, obj: Team) -> None:
        services.team_delete(team=obj, origin=origin_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        with transaction.atomic():
            for team in queryset:
                self.delete_model(request, team)


@admin.register(RoutingRule)
class RoutingRuleAdmin(ServiceErrorsAsMessages, ReadOnly):
    list_display = ("name", "position", "is_active", "target", "user", "team", "tenant")
    list_select_related = ("user", "team", "tenant")
    list_filter = ("target", "is_active")
    search_fields = ("^name", *TENANT_SEARCH)
    ordering = ("tenant", "position", "id")
    actions = ["switch_off"]

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_staff

    def delete_model(self, request: HttpRequest, obj: RoutingRule) -> None:
        services.routing_rule_delete(rule=obj, origin=origin_of(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RoutingRule]) -> None:
        with transaction.atomic():
            for rule in queryset:
                self.delete_model(request, rule)

    @admin.action(description=_("Switch the selected rules off"))
    def switch_off(self, request: HttpRequest, queryset: QuerySet[RoutingRule]) -> None:
        rules = list(queryset)
        with transaction.atomic():
            for rule in rules:
                services.routing_rule_save(
                    tenant_id=rule.tenant_id, origin=origin_of(request), rule=rule, is_active=False
                )
        self.message_user(
            request,
            ngettext("%(n)s rule switched off.", "%(n)s rules switched off.", len(rules))
            % {"n": len(rules)},
            messages.SUCCESS,
        )


@admin.register(HandoffSettings)
class HandoffSettingsAdmin(ReadOnly):
    list_display = ("tenant", "sla_hours", "workday_start", "workday_end", "default_team")
    list_select_related = ("tenant", "default_team")
    search_fields = TENANT_SEARCH


class TaskDoneFilter(admin.SimpleListFilter):
    title = _("done")
    parameter_name = "done"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("no", _("Open")), ("yes", _("Done"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        if self.value() in ("no", "yes"):
            return queryset.filter(done_at__isnull=self.value() == "no")
        return queryset


@admin.register(Task)
class TaskAdmin(ServiceErrorsAsMessages, ReadOnly):
    """Read here; tenants make and do their tasks in their pages and the API. The
    actions go through the services (as the platform: any task may be done or freed)."""

    list_display = ("title", "lead", "assignee", "due_date", "source", "done_at", "tenant")
    list_select_related = ("lead", "assignee", "tenant")
    list_filter = (TaskDoneFilter, "source")
    search_fields = ("title", "^lead__email", *TENANT_SEARCH)
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    fields = (
        "tenant", "lead", "title", "assignee", "due_date", "source", "sequence",
        "enrolment_id", "step_id", "created_at", "created_by", "done_at", "done_by",
    )  # fmt: skip
    actions = ["mark_done", "unassign"]

    def _each(self, request: HttpRequest, queryset: QuerySet[Task], write) -> int:
        tasks = list(queryset)
        with transaction.atomic():
            for task in tasks:
                write(task)
        return len(tasks)

    @admin.action(description=_("Mark the selected tasks done"))
    def mark_done(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        origin = origin_of(request)
        n = self._each(
            request, queryset, lambda task: services.task_complete(task=task, origin=origin)
        )
        self.message_user(
            request,
            ngettext("%(n)s task done.", "%(n)s tasks done.", n) % {"n": n},
            messages.SUCCESS,
        )

    @admin.action(description=_("Unassign the selected open tasks"))
    def unassign(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        origin = origin_of(request)
        n = self._each(
            request,
            queryset.filter(done_at__isnull=True),
            lambda task: services.task_reassign(task=task, origin=origin, assignee_id=None),
        )
        self.message_user(
            request,
            ngettext("%(n)s task unassigned.", "%(n)s tasks unassigned.", n) % {"n": n},
            messages.SUCCESS,
        )
