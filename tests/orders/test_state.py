"""The order state machine: every illegal move rejected, every move logged."""

from __future__ import annotations

import pytest

from integration_hub.orders.models import Order, OrderState as S, OrderTransition
from integration_hub.orders.state import ALLOWED, IllegalTransition, transition, transition_many

ALL = list(S.values)


def _order(world, state, n=[0]):
    n[0] += 1
    return Order.objects.create(
        channel=world.channel, external_id=f"x{n[0]}-{state}", state=state, idempotency_key=f"k{n[0]}-{state}"
    )


def test_every_illegal_transition_is_rejected_and_leaves_no_trace(world):
    illegal = [(a, b) for a in ALL for b in ALL if b not in ALLOWED[a]]
    assert len(illegal) > 40
    for a, b in illegal:
        o = _order(world, a)
        with pytest.raises(IllegalTransition):
            transition(o, b, "test")
        o.refresh_from_db()
        assert o.state == a
        assert not OrderTransition.objects.filter(order=o).exists()
        assert transition_many([o.pk], b, "test") == []
        o.refresh_from_db()
        assert o.state == a


def test_every_allowed_transition_is_logged_with_time_cause_and_actor(world, make_user):
    user = make_user("ops")
    pairs = [(a, b) for a in ALL for b in ALLOWED[a]]
    for a, b in pairs:
        o = _order(world, a)
        transition(o, b, f"because {a}->{b}", actor=user)
        assert o.state == b
        t = OrderTransition.objects.get(order=o)
        assert (t.from_state, t.to_state, t.cause, t.actor) == (a, b, f"because {a}->{b}", user)
        assert t.at is not None
    # set-based moves are logged the same way
    orders = [_order(world, S.VALIDATED) for _ in range(3)] + [_order(world, S.DISPATCHED)]
    moved = transition_many([o.pk for o in orders], S.SENT, "bulk send")
    assert sorted(moved) == sorted(o.pk for o in orders[:3])
    assert (
        OrderTransition.objects.filter(
            order_id__in=moved, from_state=S.VALIDATED, to_state=S.SENT, cause="bulk send"
        ).count()
        == 3
    )
    assert Order.objects.get(pk=orders[3].pk).state == S.DISPATCHED


def test_terminal_states_allow_nothing():
    assert ALLOWED[S.STOREFRONT_NOTIFIED] == set() and ALLOWED[S.CANCELLED] == set()
    # the storefront can only be told after a dispatch
    assert [a for a in ALL if S.STOREFRONT_NOTIFIED in ALLOWED[a]] == [S.DISPATCHED]
    assert [a for a in ALL if S.DISPATCHED in ALLOWED[a]] == [S.ACKNOWLEDGED]


def test_timestamps_set_by_transitions(world):
    o = _order(world, S.VALIDATED)
    transition_many([o.pk], S.SENT, "send")
    o.refresh_from_db()
    first = o.sent_at
    assert first is not None
    transition(o, S.SENT, "resend")
    assert o.sent_at == first  # the first send time is kept (ack timeout counts from it)
