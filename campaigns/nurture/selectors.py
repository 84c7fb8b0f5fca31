"""Read queries of nurturing shared by the staff UI and the API: sequences with their
figures, enrolments with the step each lead stands at, and the per-sequence and
per-step statistics.

The statistics are set-based: one aggregate over the sequence's outgoing messages
(each message's opens, clicks and unsubscribes found by an EXISTS on the lead's
activities, through the (tenant, lead, occurred_at) index) and one over its
enrolments, whatever the number of leads. What each figure counts:

- sent: messages the mail server accepted (sent_at set);
- delivered: sent and not bounced since (a provider's bounce webhook marks a sent
  message bounced);
- opened / clicked: messages with an email_opened / email_clicked activity carrying
  their message id (unique opens: a message opened five times counts once; a click
  counts as an open too, since mail clients that block images never load the pixel);
- unsubscribed: messages whose unsubscribe link (or one-click header) was used;
- bounced: messages marked bounced (a 5xx at sending, or the provider's webhook);
- replied: enrolments that ended because the lead replied; by step, the last mail
  the enrolment was sent before it ended so;
- converted to MQL: leads of the sequence that reached MQL after they were enrolled;
  by step, leads that reached MQL after that step's mail was sent to them.
"""

from dataclasses import dataclass, fields

from django.db.models import (
    CharField,
    Count,
    Exists,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from campaigns.models import (
    EmailTemplate,
    Enrolment,
    OutgoingMessage,
    SenderIdentity,
    Sequence,
    SequenceStep,
    StepKind,
)
from leads.models import Activity, ActivityType, LifecycleStage, LifecycleTransition

State = Enrolment.State
Status = OutgoingMessage.Status


@dataclass(slots=True)
class MailFigures:
    """Counts of the mails of one step, or of all the steps of a sequence."""

    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    replied: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    mql: int = 0

    def add(self, other: "MailFigures") -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    @property
    def ratios(self) -> dict[str, float | None]:
        """Shares (0 to 1) of the mails delivered (delivered: of those sent); None
        before there is any."""

        def share(part: int, whole: int) -> float | None:
            return part / whole if whole else None

        ratios = {
            name: share(getattr(self, name), self.delivered)
            for name in ("opened", "clicked", "replied", "unsubscribed")
        }
        ratios["delivered"] = share(self.delivered, self.sent)
        return ratios

    @property
    def rates(self) -> dict[str, str]:
        """The ratios for display: "12.5%", or "—" before there is any."""
        return {
            name: "—" if ratio is None else f"{ratio * 100:.1f}%"
            for name, ratio in self.ratios.items()
        }


@dataclass(slots=True)
class SequenceStats:
    """One sequence: its enrolments by state and its mails. `mail.replied` and
    `mail.mql` count enrolments and leads (see the module docstring)."""

    enrolled: int = 0
    active: int = 0
    paused: int = 0
    completed: int = 0
    exited: int = 0
    mail: MailFigures | None = None
    steps: dict[int, MailFigures] | None = None  # step id -> figures (email steps with mail)


# --- Lists -----------------------------------------------------------------------------------


def sequence_list() -> QuerySet[Sequence]:
    """The current tenant's sequences, newest first, with their sender."""
    return Sequence.objects.select_related("sender").order_by("-created_at", "-id")


def sequence_get(*, sequence_id: int) -> Sequence | None:
    return (
        Sequence.objects.select_related(
            "sender", "enrol_on_campaign", "enrol_on_form", "enrol_on_segment"
        )
        .filter(pk=sequence_id)
        .first()
    )


def sequence_steps(sequence: Sequence, version: int | None = None) -> list[SequenceStep]:
    """The steps of one version (the current one by default), in order."""
    return list(
        SequenceStep.objects.filter(
            sequence=sequence, version=sequence.version if version is None else version
        )
        .select_related("template")
        .order_by("order")
    )


def email_template_list() -> QuerySet[EmailTemplate]:
    return EmailTemplate.objects.order_by("-created_at", "-id")


def sender_identity_list() -> QuerySet[SenderIdentity]:
    return SenderIdentity.objects.order_by("-created_at", "-id")


def enrolment_list(*, sequence_id: int, state: str = "") -> QuerySet[Enrolment]:
    """Enrolments of one sequence, newest first, each with its lead and company and,
    annotated, the step it stands at (`step_kind`, `step_template`: the step of its
    own version at its position; None once past the last step)."""
    at = SequenceStep.objects.filter(
        sequence_id=OuterRef("sequence_id"),
        version=OuterRef("version"),
        order=OuterRef("step_order"),
    )
    queryset = (
        Enrolment.objects.filter(sequence_id=sequence_id)
        .select_related("lead", "lead__company", "sequence")
        .annotate(
            step_kind=Subquery(at.values("kind")[:1]),
            step_template=Subquery(at.values("template__name")[:1]),
        )
        .order_by("-id")
    )
    if state in State.values:
        queryset = queryset.filter(state=state)
    return queryset


def enrolment_counts(*, sequence_id: int) -> dict[str, int]:
    """{state: n} of one sequence's enrolments (for the filter tabs)."""
    rows = (
        Enrolment.objects.filter(sequence_id=sequence_id)
        .order_by()
        .values_list("state")
        .annotate(n=Count("pk"))
    )
    return dict(rows)


# --- Statistics ------------------------------------------------------------------------------


def _message_event(activity_type: str | list[str]) -> Exists:
    """An activity of the outer message's lead carrying the message's id (recorded by
    the tracking links, the unsubscribe link, the bounce handling)."""
    types = [activity_type] if isinstance(activity_type, str) else activity_type
    return Exists(
        Activity.objects.filter(
            lead_id=OuterRef("lead_id"),
            occurred_at__gte=OuterRef("created_at"),
            type__in=types,
        )
        .annotate(message_ref=KT("properties__message_id"))
        .filter(message_ref=Cast(OuterRef("pk"), CharField()))
    )


def _step_mail_figures(sequence_ids: list[int]) -> dict[int, tuple[int, MailFigures]]:
    """step id -> (sequence id, figures), one aggregate over the sequences' messages."""
    sent = Q(sent_at__isnull=False)
    later_mail = OutgoingMessage.objects.filter(
        enrolment_id=OuterRef("enrolment_id"), sent_at__gt=OuterRef("sent_at")
    )
    mql_after_send = LifecycleTransition.objects.filter(
        lead_id=OuterRef("lead_id"),
        to_stage=LifecycleStage.MQL,
        occurred_at__gte=OuterRef("sent_at"),
    )
    rows = (
        OutgoingMessage.objects.filter(step__sequence_id__in=sequence_ids)
        .order_by()
        .values("step_id", "step__sequence_id")
        .annotate(
            sent=Count("pk", filter=sent),
            delivered=Count("pk", filter=sent & ~Q(status=Status.BOUNCED)),
            opened=Count(
                "pk",
                filter=sent
                & Q(_message_event([ActivityType.EMAIL_OPENED, ActivityType.EMAIL_CLICKED])),
            ),
            clicked=Count("pk", filter=sent & Q(_message_event(ActivityType.EMAIL_CLICKED))),
            unsubscribed=Count(
                "pk", filter=sent & Q(_message_event(ActivityType.EMAIL_UNSUBSCRIBED))
            ),
            bounced=Count("pk", filter=Q(status=Status.BOUNCED)),
            replied=Count(
                "pk",
                filter=sent
                & Q(enrolment__exit_reason=Enrolment.ExitReason.REPLIED)
                & ~Q(Exists(later_mail)),
            ),
            mql=Count("pk", filter=sent & Q(Exists(mql_after_send))),
        )
    )
    names = [item.name for item in fields(MailFigures)]
    return {
        row["step_id"]: (row["step__sequence_id"], MailFigures(**{n: row[n] for n in names}))
        for row in rows
    }


def sequence_stats(sequence_ids: list[int]) -> dict[int, SequenceStats]:
    """The figures of the given sequences of the current tenant (two queries in all,
    whatever their number): enrolments by state, mails in total and per step."""
    stats = {pk: SequenceStats(mail=MailFigures(), steps={}) for pk in sequence_ids}
    if not sequence_ids:
        return stats
    mql_after_enrolment = LifecycleTransition.objects.filter(
        lead_id=OuterRef("lead_id"),
        to_stage=LifecycleStage.MQL,
        occurred_at__gte=OuterRef("enrolled_at"),
    )
    enrolments = (
        Enrolment.objects.filter(sequence_id__in=sequence_ids)
        .order_by()
        .values("sequence_id")
        .annotate(
            enrolled=Count("pk"),
            active=Count("pk", filter=Q(state=State.ACTIVE)),
            paused=Count("pk", filter=Q(state=State.PAUSED)),
            completed=Count("pk", filter=Q(state=State.COMPLETED)),
            exited=Count("pk", filter=Q(state=State.EXITED)),
            replied=Count("pk", filter=Q(exit_reason=Enrolment.ExitReason.REPLIED)),
            mql=Count("lead_id", distinct=True, filter=Q(Exists(mql_after_enrolment))),
        )
    )
    for row in enrolments:
        item = stats[row["sequence_id"]]
        for name in ("enrolled", "active", "paused", "completed", "exited"):
            setattr(item, name, row[name])
        item.mail.replied = row["replied"]
        item.mail.mql = row["mql"]
    for step_id, (sequence_id, figures) in _step_mail_figures(sequence_ids).items():
        item = stats[sequence_id]
        item.steps[step_id] = figures
        # replied and MQL are counted per enrolment and lead above, not per mail.
        for name in ("sent", "delivered", "opened", "clicked", "unsubscribed", "bounced"):
            setattr(item.mail, name, getattr(item.mail, name) + getattr(figures, name))
    return stats


def sequence_stats_get(sequence_id: int) -> SequenceStats:
    return sequence_stats([sequence_id])[sequence_id]


def email_steps_with_mail(sequence: Sequence, stats: SequenceStats) -> list[SequenceStep]:
    """The email steps to show figures for: those of the current version, then those of
    earlier versions that sent mail."""
    steps = (
        SequenceStep.objects.filter(sequence=sequence, kind=StepKind.SEND_EMAIL)
        .filter(Q(version=sequence.version) | Q(pk__in=list(stats.steps or {})))
        .select_related("template")
        .order_by("-version", "order")
    )
    return list(steps)
