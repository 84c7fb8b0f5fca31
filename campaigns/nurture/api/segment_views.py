"""Saved segments in the API: CRUD, and the "matches N leads" preview of the staff page
(for a filter not saved yet, and for a saved segment now).

A segment's filter is the lead list's query string, checked by
campaigns.nurture.segments (the one place that knows what a filter may say); a refused
filter is a 400 naming each bad parameter under `filter`.
"""

from collections.abc import Callable

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns.models import Segment
from campaigns.nurture import segments
from campaigns.nurture.api.serializers import (
    SegmentCountSerializer,
    SegmentInputSerializer,
    SegmentOutputSerializer,
    SegmentPreviewQuerySerializer,
)
from campaigns.nurture.api.views import NO_CONTENT, _NurtureViewSet, _validated


def _filter_checked[T](write: Callable[[], T]) -> T:
    """Run a write that checks a filter; a refused filter names its parameters."""
    try:
        return write()
    except segments.FilterInvalid as exc:
        raise exceptions.ValidationError(
            {"filter": exc.problems or exc.message_dict["filter"]}
        ) from None


def _count_body(segment: Segment) -> dict:
    count, problem = segments.segment_count(segment)
    return {"filter": segment.filter, "count": count, "problem": problem}


@extend_schema_view(
    list=extend_schema(summary=_("Saved segments (lead-list filters), newest first")),
    retrieve=extend_schema(summary=_("One segment")),
    create=extend_schema(
        summary=_("Save a lead-list filter as a segment"),
        request=SegmentInputSerializer,
        responses={201: SegmentOutputSerializer},
    ),
    partial_update=extend_schema(
        summary=_("Rename a segment or change its filter"),
        description=_(
            "A new filter takes effect at the next evaluation: members that no longer "
            "match leave the segment then (their enrolments go on)."
        ),
        request=SegmentInputSerializer,
        responses=SegmentOutputSerializer,
    ),
    destroy=extend_schema(
        summary=_("Delete a segment (sequences enrolling on it stop doing so)"),
        responses=NO_CONTENT,
    ),
    preview=extend_schema(
        summary=_("How many leads a filter matches now, without saving it"),
        parameters=[SegmentPreviewQuerySerializer],
        responses=SegmentCountSerializer,
        filters=False,
    ),
    matches=extend_schema(
        summary=_("How many leads the segment matches now"),
        responses=SegmentCountSerializer,
        filters=False,
    ),
)
class SegmentViewSet(_NurtureViewSet):
    serializer_class = SegmentOutputSerializer
    queryset = Segment._base_manager.none()  # model for the schema and isolation tests

    def get_queryset(self) -> QuerySet[Segment]:
        return Segment.objects.all()

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = _validated(SegmentInputSerializer, request.data)
        segment = _filter_checked(
            lambda: segments.segment_create(tenant_id=self.tenant.id, origin=self.origin, **data)
        )
        return Response(SegmentOutputSerializer(segment).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        segment = self.get_object()
        data = _validated(SegmentInputSerializer, request.data, partial=True)
        segment = _filter_checked(
            lambda: segments.segment_update(segment=segment, origin=self.origin, **data)
        )
        return Response(SegmentOutputSerializer(segment).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        segments.segment_delete(segment=self.get_object(), origin=self.origin)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=False, methods=["get"], filterset_class=None, pagination_class=None)
    def preview(self, request: Request, *args, **kwargs) -> Response:
        raw = _validated(SegmentPreviewQuerySerializer, request.query_params).get("filter", "")
        cleaned = _filter_checked(
            lambda: segments.segment_filter_clean(tenant=self.tenant, raw=raw)
        )
        probe = Segment(tenant_id=self.tenant.id, filter=cleaned)
        return Response(SegmentCountSerializer(_count_body(probe)).data)

    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def matches(self, request: Request, *args, **kwargs) -> Response:
        return Response(SegmentCountSerializer(_count_body(self.get_object())).data)
