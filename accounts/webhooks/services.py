"""Every write on webhooks: endpoints (create, update, rotate, enable/disable, delete),
test pings and replays, and the automatic disabling of a failing endpoint.

Each is transactional, runs in the endpoint's tenant scope and leaves an audit entry.
The signing secret leaves these functions in clear only in IssuedSecret, once.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.services.audit import SYSTEM, Origin, audit_record
from accounts.tenancy import tenant_scope
from accounts.webhooks.addresses import validate_webhook_url
from accounts.webhooks.catalogue import ALL_EVENTS, TEST_EVENT, is_subscribable
from accounts.webhooks.delivery import build_body, enqueue_after_commit
from accounts.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from accounts.webhooks.secrets import encrypt_secret, new_signing_secret

MAX_ENDPOINTS_PER_TENANT = 20


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    endpoint: WebhookEndpoint
    secret: str  # shown to the user once, stored only encrypted


def _clean_events(events: list[str]) -> list[str]:
    names = sorted({name.strip() for name in events if name and name.strip()})
    if not names:
        raise ValidationError({"events": _("Choose at least one event.")})
    unknown = [name for name in names if not is_subscribable(name)]
    if unknown:
        raise ValidationError(
            {"events": _("Unknown event: %(name)s") % {"name": ", ".join(unknown)}}
        )
    return [ALL_EVENTS] if ALL_EVENTS in names else names


def _clean_url(url: str) -> str:
    url = url.strip()
    try:
        validate_webhook_url(url)
    except ValidationError as exc:
        raise ValidationError({"url": exc.messages}) from exc
    return url


@transaction.atomic
def webhook_endpoint_create(
    *, tenant_id: int, url: str, events: list[str], description: str = "", origin: Origin
) -> IssuedSecret:
    """A new active endpoint with a fresh signing secret (returned once)."""
    url, events = _clean_url(url), _clean_events(events)
    secret = new_signing_secret()
    with tenant_scope(tenant_id):
        if WebhookEndpoint.objects.count() >= MAX_ENDPOINTS_PER_TENANT:
            raise ValidationError(
                _("A tenant can have at most %(count)d webhook endpoints.")
                % {"count": MAX_ENDPOINTS_PER_TENANT}
            )
        endpoint = WebhookEndpoint(
            tenant_id=tenant_id,
            url=url,
            description=description.strip(),
            events=events,
            secret_encrypted=encrypt_secret(secret),
            created_by=origin.actor,
        )
        endpoint.full_clean(exclude=["tenant", "created_by", "secret_encrypted"])
        endpoint.save()
    audit_record(
        tenant_id=tenant_id,
        origin=origin,
        action="webhook.created",
        target=endpoint,
        metadata={"events": events},
    )
    return IssuedSecret(endpoint=endpoint, secret=secret)


@transaction.atomic
def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    origin: Origin,
    url: str | None = None,
    events: list[str] | None = None,
    description: str | None = None,
) -> WebhookEndpoint:
    changed = {}
    if url is not None and url.strip() != endpoint.url:
        changed["url"] = _clean_url(url)
    if events is not None:
        cleaned = _clean_events(events)
        if cleaned != endpoint.events:
            changed["events"] = cleaned
    if description is not None and description.strip() != endpoint.description:
        changed["description"] = description.strip()
    if not changed:
        return endpoint
    for name, value in changed.items():
        setattr(endpoint, name, value)
    with tenant_scope(endpoint.tenant_id):
        endpoint.full_clean(exclude=["tenant", "created_by", "secret_encrypted"])
        endpoint.save(update_fields=list(changed))
    audit_record(
        tenant_id=endpoint.tenant_id,
        origin=origin,
        action="webhook.updated",
        target=endpoint,
        metadata={"fields": sorted(changed)},
    )
    return endpoint


@transaction.atomic
def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint, origin: Origin) -> IssuedSecret:
    """A new signing secret; the old one stops signing at once (returned once)."""
    secret = new_signing_secret()
    endpoint.secret_encrypted = encrypt_secret(secret)
    endpoint.secret_rotated_at = timezone.now()
    with tenant_scope(endpoint.tenant_id):
        endpoint.save(update_fields=["secret_encrypted", "secret_rotated_at"])
    audit_record(
        tenant_id=endpoint.tenant_id,
        origin=origin,
        action="webhook.secret_rotated",
        target=endpoint,
    )
    return IssuedSecret(endpoint=endpoint, secret=secret)


@transaction.atomic
def webhook_endpoint_set_active(
    *, endpoint: WebhookEndpoint, active: bool, origin: Origin
) -> WebhookEndpoint:
    """Disable by hand, or enable (the only way back after an automatic disabling).
    Enabling forgets the failure streak and sends the deliveries that waited."""
    if endpoint.is_active == active:
        return endpoint
    now = timezone.now()
    with tenant_scope(endpoint.tenant_id):
        if active:
            endpoint.is_active = True
            endpoint.disabled_at = None
            endpoint.disabled_reason = ""
            endpoint.failing_since = None
            endpoint.disabled_notice_sent_at = None
        else:
            endpoint.is_active = False
            endpoint.disabled_at = now
            endpoint.disabled_reason = WebhookEndpoint.DisabledReason.MANUAL
        endpoint.save(
            update_fields=[
                "is_active",
                "disabled_at",
                "disabled_reason",
                "failing_since",
                "disabled_notice_sent_at",
            ]
        )
        if active:
            waiting = list(
                WebhookDelivery.objects.filter(
                    endpoint=endpoint,
                    status__in=[
                        DeliveryStatus.PENDING,
                        DeliveryStatus.RETRYING,
                        DeliveryStatus.SENDING,
                    ],
                ).values_list("id", flat=True)
            )
            WebhookDelivery.objects.filter(
                id__in=waiting, status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING]
            ).update(next_attempt_at=now)
            enqueue_after_commit(endpoint.tenant_id, waiting)
    audit_record(
        tenant_id=endpoint.tenant_id,
        origin=origin,
        action="webhook.enabled" if active else "webhook.disabled",
        target=endpoint,
    )
    return endpoint


def webhook_endpoint_disable_failing(*, endpoint_id: int, now: datetime) -> bool:
    """Disable an endpoint that has failed without a success since `failing_since` for
    DISABLE_AFTER; called inside its tenant's scope by the delivery that finds it so.
    One UPDATE decides, so two workers noticing at once disable (and mail) once."""
    from accounts.webhooks.delivery import DISABLE_AFTER

    disabled = WebhookEndpoint.objects.filter(
        pk=endpoint_id, is_active=True, failing_since__lte=now - DISABLE_AFTER
    ).update(
        is_active=False,
        disabled_at=now,
        disabled_reason=WebhookEndpoint.DisabledReason.FAILING,
    )
    if not disabled:
        return False
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    audit_record(
        tenant_id=endpoint.tenant_id,
        origin=SYSTEM,
        action="webhook.disabled_failing",
        target=endpoint,
        metadata={"failing_since": endpoint.failing_since.isoformat()},
    )
    tenant_id = endpoint.tenant_id

    def notify() -> None:
        from accounts.tasks import send_webhook_disabled_notice

        send_webhook_disabled_notice.delay(tenant_id, endpoint_id)

    transaction.on_commit(notify)
    return True


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, origin: Origin) -> None:
    """Delete the endpoint with its delivery log, in three set-based statements."""
    with tenant_scope(endpoint.tenant_id):
        delivery_ids = WebhookDelivery.objects.filter(endpoint=endpoint).values("id")
        WebhookAttempt.objects.filter(delivery_id__in=delivery_ids)._raw_delete(connection.alias)
        WebhookDelivery.objects.filter(endpoint=endpoint)._raw_delete(connection.alias)
        audit_record(
            tenant_id=endpoint.tenant_id,
            origin=origin,
            action="webhook.deleted",
            target=endpoint,
            metadata={"url": endpoint.url},
        )
        WebhookEndpoint.objects.filter(pk=endpoint.pk)._raw_delete(connection.alias)


@transaction.atomic
def webhook_send_test(*, endpoint: WebhookEndpoint, origin: Origin) -> WebhookDelivery:
    """Queue a `webhook.test` delivery to the endpoint (even a disabled one is refused)."""
    if not endpoint.is_active:
        raise ValidationError(_("Enable the endpoint before sending a test event."))
    now = timezone.now()
    with tenant_scope(endpoint.tenant_id):
        from accounts.models import Tenant

        slug = Tenant.objects.values_list("slug", flat=True).get(pk=endpoint.tenant_id)
        delivery = WebhookDelivery.objects.create(
            tenant_id=endpoint.tenant_id,
            endpoint=endpoint,
            event_name=TEST_EVENT,
            body=build_body(
                body_id=f"evt_test_{secrets.token_hex(8)}",
                name=TEST_EVENT,
                created=now,
                tenant_slug=slug,
                data={"message": "This is a test event from Ryorin."},
            ),
            next_attempt_at=now,
            created_at=now,
        )
    audit_record(
        tenant_id=endpoint.tenant_id, origin=origin, action="webhook.test_sent", target=endpoint
    )
    enqueue_after_commit(endpoint.tenant_id, [delivery.id])
    return delivery


@transaction.atomic
def webhook_delivery_replay(*, delivery: WebhookDelivery, origin: Origin) -> WebhookDelivery:
    """Send a past delivery's body again, as a new delivery (its own log and id; the same
    event id in the body, so receivers that deduplicate by event id can)."""
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        raise ValidationError(_("Enable the endpoint before replaying a delivery."))
    now = timezone.now()
    with tenant_scope(delivery.tenant_id):
        replay = WebhookDelivery.objects.create(
            tenant_id=delivery.tenant_id,
            endpoint=endpoint,
            event_id=delivery.event_id,
            event_name=delivery.event_name,
            body=delivery.body,
            replay_of=delivery,
            next_attempt_at=now,
            created_at=now,
        )
    audit_record(
        tenant_id=delivery.tenant_id,
        origin=origin,
        action="webhook.delivery_replayed",
        target=endpoint,
        metadata={"delivery": delivery.id, "replay": replay.id},
    )
    enqueue_after_commit(delivery.tenant_id, [replay.id])
    return replay
