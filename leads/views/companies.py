"""The company list: search (name, domain, 法人番号), filters (industry, prefecture,
size), three sorts (name, newest, most leads) and keyset pages that cost the same on
page 1 and on page 2,000 of a 100,000-company tenant. No total is counted, and lead
counts are read for the rows shown only.

Name and newest are keyset pages on their indexes ((tenant, name_key) and (tenant,
-created_at, -id)): the API's pagination with UI cursors.

"Most leads" needs every company's count before its first row is known: one
aggregate over all the tenant's leads (0.7 s for 1,000,000 leads), far too slow per
page. So:

- the order is a *ranking* (company ids by live lead count, selectors.
  company_lead_ranking), kept in the cache for RANKING_TTL seconds on tenants where
  it is large, and a page is a position in it: the cursor holds the (count, id) of
  the last row, found again by bisection;
- a filter's matches are found along the ranking, read in growing chunks, keeping
  what the filter matches (one query per chunk: one or two for a broad filter); a
  narrow filter, which finds too little in the first PROBE entries, has its ids
  read once instead and the rest of the walk is in Python;
- companies the ranking does not hold (no leads, or new since it was computed) come
  last, newest first;
- the page shows the ranking's counts and says when a cached ranking was computed.
"""

import base64
import json
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import patch_vary_headers

from accounts.web import tenant_view
from leads import selectors
from leads.api.pagination import KeysetPagination
from leads.forms import COMPANY_SORT_CHOICES, CompanyListFilter
from leads.models import Company
from leads.views.common import Page, UIPager, keyset_page

PAGE_SIZE = 50
RANKED_SORT = "leads"
#: How long a cached ranking orders the "most leads" pages before it is recomputed.
RANKING_TTL = 300
#: Rankings of at least this many companies are cached; smaller ones cost less to
#: compute (a few milliseconds) than staleness is worth.
RANKING_CACHE_MIN = 2_000
#: Ranking entries matched chunk by chunk in SQL before a filter that found too little
#: there has its ids read once (at most FILTERED_IDS of them) and matched in Python.
PROBE = 500
FILTERED_IDS = 20_000
#: Ids read per query when walking the ranking or the created index: growing by 4×.
MAX_CHUNK = 20_000
#: The industry choices are a DISTINCT over every company (50 ms at 100,000).
INDUSTRIES_TTL = 300

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# An entry's place in the "most leads" order, as a sortable tuple: ranked companies
# (0, -leads, -id), then the others (1, -created µs, -id).
Key = tuple[int, int, int]


def _cache_key(kind: str, tenant_id: int) -> str:
    # With the database's name: test workers (one database each) and environments may
    # share a Redis, and tenant ids repeat across databases.
    return f"leads:{kind}:{settings.DATABASES['default']['NAME']}:{tenant_id}"


def _micros(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1)


# --- Name and newest -------------------------------------------------------------------------


class _CompanyPager(UIPager, KeysetPagination):
    page_size = PAGE_SIZE
    sorts = {
        "name": (("name_key", "id"), False),
        "-created": (("created_at", "id"), True),
    }
    default_sort = "name"


# --- Most leads ---------------------------------------------------------------------------------


class Ranking:
    """Company ids by live lead count, most first (ties: higher id first), as of
    `computed_at`; `cached` when it was (or will be) read from the cache."""

    def __init__(self, ids: array, counts: array, computed_at: datetime, cached: bool) -> None:
        self.ids, self.counts = ids, counts
        self.computed_at, self.cached = computed_at, cached
        self._members: set[int] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def key(self, index: int) -> Key:
        return (0, -self.counts[index], -self.ids[index])

    def position(self, key: Key, *, after: bool) -> int:
        """Index of the first entry after (or at) `key` in the order."""
        find = bisect_right if after else bisect_left
        return find(range(len(self.ids)), key, key=self.key)

    def holds(self, company_id: int) -> bool:
        if self._members is None:
            self._members = set(self.ids)
        return company_id in self._members


def company_ranking(tenant_id: int) -> Ranking:
    """The tenant's ranking: from the cache, or computed (and cached when large)."""
    key = _cache_key("company-ranking", tenant_id)
    stored = cache.get(key)
    if stored is not None:
        computed_at, ids, counts = stored
        return Ranking(array("q", ids), array("q", counts), computed_at, cached=True)
    rows = selectors.company_lead_ranking()
    ids = array("q", (company_id for company_id, _n in rows))
    counts = array("q", (n for _company_id, n in rows))
    ranking = Ranking(ids, counts, timezone.now(), cached=len(rows) >= RANKING_CACHE_MIN)
    if ranking.cached:
        cache.set(key, (ranking.computed_at, ids.tobytes(), counts.tobytes()), RANKING_TTL)
    return ranking


def _encode(key: Key, backwards: bool) -> str:
    raw = json.dumps({"k": list(key), "b": 1 if backwards else 0})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(raw: str) -> tuple[Key, bool] | None:
    """The cursor's key and direction; None for a cursor we did not make."""
    try:
        data = json.loads(base64.urlsafe_b64decode((raw + "=" * (-len(raw) % 4)).encode()))
        key = tuple(data["k"])
        if len(key) != 3 or key[0] not in (0, 1) or not all(type(v) is int for v in key):
            return None
        return key, bool(data.get("b"))
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        return None


def _chunks(size: int) -> Iterable[int]:
    while True:
        yield size
        size = min(size * 4, MAX_CHUNK)


def _filtered_ids(queryset: QuerySet[Company]) -> set[int] | None:
    """The ids a filter matches, when they are at most FILTERED_IDS."""
    ids = list(queryset.order_by().values_list("pk", flat=True)[: FILTERED_IDS + 1])
    return None if len(ids) > FILTERED_IDS else set(ids)


def _ranked(
    queryset: QuerySet[Company], ranking: Ranking, indexes: range, need: int, filtered: bool
) -> list:
    """Up to `need` (key, id) of the ranking at `indexes` (in that order) that the
    filter matches. The ranking is read in growing chunks, one query each keeping
    what the filter matches; a filter that matched little in the first PROBE entries
    has its ids read once (when there are at most FILTERED_IDS) and the rest of the
    walk is in Python."""
    found: list = []
    start = 0
    members: set[int] | None = None
    for size in _chunks(2 * need):
        if start >= len(indexes) or len(found) >= need:
            break
        if filtered and start >= PROBE:
            filtered = False  # asked once
            members = _filtered_ids(queryset)
            if members is not None:
                for index in indexes[start:]:
                    if ranking.ids[index] in members:
                        found.append((ranking.key(index), ranking.ids[index]))
                        if len(found) == need:
                            break
                break
        part = indexes[start : start + size]
        start += size
        ids = [ranking.ids[index] for index in part]
        matching = set(queryset.order_by().filter(pk__in=ids).values_list("pk", flat=True))
        found += [(ranking.key(index), ranking.ids[index]) for index in part
                  if ranking.ids[index] in matching]  # fmt: skip
    return found[:need]


def _row_after(queryset: QuerySet[Company], created_at: datetime, pk: int, backwards: bool):
    # One row comparison, which PostgreSQL answers from the (tenant, created_at, id) index.
    table = Company._meta.db_table
    operator = ">" if backwards else "<"
    return queryset.filter(
        RawSQL(  # noqa: S611 (fixed columns; the values are parameters)
            f'("{table}"."created_at", "{table}"."id") {operator} (%s, %s)',
            [created_at, pk],
            output_field=BooleanField(),
        )
    )


def _unranked(
    queryset: QuerySet[Company], ranking: Ranking, after: Key | None, backwards: bool, need: int
) -> list:
    """Up to `need` (key, id) of the filtered companies the ranking does not hold,
    newest first (oldest first backwards), after the `after` key."""
    order = ("created_at", "id") if backwards else ("-created_at", "-id")
    last = None
    if after is not None:
        last = (EPOCH + timedelta(microseconds=-after[1]), -after[2])
    found: list = []
    for size in _chunks(2 * need):
        page = queryset.order_by(*order)
        if last is not None:
            page = _row_after(page, *last, backwards)
        rows = list(page.values_list("pk", "created_at")[:size])
        found += [((1, -_micros(created), -pk), pk) for pk, created in rows
                  if not ranking.holds(pk)]  # fmt: skip
        if len(rows) < size or len(found) >= need:
            break
        last = (rows[-1][1], rows[-1][0])
    return found[:need]


def _walk(
    queryset: QuerySet[Company],
    ranking: Ranking,
    cursor: Key | None,
    backwards: bool,
    need: int,
    filtered: bool,
) -> list:
    """Up to `need` (key, id) past the cursor, nearest first, in the given direction:
    the ranked companies, then the others (backwards: the other way round)."""
    if not backwards:
        found = []
        if cursor is None or cursor[0] == 0:
            begin = 0 if cursor is None else ranking.position(cursor, after=True)
            found = _ranked(queryset, ranking, range(begin, len(ranking)), need, filtered)
        if len(found) < need:
            tail_after = cursor if cursor is not None and cursor[0] == 1 else None
            found += _unranked(queryset, ranking, tail_after, False, need - len(found))
        return found
    found = []
    if cursor[0] == 1:
        found = _unranked(queryset, ranking, cursor, True, need)
        end = len(ranking)
    else:
        end = ranking.position(cursor, after=False)
    if len(found) < need:
        found += _ranked(queryset, ranking, range(end - 1, -1, -1), need - len(found), filtered)
    return found


@dataclass(frozen=True, slots=True)
class RankedPage:
    page: Page
    counts: dict[int, int]  # the lead counts of the page's rows
    as_of: datetime | None  # when the order and counts come from a cached ranking


def ranked_page(queryset: QuerySet[Company], request: HttpRequest, *, filtered: bool) -> RankedPage:
    """One "most leads" page of the filtered companies (module docstring), with the
    ranking's counts of its rows (live ones for the companies it does not hold)."""
    raw = request.GET.get("cursor")
    cursor, backwards = (_decode(raw) if raw else None) or (None, False)
    ranking = company_ranking(request.tenant.id)
    window = _walk(queryset, ranking, cursor, backwards, PAGE_SIZE + 1, filtered)
    more = len(window) > PAGE_SIZE
    window = window[:PAGE_SIZE]
    if backwards:
        window.reverse()
    counts = {pk: -key[1] for key, pk in window if key[0] == 0}
    counts |= selectors.company_lead_counts([pk for key, pk in window if key[0] == 1])
    by_id = Company.objects.in_bulk([pk for _key, pk in window])
    has_next = (more if not backwards else True) and bool(window)
    has_previous = (more if backwards else cursor is not None) and bool(window)
    page = Page(
        rows=[by_id[pk] for _key, pk in window if pk in by_id],
        sort=RANKED_SORT,
        next_cursor=_encode(window[-1][0], False) if has_next else None,
        previous_cursor=_encode(window[0][0], True) if has_previous else None,
    )
    return RankedPage(
        page=page, counts=counts, as_of=ranking.computed_at if ranking.cached else None
    )


# --- The page ---------------------------------------------------------------------------------


def _industries(tenant_id: int) -> list[str]:
    key = _cache_key("company-industries", tenant_id)
    values = cache.get(key)
    if values is None:
        values = selectors.company_industries()
        cache.set(key, values, INDUSTRIES_TTL)
    return values


def _context(request: HttpRequest) -> dict:
    filterset = CompanyListFilter(
        request.GET, queryset=selectors.company_list(), industries=_industries(request.tenant.id)
    )
    filtered = filterset.is_filtered()
    as_of = None
    if request.GET.get("sort") == RANKED_SORT:
        ranked = ranked_page(filterset.qs, request, filtered=filtered)
        page, counts, as_of = ranked.page, ranked.counts, ranked.as_of
    else:
        page = keyset_page(_CompanyPager(), filterset.qs, request)
        counts = selectors.company_lead_counts([company.pk for company in page.rows])
    return {
        "filter": filterset,
        "page": page,
        "rows": [(company, counts.get(company.pk, 0)) for company in page.rows],
        "sort_choices": COMPANY_SORT_CHOICES,
        "is_filtered": filtered,
        "is_first_page": not request.GET.get("cursor"),
        "ranked_as_of": as_of,
    }


@tenant_view
def index(request: HttpRequest) -> HttpResponse:
    """Everyone in the tenant reads the company list."""
    context = _context(request)
    # htmx swaps only the results in; a history restore (back button) needs the page.
    partial = request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request
    response = TemplateResponse(
        request, "leads/_company_results.html" if partial else "leads/companies.html", context
    )
    patch_vary_headers(response, ["HX-Request"])
    return response
