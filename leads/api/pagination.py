"""Keyset pagination on a composite, unique sort key.

DRF's CursorPagination positions the cursor on the first ordering field only and
steps over ties with an offset: an import that gives 10,000 leads one created_at, or
a list sorted by family name (many 佐藤), would page by OFFSET. Here the cursor holds
every value of the sort key (which ends with the id, so it is unique) and the next
page is one row comparison, `(a, b, id) < (x, y, z)`, that PostgreSQL answers from
the index the sort key matches.
"""

import base64
import json
from collections import OrderedDict
from datetime import datetime

from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param


def _rows_by_id(queryset: QuerySet, ids: list) -> QuerySet:
    """The rows with these ids as the list shows them (its select_related, prefetches
    and deferred fields), without its filters: they chose the ids already, and some
    (a campaign's member set, a search's company list) cost more than the 50 rows."""
    rows = queryset.model._default_manager.filter(pk__in=ids)
    rows.query.select_related = queryset.query.select_related
    rows.query.deferred_loading = queryset.query.deferred_loading
    rows._prefetch_related_lookups = queryset._prefetch_related_lookups
    return rows


class KeysetPagination(BasePagination):
    """Sorts named by `?sort=`; each is a tuple of fields, all in one direction and
    ending with "id", backed by an index that starts with tenant_id."""

    page_size = 50
    max_page_size = 500
    cursor_query_param = "cursor"
    page_size_query_param = "page_size"
    sort_query_param = "sort"
    #: name → (fields, descending)
    sorts: dict[str, tuple[tuple[str, ...], bool]] = {"-created": (("created_at", "id"), True)}
    default_sort = "-created"
    datetime_fields: frozenset[str] = frozenset({"created_at", "updated_at"})
    #: Read the page's ids first (one narrow query the sort index can answer alone,
    #: an index-only scan when it carries the filtered columns), then the rows by id.
    #: A filter that skips many rows then skips index entries, not table rows.
    narrow_first = False

    def _page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            value = int(raw)
        except ValueError:
            raise exceptions.ValidationError(
                {self.page_size_query_param: [_("Enter a whole number.")]}
            ) from None
        if value < 1:
            raise exceptions.ValidationError(
                {self.page_size_query_param: [_("Enter a positive number.")]}
            )
        return min(value, self.max_page_size)

    def _sort(self, request: Request) -> tuple[str, tuple[str, ...], bool]:
        name = request.query_params.get(self.sort_query_param) or self.default_sort
        if name not in self.sorts:
            choices = ", ".join(self.sorts)
            raise exceptions.ValidationError(
                {self.sort_query_param: [_("Choose one of: %(choices)s.") % {"choices": choices}]}
            )
        return name, *self.sorts[name]

    def _decode(self, raw: str, fields: tuple[str, ...]) -> tuple[bool, list]:
        try:
            padded = raw + "=" * (-len(raw) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
            values, backwards = data["v"], bool(data.get("b"))
            if len(values) != len(fields):
                raise ValueError
            values = [
                datetime.fromisoformat(value) if field in self.datetime_fields else value
                for field, value in zip(fields, values, strict=True)
            ]
            if not isinstance(values[-1], int):
                raise ValueError
            return backwards, values
        except (ValueError, TypeError, KeyError, json.JSONDecodeError, UnicodeDecodeError):
            raise exceptions.ValidationError(
                {self.cursor_query_param: [_("Invalid cursor.")]}
            ) from None

    def _encode(self, row, fields: tuple[str, ...], backwards: bool) -> str:
        values = []
        for field in fields:
            value = getattr(row, field)
            values.append(value.isoformat() if isinstance(value, datetime) else value)
        raw = json.dumps({"v": values, "b": 1 if backwards else 0}, ensure_ascii=False)
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def paginate_queryset(self, queryset: QuerySet, request: Request, view=None) -> list:
        self.request = request
        size = self._page_size(request)
        self.sort_name, fields, descending = self._sort(request)
        self.fields = fields
        raw_cursor = request.query_params.get(self.cursor_query_param)
        backwards, values = (False, None)
        if raw_cursor:
            backwards, values = self._decode(raw_cursor, fields)
        # Walking backwards reads the opposite order, then flips the page.
        read_descending = descending != backwards
        if values is not None:
            table = queryset.model._meta.db_table
            columns = ", ".join(
                f'"{table}"."{queryset.model._meta.get_field(f).column}"' for f in fields
            )
            marks = ", ".join(["%s"] * len(fields))
            operator = "<" if read_descending else ">"
            # Column names come from the fixed sort table; the values are parameters.
            queryset = queryset.filter(
                RawSQL(  # noqa: S611
                    f"({columns}) {operator} ({marks})", values, output_field=BooleanField()
                )
            )
        ordering = [f"-{f}" if read_descending else f for f in fields]
        if self.narrow_first:
            ids = list(queryset.order_by(*ordering).values_list("pk", flat=True)[: size + 1])
            by_id = {row.pk: row for row in _rows_by_id(queryset, ids)}
            rows = [by_id[pk] for pk in ids if pk in by_id]
        else:
            rows = list(queryset.order_by(*ordering)[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        if backwards:
            rows.reverse()
        self.has_next = more if not backwards else True
        self.has_previous = (more if backwards else raw_cursor is not None) and bool(rows)
        if backwards and not rows:
            self.has_next = False
        self.rows = rows
        return rows

    def _link(self, row, backwards: bool) -> str:
        url = self.request.build_absolute_uri()
        return replace_query_param(
            url, self.cursor_query_param, self._encode(row, self.fields, backwards)
        )

    def get_next_link(self) -> str | None:
        if not self.has_next or not self.rows:
            return None
        return self._link(self.rows[-1], backwards=False)

    def get_previous_link(self) -> str | None:
        if not self.has_previous or not self.rows:
            return None
        return self._link(self.rows[0], backwards=True)

    def get_paginated_response(self, data) -> Response:
        return Response(
            OrderedDict(
                [
                    ("next", self.get_next_link()),
                    ("previous", self.get_previous_link()),
                    ("results", data),
                ]
            )
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": str(_("The pagination cursor value.")),
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": str(_("Number of results to return per page.")),
                "schema": {"type": "integer"},
            },
            {
                "name": self.sort_query_param,
                "required": False,
                "in": "query",
                "description": str(_("Sort order.")),
                "schema": {"type": "string", "enum": list(self.sorts)},
            },
        ]


class LeadPagination(KeysetPagination):
    narrow_first = True
    sorts = {
        "-created": (("created_at", "id"), True),
        "created": (("created_at", "id"), False),
        "-updated": (("updated_at", "id"), True),
        "updated": (("updated_at", "id"), False),
        "name": (("family_name", "given_name", "id"), False),
        "-name": (("family_name", "given_name", "id"), True),
    }


class CreatedPagination(KeysetPagination):
    sorts = {"-created": (("created_at", "id"), True), "created": (("created_at", "id"), False)}


class OccurredPagination(KeysetPagination):
    sorts = {"-occurred": (("occurred_at", "id"), True), "occurred": (("occurred_at", "id"), False)}
    default_sort = "-occurred"
    datetime_fields = frozenset({"occurred_at"})


class IdPagination(KeysetPagination):
    """Small lists (tags, custom fields): by id."""

    sorts = {"id": (("id",), False), "-id": (("id",), True)}
    default_sort = "id"
