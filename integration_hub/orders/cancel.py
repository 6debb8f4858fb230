"""**Cancel**: an order the warehouse does not have is cancelled at once (reservations released, exceptions cleared);
one it has (sent / acknowledged) gets a cancel request the worker sends (:func:`cancel_due`), and is cancelled on
the warehouse's confirmation — a refusal (already picked or dispatched) raises an exception record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectors import errors
from exceptions_app import kinds
from exceptions_app.services import clear, raise_many
from integration_hub.core.models import Connection
from integration_hub.inventory import reservations

from . import claims, keys, remote
from .bulkops import group_by, save_varying
from .models import Order, OrderState as S
from .problems import cancel_refused, transport_failure
from .state import transition_many


def _cancelled_keys(o: Order) -> list[str]:
    return [
        keys.order_problem_key(o),
        kinds.key("stuck_order", o.idempotency_key),
        kinds.key("orphaned_order", o.channel.key, o.external_id),
        kinds.key("missing_dispatch", o.idempotency_key),
        keys.bad_key(o.warehouse.name if o.warehouse_id and o.warehouse else "", "order-cancel", o.idempotency_key),
    ]


def cancel_many(orders, reason: str, actor=None, from_states=None) -> list[int]:
    """Cancel orders the warehouse does not have (or has confirmed cancelling): one transition_many, one
    release of their reservations, one clear of their exception keys. Returns the ids cancelled."""
    orders = list(orders)
    with transaction.atomic():
        moved = set(
            transition_many(
                [o.pk for o in orders],
                S.CANCELLED,
                f"cancelled: {reason}",
                actor=actor,
                from_states=from_states or list(claims.EDITABLE_BEFORE_SEND),
                claim_token="",
                next_attempt_at=None,
            )
        )
        done = [o for o in orders if o.pk in moved]
        reservations.release([o.idempotency_key for o in done], "cancelled")
    if done:
        clear([k for o in done for k in _cancelled_keys(o)], reason=f"order cancelled: {reason}"[:200])
    return sorted(moved)


def request_warehouse_cancel(order_ids, reason: str) -> int:
    """Orders the warehouse already has: remember that they must be cancelled there (the send loop no longer
    resends them) and nudge a worker to ask the warehouse (:func:`cancel_due`)."""
    now, ids = timezone.now(), list(order_ids)
    n = Order.objects.filter(claims.AT_WAREHOUSE, pk__in=ids, cancel_requested_at__isnull=True).update(
        cancel_requested_at=now, cancel_reason=reason[:300]
    )
    if n:  # due at once unless a send is in flight: then when it ends (or its lease runs out)
        Order.objects.filter(claims.lease_free(now), pk__in=ids, cancel_requested_at=now).update(
            next_attempt_at=None, claim_token=""
        )
        claims.kick()
    return n


@dataclass
class CancelResult:
    cancelled: int = 0
    refused: int = 0
    retrying: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def cancel_due(limit: int = claims.HTTP_BATCH_SIZE, lease_seconds: int = claims.LEASE_SECONDS) -> CancelResult:
    ids = claims.claim(claims.CANCEL_DUE, limit, lease_seconds)
    return cancel_claimed(ids) if ids else CancelResult()


def cancel_claimed(ids: list[int], actor=None) -> CancelResult:
    """Ask the warehouse to cancel claimed orders with a cancel request. Confirmed (or the warehouse never had
    the order) → cancelled, reservations released; refused (already picked / dispatched) → the request is
    dropped and a ``bad_payload`` record names the refusal; transport failures back off and retry."""
    result = CancelResult()
    orders = list(
        Order.objects.filter(claims.AT_WAREHOUSE, pk__in=ids, cancel_requested_at__isnull=False)
        .select_related("channel__connection", "warehouse")
        .defer("raw")
    )

    def call(o):
        return remote.connector(o.warehouse).cancel_order(o.idempotency_key)

    with claims.renewing([o.pk for o in orders]):
        outcomes = remote.parallel(call, orders)
    now = timezone.now()
    ack_wait = timedelta(minutes=settings.HUB["ACK_TIMEOUT_MINUTES"])
    done, refused, later, problems = [], [], [], []
    for o, res in zip(orders, outcomes):
        o.claim_token = ""
        if (
            isinstance(res, errors.NotFoundError)
            and o.state == S.SENT
            and now
            < max((t for t in (o.sent_at, o.cancel_requested_at) if t is not None), default=now - ack_wait) + ack_wait
        ):
            # a send may still be landing: "not there" is "not there yet", not cancelled — asked again until the
            # acknowledgement timeout has passed since the last send could have started; then it is truly absent
            o.last_error = f"cancel: {type(res).__name__}: {res} (not at the warehouse yet)"[:2000]
            o.next_attempt_at = now + claims.backoff(o.send_attempts or 1)
            later.append(o)
            continue
        if isinstance(res, errors.NotFoundError) or not isinstance(res, Exception):
            done.append(o)
            continue
        o.last_error = f"cancel: {type(res).__name__}: {res}"[:2000]
        if isinstance(res, (errors.PermanentError, errors.BadDataError)) or isinstance(res, NotImplementedError):
            o.cancel_requested_at, o.next_attempt_at = None, None
            refused.append(o)
            problems.append(cancel_refused(o, res))
            continue
        o.next_attempt_at = now + claims.backoff(o.send_attempts or 1)
        later.append(o)
        problems.append(transport_failure(o.warehouse, "cancel_order", res, o))
    with transaction.atomic():
        if refused:
            save_varying(Order, refused, ["last_error", "cancel_requested_at", "next_attempt_at", "claim_token"])
            result.refused = len(refused)
        if later:
            save_varying(Order, later, ["last_error", "next_attempt_at", "claim_token"])
            result.retrying = len(later)
        if problems:
            raise_many(problems)
    for reason, group in group_by(done, lambda o: o.cancel_reason or "cancel requested").items():
        result.cancelled += len(
            cancel_many(
                group,
                f"{reason} (confirmed by {group[0].warehouse})",
                actor=actor,
                from_states=[S.SENT, S.ACKNOWLEDGED, S.FAILED],
            )
        )
    return result


def apply_storefront_cancellations(connection: Connection, pairs) -> int:
    """Orders cancelled in the storefront: cancelled in the hub at once (reservations released) while the
    warehouse does not have them yet; once it does, a warehouse cancel is requested (:func:`cancel_due` asks
    the warehouse; the order is cancelled on its confirmation, or an exception says it refused). A fixed
    number of queries per batch."""
    cancelled = [(ch.pk, so.external_id) for ch, so in pairs if (so.status or "").lower() == "cancelled"]
    if not cancelled:
        return 0
    orders = list(
        keys.orders_for(
            cancelled,
            Order.objects.exclude(state=S.CANCELLED).select_related("channel__connection", "warehouse").defer("raw"),
        ).values()
    )
    before = [o for o in orders if o.state in claims.EDITABLE_BEFORE_SEND and not claims.maybe_at_warehouse(o)]
    n = len(cancel_many(before, "cancelled in the storefront")) if before else 0
    at_warehouse = [o.pk for o in orders if claims.maybe_at_warehouse(o) and o.cancel_requested_at is None]
    if at_warehouse:
        request_warehouse_cancel(at_warehouse, f"cancelled in {connection.name}")
    return n
