"""Every exception record the order flow files, one named builder per situation (kind, dedupe key, severity and
context as the exception queue and its fix screens read them). Builders only build: the phases file them
(``raise_many``) and clear them.
"""
from __future__ import annotations

from exceptions_app.services import Problem, kind_for_error, make_key
from integration_hub.core.models import Connection

from . import keys
from .models import Order, OrderState as S


def transport_failure(conn: Connection, operation: str, exc: Exception, order: Order | None = None) -> Problem:
    """The record for a failed call, under the kind of its error (exceptions_app.services.kind_for_error):
    refused credentials are one ``auth_failure`` on the connection, data the remote refused is a
    ``bad_payload`` on the order it was about, the rest rate-limit / sync-timeout per operation."""
    kind = kind_for_error(exc)
    ref = order.idempotency_key if order is not None else ""
    if kind == "auth_failure":
        return Problem(kind, make_key(kind, conn.name), f"{conn.name} refused the hub's credentials ({operation})",
                       message=str(exc)[:1000], severity="critical", connection_id=conn.pk,
                       context={"last_error": str(exc)[:1000], "operation": operation, "action": "check_connection"})
    if kind == "bad_payload" and order is not None:
        fields = dict(getattr(exc, "fields", None) or {})
        return Problem(kind, keys.bad_key(conn.name, operation, ref), f"{conn.name} refused {operation} for order {order}"
                       + (f": {', '.join(fields)}" if fields else ""), message=str(exc)[:1000], connection_id=conn.pk,
                       channel_id=order.channel_id, order_ref=ref,
                       context={"fields": fields, "order_id": order.pk, "operation": operation, "action": "check_order"})
    return Problem(kind, make_key(kind, conn.name, operation), f"{conn.name}: {operation} failing ({type(exc).__name__})",
                   message=str(exc)[:1000], severity="warning", context={"last_error": str(exc)[:1000], "action": "check_connection"},
                   connection_id=conn.pk, order_ref=ref if kind == "bad_payload" else "")


def order_failed(o: Order, why: str) -> Problem:
    return Problem("stuck_order", make_key("stuck_order", o.idempotency_key), f"Order {o} failed: not accepted by {o.warehouse}",
                   message=why[:1000], context={"order_id": o.pk, "state": S.FAILED, "attempts": o.send_attempts,
                                                "last_error": o.last_error, "action": "retry_order"},
                   connection_id=o.warehouse_id, channel_id=o.channel_id, order_ref=o.idempotency_key)


def stuck_order(o: Order, why: str) -> Problem:
    return Problem("stuck_order", make_key("stuck_order", o.idempotency_key), f"Order {o} not acknowledged by the warehouse",
                   message=why, context={"order_id": o.pk, "sent_at": o.sent_at.isoformat() if o.sent_at else None,
                                         "attempts": o.send_attempts, "last_error": o.last_error, "action": "retry_order"},
                   connection_id=o.warehouse_id, channel_id=o.channel_id, order_ref=o.idempotency_key)
