"""What nurturing adds to a lead's timeline: enrolled in a sequence (`enrolment`, at
enrolled_at), out of it (`enrolment_end`, at finished_at: completed or exited, with the
reason) and each mail a sequence sent (`email`, at sent_at).

Registered in CampaignsConfig.ready(): the readers into leads.selectors'
register_timeline_source (one query per kind and page, through the lead indexes of
enrolments and outgoing messages), the lead page's look of the entries as the hook
`lead.timeline_items`.
"""

from collections.abc import Callable, Iterator

from django.db.models import Q
from django.urls import reverse
from django.utils.translation import gettext as _

from campaigns.nurture.models import Enrolment, OutgoingMessage, Sequence
from leads.models import Lead
from leads.selectors import TimelineEntry

KINDS = ("enrolment", "enrolment_end", "email")
Past = Callable[[str], Q]


def enrolments_started(lead: Lead, past: Past, limit: int) -> Iterator[TimelineEntry]:
    rows = (
        Enrolment.objects.filter(past("enrolled_at"), lead_id=lead.pk)
        .order_by("-enrolled_at", "-id")
        .values("id", "enrolled_at", "sequence_id", "version", "source")[: limit + 1]
    )
    for row in rows:
        yield TimelineEntry("enrolment", row.pop("id"), row.pop("enrolled_at"), row)


def enrolments_ended(lead: Lead, past: Past, limit: int) -> Iterator[TimelineEntry]:
    rows = (
        Enrolment.objects.filter(past("finished_at"), lead_id=lead.pk, finished_at__isnull=False)
        .order_by("-finished_at", "-id")
        .values("id", "finished_at", "sequence_id", "state", "exit_reason")[: limit + 1]
    )
    for row in rows:
        yield TimelineEntry("enrolment_end", row.pop("id"), row.pop("finished_at"), row)


def mails_sent(lead: Lead, past: Past, limit: int) -> Iterator[TimelineEntry]:
    rows = (
        OutgoingMessage.objects.filter(past("sent_at"), lead_id=lead.pk, sent_at__isnull=False)
        .order_by("-sent_at", "-id")
        .values("id", "sent_at", "subject", "status", "enrolment_id", "enrolment__sequence_id")[
            : limit + 1
        ]
    )
    for row in rows:
        row["sequence_id"] = row.pop("enrolment__sequence_id")
        yield TimelineEntry("email", row.pop("id"), row.pop("sent_at"), row)


def timeline_items(*, entries: list[TimelineEntry], tenant_slug: str) -> dict:
    """Hook `lead.timeline_items`: how the lead page shows nurturing's entries, by
    (kind, id), each naming and linking its sequence (their names in one query)."""
    mine = [entry for entry in entries if entry.kind in KINDS]
    if not mine:
        return {}
    sequence_ids = {entry.data.get("sequence_id") for entry in mine} - {None}
    names = dict(Sequence.objects.filter(pk__in=sequence_ids).values_list("id", "name"))
    sources = dict(Enrolment.Source.choices)
    reasons = dict(Enrolment.ExitReason.choices)
    statuses = dict(OutgoingMessage.Status.choices)
    items = {}
    for entry in mine:
        data = entry.data
        sequence_id = data.get("sequence_id")
        item = {
            "link": reverse(
                "campaigns:nurture_sequence", kwargs={"tenant": tenant_slug, "pk": sequence_id}
            )
            if sequence_id in names
            else "",
            "change": names.get(sequence_id, ""),
        }
        if entry.kind == "enrolment":
            item.update(title=_("Enrolled in a sequence"), badge=sources.get(data["source"], ""))
        elif entry.kind == "enrolment_end":
            completed = data["state"] == Enrolment.State.COMPLETED
            item.update(
                title=_("Finished a sequence") if completed else _("Left a sequence"),
                badge=reasons.get(data["exit_reason"], ""),
            )
        else:
            item.update(
                title=_("Nurture mail sent"),
                body=data["subject"],
                badge=statuses.get(data["status"], "")
                if data["status"] != OutgoingMessage.Status.SENT
                else "",
            )
        items[(entry.kind, entry.id)] = item
    return items
