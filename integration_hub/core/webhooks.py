"""Signed inbound webhooks.

Scheme (what the hub asks every sender to use, and what the sandboxes send):
``X-Hub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>``.
Signatures older than ``TOLERANCE`` seconds are refused (replay protection).
Systems that can only send a static header (commercetools HTTP destinations use an
``Authorization`` header value) are verified with :func:`verify_static_header`.
"""
from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Hub-Signature"
TOLERANCE = 300


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time() if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def _header(headers, name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower() or key.upper() == "HTTP_" + name.upper().replace("-", "_"):
            return value
    return ""


def verify_hmac(secret: str, body: bytes, headers, now: float | None = None) -> bool:
    if not secret:
        return False
    value = _header(headers, HEADER)
    try:
        parts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > TOLERANCE:
        return False
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


def verify_static_header(secret: str, headers, name: str = "Authorization") -> bool:
    if not secret:
        return False
    return hmac.compare_digest(_header(headers, name).encode(), secret.encode())
