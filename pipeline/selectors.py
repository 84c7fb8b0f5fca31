"""Read queries of the handoff, shared by the queue page, the API and campaign pages."""

from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from leads.models import LeadScore
from pipeline.models import Handoff, RejectReason, RoutingRule, Task, Team, TeamMember

NO_SCORE = -(2**31)  # a lead without a score sorts after every scored one


def _primary_score() -> Subquery:
    return Subquery(
        LeadScore.objects.filter(lead_id=OuterRef("lead_id"), model__is_primary=True).values(
            "total"
        )[:1],
        output_field=IntegerField(),
    )


def handoff_list() -> QuerySet[Handoff]:
    """Every handoff with what a row shows, the lead's current primary score as
    `current_score`."""
    return Handoff.objects.select_related(
        "lead", "lead__company", "owner", "team", "source_campaign", "qualification"
    ).annotate(current_score=_primary_score())


def handoff_queue(
    *, owner_id: int | None = None, statuses: tuple[str, ...] = (Handoff.Status.OPEN,)
) -> QuerySet[Handoff]:
    """The inside-sales queue: active handoffs, the nearest SLA deadline first, then the
    highest score (a lead without a score last), then the oldest."""
    queryset = (
        handoff_list()
        .filter(status__in=statuses)
        .annotate(sort_score=Coalesce("current_score", Value(NO_SCORE)))
    )
    if owner_id is not None:
        queryset = queryset.filter(owner_id=owner_id)
    # The API's keyset cursor (pipeline.api.pagination) is this key.
    return queryset.order_by("deadline", "-sort_score", "id")


def handoff_get(pk: int) -> Handoff | None:
    return handoff_list().filter(pk=pk).first()


def lead_handoffs(lead_id: int) -> QuerySet[Handoff]:
    return handoff_list().filter(lead_id=lead_id).order_by("-created_at", "-id")


def team_list() -> QuerySet[Team]:
    return Team.objects.select_related("manager").order_by("name", "id")


def team_members(team_ids: list[int]) -> dict[int, list[TeamMember]]:
    members: dict[int, list[TeamMember]] = {team_id: [] for team_id in team_ids}
    for member in (
        TeamMember.objects.filter(team_id__in=team_ids)
        .select_related("user")
        .order_by("created_at", "id")
    ):
        members[member.team_id].append(member)
    return members


def routing_rule_list() -> QuerySet[RoutingRule]:
    return RoutingRule.objects.select_related("user", "team").order_by("position", "id")


def _reason_key(reason: str) -> str:
    return f"rejected_{reason}"


def handoff_feedback_by_campaign(campaign_ids: list[int] | None = None) -> list[dict]:
    """Sales' feedback per source campaign, in one aggregate: handoffs, accepted (SAL or
    further), qualified, rejected with a count per reason, SLA met and breached. A
    handoff of a lead without a source campaign counts under campaign None."""
    queryset = Handoff.objects.all()
    if campaign_ids is not None:
        queryset = queryset.filter(source_campaign_id__in=campaign_ids)
    answered = Q(accepted_at__isnull=False)  # accepted, even if qualified or dropped later
    rows = (
        queryset.values("source_campaign_id", "source_campaign__name")
        .annotate(
            handoffs=Count("id"),
            open=Count("id", filter=Q(status=Handoff.Status.OPEN)),
            accepted=Count("id", filter=answered),
            qualified=Count("id", filter=Q(status=Handoff.Status.QUALIFIED)),
            rejected=Count("id", filter=Q(status=Handoff.Status.REJECTED)),
            sla_met=Count("id", filter=Q(sla=Handoff.SLA.MET)),
            sla_breached=Count("id", filter=Q(sla=Handoff.SLA.BREACHED)),
            **{
                _reason_key(reason): Count(
                    "id", filter=Q(status=Handoff.Status.REJECTED, reject_reason=reason)
                )
                for reason in RejectReason.values
            },
        )
        .order_by("source_campaign__name", "source_campaign_id")
    )
    result = []
    for row in rows:
        result.append(
            {
                "campaign_id": row["source_campaign_id"],
                "campaign_name": row["source_campaign__name"] or "",
                "handoffs": row["handoffs"],
                "open": row["open"],
                "accepted": row["accepted"],
                "qualified": row["qualified"],
                "rejected": row["rejected"],
                "rejected_by_reason": {
                    reason: row[_reason_key(reason)] for reason in RejectReason.values
                },
                "sla_met": row["sla_met"],
                "sla_breached": row["sla_breached"],
            }
        )
    return result


def open_tasks(*, assignee_id: int | None) -> QuerySet[Task]:
    """Open tasks of one person (None: nobody's), the earliest due first (no due date
    last), then the oldest: the "my tasks" page (index task_open_idx)."""
    return (
        Task.objects.filter(assignee_id=assignee_id, done_at__isnull=True)
        .select_related("lead", "lead__company", "sequence")
        .order_by(F("due_date").asc(nulls_last=True), "id")
    )
