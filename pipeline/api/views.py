"""Handoff API.

GET               handoffs/                    the queue (filters below), keyset pages
GET               handoffs/<id>/               one handoff, with its qualification
POST              handoffs/<id>/accept/        accept (lead -> SAL)
POST              handoffs/<id>/reject/        reject with a reason (+ comment)
POST              handoffs/<id>/qualify/       qualify (lead -> SQL) with the record
POST              handoffs/<id>/reassign/      hand to someone else
GET               handoffs/feedback/           per source campaign: accepted, rejected
                                               by reason, SLA met/breached
GET/PATCH         handoff-settings/            the tenant's SLA, hours, checklist
CRUD              teams/                       inside-sales teams
CRUD              routing-rules/               ordered routing rules
"""

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import ADMIN_ONLY, TenantScopedAPIView, TenantScopedViewSet
from accounts.api.pagination import CursorPagination
from leads.models import Channel
from pipeline import selectors, services
from pipeline.api.pagination import QueuePagination, RulePagination
from pipeline.api.serializers import (
    FeedbackSerializer,
    HandoffOutputSerializer,
    HandoffSettingsSerializer,
    QualifyInputSerializer,
    ReassignInputSerializer,
    RejectInputSerializer,
    RoutingRuleInputSerializer,
    RoutingRuleSerializer,
    TeamInputSerializer,
    TeamOutputSerializer,
)
from pipeline.models import Handoff, HandoffSettings, RoutingRule, Team

STATUS_FILTER = OpenApiParameter(
    "status",
    OpenApiTypes.STR,
    description=_("open, accepted, qualified, rejected, or active (open and accepted; default)."),
)
OWNER_FILTER = OpenApiParameter(
    "owner", OpenApiTypes.STR, description=_("A user id, `me`, or `none` (unassigned).")
)
CAMPAIGN_FILTER = OpenApiParameter(
    "campaign", OpenApiTypes.INT, description=_("Handoffs of leads from this source campaign.")
)


def _int(value: str, field: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise exceptions.ValidationError({field: [_("Give a whole number.")]}) from None


@extend_schema_view(
    list=extend_schema(
        summary=_("The handoff queue: nearest SLA deadline first, then the highest score"),
        parameters=[STATUS_FILTER, OWNER_FILTER, CAMPAIGN_FILTER],
    ),
    retrieve=extend_schema(summary=_("One handoff")),
)
class HandoffViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    write_roles = services.HANDOFF_ROLES
    serializer_class = HandoffOutputSerializer
    pagination_class = QueuePagination
    queryset = Handoff._base_manager.none()
    isolation_model = Handoff

    def get_queryset(self) -> QuerySet[Handoff]:
        if self.action != "list":
            return selectors.handoff_list()
        params = self.request.query_params
        wanted = params.get("status", "active")
        if wanted == "active":
            statuses = tuple(Handoff.ACTIVE)
        elif wanted in Handoff.Status.values:
            statuses = (wanted,)
        else:
            raise exceptions.ValidationError({"status": [_("Not a handoff status.")]})
        queryset = selectors.handoff_queue(statuses=statuses)
        owner = params.get("owner")
        if owner == "me":
            queryset = queryset.filter(owner_id=getattr(self.request.user, "id", None))
        elif owner == "none":
            queryset = queryset.filter(owner__isnull=True)
        elif owner:
            queryset = queryset.filter(owner_id=_int(owner, "owner"))
        if params.get("campaign"):
            queryset = queryset.filter(source_campaign_id=_int(params["campaign"], "campaign"))
        return queryset

    def _answer(self, handoff: Handoff) -> Response:
        return Response(HandoffOutputSerializer(selectors.handoff_get(handoff.pk)).data)

    @extend_schema(summary=_("Accept: the lead becomes SAL"), request=None)
    @action(detail=True, methods=["post"])
    def accept(self, request: Request, *args, **kwargs) -> Response:
        handoff = self.get_object()
        services.handoff_accept(handoff=handoff, origin=self.origin, channel=Channel.API)
        return self._answer(handoff)

    @extend_schema(
        summary=_("Reject with a reason: “not now” recycles the lead, others disqualify it"),
        request=RejectInputSerializer,
    )
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, *args, **kwargs) -> Response:
        handoff = self.get_object()
        serializer = RejectInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.handoff_reject(
            handoff=handoff,
            origin=self.origin,
            reason=serializer.validated_data["reason"],
            comment=serializer.validated_data.get("comment", ""),
            channel=Channel.API,
        )
        return self._answer(handoff)

    @extend_schema(
        summary=_("Qualify: the lead becomes SQL, with the record and a hand-over note"),
        request=QualifyInputSerializer,
    )
    @action(detail=True, methods=["post"])
    def qualify(self, request: Request, *args, **kwargs) -> Response:
        handoff = self.get_object()
        serializer = QualifyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.handoff_qualify(
            handoff=handoff, origin=self.origin, channel=Channel.API, **serializer.validated_data
        )
        return self._answer(handoff)

    @extend_schema(summary=_("Reassign to another person"), request=ReassignInputSerializer)
    @action(detail=True, methods=["post"])
    def reassign(self, request: Request, *args, **kwargs) -> Response:
        handoff = self.get_object()
        serializer = ReassignInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.handoff_reassign(
            handoff=handoff, origin=self.origin, owner_id=serializer.validated_data["owner"]
        )
        return self._answer(handoff)

    @extend_schema(
        summary=_("Sales feedback per source campaign"),
        parameters=[CAMPAIGN_FILTER],
        responses=FeedbackSerializer(many=True),
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def feedback(self, request: Request, *args, **kwargs) -> Response:
        campaign = request.query_params.get("campaign")
        ids = [_int(campaign, "campaign")] if campaign else None
        return Response(
            FeedbackSerializer(selectors.handoff_feedback_by_campaign(ids), many=True).data
        )


class HandoffSettingsView(TenantScopedAPIView):
    write_roles = ADMIN_ONLY
    isolation_model = HandoffSettings

    @extend_schema(summary=_("The tenant's SLA settings"), responses=HandoffSettingsSerializer)
    def get(self, request: Request, *args, **kwargs) -> Response:
        return Response(
            HandoffSettingsSerializer(services.handoff_settings_get(self.tenant.id)).data
        )

    @extend_schema(
        summary=_("Change the SLA settings"),
        request=HandoffSettingsSerializer,
        responses=HandoffSettingsSerializer,
    )
    def patch(self, request: Request, *args, **kwargs) -> Response:
        serializer = HandoffSettingsSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if "checklist" in changes:
            changes["checklist"] = [dict(item) for item in changes["checklist"]]
        settings = services.handoff_settings_update(
            tenant_id=self.tenant.id, origin=self.origin, **changes
        )
        return Response(HandoffSettingsSerializer(settings).data)


@extend_schema_view(
    list=extend_schema(summary=_("Inside-sales teams")),
    retrieve=extend_schema(summary=_("One team")),
    create=extend_schema(summary=_("Create a team"), request=TeamInputSerializer),
    partial_update=extend_schema(summary=_("Change a team"), request=TeamInputSerializer),
    destroy=extend_schema(summary=_("Delete a team")),
)
class TeamViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    write_roles = ADMIN_ONLY
    serializer_class = TeamOutputSerializer
    pagination_class = CursorPagination
    queryset = Team._base_manager.none()
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Team]:
        return selectors.team_list()

    def get_serializer(self, *args, **kwargs):
        instances = args[0] if args else None
        if instances is not None:
            teams = instances if isinstance(instances, list) else [instances]
            kwargs.setdefault("context", self.get_serializer_context())
            kwargs["context"]["members"] = selectors.team_members([t.pk for t in teams])
        return super().get_serializer(*args, **kwargs)

    def _out(self, team: Team, code: int = status.HTTP_200_OK) -> Response:
        return Response(
            self.get_serializer(get_object_or_404(self.get_queryset(), pk=team.pk)).data,
            status=code,
        )

    def _save(self, request: Request, team: Team | None, partial: bool) -> Team:
        serializer = TeamInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        extra = {"manager_id": data["manager"]} if "manager" in data else {}
        return services.team_save(
            tenant_id=self.tenant.id,
            origin=self.origin,
            team=team,
            name=data.get("name"),
            member_ids=data.get("members"),
            **extra,
        )

    def create(self, request: Request, *args, **kwargs) -> Response:
        return self._out(self._save(request, None, False), status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        return self._out(self._save(request, self.get_object(), True))

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.team_delete(team=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary=_("Routing rules, in order")),
    retrieve=extend_schema(summary=_("One routing rule")),
    create=extend_schema(summary=_("Create a routing rule"), request=RoutingRuleInputSerializer),
    partial_update=extend_schema(
        summary=_("Change a routing rule"), request=RoutingRuleInputSerializer
    ),
    destroy=extend_schema(summary=_("Delete a routing rule")),
)
class RoutingRuleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    write_roles = ADMIN_ONLY
    serializer_class = RoutingRuleSerializer
    pagination_class = RulePagination
    queryset = RoutingRule._base_manager.none()
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[RoutingRule]:
        return selectors.routing_rule_list()

    def _save(self, request: Request, rule: RoutingRule | None, partial: bool) -> RoutingRule:
        serializer = RoutingRuleInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        for name in ("user", "team"):
            if name in data:
                data[f"{name}_id"] = data.pop(name)
        return services.routing_rule_save(
            tenant_id=self.tenant.id, origin=self.origin, rule=rule, **data
        )

    def create(self, request: Request, *args, **kwargs) -> Response:
        rule = self._save(request, None, False)
        return Response(RoutingRuleSerializer(rule).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        rule = self._save(request, self.get_object(), True)
        return Response(RoutingRuleSerializer(rule).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.routing_rule_delete(rule=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)
