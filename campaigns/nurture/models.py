"""Nurturing sequences: sender identities, email templates, sequences of versioned
steps, enrolments of leads, the outgoing-message log and per-tenant sending settings.

Imported by campaigns.models (Django finds the models there). Rules live in
campaigns.nurture.services; the models hold data and the invariants the database
can enforce: a lead is in a sequence once at a time (partial unique index on live
enrolments) and a step is sent to an enrolment once (unique (enrolment, step) on the
outgoing message, written before the send).
"""

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import TenantModel
from leads.models import LifecycleStage


class SenderIdentity(TenantModel):
    """Who a mail is from. Japan's Act on Specified Electronic Mail (特定電子メール法)
    wants the sender's name and postal address in every marketing mail, so both are
    required here and the footer of every mail carries them."""

    from_name = models.CharField(_("from name"), max_length=200)
    from_email = models.EmailField(_("from address"), max_length=254)
    reply_to = models.EmailField(_("reply-to address"), max_length=254, blank=True)
    postal_address = models.TextField(_("postal address"))
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("sender identity")
        verbose_name_plural = _("sender identities")

    def __str__(self) -> str:
        return f"{self.from_name} <{self.from_email}>"


class EmailTemplate(TenantModel):
    """Subject, HTML and plain text with merge fields such as
    {{ lead.family_name|default:"ご担当者" }} (campaigns.nurture.render)."""

    name = models.CharField(_("name"), max_length=200)
    subject = models.CharField(_("subject"), max_length=255)
    html = models.TextField(_("HTML body"), blank=True)
    text = models.TextField(_("plain-text body"))
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("email template")
        verbose_name_plural = _("email templates")

    def __str__(self) -> str:
        return self.name


class Segment(TenantModel):
    """A saved lead filter: `filter` is the query string of the lead list
    (leads.forms.LeadListFilter, the API's filter set with the list's widgets), so a
    segment means exactly what the lead list shows for it. Checked when saved and
    again when evaluated (an owner or campaign it names may have gone since)."""

    name = models.CharField(_("name"), max_length=200)
    filter = models.TextField(_("filter"), blank=True)
    # Periodic evaluation (campaigns.nurture.segments): when it last ran, how many
    # leads matched, and why it matched nothing when the filter no longer holds.
    evaluated_at = models.DateTimeField(_("last evaluated"), null=True, blank=True)
    matched = models.PositiveIntegerField(_("leads matching"), null=True, blank=True)
    error = models.CharField(_("problem"), max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="segment_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class SegmentMember(TenantModel):
    """A lead that matched a segment at its last evaluation, since `entered_at`.
    Evaluation keeps these rows set-based (insert the new matches, delete the leads
    that left), so a sequence that allows re-enrolment takes a lead again only when
    it comes back into the segment, not at every evaluation."""

    segment = models.ForeignKey(
        Segment, on_delete=models.CASCADE, related_name="members", db_index=False
    )
    lead = models.ForeignKey(
        "leads.Lead", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    entered_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("segment member")
        verbose_name_plural = _("segment members")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "segment", "lead"], name="segment_member_unique"
            ),
        ]
        indexes = [models.Index(fields=["lead"], name="segment_member_lead_idx")]

    def __str__(self) -> str:
        return f"{self.lead_id} in segment {self.segment_id}"


class Sequence(TenantModel):
    """An ordered journey of steps. Its steps are versioned: publishing changed steps
    makes a new version, and each enrolment keeps running the version it joined, so
    editing a live sequence never sends a step twice nor skips anyone silently."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")

    name = models.CharField(_("name"), max_length=200)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.DRAFT
    )
    version = models.PositiveIntegerField(_("version"), default=1)
    sender = models.ForeignKey(
        SenderIdentity,
        verbose_name=_("sender"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    # Automatic enrolment: leads joining this campaign, leads recycled by sales.
    enrol_on_campaign = models.ForeignKey(
        "campaigns.Campaign",
        verbose_name=_("enrol leads joining campaign"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    enrol_on_recycled = models.BooleanField(_("enrol leads recycled by sales"), default=False)
    # … leads submitting this form, leads reaching this lifecycle stage, leads matching
    # this segment (evaluated periodically).
    enrol_on_form = models.ForeignKey(
        "leads.CaptureForm",
        verbose_name=_("enrol leads submitting form"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    enrol_on_stage = models.CharField(
        _("enrol leads reaching stage"),
        max_length=20,
        choices=LifecycleStage.choices,
        blank=True,
    )
    enrol_on_segment = models.ForeignKey(
        Segment,
        verbose_name=_("enrol leads matching segment"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sequences",
    )
    allow_reenrolment = models.BooleanField(
        _("a lead may go through it again after finishing"), default=False
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("sequence")
        verbose_name_plural = _("sequences")

    def __str__(self) -> str:
        return self.name


class StepKind(models.TextChoices):
    SEND_EMAIL = "send_email", _("Send email")
    WAIT = "wait", _("Wait")
    BRANCH = "branch", _("Branch")
    CREATE_TASK = "create_task", _("Create task for the owner")
    CHANGE_FIELD = "change_field", _("Change field or stage")
    ENROL = "enrol", _("Enrol in another sequence")
    END = "end", _("End")


class SequenceStep(TenantModel):
    """One step of one version of a sequence, at position `order` (0, 1, …).

    `config` by kind:
    - wait: {"seconds": int} and/or {"weekdays": [0..6], "window": ["09:00", "18:00"]}
      (Monday = 0, local times of the tenant's time zone);
    - branch: {"condition": {...}, "then": order, "else": order} (see services);
    - create_task: {"title": str}; change_field: {"field": str, "value": str} or
      {"stage": str}; enrol: {"sequence_id": int}.
    """

    sequence = models.ForeignKey(
        Sequence, on_delete=models.CASCADE, related_name="steps", db_index=False
    )
    version = models.PositiveIntegerField(_("version"))
    order = models.PositiveIntegerField(_("order"))
    kind = models.CharField(_("kind"), max_length=20, choices=StepKind.choices)
    template = models.ForeignKey(
        EmailTemplate,
        verbose_name=_("template"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    config = models.JSONField(_("settings"), default=dict, blank=True)

    class Meta:
        verbose_name = _("sequence step")
        verbose_name_plural = _("sequence steps")
        ordering = ["sequence", "version", "order"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "sequence", "version", "order"], name="sequence_step_unique"
            ),
            models.CheckConstraint(
                condition=~Q(kind="send_email") | Q(template__isnull=False),
                name="sequence_step_email_has_template",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sequence_id} v{self.version} #{self.order} {self.kind}"


class Enrolment(TenantModel):
    """A lead going through one version of a sequence. `step_order` is the next step
    to run, due at `next_due_at`."""

    class State(models.TextChoices):
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")
        COMPLETED = "completed", _("Completed")
        EXITED = "exited", _("Exited")

    class ExitReason(models.TextChoices):
        BECAME_SQL = "became_sql", _("Became SQL")
        BECAME_CUSTOMER = "became_customer", _("Became a customer")
        UNSUBSCRIBED = "unsubscribed", _("Unsubscribed")
        BOUNCED = "bounced", _("Bounced")
        REPLIED = "replied", _("Replied")
        NO_CONSENT = "no_consent", _("No marketing consent")
        REMOVED = "removed", _("Removed by hand")

    class Source(models.TextChoices):
        MANUAL = "manual", _("Enrolled by hand")
        CAMPAIGN = "campaign", _("Joined a campaign")
        RECYCLED = "recycled", _("Recycled by sales")
        SEQUENCE = "sequence", _("From another sequence")
        FORM = "form", _("Submitted a form")
        STAGE = "stage", _("Reached a stage")
        SEGMENT = "segment", _("Matched a segment")

    lead = models.ForeignKey(
        "leads.Lead", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    sequence = models.ForeignKey(
        Sequence, on_delete=models.CASCADE, related_name="enrolments", db_index=False
    )
    version = models.PositiveIntegerField(_("version"))
    step_order = models.PositiveIntegerField(_("next step"), default=0)
    next_due_at = models.DateTimeField(_("next step due"), null=True, blank=True)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.ACTIVE)
    exit_reason = models.CharField(
        _("exit reason"), max_length=20, choices=ExitReason.choices, blank=True
    )
    source = models.CharField(
        _("source"), max_length=10, choices=Source.choices, default=Source.MANUAL
    )
    enrolled_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    LIVE_STATES = (State.ACTIVE, State.PAUSED)

    class Meta:
        verbose_name = _("enrolment")
        verbose_name_plural = _("enrolments")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "sequence", "lead"],
                condition=Q(state__in=["active", "paused"]),
                name="enrolment_live_once",
            ),
        ]
        indexes = [
            # The dispatcher's queue: a tenant's active rows by due time, so claiming
            # the due ones reads no finished row (and finding the tenants with due
            # work is one probe per tenant).
            models.Index(
                fields=["tenant", "next_due_at"],
                condition=Q(state="active"),
                name="enrolment_due_idx",
            ),
            models.Index(fields=["sequence", "state"], name="enrolment_sequence_idx"),
            models.Index(fields=["lead"], name="enrolment_lead_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.lead_id} in {self.sequence_id} ({self.state})"


class OutgoingMessage(TenantModel):
    """One mail of one step to one enrolment, written *before* the send: the unique
    (enrolment, step) key makes a retried or crashed dispatch find the row instead of
    sending again."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        BOUNCED = "bounced", _("Bounced")
        SKIPPED = "skipped", _("Skipped")

    enrolment = models.ForeignKey(
        Enrolment, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    step = models.ForeignKey(
        SequenceStep, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    lead = models.ForeignKey(
        "leads.Lead", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    to_email = models.CharField(_("to"), max_length=254)
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    raw_headers = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("outgoing message")
        verbose_name_plural = _("outgoing messages")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "enrolment", "step"], name="outgoing_message_once"
            ),
        ]
        indexes = [
            models.Index(fields=["enrolment"], name="outgoing_enrolment_idx"),
            models.Index(fields=["lead"], name="outgoing_lead_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.to_email}: {self.subject} ({self.status})"


class SendingSettings(TenantModel):
    """A tenant's sending limits and quiet hours (local time of the tenant's zone; a
    window may cross midnight, e.g. 21:00–08:00)."""

    per_minute = models.PositiveIntegerField(
        _("mails per minute"), default=600, validators=[MinValueValidator(1)]
    )
    per_day = models.PositiveIntegerField(
        _("mails per day"), default=100_000, validators=[MinValueValidator(1)]
    )
    quiet_start = models.TimeField(_("quiet hours from"), null=True, blank=True)
    quiet_end = models.TimeField(_("quiet hours until"), null=True, blank=True)

    class Meta:
        verbose_name = _("sending settings")
        verbose_name_plural = _("sending settings")
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="sending_settings_one_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.per_minute}/min, {self.per_day}/day"


__all__ = [
    "EmailTemplate",
    "Enrolment",
    "OutgoingMessage",
    "Segment",
    "SegmentMember",
    "SenderIdentity",
    "SendingSettings",
    "Sequence",
    "SequenceStep",
    "StepKind",
]
