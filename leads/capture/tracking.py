"""Page views from a tenant's own site, without cookies.

Our script (leads/static/leads/ryorin.js) keeps a random visitor key in the page's
localStorage and sends each page view to /api/public/track/ with the tenant's form key.
A visitor is anonymous (Activity rows with a Visitor and no lead) until something names
the lead: a signed tracking token from an email link (`?rt=…`) or handed back after a
form submission. Then the visitor is tied to the lead, and its anonymous activities are
attached to the lead in one UPDATE.
"""

import re
from urllib.parse import parse_qs, urlsplit

from django.db import connection
from django.utils import timezone

from leads.models import Activity, ActivityType, Channel, Lead, Visitor
from leads.scoring.services import rescore_after_commit
from leads.services import activity_record

VISITOR_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
MAX_URL = 1000


def visitor_key_valid(key: str | None) -> bool:
    return bool(key) and isinstance(key, str) and VISITOR_KEY_RE.match(key) is not None


def utm_from_url(url: str) -> dict[str, str]:
    """utm_* parameters of a page address."""
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:
        return {}
    return {key: query[key][0][:100] for key in UTM_KEYS if query.get(key) and query[key][0]}


def clean_utm(values: dict | None) -> dict[str, str]:
    if not isinstance(values, dict):
        return {}
    return {
        key: str(values[key]).strip()[:100]
        for key in UTM_KEYS
        if isinstance(values.get(key), str | int) and str(values[key]).strip()
    }


def visitor_touch(*, tenant_id: int, key: str) -> Visitor:
    """The visitor with this key, created on first sight; one statement either way
    (INSERT … ON CONFLICT), so two tabs racing each other cannot both create it."""
    now = timezone.now()
    table = Visitor._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (tenant_id, key, first_seen_at, last_seen_at)"
            " VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (tenant_id, key) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at"
            " RETURNING id, lead_id, first_seen_at",
            [tenant_id, key, now, now],
        )
        visitor_id, lead_id, first_seen_at = cursor.fetchone()
    return Visitor(
        id=visitor_id,
        tenant_id=tenant_id,
        key=key,
        lead_id=lead_id,
        first_seen_at=first_seen_at,
        last_seen_at=now,
    )


def visitor_identify(*, tenant_id: int, visitor: Visitor, lead: Lead) -> int:
    """The visitor turns out to be `lead`: tie them, and hand the visitor's anonymous
    activities to the lead in one UPDATE. Activities already tied to a lead (an
    earlier person on a shared browser) stay where they are. Returns how many moved."""
    if visitor.lead_id != lead.id:
        Visitor.objects.filter(pk=visitor.pk).update(lead=lead)
        visitor.lead_id = lead.id
    moved = Activity.objects.filter(visitor_id=visitor.pk, lead__isnull=True).update(lead=lead)
    if moved:
        rescore_after_commit(tenant_id, [lead.id])
    return moved


def visitor_identified_sql(
    *, tenant_id: int, key: str, lead_id: int, now, when: str = ""
) -> tuple[str, list]:
    """The CTEs of visitor_touch_identified, for statements that do more: `visitor` (the
    visitor created or touched, tied to the lead; `created` says which) and `moved` (its
    anonymous activities handed to the lead, when it existed). `when`: an SQL condition
    the write waits on (another CTE of the statement, as the form submission's row)."""
    visitors, activities = Visitor._meta.db_table, Activity._meta.db_table
    return (
        f"visitor AS ("
        f" INSERT INTO {visitors} (tenant_id, key, first_seen_at, last_seen_at, lead_id)"
        f" SELECT %s, %s, %s, %s, %s{f' WHERE {when}' if when else ''}"
        "  ON CONFLICT (tenant_id, key) DO UPDATE"
        "  SET last_seen_at = EXCLUDED.last_seen_at, lead_id = EXCLUDED.lead_id"
        "  RETURNING id, first_seen_at, (xmax = 0) AS created"
        f"), moved AS ("
        f" UPDATE {activities} a SET lead_id = %s FROM visitor v"
        "  WHERE NOT v.created AND a.tenant_id = %s AND a.visitor_id = v.id"
        "  AND a.lead_id IS NULL RETURNING 1)",
        [tenant_id, key, now, now, lead_id, lead_id, tenant_id],
    )


def visitor_touch_identified(*, tenant_id: int, key: str, lead: Lead) -> Visitor:
    """visitor_touch then visitor_identify in one statement (a form submission names
    the visitor at once): the visitor is created or touched already tied to the lead,
    and, when it existed, its anonymous activities move to the lead. A visitor created
    here has no activities yet, so the common case (a first visit) writes one row."""
    now = timezone.now()
    ctes, params = visitor_identified_sql(tenant_id=tenant_id, key=key, lead_id=lead.id, now=now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {ctes} SELECT v.id, v.first_seen_at, (SELECT count(*) FROM moved)"
            " FROM visitor v",
            params,
        )
        visitor_id, first_seen_at, _moved = cursor.fetchone()
    return visitor_for(
        tenant_id=tenant_id, key=key, lead=lead, row=(visitor_id, first_seen_at), now=now
    )


def visitor_for(*, tenant_id: int, key: str, lead: Lead, row: tuple, now) -> Visitor:
    """The Visitor instance of a row written by visitor_identified_sql."""
    visitor_id, first_seen_at = row
    visitor = Visitor(
        id=visitor_id,
        tenant_id=tenant_id,
        key=key,
        lead_id=lead.id,
        first_seen_at=first_seen_at,
        last_seen_at=now,
    )
    visitor._state.adding = False
    return visitor


def _current_lead(lead_id: int) -> Lead | None:
    """The lead, or the one it was merged into."""
    lead = Lead.objects.filter(pk=lead_id).only("id", "merged_into_id").first()
    if lead is not None and lead.merged_into_id is not None:
        lead = Lead.objects.filter(pk=lead.merged_into_id).only("id").first() or lead
    return lead


def page_view_record(
    *,
    tenant_id: int,
    url: str,
    referrer: str = "",
    utm: dict[str, str] | None = None,
    title: str = "",
    visitor_key: str = "",
    lead_id: int | None = None,
) -> Activity:
    """One page view, in the current tenant scope: the lead's when the token or the
    visitor's earlier identification names one, else the anonymous visitor's."""
    lead = _current_lead(lead_id) if lead_id is not None else None
    if visitor_key and lead is not None:
        visitor = visitor_touch_identified(tenant_id=tenant_id, key=visitor_key, lead=lead)
    else:
        visitor = visitor_touch(tenant_id=tenant_id, key=visitor_key) if visitor_key else None
        if visitor is not None and visitor.lead_id is not None:
            lead = _current_lead(visitor.lead_id)
    properties = {"url": url[:MAX_URL], "referrer": referrer[:MAX_URL]}
    if title:
        properties["title"] = title[:300]
    properties.update({**utm_from_url(url), **(utm or {})})
    return activity_record(
        tenant_id=tenant_id,
        type=ActivityType.PAGE_VIEW,
        lead=lead,
        visitor=visitor,
        channel=Channel.TRACKING,
        properties=properties,
    )
