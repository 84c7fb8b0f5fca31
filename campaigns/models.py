"""Campaigns (the marketing programmes leads come from) and the leads in them.

Nurturing sequences, email templates and sending: campaigns.nurture (imported below).
"""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import TenantModel


class CampaignChannel(models.TextChoices):
    WEBINAR = "webinar", _("Webinar / seminar")
    TRADE_SHOW = "trade_show", _("Trade show / exhibition")
    CONTENT = "content", _("Whitepaper / content download")
    WEB_FORM = "web_form", _("Web form / document request")
    NEWSLETTER = "newsletter", _("Newsletter")
    PAID_ADS = "paid_ads", _("Paid ads")
    SOCIAL = "social", _("Social")
    SEO = "seo", _("SEO / organic")
    REFERRAL = "referral", _("Referral")
    EVENT = "event", _("Event")
    OTHER = "other", _("Other")


class Campaign(TenantModel):
    class Status(models.TextChoices):
        PLANNED = "planned", _("Planned")
        ACTIVE = "active", _("Active")
        COMPLETED = "completed", _("Completed")
        CANCELLED = "cancelled", _("Cancelled")

    name = models.CharField(_("name"), max_length=200)
    channel = models.CharField(_("channel"), max_length=20, choices=CampaignChannel.choices)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.PLANNED
    )
    description = models.TextField(_("description"), blank=True)
    starts_on = models.DateField(_("start"), null=True, blank=True)
    ends_on = models.DateField(_("end"), null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3, default="JPY")
    budget = models.DecimalField(
        _("budget"),
        max_digits=14,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
    )
    actual_cost = models.DecimalField(
        _("actual cost"),
        max_digits=14,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
    )
    target_leads = models.PositiveIntegerField(_("target leads"), default=0)
    utm_source = models.CharField(_("utm_source"), max_length=100, blank=True)
    utm_medium = models.CharField(_("utm_medium"), max_length=100, blank=True)
    utm_campaign = models.CharField(_("utm_campaign"), max_length=100, blank=True)
    utm_term = models.CharField(_("utm_term"), max_length=100, blank=True)
    utm_content = models.CharField(_("utm_content"), max_length=100, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__isnull=True)
                | Q(starts_on__isnull=True)
                | Q(ends_on__gte=F("starts_on")),
                name="campaign_ends_after_start",
            ),
        ]
        indexes = [
            models.Index(
                fields=["tenant", "-created_at", "-id"], name="campaign_tenant_created_idx"
            ),
            models.Index(fields=["tenant", "utm_campaign"], name="campaign_tenant_utm_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class CampaignMembership(TenantModel):
    class Status(models.TextChoices):
        INVITED = "invited", _("Invited")
        REGISTERED = "registered", _("Registered")
        ATTENDED = "attended", _("Attended")
        RESPONDED = "responded", _("Responded")
        NO_SHOW = "no_show", _("No-show")

    # The foreign keys' indexes are the composite ones below (ids are unique across
    # tenants, so they need no tenant prefix): every index costs each insert.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    lead = models.ForeignKey(
        "leads.Lead", on_delete=models.CASCADE, related_name="campaign_memberships", db_index=False
    )
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.RESPONDED
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("campaign member")
        verbose_name_plural = _("campaign members")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "campaign", "lead"], name="campaign_membership_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["lead"], name="membership_lead_fk_idx"),
            # A campaign's member list and its keyset cursor, without sorting every member.
            models.Index(fields=["campaign", "-created_at", "-id"], name="membership_members_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.lead_id} ({self.status})"


class CampaignCounts(TenantModel):
    """Part of a campaign's figures: its members by status and the leads it generated
    are the SUM of its rows here. Database triggers (campaigns/counts.py) append one
    row per statement that changes memberships or leads' source campaign, so writers
    never wait on a shared counter row; a periodic job folds each campaign's rows into
    one. Reads stay exact: a transaction sees the rows of exactly the changes it sees.
    PostgreSQL only (SQLite development databases count live)."""

    # Rows of a deleted campaign are dropped by the fold, not by a constraint: the
    # triggers of the campaign's own cascade write rows for it while it is deleted.
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    invited = models.IntegerField(default=0, db_default=0)
    registered = models.IntegerField(default=0, db_default=0)
    attended = models.IntegerField(default=0, db_default=0)
    responded = models.IntegerField(default=0, db_default=0)
    no_show = models.IntegerField(default=0, db_default=0)
    leads_generated = models.IntegerField(default=0, db_default=0)

    class Meta:
        verbose_name = _("campaign counts")
        verbose_name_plural = _("campaign counts")
        indexes = [models.Index(fields=["campaign"], name="campaign_counts_campaign_idx")]

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.responded} responded, {self.leads_generated} leads"


# Nurturing sequences and email (issue 5) live in campaigns.nurture; Django finds the
# models here.
from campaigns.nurture.models import (  # noqa: E402
    EmailTemplate,
    Enrolment,
    OutgoingMessage,
    Segment,
    SegmentMember,
    SenderIdentity,
    SendingSettings,
    Sequence,
    SequenceStep,
    StepKind,
)

__all__ = [
    "Campaign",
    "CampaignChannel",
    "CampaignCounts",
    "CampaignMembership",
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
