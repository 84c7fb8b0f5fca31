"""Every write to campaigns and their members: one function per use case, transactional.

Rules enforced here (views, API, admin and the hook only call these):

- Marketing, admins and owners run campaigns; sales and read-only members only see
  them (`origin.role`; the platform itself, with no role, is not limited).
- A campaign ends on or after it starts; money is a non-negative Decimal in an ISO 4217
  currency, no finer than the currency's minor unit; channel and status are choices.
- A lead is in a campaign once. Adding it again keeps the *further* status:
  invited < registered < no-show < responded < attended. So a no-show replaces only
  invited/registered, and a later response or attendance replaces a no-show. Only an
  explicit status change (membership_set_status) may go back.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts import events
from accounts.models import Role
from accounts.selectors import tenant_staff
from accounts.services import Origin, audit_record
from accounts.tenancy import tenant_scope
from campaigns.models import Campaign, CampaignMembership
from campaigns.money import to_money, validate_amount, validate_currency
from leads.models import Lead

#: Who may create, change and delete campaigns and their members.
CAMPAIGN_WRITE_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.MARKETING})

#: Fields a caller may set on a campaign (owner by id).
CAMPAIGN_FIELDS = frozenset(
    {
        "name",
        "channel",
        "status",
        "description",
        "starts_on",
        "ends_on",
        "currency",
        "budget",
        "actual_cost",
        "target_leads",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
        "owner_id",
    }
)
MONEY_FIELDS = ("currency", "budget", "actual_cost")
CENT = Decimal("0.01")

MemberStatus = CampaignMembership.Status

#: How far along a member is; re-adding a lead never moves it to a lower rank.
STATUS_RANK: dict[str, int] = {
    MemberStatus.INVITED: 0,
    MemberStatus.REGISTERED: 1,
    MemberStatus.NO_SHOW: 2,
    MemberStatus.RESPONDED: 3,
    MemberStatus.ATTENDED: 4,
}

# Per-lead outcomes of adding leads to a campaign.
ADDED = "added"  # new member
UPDATED = "updated"  # was a member; status moved further
UNCHANGED = "unchanged"  # was a member at this status or further
NOT_FOUND = "not_found"  # no such lead in the tenant (or merged into another)
ADD_RESULTS = (ADDED, UPDATED, UNCHANGED, NOT_FOUND)


def require_campaign_writer(origin: Origin) -> None:
    """Raise PermissionDenied unless the origin may change campaigns."""
    if origin.role is not None and origin.role not in CAMPAIGN_WRITE_ROLES:
        raise PermissionDenied(_("Your role does not allow changing campaigns."))


# --- Campaigns ---------------------------------------------------------------------------


def _clean(campaign: Campaign, *, owner_changed: bool) -> None:
    """Validate a campaign about to be saved; normalises currency and money in place."""
    errors: dict[str, list[ValidationError]] = {}

    def refuse(field: str, error: ValidationError) -> None:
        errors.setdefault(field, []).extend(error.error_list)

    campaign.name = (campaign.name or "").strip()
    try:
        campaign.currency = validate_currency(campaign.currency)
    except ValidationError as exc:
        refuse("currency", exc)
    for field in ("budget", "actual_cost"):
        try:
            amount = to_money(getattr(campaign, field))
            setattr(campaign, field, amount)
            if "currency" not in errors:
                validate_amount(amount, campaign.currency)
                # As stored, so the caller's object and the audit log show it so too.
                setattr(campaign, field, amount.quantize(CENT))
        except ValidationError as exc:
            refuse(field, exc)
    if campaign.starts_on and campaign.ends_on and campaign.ends_on < campaign.starts_on:
        refuse("ends_on", ValidationError(_("The end is before the start."), code="invalid"))
    if (
        owner_changed
        and campaign.owner_id is not None
        and not tenant_staff(campaign.tenant_id, user_ids=[campaign.owner_id])
    ):
        # Someone who works in the tenant: a member, or agency staff serving it.
        message = _(
            "This person does not work in this tenant: choose a member, or agency staff serving it."
        )
        refuse("owner", ValidationError(message, code="invalid"))
    try:
        # Choices, lengths, required fields, date parsing. The end-after-start check is
        # ours above (naming the field); uniqueness has no rule on campaigns.
        campaign.full_clean(
            exclude=[*errors, "tenant", "owner"],
            validate_unique=False,
            validate_constraints=False,
        )
    except ValidationError as exc:
        for field, field_errors in exc.error_dict.items():
            errors.setdefault(field, []).extend(field_errors)
    if errors:
        raise ValidationError(errors)


def _check_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - CAMPAIGN_FIELDS
    if unknown:
        raise TypeError(f"Not campaign fields: {', '.join(sorted(unknown))}")


def campaign_create(
    *, tenant_id: int, origin: Origin, name: str, channel: str, **fields: Any
) -> Campaign:
    """Create a campaign (fields: see CAMPAIGN_FIELDS)."""
    require_campaign_writer(origin)
    _check_fields(fields)
    with tenant_scope(tenant_id):
        campaign = Campaign(tenant_id=tenant_id, name=name, channel=channel, **fields)
        _clean(campaign, owner_changed=True)
        campaign.save()
    return campaign


def _money_metadata(before: dict[str, Any], campaign: Campaign) -> dict:
    return {
        field: {"from": str(before[field]), "to": str(getattr(campaign, field))}
        for field in MONEY_FIELDS
        if field in before and before[field] != getattr(campaign, field)
    }


def campaign_update(*, campaign: Campaign, origin: Origin, **changes: Any) -> Campaign:
    """Change a campaign's fields. Works on the locked current row, so checks that span
    fields (end after start, amounts in the currency) see what is really stored and two
    editors never overwrite each other's other fields. Money changes are audited."""
    require_campaign_writer(origin)
    _check_fields(changes)
    with tenant_scope(campaign.tenant_id):
        current = Campaign.objects.select_for_update().get(pk=campaign.pk)
        before = {field: getattr(current, field) for field in CAMPAIGN_FIELDS}
        for field, value in changes.items():
            setattr(current, field, value)
        # An owner who has left stays until someone changes it: only a new one is checked.
        _clean(current, owner_changed=current.owner_id != before["owner_id"])
        changed = [f for f in CAMPAIGN_FIELDS if getattr(current, f) != before[f]]
        if not changed:
            return current
        current.updated_at = timezone.now()
        current.save(update_fields=[*changed, "updated_at"])
        if money := _money_metadata(before, current):
            audit_record(
                tenant_id=current.tenant_id,
                origin=origin,
                action="campaign.cost_changed",
                target=current,
                metadata=money,
            )
    return current


def campaign_cost_update(
    *,
    campaign: Campaign,
    origin: Origin,
    actual_cost: Decimal | str | None = None,
    add: Decimal | str | None = None,
) -> Campaign:
    """Record what a campaign cost: set `actual_cost`, or `add` spend to it (a daily ad
    spend sync). Adding happens under the row lock, so concurrent additions all count."""
    if (actual_cost is None) == (add is None):
        raise TypeError("Give exactly one of actual_cost and add.")
    if actual_cost is not None:
        return campaign_update(campaign=campaign, origin=origin, actual_cost=actual_cost)
    try:
        amount = to_money(add)
    except ValidationError as exc:
        raise ValidationError({"add": exc.error_list}) from exc
    if amount < 0:
        raise ValidationError({"add": [_("Amounts cannot be negative.")]})
    with tenant_scope(campaign.tenant_id):
        current = Campaign.objects.select_for_update().only("actual_cost").get(pk=campaign.pk)
        return campaign_update(
            campaign=campaign, origin=origin, actual_cost=current.actual_cost + amount
        )


@transaction.atomic
def campaign_delete(*, campaign: Campaign, origin: Origin) -> None:
    """Delete a campaign and its memberships; leads, forms, imports and activities it
    was the source of keep existing without it. Audited."""
    require_campaign_writer(origin)
    with tenant_scope(campaign.tenant_id):
        audit_record(
            tenant_id=campaign.tenant_id,
            origin=origin,
            action="campaign.deleted",
            target=campaign,
            metadata={
                "name": campaign.name,
                "channel": campaign.channel,
                "status": campaign.status,
                "actual_cost": str(campaign.actual_cost),
                "currency": campaign.currency,
            },
        )
        campaign.delete()


# --- Members -----------------------------------------------------------------------------


def _rank_sql(column: str) -> str:
    whens = " ".join(f"WHEN '{status}' THEN {rank}" for status, rank in STATUS_RANK.items())
    return f"(CASE {column} {whens} ELSE -1 END)"


def _lead_ids(values: list[int]) -> list[int]:
    ids = set()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError({"lead_ids": [_("Lead ids are integers.")]})
        ids.add(value)
    return sorted(ids)  # one lock order for every writer: no deadlocks between batches


def _add_members_sql() -> str:
    membership = CampaignMembership._meta.db_table
    lead = Lead._meta.db_table
    campaign = Campaign._meta.db_table
    # The membership's foreign key check would accept another tenant's campaign
    # (row-level security does not apply to it), so the campaign is checked here, in
    # the same statement: without it no lead is valid and nothing is written.
    return f"""
        WITH campaign AS (
            SELECT id FROM {campaign} WHERE tenant_id = %(tenant_id)s AND id = %(campaign_id)s
        ), input AS (
            SELECT DISTINCT unnest(%(lead_ids)s::bigint[]) AS lead_id
        ), valid AS (
            SELECT l.id FROM {lead} l JOIN input i ON l.id = i.lead_id
            WHERE l.tenant_id = %(tenant_id)s AND l.merged_into_id IS NULL
            AND EXISTS (SELECT 1 FROM campaign)
        ), written AS (
            INSERT INTO {membership} AS m
                (tenant_id, campaign_id, lead_id, status, created_at, updated_at)
            SELECT %(tenant_id)s, %(campaign_id)s, v.id, %(status)s, %(now)s, %(now)s
            FROM valid v ORDER BY v.id
            ON CONFLICT (tenant_id, campaign_id, lead_id) DO UPDATE
                SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
                WHERE {_rank_sql("m.status")} < {_rank_sql("EXCLUDED.status")}
            RETURNING m.lead_id, (m.xmax = 0) AS inserted
        )
        SELECT i.lead_id, v.id IS NOT NULL, w.inserted, EXISTS (SELECT 1 FROM campaign)
        FROM input i
        LEFT JOIN valid v ON v.id = i.lead_id
        LEFT JOIN written w ON w.lead_id = i.lead_id
    """


def _add_member(tenant_id: int, campaign_id: int, lead_id: int, status: str) -> str:
    """One lead (a form submission's case): the same rule as _add_members_sql in a plain
    INSERT … SELECT … ON CONFLICT, which PostgreSQL plans in half the time. When it
    writes nothing, a second query tells a missing campaign or lead from a member that
    is already as far."""
    membership, campaign = CampaignMembership._meta.db_table, Campaign._meta.db_table
    lead = Lead._meta.db_table
    params = {
        "tenant_id": tenant_id,
        "campaign_id": campaign_id,
        "lead_id": lead_id,
        "status": status,
        "now": timezone.now(),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {membership} AS m
                    (tenant_id, campaign_id, lead_id, status, created_at, updated_at)
                SELECT %(tenant_id)s, c.id, l.id, %(status)s, %(now)s, %(now)s
                FROM {campaign} c, {lead} l
                WHERE c.tenant_id = %(tenant_id)s AND c.id = %(campaign_id)s
                  AND l.tenant_id = %(tenant_id)s AND l.id = %(lead_id)s
                  AND l.merged_into_id IS NULL
                ON CONFLICT (tenant_id, campaign_id, lead_id) DO UPDATE
                    SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
                    WHERE {_rank_sql("m.status")} < {_rank_sql("EXCLUDED.status")}
                RETURNING (m.xmax = 0)""",
            params,
        )
        row = cursor.fetchone()
        if row is not None:
            return ADDED if row[0] else UPDATED
        cursor.execute(
            f"""SELECT EXISTS (SELECT 1 FROM {campaign}
                               WHERE tenant_id = %(tenant_id)s AND id = %(campaign_id)s),
                       EXISTS (SELECT 1 FROM {lead} WHERE tenant_id = %(tenant_id)s
                               AND id = %(lead_id)s AND merged_into_id IS NULL)""",
            params,
        )
        campaign_found, lead_found = cursor.fetchone()
    if not campaign_found:
        raise _no_such_campaign()
    return UNCHANGED if lead_found else NOT_FOUND


def _add_members_portable(
    tenant_id: int, campaign_id: int, ids: list[int], status: str
) -> dict[int, str]:
    """The same rule with the ORM, for SQLite development databases (no arrays, no
    ON CONFLICT … RETURNING): slower, identical results."""
    valid = set(
        Lead.objects.filter(pk__in=ids, merged_into__isnull=True).values_list("pk", flat=True)
    )
    existing = {
        m.lead_id: m
        for m in CampaignMembership.objects.filter(campaign_id=campaign_id, lead_id__in=valid)
    }
    now = timezone.now()
    results: dict[int, str] = {}
    for lead_id in ids:
        if lead_id not in valid:
            results[lead_id] = NOT_FOUND
        elif lead_id not in existing:
            CampaignMembership.objects.create(
                tenant_id=tenant_id,
                campaign_id=campaign_id,
                lead_id=lead_id,
                status=status,
                created_at=now,
                updated_at=now,
            )
            results[lead_id] = ADDED
        elif STATUS_RANK[existing[lead_id].status] < STATUS_RANK[status]:
            CampaignMembership.objects.filter(pk=existing[lead_id].pk).update(
                status=status, updated_at=now
            )
            results[lead_id] = UPDATED
        else:
            results[lead_id] = UNCHANGED
    return results


def memberships_add_bulk(
    *,
    tenant_id: int,
    campaign_id: int,
    lead_ids: list[int],
    status: str = MemberStatus.RESPONDED,
    origin: Origin | None = None,
    savepoint: bool = True,
) -> dict[int, str]:
    """Add leads to a campaign (see _memberships_add_bulk). New members enter the
    campaign's nurture sequences after commit, through the outbox: nurturing enrols them
    at least once, and a form submission, whose events share one INSERT
    (events.collecting), pays for no statement or publish of its own."""
    with tenant_scope(tenant_id, savepoint=savepoint):
        results = _memberships_add_bulk(
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            lead_ids=lead_ids,
            status=status,
            origin=origin,
            savepoint=False,
        )
        added = [lead_id for lead_id, result in results.items() if result == ADDED]
        if added:
            events.emit_many(
                "campaign.members_added",
                tenant_id=tenant_id,
                payloads=[
                    {
                        "v": 1,
                        "campaign_id": campaign_id,
                        "lead_ids": added[i : i + MEMBERS_PER_EVENT],
                    }
                    for i in range(0, len(added), MEMBERS_PER_EVENT)
                ],
            )
    return results


# An import adding 100,000 members writes 100 events, each a set-based enrolment.
MEMBERS_PER_EVENT = 1000


def _memberships_add_bulk(
    *,
    tenant_id: int,
    campaign_id: int,
    lead_ids: list[int],
    status: str = MemberStatus.RESPONDED,
    origin: Origin | None = None,
    savepoint: bool = True,
) -> dict[int, str]:
    """Add leads to a campaign in one statement (INSERT … ON CONFLICT), keeping each
    existing member's further status (see the module docstring). Returns each distinct
    lead id's outcome: ADDED, UPDATED, UNCHANGED or NOT_FOUND (not a lead of the
    tenant). Ids of another tenant's leads are NOT_FOUND, like missing ones. A campaign
    that is not the tenant's is a ValidationError, with nothing written (so
    savepoint=False may join a caller's transaction in the same tenant scope)."""
    if origin is not None:
        require_campaign_writer(origin)
    if status not in STATUS_RANK:
        raise ValidationError({"status": [_("Unknown member status.")]})
    ids = _lead_ids(lead_ids)
    with tenant_scope(tenant_id, savepoint=savepoint):
        if not ids or connection.vendor != "postgresql":
            if not Campaign.objects.filter(pk=campaign_id).exists():
                raise _no_such_campaign()
            if not ids:
                return {}
            return _add_members_portable(tenant_id, campaign_id, ids, str(status))
        if len(ids) == 1:
            return {ids[0]: _add_member(tenant_id, campaign_id, ids[0], str(status))}
        with connection.cursor() as cursor:
            cursor.execute(
                _add_members_sql(),
                {
                    "lead_ids": ids,
                    "tenant_id": tenant_id,
                    "campaign_id": campaign_id,
                    "status": str(status),
                    "now": timezone.now(),
                },
            )
            rows = cursor.fetchall()
    if not rows[0][3]:
        raise _no_such_campaign()
    results = {}
    for lead_id, found, inserted, _campaign_found in rows:
        if not found:
            results[lead_id] = NOT_FOUND
        elif inserted is None:
            results[lead_id] = UNCHANGED
        else:
            results[lead_id] = ADDED if inserted else UPDATED
    return results


def _no_such_campaign() -> ValidationError:
    return ValidationError({"campaign": [_("No such campaign.")]}, code="not_found")


@dataclass(frozen=True, slots=True)
class MembershipAdd:
    membership: CampaignMembership
    result: str  # ADDED, UPDATED or UNCHANGED


def membership_add(
    *,
    campaign: Campaign,
    lead: Lead | int,
    origin: Origin,
    status: str = MemberStatus.RESPONDED,
) -> MembershipAdd:
    """Add one lead to a campaign (the same rule as the bulk add: an existing member
    keeps a further status)."""
    lead_id = lead if isinstance(lead, int) else lead.pk
    with tenant_scope(campaign.tenant_id):
        result = memberships_add_bulk(
            tenant_id=campaign.tenant_id,
            campaign_id=campaign.pk,
            lead_ids=[lead_id],
            status=status,
            origin=origin,
        )[lead_id]
        if result == NOT_FOUND:
            raise ValidationError({"lead_id": [_("No such lead.")]}, code="not_found")
        membership = CampaignMembership.objects.select_related("lead", "lead__company").get(
            campaign_id=campaign.pk, lead_id=lead_id
        )
    return MembershipAdd(membership=membership, result=result)


def membership_set_status(
    *, membership: CampaignMembership, status: str, origin: Origin
) -> CampaignMembership:
    """Set a member's status as given: a person correcting it may also go back."""
    require_campaign_writer(origin)
    if status not in STATUS_RANK:
        raise ValidationError({"status": [_("Unknown member status.")]})
    if membership.status == status:
        return membership
    with tenant_scope(membership.tenant_id):
        membership.status = status
        membership.updated_at = timezone.now()
        membership.save(update_fields=["status", "updated_at"])
    return membership


def membership_remove(*, membership: CampaignMembership, origin: Origin) -> None:
    """Take a lead out of a campaign (the lead and its activities stay)."""
    require_campaign_writer(origin)
    with tenant_scope(membership.tenant_id):
        membership.delete()


def memberships_merge_leads(*, tenant_id: int, keep_id: int, merge_id: int) -> int:
    """Move the memberships of lead `merge_id` to `keep_id` (a lead merge). Where both
    were members of a campaign, keep's membership stays, at the further status of the
    two. Set-based: three statements whatever the number of campaigns. Returns how many
    memberships moved."""
    table = CampaignMembership._meta.db_table
    with tenant_scope(tenant_id), connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} AS k SET status = d.status, updated_at = %(now)s
            FROM {table} AS d
            WHERE k.tenant_id = %(tenant_id)s AND d.tenant_id = %(tenant_id)s
              AND k.lead_id = %(keep_id)s AND d.lead_id = %(merge_id)s
              AND k.campaign_id = d.campaign_id
              AND {_rank_sql("k.status")} < {_rank_sql("d.status")}
            """,
            {
                "tenant_id": tenant_id,
                "keep_id": keep_id,
                "merge_id": merge_id,
                "now": timezone.now(),
            },
        )
        both = CampaignMembership.objects.filter(lead_id=keep_id).values("campaign_id")
        CampaignMembership.objects.filter(lead_id=merge_id, campaign_id__in=both).delete()
        return CampaignMembership.objects.filter(lead_id=merge_id).update(lead_id=keep_id)
