"""Order flow with fake connectors: capture, mapping, hold/revalidate, send/ack, dispatch, notify, beat checks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connectors import errors
from connectors.base import Dispatch, Parcel
from connectors.wair import NotAcknowledged, WairConnector, WairValidationError
from exceptions_app.models import ExceptionRecord
from integration_hub.inventory.models import PendingPush, Reservation
from integration_hub.orders import actions, capture, checks, dispatch, fulfilments, processing, send
from integration_hub.orders.models import Order, OrderLine, OrderState as S, OrderTransition, ShippingMethodMap

from .conftest import make_so


def exc(key):
    return ExceptionRecord.objects.filter(dedupe_key=key).first()


def run_all():
    for _ in range(5):
        if not any(processing.process_due().values()):
            break


# --- capture ---------------------------------------------------------------------------------------
def test_capture_deduplicates_webhook_twice_and_poll_overlap(world):
    so = make_so("ct-1", lines=[("SKU-1", 2)])
    o1, created1 = capture.capture(world.channel, so)
    o2, created2 = capture.capture(world.channel, so)  # webhook redelivered
    r = capture.capture_many(world.ct, [so, make_so("ct-2")], source="poll")  # poll overlaps
    assert created1 and not created2 and o1.pk == o2.pk
    assert (len(r.created), r.existing) == (1, 1)
    assert Order.objects.filter(external_id="ct-1").count() == 1
    assert OrderLine.objects.filter(order=o1).count() == 1
    assert OrderTransition.objects.filter(order=o1).count() == 1
    res = Reservation.objects.get(order_ref=o1.idempotency_key)
    assert (res.item.sku, res.quantity, res.channel_id, res.released_at) == ("SKU-1", 2, world.channel.pk, None)
    push = PendingPush.objects.get(channel=world.channel, item=world.items["SKU-1"])
    assert push.priority == PendingPush.Priority.ORDER


def test_unknown_channel_is_an_exception_not_a_loss(world):
    r = capture.capture_many(world.ct, [make_so("ct-9", channel_ref="nowhere"), make_so("ct-10")], source="poll")
    # one channel on the connection: orders fall back to it
    assert len(r.created) == 2
    from integration_hub.core.models import Channel

    Channel.objects.create(key="eu-web", name="EU", connection=world.ct, external_id="eu-web", warehouse=world.wh)
    r = capture.capture_many(world.ct, [make_so("ct-11", channel_ref="nowhere")], source="poll")
    assert r.rejected == 1 and not r.created
    rec = exc("bad_payload:ct:order:ct-11")
    assert rec and "channel_ref" in rec.context["fields"]


def test_orders_the_connector_could_not_read_are_filed_by_the_capture(world):
    """A page whose ``rejected`` rows name orders the storefront answered unreadably: the capture takes the good
    orders and files one ``bad_payload`` per rejected order (the connectors file nothing themselves)."""
    from connectors.parsing import ParsedBatch

    page = ParsedBatch([make_so("ct-20")])
    page.reject(
        "ct-21",
        "order",
        "commercetools order ct-21 is malformed: KeyError: 'quantity'",
        raw={"id": "ct-21"},
        name="N-21",
    )
    r = capture.capture_many(world.ct, page, source="poll")
    assert len(r.created) == 1 and r.rejected == 0  # counted as before: only orders refused by the capture
    rec = exc("bad_payload:ct:order:ct-21")
    assert rec.title == "Order N-21 from ct cannot be read" and rec.order_ref == "ct-21"
    assert (
        rec.message.startswith("commercetools order ct-21 is malformed")
        and "Fix the order in commercetools" in rec.message
    )
    assert rec.context["action"] == "check_order" and rec.context["order_number"] == "N-21"


def test_capture_queries_do_not_grow_with_batch(world, django_assert_max_num_queries, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    small = [make_so(lines=[("SKU-1", 1), ("BUNDLE-1", 1)]) for _ in range(5)]
    big = [make_so(lines=[("SKU-1", 1), ("BUNDLE-1", 1)]) for _ in range(200)]
    with CaptureQueriesContext(connection) as q_small:
        capture.capture_many(world.ct, small)
    with CaptureQueriesContext(connection) as q_big:
        capture.capture_many(world.ct, big)
    # no per-order queries: only bulk INSERTs, which SQLite (999 parameters a statement) splits into chunks
    assert len(q_small) <= 20
    per_row = [q["sql"] for q in q_big.captured_queries if q["sql"].startswith(("SELECT", "UPDATE"))]
    assert len(per_row) <= 12, per_row
    assert len(q_big) <= 40, len(q_big)
    with django_assert_max_num_queries(45):
        capture.capture_many(world.ct, [make_so(lines=[("SKU-2", 3)]) for _ in range(300)])


# --- mapping ---------------------------------------------------------------------------------------
def test_everything_the_warehouse_needs_reaches_the_request_body(world, fakes):
    from integration_hub.catalog.models import IdentifierTransform

    wh, _ = fakes
    IdentifierTransform.objects.create(name="strip zeros", connection=world.ct, strip_leading_zeros=True)
    ShippingMethodMap.objects.create(
        channel=world.channel, storefront_method="express", warehouse_method="UK-EXP", carrier="dpd"
    )
    so = make_so(
        "ct-100",
        lines=[("SKU-1", 1), ("BUNDLE-1", 2), ("123", 4)],
        shipping_method="express",
        gift_message="Happy birthday!",
        delivery_notes="Leave with neighbour",
        custom_fields={"giftWrap": True},
    )
    so.lines[0].custom_fields = {"engraving": "AM"}
    order, _ = capture.capture(world.channel, so)
    run_all()
    order.refresh_from_db()
    assert order.state == S.ACKNOWLEDGED, order.hold_reason
    body = WairConnector.order_body(wh.sent[0])
    assert body["orderRef"] == order.idempotency_key
    assert body["serviceCode"] == "UK-EXP" and body["carrier"] == "dpd"  # channel-specific map beats the global one
    assert body["giftMessage"] == "Happy birthday!" and body["deliveryNotes"] == "Leave with neighbour"
    assert body["customFields"]["giftWrap"] is True
    assert body["shippingAddress"]["postalCode"] == "SW1A 1AA" and body["shippingAddress"]["lastName"] == "Morgan"
    assert body["billingAddress"]["city"] == "London"
    lines = {(ln["skuId"], ln["quantity"], ln["parentLineId"]) for ln in body["lines"]}
    bundle_line = "ct-100-L2"
    assert lines == {
        ("SKU-1", 1, None),
        ("BUNDLE-1", 2, None),
        ("SKU-1", 4, bundle_line),
        ("SKU-2", 2, bundle_line),
        ("000123", 4, None),
    }
    assert body["lines"][0]["customFields"] == {"engraving": "AM"}
    # reservations: picked lines only (components, not the bundle parent); kept on acknowledgement (marked with
    # the warehouse) until the master's stock feed carries the order
    res = {(r.item.sku, r.quantity) for r in Reservation.objects.filter(order_ref=order.idempotency_key)}
    assert res == {("SKU-1", 5), ("SKU-2", 2), ("000123", 4)}
    held = Reservation.objects.filter(order_ref=order.idempotency_key, released_at__isnull=True)
    assert held.count() == 3 and all(r.acknowledged_at and r.warehouse_id == world.wh.pk for r in held)


def test_channel_mapping_wins_over_global(world, fakes):
    from integration_hub.catalog.models import SkuMapping

    SkuMapping.objects.create(item=world.items["SKU-3"], channel=world.channel, storefront_sku="SKU-1")
    order, _ = capture.capture(world.channel, make_so(lines=[("SKU-1", 1)]))
    assert order.lines.get().item.sku == "SKU-3"


# --- hold + revalidate ---------------------------------------------------------------------------------
def test_unknown_sku_holds_then_revalidation_after_mapping_sends(world, fakes):
    from integration_hub.catalog.models import SkuMapping

    wh, _ = fakes
    a, _ = capture.capture(world.channel, make_so("ct-a", lines=[("NEW-1", 1), ("SKU-1", 1)]))
    b, _ = capture.capture(world.channel, make_so("ct-b", lines=[("NEW-1", 2)]))
    run_all()
    a.refresh_from_db(), b.refresh_from_db()
    assert a.state == b.state == S.HELD and not wh.sent
    assert "lines.ct-a-L1.storefront_sku" in a.hold_reason
    rec = exc("unknown_sku:uk-web:NEW-1")
    assert (
        rec.status == "open"
        and rec.sku == "NEW-1"
        and set(rec.context["orders"]) == {a.idempotency_key, b.idempotency_key}
    )
    assert rec.context["order_fields"][a.idempotency_key] == "lines.ct-a-L1.storefront_sku"
    assert rec.context["field"] in ("lines.ct-a-L1.storefront_sku", "lines.ct-b-L1.storefront_sku")
    assert actions.revalidate_held(sku="NEW-1") == 0  # still unknown: still held
    SkuMapping.objects.create(item=world.items["SKU-2"], storefront_sku="NEW-1")
    assert actions.revalidate_held(sku="NEW-1") == 2
    rec.refresh_from_db()
    assert rec.status == "resolved"
    run_all()
    assert set(Order.objects.filter(pk__in=[a.pk, b.pk]).values_list("state", flat=True)) == {S.ACKNOWLEDGED}
    assert {wo.order_ref for wo in wh.sent} == {a.idempotency_key, b.idempotency_key}
    assert Reservation.objects.filter(order_ref=b.idempotency_key, item__sku="SKU-2", quantity=2).exists()


def test_bad_fields_hold_with_named_fields_and_edit_resends(world, fakes, make_user):
    from connectors.base import Address

    wh, _ = fakes
    user = make_user("ops")
    o, _ = capture.capture(
        world.channel,
        make_so(
            "ct-x",
            shipping_method="teleport",
            shipping_address=Address(last_name="Doe", street="1 Road", city="Leeds", country="GB"),
        ),
    )
    run_all()
    o.refresh_from_db()
    assert o.state == S.HELD
    rec = exc("bad_payload:ct:order:uk-web-ct-x")
    assert set(rec.context["fields"]) == {"shipping_method", "shipping_address.postal_code"}
    o = actions.update_field_and_resend(o, "shipping_method", "express", actor=user)
    assert o.state == S.HELD and "postal_code" in o.hold_reason
    o = actions.update_field_and_resend(o, "shipping_address.postal_code", "LS1 1AA", actor=user)
    assert o.state == S.ACKNOWLEDGED
    assert wh.sent[-1].shipping_method == "EXP24" and wh.sent[-1].shipping_address.postal_code == "LS1 1AA"
    rec.refresh_from_db()
    assert rec.status == "resolved"
    causes = list(o.transitions.values_list("cause", flat=True))
    assert any("edited shipping_method: 'teleport' → 'express'" in c for c in causes)
    assert o.transitions.filter(actor=user).exists()
    with pytest.raises(actions.OrderActionError):
        actions.update_field_and_resend(o, "gift_message", "too late")


def test_line_sku_edit_remaps_and_rereserves(world, fakes):
    o, _ = capture.capture(world.channel, make_so("ct-s", lines=[("TYPO-1", 1)]))
    run_all()
    o = actions.update_field_and_resend(o, "lines.ct-s-L1.storefront_sku", "BUNDLE-1")
    assert o.state == S.ACKNOWLEDGED
    assert {(ln.item.sku, ln.quantity) for ln in o.lines.all()} == {("BUNDLE-1", 1), ("SKU-1", 2), ("SKU-2", 1)}


def test_warehouse_rejection_holds_with_fields(world, fakes):
    wh, _ = fakes
    o, _ = capture.capture(world.channel, make_so("ct-r"))
    wh.script[o.idempotency_key] = [WairValidationError("bad", fields={"serviceCode": "not configured"})]
    run_all()
    o.refresh_from_db()
    assert o.state == S.HELD and "serviceCode" in o.hold_reason
    assert exc(f"bad_payload:wair:order:{o.idempotency_key}").context["fields"] == {"serviceCode": "not configured"}
    o = actions.retry_send(o)
    assert o.state == S.ACKNOWLEDGED
    assert exc(f"bad_payload:wair:order:{o.idempotency_key}").status == "resolved"


# --- send, ack, timeout ----------------------------------------------------------------------------------
def test_no_ack_within_timeout_raises_stuck_order_and_resends(world, fakes, settings):
    wh, _ = fakes
    o, _ = capture.capture(world.channel, make_so("ct-t"))
    wh.script[o.idempotency_key] = [NotAcknowledged("pending", order_ref=o.idempotency_key)] * 2 + [
        errors.RateLimitedError("429", status=429)
    ]
    run_all()
    o.refresh_from_db()
    assert o.state == S.SENT and o.send_attempts == 1 and o.next_attempt_at > timezone.now()
    assert checks.resend_unacknowledged()["stuck"] == 0  # not late yet
    Order.objects.filter(pk=o.pk).update(
        sent_at=timezone.now() - timedelta(minutes=settings.HUB["ACK_TIMEOUT_MINUTES"] + 1)
    )
    out = checks.resend_unacknowledged()
    assert out["stuck"] == 1 and out["pending"] == 1
    rec = exc(f"stuck_order:{o.idempotency_key}")
    assert rec.status == "open" and rec.order_ref == o.idempotency_key
    checks.resend_unacknowledged()  # 429 this time: still sent, counted on the same record
    assert exc(f"stuck_order:{o.idempotency_key}").count == 2
    assert exc("rate_limited:wair:send_order") is not None
    checks.resend_unacknowledged()
    o.refresh_from_db()
    assert o.state == S.ACKNOWLEDGED and o.send_attempts == 4
    assert exc(f"stuck_order:{o.idempotency_key}").status == "resolved"
    assert exc("rate_limited:wair:send_order").status == "resolved"
    assert len({wo.order_ref for wo in wh.sent}) == 1
    assert o.transitions.filter(from_state=S.SENT, to_state=S.SENT).count() == 3


def test_send_batch_query_count_is_fixed(world, fakes, django_assert_max_num_queries):
    capture.capture_many(world.ct, [make_so(lines=[("SKU-1", 1), ("BUNDLE-1", 1)]) for _ in range(150)])
    with django_assert_max_num_queries(30):
        assert processing.validate_due(limit=200) == 150
    with django_assert_max_num_queries(30):
        r = send.send_due(limit=200)
    assert r.acknowledged == 150


# --- dispatch + notify -----------------------------------------------------------------------------------
def test_storefront_is_told_only_after_dispatch_confirmation(world, fakes):
    wh, sf = fakes
    o, _ = capture.capture(world.channel, make_so("ct-d"))
    run_all()
    o.refresh_from_db()
    assert o.state == S.ACKNOWLEDGED
    run_all()
    assert sf.shipped == []
    with pytest.raises(actions.OrderActionError):
        actions.notify_storefront(o)
    d = Dispatch(
        order_ref=o.idempotency_key,
        warehouse_ref="WO-1",
        dispatched_at=timezone.now(),
        parcels=[Parcel(carrier="dhl", tracking_number="TN1", lines=[("SKU-1", 1)])],
    )
    assert dispatch.record_dispatch(world.wh, d).dispatched == 1
    assert dispatch.record_dispatch(world.wh, d).duplicate == 1  # webhook + poll: same dispatch twice
    run_all()
    o.refresh_from_db()
    assert o.state == S.STOREFRONT_NOTIFIED and o.storefront_version == 2
    assert len(sf.shipped) == 1 and sf.shipped[0][1][0].tracking_number == "TN1"
    assert o.tracking == [{"carrier": "dhl", "tracking_number": "TN1", "tracking_url": "", "lines": [["SKU-1", 1]]}]


def test_dispatch_before_ack_acknowledges_first_and_unknown_refs_are_recorded(world, fakes):
    wh, _ = fakes
    o, _ = capture.capture(world.channel, make_so("ct-e"))
    wh.script[o.idempotency_key] = [NotAcknowledged("pending")]
    run_all()
    o.refresh_from_db()
    assert o.state == S.SENT
    r = dispatch.record_dispatches(
        world.wh,
        [
            Dispatch(
                order_ref=o.idempotency_key, warehouse_ref="WO-9", dispatched_at=None, parcels=[Parcel("ups", "1Z")]
            ),
            Dispatch(order_ref="nope", warehouse_ref="", dispatched_at=None, parcels=[Parcel("ups", "1Y")], ref="D7"),
        ],
    )
    assert (r.dispatched, r.unknown) == (1, 1)
    o.refresh_from_db()
    assert o.state == S.DISPATCHED and o.warehouse_ref == "WO-9"
    path = list(o.transitions.values_list("to_state", flat=True))
    assert path[-2:] == [S.ACKNOWLEDGED, S.DISPATCHED]
    assert not Reservation.objects.filter(order_ref=o.idempotency_key, released_at__isnull=True).exists()
    assert exc("bad_payload:wair:dispatch:D7") is not None


def test_partial_dispatch_keeps_order_acknowledged(world, fakes):
    o, _ = capture.capture(world.channel, make_so("ct-p", lines=[("SKU-1", 2)]))
    run_all()
    dispatch.record_dispatch(
        world.wh,
        Dispatch(
            order_ref=o.idempotency_key,
            warehouse_ref="",
            dispatched_at=None,
            parcels=[Parcel("dhl", "P1", lines=[("SKU-1", 1)])],
            complete=False,
        ),
    )
    o.refresh_from_db()
    assert o.state == S.ACKNOWLEDGED and len(o.tracking) == 1


def test_missing_dispatch_notification_is_raised_and_retried(world, fakes, settings):
    _, sf = fakes
    o, _ = capture.capture(world.channel, make_so("ct-m"))
    run_all()
    sf.fail = [errors.ConflictError("409"), errors.TimeoutError_("slow")]
    dispatch.record_dispatch(
        world.wh,
        Dispatch(
            order_ref=o.idempotency_key, warehouse_ref="", dispatched_at=timezone.now(), parcels=[Parcel("dhl", "M1")]
        ),
    )
    run_all()
    o.refresh_from_db()
    assert o.state == S.DISPATCHED and o.last_error
    Order.objects.filter(pk=o.pk).update(
        dispatch_received_at=timezone.now() - timedelta(minutes=settings.HUB["DISPATCH_NOTIFY_MINUTES"] + 1)
    )
    out = checks.find_missing_dispatches()
    assert out["late"] == 1
    rec = exc(f"missing_dispatch:{o.idempotency_key}")
    assert rec.status == "open"
    checks.find_missing_dispatches()
    o.refresh_from_db()
    assert o.state == S.STOREFRONT_NOTIFIED
    rec.refresh_from_db()
    assert rec.status == "resolved"


# --- cancel, orphans, fulfilments ------------------------------------------------------------------------
def test_cancel_releases_reservations_and_refuses_orders_at_the_warehouse(world, fakes):
    a, _ = capture.capture(world.channel, make_so("ct-c1", lines=[("UNKNOWN", 1), ("SKU-1", 3)]))
    run_all()
    a.refresh_from_db()
    assert a.state == S.HELD
    with pytest.raises(actions.OrderActionError):
        actions.cancel(a, "")
    actions.cancel(a, "customer changed their mind")
    assert a.state == S.CANCELLED
    assert Reservation.objects.get(order_ref=a.idempotency_key).release_reason == "cancelled"
    # the warehouse has it: the hub asks the warehouse, and cancels on its confirmation
    wh, _ = fakes
    b, _ = capture.capture(world.channel, make_so("ct-c2"))
    run_all()
    b = actions.cancel(b, "customer called")
    assert b.state == S.CANCELLED and wh.cancelled == [b.idempotency_key]
    assert Reservation.objects.get(order_ref=b.idempotency_key).release_reason == "cancelled"
    assert "confirmed by wair" in b.transitions.last().cause
    # the warehouse refuses (already picked): the order stays, an exception names the refusal, no retry loop
    c, _ = capture.capture(world.channel, make_so("ct-c3"))
    run_all()
    wh.script[f"C:{c.idempotency_key}"] = [errors.PermanentError("ALREADY_PICKED: packed")]
    c = actions.cancel(c, "too late")
    assert c.state == S.ACKNOWLEDGED and c.cancel_requested_at is None and "ALREADY_PICKED" in c.last_error
    rec = exc(f"bad_payload:wair:order-cancel:{c.idempotency_key}")
    assert rec.status == "open" and "ALREADY_PICKED" in rec.message
    assert Reservation.objects.filter(order_ref=c.idempotency_key, released_at__isnull=True).exists()
    assert processing.process_due()["cancel_refused"] == 0 and wh.cancelled.count(c.idempotency_key) == 1
    # a dispatched order cannot be cancelled at all
    d, _ = capture.capture(world.channel, make_so("ct-c4"))
    run_all()
    dispatch.record_dispatch(
        world.wh,
        Dispatch(order_ref=d.idempotency_key, warehouse_ref="", dispatched_at=None, parcels=[Parcel("dhl", "D4")]),
    )
    with pytest.raises(actions.OrderActionError):
        actions.cancel(d, "too late")


def test_orphans_found_on_both_sides(world, fakes):
    wh, sf = fakes
    # hub has it, warehouse never got it (e.g. lost before the hub recorded the send)
    o, _ = capture.capture(world.channel, make_so("ct-o"))
    processing.validate_due()
    Order.objects.filter(pk=o.pk).update(
        created_at=timezone.now() - timedelta(hours=2), next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    sf.orders = []
    out = checks.find_orphans(grace_minutes=30)
    assert out["warehouse_missing"] == 1
    assert exc("orphaned_order:uk-web:ct-o").status == "open"
    run_all()  # made due again → sent → acknowledged, which clears the orphan record
    o.refresh_from_db()
    assert o.state == S.ACKNOWLEDGED and exc("orphaned_order:uk-web:ct-o").status == "resolved"
    # storefront has it, hub never captured it
    so = make_so("ct-lost")
    so.placed_at = timezone.now() - timedelta(hours=1)
    sf.orders = [so]
    out = checks.find_orphans(grace_minutes=30)
    assert out["storefront_missing"] == 1
    assert Order.objects.filter(external_id="ct-lost").exists()


def test_storefront_fulfilment_retried_until_acknowledged(world, fakes):
    wh, _ = fakes
    o, _ = capture.capture(world.channel, make_so("ct-f"))
    f, created = actions.record_storefront_fulfilment(o, "SF-1", [("SKU-1", 1)], location="STORE-7")
    assert created and not actions.record_storefront_fulfilment(o, "SF-1", [("SKU-1", 1)])[1]
    wh.script["F:SF-1"] = [errors.RetryableError("503")]
    assert fulfilments.send_fulfilments() == {"acknowledged": 0, "retrying": 1}
    f.refresh_from_db()
    assert f.ack_id == "" and f.last_error and f.next_attempt_at > timezone.now()
    type(f).objects.filter(pk=f.pk).update(next_attempt_at=None)
    assert fulfilments.send_fulfilments()["acknowledged"] == 1
    f.refresh_from_db()
    assert f.ack_id == "FA-2" and f.acknowledged_at and f.attempts == 2
    assert fulfilments.send_fulfilments() == {"acknowledged": 0, "retrying": 0}


def test_storefront_cancellation_cancels_before_send_and_flags_after(world, fakes):
    a = make_so("ct-k1", lines=[("NOPE", 1)])
    b = make_so("ct-k2")
    capture.capture_many(world.ct, [a, b])
    run_all()
    a.status = b.status = "Cancelled"
    capture.capture_many(world.ct, [a, b])
    oa, ob = Order.objects.get(external_id="ct-k1"), Order.objects.get(external_id="ct-k2")
    # before the warehouse has it: cancelled at once; after: a warehouse cancel is requested, not sent again
    assert oa.state == S.CANCELLED and ob.state == S.ACKNOWLEDGED and ob.cancel_requested_at is not None
    assert ob.cancel_reason == "cancelled in ct"
    out = processing.process_due()
    ob.refresh_from_db()
    assert out["cancel_cancelled"] == 1 and ob.state == S.CANCELLED
    assert Reservation.objects.get(order_ref=ob.idempotency_key).release_reason == "cancelled"


def test_dedupe_survives_a_renamed_channel_key(world):
    so = make_so("ct-rename")
    o, _ = capture.capture(world.channel, so)
    world.channel.key = "uk-web-new"
    world.channel.save()
    o2, created = capture.capture(world.channel, so)
    assert not created and o2.pk == o.pk and o2.idempotency_key == o.idempotency_key
    assert capture.capture_many(world.ct, [so]).existing == 1


def test_disabled_warehouse_is_not_called_and_a_failing_phase_does_not_block_others(world, fakes, monkeypatch):
    wh, _ = fakes
    world.wh.enabled = False
    world.wh.save()
    o, _ = capture.capture(world.channel, make_so("ct-off"))
    run_all()
    o.refresh_from_db()
    assert o.state == S.VALIDATED and wh.sent == []
    world.wh.enabled = True
    world.wh.save()

    def broken(*a, **k):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(processing, "validate_due", broken)
    capture.capture(world.channel, make_so("ct-later"))
    out = processing.process_due()
    assert out["validated"] == 0 and out["send_acknowledged"] == 1  # sending went on without validation
    o.refresh_from_db()
    assert o.state == S.ACKNOWLEDGED


def test_dispatch_record_queries_do_not_grow_with_batch(world, fakes):
    """Recording dispatches writes tracking and times per row in one executemany per 500 orders and the
    shipped quantities by value: the same number of queries for 5 orders as for 120, and every row written."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    orders = capture.capture_many(world.ct, [make_so(lines=[("SKU-1", 2), ("SKU-2", 1)]) for _ in range(125)]).created
    run_all()
    when = timezone.now() - timedelta(minutes=5)

    def dispatches(batch):
        return [
            Dispatch(
                order_ref=o.idempotency_key,
                warehouse_ref=f"WO-{o.pk}",
                dispatched_at=when,
                parcels=[Parcel(carrier="dhl", tracking_number=f"T{o.pk}", lines=[("SKU-1", 2), ("SKU-2", 1)])],
            )
            for o in batch
        ]

    with CaptureQueriesContext(connection) as q_small:
        assert dispatch.record_dispatches(world.wh, dispatches(orders[:5])).dispatched == 5
    with CaptureQueriesContext(connection) as q_big:
        assert dispatch.record_dispatches(world.wh, dispatches(orders[5:])).dispatched == 120
    assert len(q_big) == len(q_small), [q["sql"][:80] for q in q_big.captured_queries]
    for o in Order.objects.filter(pk__in=[o.pk for o in orders]):
        assert o.state == S.DISPATCHED and o.dispatched_at == when and o.dispatch_received_at > when
        assert o.tracking == [
            {"carrier": "dhl", "tracking_number": f"T{o.pk}", "tracking_url": "", "lines": [["SKU-1", 2], ["SKU-2", 1]]}
        ]
    shipped = set(OrderLine.objects.filter(order__in=orders).values_list("storefront_sku", "shipped_quantity"))
    assert shipped == {("SKU-1", 2), ("SKU-2", 1)}
