"""Read queries about campaigns, shared by the API, the web UI and reports.

A campaign list carries its figures in the same query as the page: members by status
and leads generated are the sums of the campaign's CampaignCounts rows (kept by
triggers, campaigns.counts; a handful of rows per campaign whatever its size), in one
correlated subquery evaluated only for the rows of the page. SQLite development
databases have no triggers and count the memberships and leads themselves. Derived
figures (cost per lead, target progress) are computed in Python, exactly, as Decimals.
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection
from django.db.models import (
    Count,
    IntegerField,
    JSONField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce, JSONObject

from campaigns.models import Campaign, CampaignCounts, CampaignMembership
from leads.models import Lead

MEMBER_STATUSES = tuple(CampaignMembership.Status.values)


def _stored_counts() -> Subquery:
    """{"invited": n, …, "total": n, "leads_generated": n} of the outer campaign from
    its CampaignCounts rows (NULL when it has none)."""
    sums = {status: Coalesce(Sum(status), 0) for status in MEMBER_STATUSES}
    total = sum(
        (Coalesce(Sum(status), 0) for status in MEMBER_STATUSES[1:]), sums[MEMBER_STATUSES[0]]
    )
    return Subquery(
        CampaignCounts.objects.filter(campaign=OuterRef("pk"))
        .order_by()
        .values("campaign")
        .annotate(
            counts=JSONObject(
                **sums, total=total, leads_generated=Coalesce(Sum("leads_generated"), 0)
            )
        )
        .values("counts"),
        output_field=JSONField(),
    )


def _member_counts() -> Subquery:
    """{"invited": n, …, "total": n} of the outer campaign (NULL when it has none)."""
    counts = {status: Count("pk", filter=Q(status=status)) for status in MEMBER_STATUSES}
    return Subquery(
        CampaignMembership.objects.filter(campaign=OuterRef("pk"))
        .order_by()
        .values("campaign")
        .annotate(counts=JSONObject(**counts, total=Count("pk")))
        .values("counts"),
        output_field=JSONField(),
    )


def _leads_generated() -> Coalesce:
    """Leads whose source is the outer campaign (merged-away duplicates not counted)."""
    return Coalesce(
        Subquery(
            Lead.objects.filter(source_campaign=OuterRef("pk"), merged_into__isnull=True)
            .order_by()
            .values("source_campaign")
            .annotate(n=Count("pk"))
            .values("n"),
            output_field=IntegerField(),
        ),
        0,
    )


def campaign_list() -> QuerySet[Campaign]:
    """The current tenant's campaigns, newest first, each annotated with
    `member_counts` (dict or None) and `leads_generated` (int)."""
    campaigns = Campaign.objects.select_related("owner").order_by("-created_at", "-id")
    if connection.vendor != "postgresql":
        return campaigns.annotate(
            member_counts=_member_counts(), leads_generated=_leads_generated()
        )
    return campaigns.annotate(member_counts=_stored_counts())


def campaign_get(*, campaign_id: int) -> Campaign | None:
    return campaign_list().filter(pk=campaign_id).first()


@dataclass(frozen=True, slots=True)
class CampaignFigures:
    members: dict[str, int]  # by status, and "total"
    leads_generated: int
    cost_per_lead: Decimal | None  # actual cost / leads generated; None with no leads
    budget_remaining: Decimal
    target_progress: Decimal | None  # leads generated / target leads; None with no target


CENT = Decimal("0.01")
PERMILLE = Decimal("0.001")


def campaign_figures(campaign: Campaign) -> CampaignFigures:
    """The figures of a campaign from campaign_list()/campaign_get() (no query)."""
    counts = dict.fromkeys((*MEMBER_STATUSES, "total"), 0)
    counts.update(getattr(campaign, "member_counts", None) or {})
    # Stored counts carry leads generated with the members; live ones annotate it.
    leads = counts.pop("leads_generated", None)
    if leads is None:
        leads = getattr(campaign, "leads_generated", 0)
    cost = Decimal(campaign.actual_cost)
    return CampaignFigures(
        members=counts,
        leads_generated=leads,
        cost_per_lead=(cost / leads).quantize(CENT, ROUND_HALF_UP) if leads else None,
        budget_remaining=Decimal(campaign.budget) - cost,
        target_progress=(
            (Decimal(leads) / campaign.target_leads).quantize(PERMILLE, ROUND_HALF_UP)
            if campaign.target_leads
            else None
        ),
    )


def campaign_leads_by_stage(*, campaign_id: int) -> dict[str, int]:
    """Where the leads a campaign generated are in the funnel now: {stage: count}."""
    rows = (
        Lead.objects.filter(source_campaign_id=campaign_id, merged_into__isnull=True)
        .order_by()
        .values_list("lifecycle_stage")
        .annotate(n=Count("pk"))
    )
    return dict(rows)


def campaign_membership_list(*, campaign_id: int) -> QuerySet[CampaignMembership]:
    """Members of one campaign, newest first, with each lead and its company."""
    return (
        CampaignMembership.objects.filter(campaign_id=campaign_id)
        .select_related("lead", "lead__company")
        .order_by("-created_at", "-id")
    )
