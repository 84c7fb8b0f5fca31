"""The activity stream: append-only events of a lead (or of a visitor not yet known).

`activities_ingest` is the batch path (API batch endpoint, email-event webhooks,
trackers): up to 1,000 items validated in plain Python, emails resolved to lead ids
in one query, lead and campaign ids checked in one query each, and the rows written
in one INSERT. Per-item results say what happened to each item, so a bad item never
costs the good ones. An `email_unsubscribed` activity also withdraws the lead's
marketing-email consent (and suppresses the address), set-based as well.
"""

import datetime
import json
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from accounts.tenancy import tenant_scope
from leads.models import (
    Activity,
    ActivityType,
    Channel,
    ConsentEvent,
    ConsentPurpose,
    ConsentStatus,
    Lead,
    Suppression,
    Visitor,
)
from leads.normalize import NormalizationError, normalize_email
from leads.scoring.services import rescore_after_commit

MAX_BATCH = 1000
MAX_PROPERTIES_BYTES = 16_384
ACTIVITY_TYPES = frozenset(ActivityType.values)
CHANNELS = frozenset(Channel.values)


def _campaign_model():
    # The campaign FK is a lazy string: leads reads the table without importing campaigns.
    return Activity._meta.get_field("campaign").related_model


def _occurred_at(raw: Any) -> datetime.datetime:
    if raw is None or raw == "":
        return timezone.now()
    if isinstance(raw, datetime.datetime):
        value = raw
    elif isinstance(raw, str):
        try:
            # C-speed ISO 8601 (accepts "Z" since Python 3.11); Django's parser as fallback.
            value = datetime.datetime.fromisoformat(raw)
        except ValueError:
            try:
                value = parse_datetime(raw)
            except ValueError:
                value = None
        if value is None:
            raise ValueError(_("Enter a date and time in ISO 8601."))
    else:
        raise ValueError(_("Enter a date and time in ISO 8601."))
    if timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.UTC)
    return value


def _properties(raw: Any) -> dict:
    return json.loads(_properties_json(raw))


def _properties_json(raw: Any) -> str:
    """The properties as the JSON text that is stored (checked for shape and size)."""
    if raw is None:
        return "{}"
    if not isinstance(raw, dict):
        raise ValueError(_("Properties are an object."))
    try:
        text = json.dumps(raw, ensure_ascii=False, default=str, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        raise ValueError(_("Properties are not valid JSON.")) from None
    if "\\u0000" in text:
        # PostgreSQL's jsonb has no NUL character: one would fail the whole batch.
        raise ValueError(_("Properties may not contain NUL characters."))
    if len(text) > MAX_PROPERTIES_BYTES:
        raise ValueError(_("Properties are too large."))
    return text


_SIMPLE_EMAIL = re.compile(r"^[a-z0-9._%+\-]+@[a-z0-9.\-]+$")


def _email_key(raw: str) -> str:
    """The form a lead's stored email has. Only used to look leads up, so a full
    syntax check is not needed: an address no lead has is an error either way. The
    common plain-ASCII case skips email_validator (a tenth of a millisecond each)."""
    value = raw.strip().lower()
    if _SIMPLE_EMAIL.match(value):
        return value
    return normalize_email(raw)


def _int_id(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).isdigit():
        raise ValueError(_("Enter an id."))
    return int(raw)


def activity_record(
    *,
    tenant_id: int,
    type: str,
    lead: Lead | None = None,
    visitor: Visitor | None = None,
    occurred_at: datetime.datetime | str | None = None,
    campaign_id: int | None = None,
    channel: str,
    properties: dict | None = None,
    savepoint: bool = True,
) -> Activity:
    """Append one activity for a lead or an anonymous visitor (forms, tracking, notes).
    Raises ValidationError naming the field, having written nothing: with
    savepoint=False, a caller in the tenant's scope that rolls back on errors (the
    public form view) has it join its transaction without a savepoint."""
    errors: dict[str, list[str]] = {}
    if type not in ACTIVITY_TYPES:
        errors["type"] = [_("Not an activity type.")]
    if lead is None and visitor is None:
        errors["lead_id"] = [_("An activity belongs to a lead or a visitor.")]
    if channel not in CHANNELS:
        errors["channel"] = [_("Not a channel.")]
    try:
        when = _occurred_at(occurred_at)
    except ValueError as exc:
        errors["occurred_at"] = [str(exc)]
    try:
        properties = _properties(properties)
    except ValueError as exc:
        errors["properties"] = [str(exc)]
    if errors:
        raise ValidationError(errors)
    with tenant_scope(tenant_id, savepoint=savepoint):
        activity = Activity(
            tenant_id=tenant_id,
            lead=lead,
            visitor=visitor,
            type=type,
            occurred_at=when,
            campaign_id=campaign_id,
            channel=channel,
            properties=properties,
        )
        activity.id = _insert_one(activity)
        if activity.id is None:
            raise ValidationError({"campaign_id": [_("No campaign with this id.")]})
        activity._state.adding = False
        if lead is not None:
            rescore_after_commit(tenant_id, [lead.id])
        if type == ActivityType.EMAIL_UNSUBSCRIBED and lead is not None:
            _withdraw_email_consent(tenant_id, [(lead.id, when, activity.id)], channel)
        return activity


def _insert_one(activity: Activity) -> int | None:
    """INSERT the activity if its campaign (when it has one) is the tenant's: the check
    rides in the INSERT (RLS limits the campaign lookup to the tenant), so one round
    trip instead of two. The new id, or None when the campaign is not found."""
    campaign_model = _campaign_model()
    if connection.vendor != "postgresql":
        # SQLite (development): the plain ORM, two statements.
        if activity.campaign_id is not None and (
            not campaign_model.objects.filter(pk=activity.campaign_id).exists()
        ):
            return None
        activity.save(force_insert=True)
        return activity.id
    table, campaigns = Activity._meta.db_table, campaign_model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (tenant_id, lead_id, visitor_id, type, occurred_at,"
            " campaign_id, channel, properties, created_at)"
            " SELECT %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s"
            f" WHERE %s::bigint IS NULL"
            f" OR EXISTS (SELECT 1 FROM {campaigns} WHERE tenant_id = %s AND id = %s)"
            " RETURNING id",
            [
                activity.tenant_id,
                activity.lead_id,
                activity.visitor_id,
                activity.type,
                activity.occurred_at,
                activity.campaign_id,
                activity.channel,
                json.dumps(activity.properties, ensure_ascii=False),
                activity.created_at,
                activity.campaign_id,
                activity.tenant_id,
                activity.campaign_id,
            ],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def activities_ingest(
    *, tenant_id: int, items: list[dict], channel: str = Channel.API
) -> list[dict]:
    """Append up to 1,000 activities: `{lead_id | email, type, occurred_at,
    campaign_id, properties}` each. Returns one result per item, in order:
    `{"index", "status": "created", "id"}` or `{"index", "status": "error",
    "errors": {field: [message]}}`. Set-based: a constant number of queries whatever
    the batch size. An email that matches no lead is an error (create leads first,
    e.g. through the leads batch endpoint); a merged lead's id reaches the lead it
    was merged into."""
    if len(items) > MAX_BATCH:
        raise ValidationError({"items": [_("At most %(n)d items per request.") % {"n": MAX_BATCH}]})
    if channel not in CHANNELS:
        raise ValidationError({"channel": [_("Not a channel.")]})
    results: list[dict] = [{"index": index} for index in range(len(items))]
    rows: list[dict | None] = [None] * len(items)
    emails: set[str] = set()
    lead_ids: set[int] = set()
    campaign_ids: set[int] = set()
    # 1. Shapes and values, in Python.
    for index, item in enumerate(items):
        errors: dict[str, list[str]] = {}
        row: dict[str, Any] = {}
        if not isinstance(item, dict):
            results[index].update(status="error", errors={"item": [_("Each item is an object.")]})
            continue
        if item.get("type") not in ACTIVITY_TYPES:
            errors["type"] = [_("Not an activity type.")]
        row["type"] = item.get("type")
        if item.get("lead_id") not in (None, ""):
            try:
                row["lead_id"] = _int_id(item["lead_id"])
                lead_ids.add(row["lead_id"])
            except ValueError as exc:
                errors["lead_id"] = [str(exc)]
        elif item.get("email"):
            try:
                row["email"] = _email_key(str(item["email"]))
                emails.add(row["email"])
            except NormalizationError:
                errors["email"] = [_("Enter a valid email address.")]
        else:
            errors["lead_id"] = [_("Give lead_id or email.")]
        try:
            row["occurred_at"] = _occurred_at(item.get("occurred_at"))
        except ValueError as exc:
            errors["occurred_at"] = [str(exc)]
        if item.get("campaign_id") not in (None, ""):
            try:
                row["campaign_id"] = _int_id(item["campaign_id"])
                campaign_ids.add(row["campaign_id"])
            except ValueError as exc:
                errors["campaign_id"] = [str(exc)]
        try:
            row["properties"] = _properties_json(item.get("properties"))
        except ValueError as exc:
            errors["properties"] = [str(exc)]
        unknown = set(item) - {
            "lead_id",
            "email",
            "type",
            "occurred_at",
            "campaign_id",
            "properties",
        }
        for key in sorted(unknown):
            errors[str(key)] = [_("Unknown field.")]
        if errors:
            results[index].update(status="error", errors=errors)
        else:
            rows[index] = row
    with tenant_scope(tenant_id):
        # 2. References, one query each.
        by_email: dict[str, int] = {}
        if emails:
            # A merged lead's email is cleared, so only live leads answer here.
            by_email = dict(_lookup("email, id", "email", list(emails)))
        known_leads: dict[int, int] = {}
        if lead_ids:
            known_leads = {
                lead_id: merged_into or lead_id
                for lead_id, merged_into in _lookup("id, merged_into_id", "id", list(lead_ids))
            }
        known_campaigns: set[int] = set()
        if campaign_ids:
            known_campaigns = set(
                _campaign_model().objects.filter(id__in=campaign_ids).values_list("id", flat=True)
            )
        # 3. Resolve, then one INSERT for every good row.
        columns: dict[str, list] = {
            "lead_id": [],
            "type": [],
            "occurred_at": [],
            "campaign_id": [],
            "properties": [],
        }
        positions: list[int] = []
        for index, row in enumerate(rows):
            if row is None:
                continue
            errors = {}
            if "email" in row:
                lead_id = by_email.get(row["email"])
                if lead_id is None:
                    errors["email"] = [_("No lead has this email.")]
            else:
                lead_id = known_leads.get(row["lead_id"])
                if lead_id is None:
                    errors["lead_id"] = [_("No lead with this id.")]
            campaign_id = row.get("campaign_id")
            if campaign_id is not None and campaign_id not in known_campaigns:
                errors["campaign_id"] = [_("No campaign with this id.")]
            if errors:
                results[index].update(status="error", errors=errors)
                continue
            columns["lead_id"].append(lead_id)
            columns["type"].append(row["type"])
            columns["occurred_at"].append(row["occurred_at"])
            columns["campaign_id"].append(campaign_id)
            columns["properties"].append(row["properties"])
            positions.append(index)
        ids = _insert_rows(tenant_id, channel, columns) if positions else []
        rescore_after_commit(tenant_id, columns["lead_id"] if positions else [])
        unsubscribes = []
        for position, (index, activity_id) in enumerate(zip(positions, ids, strict=True)):
            results[index].update(status="created", id=activity_id)
            if columns["type"][position] == ActivityType.EMAIL_UNSUBSCRIBED:
                unsubscribes.append(
                    (columns["lead_id"][position], columns["occurred_at"][position], activity_id)
                )
        if unsubscribes:
            _withdraw_email_consent(tenant_id, unsubscribes, channel)
    return results


def _lookup(columns: str, key: str, values: list) -> list[tuple]:
    """Leads whose `key` is in `values`: `= ANY(%s)` takes the list as one array
    parameter (an IN list of 1,000 placeholders costs more to build than to run).
    The caller's tenant scope applies (RLS), and tenant_id keeps it on the index."""
    from accounts.tenancy import current_tenant_id

    if connection.vendor != "postgresql":
        # SQLite (development): the ORM's IN list.
        fields = [name.strip() for name in columns.split(",")]
        return list(Lead.objects.filter(**{f"{key}__in": values}).values_list(*fields))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {Lead._meta.db_table} WHERE tenant_id = %s AND {key} = ANY(%s)",
            [current_tenant_id(), values],
        )
        return cursor.fetchall()


def _insert_rows(tenant_id: int, channel: str, columns: dict[str, list]) -> list[int]:
    """One INSERT … SELECT FROM jsonb_to_recordset RETURNING id for the whole batch: one
    round trip, no model instances (Django's bulk_create costs more than the insert).
    Rows come back in the arrays' order, as Django's own bulk_create relies on.
    (COPY is not allowed into a table with row-level security.)"""
    table = Activity._meta.db_table
    now = timezone.now()
    count = len(columns["lead_id"])
    if connection.vendor != "postgresql":
        # SQLite (development): bulk_create, which returns ids there too.
        created = Activity.objects.bulk_create(
            [
                Activity(
                    tenant_id=tenant_id,
                    lead_id=lead_id,
                    type=kind,
                    occurred_at=occurred_at,
                    campaign_id=campaign_id,
                    channel=channel,
                    properties=json.loads(properties),
                    created_at=now,
                )
                for lead_id, kind, occurred_at, campaign_id, properties in zip(
                    columns["lead_id"],
                    columns["type"],
                    columns["occurred_at"],
                    columns["campaign_id"],
                    columns["properties"],
                    strict=True,
                )
            ]
        )
        return [activity.id for activity in created]
    # The batch travels as one JSON document: psycopg sends one text parameter instead
    # of adapting five 1,000-element arrays in Python. It is assembled from pieces that
    # are JSON already: ids, types from ACTIVITY_TYPES, ISO timestamps, and each item's
    # properties as the checked JSON text (embedded as an object, so it is neither
    # escaped again here nor parsed twice by PostgreSQL).
    batch = (
        "["
        + ",".join(
            f'{{"l":{lead_id},"t":"{kind}","o":"{occurred_at.isoformat()}",'
            f'"c":{"null" if campaign_id is None else campaign_id},"p":{properties}}}'
            for lead_id, kind, occurred_at, campaign_id, properties in zip(
                columns["lead_id"],
                columns["type"],
                columns["occurred_at"],
                columns["campaign_id"],
                columns["properties"],
                strict=True,
            )
        )
        + "]"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table}"
            " (tenant_id, lead_id, type, occurred_at, campaign_id, channel, properties,"
            " created_at)"
            " SELECT %s, b.l, b.t, b.o, b.c, %s, b.p, %s"
            " FROM ROWS FROM (jsonb_to_recordset(%s::jsonb)"
            " AS (l bigint, t text, o timestamptz, c bigint, p jsonb)) WITH ORDINALITY AS b"
            " ORDER BY b.ordinality"
            " RETURNING id",
            [tenant_id, channel, now, batch],
        )
        ids = [row[0] for row in cursor.fetchall()]
    if len(ids) != count:
        raise RuntimeError("the activity insert returned a different number of rows")
    return ids


def _withdraw_email_consent(
    tenant_id: int, unsubscribes: list[tuple[int, datetime.datetime, int]], channel: str
) -> None:
    """Set-based consent withdrawal for unsubscribe activities: one history row each,
    the leads' status, and their addresses on the suppression list."""
    from accounts import events

    lead_ids = list({lead_id for lead_id, _when, _id in unsubscribes})
    ConsentEvent.objects.bulk_create(
        [
            ConsentEvent(
                tenant_id=tenant_id,
                lead_id=lead_id,
                purpose=ConsentPurpose.EMAIL_MARKETING,
                status=ConsentStatus.WITHDRAWN,
                channel=channel,
                proof={"source": f"activity:{activity_id}"},
                occurred_at=when,
            )
            for lead_id, when, activity_id in unsubscribes
        ]
    )
    changed = list(
        Lead.objects.filter(id__in=lead_ids)
        .exclude(email_consent=ConsentStatus.WITHDRAWN)
        .values_list("id", "email")
    )
    Lead.objects.filter(id__in=lead_ids).update(
        email_consent=ConsentStatus.WITHDRAWN, updated_at=timezone.now()
    )
    addresses = list(
        Lead.objects.filter(id__in=lead_ids).exclude(email="").values_list("email", flat=True)
    )
    Suppression.objects.bulk_create(
        [
            Suppression(tenant_id=tenant_id, email=email, reason=Suppression.Reason.UNSUBSCRIBED)
            for email in addresses
        ],
        ignore_conflicts=True,
    )
    events.emit_many(
        "lead.consent_changed",
        tenant_id=tenant_id,
        payloads=[
            {
                "v": 1,
                "lead_id": lead_id,
                "email": email,
                "purpose": ConsentPurpose.EMAIL_MARKETING,
                "status": ConsentStatus.WITHDRAWN,
                "channel": channel,
            }
            for lead_id, email in changed
        ],
    )
