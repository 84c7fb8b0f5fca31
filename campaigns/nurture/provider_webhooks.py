"""Bounce and complaint webhooks of the mail provider, through django-anymail.

anymail's tracking webhook views are mounted at `/n/mail-events/<provider>/tracking/`
(e.g. `/n/mail-events/postmark/tracking/`; the provider is given that URL with the
basic-auth secret in it, `https://user:password@host/…`). Each view checks the
secret (ANYMAIL_WEBHOOK_SECRET, see config/settings.py), parses its provider's payload
and sends `anymail.signals.tracking` with a normalised event; `tracking_received`
turns the bounced, rejected and complained events about our mails into
services.mail_provider_event_record. Other events (delivered, opened, …) are left
alone: opens and clicks come from our own tracking links.

Which mail an event is about: every nurture mail carries anymail metadata
{"ryorin_tenant", "ryorin_message"} (sending.build_email), which providers return with
their events. Failing that, a provider that reports our own Message-ID
(`<ryorin.<tenant>.<message>@domain>`, kept as the row's provider_message_id) names it.
Mails of neither kind (system mail, test sends) are ignored. The webhook is
authenticated by the shared secret, so the metadata is trusted to name a tenant; the
service still requires the event's recipient to be the message's.

Without a configured secret the routes answer 503 rather than run: anymail would only
warn and accept anyone's posts, and anyone could then suppress a tenant's addresses.
The receiver is connected when this module is imported, which the URL conf does
before any of these views can run.
"""

import logging
import re
from collections.abc import Callable
from functools import wraps

from anymail.signals import AnymailTrackingEvent, EventType, tracking
from anymail.urls import urlpatterns as anymail_urlpatterns
from anymail.utils import get_anymail_setting
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from campaigns.nurture.services import (
    PROVIDER_BOUNCED,
    PROVIDER_COMPLAINED,
    mail_provider_event_record,
)

logger = logging.getLogger(__name__)

EVENTS = {
    EventType.BOUNCED: PROVIDER_BOUNCED,
    EventType.REJECTED: PROVIDER_BOUNCED,
    EventType.COMPLAINED: PROVIDER_COMPLAINED,
}
OUR_MESSAGE_ID = re.compile(r"^<?ryorin\.(\d{1,18})\.(\d{1,18})@[^>]+>?$")


def message_ref(event: AnymailTrackingEvent) -> tuple[int, int] | None:
    """(tenant id, outgoing message id) of the mail the event is about, or None."""
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    tenant, message = metadata.get("ryorin_tenant"), metadata.get("ryorin_message")
    if tenant is not None and message is not None:
        try:
            return int(tenant), int(message)
        except (TypeError, ValueError):
            return None
    match = OUR_MESSAGE_ID.match(str(event.message_id or "").strip())
    if match:
        return int(match[1]), int(match[2])
    return None


def tracking_received(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    """anymail's tracking signal: a bounce, rejection or complaint of one of our mails."""
    kind = EVENTS.get(event.event_type)
    if kind is None:
        return
    ref = message_ref(event)
    if ref is None:
        logger.info("%s %s event for a mail that is not a nurture mail", esp_name, kind)
        return
    tenant_id, message_id = ref
    detail = " ".join(
        str(part) for part in (event.reject_reason, event.description, event.mta_response) if part
    )
    recorded = mail_provider_event_record(
        tenant_id=tenant_id,
        message_id=message_id,
        event=kind,
        recipient=event.recipient or "",
        detail=detail,
        provider=esp_name,
    )
    if not recorded:
        logger.warning(
            "%s %s event names message %s of tenant %s, which does not match",
            esp_name,
            kind,
            message_id,
            tenant_id,
        )


tracking.connect(tracking_received, dispatch_uid="campaigns.nurture.provider_webhooks")


def webhook_secret_configured() -> bool:
    return bool(get_anymail_setting("webhook_secret", default=[]))


def _secret_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not webhook_secret_configured():
            logger.error("mail provider webhook called, but ANYMAIL_WEBHOOK_SECRET is not set")
            # 503: the provider retries, so nothing is lost once the secret is set.
            return HttpResponse("Mail event webhooks are not configured.", status=503)
        return view(request, *args, **kwargs)

    # For tests/test_isolation.py: the secret authenticates the provider; the event's
    # metadata names the tenant (no tenant in the URL, no user).
    wrapper.tenant_isolation = "provider"
    return wrapper


def _tracking_routes() -> list[URLPattern]:
    """anymail's tracking webhook routes (not its inbound-mail ones), secret required."""
    routes = []
    for pattern in anymail_urlpatterns:
        view_class = getattr(pattern.callback, "view_class", None)
        if getattr(view_class, "signal", None) is not tracking:
            continue
        routes.append(
            path(str(pattern.pattern), _secret_required(pattern.callback), name=pattern.name)
        )
    return routes


urlpatterns = _tracking_routes()
