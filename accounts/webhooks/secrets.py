"""Signing secrets, encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

The secret is needed in clear to sign, so it cannot be hashed like an API key. Keys come
from settings.WEBHOOK_ENCRYPTION_KEYS (newest first; MultiFernet decrypts with any, so
a new key is rolled in by prepending it); unset, one key is derived from SECRET_KEY.
"""

import base64
import functools
import hashlib
import secrets

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings

SECRET_PREFIX = "whsec_"  # noqa: S105  (a prefix, not a secret)


def new_signing_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


@functools.cache
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = hashlib.sha256(b"ryorin webhook secrets\0" + secret_key.encode()).digest()
        keys = (base64.urlsafe_b64encode(derived).decode(),)
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.WEBHOOK_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt_secret(secret: str) -> str:
    return _current().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str:
    return _current().decrypt(token.encode()).decode()
