"""The MQL -> SQL handoff: who gets an MQL (teams, routing rules), how long they have
to answer (the tenant's SLA in business hours), and what they answered (accept, reject
with a reason, qualify with a record and a hand-over note).

Every model is tenant-owned (TenantModel): row-level security and the isolation tests
cover it. Writes go through pipeline.services.
"""

import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import TenantModel

# The qualification checklist when a tenant defines none: BANT.
BANT = [
    {"key": "budget", "label": "Budget"},
    {"key": "authority", "label": "Authority"},
    {"key": "need", "label": "Need"},
    {"key": "timeline", "label": "Timeline"},
]


def default_working_days() -> list[int]:
    return [0, 1, 2, 3, 4]  # Monday..Friday (date.weekday())


class HandoffSettings(TenantModel):
    """The tenant's SLA and working hours (one row per tenant; defaults until saved).

    Working hours are wall-clock times in the tenant's time zone (accounts.Tenant);
    public holidays of the tenant's country (the `holidays` package) and the extra
    closed dates (year-end, company holidays) are not business time."""

    sla_hours = models.DecimalField(
        _("SLA (business hours)"),
        max_digits=6,
        decimal_places=2,
        default=8,
        help_text=_("The owner must accept or reject within this many business hours."),
    )
    reminder_minutes = models.PositiveIntegerField(
        _("reminder before the deadline (business minutes)"), default=60
    )
    workday_start = models.TimeField(_("working day starts"), default=datetime.time(9, 0))
    workday_end = models.TimeField(_("working day ends"), default=datetime.time(18, 0))
    working_days = models.JSONField(_("working days"), default=default_working_days)
    observe_holidays = models.BooleanField(_("public holidays are days off"), default=True)
    closed_dates = models.JSONField(_("other closed dates"), default=list, blank=True)
    # [{"key": "budget", "label": "Budget"}, …]; empty: BANT.
    checklist = models.JSONField(_("qualification checklist"), default=list, blank=True)
    default_team = models.ForeignKey(
        "pipeline.Team",
        verbose_name=_("default team"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("MQLs that no routing rule matches go round robin to this team."),
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("handoff settings")
        verbose_name_plural = _("handoff settings")
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="handoffsettings_one_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"SLA {self.sla_hours} h"

    @property
    def checklist_items(self) -> list[dict]:
        return self.checklist or BANT


class Team(TenantModel):
    """An inside-sales team: its members take MQLs in turn; its manager gets escalations."""

    name = models.CharField(_("name"), max_length=100)
    manager = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("manager"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Round robin: the member who got the last MQL (the next one goes to the member
    # after them). Read and written under SELECT … FOR UPDATE of this row.
    last_assigned = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("team")
        verbose_name_plural = _("teams")
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="team_unique_name")]

    def __str__(self) -> str:
        return self.name


class TeamMember(TenantModel):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Off (leave, full queue): skipped by round robin, keeps the place in the team.
    is_available = models.BooleanField(_("takes new MQLs"), default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("team member")
        verbose_name_plural = _("team members")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "team", "user"], name="teammember_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.team_id}"


class RoutingRule(TenantModel):
    """Ordered: the first active rule whose conditions all hold (an empty list is no
    condition) routes the MQL to its target."""

    class Target(models.TextChoices):
        USER = "user", _("A person")
        TEAM = "team", _("A team (round robin)")
        EXISTING_OWNER = "existing_owner", _("The company's existing owner")

    name = models.CharField(_("name"), max_length=100)
    position = models.PositiveIntegerField(_("position"), default=0)
    is_active = models.BooleanField(_("active"), default=True)
    prefectures = models.JSONField(_("prefectures"), default=list, blank=True)
    industries = models.JSONField(_("industries"), default=list, blank=True)
    size_bands = models.JSONField(_("company sizes"), default=list, blank=True)
    target = models.CharField(_("route to"), max_length=20, choices=Target.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("person"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )
    team = models.ForeignKey(
        Team,
        verbose_name=_("team"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("routing rule")
        verbose_name_plural = _("routing rules")
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name


class RejectReason(models.TextChoices):
    BAD_FIT = "bad_fit", _("Bad fit")
    NO_BUDGET = "no_budget", _("No budget")
    WRONG_CONTACT = "wrong_contact", _("Wrong contact")
    DUPLICATE = "duplicate", _("Duplicate")
    NOT_NOW = "not_now", _("Not now")
    OTHER = "other", _("Other")


class Handoff(TenantModel):
    """One MQL handed to inside sales: routed to an owner, answered within the SLA.

    open -> accepted (lead SAL) -> qualified (lead SQL); open or accepted -> rejected
    ("not now" recycles the lead, other reasons disqualify it), or -> withdrawn when the
    lead leaves MQL (open) or SAL (accepted) some other way. At most one handoff per
    lead is open or accepted (the handler of the MQL events relies on it)."""

    class Status(models.TextChoices):
        OPEN = "open", _("Waiting for an answer")
        ACCEPTED = "accepted", _("Accepted")
        QUALIFIED = "qualified", _("Qualified")
        REJECTED = "rejected", _("Rejected")
        # The lead left the stage the handoff waited on by another path (moved by
        # hand, merged into another lead): no longer in anyone's queue.
        WITHDRAWN = "withdrawn", pgettext_lazy("handoff", "Withdrawn")

    class Routing(models.TextChoices):
        RULE_USER = "rule_user", _("Routing rule: person")
        ROUND_ROBIN = "round_robin", _("Round robin")
        EXISTING_OWNER = "existing_owner", _("Existing owner")
        MANUAL = "manual", _("Reassigned by hand")
        UNROUTED = "unrouted", _("No rule matched")

    class SLA(models.TextChoices):
        PENDING = "pending", _("Running")
        MET = "met", _("Met")
        BREACHED = "breached", _("Breached")

    ACTIVE = (Status.OPEN, Status.ACCEPTED)

    lead = models.ForeignKey("leads.Lead", on_delete=models.CASCADE, related_name="+")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    team = models.ForeignKey(
        Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    routed_by = models.CharField(_("routed by"), max_length=20, choices=Routing.choices)
    routing_rule = models.ForeignKey(
        RoutingRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.OPEN
    )
    # Frozen when the MQL arrived: the campaign marketing gets the feedback for.
    source_campaign = models.ForeignKey(
        "campaigns.Campaign",
        verbose_name=_("source campaign"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    score = models.IntegerField(_("score at handoff"), null=True, blank=True)
    created_at = models.DateTimeField(_("handed over"), default=timezone.now)
    deadline = models.DateTimeField(_("SLA deadline"))
    remind_at = models.DateTimeField()
    reminder_sent_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    sla = models.CharField(_("SLA"), max_length=10, choices=SLA.choices, default=SLA.PENDING)
    responded_at = models.DateTimeField(_("answered"), null=True, blank=True)
    responded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    accepted_at = models.DateTimeField(null=True, blank=True)
    qualified_at = models.DateTimeField(null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    reject_reason = models.CharField(
        _("rejection reason"), max_length=20, choices=RejectReason.choices, blank=True
    )
    reject_comment = models.CharField(_("comment"), max_length=1000, blank=True)
    reassigned_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("handoff")
        verbose_name_plural = _("handoffs")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "lead"],
                condition=Q(status__in=["open", "accepted"]),
                name="handoff_one_active_per_lead",
            ),
        ]
        indexes = [
            # The queue (active handoffs by deadline) and the SLA job's scan.
            models.Index(
                fields=["tenant", "deadline", "id"],
                condition=Q(status__in=["open", "accepted"]),
                name="handoff_queue_idx",
            ),
            models.Index(
                fields=["remind_at"],
                condition=Q(status="open"),
                name="handoff_sla_scan_idx",
            ),
            models.Index(fields=["tenant", "source_campaign"], name="handoff_campaign_idx"),
            models.Index(fields=["tenant", "lead", "-created_at"], name="handoff_lead_idx"),
        ]

    def __str__(self) -> str:
        return f"handoff #{self.pk} lead {self.lead_id} ({self.status})"


class Qualification(TenantModel):
    """What inside sales found out (BANT or the tenant's checklist) and the note field
    sales reads before the first meeting."""

    handoff = models.OneToOneField(Handoff, on_delete=models.CASCADE, related_name="qualification")
    budget = models.CharField(_("budget"), max_length=500, blank=True)
    authority = models.CharField(_("authority"), max_length=500, blank=True)
    need = models.CharField(_("need"), max_length=500, blank=True)
    timeline = models.CharField(_("timeline"), max_length=500, blank=True)
    answers = models.JSONField(_("checklist answers"), default=dict, blank=True)
    handover_note = models.TextField(_("hand-over note for field sales"))
    qualified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("qualification")
        verbose_name_plural = _("qualifications")

    def __str__(self) -> str:
        return f"qualification of handoff {self.handoff_id}"


class Task(TenantModel):
    """A piece of sales work on a lead for one person: made by hand, or by a nurture
    sequence's "create a task for the owner" step (the outbox event
    `nurture.task_requested`). A step makes one task per enrolment, however often the
    event is delivered: unique (enrolment, step)."""

    class Source(models.TextChoices):
        MANUAL = "manual", _("Created by hand")
        NURTURE = "nurture", _("Nurture sequence")

    lead = models.ForeignKey(
        "leads.Lead", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("assigned to"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    title = models.CharField(_("title"), max_length=200)
    due_date = models.DateField(_("due"), null=True, blank=True)
    source = models.CharField(
        _("source"), max_length=10, choices=Source.choices, default=Source.MANUAL
    )
    sequence = models.ForeignKey(
        "campaigns.Sequence",
        verbose_name=_("sequence"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    # Ids only: the key that makes a step's task once (an enrolment or a step version
    # that goes away keeps its task).
    enrolment_id = models.BigIntegerField(null=True, blank=True)
    step_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    done_at = models.DateTimeField(_("done"), null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("task")
        verbose_name_plural = _("tasks")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "enrolment_id", "step_id"],
                condition=Q(enrolment_id__isnull=False),
                name="task_once_per_enrolment_step",
            ),
        ]
        indexes = [
            # "My tasks": a person's open tasks by due date.
            models.Index(
                fields=["tenant", "assignee", "due_date", "id"],
                condition=Q(done_at__isnull=True),
                name="task_open_idx",
            ),
            models.Index(fields=["tenant", "lead", "-created_at"], name="task_lead_idx"),
        ]

    def __str__(self) -> str:
        return self.title
