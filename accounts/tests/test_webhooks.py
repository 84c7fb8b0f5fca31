"""Outbound webhooks against a real local HTTP receiver and the real database.

Time is moved by writing timestamps (failing_since, next_attempt_at), never by sleeping.
"""

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts import events
from accounts.models import AuditLog, DomainEvent, Role
from accounts.services import SYSTEM
from accounts.tasks import retry_webhook_deliveries
from accounts.tenancy import tenant_scope
from accounts.tests.webhook_receiver import Receiver
from accounts.webhooks import delivery as webhook_delivery
from accounts.webhooks import services as webhook_services
from accounts.webhooks.addresses import RefusedURL, resolve_target, validate_webhook_url
from accounts.webhooks.catalogue import is_subscribable, register_event_type
from accounts.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from accounts.webhooks.secrets import decrypt_secret
from accounts.webhooks.signing import SignatureError, signature_header, verify_signature

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    started = Receiver().start()
    yield started
    started.stop()


def make_endpoint(world, url, events_=("*",)):
    return webhook_services.webhook_endpoint_create(
        tenant_id=world.tenant.id, url=url, events=list(events_), origin=SYSTEM
    )


def emit_and_dispatch(world, name, payload, django_capture_on_commit_callbacks):
    """Emit an outbox event and let the after-commit chain run (eager tasks): dispatch →
    deliveries → send."""
    with django_capture_on_commit_callbacks(execute=True):
        with tenant_scope(world.tenant.id):
            event = events.emit(name, tenant_id=world.tenant.id, payload=payload)
    return event


def deliveries(world):
    with tenant_scope(world.tenant.id):
        return list(WebhookDelivery.objects.order_by("id"))


def attempts(world, delivery_id):
    with tenant_scope(world.tenant.id):
        return list(WebhookAttempt.objects.filter(delivery_id=delivery_id).order_by("number"))


def make_due(world, delivery_id):
    """Move a retry's time to now (instead of waiting out the backoff)."""
    with tenant_scope(world.tenant.id):
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )


# --- Signing -------------------------------------------------------------------------------


def test_signature_verifies_and_refuses_tampering_and_old_timestamps():
    secret, body = "whsec_test", b'{"id":"evt_1"}'
    now = 1_800_000_000
    header = signature_header(secret, body, timestamp=now)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(secret, body, header, now=now + 10) == now
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(secret, b'{"id":"evt_2"}', header, now=now)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("whsec_other", body, header, now=now)
    with pytest.raises(SignatureError, match="tolerance"):
        verify_signature(secret, body, header, now=now + 301)
    with pytest.raises(SignatureError, match="malformed"):
        verify_signature(secret, body, "v1=abc", now=now)
    with pytest.raises(SignatureError):
        verify_signature(secret, body, None)
    # Several v1 entries: any match is enough.
    other = signature_header("whsec_other", body, timestamp=now).split(",")[1]
    assert verify_signature(secret, body, f"{header},{other}", now=now) == now


# --- Endpoints -----------------------------------------------------------------------------


def test_secret_is_stored_encrypted_and_shown_once(world_a):
    issued = make_endpoint(world_a, "https://hooks.example.com/in")
    assert issued.secret.startswith("whsec_")
    stored = issued.endpoint.secret_encrypted
    assert issued.secret not in stored
    assert decrypt_secret(stored) == issued.secret
    rotated = webhook_services.webhook_endpoint_rotate_secret(
        endpoint=issued.endpoint, origin=SYSTEM
    )
    assert rotated.secret != issued.secret
    assert decrypt_secret(rotated.endpoint.secret_encrypted) == rotated.secret
    with tenant_scope(world_a.tenant.id):
        actions = set(AuditLog.objects.values_list("action", flat=True))
    assert {"webhook.created", "webhook.secret_rotated"} <= actions


def test_events_are_checked_against_the_catalogue(world_a):
    with pytest.raises(ValidationError) as exc:
        make_endpoint(world_a, "https://hooks.example.com/in", ["no.such_event"])
    assert "events" in exc.value.message_dict
    with pytest.raises(ValidationError):
        make_endpoint(world_a, "https://hooks.example.com/in", [])
    endpoint = make_endpoint(world_a, "https://hooks.example.com/in", ["lead.created", "*"])
    assert endpoint.endpoint.events == ["*"]
    # Apps extend the catalogue.
    assert not is_subscribable("deal.won.test")
    register_event_type("deal.won.test", "Deal won (test)")
    assert is_subscribable("deal.won.test")


def test_url_guard_in_production_mode(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    for bad in (
        "http://hooks.example.com/in",
        "https://127.0.0.1/in",
        "https://10.0.0.5/in",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/in",
        "https://localhost/in",
        "https://user:pw@hooks.example.com/in",
    ):
        with pytest.raises(ValidationError):
            validate_webhook_url(bad)
    validate_webhook_url("https://hooks.example.com/in")
    validate_webhook_url("https://93.184.216.34/in")
    # At send time, on the resolved address.
    with pytest.raises(RefusedURL):
        resolve_target("https://localhost/in")
    with pytest.raises(RefusedURL):
        resolve_target("http://93.184.216.34/in")
    target = resolve_target("https://93.184.216.34:8443/in")
    assert target.url == "https://93.184.216.34:8443/in"
    assert target.headers == {"Host": "93.184.216.34:8443"}
    assert target.extensions == {"sni_hostname": "93.184.216.34"}


def test_a_refused_address_is_not_requested(world_a, receiver, settings):
    issued = make_endpoint(world_a, receiver.url)
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False  # production: 127.0.0.1 is refused
    with tenant_scope(world_a.tenant.id):
        event = DomainEvent.objects.create(tenant=world_a.tenant, name="lead.created", payload={})
        [delivery_id] = webhook_delivery.deliveries_for_event(event)
    counts = webhook_delivery.deliver(world_a.tenant.id, [delivery_id])
    assert counts == {"retrying": 1}
    assert receiver.requests == []
    [delivery] = deliveries(world_a)
    assert delivery.last_error.startswith("refused:")
    assert issued.endpoint.pk == delivery.endpoint_id


# --- Delivery ------------------------------------------------------------------------------


def test_event_is_delivered_signed_and_logged(
    world_a, world_b, receiver, django_capture_on_commit_callbacks
):
    issued = make_endpoint(world_a, receiver.url, ["lead.created"])
    make_endpoint(world_b, receiver.url)  # B's endpoint never sees A's event
    payload = {"lead": {"id": 7, "name": "山田"}}
    event = emit_and_dispatch(world_a, "lead.created", payload, django_capture_on_commit_callbacks)
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    body = json.loads(request.body)
    assert body == {
        "id": f"evt_{event.id}",
        "type": "lead.created",
        "api_version": "v1",
        "created": body["created"],
        "tenant": "acme",
        "data": {"lead": {"id": 7, "name": "山田"}},
    }
    assert body["created"].endswith("Z")
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.headers["ryorin-event"] == "lead.created"
    assert request.headers["ryorin-event-id"] == f"evt_{event.id}"
    verify_signature(issued.secret, request.body, request.headers["ryorin-signature"])
    [delivery] = deliveries(world_a)
    assert request.headers["ryorin-delivery"] == str(delivery.id)
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert delivery.attempts == 1
    assert delivery.last_status_code == 200
    assert delivery.last_duration_ms is not None
    assert delivery.body.encode() == request.body  # the exact body sent is logged
    [attempt] = attempts(world_a, delivery.id)
    assert (attempt.number, attempt.status_code, attempt.succeeded) == (1, 200, True)
    assert deliveries(world_b) == []
    # An event the endpoint did not subscribe to makes no delivery.
    emit_and_dispatch(world_a, "lead.updated", {}, django_capture_on_commit_callbacks)
    assert len(deliveries(world_a)) == 1


def test_dispatching_an_event_twice_makes_one_delivery(world_a, receiver):
    make_endpoint(world_a, receiver.url)
    with tenant_scope(world_a.tenant.id):
        event = DomainEvent.objects.create(tenant=world_a.tenant, name="lead.created", payload={})
        first = webhook_delivery.deliveries_for_event(event)
        second = webhook_delivery.deliveries_for_event(event)
        assert len(first) == 1
        assert second == first
        assert WebhookDelivery.objects.count() == 1


def test_500_then_success_after_retry(world_a, receiver, django_capture_on_commit_callbacks):
    make_endpoint(world_a, receiver.url)
    receiver.mode = "fail"
    emit_and_dispatch(world_a, "lead.created", {}, django_capture_on_commit_callbacks)
    [delivery] = deliveries(world_a)
    assert delivery.status == DeliveryStatus.RETRYING
    assert delivery.last_status_code == 500
    assert delivery.last_error == "receiver says no"
    delay = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 20 < delay <= 36  # 30 s ± 20 % jitter
    # Not due yet: a duplicate task sends nothing.
    assert webhook_delivery.deliver(world_a.tenant.id, [delivery.id]) == {}
    assert len(receiver.requests) == 1

    receiver.mode = "ok"
    make_due(world_a, delivery.id)
    with django_capture_on_commit_callbacks(execute=True):
        assert retry_webhook_deliveries.delay().get() == 1
    [delivery] = deliveries(world_a)
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert delivery.attempts == 2
    assert [(a.number, a.status_code) for a in attempts(world_a, delivery.id)] == [
        (1, 500),
        (2, 200),
    ]
    # The same body both times; each request signed anew.
    assert receiver.requests[0].body == receiver.requests[1].body
    with tenant_scope(world_a.tenant.id):
        delivery.endpoint.refresh_from_db()
    assert delivery.endpoint.failing_since is None


def test_backoff_grows_and_is_capped():
    delays = [webhook_delivery.retry_delay(n).total_seconds() for n in range(1, 31)]
    assert 24 <= delays[0] <= 36
    assert 48 <= delays[1] <= 72
    assert all(delay <= 3600 * 1.2 for delay in delays)
    assert delays[-1] >= 3600 * 0.8
    # The whole schedule spans about a day, like the automatic disabling.
    assert timedelta(hours=20) < timedelta(seconds=sum(delays[:-1])) < timedelta(hours=30)


def test_timeout_is_a_retryable_failure(world_a, receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    make_endpoint(world_a, receiver.url)
    receiver.mode, receiver.delay = "slow", 1.0
    with tenant_scope(world_a.tenant.id):
        event_ids = [
            DomainEvent.objects.create(tenant=world_a.tenant, name="lead.created", payload={}).id
            for _ in range(3)
        ]
        ids = []
        for event in DomainEvent.objects.filter(id__in=event_ids):
            ids += webhook_delivery.deliveries_for_event(event)
    counts = webhook_delivery.deliver(world_a.tenant.id, ids)
    # The first timed out; the other two were handed back untried rather than each
    # waiting out the same timeout.
    assert counts == {"retrying": 1, "released": 2}
    assert len(receiver.requests) == 1
    rows = deliveries(world_a)
    assert [row.status for row in rows] == [DeliveryStatus.RETRYING] * 3
    assert [row.attempts for row in rows] == [1, 0, 0]
    assert rows[0].last_error.startswith("timeout")
    assert rows[0].last_status_code is None
    assert rows[1].next_attempt_at == rows[0].next_attempt_at


def test_client_errors_give_up_sooner(world_a, receiver):
    make_endpoint(world_a, receiver.url)
    receiver.mode = "reject"
    with tenant_scope(world_a.tenant.id):
        event = DomainEvent.objects.create(tenant=world_a.tenant, name="lead.created", payload={})
        [delivery_id] = webhook_delivery.deliveries_for_event(event)
    for _ in range(webhook_delivery.CLIENT_ERROR_ATTEMPTS):
        make_due(world_a, delivery_id)
        webhook_delivery.deliver(world_a.tenant.id, [delivery_id])
    [delivery] = deliveries(world_a)
    assert delivery.status == DeliveryStatus.GAVE_UP
    assert delivery.attempts == webhook_delivery.CLIENT_ERROR_ATTEMPTS
    assert delivery.last_status_code == 400


def test_receiver_down_then_back_loses_nothing(world_a, django_capture_on_commit_callbacks):
    receiver = Receiver().start()
    port = receiver.port
    make_endpoint(world_a, receiver.url)
    receiver.stop()  # connection refused from now on
    for n in range(5):
        emit_and_dispatch(world_a, "lead.created", {"n": n}, django_capture_on_commit_callbacks)
    rows = deliveries(world_a)
    assert len(rows) == 5
    assert {row.status for row in rows} == {DeliveryStatus.RETRYING}
    back = Receiver().start(port=port)
    try:
        for row in rows:
            make_due(world_a, row.id)
        with django_capture_on_commit_callbacks(execute=True):
            retry_webhook_deliveries.delay()
        assert {row.status for row in deliveries(world_a)} == {DeliveryStatus.SUCCEEDED}
        assert sorted(json.loads(r.body)["data"]["n"] for r in back.requests) == list(range(5))
    finally:
        back.stop()


def test_claim_is_exclusive_and_an_expired_lease_is_taken_over(world_a, receiver):
    make_endpoint(world_a, receiver.url)
    with tenant_scope(world_a.tenant.id):
        event = DomainEvent.objects.create(tenant=world_a.tenant, name="lead.created", payload={})
        [delivery_id] = webhook_delivery.deliveries_for_event(event)
    now = timezone.now()
    [claimed] = webhook_delivery.claim(world_a.tenant.id, [delivery_id], now=now)
    assert claimed.status == DeliveryStatus.SENDING
    assert claimed.attempts == 1
    # A second worker gets nothing while the lease runs.
    assert webhook_delivery.claim(world_a.tenant.id, [delivery_id], now=now) == []
    # The first worker died: once its lease has run out, the sweep finds the delivery
    # and another worker takes it over.
    later = claimed.lease_until + timedelta(seconds=1)
    assert (world_a.tenant.id, delivery_id) in webhook_delivery.due_deliveries(now=later)
    [taken] = webhook_delivery.claim(world_a.tenant.id, [delivery_id], now=later)
    assert taken.attempts == 2
    # The first worker's late result is fenced off; the new owner's counts.
    outcome = webhook_delivery.Outcome(200, 5, kind="ok")
    assert webhook_delivery.record(claimed, outcome) == ""
    assert webhook_delivery.record(taken, outcome) == DeliveryStatus.SUCCEEDED
    assert [a.number for a in attempts(world_a, delivery_id)] == [2]


def test_endpoint_failing_for_a_day_is_disabled_with_a_notice(
    world_a, receiver, django_capture_on_commit_callbacks
):
    admin = world_a.member(role=Role.ADMIN)
    world_a.member(role=Role.MARKETING)
    issued = make_endpoint(world_a, receiver.url)
    endpoint = issued.endpoint
    receiver.mode = "fail"
    emit_and_dispatch(world_a, "lead.created", {}, django_capture_on_commit_callbacks)
    with tenant_scope(world_a.tenant.id):
        endpoint.refresh_from_db()
    assert endpoint.failing_since is not None
    assert endpoint.is_active
    [delivery] = deliveries(world_a)

    # 23 hours of failures: still active.
    with tenant_scope(world_a.tenant.id):
        type(endpoint).objects.filter(pk=endpoint.pk).update(
            failing_since=timezone.now() - timedelta(hours=23)
        )
    make_due(world_a, delivery.id)
    webhook_delivery.deliver(world_a.tenant.id, [delivery.id])
    with tenant_scope(world_a.tenant.id):
        endpoint.refresh_from_db()
    assert endpoint.is_active

    # A day and more: the next failure disables it, once.
    with tenant_scope(world_a.tenant.id):
        type(endpoint).objects.filter(pk=endpoint.pk).update(
            failing_since=timezone.now() - timedelta(hours=25)
        )
    make_due(world_a, delivery.id)
    with django_capture_on_commit_callbacks(execute=True):
        webhook_delivery.deliver(world_a.tenant.id, [delivery.id])
    with tenant_scope(world_a.tenant.id):
        endpoint.refresh_from_db()
        audit = list(AuditLog.objects.filter(action="webhook.disabled_failing"))
    assert not endpoint.is_active
    assert endpoint.disabled_reason == "failing"
    assert endpoint.disabled_notice_sent_at is not None
    assert len(audit) == 1
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == sorted([world_a.owner.email, admin.email])
    assert receiver.url in mail.outbox[0].body

    # Disabled: its delivery waits and new events make none; nothing is sent.
    sent = len(receiver.requests)
    make_due(world_a, delivery.id)
    assert webhook_delivery.deliver(world_a.tenant.id, [delivery.id]) == {}
    assert (world_a.tenant.id, delivery.id) not in webhook_delivery.due_deliveries()
    emit_and_dispatch(world_a, "lead.created", {}, django_capture_on_commit_callbacks)
    assert len(deliveries(world_a)) == 1
    assert len(receiver.requests) == sent

    # Enabling is explicit; the waiting delivery goes out.
    receiver.mode = "ok"
    with django_capture_on_commit_callbacks(execute=True):
        webhook_services.webhook_endpoint_set_active(endpoint=endpoint, active=True, origin=SYSTEM)
    [delivery] = deliveries(world_a)
    assert delivery.status == DeliveryStatus.SUCCEEDED
    with tenant_scope(world_a.tenant.id):
        endpoint.refresh_from_db()
    assert endpoint.is_active
    assert endpoint.failing_since is None


def test_replay_and_test_event(world_a, receiver, django_capture_on_commit_callbacks):
    issued = make_endpoint(world_a, receiver.url)
    emit_and_dispatch(world_a, "lead.created", {"x": 1}, django_capture_on_commit_callbacks)
    [original] = deliveries(world_a)
    with django_capture_on_commit_callbacks(execute=True):
        replay = webhook_services.webhook_delivery_replay(delivery=original, origin=SYSTEM)
    assert replay.id != original.id
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first.body == second.body
    assert second.headers["ryorin-delivery"] == str(replay.id)
    with tenant_scope(world_a.tenant.id):
        replay.refresh_from_db()
    assert (replay.status, replay.replay_of_id) == (DeliveryStatus.SUCCEEDED, original.id)

    with django_capture_on_commit_callbacks(execute=True):
        test = webhook_services.webhook_send_test(endpoint=issued.endpoint, origin=SYSTEM)
    assert len(receiver.requests) == 3
    body = json.loads(receiver.requests[2].body)
    assert body["type"] == "webhook.test"
    assert receiver.requests[2].headers["ryorin-delivery"] == str(test.id)
    verify_signature(
        issued.secret, receiver.requests[2].body, receiver.requests[2].headers["ryorin-signature"]
    )


def test_delete_removes_the_log(world_a, receiver, django_capture_on_commit_callbacks):
    issued = make_endpoint(world_a, receiver.url)
    emit_and_dispatch(world_a, "lead.created", {}, django_capture_on_commit_callbacks)
    webhook_services.webhook_endpoint_delete(endpoint=issued.endpoint, origin=SYSTEM)
    with tenant_scope(world_a.tenant.id):
        assert not WebhookDelivery.objects.exists()
        assert not WebhookAttempt.objects.exists()
        assert AuditLog.objects.filter(action="webhook.deleted").exists()
