"""Lead scoring: the tenant's agreement of what makes a lead ready for sales (引き渡し基準).

A ScoringModel holds fit rules (who the lead is: lead and company fields) and behaviour
rules (what the lead did: activities, optionally filtered, capped, windowed and decayed
with a half-life). LeadScore keeps each lead's fit, behaviour and total per model with
the points of every rule, so anyone can see why a lead scores 72. Scores are computed
set-based in SQL (leads.scoring): a whole tenant, or the leads a batch of activities
touched.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import TenantModel


class ScoringModel(TenantModel):
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    # The primary model's total is "the" score: it moves leads to MQL and is what the
    # lead list filters and sorts by. Other models (per product line) are for reading.
    is_primary = models.BooleanField(_("primary"), default=False)
    mql_threshold = models.IntegerField(_("MQL threshold"), default=100)
    # [{"key": "cold", "label": "Cold", "min": null}, {"key": "warm", "min": 40}, …],
    # ordered by min; a lead's band is the last one whose min its total reaches.
    bands = models.JSONField(_("bands"), default=list, blank=True)
    half_life_days = models.DecimalField(
        _("behaviour half-life (days)"),
        max_digits=7,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("Behaviour points halve every this many days. Empty: no decay."),
    )
    # Bumped by every change of the model or its rules; scores computed under an older
    # version are recomputed by the periodic job.
    version = models.PositiveIntegerField(default=1)
    scored_version = models.PositiveIntegerField(default=0)
    scored_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("scoring model")
        verbose_name_plural = _("scoring models")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant"], condition=Q(is_primary=True), name="scoring_one_primary"
            ),
            models.UniqueConstraint(fields=["tenant", "name"], name="scoring_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class ScoringRule(TenantModel):
    class Kind(models.TextChoices):
        FIT = "fit", _("Fit")
        BEHAVIOUR = "behaviour", _("Behaviour")

    model = models.ForeignKey(ScoringModel, on_delete=models.CASCADE, related_name="rules")
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    label = models.CharField(_("label"), max_length=200, blank=True)
    # Fit: a field of the lead or its company (leads.scoring.fields), an operator and a
    # value. Behaviour: the activity type ("" = any) and an optional property filter.
    field = models.CharField(_("field"), max_length=100, blank=True)
    operator = models.CharField(_("operator"), max_length=20, blank=True)
    value = models.JSONField(_("value"), null=True, blank=True)
    activity_type = models.CharField(_("activity type"), max_length=32, blank=True)
    property_key = models.CharField(_("property"), max_length=100, blank=True)
    property_operator = models.CharField(_("property operator"), max_length=20, blank=True)
    property_value = models.JSONField(_("property value"), null=True, blank=True)
    points = models.IntegerField(_("points"))
    # Behaviour only: at most this many points from the rule (in absolute value), and
    # only activities of the last N days.
    cap = models.PositiveIntegerField(_("cap"), null=True, blank=True)
    window_days = models.PositiveIntegerField(_("window (days)"), null=True, blank=True)
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("scoring rule")
        verbose_name_plural = _("scoring rules")
        ordering = ["position", "id"]
        indexes = [models.Index(fields=["tenant", "model", "position"], name="scoring_rule_idx")]

    def __str__(self) -> str:
        return self.label or f"{self.kind} {self.field or self.activity_type} {self.points:+d}"


class LeadScore(TenantModel):
    """A lead's score under one model. Written only by leads.scoring (set-based)."""

    # Like the activity log, no database foreign keys: a full recompute writes a row
    # per lead, and a constraint check per row at commit doubled its time. Deletes go
    # through Django, which cascades.
    model = models.ForeignKey(
        ScoringModel,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    lead = models.ForeignKey(
        "leads.Lead",
        on_delete=models.CASCADE,
        related_name="scores",
        db_constraint=False,
        db_index=False,
    )
    fit = models.IntegerField(default=0)
    behaviour = models.IntegerField(default=0)
    total = models.IntegerField(default=0)
    band = models.CharField(max_length=40, blank=True)
    breakdown = models.JSONField(default=dict)  # {"<rule id>": points} of rules that scored
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("lead score")
        verbose_name_plural = _("lead scores")
        constraints = [
            # Lead before model: also the index a lead's scores (and their delete) use.
            models.UniqueConstraint(
                fields=["tenant", "lead", "model"], name="leadscore_unique_lead"
            ),
        ]
        indexes = [
            # The lead list's score filter and sort; the MQL promotion's candidates.
            models.Index(fields=["tenant", "model", "-total", "lead"], name="leadscore_total_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.lead_id}: {self.total} ({self.fit} fit + {self.behaviour} behaviour)"


class CompanyScore(TenantModel):
    """A company's score under one model: its live leads' scores rolled up (the sum,
    for account-based work where the whole buying committee counts, and the best
    lead's). Written by leads.scoring with the leads' scores."""

    model = models.ForeignKey(
        ScoringModel,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    company = models.ForeignKey(
        "leads.Company",
        on_delete=models.CASCADE,
        related_name="scores",
        db_constraint=False,
        db_index=False,
    )
    total = models.IntegerField(default=0)  # the sum of its leads' totals
    best = models.IntegerField(default=0)  # its best lead's total
    leads = models.PositiveIntegerField(default=0)  # scored live leads
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("company score")
        verbose_name_plural = _("company scores")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "company", "model"], name="companyscore_unique_company"
            ),
        ]
        indexes = [
            models.Index(
                fields=["tenant", "model", "-total", "company"], name="companyscore_total_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.company_id}: {self.total} ({self.leads} leads, best {self.best})"
