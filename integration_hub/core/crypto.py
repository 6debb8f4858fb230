"""Secrets at rest: Fernet encryption with a key from HUB_ENCRYPTION_KEY (or derived from SECRET_KEY)."""
from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(key_material: str) -> Fernet:
    try:
        return Fernet(key_material.encode())
    except (ValueError, TypeError):
        digest = hashlib.sha256(key_material.encode()).digest()
        return Fernet(base64.urlsafe_b64encode(digest))


def fernet() -> Fernet:
    return _fernet(settings.HUB.get("ENCRYPTION_KEY") or settings.SECRET_KEY)


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
