"""Users, tenants, memberships, agency access, API keys, invitations and the audit log.

User and Tenant are platform tables (they are what a tenant *is*). Every other model
here is tenant-owned: it inherits TenantModel, so its default manager refuses to run
without a tenant and PostgreSQL row-level security guards its table.
"""

import zoneinfo

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.tenancy import current_tenant_id, is_unscoped

# --- Tenant-owned base ----------------------------------------------------------------


class TenantQuerySet(models.QuerySet):
    pass


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):
    """Filters by the current tenant; raises TenantNotSet when none is set.

    Inside `unscoped(reason=...)` it returns every tenant's rows: the named escape.
    """

    def get_queryset(self) -> TenantQuerySet:
        queryset = super().get_queryset()
        if is_unscoped():
            return queryset
        return queryset.filter(tenant_id=current_tenant_id())


class TenantModel(models.Model):
    """Abstract base of every tenant-owned model.

    Subclasses get row-level security on their table automatically (see accounts.rls,
    applied after every migrate) and join the tenant isolation tests.
    """

    # No database FK constraint: row-level security's WITH CHECK already pins tenant_id
    # to the scope's tenant (resolved from a real row), tenants are deactivated, never
    # deleted, and the per-row RI trigger was the largest single cost of bulk writes
    # (imports spent 11 s of 27 s on deferred FK checks at commit for 100k rows).
    tenant = models.ForeignKey(
        "accounts.Tenant",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )

    objects = TenantManager()

    class Meta:
        abstract = True


def tenant_models() -> list[type[TenantModel]]:
    from django.apps import apps

    return [
        model
        for model in apps.get_models()
        if issubclass(model, TenantModel) and not model._meta.proxy
    ]


# --- Users ----------------------------------------------------------------------------


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra_fields) -> "User":
        if not email:
            raise ValueError("email is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra_fields) -> "User":
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email: str, password: str | None = None, **extra_fields) -> "User":
        extra_fields["is_staff"] = True
        extra_fields["is_superuser"] = True
        return self._create_user(email, password, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs in, by email. Platform table: belongs to no single tenant."""

    email = models.EmailField(_("email address"), unique=True)
    full_name = models.CharField(_("full name"), max_length=150, blank=True)
    language = models.CharField(_("language"), max_length=8, choices=settings.LANGUAGES, blank=True)
    is_staff = models.BooleanField(_("platform administrator"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name or self.email.split("@")[0]


# --- Tenants ----------------------------------------------------------------------------

TIME_ZONE_CHOICES = sorted((name, name) for name in zoneinfo.available_timezones())

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    _("Use 1-50 lowercase letters, digits and hyphens, not starting or ending with one."),
)


class Tenant(models.Model):
    """A client company, or an agency that manages client companies.

    Platform table: the tenant *is* the boundary. An agency may also run its own
    marketing, so it holds tenant data like any client.
    """

    class Kind(models.TextChoices):
        CLIENT = "client", _("Client company")
        AGENCY = "agency", _("Agency")

    slug = models.SlugField(_("slug"), max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.CLIENT)
    managed_by = models.ForeignKey(
        "self",
        verbose_name=_("managing agency"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="clients",
        limit_choices_to={"kind": Kind.AGENCY},
    )
    country = models.CharField(_("country"), max_length=2, default="JP")
    time_zone = models.CharField(
        _("time zone"), max_length=64, choices=TIME_ZONE_CHOICES, default="Asia/Tokyo"
    )
    language = models.CharField(
        _("language"), max_length=8, choices=settings.LANGUAGES, default="ja"
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(managed_by=models.F("id")),
                name="tenant_not_managed_by_itself",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_agency(self) -> bool:
        return self.kind == self.Kind.AGENCY


# --- Roles ----------------------------------------------------------------------------------


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    ADMIN = "admin", _("Admin")
    MARKETING = "marketing", _("Marketing")
    INSIDE_SALES = "inside_sales", _("Inside sales")
    FIELD_SALES = "field_sales", _("Field sales")
    READ_ONLY = "read_only", _("Read-only")


ADMIN_ROLES = frozenset({Role.OWNER, Role.ADMIN})


class Membership(TenantModel):
    """A user's role in one tenant."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user"),
        ]
        indexes = [models.Index(fields=["user"], name="membership_user_idx")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant_id} ({self.role})"


class AgencyAssignment(TenantModel):
    """The explicit grant by which one agency staff member reaches one client tenant.

    `tenant` is the client; the user must be a member of the client's managing agency.
    Agency owners and admins reach all the agency's clients without one.
    """

    agency = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="agency_assignments_made"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agency_assignments"
    )
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("agency assignment")
        verbose_name_plural = _("agency assignments")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="agency_assignment_unique"),
        ]
        indexes = [models.Index(fields=["user"], name="agency_assignment_user_idx")]

    def __str__(self) -> str:
        return f"{self.user} → {self.tenant_id} via agency {self.agency_id} ({self.role})"


class APIKey(TenantModel):
    """A key for a third-party tool. Only its SHA-256 is stored; the key is shown once."""

    class Scope(models.TextChoices):
        READ = "read", _("Read")
        WRITE = "write", _("Read and write")

    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    hashed_key = models.CharField(max_length=64)
    scope = models.CharField(_("scope"), max_length=10, choices=Scope.choices, default=Scope.READ)
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.READ_ONLY)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        indexes = [models.Index(fields=["tenant", "created_at"], name="apikey_tenant_created_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def can_write(self) -> bool:
        return self.scope == self.Scope.WRITE


class Invitation(TenantModel):
    """An invitation by email to join a tenant with a role."""

    email = models.EmailField(_("email"))
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    hashed_token = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        indexes = [models.Index(fields=["tenant", "email"], name="invitation_tenant_email_idx")]

    def __str__(self) -> str:
        return f"{self.email} → {self.tenant_id}"

    @property
    def is_pending(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )


class AuditLog(TenantModel):
    """Append-only record of security-relevant and destructive actions.

    Platform events that concern no single tenant (a failed login, say) have no
    tenant: row-level security then shows them only to the platform escape.
    """

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(
        APIKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(_("action"), max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log")
        indexes = [
            models.Index(fields=["tenant", "-created_at", "-id"], name="auditlog_tenant_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action}"


class IdempotencyRecord(TenantModel):
    """The stored outcome of a create sent with an `Idempotency-Key` header, so that a
    client retrying after a timeout gets the first response instead of a duplicate."""

    key = models.CharField(max_length=255)
    caller = models.CharField(max_length=64)  # "key:<id>" or "user:<id>": keys are per caller
    fingerprint = models.CharField(max_length=64)  # SHA-256 of method, path and body
    status_code = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "caller", "key"], name="idempotency_unique_key"
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return f"{self.caller} {self.key}"


class DomainEvent(TenantModel):
    """The transactional outbox: a fact a service wrote in the same transaction as the
    change itself (`lead.created`, `deal.won`, …), dispatched once after commit to the
    handlers higher apps register (and, later, to the tenant's webhooks)."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    occurred_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name = _("domain event")
        verbose_name_plural = _("domain events")
        indexes = [
            models.Index(fields=["tenant", "-occurred_at"], name="event_tenant_time_idx"),
            # The sweep looks only at what is still undispatched.
            models.Index(
                fields=["occurred_at"],
                condition=models.Q(dispatched_at__isnull=True),
                name="event_undispatched_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}"


# Webhook models live in their package; imported here so Django registers them.
from accounts.webhooks.models import (  # noqa: E402, F401
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
