"""Outbound webhooks: tenants subscribe an https URL to domain events; every event of
the outbox (accounts.events) that an active endpoint subscribes to becomes one signed
delivery, sent by Celery with retries and logged attempt by attempt.

The modules: `models` (endpoint, delivery, attempt), `catalogue` (the event names one
may subscribe to, which apps extend), `signing` (the signature header and its check),
`secrets` (signing secrets encrypted at rest), `urls` (what a URL may point at),
`delivery` (claim, send, record, retry schedule), `services` (every write the API, UI
and admin make). Import this package lightly: accounts.models imports `models`.
"""
