"""Saved segments: a lead-list filter kept under a name, and their periodic evaluation.

A segment's `filter` is the query string of the lead list (`stage=mql&tag=展示会`),
read by the lead list's own filter set (leads.forms.LeadListFilter, which is the
API's LeadFilter with the list's widgets), so a segment always means what the lead
list shows for the same query. Dates in it are days of the tenant's time zone, as in
the list.

Rules enforced here:
- A filter is checked when saved: a parameter the list does not know, or a value it
  would refuse (an owner who does not work here, a campaign of another tenant, a
  stage that does not exist), is an error naming it. The lead list drops a value it
  refuses and shows every lead; a segment must never do that, so a filter that no
  longer holds when evaluated (the owner left, the campaign was deleted) matches
  nothing and the segment says why (`error`).
- Evaluation (beat, every few minutes) is set-based: one statement refreshes the
  segment's members (inserts the leads that match now, deletes those that left);
  then one INSERT … SELECT per active sequence enrolling on the segment takes the
  members not live in it and never enrolled in it, or, where re-enrolment is
  allowed, the members that entered the segment in this evaluation (a lead comes
  back into the segment: it may go through again; staying in it is not a reason to
  start over at every evaluation). Consent is the sequences' rule: enrolled leads
  without marketing consent leave at their first mail (services.enrol_leads).
"""

import datetime
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import QuerySet
from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Tenant
from accounts.selectors import tenant_staff
from accounts.services import Origin, audit_record
from accounts.tenancy import tenant_scope, unscoped
from campaigns.models import Campaign, Enrolment, Sequence
from campaigns.nurture.models import Segment, SegmentMember
from campaigns.services import require_campaign_writer
from leads import selectors as lead_selectors
from leads.forms import LeadListFilter
from leads.models import Lead

#: Parts of a lead-list URL that are not the filter (paging and order).
NOT_FILTER = ("cursor", "sort", "page_size")
FILTER_MAX = 2000


# --- The filter -------------------------------------------------------------------------------


def _filterset(query: QueryDict, tenant: Tenant) -> LeadListFilter:
    """The lead list's filter set over the tenant's live leads. The choices it checks
    owners and campaigns against: every person who works in the tenant, and the
    campaign the filter names if it is the tenant's (the list offers the 500 newest;
    a segment may name an older one)."""
    campaigns: list[tuple[str, str]] = []
    wanted = query.get("campaign", "")
    if wanted.isdigit():
        campaigns = [
            (str(pk), name)
            for pk, name in Campaign.objects.filter(pk=int(wanted)).values_list("id", "name")
        ]
    owners = [(str(member.user.id), member.user.email) for member in tenant_staff(tenant)]
    return LeadListFilter(
        query,
        queryset=lead_selectors.lead_list(),
        owner_choices=owners,
        campaign_choices=campaigns,
    )


def _query(raw: str) -> QueryDict:
    raw = (raw or "").strip()
    if "?" in raw:  # a whole lead-list URL pasted in
        raw = raw.split("?", 1)[1]
    query = QueryDict(raw, mutable=True)
    for name in NOT_FILTER:
        query.pop(name, None)
    return query


class FilterInvalid(ValidationError):
    """A refused filter: the messages on `filter` (each names its parameter), and
    `problems`, the same by parameter ({"colour": ["…"]}) for the API's field errors."""

    def __init__(self, messages: list[str], problems: dict[str, list[str]]) -> None:
        super().__init__({"filter": messages})
        self.problems = problems


def segment_filter_clean(*, tenant: Tenant, raw: str) -> str:
    """The filter as stored (the list's query string without paging or order), or a
    FilterInvalid (a ValidationError on `filter`) naming each parameter that is unknown
    or refused. Runs in the tenant's scope."""
    query = _query(raw)
    errors: list[str] = []
    problems: dict[str, list[str]] = {}
    with tenant_scope(tenant.id), timezone.override(tenant.time_zone):
        filterset = _filterset(query, tenant)
        unknown = sorted(set(query) - set(filterset.filters))
        for name in unknown:
            errors.append(_("%(name)s: not a filter of the lead list.") % {"name": name})
            problems[name] = [_("Not a lead filter.")]
        if not filterset.form.is_valid():
            for name, messages in filterset.form.errors.items():
                label = filterset.form.fields[name].label if name in filterset.form.fields else name
                errors.extend(f"{label} ({name}): {message}" for message in messages)
                problems[name] = [str(message) for message in messages]
    cleaned = query.urlencode()
    if len(cleaned) > FILTER_MAX:
        errors.append(_("The filter is too long."))
    if errors:
        raise FilterInvalid(errors, problems)
    return cleaned


@dataclass
class SegmentMatch:
    """The leads a segment matches now (`leads`: a queryset of the tenant's live
    leads), or why it matches none (`error`)."""

    leads: QuerySet[Lead]
    error: str = ""


def segment_leads(segment: Segment, tenant: Tenant | None = None) -> SegmentMatch:
    """The leads matching a segment now, read as the lead list reads its filter (in the
    tenant's time zone). A filter that no longer holds matches no lead, never all."""
    tenant = tenant or Tenant.objects.get(pk=segment.tenant_id)
    with tenant_scope(segment.tenant_id), timezone.override(tenant.time_zone):
        query = _query(segment.filter)
        filterset = _filterset(query, tenant)
        problems = sorted(set(query) - set(filterset.filters))
        if not filterset.form.is_valid():
            problems += sorted(filterset.form.errors)
        if problems:
            error = _("The filter no longer holds (%(names)s): it matches no lead.") % {
                "names": ", ".join(problems)
            }
            return SegmentMatch(leads=Lead.objects.none(), error=error)
        # Evaluated now, inside the zone: the date filters become instants here.
        queryset = filterset.qs.prefetch_related(None).select_related(None).order_by()
        return SegmentMatch(leads=queryset)


def segment_count(segment: Segment) -> tuple[int, str]:
    """(leads matching now, problem): the "matches N leads" preview."""
    with tenant_scope(segment.tenant_id):
        match = segment_leads(segment)
        return match.leads.count(), match.error


# --- Writes -----------------------------------------------------------------------------------

SEGMENT_FIELDS = frozenset({"name", "filter"})


def _check(fields: dict) -> None:
    unknown = sorted(set(fields) - SEGMENT_FIELDS)
    if unknown:
        raise ValidationError({key: [_("Unknown field.")] for key in unknown})


def _name_taken(segment: Segment) -> bool:
    return Segment.objects.filter(name=segment.name).exclude(pk=segment.pk).exists()


def _save(segment: Segment, origin: Origin, action: str, metadata: dict) -> Segment:
    segment.full_clean(validate_constraints=False)
    if _name_taken(segment):
        raise ValidationError({"name": [_("A segment with this name exists.")]})
    segment.save()
    audit_record(
        tenant_id=segment.tenant_id, origin=origin, action=action, target=segment, metadata=metadata
    )
    return segment


def segment_create(*, tenant_id: int, origin: Origin, **fields) -> Segment:
    """A named lead-list filter, checked (segment_filter_clean)."""
    require_campaign_writer(origin)
    _check(fields)
    with tenant_scope(tenant_id):
        tenant = Tenant.objects.get(pk=tenant_id)
        segment = Segment(tenant_id=tenant_id, name=str(fields.get("name", "")).strip())
        segment.filter = segment_filter_clean(tenant=tenant, raw=fields.get("filter", ""))
        return _save(segment, origin, "segment.created", {"filter": segment.filter})


def segment_update(*, segment: Segment, origin: Origin, **changes) -> Segment:
    """Rename or change the filter. A new filter takes effect at the next evaluation:
    the members that no longer match leave the segment then (their enrolments go on)."""
    require_campaign_writer(origin)
    _check(changes)
    with tenant_scope(segment.tenant_id):
        segment = Segment.objects.select_for_update().get(pk=segment.pk)
        if "name" in changes:
            segment.name = str(changes["name"]).strip()
        if "filter" in changes:
            tenant = Tenant.objects.get(pk=segment.tenant_id)
            segment.filter = segment_filter_clean(tenant=tenant, raw=changes["filter"])
            segment.error = ""
        segment.updated_at = timezone.now()
        return _save(segment, origin, "segment.updated", {"fields": sorted(changes)})


def segment_delete(*, segment: Segment, origin: Origin) -> None:
    """Sequences that enrolled on it stop doing so (their enrolments go on)."""
    require_campaign_writer(origin)
    with tenant_scope(segment.tenant_id):
        audit_record(
            tenant_id=segment.tenant_id,
            origin=origin,
            action="segment.deleted",
            target=segment,
            metadata={"name": segment.name, "filter": segment.filter},
        )
        Segment.objects.filter(pk=segment.pk).delete()


# --- Periodic evaluation ----------------------------------------------------------------------


def tenants_with_segment_sequences() -> list[int]:
    """Platform job: the tenants with an active sequence enrolling on a segment."""
    with unscoped("nurture: tenants whose segments enrol leads"):
        return sorted(
            set(
                Sequence.objects.filter(
                    status=Sequence.Status.ACTIVE, enrol_on_segment__isnull=False
                ).values_list("tenant_id", flat=True)
            )
        )


def _refresh_members(segment: Segment, leads: QuerySet[Lead], now: datetime.datetime) -> dict:
    """One statement: the leads matching now become members (entered_at = now for the
    new ones), the members that no longer match leave."""
    sql, params = leads.values_list("id", flat=True).query.sql_with_params()
    table = SegmentMember._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH matching AS MATERIALIZED ({sql}),
            added AS (
                INSERT INTO {table} (tenant_id, segment_id, lead_id, entered_at)
                SELECT %s, %s, m.id, %s FROM matching m
                ON CONFLICT (tenant_id, segment_id, lead_id) DO NOTHING
                RETURNING 1),
            removed AS (
                DELETE FROM {table} s
                WHERE s.tenant_id = %s AND s.segment_id = %s
                  AND NOT EXISTS (SELECT 1 FROM matching m WHERE m.id = s.lead_id)
                RETURNING 1)
            SELECT (SELECT count(*) FROM matching), (SELECT count(*) FROM added),
                   (SELECT count(*) FROM removed)
            """,
            [
                *params,
                segment.tenant_id,
                segment.pk,
                now,
                segment.tenant_id,
                segment.pk,
            ],
        )
        matched, added, removed = cursor.fetchone()
    return {"matched": matched, "entered": added, "left": removed}


def _enrol_members(segment: Segment, sequence: Sequence, now: datetime.datetime) -> int:
    from campaigns.nurture.services import enrol_insert

    enrolled = enrol_insert(
        tenant_id=segment.tenant_id,
        sequence=sequence,
        source=Enrolment.Source.SEGMENT,
        now=now,
        candidates=f"""
            SELECT m.lead_id, m.entered_at FROM {SegmentMember._meta.db_table} m
            WHERE m.tenant_id = %(tenant)s AND m.segment_id = %(segment)s""",
        params={"segment": segment.pk},
        # Re-enrolment: only a lead that came (back) into the segment just now.
        again="c.entered_at = %(now)s",
    )
    return len(enrolled)


def segment_evaluate(segment: Segment, *, now: datetime.datetime | None = None) -> dict:
    """Refresh one segment's members and enrol them in the active sequences that
    enrol on it, in one transaction of the segment's tenant. Returns counts."""
    now = now or timezone.now()
    with tenant_scope(segment.tenant_id):
        segment = Segment.objects.select_for_update().get(pk=segment.pk)
        match = segment_leads(segment)
        report = {"matched": 0, "entered": 0, "left": 0, "enrolled": 0}
        if match.error:
            # Nothing matches: the members leave, no one is enrolled.
            report["left"] = SegmentMember.objects.filter(segment=segment).delete()[0]
        else:
            report.update(_refresh_members(segment, match.leads, now))
            for sequence in Sequence.objects.filter(
                enrol_on_segment=segment, status=Sequence.Status.ACTIVE
            ).order_by("id"):
                report["enrolled"] += _enrol_members(segment, sequence, now)
        segment.evaluated_at, segment.matched, segment.error = now, report["matched"], match.error
        segment.save(update_fields=["evaluated_at", "matched", "error"])
    return report


def segments_evaluate_tenant(tenant_id: int, *, now: datetime.datetime | None = None) -> dict:
    """Every segment of the tenant that an active sequence enrols on; returns totals
    (`segments` evaluated, `enrolled`, …). Idempotent: a second run at once enrols no
    one (the members are live in the sequences or went through them)."""
    now = now or timezone.now()
    with tenant_scope(tenant_id):
        segment_ids = sorted(
            set(
                Sequence.objects.filter(
                    status=Sequence.Status.ACTIVE, enrol_on_segment__isnull=False
                ).values_list("enrol_on_segment_id", flat=True)
            )
        )
    total = {"segments": 0, "matched": 0, "entered": 0, "left": 0, "enrolled": 0}
    for segment_id in segment_ids:
        with tenant_scope(tenant_id):
            segment = Segment.objects.filter(pk=segment_id).first()
        if segment is None:
            continue
        report = segment_evaluate(segment, now=now)
        total["segments"] += 1
        for key, value in report.items():
            total[key] += value
    return total
