"""Every exception record the order flow files, one named builder per situation (kind, dedupe key, severity and
context as the exception queue and its fix screens read them). Builders only build: the phases file them
(``raise_many``) and clear them.
"""

from __future__ import annotations

from exceptions_app import kinds
from exceptions_app.services import Problem, kind_for_error
from integration_hub.core.models import Connection

from . import keys
from .models import Order, OrderState as S


# --- any call -----------------------------------------------------------------------------------------
def transport_failure(conn: Connection, operation: str, exc: Exception, order: Order | None = None) -> Problem:
    """The record for a failed call, under the kind of its error (exceptions_app.services.kind_for_error):
    refused credentials are one ``auth_failure`` on the connection, data the remote refused is a
    ``bad_payload`` on the order it was about, the rest rate-limit / sync-timeout per operation."""
    kind = kind_for_error(exc)
    ref = order.idempotency_key if order is not None else ""
    if kind == "auth_failure":
        return Problem(
            kind,
            kinds.key(kind, conn.name),
            f"{conn.name} refused the hub's credentials ({operation})",
            message=str(exc)[:1000],
            severity="critical",
            connection_id=conn.pk,
            context={"last_error": str(exc)[:1000], "operation": operation, "action": "check_connection"},
        )
    if kind == "bad_payload" and order is not None:
        fields = dict(getattr(exc, "fields", None) or {})
        return Problem(
            kind,
            keys.bad_key(conn.name, operation, ref),
            f"{conn.name} refused {operation} for order {order}" + (f": {', '.join(fields)}" if fields else ""),
            message=str(exc)[:1000],
            connection_id=conn.pk,
            channel_id=order.channel_id,
            order_ref=ref,
            context={"fields": fields, "order_id": order.pk, "operation": operation, "action": "check_order"},
        )
    return Problem(
        kind,
        kinds.key(kind, conn.name, operation),
        f"{conn.name}: {operation} failing ({type(exc).__name__})",
        message=str(exc)[:1000],
        severity="warning",
        context={"last_error": str(exc)[:1000], "action": "check_connection"},
        connection_id=conn.pk,
        order_ref=ref if kind == "bad_payload" else "",
    )


# --- capture -------------------------------------------------------------------------------------------
def unknown_channel(connection: Connection, so) -> Problem:
    """A storefront order no active hub channel matches (by supply channel / store)."""
    return Problem(
        "bad_payload",
        keys.bad_key(connection.name, "order", so.external_id),
        f"Order {so.order_number or so.external_id} from {connection.name}: unknown channel {so.channel_ref!r}",
        message="No active hub channel matches the order's supply channel / store; add the channel and re-poll.",
        context={
            "fields": {"channel_ref": f"{so.channel_ref!r} matches no channel"},
            "action": "check_channel",
            "order_id": so.external_id,
        },
        connection_id=connection.pk,
        order_ref=so.external_id,
    )


def unreadable_returns(connection: Connection, ch, so, key: str, bad: str, batch) -> Problem:
    """Return entries of a polled order the connector cannot read (the order and its other returns go through)."""
    return Problem(
        "bad_payload",
        bad,
        f"Returns of order {so.order_number or so.external_id} from {connection.name} cannot be read",
        message="; ".join(f"{r.field}: {r.message}" for r in batch.rejected)[:2000]
        + ". The planner does not see these returns; fix them in the storefront (any change brings the order back "
        "into the poll).",
        context={
            "order_id": so.external_id,
            "rejected": [
                {"ref": r.ref, "field": r.field, "message": r.message, "raw": str(r.raw)[:500]}
                for r in batch.rejected[:20]
            ],
            "action": "check_order",
        },
        connection_id=connection.pk,
        channel_id=ch.pk,
        order_ref=key,
    )


def unreadable_fulfilments(connection: Connection, ch, so, bad: str, rejected) -> Problem:
    """Storefront-side fulfilments of an order the connector cannot read (its readable ones go through)."""
    return Problem(
        "bad_payload",
        bad,
        f"Storefront fulfilments of order {so.order_number or so.external_id} from {connection.name} cannot be read",
        message="; ".join(f"{r.ref} {r.field}: {r.message}" for r in rejected)[:2000]
        + ". The master is not told about these; fix the order in the storefront (any change brings it back into the poll).",
        context={
            "order_id": so.external_id,
            "rejected": [
                {"ref": r.ref, "field": r.field, "message": r.message, "raw": str(r.raw)[:500]} for r in rejected[:20]
            ],
            "action": "check_order",
        },
        connection_id=connection.pk,
        channel_id=ch.pk,
        order_ref=keys.order_key(ch, so.external_id),
    )


def unknown_fulfilment_sku(ch, sku: str, f, o: Order) -> Problem:
    """A storefront-side fulfilment line whose SKU maps to no item: it cannot be reported to the master."""
    return Problem(
        "unknown_sku",
        kinds.key("unknown_sku", ch.key, sku),
        f"Unknown SKU {sku} on channel {ch.key}",
        message=f"storefront fulfilment {f.fulfilment_ref} of order {o} cannot be reported to the master",
        context={"orders": [o.idempotency_key], "action": "map_sku"},
        channel_id=ch.pk,
        sku=sku,
        order_ref=o.idempotency_key,
    )


# --- validate ------------------------------------------------------------------------------------------
def held_order(o: Order, fields: dict[str, str]) -> Problem:
    """An order held by validation, naming each field the warehouse needs (paths the edit action accepts)."""
    return Problem(
        "bad_payload",
        keys.order_problem_key(o),
        f"Order {o} held: {', '.join(fields)}",
        message="; ".join(f"{k}: {v}" for k, v in fields.items()),
        context={"fields": fields, "action": "retry_order", "order_id": o.pk, "state": S.HELD},
        connection_id=o.channel.connection_id,
        channel_id=o.channel_id,
        order_ref=o.idempotency_key,
    )


def unknown_order_sku(key: str, e: dict) -> Problem:
    """A storefront SKU that holds orders until it is mapped: one record per channel and SKU, listing the orders
    (``e``: ``{"channel", "sku", "orders": [order keys], "fields": {order key: line path}}``)."""
    return Problem(
        "unknown_sku",
        key,
        f"Unknown SKU {e['sku']} on channel {e['channel'].key}",
        message=f"{len(e['orders'])} order(s) held until the SKU is mapped (or a transform matches it).",
        context={
            "orders": e["orders"][:50],
            "order_fields": dict(list(e["fields"].items())[:50]),
            "field": next(iter(e["fields"].values())),
            "action": "map_sku",
        },
        channel_id=e["channel"].pk,
        connection_id=e["channel"].connection_id,
        sku=e["sku"],
        order_ref=e["orders"][0],
    )


# --- send ----------------------------------------------------------------------------------------------
def refused_payload(o: Order, fields: dict[str, str]) -> Problem:
    """The warehouse refused the order's data (422): the order is held naming the fields."""
    return Problem(
        "bad_payload",
        keys.bad_key(o.warehouse.name, "order", o.idempotency_key),
        f"{o.warehouse.name} rejected order {o}: {', '.join(fields)}",
        message=o.hold_reason,
        context={"fields": fields, "action": "retry_order", "order_id": o.pk},
        connection_id=o.warehouse_id,
        channel_id=o.channel_id,
        order_ref=o.idempotency_key,
    )


def accepted_after_cancel(o: Order) -> Problem:
    """The warehouse acknowledged an order the hub cancelled while the send was in flight."""
    return Problem(
        "bad_payload",
        keys.bad_key(o.warehouse.name, "order-cancel", o.idempotency_key),
        f"{o.warehouse.name} accepted order {o} after it was cancelled in the hub",
        message=f"The warehouse acknowledged the order ({o.warehouse_ref}) while it was being cancelled: "
        "cancel it in the warehouse.",
        context={
            "order_id": o.pk,
            "state": S.CANCELLED,
            "warehouse_ref": o.warehouse_ref,
            "action": "cancel_in_warehouse",
        },
        connection_id=o.warehouse_id,
        channel_id=o.channel_id,
        order_ref=o.idempotency_key,
    )


def order_failed(o: Order, why: str) -> Problem:
    """Sends ended without an acknowledgement (a refusal resending cannot change, or retries used up)."""
    return Problem(
        "stuck_order",
        kinds.key("stuck_order", o.idempotency_key),
        f"Order {o} failed: not accepted by {o.warehouse}",
        message=why[:1000],
        context={
            "order_id": o.pk,
            "state": S.FAILED,
            "attempts": o.send_attempts,
            "last_error": o.last_error,
            "action": "retry_order",
        },
        connection_id=o.warehouse_id,
        channel_id=o.channel_id,
        order_ref=o.idempotency_key,
    )


# --- cancel --------------------------------------------------------------------------------------------
def cancel_refused(o: Order, res) -> Problem:
    """The warehouse refused to cancel an order (already picked / dispatched)."""
    return Problem(
        "bad_payload",
        keys.bad_key(o.warehouse.name, "order-cancel", o.idempotency_key),
        f"{o.warehouse.name} refused to cancel order {o}",
        message=f"{o.cancel_reason or 'cancel requested'}; the warehouse answered: {res}"[:1000],
        context={
            "fields": {"status": str(res)[:300]},
            "order_id": o.pk,
            "state": o.state,
            "action": "cancel_in_warehouse",
        },
        connection_id=o.warehouse_id,
        channel_id=o.channel_id,
        order_ref=o.idempotency_key,
    )


# --- dispatch ------------------------------------------------------------------------------------------
def unreadable_dispatch(connection: Connection, source: str, r) -> Problem:
    """A dispatch row the connector could not parse (``r``: its ``RejectedRow``)."""
    return Problem(
        "bad_payload",
        keys.bad_key(connection.name, source, r.ref),
        f"Unreadable dispatch {r.ref} from {connection.name}: {r.field or 'row'}",
        message=r.message,
        context={"fields": {r.field or "row": r.message}, "raw": r.raw, "action": "check_sender"},
        connection_id=connection.pk,
    )


def dispatch_for_unknown_order(connection: Connection, source: str, d, why: str, parcels: list[dict]) -> Problem:
    """A dispatch for an order the hub does not know, or does not have at the warehouse (``parcels`` as stored)."""
    return Problem(
        "bad_payload",
        keys.bad_key(connection.name, source, d.ref or d.order_ref),
        f"{connection.name} dispatched order {d.order_ref}, which is {why}",
        message="Check the order in the warehouse and the hub.",
        context={"fields": {"orderRef": why}, "dispatch_ref": d.ref, "action": "check_order", "parcels": parcels},
        connection_id=connection.pk,
        order_ref=d.order_ref,
    )


# --- polls ---------------------------------------------------------------------------------------------
def unknown_notified_order(connection: Connection, external_id: str) -> Problem:
    """A notification named an order the storefront does not have (nothing captured)."""
    return Problem(
        "bad_payload",
        kinds.key("bad_payload", connection.name, "order-notification", external_id),
        f"{connection.name} has no order {external_id!r}, which a notification named",
        message="A subscription/webhook message named an order the storefront does not know; nothing "
        "was captured. Check the sender (a forged or misrouted message) if this repeats.",
        severity="warning",
        context={"order_id": external_id, "action": "check_sender"},
        connection_id=connection.pk,
    )


# --- checks --------------------------------------------------------------------------------------------
def stuck_order(o: Order, why: str) -> Problem:
    """Sent, not acknowledged within ``HUB["ACK_TIMEOUT_MINUTES"]`` (resent now)."""
    return Problem(
        "stuck_order",
        kinds.key("stuck_order", o.idempotency_key),
        f"Order {o} not acknowledged by the warehouse",
        message=why,
        context={
            "order_id": o.pk,
            "sent_at": o.sent_at.isoformat() if o.sent_at else None,
            "attempts": o.send_attempts,
            "last_error": o.last_error,
            "action": "retry_order",
        },
        connection_id=o.warehouse_id,
        channel_id=o.channel_id,
        order_ref=o.idempotency_key,
    )


def not_shown_shipped(o: Order) -> Problem:
    """Dispatched by the warehouse, still not shown shipped in the storefront past the agreed time."""
    return Problem(
        "missing_dispatch",
        kinds.key("missing_dispatch", o.idempotency_key),
        f"Order {o} dispatched but not shown shipped in the storefront",
        message=f"dispatched {o.dispatched_at:%Y-%m-%d %H:%M} UTC (confirmation received "
        f"{(o.dispatch_received_at or o.dispatched_at):%Y-%m-%d %H:%M} UTC)"
        f"{': ' + o.last_error if o.last_error else ''}",
        context={"order_id": o.pk, "tracking": o.tracking, "action": "resend_dispatch"},
        channel_id=o.channel_id,
        connection_id=o.channel.connection_id,
        order_ref=o.idempotency_key,
    )


def not_dispatched(o: Order, why: str, wh: Connection) -> Problem:
    """Acknowledged past the agreed dispatch time and the warehouse has no dispatch for it."""
    return Problem(
        "missing_dispatch",
        kinds.key("missing_dispatch", o.idempotency_key),
        f"Order {o} acknowledged {o.acknowledged_at:%Y-%m-%d %H:%M} UTC, no dispatch yet",
        message=f"{why}; past the agreed dispatch time.",
        severity="warning",
        context={"order_id": o.pk, "state": o.state, "warehouse": wh.name, "action": "check_order"},
        channel_id=o.channel_id,
        connection_id=wh.pk,
        order_ref=o.idempotency_key,
    )


def never_reached_hub(ch, so, conn: Connection) -> Problem:
    """An order in the storefront the hub never captured (captured now by the orphan check)."""
    return Problem(
        "orphaned_order",
        kinds.key("orphaned_order", ch.key, so.external_id),
        f"Order {so.order_number or so.external_id} is in {conn.name} but never reached the hub",
        message="Captured now by the orphan check; check the subscription / poll.",
        context={
            "order_id": so.external_id,
            "placed_at": so.placed_at.isoformat() if so.placed_at else None,
            "action": "retry_order",
        },
        channel_id=ch.pk,
        connection_id=conn.pk,
        order_ref=keys.order_key(ch, so.external_id),
    )


def missing_at_warehouse(o: Order, wh: Connection) -> Problem:
    """A hub order the warehouse does not have (made due for resending)."""
    return Problem(
        "orphaned_order",
        kinds.key("orphaned_order", o.channel.key, o.external_id),
        f"Order {o} is not in {wh.name}",
        message=f"{o.get_state_display()} in the hub since {o.created_at:%Y-%m-%d %H:%M} UTC; resending.",
        context={"order_id": o.pk, "state": o.state, "last_error": o.last_error, "action": "retry_order"},
        channel_id=o.channel_id,
        connection_id=wh.pk,
        order_ref=o.idempotency_key,
    )
