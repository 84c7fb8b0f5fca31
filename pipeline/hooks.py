"""What pipeline adds to lower apps' pages through accounts.events hooks."""

from django.template.loader import render_to_string

from pipeline.models import RejectReason
from pipeline.selectors import handoff_feedback_by_campaign


def campaign_feedback_block(*, campaign, request=None) -> str:
    """The campaign page's "Sales feedback" card: what inside sales answered about the
    MQLs this campaign sourced (accepted, rejected by reason, SLA)."""
    rows = handoff_feedback_by_campaign([campaign.pk])
    row = rows[0] if rows else None
    reasons = []
    if row:
        reasons = [
            (label, row["rejected_by_reason"][value])
            for value, label in RejectReason.choices
            if row["rejected_by_reason"][value]
        ]
    return render_to_string(
        "pipeline/_campaign_feedback.html",
        {"feedback": row, "reasons": reasons},
        request=request,
    )
