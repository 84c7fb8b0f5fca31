"""What pipeline adds to a lead's timeline: a task made (`task`, at its created_at: for
a nurture step's task, when the step ran) and a task done (`task_done`, at done_at).

Registered in PipelineConfig.ready(): the readers into leads.selectors'
register_timeline_source (one query per kind and page, through the task's lead index),
the lead page's look of the entries as the hook `lead.timeline_items`.
"""

from collections.abc import Callable, Iterator

from django.db.models import Q
from django.utils.translation import gettext as _

from accounts.models import User
from leads.models import Lead
from leads.selectors import TimelineEntry
from pipeline.models import Task

KINDS = ("task", "task_done")


def _day(value) -> str | None:
    return value.isoformat() if value else None


def tasks_made(lead: Lead, past: Callable[[str], Q], limit: int) -> Iterator[TimelineEntry]:
    rows = (
        Task.objects.filter(past("created_at"), lead_id=lead.pk)
        .order_by("-created_at", "-id")
        .values(
            "id", "created_at", "title", "assignee_id", "due_date", "source", "sequence_id",
            "created_by_id",
        )[: limit + 1]
    )  # fmt: skip
    for row in rows:
        yield TimelineEntry(
            "task",
            row["id"],
            row["created_at"],
            {
                "title": row["title"],
                "assignee_id": row["assignee_id"],
                "due_date": _day(row["due_date"]),
                "source": row["source"],
                "sequence_id": row["sequence_id"],
                "actor_id": row["created_by_id"],
            },
        )


def tasks_done(lead: Lead, past: Callable[[str], Q], limit: int) -> Iterator[TimelineEntry]:
    rows = (
        Task.objects.filter(past("done_at"), lead_id=lead.pk, done_at__isnull=False)
        .order_by("-done_at", "-id")
        .values("id", "done_at", "title", "assignee_id", "done_by_id")[: limit + 1]
    )
    for row in rows:
        yield TimelineEntry(
            "task_done",
            row["id"],
            row["done_at"],
            {
                "title": row["title"],
                "assignee_id": row["assignee_id"],
                "actor_id": row["done_by_id"],
            },
        )


def timeline_items(*, entries: list[TimelineEntry], tenant_slug: str) -> dict:
    """Hook `lead.timeline_items`: how the lead page shows this app's entries, by
    (kind, id); the people they name in one query."""
    mine = [entry for entry in entries if entry.kind in KINDS]
    if not mine:
        return {}
    assignee_ids = {entry.data.get("assignee_id") for entry in mine} - {None}
    names = {
        user.pk: user.get_full_name() or user.email
        for user in User.objects.filter(pk__in=assignee_ids)
    }
    sources = dict(Task.Source.choices)
    items = {}
    for entry in mine:
        data = entry.data
        assignee = names.get(data.get("assignee_id"))
        lines = [
            _("Assigned to %(name)s") % {"name": assignee} if assignee else _("Not assigned yet")
        ]
        if data.get("due_date"):
            lines.append(_("Due %(day)s") % {"day": data["due_date"]})
        items[(entry.kind, entry.id)] = {
            "title": _("Task created") if entry.kind == "task" else _("Task done"),
            "change": data["title"],
            # Made by a sequence's step: say so (by hand is the usual case).
            "badge": sources[Task.Source.NURTURE]
            if entry.kind == "task" and data.get("source") == Task.Source.NURTURE
            else "",
            "body": " · ".join(lines) if entry.kind == "task" else "",
        }
    return items
