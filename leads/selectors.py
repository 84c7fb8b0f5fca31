"""Read queries of leads that the API, the web UI and reports share.

Every function runs inside the caller's tenant scope (the tenant manager raises
outside one). Lists return querysets ordered to match an index; the callers paginate
them by keyset.
"""

import base64
import heapq
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import BooleanField, Count, F, Func, Prefetch, Q, QuerySet, Value
from django.utils.translation import gettext_lazy

from leads.models import (
    Activity,
    Company,
    ConsentEvent,
    CustomFieldDefinition,
    Lead,
    LifecycleTransition,
    Suppression,
    Tag,
)
from leads.normalize import fold, normalize_company_name, normalize_domain


def lead_list() -> QuerySet[Lead]:
    """Live leads (merged tombstones hidden), with what a list row shows."""
    return (
        Lead.objects.filter(merged_into__isnull=True)
        .select_related("company")
        .prefetch_related(Prefetch("tags", queryset=Tag.objects.only("id", "name")))
    )


def lead_get(lead_id: int) -> Lead | None:
    return lead_list().filter(pk=lead_id).first()


def _to_katakana(value: str) -> str:
    from leads.services.leads import to_katakana

    return to_katakana(value)


class StartsWith(Func):
    """`starts_with(column, prefix)`: PostgreSQL turns it into a range on a
    varchar_pattern_ops index, and unlike LIKE it is leakproof, so row-level security
    still lets the planner use that index (a LIKE would be evaluated row by row after
    the policy check). Elsewhere (SQLite dev) a LIKE."""

    function = "starts_with"
    output_field = BooleanField()

    def __init__(self, field: str, prefix: str) -> None:
        super().__init__(F(field), Value(prefix))

    def as_sqlite(self, compiler, connection, **extra):
        column, column_params = compiler.compile(self.source_expressions[0])
        escaped = self.source_expressions[1].value.replace("\\", "\\\\").replace("%", "\\%")
        escaped = escaped.replace("_", "\\_")
        return f"{column} LIKE %s ESCAPE '\\'", [*column_params, escaped + "%"]


#: How many companies a search term may expand to before it stops matching by company.
SEARCH_COMPANY_LIMIT = 500


def lead_search(queryset: QuerySet[Lead], q: str) -> QuerySet[Lead]:
    """Prefix search over name, kana reading, email and company name.

    Each whitespace-separated term must match the start of the family or given name,
    the family-name reading (hiragana finds katakana), the email, or the company's
    normalised name (so "両輪" finds "株式会社両輪商事"). Every arm is a prefix on a
    btree index (lead_search_*_idx, the company FK), so PostgreSQL ORs bitmap index
    scans; trigram search could not serve the one- and two-character terms Japanese
    names are made of.
    """
    for term in fold(q).split()[:5]:
        kana = _to_katakana(term)
        condition = (
            Q(StartsWith("family_name", term))
            | Q(StartsWith("given_name", term))
            | Q(StartsWith("family_name_kana", kana))
            | (Q(StartsWith("email", term.lower())) & ~Q(email=""))
        )
        company_key = normalize_company_name(term)
        if company_key:
            company_ids = list(
                Company.objects.filter(StartsWith("name_key", company_key))
                .order_by()
                .values_list("id", flat=True)[:SEARCH_COMPANY_LIMIT]
            )
            if company_ids:
                condition |= Q(company_id__in=company_ids)
        queryset = queryset.filter(condition)
    return queryset


def company_list() -> QuerySet[Company]:
    return Company.objects.all()


def company_search(queryset: QuerySet[Company], q: str) -> QuerySet[Company]:
    """Prefix of the normalised name ("両輪" finds "株式会社両輪商事") or of the domain,
    or the exact 法人番号. Arms that cannot match are left out: a term with non-ASCII
    characters is no (ASCII) domain, one with letters no corporate number. So a
    Japanese name is one prefix range on company_search_name_idx (StartsWith keeps
    the index usable under row-level security, as in lead_search)."""
    key = normalize_company_name(q)
    if not key:
        return queryset
    # The lower bound (every key sorts at or after its own prefix) lets a name-ordered
    # page start at the prefix instead of walking the name index from "a" to it.
    condition = Q(StartsWith("name_key", key), name_key__gte=key)
    domain = normalize_domain(q)
    if domain and domain.isascii() and " " not in domain:
        condition |= Q(StartsWith("domain", domain))
    if key.isdigit():
        condition |= Q(corporate_number=key)
    return queryset.filter(condition)


def company_industries() -> list[str]:
    """The industries the tenant's companies name, for the list's filter."""
    return list(
        Company.objects.exclude(industry="")
        .order_by("industry")
        .values_list("industry", flat=True)
        .distinct()[:500]
    )


def company_lead_counts(company_ids: list[int]) -> dict[int, int]:
    """Live leads (merged tombstones not counted) of these companies only: one
    aggregate over the company foreign key's index, for a page's rows."""
    if not company_ids:
        return {}
    rows = (
        Lead.objects.filter(company_id__in=company_ids, merged_into__isnull=True)
        .order_by()
        .values("company_id")
        .annotate(n=Count("pk"))
        .values_list("company_id", "n")
    )
    return dict(rows)


def company_lead_ranking() -> list[tuple[int, int]]:
    """(company id, live leads) of every company with a lead, most leads first (ties:
    higher id first). One aggregate over all of the tenant's leads: the list's "most
    leads" order reads it, cached on large tenants (leads.views.companies)."""
    return list(
        Lead.objects.filter(company_id__isnull=False, merged_into__isnull=True)
        .order_by()
        .values("company_id")
        .annotate(n=Count("pk"))
        .order_by("-n", "-company_id")
        .values_list("company_id", "n")
    )


def activity_list() -> QuerySet[Activity]:
    return Activity.objects.all()


def tag_list() -> QuerySet[Tag]:
    return Tag.objects.all()


def custom_field_list() -> QuerySet[CustomFieldDefinition]:
    return CustomFieldDefinition.objects.all()


def suppression_list() -> QuerySet[Suppression]:
    return Suppression.objects.all()


def suppression_contains(email: str) -> bool:
    return Suppression.objects.filter(email=email).exists()


def consent_history(lead: Lead) -> QuerySet[ConsentEvent]:
    return (
        ConsentEvent.objects.filter(lead=lead)
        .select_related("actor")
        .order_by("-occurred_at", "-id")
    )


# --- Timeline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    kind: str  # "activity", "consent", "transition", "campaign", "campaign_status"
    id: int
    occurred_at: datetime
    data: dict[str, Any]

    def sort_key(self) -> tuple:
        # Newest first; ties broken by kind then id, both descending: a total order.
        return (self.occurred_at, self.kind, self.id)


#: (kind, label) of every entry the timeline has: leads' own, then the kinds higher apps
#: register (register_timeline_source). The API's schema names them from this list.
TIMELINE_KIND_CHOICES: list[tuple[str, Any]] = [
    ("activity", gettext_lazy("Activity")),
    ("transition", gettext_lazy("Lifecycle transition")),
    ("consent", gettext_lazy("Consent change")),
    ("campaign", gettext_lazy("Joined a campaign")),
    ("campaign_status", gettext_lazy("Campaign status changed")),
]
BUILTIN_TIMELINE_KINDS = frozenset(kind for kind, _label in TIMELINE_KIND_CHOICES)

#: `read(lead, past, limit)`: see register_timeline_source.
TimelineReader = Callable[["Lead", Callable[[str], Q], int], Iterable["TimelineEntry"]]
_timeline_readers: dict[str, TimelineReader] = {}


def register_timeline_source(kind: str, label: Any, read: TimelineReader) -> None:
    """The extension point of the timeline for higher apps (leads may not import them;
    they register in AppConfig.ready()): entries of `kind` on a lead's timeline.

    `read(lead, past, limit)` makes one query and returns at most `limit + 1` entries
    of this kind, newest first by (occurred_at, id), among the rows that `past(field)`
    lets through: a Q on the row's time field keeping those after the page's cursor.
    So the timeline keeps its keyset paging and one query per kind per page, however
    deep. How an entry looks on the lead page is the hook `lead.timeline_items`."""
    if kind in BUILTIN_TIMELINE_KINDS:
        raise ValueError(f"{kind!r} is a timeline kind of leads")
    _timeline_readers[kind] = read
    if kind not in timeline_kinds():
        TIMELINE_KIND_CHOICES.append((kind, label))


def timeline_kinds() -> tuple[str, ...]:
    return tuple(kind for kind, _label in TIMELINE_KIND_CHOICES)


def encode_timeline_cursor(entry: TimelineEntry) -> str:
    raw = json.dumps([entry.occurred_at.isoformat(), entry.kind, entry.id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_timeline_cursor(cursor: str) -> tuple[datetime, str, int]:
    """Raises ValueError on a cursor we did not make."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, kind, entry_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if kind not in timeline_kinds() or not isinstance(entry_id, int):
            raise ValueError("bad cursor")
        return datetime.fromisoformat(at), kind, entry_id
    except (TypeError, json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("bad cursor") from exc


def _before(kind: str, cursor: tuple[datetime, str, int] | None, field: str = "occurred_at") -> Q:
    """Rows of `kind` (timed by `field`) that come after the cursor in newest-first
    order."""
    if cursor is None:
        return Q()
    at, cursor_kind, cursor_id = cursor
    same_time = Q(**{field: at})
    if kind < cursor_kind:
        same_time_ok = same_time
    elif kind == cursor_kind:
        same_time_ok = same_time & Q(id__lt=cursor_id)
    else:
        return Q(**{f"{field}__lt": at})
    return Q(**{f"{field}__lt": at}) | same_time_ok


def lead_timeline(
    lead: Lead, *, limit: int = 50, cursor: tuple[datetime, str, int] | None = None
) -> tuple[list[TimelineEntry], bool]:
    """One newest-first stream of the lead's activities, stage transitions, consent
    changes and campaign memberships: (entries, has_more). A membership is two
    entries: "campaign" when the lead joined (created_at) and "campaign_status" when
    its status last changed (updated_at, if later); then the kinds higher apps
    register (register_timeline_source: tasks, nurture enrolments and mails).
    Keyset-paginated across the sources: each is read through its lead index for at
    most limit+1 rows past the cursor, and they are merged; five queries per page plus
    one per registered kind, however deep."""
    sources = []
    activities = (
        Activity.objects.filter(_before("activity", cursor), lead=lead)
        .order_by("-occurred_at", "-id")
        .values("id", "occurred_at", "type", "campaign_id", "channel", "properties")[: limit + 1]
    )
    sources.append(
        TimelineEntry("activity", row.pop("id"), row.pop("occurred_at"), row) for row in activities
    )
    transitions = (
        LifecycleTransition.objects.filter(_before("transition", cursor), lead=lead)
        .order_by("-occurred_at", "-id")
        .values("id", "occurred_at", "from_stage", "to_stage", "actor_id", "channel", "reason")[
            : limit + 1
        ]
    )
    sources.append(
        TimelineEntry("transition", row.pop("id"), row.pop("occurred_at"), row)
        for row in transitions
    )
    consents = (
        ConsentEvent.objects.filter(_before("consent", cursor), lead=lead)
        .order_by("-occurred_at", "-id")
        .values("id", "occurred_at", "purpose", "status", "channel", "basis", "proof", "actor_id")[
            : limit + 1
        ]
    )
    sources.append(
        TimelineEntry("consent", row.pop("id"), row.pop("occurred_at"), row) for row in consents
    )
    # Campaigns is a higher app (leads may not import it): the lead's reverse relation
    # reaches the membership model, under its tenant manager like every other source.
    memberships = lead.campaign_memberships.all()
    joined = (
        memberships.filter(_before("campaign", cursor, "created_at"))
        .order_by("-created_at", "-id")
        .values("id", "created_at", "updated_at", "campaign_id", "status")[: limit + 1]
    )
    sources.append(
        TimelineEntry(
            "campaign",
            row["id"],
            row["created_at"],
            {
                "campaign_id": row["campaign_id"],
                "status": row["status"],
                "changed_later": row["updated_at"] > row["created_at"],
            },
        )
        for row in joined
    )
    changed = (
        memberships.filter(updated_at__gt=F("created_at"))
        .filter(_before("campaign_status", cursor, "updated_at"))
        .order_by("-updated_at", "-id")
        .values("id", "updated_at", "campaign_id", "status")[: limit + 1]
    )
    sources.append(
        TimelineEntry("campaign_status", row.pop("id"), row.pop("updated_at"), row)
        for row in changed
    )
    for kind, read in _timeline_readers.items():
        sources.append(read(lead, lambda field, kind=kind: _before(kind, cursor, field), limit))
    merged = heapq.merge(
        *[list(source) for source in sources],
        key=TimelineEntry.sort_key,
        reverse=True,
    )
    entries = []
    for entry in merged:
        entries.append(entry)
        if len(entries) > limit:
            break
    return entries[:limit], len(entries) > limit
