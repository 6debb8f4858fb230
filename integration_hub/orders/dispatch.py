"""**Dispatch**: the warehouse's confirmation (webhook or poll) records tracking and moves the order to
*dispatched* (reservations released); a partial dispatch (``complete=False``) records its parcels but the order
stays acknowledged until the warehouse confirms the rest.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectors.base import Dispatch, Parcel
from exceptions_app import kinds
from exceptions_app.services import clear, raise_many
from integration_hub.core.models import Connection
from integration_hub.inventory import reservations

from . import claims
from .bulkops import chunks, save_varying
from .models import Order, OrderState as S
from .problems import dispatch_for_unknown_order, unreadable_dispatch
from .shipped import update_shipped
from .state import transition_many

log = logging.getLogger(__name__)


def _parcel_dict(p: Parcel) -> dict:
    return {
        "carrier": p.carrier,
        "tracking_number": p.tracking_number,
        "tracking_url": p.tracking_url,
        "lines": [[s, q] for s, q in p.lines],
    }


@dataclass
class DispatchResult:
    dispatched: int = 0
    partial: int = 0
    duplicate: int = 0
    unknown: int = 0
    rejected: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def record_dispatches(connection: Connection, dispatches, source: str = "dispatch") -> DispatchResult:
    """Warehouse dispatch confirmations → tracking on the order, state dispatched, storefront notify queued.
    Idempotent (parcels merge by tracking number). Rows the connector could not parse
    (``dispatches.rejected``) and dispatches for orders the hub does not know become ``bad_payload``."""
    rejected = list(getattr(dispatches, "rejected", None) or [])
    dispatches = list(dispatches)
    res = DispatchResult()
    problems = [unreadable_dispatch(connection, source, r) for r in rejected]
    res.rejected = len(problems)
    received = timezone.now()
    horizon = received + timedelta(seconds=int(settings.HUB.get("FUTURE_TOLERANCE_SECONDS", 300)))
    with transaction.atomic():
        refs = sorted({d.order_ref for d in dispatches})
        orders = {}
        for chunk in chunks(refs):
            # FOR UPDATE of the orders only: the joined channel row stays unlocked (locking it deadlocked with stock
            # webhooks, whose deferred foreign-key checks on the channel wait at commit — the flash-sale fault test)
            orders.update(
                {
                    o.idempotency_key: o
                    for o in Order.objects.select_for_update(of=("self",))
                    .filter(idempotency_key__in=chunk)
                    .select_related("channel")
                    .defer("raw")
                }
            )
        changed, to_ack, to_dispatch = {}, [], []
        for d in dispatches:
            o = orders.get(d.order_ref)
            if (
                o is None
                or o.state in (S.CANCELLED, S.CAPTURED, S.VALIDATED, S.HELD)
                or (o.state == S.FAILED and not claims.maybe_at_warehouse(o))
            ):
                res.unknown += 1
                why = "unknown to the hub" if o is None else f"{o.get_state_display()} in the hub"
                problems.append(
                    dispatch_for_unknown_order(connection, source, d, why, [_parcel_dict(p) for p in d.parcels])
                )
                continue
            known = {t.get("tracking_number") for t in o.tracking or []}
            new = [_parcel_dict(p) for p in d.parcels if not p.tracking_number or p.tracking_number not in known]
            if new:
                o.tracking = list(o.tracking or []) + new
                changed[o.pk] = o
            if d.warehouse_ref and not o.warehouse_ref:
                o.warehouse_ref = d.warehouse_ref[:100]
                changed[o.pk] = o
            if not d.complete:
                res.partial += 1
                if o.state in (S.SENT, S.FAILED):
                    to_ack.append(o)
                continue
            if o.state in (S.DISPATCHED, S.STOREFRONT_NOTIFIED):
                res.duplicate += 1
                continue
            if o.state in (S.SENT, S.FAILED):
                to_ack.append(o)
            to_dispatch.append(o)
            # the warehouse's time is kept; the agreed time to show it shipped runs from when the hub heard of it
            # (a time ahead of the hub's clock by more than HUB["FUTURE_TOLERANCE_SECONDS"] is clamped to now)
            o.dispatched_at = d.dispatched_at if d.dispatched_at and d.dispatched_at <= horizon else received
            if d.dispatched_at and d.dispatched_at > horizon:
                log.warning(
                    "%s dispatch %s for %s is dated %s, in the future: recorded as dispatched now",
                    connection.name,
                    d.ref,
                    d.order_ref,
                    d.dispatched_at.isoformat(),
                )
            o.dispatch_received_at = received
            changed[o.pk] = o
        if changed:
            save_varying(
                Order, list(changed.values()), ["tracking", "warehouse_ref", "dispatched_at", "dispatch_received_at"]
            )
        if to_ack:
            moved = set(
                transition_many(
                    [o.pk for o in to_ack if o.state == S.SENT],
                    S.ACKNOWLEDGED,
                    "acknowledged: the warehouse confirmed a dispatch",
                    from_states=[S.SENT],
                    claim_token="",
                    next_attempt_at=None,
                )
            )
            # a failed order (no acknowledgement in time) the warehouse did have: its dispatch is the acknowledgement
            moved |= set(
                transition_many(
                    [o.pk for o in to_ack if o.state == S.FAILED],
                    S.ACKNOWLEDGED,
                    "acknowledged: the warehouse confirmed a dispatch of an order the hub had marked failed",
                    from_states=[S.FAILED],
                    claim_token="",
                    next_attempt_at=None,
                )
            )
            reservations.mark_holds_acknowledged(
                [(o.idempotency_key, o.warehouse_id or connection.pk, received) for o in to_ack if o.pk in moved]
            )
        if to_dispatch:
            moved = transition_many(
                [o.pk for o in to_dispatch],
                S.DISPATCHED,
                f"dispatch confirmed by {connection.name} ({source})",
                from_states=[S.ACKNOWLEDGED],
                claim_token="",
                next_attempt_at=None,
            )
            res.dispatched = len(moved)
            if moved:
                by_pk = {o.pk: o for o in to_dispatch}
                reservations.release([by_pk[pk].idempotency_key for pk in moved], "dispatched")
                claims.kick()
        if changed or to_dispatch:
            update_shipped([*changed, *(o.pk for o in to_dispatch)])  # OrderLine.shipped_quantity from the parcels
        if problems:
            raise_many(problems)
    acked_keys = [kinds.key("stuck_order", o.idempotency_key) for o in to_ack + to_dispatch]
    if acked_keys:
        clear(acked_keys, reason="the warehouse dispatched the order")
    return res


def record_dispatch(connection: Connection, dispatch: Dispatch, source: str = "dispatch") -> DispatchResult:
    return record_dispatches(connection, [dispatch], source=source)
