"""Keyset pagination of the handoff queue: nearest deadline first, then the highest
score (no score last), then the id. The directions differ, so the cursor condition is
spelled out instead of one row comparison."""

import base64
import json
from collections import OrderedDict
from datetime import datetime

from django.db.models import Q, QuerySet
from rest_framework import exceptions
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from accounts.api.pagination import CursorPagination


class RulePagination(CursorPagination):
    """Routing rules in the order they are tried."""

    ordering = ("position", "id")


class QueuePagination(BasePagination):
    page_size = 50
    max_page_size = 500

    def _size(self, request: Request) -> int:
        try:
            size = int(request.query_params.get("page_size", self.page_size))
        except ValueError:
            raise exceptions.ValidationError({"page_size": ["Give a whole number."]}) from None
        return max(1, min(size, self.max_page_size))

    def _decode(self, raw: str) -> tuple[datetime, int, int]:
        try:
            deadline, score, pk = json.loads(base64.urlsafe_b64decode(raw.encode()))
            return datetime.fromisoformat(deadline), int(score), int(pk)
        except (ValueError, TypeError):
            raise exceptions.ValidationError({"cursor": ["Invalid cursor."]}) from None

    @staticmethod
    def _encode(handoff) -> str:
        key = [handoff.deadline.isoformat(), handoff.sort_score, handoff.pk]
        return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()

    def paginate_queryset(self, queryset: QuerySet, request: Request, view=None) -> list:
        """`queryset` is annotated with sort_score and ordered by (deadline,
        -sort_score, id) (pipeline.selectors.handoff_queue)."""
        size = self._size(request)
        raw = request.query_params.get("cursor")
        if raw:
            deadline, score, pk = self._decode(raw)
            queryset = queryset.filter(
                Q(deadline__gt=deadline)
                | Q(deadline=deadline, sort_score__lt=score)
                | Q(deadline=deadline, sort_score=score, id__gt=pk)
            )
        rows = list(queryset[: size + 1])
        self._next = None
        if len(rows) > size:
            url = request.build_absolute_uri()
            self._next = replace_query_param(url, "cursor", self._encode(rows[size - 1]))
        return rows[:size]

    def get_paginated_response(self, data) -> Response:
        return Response(OrderedDict([("next", self._next), ("results", data)]))

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }
