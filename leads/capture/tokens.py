"""Signed tokens of the public endpoints (django.core.signing, one salt per purpose).

* Tracking token: names a lead of one tenant, placed in email links (`?rt=<token>`) or
  handed back to the page after a form submission, so page views are tied to the lead
  without a cookie. It carries ids only; it is signed, not encrypted.
* Confirmation token: names one form submission waiting for double opt-in.

Both carry the tenant id and are checked against it: a token minted for tenant A
never names a row of tenant B, even if the ids happened to match.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.core import signing

TRACKING_SALT = "ryorin.leads.tracking"
CONFIRM_SALT = "ryorin.leads.capture.confirm"
#: Email links live in inboxes for a long time; a year is still a useful attribution.
TRACKING_MAX_AGE = timedelta(days=400)
CONFIRM_MAX_AGE = timedelta(days=14)


class BadToken(ValueError):
    """A token that was tampered with, expired, or is not of this kind."""


class TokenExpired(BadToken):
    """Genuine, but older than its kind allows."""


@dataclass(frozen=True, slots=True)
class LeadRef:
    tenant_id: int
    lead_id: int


@dataclass(frozen=True, slots=True)
class SubmissionRef:
    tenant_id: int
    submission_id: int


def tracking_token(*, tenant_id: int, lead_id: int) -> str:
    return signing.dumps([tenant_id, lead_id], salt=TRACKING_SALT)


def confirmation_token(*, tenant_id: int, submission_id: int) -> str:
    return signing.dumps([tenant_id, submission_id], salt=CONFIRM_SALT)


def _load(token: str, *, salt: str, max_age: timedelta) -> tuple[int, int]:
    if not isinstance(token, str) or not token or len(token) > 200:
        raise BadToken("missing or malformed token")
    try:
        value = signing.loads(token, salt=salt, max_age=max_age)
    except signing.SignatureExpired as exc:
        raise TokenExpired("expired") from exc
    except signing.BadSignature as exc:
        raise BadToken("bad signature") from exc
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise BadToken("unexpected payload")
    return value[0], value[1]


def read_tracking_token(token: str) -> LeadRef:
    return LeadRef(*_load(token, salt=TRACKING_SALT, max_age=TRACKING_MAX_AGE))


def read_confirmation_token(token: str) -> SubmissionRef:
    return SubmissionRef(*_load(token, salt=CONFIRM_SALT, max_age=CONFIRM_MAX_AGE))
