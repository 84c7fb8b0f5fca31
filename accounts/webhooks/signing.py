"""The signature of a webhook request, and the check a receiver runs.

Header (SIGNATURE_HEADER):  `t=<unix seconds>,v1=<hex HMAC-SHA256>`
The HMAC key is the endpoint's signing secret (the whole `whsec_…` string, as UTF-8);
the signed message is `<t>.<raw body bytes>`. A receiver recomputes it over the body
exactly as received (before parsing JSON), compares in constant time, and refuses a
timestamp older than its tolerance (5 minutes by default), so a captured request
cannot be replayed later. Several `v1=` entries may appear; any match is enough.
"""

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Ryorin-Signature"
EVENT_HEADER = "Ryorin-Event"
EVENT_ID_HEADER = "Ryorin-Event-Id"
DELIVERY_HEADER = "Ryorin-Delivery"
DEFAULT_TOLERANCE = 300  # seconds


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={sign(secret, body, timestamp)}"


def verify_signature(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a request as a receiver would; returns its timestamp or raises SignatureError."""
    if not header:
        raise SignatureError("no signature header")
    timestamp = None
    candidates = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("malformed signature header")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance")
    expected = sign(secret, body, timestamp)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("signature does not match")
    return timestamp
