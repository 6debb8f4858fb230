"""Cancels racing sends, and cancels / dispatches of failed orders the warehouse may hold."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from connectors.base import Dispatch, Parcel
from connectors.wair import NotAcknowledged
from exceptions_app.models import ExceptionRecord
from integration_hub.inventory.models import Reservation
from integration_hub.orders import actions, cancel, capture, dispatch, keys, processing, send
from integration_hub.orders.models import Order, OrderState as S, OrderTransition

from .conftest import make_so


def run_all():
    for _ in range(5):
        if not any(processing.process_due().values()):
            break


def during_send(wh, ref, fn):
    """Run ``fn()`` while the warehouse is handling the first send of ``ref`` (before it stores the order)."""
    real = wh.send_order

    def send_order(wo):
        if wo.order_ref == ref and not getattr(send_order, "done", False):
            send_order.done = True
            fn()
        return real(wo)

    wh.send_order = send_order


def failed_after_sends(world, wh, monkeypatch, ext):
    """An order that failed after NotAcknowledged answers (WAIR holds it: ``wh.ids`` knows it)."""
    monkeypatch.setattr(send, "MAX_SEND_ATTEMPTS", 1)
    o, _ = capture.capture(world.channel, make_so(ext))
    wh.script[o.idempotency_key] = [NotAcknowledged("pending", order_ref=o.idempotency_key)]
    run_all()
    o.refresh_from_db()
    assert o.state == S.FAILED and o.send_attempts == 1
    wh.ids[o.idempotency_key] = "WO-77"
    return o


def test_cancel_during_a_send_waits_for_its_lease_and_then_cancels_in_the_warehouse(world, fakes):
    wh, _ = fakes
    o, _ = capture.capture(world.channel, make_so("ct-race1"))
    during_send(wh, o.idempotency_key, lambda: actions.cancel(Order.objects.get(pk=o.pk), "customer called"))
    run_all()
    o.refresh_from_db()
    # the warehouse took the order: the hub asked it to cancel once the send had landed, and only then cancelled
    assert wh.cancelled == [o.idempotency_key] and wh.status[o.idempotency_key] == "cancelled"
    assert o.state == S.CANCELLED
    assert OrderTransition.objects.filter(order=o, from_state=S.ACKNOWLEDGED, to_state=S.CANCELLED).exists()
    assert Reservation.objects.get(order_ref=o.idempotency_key).release_reason == "cancelled"


def test_storefront_cancel_during_a_send_does_not_steal_the_lease(world, fakes):
    wh, _ = fakes
    so = make_so("ct-race2")
    o, _ = capture.capture(world.channel, so)

    def storefront_cancels():
        so.status = "Cancelled"
        capture.capture_many(world.ct, [so])
        held = Order.objects.get(pk=o.pk)
        assert held.cancel_requested_at is not None and held.claim_token != ""  # the send's lease is untouched

    during_send(wh, o.idempotency_key, storefront_cancels)
    run_all()
    o.refresh_from_db()
    assert o.state == S.CANCELLED and wh.status[o.idempotency_key] == "cancelled"


def test_not_found_on_cancel_of_a_sent_order_retries_until_the_ack_timeout(world, fakes, settings):
    wh, _ = fakes
    o, _ = capture.capture(world.channel, make_so("ct-race3"))
    wh.script[o.idempotency_key] = [NotAcknowledged("pending", order_ref=o.idempotency_key)]
    run_all()
    o.refresh_from_db()
    assert o.state == S.SENT and o.idempotency_key not in wh.ids
    o = actions.cancel(o, "customer called")
    # "not found" may be "not there yet": the order is not cancelled and its stock stays reserved
    assert wh.cancelled == [o.idempotency_key]
    assert o.state == S.SENT and o.cancel_requested_at is not None and "not at the warehouse yet" in o.last_error
    assert Reservation.objects.get(order_ref=o.idempotency_key).released_at is None
    # after the acknowledgement timeout and still not found: truly absent → cancelled
    past = timezone.now() - timedelta(minutes=settings.HUB["ACK_TIMEOUT_MINUTES"] + 1)
    Order.objects.filter(pk=o.pk).update(sent_at=past, cancel_requested_at=past, next_attempt_at=None)
    assert cancel.cancel_due().cancelled == 1
    o.refresh_from_db()
    assert o.state == S.CANCELLED


def test_acknowledgement_of_an_order_cancelled_meanwhile_raises_a_cancel_in_warehouse_record(world, fakes):
    wh, _ = fakes
    o, _ = capture.capture(world.channel, make_so("ct-race4"))
    # e.g. the lease ran out mid-send and the cancel went ahead: the hub cancelled, then the warehouse acknowledged
    during_send(
        wh,
        o.idempotency_key,
        lambda: cancel.cancel_many([Order.objects.get(pk=o.pk)], "lease lapsed", from_states=[S.SENT]),
    )
    run_all()
    o.refresh_from_db()
    assert o.state == S.CANCELLED and o.idempotency_key in wh.ids
    rec = ExceptionRecord.objects.get(dedupe_key=keys.bad_key(world.wh.name, "order-cancel", o.idempotency_key))
    assert rec.status != "resolved" and rec.context["action"] == "cancel_in_warehouse"


def test_cancelling_a_failed_order_that_was_sent_asks_the_warehouse(world, fakes, monkeypatch):
    wh, _ = fakes
    o = failed_after_sends(world, wh, monkeypatch, "ct-f1")
    o = actions.cancel(o, "customer called")
    assert wh.cancelled == [o.idempotency_key] and wh.status[o.idempotency_key] == "cancelled"
    assert o.state == S.CANCELLED
    assert OrderTransition.objects.filter(
        order=o, from_state=S.FAILED, to_state=S.CANCELLED, cause__contains="confirmed by"
    ).exists()


def test_storefront_cancel_of_a_failed_sent_order_requests_a_warehouse_cancel(world, fakes, monkeypatch):
    wh, _ = fakes
    o = failed_after_sends(world, wh, monkeypatch, "ct-f2")
    so = make_so("ct-f2")
    so.status = "Cancelled"
    capture.capture_many(world.ct, [so])
    o.refresh_from_db()
    assert o.state == S.FAILED and o.cancel_requested_at is not None
    assert cancel.cancel_due().cancelled == 1
    o.refresh_from_db()
    assert o.state == S.CANCELLED and wh.cancelled == [o.idempotency_key]


def test_failed_order_never_sent_still_cancels_in_the_hub(world, fakes):
    wh, _ = fakes
    o, _ = capture.capture(world.channel, make_so("ct-f3"))
    Order.objects.filter(pk=o.pk).update(state=S.FAILED)
    o = actions.cancel(o, "customer called")
    assert o.state == S.CANCELLED and getattr(wh, "cancelled", []) == []


def test_dispatch_of_a_failed_order_that_was_sent_is_accepted(world, fakes, monkeypatch):
    wh, _ = fakes
    o = failed_after_sends(world, wh, monkeypatch, "ct-f4")
    d = Dispatch(
        order_ref=o.idempotency_key,
        warehouse_ref="WO-77",
        dispatched_at=timezone.now(),
        parcels=[Parcel(carrier="dhl", tracking_number="TN9", lines=[("SKU-1", 1)])],
    )
    r = dispatch.record_dispatch(world.wh, d)
    assert (r.dispatched, r.unknown) == (1, 0)
    o.refresh_from_db()
    assert o.state == S.DISPATCHED
    t = OrderTransition.objects.get(order=o, from_state=S.FAILED, to_state=S.ACKNOWLEDGED)
    assert "marked failed" in t.cause
    assert ExceptionRecord.objects.get(dedupe_key=f"stuck_order:{o.idempotency_key}").status == "resolved"
