"""The order state machine: the only place an order's state changes."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from .models import Order, OrderState as S, OrderTransition

ALLOWED: dict[str, set[str]] = {
    S.CAPTURED: {S.VALIDATED, S.HELD, S.CANCELLED, S.FAILED},
    S.VALIDATED: {S.SENT, S.HELD, S.CANCELLED, S.FAILED},
    S.SENT: {S.ACKNOWLEDGED, S.HELD, S.CANCELLED, S.FAILED, S.SENT},
    S.ACKNOWLEDGED: {S.DISPATCHED, S.CANCELLED},
    S.DISPATCHED: {S.STOREFRONT_NOTIFIED},
    S.STOREFRONT_NOTIFIED: set(),
    S.HELD: {S.VALIDATED, S.CANCELLED, S.FAILED, S.HELD},
    # FAILED → ACKNOWLEDGED: the warehouse confirms a dispatch of a failed order it did receive (after
    # NotAcknowledged answers); the dispatch then moves it on
    S.FAILED: {S.VALIDATED, S.CANCELLED, S.ACKNOWLEDGED},
    S.CANCELLED: set(),
}

TERMINAL = {S.STOREFRONT_NOTIFIED, S.CANCELLED}

_TIMESTAMPS = {
    S.SENT: "sent_at",
    S.ACKNOWLEDGED: "acknowledged_at",
    S.DISPATCHED: "dispatched_at",
    S.STOREFRONT_NOTIFIED: "notified_at",
}


class IllegalTransition(Exception):
    def __init__(self, order: Order, to_state: str):
        super().__init__(f"order {order} cannot go from {order.state} to {to_state}")
        self.order, self.to_state = order, to_state


def can_transition(from_state: str, to_state: str) -> bool:
    return to_state in ALLOWED.get(from_state, set())


def transition(order: Order, to_state: str, cause: str, actor=None, **fields) -> Order:
    """Move ``order`` to ``to_state``, log the transition, and save ``fields`` with it.

    Re-reads the row under a lock so two workers cannot both move the same order; raises
    IllegalTransition for a move the machine does not allow."""
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        if not can_transition(locked.state, to_state):
            raise IllegalTransition(locked, to_state)
        from_state = locked.state
        locked.state = to_state
        stamp = _TIMESTAMPS.get(to_state)
        if stamp and getattr(locked, stamp) is None:
            fields.setdefault(stamp, timezone.now())
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.save()
        OrderTransition.objects.create(
            order=locked, from_state=from_state, to_state=to_state, cause=cause[:300], actor=actor
        )
    # keep the caller's instance current
    for f in locked._meta.concrete_fields:
        setattr(order, f.attname, getattr(locked, f.attname))
    return order


CHUNK = 500


def transition_many(order_ids, to_state: str, cause: str, actor=None, from_states=None, **fields) -> list[int]:
    """Set-based :func:`transition`: move every order of ``order_ids`` whose current state may go to
    ``to_state`` (and is in ``from_states`` when given), logging one OrderTransition each.

    Orders in a state that does not allow the move are left alone (not an error: another worker may
    have moved them first); the ids actually moved are returned. ``fields`` may hold plain values or
    expressions (``F("send_attempts") + 1``) and are applied to every moved order. A fixed number of
    queries per 500 orders."""
    from django.db.models import F
    from django.db.models.functions import Coalesce

    sources = {s for s in S.values if can_transition(s, to_state)}
    if from_states is not None:
        sources &= set(from_states)
    ids = sorted({int(i) for i in order_ids})
    if not ids or not sources:
        return []
    moved: list[int] = []
    now = timezone.now()
    stamp = _TIMESTAMPS.get(to_state)
    values = dict(fields)
    if stamp and stamp not in values:
        values[stamp] = Coalesce(F(stamp), now)
    values["updated_at"] = now
    with transaction.atomic():
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            rows = list(
                Order.objects.select_for_update().filter(pk__in=chunk, state__in=sources).values_list("pk", "state")
            )
            if not rows:
                continue
            by_state: dict[str, list[int]] = {}
            for pk, state in rows:
                by_state.setdefault(state, []).append(pk)
            log = []
            for from_state, pks in by_state.items():
                Order.objects.filter(pk__in=pks, state=from_state).update(state=to_state, **values)
                log += [
                    OrderTransition(
                        order_id=pk, from_state=from_state, to_state=to_state, cause=cause[:300], actor=actor
                    )
                    for pk in pks
                ]
                moved += pks
            OrderTransition.objects.bulk_create(log)
    return moved


def log_created(orders, cause: str, actor=None) -> None:
    """Log the birth of freshly captured orders (∅ → their initial state)."""
    OrderTransition.objects.bulk_create(
        [
            OrderTransition(order_id=o.pk, from_state="", to_state=o.state, cause=cause[:300], actor=actor)
            for o in orders
        ]
    )
