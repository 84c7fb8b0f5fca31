"""Webhook endpoints, their deliveries and each delivery's attempts (tenant-owned).

Imported at the end of accounts.models, so Django registers them in the accounts app.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import TenantModel


class WebhookEndpoint(TenantModel):
    """A URL of the tenant's that receives the events it subscribes to.

    `events` lists event names, or is ["*"] for every event. The signing secret is kept
    encrypted (accounts.webhooks.secrets) and shown to the tenant once, on create and on
    rotate. An endpoint failing without a success for WEBHOOK_DISABLE_AFTER is disabled
    (disabled_reason "failing"); only an explicit enable turns it back on.
    """

    class DisabledReason(models.TextChoices):
        MANUAL = "manual", _("Disabled by a user")
        FAILING = "failing", _("Disabled after failing for a day")

    url = models.URLField(_("URL"), max_length=2000)
    description = models.CharField(_("description"), max_length=200, blank=True)
    events = models.JSONField(_("events"), default=list)
    secret_encrypted = models.TextField()
    is_active = models.BooleanField(_("active"), default=True)
    disabled_at = models.DateTimeField(_("disabled at"), null=True, blank=True)
    disabled_reason = models.CharField(
        _("disabled because"), max_length=16, choices=DisabledReason.choices, blank=True
    )
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True)
    # When the owners were told of the automatic disabling (at most one mail per disabling).
    disabled_notice_sent_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="webhook_tenant_created_idx"),
        ]

    def __str__(self) -> str:
        return self.url

    def subscribes_to(self, event_name: str) -> bool:
        return "*" in self.events or event_name in self.events


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENDING = "sending", _("Sending")
    RETRYING = "retrying", _("Failed, will retry")
    SUCCEEDED = "succeeded", _("Succeeded")
    GAVE_UP = "gave_up", _("Gave up")


class WebhookDelivery(TenantModel):
    """One event (or test ping, or replay) for one endpoint, and where its sending stands.

    `body` is the exact JSON text sent, signed anew at each attempt. One delivery per
    (endpoint, event): the outbox dispatches at least once, so the second dispatch of an
    event finds its delivery already there. A replay is a new delivery with the same
    body, pointing at the one it replays. A worker owns a delivery while `lease_until`
    is ahead (status "sending"); a lease that ran out belongs to whoever claims it next.
    """

    id = models.BigAutoField(primary_key=True)
    # Indexed by webhook_delivery_log_idx, tenant first.
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    event_id = models.BigIntegerField(null=True, blank=True)  # DomainEvent id; None for tests
    event_name = models.CharField(_("event"), max_length=64)
    body = models.TextField()
    status = models.CharField(
        _("status"), max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(_("response code"), null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField(_("duration (ms)"), null=True, blank=True)
    last_error = models.TextField(_("error"), blank=True)
    replay_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "endpoint", "event_id"],
                condition=models.Q(event_id__isnull=False, replay_of__isnull=True),
                name="webhook_delivery_once_per_event",
            ),
        ]
        indexes = [
            # The delivery log of one endpoint, newest first (keyset pages).
            models.Index(
                fields=["tenant", "endpoint", "-created_at", "-id"],
                name="webhook_delivery_log_idx",
            ),
            # The retry sweep reads only what is still to be sent.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["pending", "retrying", "sending"]),
                name="webhook_delivery_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_name} → {self.endpoint_id} #{self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.GAVE_UP)


class WebhookAttempt(TenantModel):
    """One HTTP request of a delivery: when, the response code, how long, what failed.
    Append-only; no database foreign key (as the other logs: the delivery row is the
    reference, and inserting an attempt need not lock it)."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(
        WebhookDelivery,
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,
        related_name="attempt_log",
    )
    number = models.PositiveIntegerField()
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")
        indexes = [
            models.Index(fields=["tenant", "delivery", "number"], name="webhook_attempt_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.delivery_id} attempt {self.number}"
