"""Leads API: leads (with batch upsert, merge, stage, timeline, consent), companies,
activities (with batch ingest), tags, custom field definitions and the suppression
list.

Views are thin: shape checks in serializers, rules in leads.services, reads in
leads.selectors. Tenant resolution, the tenant scope and role checks come from
TenantScopedViewSet; lists are keyset-paginated on indexed sort keys.
"""

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import WRITER_ROLES, TenantScopedViewSet
from accounts.models import Role
from leads import selectors, services
from leads.api.filters import ActivityFilter, CompanyFilter, LeadFilter, SuppressionFilter
from leads.api.pagination import (
    CreatedPagination,
    KeysetPagination,
    LeadPagination,
    OccurredPagination,
)
from leads.api.serializers import (
    ActivityBatchInputSerializer,
    ActivityInputSerializer,
    ActivityOutputSerializer,
    BatchResponseSerializer,
    CompanyInputSerializer,
    CompanyOutputSerializer,
    ConsentEventOutputSerializer,
    ConsentInputSerializer,
    CustomFieldInputSerializer,
    CustomFieldOutputSerializer,
    LeadBatchInputSerializer,
    LeadBatchOptionsSerializer,
    LeadInputSerializer,
    LeadMergeInputSerializer,
    LeadOutputSerializer,
    StageChangeInputSerializer,
    SuppressionInputSerializer,
    SuppressionOutputSerializer,
    TagInputSerializer,
    TagOutputSerializer,
    TimelinePageSerializer,
)
from leads.models import Activity, Channel, Company, CustomFieldDefinition, Lead, Suppression, Tag

#: Marketing and sales write leads and activities (sales add notes and calls).
LEAD_WRITE_ROLES = WRITER_ROLES
#: Custom fields and the suppression list shape what marketing may do: not sales.
MARKETING_ADMIN_ROLES = frozenset({Role.MARKETING, Role.ADMIN, Role.OWNER})
NO_CONTENT = {204: OpenApiResponse(description=_("Done; no body."))}


class _ListRetrieve(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    pass


def _batch_items(request: Request) -> list:
    """The `items` list of a batch body, checked for shape only (no per-item
    serializer: a 1,000-item batch must not pay for 1,000 serializer runs)."""
    data = request.data
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise exceptions.ValidationError({"items": [_("A list of items is required.")]})
    if not items:
        raise exceptions.ValidationError({"items": [_("The list is empty.")]})
    if len(items) > services.MAX_BATCH:
        raise exceptions.ValidationError(
            {"items": [_("At most %(n)d items per request.") % {"n": services.MAX_BATCH}]}
        )
    return items


def _batch_response(results: list[dict], status_code: int = status.HTTP_200_OK) -> Response:
    errors = sum(1 for result in results if result["status"] == "error")
    created = sum(1 for result in results if result["status"] == "created")
    return Response({"created": created, "errors": errors, "results": results}, status=status_code)


# --- Leads ------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary=_("Leads (filter, search, sort; keyset pages)")),
    retrieve=extend_schema(summary=_("One lead")),
    create=extend_schema(
        summary=_("Create a lead"),
        request=LeadInputSerializer,
        responses={201: LeadOutputSerializer},
    ),
    partial_update=extend_schema(
        summary=_("Change a lead's fields"),
        request=LeadInputSerializer,
        responses=LeadOutputSerializer,
    ),
    destroy=extend_schema(summary=_("Delete a lead and its history"), responses=NO_CONTENT),
)
class LeadViewSet(_ListRetrieve):
    write_roles = LEAD_WRITE_ROLES
    serializer_class = LeadOutputSerializer
    filterset_class = LeadFilter
    pagination_class = LeadPagination
    queryset = Lead._base_manager.none()  # model for the schema only
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Lead]:
        return selectors.lead_list()

    def _fresh(self, lead: Lead) -> dict:
        return LeadOutputSerializer(selectors.lead_get(lead.pk)).data

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = LeadInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        email = fields.pop("email", "")
        lead = services.lead_create(
            tenant_id=self.tenant.id,
            email=email,
            fields=fields,
            channel=Channel.API,
            origin=self.origin,
        )
        return Response(self._fresh(lead), status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        lead = self.get_object()
        serializer = LeadInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        extra = {"email": fields.pop("email")} if "email" in fields else {}
        services.lead_update(lead=lead, fields=fields, origin=self.origin, **extra)
        return Response(self._fresh(lead))

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.lead_delete(lead=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary=_("The lead's scores, rule by rule (why it scores what it does)"),
        responses={200: dict},
    )
    @action(detail=True, methods=["get"])
    def score(self, request: Request, *args, **kwargs) -> Response:
        from leads.api.scoring import lead_score_response

        return lead_score_response(self.get_object())

    @extend_schema(
        summary=_("Create or update up to 1,000 leads by email"),
        description=_(
            "Each item is a lead's fields with its email. Items are independent: a bad "
            "item gets its errors in its result and the others are kept."
        ),
        request=LeadBatchInputSerializer,
        responses=BatchResponseSerializer,
    )
    @action(detail=False, methods=["post"], url_path="batch")
    def batch(self, request: Request, *args, **kwargs) -> Response:
        items = _batch_items(request)
        options = LeadBatchOptionsSerializer(data=request.data)
        options.is_valid(raise_exception=True)
        policy = options.validated_data["policy"]
        campaign_id = options.validated_data.get("source_campaign_id")
        # Set-based: a fixed number of statements per request, each item's outcome or
        # errors in its result (a bad item never stops the others).
        results = services.leads_upsert_bulk(
            tenant_id=self.tenant.id,
            items=items,
            channel=Channel.API,
            origin=self.origin,
            source_campaign_id=campaign_id,
            policy=policy,
        )
        return _batch_response(results)

    @extend_schema(
        summary=_("Merge a duplicate into this lead"),
        request=LeadMergeInputSerializer,
        responses=LeadOutputSerializer,
    )
    @action(detail=True, methods=["post"])
    def merge(self, request: Request, *args, **kwargs) -> Response:
        keep = self.get_object()
        serializer = LeadMergeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        duplicate = Lead.objects.filter(
            pk=serializer.validated_data["merge_id"], merged_into__isnull=True
        ).first()
        if duplicate is None:
            raise exceptions.ValidationError({"merge_id": [_("No lead with this id.")]})
        lead = services.lead_merge(keep=keep, merge=duplicate, origin=self.origin)
        return Response(self._fresh(lead))

    @extend_schema(
        summary=_("Move the lead to a lifecycle stage (recorded)"),
        request=StageChangeInputSerializer,
        responses=LeadOutputSerializer,
    )
    @action(detail=True, methods=["post"])
    def stage(self, request: Request, *args, **kwargs) -> Response:
        lead = self.get_object()
        serializer = StageChangeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.lead_change_stage(
            lead=lead,
            to_stage=serializer.validated_data["to_stage"],
            reason=serializer.validated_data.get("reason", ""),
            origin=self.origin,
            channel=Channel.API,
        )
        return Response(self._fresh(lead))

    @extend_schema(
        summary=_("Everything that happened to the lead, newest first"),
        description=_(
            "Activities, lifecycle transitions, consent changes and campaign memberships "
            "(`campaign`: joined, `campaign_status`: status changed), sales tasks (`task`: "
            "made, `task_done`), nurture sequences (`enrolment`, `enrolment_end`) and the "
            "mails they sent (`email`) in one stream; follow `next` for older entries."
        ),
        parameters=[
            OpenApiParameter("cursor", str, required=False),
            OpenApiParameter("page_size", int, required=False),
        ],
        responses=TimelinePageSerializer,
        filters=False,
    )
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def timeline(self, request: Request, *args, **kwargs) -> Response:
        lead = self.get_object()
        cursor = None
        raw = request.query_params.get("cursor")
        if raw:
            try:
                cursor = selectors.decode_timeline_cursor(raw)
            except ValueError:
                raise exceptions.ValidationError({"cursor": [_("Invalid cursor.")]}) from None
        size = KeysetPagination()._page_size(request)
        entries, more = selectors.lead_timeline(lead, limit=size, cursor=cursor)
        next_link = None
        if more and entries:
            from rest_framework.utils.urls import replace_query_param

            next_link = replace_query_param(
                request.build_absolute_uri(),
                "cursor",
                selectors.encode_timeline_cursor(entries[-1]),
            )
        body = {
            "next": next_link,
            "results": [
                {"kind": e.kind, "id": e.id, "occurred_at": e.occurred_at, "data": e.data}
                for e in entries
            ],
        }
        return Response(TimelinePageSerializer(body).data)

    @extend_schema(
        methods=["GET"],
        summary=_("Consent history of the lead, newest first"),
        responses=ConsentEventOutputSerializer(many=True),
        filters=False,
    )
    @extend_schema(
        methods=["POST"],
        summary=_("Record a consent change (opt-in or opt-out) for one purpose"),
        request=ConsentInputSerializer,
        responses={201: ConsentEventOutputSerializer},
    )
    @action(
        detail=True,
        methods=["get", "post"],
        pagination_class=OccurredPagination,
        filterset_class=None,
    )
    def consent(self, request: Request, *args, **kwargs) -> Response:
        lead = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(selectors.consent_history(lead))
            return self.get_paginated_response(ConsentEventOutputSerializer(page, many=True).data)
        serializer = ConsentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        event = services.consent_record(lead=lead, origin=self.origin, **serializer.validated_data)
        return Response(ConsentEventOutputSerializer(event).data, status=status.HTTP_201_CREATED)


# --- Companies ------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary=_("Companies")),
    retrieve=extend_schema(summary=_("One company")),
    create=extend_schema(
        summary=_("Create a company"),
        request=CompanyInputSerializer,
        responses={201: CompanyOutputSerializer},
    ),
    partial_update=extend_schema(
        summary=_("Change a company"),
        request=CompanyInputSerializer,
        responses=CompanyOutputSerializer,
    ),
    destroy=extend_schema(summary=_("Delete a company (its leads stay)"), responses=NO_CONTENT),
)
class CompanyViewSet(_ListRetrieve):
    write_roles = LEAD_WRITE_ROLES
    serializer_class = CompanyOutputSerializer
    filterset_class = CompanyFilter
    pagination_class = CreatedPagination
    queryset = Company._base_manager.none()
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Company]:
        return selectors.company_list()

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = CompanyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        company = services.company_create(
            tenant_id=self.tenant.id, origin=self.origin, **serializer.validated_data
        )
        return Response(CompanyOutputSerializer(company).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        company = self.get_object()
        serializer = CompanyInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        company = services.company_update(
            company=company, origin=self.origin, **serializer.validated_data
        )
        return Response(CompanyOutputSerializer(company).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.company_delete(company=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary=_("Leads of the company"),
        responses=LeadOutputSerializer(many=True),
        filters=False,
    )
    @action(detail=True, methods=["get"], pagination_class=LeadPagination, filterset_class=None)
    def leads(self, request: Request, *args, **kwargs) -> Response:
        company = self.get_object()
        page = self.paginate_queryset(selectors.lead_list().filter(company=company))
        return self.get_paginated_response(LeadOutputSerializer(page, many=True).data)


# --- Activities -----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary=_("Activities, newest first")),
    retrieve=extend_schema(summary=_("One activity")),
    create=extend_schema(
        summary=_("Add an activity to a lead (a call, a meeting, a note, …)"),
        request=ActivityInputSerializer,
        responses={201: ActivityOutputSerializer},
    ),
)
class ActivityViewSet(_ListRetrieve):
    """Append-only: no update, no delete."""

    write_roles = LEAD_WRITE_ROLES
    serializer_class = ActivityOutputSerializer
    filterset_class = ActivityFilter
    pagination_class = OccurredPagination
    queryset = Activity._base_manager.none()
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self) -> QuerySet[Activity]:
        return selectors.activity_list()

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = ActivityInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        lead = Lead.objects.filter(pk=data["lead_id"]).first()
        if lead is None:
            raise exceptions.ValidationError({"lead_id": [_("No lead with this id.")]})
        properties = dict(data.get("properties") or {})
        if self.origin.actor is not None:
            properties.setdefault("actor_id", self.origin.actor.id)
        activity = services.activity_record(
            tenant_id=self.tenant.id,
            type=data["type"],
            lead=lead,
            occurred_at=data.get("occurred_at"),
            campaign_id=data.get("campaign_id"),
            channel=Channel.API,
            properties=properties,
        )
        return Response(ActivityOutputSerializer(activity).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary=_("Append up to 1,000 activities; one result per item"),
        request=ActivityBatchInputSerializer,
        responses=BatchResponseSerializer,
    )
    @action(detail=False, methods=["post"], url_path="batch")
    def batch(self, request: Request, *args, **kwargs) -> Response:
        items = _batch_items(request)
        results = services.activities_ingest(
            tenant_id=self.tenant.id, items=items, channel=Channel.API
        )
        return _batch_response(results)


# --- Tags, custom fields, suppression ------------------------------------------------------


class NamePagination(KeysetPagination):
    sorts = {"name": (("name", "id"), False), "-name": (("name", "id"), True)}
    default_sort = "name"


class KeyPagination(KeysetPagination):
    sorts = {"key": (("key", "id"), False), "-key": (("key", "id"), True)}
    default_sort = "key"


class EmailPagination(KeysetPagination):
    sorts = {"email": (("email", "id"), False), "-email": (("email", "id"), True)}
    default_sort = "email"


@extend_schema_view(
    list=extend_schema(summary=_("Tags")),
    retrieve=extend_schema(summary=_("One tag")),
    create=extend_schema(
        summary=_("Create a tag"), request=TagInputSerializer, responses={201: TagOutputSerializer}
    ),
    partial_update=extend_schema(
        summary=_("Rename a tag"), request=TagInputSerializer, responses=TagOutputSerializer
    ),
    destroy=extend_schema(summary=_("Delete a tag (from every lead)"), responses=NO_CONTENT),
)
class TagViewSet(_ListRetrieve):
    write_roles = LEAD_WRITE_ROLES
    serializer_class = TagOutputSerializer
    pagination_class = NamePagination
    queryset = Tag._base_manager.none()
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Tag]:
        return selectors.tag_list()

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = TagInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tag = services.tag_create(
            tenant_id=self.tenant.id, name=serializer.validated_data["name"], origin=self.origin
        )
        return Response(TagOutputSerializer(tag).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        tag = self.get_object()
        serializer = TagInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tag = services.tag_rename(
            tag=tag, name=serializer.validated_data["name"], origin=self.origin
        )
        return Response(TagOutputSerializer(tag).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.tag_delete(tag=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary=_("Custom lead fields")),
    retrieve=extend_schema(summary=_("One custom field")),
    create=extend_schema(
        summary=_("Define a custom lead field"),
        request=CustomFieldInputSerializer,
        responses={201: CustomFieldOutputSerializer},
    ),
    partial_update=extend_schema(
        summary=_("Change a custom field (key and type stay)"),
        request=CustomFieldInputSerializer,
        responses=CustomFieldOutputSerializer,
    ),
    destroy=extend_schema(summary=_("Remove a custom field"), responses=NO_CONTENT),
)
class CustomFieldViewSet(_ListRetrieve):
    write_roles = MARKETING_ADMIN_ROLES
    serializer_class = CustomFieldOutputSerializer
    pagination_class = KeyPagination
    queryset = CustomFieldDefinition._base_manager.none()
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[CustomFieldDefinition]:
        return selectors.custom_field_list()

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = CustomFieldInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        definition = services.custom_field_create(
            tenant_id=self.tenant.id, origin=self.origin, **serializer.validated_data
        )
        return Response(
            CustomFieldOutputSerializer(definition).data, status=status.HTTP_201_CREATED
        )

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        definition = self.get_object()
        serializer = CustomFieldInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        definition = services.custom_field_update(
            definition=definition, origin=self.origin, **serializer.validated_data
        )
        return Response(CustomFieldOutputSerializer(definition).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.custom_field_delete(definition=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary=_("Suppressed addresses (never mailed)")),
    retrieve=extend_schema(summary=_("One suppressed address")),
    create=extend_schema(
        summary=_("Suppress an address"),
        request=SuppressionInputSerializer,
        responses={201: SuppressionOutputSerializer},
    ),
    destroy=extend_schema(summary=_("Take an address off the list"), responses=NO_CONTENT),
)
class SuppressionViewSet(_ListRetrieve):
    write_roles = MARKETING_ADMIN_ROLES
    serializer_class = SuppressionOutputSerializer
    filterset_class = SuppressionFilter
    pagination_class = EmailPagination
    queryset = Suppression._base_manager.none()
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Suppression]:
        return selectors.suppression_list()

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = SuppressionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        suppression = services.suppression_add(
            tenant_id=self.tenant.id, **serializer.validated_data
        )
        return Response(
            SuppressionOutputSerializer(suppression).data, status=status.HTTP_201_CREATED
        )

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        services.suppression_remove(suppression=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)


__all__ = [
    "ActivityViewSet",
    "CompanyViewSet",
    "CustomFieldViewSet",
    "LeadViewSet",
    "SuppressionViewSet",
    "TagViewSet",
]
