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
    S.FAILED: {S.VALIDATED, S.CANCELLED},
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
        OrderTransition.objects.create(order=locked, from_state=from_state, to_state=to_state, cause=cause[:300], actor=actor)
    # keep the caller's instance current
    for f in locked._meta.concrete_fields:
        setattr(order, f.attname, getattr(locked, f.attname))
    return order
