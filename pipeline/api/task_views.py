"""Sales tasks API.

GET     tasks/                   filter by assignee (id, me, none), done, lead, source,
                                 sequence, due_before; newest first, keyset pages
POST    tasks/                   a task made by hand on a lead
GET     tasks/<id>/              one task
POST    tasks/<id>/complete/     mark it done (once)
POST    tasks/<id>/reassign/     give it to someone else, or to nobody

Everyone in the tenant reads; the roles that work on tasks write
(pipeline.services.TASK_ROLES, checked again with who may touch which task by the
services).
"""

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import TenantScopedViewSet
from leads.api.pagination import CreatedPagination
from pipeline import services
from pipeline.api.filters import TaskFilter
from pipeline.api.serializers import (
    TaskCreateInputSerializer,
    TaskOutputSerializer,
    TaskReassignInputSerializer,
)
from pipeline.models import Task


@extend_schema_view(
    list=extend_schema(summary=_("Sales tasks, newest first")),
    retrieve=extend_schema(summary=_("One task")),
    create=extend_schema(
        summary=_("Create a task on a lead (by hand)"),
        request=TaskCreateInputSerializer,
        responses={201: TaskOutputSerializer},
    ),
    complete=extend_schema(
        summary=_("Mark the task done (its assignee, anyone if unassigned, or an admin)"),
        request=None,
        responses=TaskOutputSerializer,
    ),
    reassign=extend_schema(
        summary=_("Give the task to someone else, or to nobody"),
        request=TaskReassignInputSerializer,
        responses=TaskOutputSerializer,
    ),
)
class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    write_roles = services.TASK_ROLES
    serializer_class = TaskOutputSerializer
    filterset_class = TaskFilter
    pagination_class = CreatedPagination
    queryset = Task._base_manager.none()  # model for the schema and isolation tests
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self) -> QuerySet[Task]:
        return Task.objects.select_related("lead", "lead__company")

    def _answer(self, task: Task, code: int = status.HTTP_200_OK) -> Response:
        return Response(TaskOutputSerializer(self.get_queryset().get(pk=task.pk)).data, status=code)

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = TaskCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = services.task_create(
            tenant_id=self.tenant.id, origin=self.origin, **serializer.validated_data
        )
        return self._answer(task, status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"], filterset_class=None)
    def complete(self, request: Request, *args, **kwargs) -> Response:
        task = services.task_complete(task=self.get_object(), origin=self.origin)
        return self._answer(task)

    @action(detail=True, methods=["post"], filterset_class=None)
    def reassign(self, request: Request, *args, **kwargs) -> Response:
        task = self.get_object()
        serializer = TaskReassignInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = services.task_reassign(
            task=task, origin=self.origin, assignee_id=serializer.validated_data["assignee_id"]
        )
        return self._answer(task)
