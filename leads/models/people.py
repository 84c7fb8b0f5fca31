"""Leads (people), their companies, the activity stream, consent, tags, custom fields.

Every model here is tenant-owned (TenantModel): RLS and the isolation tests cover it.
Big tables (Lead, Activity) are written set-based by the services and imports; their
indexes lead with tenant_id (Citus distributes by it).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import TenantModel

# --- Reference values ---------------------------------------------------------------------


class LifecycleStage(models.TextChoices):
    """The funnel, in order, then the side states (DESIGN.md)."""

    SUBSCRIBER = "subscriber", _("Subscriber")
    LEAD = "lead", _("Lead")
    MQL = "mql", _("MQL")
    SAL = "sal", _("SAL")
    SQL = "sql", _("SQL")
    OPPORTUNITY = "opportunity", _("Opportunity")
    CUSTOMER = "customer", _("Customer")
    RECYCLED = "recycled", _("Recycled")
    DISQUALIFIED = "disqualified", _("Disqualified")


FUNNEL_ORDER = [
    LifecycleStage.SUBSCRIBER,
    LifecycleStage.LEAD,
    LifecycleStage.MQL,
    LifecycleStage.SAL,
    LifecycleStage.SQL,
    LifecycleStage.OPPORTUNITY,
    LifecycleStage.CUSTOMER,
]


class Prefecture(models.TextChoices):
    HOKKAIDO = "01", _("Hokkaido")
    AOMORI = "02", _("Aomori")
    IWATE = "03", _("Iwate")
    MIYAGI = "04", _("Miyagi")
    AKITA = "05", _("Akita")
    YAMAGATA = "06", _("Yamagata")
    FUKUSHIMA = "07", _("Fukushima")
    IBARAKI = "08", _("Ibaraki")
    TOCHIGI = "09", _("Tochigi")
    GUNMA = "10", _("Gunma")
    SAITAMA = "11", _("Saitama")
    CHIBA = "12", _("Chiba")
    TOKYO = "13", _("Tokyo")
    KANAGAWA = "14", _("Kanagawa")
    NIIGATA = "15", _("Niigata")
    TOYAMA = "16", _("Toyama")
    ISHIKAWA = "17", _("Ishikawa")
    FUKUI = "18", _("Fukui")
    YAMANASHI = "19", _("Yamanashi")
    NAGANO = "20", _("Nagano")
    GIFU = "21", _("Gifu")
    SHIZUOKA = "22", _("Shizuoka")
    AICHI = "23", _("Aichi")
    MIE = "24", _("Mie")
    SHIGA = "25", _("Shiga")
    KYOTO = "26", _("Kyoto")
    OSAKA = "27", _("Osaka")
    HYOGO = "28", _("Hyogo")
    NARA = "29", _("Nara")
    WAKAYAMA = "30", _("Wakayama")
    TOTTORI = "31", _("Tottori")
    SHIMANE = "32", _("Shimane")
    OKAYAMA = "33", _("Okayama")
    HIROSHIMA = "34", _("Hiroshima")
    YAMAGUCHI = "35", _("Yamaguchi")
    TOKUSHIMA = "36", _("Tokushima")
    KAGAWA = "37", _("Kagawa")
    EHIME = "38", _("Ehime")
    KOCHI = "39", _("Kochi")
    FUKUOKA = "40", _("Fukuoka")
    SAGA = "41", _("Saga")
    NAGASAKI = "42", _("Nagasaki")
    KUMAMOTO = "43", _("Kumamoto")
    OITA = "44", _("Oita")
    MIYAZAKI = "45", _("Miyazaki")
    KAGOSHIMA = "46", _("Kagoshima")
    OKINAWA = "47", _("Okinawa")


class SizeBand(models.TextChoices):
    """Employees."""

    S1_9 = "1-9", _("1–9 employees")
    S10_49 = "10-49", _("10–49 employees")
    S50_99 = "50-99", _("50–99 employees")
    S100_299 = "100-299", _("100–299 employees")
    S300_999 = "300-999", _("300–999 employees")
    S1000_4999 = "1000-4999", _("1,000–4,999 employees")
    S5000 = "5000+", _("5,000+ employees")


class RevenueBand(models.TextChoices):
    """Annual revenue, JPY."""

    UNDER_100M = "<100m", _("Under ¥100M")
    R100M_1B = "100m-1b", _("¥100M–¥1B")
    R1B_10B = "1b-10b", _("¥1B–¥10B")
    R10B_100B = "10b-100b", _("¥10B–¥100B")
    OVER_100B = "100b+", _("¥100B and over")


class ConsentStatus(models.TextChoices):
    UNKNOWN = "unknown", _("Unknown")
    GRANTED = "granted", _("Granted")
    PENDING = "pending", _("Pending confirmation")  # double opt-in mail sent
    WITHDRAWN = "withdrawn", _("Withdrawn")


class ConsentPurpose(models.TextChoices):
    """Kept apart: a trade-show lead may be contactable by sales but not mailed."""

    EMAIL_MARKETING = "email_marketing", _("Marketing email")
    SALES_CONTACT = "sales_contact", _("Sales contact")


class Channel(models.TextChoices):
    """How a write arrived; recorded on transitions, consent and activities."""

    UI = "ui", _("Web UI")
    API = "api", _("API")
    FORM = "form", _("Hosted form")
    IMPORT = "import", _("Import")
    TRACKING = "tracking", _("Tracking")
    SYSTEM = "system", _("System")


# --- Companies ---------------------------------------------------------------------------


class Company(TenantModel):
    """A lead's organisation (法人). The corporate number is the strongest match key;
    then the email domain; then the normalised name."""

    name = models.CharField(_("name"), max_length=255)
    name_key = models.CharField(max_length=255, editable=False)  # normalize_company_name
    corporate_number = models.CharField(_("corporate number (法人番号)"), max_length=13, blank=True)
    domain = models.CharField(_("domain"), max_length=255, blank=True)
    industry = models.CharField(_("industry"), max_length=100, blank=True)
    size_band = models.CharField(_("size"), max_length=20, choices=SizeBand.choices, blank=True)
    revenue_band = models.CharField(
        _("annual revenue"), max_length=20, choices=RevenueBand.choices, blank=True
    )
    prefecture = models.CharField(
        _("prefecture"), max_length=2, choices=Prefecture.choices, blank=True
    )
    address = models.CharField(_("address"), max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("company")
        verbose_name_plural = _("companies")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "corporate_number"],
                condition=~Q(corporate_number=""),
                name="company_unique_corporate_number",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "domain"], name="company_tenant_domain_idx"),
            models.Index(fields=["tenant", "name_key"], name="company_tenant_name_key_idx"),
            # The lead search's company arm and the company search (prefix on name_key).
            models.Index(
                fields=["tenant", "name_key"],
                opclasses=["", "varchar_pattern_ops"],
                name="company_search_name_idx",
            ),
            # The API's company list order and its keyset cursor.
            models.Index(
                fields=["tenant", "-created_at", "-id"], name="company_tenant_created_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.name


# --- Leads ---------------------------------------------------------------------------------


class Tag(TenantModel):
    name = models.CharField(_("name"), max_length=64)

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="tag_unique_name")]

    def __str__(self) -> str:
        return self.name


class Lead(TenantModel):
    """A person marketing reaches and sales works. Email is the identity within a tenant
    (normalised; unique when present); a business card without one is still a lead."""

    email = models.CharField(_("email"), max_length=254, blank=True)
    family_name = models.CharField(_("family name"), max_length=100, blank=True)
    given_name = models.CharField(_("given name"), max_length=100, blank=True)
    family_name_kana = models.CharField(_("family name (kana)"), max_length=100, blank=True)
    given_name_kana = models.CharField(_("given name (kana)"), max_length=100, blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)  # E.164
    job_title = models.CharField(_("job title"), max_length=200, blank=True)
    department = models.CharField(_("department"), max_length=200, blank=True)
    # The foreign keys' indexes are partial and ordered for the list (Meta.indexes):
    # every index costs each insert, and imports write 100,000 leads at a time.
    company = models.ForeignKey(
        Company,
        verbose_name=_("company"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="leads",
        db_index=False,
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    lifecycle_stage = models.CharField(
        _("lifecycle stage"),
        max_length=20,
        choices=LifecycleStage.choices,
        default=LifecycleStage.LEAD,
    )
    source_campaign = models.ForeignKey(
        "campaigns.Campaign",
        verbose_name=_("source campaign"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    source_channel = models.CharField(
        _("source"), max_length=20, choices=Channel.choices, default=Channel.UI
    )
    email_consent = models.CharField(
        _("marketing email consent"),
        max_length=20,
        choices=ConsentStatus.choices,
        default=ConsentStatus.UNKNOWN,
    )
    sales_contact_consent = models.CharField(
        _("sales contact consent"),
        max_length=20,
        choices=ConsentStatus.choices,
        default=ConsentStatus.UNKNOWN,
    )
    custom_fields = models.JSONField(_("custom fields"), default=dict, blank=True)
    tags = models.ManyToManyField(Tag, through="LeadTag", related_name="leads", blank=True)
    merged_into = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        verbose_name = _("lead")
        verbose_name_plural = _("leads")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "email"], condition=~Q(email=""), name="lead_unique_email"
            ),
        ]
        indexes = [
            # The list's default order and its keyset cursor. It carries the columns the
            # list filters on that have no index of their own in this order (live leads,
            # source campaign), so the page's ids come from an index-only scan however
            # many newer leads a filter skips (leads.api.pagination, narrow_first).
            models.Index(
                fields=["tenant", "-created_at", "-id"],
                include=["merged_into", "source_campaign"],
                name="lead_tenant_created_cov_idx",
            ),
            models.Index(
                fields=["tenant", "lifecycle_stage", "-created_at", "-id"],
                name="lead_tenant_stage_idx",
            ),
            # One index per foreign key serves its filter (newest first), the FK check
            # and SET NULL on delete. Ids are unique across tenants, so no tenant prefix
            # (RLS rechecks it); partial, so rows without one cost nothing.
            *[
                models.Index(
                    fields=[field, "-created_at"],
                    condition=Q(**{f"{field}__isnull": False}),
                    name=f"lead_{short}_fk_idx",
                )
                for field, short in (
                    ("owner", "owner"),
                    ("company", "company"),
                    ("source_campaign", "source"),
                )
            ],
            models.Index(
                fields=["merged_into"],
                condition=Q(merged_into__isnull=False),
                name="lead_merged_into_fk_idx",
            ),
            # Sort by last change, and by name.
            models.Index(fields=["tenant", "-updated_at", "-id"], name="lead_tenant_updated_idx"),
            models.Index(
                fields=["tenant", "family_name", "given_name", "id"], name="lead_tenant_name_idx"
            ),
            # The prefix search (leads.selectors.lead_search): pattern_ops serve LIKE 'x%'
            # whatever the database collation, so the arms combine in a BitmapOr.
            *[
                models.Index(
                    fields=["tenant", field],
                    opclasses=["", "varchar_pattern_ops"],
                    name=f"lead_search_{short}_idx",
                )
                for field, short in (
                    ("family_name", "family"),
                    ("given_name", "given"),
                    ("family_name_kana", "kana"),
                    ("email", "email"),
                )
            ],
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        # Japanese order: family name first.
        name = " ".join(part for part in (self.family_name, self.given_name) if part)
        return name or self.email or f"#{self.pk}"


class LeadTag(TenantModel):
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="+")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "lead", "tag"], name="leadtag_unique"),
        ]
        indexes = [models.Index(fields=["tenant", "tag", "lead"], name="leadtag_tenant_tag_idx")]

    def __str__(self) -> str:
        return f"{self.lead_id}:{self.tag_id}"


class CustomFieldDefinition(TenantModel):
    """A per-tenant field on leads; values live in Lead.custom_fields[key]."""

    class Type(models.TextChoices):
        TEXT = "text", _("Text")
        NUMBER = "number", _("Number")
        DATE = "date", _("Date")
        BOOLEAN = "boolean", _("Yes/no")
        CHOICE = "choice", _("Choice")
        MULTI_CHOICE = "multi_choice", _("Multiple choice")
        EMAIL = "email", _("Email")
        URL = "url", _("URL")

    key = models.SlugField(_("key"), max_length=64)
    label = models.CharField(_("label"), max_length=100)
    type = models.CharField(_("type"), max_length=20, choices=Type.choices, default=Type.TEXT)
    choices = models.JSONField(_("choices"), default=list, blank=True)
    required = models.BooleanField(_("required"), default=False)
    position = models.PositiveIntegerField(_("position"), default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("custom field")
        verbose_name_plural = _("custom fields")
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="customfield_unique_key"),
        ]

    def __str__(self) -> str:
        return self.label


class LifecycleTransition(TenantModel):
    """Every stage change of a lead: reporting is built on these rows."""

    # An append-only log: the foreign keys are not database constraints. Each one cost
    # a row lock and a lookup per inserted row at commit (0.6 s per 100,000 rows,
    # measured), which dominated imports and ingest; deletes go through Django, which
    # cascades and nulls them itself. Their indexes (below) serve those deletes. The
    # indexes keep the tenant first (DESIGN.md: Citus distributes by tenant_id).
    lead = models.ForeignKey(
        Lead,
        on_delete=models.CASCADE,
        related_name="transitions",
        db_constraint=False,
        db_index=False,
    )
    from_stage = models.CharField(max_length=20, choices=LifecycleStage.choices, blank=True)
    to_stage = models.CharField(max_length=20, choices=LifecycleStage.choices)
    occurred_at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    channel = models.CharField(max_length=20, choices=Channel.choices, default=Channel.SYSTEM)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name = _("lifecycle transition")
        verbose_name_plural = _("lifecycle transitions")
        indexes = [
            models.Index(fields=["tenant", "lead", "occurred_at"], name="transition_lead_idx"),
            models.Index(
                fields=["actor"], condition=Q(actor__isnull=False), name="transition_actor_fk_idx"
            ),
            models.Index(
                fields=["tenant", "to_stage", "occurred_at"], name="transition_stage_time_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lead_id}: {self.from_stage or '∅'} → {self.to_stage}"


# --- Consent ----------------------------------------------------------------------------------


class ConsentEvent(TenantModel):
    """The history behind Lead.email_consent / sales_contact_consent: when, how, proof."""

    # An append-only log: the foreign keys are not database constraints. Each one cost
    # a row lock and a lookup per inserted row at commit (0.6 s per 100,000 rows,
    # measured), which dominated imports and ingest; deletes go through Django, which
    # cascades and nulls them itself. Their indexes (below) serve those deletes. The
    # indexes keep the tenant first (DESIGN.md: Citus distributes by tenant_id).
    lead = models.ForeignKey(
        Lead,
        on_delete=models.CASCADE,
        related_name="consent_events",
        db_constraint=False,
        db_index=False,
    )
    purpose = models.CharField(max_length=20, choices=ConsentPurpose.choices)
    status = models.CharField(max_length=20, choices=ConsentStatus.choices)
    channel = models.CharField(max_length=20, choices=Channel.choices)
    basis = models.CharField(_("stated basis"), max_length=500, blank=True)
    proof = models.JSONField(default=dict, blank=True)  # form, page URL, IP, user agent, text
    occurred_at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )

    class Meta:
        verbose_name = _("consent event")
        verbose_name_plural = _("consent events")
        indexes = [
            models.Index(fields=["tenant", "lead", "occurred_at"], name="consent_lead_idx"),
            models.Index(
                fields=["actor"], condition=Q(actor__isnull=False), name="consent_actor_fk_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lead_id} {self.purpose}={self.status}"


class Suppression(TenantModel):
    """An address that must never receive marketing mail, whoever it belongs to."""

    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", _("Unsubscribed")
        BOUNCED = "bounced", _("Bounced")
        COMPLAINED = "complained", _("Complained")
        MANUAL = "manual", _("Added by hand")

    email = models.CharField(_("email"), max_length=254)
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices)
    note = models.CharField(_("note"), max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("suppressed address")
        verbose_name_plural = _("suppression list")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "email"], name="suppression_unique_email"),
        ]

    def __str__(self) -> str:
        return self.email


# --- Activities ------------------------------------------------------------------------------


class ActivityType(models.TextChoices):
    PAGE_VIEW = "page_view", _("Page view")
    FORM_SUBMISSION = "form_submission", _("Form submission")
    CONTENT_DOWNLOAD = "content_download", _("Content download")
    WEBINAR_REGISTRATION = "webinar_registration", _("Webinar registration")
    WEBINAR_ATTENDANCE = "webinar_attendance", _("Webinar attendance")
    TRADE_SHOW_VISIT = "trade_show_visit", _("Trade-show visit")
    EMAIL_SENT = "email_sent", _("Email sent")
    EMAIL_DELIVERED = "email_delivered", _("Email delivered")
    EMAIL_OPENED = "email_opened", _("Email opened")
    EMAIL_CLICKED = "email_clicked", _("Email clicked")
    EMAIL_BOUNCED = "email_bounced", _("Email bounced")
    EMAIL_UNSUBSCRIBED = "email_unsubscribed", _("Unsubscribed")
    CALL = "call", _("Call")
    MEETING = "meeting", _("Meeting")
    NOTE = "note", _("Note")


class Visitor(TenantModel):
    """An anonymous browser seen by the tracking endpoint, until it becomes a lead."""

    key = models.CharField(max_length=64)  # random id the tracking snippet keeps
    lead = models.ForeignKey(
        Lead, on_delete=models.SET_NULL, null=True, blank=True, related_name="visitors"
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("visitor")
        verbose_name_plural = _("visitors")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="visitor_unique_key"),
        ]

    def __str__(self) -> str:
        return self.key


class Activity(TenantModel):
    """One event in a lead's (or a not-yet-known visitor's) stream. Append-only."""

    id = models.BigAutoField(primary_key=True)
    # An append-only log: the foreign keys are not database constraints. Each one cost
    # a row lock and a lookup per inserted row at commit (0.6 s per 100,000 rows,
    # measured), which dominated imports and ingest; deletes go through Django, which
    # cascades and nulls them itself. Their indexes (below) serve those deletes. The
    # indexes keep the tenant first (DESIGN.md: Citus distributes by tenant_id).
    # Their indexes are partial (IS NOT NULL): most activities have no visitor and
    # many no campaign, and every index costs each insert.
    lead = models.ForeignKey(
        Lead,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="activities",
        db_constraint=False,
        db_index=False,
    )
    visitor = models.ForeignKey(
        Visitor,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="activities",
        db_constraint=False,
        db_index=False,
    )
    type = models.CharField(_("type"), max_length=32, choices=ActivityType.choices)
    occurred_at = models.DateTimeField(_("occurred at"), default=timezone.now)
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    channel = models.CharField(max_length=20, choices=Channel.choices, default=Channel.API)
    properties = models.JSONField(default=dict, blank=True)  # url, referrer, utm_*, …
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("activity")
        verbose_name_plural = _("activities")
        indexes = [
            # A lead's timeline; a campaign's activities. Also what deletes of a lead
            # or campaign use to find the rows to cascade or null (they run in the
            # tenant's scope, so RLS gives them the tenant).
            models.Index(
                fields=["tenant", "lead", "occurred_at"],
                condition=Q(lead__isnull=False),
                name="activity_lead_time_idx",
            ),
            models.Index(
                fields=["tenant", "campaign", "occurred_at"],
                condition=Q(campaign__isnull=False),
                name="activity_campaign_idx",
            ),
            models.Index(
                fields=["visitor"],
                condition=Q(visitor__isnull=False),
                name="activity_visitor_fk_idx",
            ),
            models.Index(
                fields=["tenant", "visitor"],
                condition=Q(lead__isnull=True),
                name="activity_anonymous_idx",
            ),
            # The tenant-wide activity list, newest first, and its keyset cursor.
            models.Index(fields=["tenant", "-occurred_at", "-id"], name="activity_tenant_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.occurred_at:%Y-%m-%d %H:%M}"
