"""Secrets at rest: Fernet tokens under the keys in ``HUB_ENCRYPTION_KEY``.

``HUB_ENCRYPTION_KEY`` is one Fernet key or a comma-separated list of them, newest first: new secrets are
encrypted with the first, and every key in the list decrypts (cryptography's ``MultiFernet``), so keys
rotate by prepending a new key, running ``manage.py rotate_secrets`` and then dropping the old one.
With debug off the settings refuse to start without a valid key (see ``core.deploy_guard``).

Only the debug/demo path derives a key, from ``SECRET_KEY`` with HKDF-SHA256 (RFC 5869) under a fixed
salt and label; it also still decrypts (never encrypts) with the unsalted SHA-256 derivation older demo
databases used, so ``rotate_secrets`` can move them to the HKDF key.

References: cryptography's Fernet / MultiFernet (https://cryptography.io/en/latest/fernet/) and HKDF
(https://cryptography.io/en/latest/hazmat/primitives/key-derivation-functions/#hkdf).
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

HKDF_SALT = b"integration-hub/secrets-at-rest"
HKDF_INFO = b"integration-hub connection secrets v1"


def parse_keys(value: str) -> list[bytes]:
    """The Fernet keys in a comma-separated ``HUB_ENCRYPTION_KEY`` value, newest first.

    Raises ``ValueError`` naming the position of a key that is not a Fernet key (the key itself is
    never put in the message)."""
    parts = [p.strip() for p in (value or "").split(",") if p.strip()]
    if not parts:
        raise ValueError("HUB_ENCRYPTION_KEY is empty")
    keys = []
    for position, part in enumerate(parts, start=1):
        try:
            Fernet(part.encode())
        except (ValueError, TypeError):
            raise ValueError(
                f"HUB_ENCRYPTION_KEY key #{position} is not a Fernet key (32 url-safe base64-encoded bytes; "
                "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            ) from None
        keys.append(part.encode())
    return keys


def derive_key(secret_key: str) -> bytes:
    """A Fernet key derived from the Django secret key (debug/demo only)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


def legacy_key(secret_key: str) -> bytes:
    """The unsalted SHA-256 key the hub derived before HKDF; used only to decrypt old tokens."""
    return base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest())


@lru_cache(maxsize=8)
def _parsed(value: str) -> tuple[bytes, ...]:
    try:
        return tuple(parse_keys(value))
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None


@lru_cache(maxsize=8)
def _multi(keys: tuple[bytes, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in keys])


def configured_keys() -> tuple[bytes, ...]:
    """The keys in use: the configured list, or (debug only) the derived key plus the legacy one."""
    value = settings.HUB.get("ENCRYPTION_KEY") or ""
    if value:
        return _parsed(value)
    if not settings.DEBUG:
        raise ImproperlyConfigured("HUB_ENCRYPTION_KEY must be set when debug is off")
    return derive_key(settings.SECRET_KEY), legacy_key(settings.SECRET_KEY)


def fernet(extra_keys: tuple[bytes, ...] = ()) -> MultiFernet:
    """Encrypts with the newest configured key; decrypts with any configured key (or ``extra_keys``)."""
    return _multi(configured_keys() + tuple(extra_keys))


def encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # wrong key: say so instead of returning garbage
        raise ValueError("stored secret cannot be decrypted with the configured HUB_ENCRYPTION_KEY") from exc


def rotate(token: str, extra_keys: tuple[bytes, ...] = ()) -> str:
    """``token`` re-encrypted under the newest key (decrypted with any configured key or ``extra_keys``)."""
    if not token:
        return ""
    try:
        return fernet(extra_keys).rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored secret cannot be decrypted with the configured HUB_ENCRYPTION_KEY") from exc
