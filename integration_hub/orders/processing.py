"""The processing loop the worker runs (``orders.process``): validate captured orders, send due ones, notify
dispatched ones, send cancel requests — each phase isolated, so one failing never starves the others.
"""

from __future__ import annotations

import logging

from . import claims
from .cancel import CancelResult, cancel_due
from .notify import NotifyResult, notify_due
from .send import SendResult, send_due
from .validate import validate_many

log = logging.getLogger(__name__)


def validate_due(limit: int = claims.BATCH_SIZE, lease_seconds: int = claims.LEASE_SECONDS) -> int:
    ids = claims.claim(claims.VALIDATE_DUE, limit, lease_seconds)
    if not ids:
        return 0
    out = validate_many(ids)
    return len(out.validated) + len(out.held)


def process_due(batch_size: int = claims.BATCH_SIZE, lease_seconds: int = claims.LEASE_SECONDS) -> dict:
    """One pass: validate captured orders, send due ones, notify dispatched ones. Returns counts."""

    def phase(name, fn, empty):
        try:
            return fn()
        except Exception:  # noqa: BLE001 — one failing phase must not starve the others; its claims expire and retry
            log.exception("orders: %s failed; its orders are retried when their lease ends", name)
            return empty

    validated = phase("validate", lambda: validate_due(batch_size, lease_seconds), 0)
    sent = phase("send", lambda: send_due(min(batch_size, claims.HTTP_BATCH_SIZE), lease_seconds), SendResult())
    notified = phase(
        "notify", lambda: notify_due(min(batch_size, claims.HTTP_BATCH_SIZE), lease_seconds), NotifyResult()
    )
    cancelled = phase(
        "cancel", lambda: cancel_due(min(batch_size, claims.HTTP_BATCH_SIZE), lease_seconds), CancelResult()
    )
    return {
        "validated": validated,
        **{f"send_{k}": v for k, v in sent.as_dict().items()},
        **{f"notify_{k}": v for k, v in notified.as_dict().items()},
        **{f"cancel_{k}": v for k, v in cancelled.as_dict().items()},
    }
