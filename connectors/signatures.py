"""Verifying inbound webhooks: the primitives every connector's ``verify_webhook`` is built from.

Scheme (what the hub asks every sender to use, and what the sandboxes send):
``X-Hub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>`` — the same shape as
Stripe's ``Stripe-Signature`` (https://docs.stripe.com/webhooks#verify-manually), minus its multiple ``v1``.
Verification:

1. The header must match ``t=<1..12 ASCII digits>,v1=<64 lowercase hex>`` exactly; anything else (non-ASCII,
   repeated or extra parts, upper-case hex, huge values) is refused before any comparison, so no input can
   raise (``hmac.compare_digest`` raises TypeError on non-ASCII ``str``).
2. ``t`` must be within ``TOLERANCE`` seconds of now (either way).
3. The expected digest is compared as bytes in constant time (``hmac.compare_digest``).
4. Replay: a signature that verified once is claimed from the sender (:class:`WebhookSender`
   ``.claim_webhook_signature``) and refused for as long as its ``t`` is inside the window, so a captured request
   cannot be sent again (stock 10 → 20 → replay → 10). The hub's ``Connection`` keeps that replay cache in the
   database (:class:`integration_hub.core.models.WebhookSignature`): this module only asks.

Systems that can only send a static header (commercetools HTTP destinations use an ``Authorization`` header
value) are verified with :func:`verify_static_header`; such a header covers neither body nor time, which is
why the order webhooks only ever take ids from a message and re-read each order from the storefront.

A connection without a webhook secret refuses every webhook (:func:`webhook_secret` logs why). Every function
holding a secret or an expected digest is marked ``sensitive_variables`` so Django's error reports never show
them. Importable without Django settings (the sandbox signs with :func:`sign`); nothing here imports the hub.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass
from typing import Protocol

from django.views.decorators.debug import sensitive_variables

log = logging.getLogger(__name__)

HEADER = "X-Hub-Signature"
TOLERANCE = 300
MAX_HEADER = 200  # a well-formed header is < 90 characters
_SIGNATURE_RX = re.compile(r"t=([0-9]{1,12}),v1=([0-9a-f]{64})")


@dataclass(frozen=True)
class Signature:
    timestamp: int
    digest: str  # 64 lowercase hex characters


class WebhookSender(Protocol):
    """What verification needs of a connection (the hub's ``Connection`` model is one)."""

    name: str

    def get_webhook_secret(self) -> str:
        """The connection's webhook secret, '' when it has none."""

    def claim_webhook_signature(self, sig: Signature, now: float | None = None) -> bool:
        """Record ``sig`` as used: True the first time, False for a replay."""


@sensitive_variables("secret", "mac")
def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time() if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def _header(headers, name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower() or key.upper() == "HTTP_" + name.upper().replace("-", "_"):
            return value if isinstance(value, str) else ""
    return ""


def parse_signature(value) -> Signature | None:
    """The header's (t, v1), or None unless it has exactly the documented form."""
    if not isinstance(value, str) or len(value) > MAX_HEADER:
        return None
    m = _SIGNATURE_RX.fullmatch(value.strip())
    if m is None:
        return None
    return Signature(int(m.group(1)), m.group(2))


@sensitive_variables("secret", "expected")
def check_hmac(secret: str, body: bytes, headers, now: float | None = None) -> Signature | None:
    """The header's signature if it is well formed, inside the window and made with ``secret`` over
    ``body``; else None. Never raises on any header or body."""
    if not secret or not isinstance(body, (bytes, bytearray)):
        return None
    sig = parse_signature(_header(headers, HEADER))
    if sig is None:
        return None
    if abs((time.time() if now is None else now) - sig.timestamp) > TOLERANCE:
        return None
    expected = hmac.new(secret.encode(), f"{sig.timestamp}.".encode() + bytes(body), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), sig.digest.encode("ascii")):
        return None
    return sig


@sensitive_variables("secret")
def verify_hmac(
    secret: str, body: bytes, headers, now: float | None = None, *, connection: WebhookSender | None = None
) -> bool:
    """True if the signature is valid (:func:`check_hmac`) and — when ``connection`` is given — was never
    accepted before for that connection (its ``claim_webhook_signature``; a True answer consumes it)."""
    sig = check_hmac(secret, body, headers, now)
    if sig is None:
        return False
    if connection is not None and not connection.claim_webhook_signature(sig, now):
        log.warning("replayed webhook signature for connection %s refused (t=%s)", connection.name, sig.timestamp)
        return False
    return True


@sensitive_variables("secret", "given")
def verify_static_header(secret: str, headers, name: str = "Authorization") -> bool:
    """Constant-time comparison of a static header value with ``secret``, as UTF-8 bytes (never raises)."""
    if not secret:
        return False
    given = _header(headers, name)
    if not given or len(given) > 4096:
        return False
    # WSGI hands header values over as latin-1 decoded text: back to the bytes that were sent
    try:
        raw = given.encode("latin-1")
    except UnicodeEncodeError:  # not from a WSGI server: compare its UTF-8 form
        try:
            raw = given.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: equal to no secret
            return False
    return hmac.compare_digest(raw, secret.encode("utf-8"))


@sensitive_variables("secret")
def webhook_secret(connection: WebhookSender) -> str:
    """The connection's webhook secret, or '' (logged: a connection without one refuses every webhook)."""
    secret = connection.get_webhook_secret()
    if not secret:
        log.warning(
            "webhook for connection %s refused: it has no webhook secret (set one in the admin, "
            "or name an environment variable in webhook_secret_env)",
            connection.name,
        )
    return secret
