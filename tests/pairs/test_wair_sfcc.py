"""Pair: WAIR for Retail (inventory master + warehouse) ↔ Salesforce Commerce Cloud (storefront), on both SFCC API
families: ``ocapi`` (OCAPI Shop/Data API, inventory lists) and ``scapi_oci`` (B2C Commerce API Admin Orders,
Omnichannel Inventory — the site reserves its own orders, the hub sends on hand)."""

import pytest

from . import flows


@pytest.fixture(params=["ocapi", "scapi_oci"])
def family(request):
    return request.param


@pytest.fixture
def pair(pair, family):
    pair.family = family
    return pair


def setup(pair):
    sf, wh = pair.connection("sfcc"), pair.connection("wair")
    if pair.family == "scapi_oci":
        sf.options = {
            **sf.options,
            "api_family": "scapi_oci",
            "organization_id": "f_ecom_hubt_001",
            "oci_tenant_group_id": "tg-hubt",
        }
        sf.save()
        pair.control("sfcc", "configure_site", {"inventory": "oci", "tenant_group_id": "tg-hubt"})
    pair.topology(sf, wh, list_id="inv_web")
    return sf, wh


def test_stock_push(pair):
    sf, wh = setup(pair)
    flows.stock_push(pair, sf, wh, "inv_web")


def test_order_out_and_dispatch_back(pair):
    sf, wh = setup(pair)
    order = flows.order_out(pair, sf, wh, "inv_web")
    assert flows.storefront_order(pair, sf, order)["shipment_state"] == "not_shipped"
    flows.dispatch_back(pair, sf, wh, order, "shipped")


def test_stock_stays_held_from_capture_to_dispatch(pair):
    sf, wh = setup(pair)
    flows.stock_held_until_dispatch(pair, sf, wh, "inv_web")


def _fulfilment_world(pair):
    """The pair with a store (a WAIR location) that ships SFCC orders itself, and one order at WAIR."""
    sf, wh = setup(pair)
    order = flows.order_out(pair, sf, wh, "inv_web")  # captured, sent, acknowledged (WAIR allocated it at DC1)
    pair.control("wair", "seed_locations", {"locations": [{"id": "STORE1", "name": "High Street store"}]})
    pair.control(
        "wair",
        "seed_stock",
        {"rows": [{"sku": s, "location": "STORE1", "state": "available", "quantity": 10} for s in ("A", "B")]},
    )
    return sf, wh, order


def test_store_shipped_order_reaches_wair_once_and_is_resent_until_acknowledged(pair):
    from integration_hub.orders import fulfilments
    from integration_hub.orders.models import StorefrontFulfilment

    sf, wh, order = _fulfilment_world(pair)
    pair.control("wair", "set_auto_ack", {"fulfilments": False})  # WAIR takes fulfilments but holds them pending
    pair.control(
        "sfcc",
        "store_ship",
        {"order_no": order.external_id, "tracking": "STORE-TRK-1", "carrier": "Royal Mail", "store": "STORE1"},
    )
    pair.orders_out(sf)
    pair.orders_out(sf)  # the next poll: nothing new, still one row
    f = StorefrontFulfilment.objects.get()
    assert (f.order_id, f.fulfilment_ref, f.location, f.warehouse_id) == (
        order.pk,
        f"{order.external_id}/me",
        "STORE1",
        wh.pk,
    )
    assert f.lines == [["A", 2], ["B", 2]]  # SF-A 1 + the kit's A 1 and B 2, in master SKUs
    # WAIR unavailable: nothing reaches it, the row waits for the next round
    pair.control("wair", "faults", {"fail_next": [503, 503, 503]})
    assert fulfilments.send_fulfilments() == {"acknowledged": 0, "retrying": 1}
    assert pair.control("wair", "state")["fulfilments"] == []
    # received but not acknowledged (202 pending): sent again, every round, until WAIR acknowledges
    for _ in range(2):
        StorefrontFulfilment.objects.update(next_attempt_at=None)
        assert fulfilments.send_fulfilments() == {"acknowledged": 0, "retrying": 1}
    f.refresh_from_db()
    assert f.ack_id == "" and "not acknowledged" in f.last_error
    pair.control("wair", "acknowledge", {"order_refs": [order.idempotency_key]})
    StorefrontFulfilment.objects.update(next_attempt_at=None)
    assert fulfilments.send_fulfilments() == {"acknowledged": 1, "retrying": 0}
    StorefrontFulfilment.objects.update(next_attempt_at=None)
    assert fulfilments.send_fulfilments() == {"acknowledged": 0, "retrying": 0}  # acknowledged: never sent again
    pair.orders_out(sf)
    assert StorefrontFulfilment.objects.count() == 1
    f.refresh_from_db()
    assert f.ack_id.startswith("FF-") and f.attempts == 4 and f.last_error == ""
    state = pair.control("wair", "state", {"skus": ["A", "B"]})
    [got] = state["fulfilments"]  # exactly once at WAIR, however often it was sent
    assert (
        got["orderRef"] == order.idempotency_key
        and got["fulfilmentRef"] == f.fulfilment_ref
        and got["locationId"] == "STORE1"
    )
    assert sorted((ln["skuId"], ln["quantity"]) for ln in got["lines"]) == [("A", 2), ("B", 2)]
    assert (state["stock"]["A"]["STORE1"]["available"], state["stock"]["B"]["STORE1"]["available"]) == (8, 8)


def test_the_hubs_own_shipped_update_is_not_a_store_fulfilment(pair):
    from exceptions_app.models import ExceptionRecord
    from integration_hub.orders.models import StorefrontFulfilment

    sf, wh = setup(pair)
    order = flows.order_out(pair, sf, wh, "inv_web")
    flows.dispatch_back(pair, sf, wh, order, "shipped")  # WAIR dispatch → SFCC shipped by the hub
    assert flows.storefront_order(pair, sf, order)["hub_marker"].startswith("hub-")
    polled, _ = pair.orders_out(sf)  # the hub's PATCH bumped last_modified: the order is polled again
    assert polled["created"] == 0
    assert not StorefrontFulfilment.objects.exists()
    assert not ExceptionRecord.objects.filter(dedupe_key__contains="fulfilments").exists()
    assert pair.control("wair", "state")["fulfilments"] == []


def test_unreadable_store_shipment_is_an_exception_until_it_reads(pair):
    from connectors.registry import get_connector
    from exceptions_app.models import ExceptionRecord
    from integration_hub.orders.models import StorefrontFulfilment

    sf, wh, order = _fulfilment_world(pair)
    get_connector(sf, fresh=True).set_order_status(order.external_id, "shipping_status", "part_shipped")
    pair.orders_out(sf)
    rec = ExceptionRecord.objects.get(dedupe_key=f"bad_payload:{sf.name}:fulfilments:{order.idempotency_key}")
    assert rec.status in ("open", "acknowledged") and "shipping_status" in rec.message and "which lines" in rec.message
    assert rec.context["rejected"][0]["field"] == "shipping_status"
    assert not StorefrontFulfilment.objects.exists()
    # the store records which lines left: it reads, the fulfilment is recorded and the exception resolves
    made = pair.control(
        "sfcc",
        "store_ship",
        {"order_no": order.external_id, "tracking": "S-1", "store": "STORE1", "lines": [["SF-A", 1]]},
    )
    pair.orders_out(sf)
    rec.refresh_from_db()
    assert rec.status == "resolved"
    f = StorefrontFulfilment.objects.get()
    assert f.fulfilment_ref == f"{order.external_id}/{made['shipment_id']}" and f.lines == [["A", 1]]


def test_an_order_placed_while_a_push_is_in_flight_is_not_oversold(pair, monkeypatch):
    """The push computes SF-A = 7; a shopper buys 2 on the site before the write lands. The write resets SFCC's
    turnover at the instant the figure was computed, so the site sells 5, not 7 (on OCAPI: PATCH allocation with
    reset_date = the snapshot); once the hub captures the order its next figure (5) holds as well."""
    from integration_hub.inventory import ats

    sf, wh = setup(pair)
    pair.control("wair", "set_stock", {"rows": flows.STOCK_ROWS})
    real = ats.for_pairs
    placed = []

    def computed_then_ordered(*args, **kwargs):
        figures = real(*args, **kwargs)
        if not placed:
            placed.append(
                pair.control(
                    "sfcc",
                    "create_orders",
                    {"orders": [{"channel": "inv_web", "lines": [{"sku": "SF-A", "quantity": 2}]}]},
                )["ids"][0]
            )
        return figures

    monkeypatch.setattr(ats, "for_pairs", computed_then_ordered)
    pair.stock_sync(wh)
    assert placed and flows.storefront_inventory(pair, sf, "inv_web")["SF-A"] == 5
    monkeypatch.setattr(ats, "for_pairs", real)
    pair.orders_out(sf)  # captured: the hub reserves 2
    pair.push()
    assert flows.storefront_inventory(pair, sf, "inv_web")["SF-A"] == 5


def test_only_placed_orders_released_for_export_are_captured(pair):
    """``created`` (not placed yet), ``failed`` (inventory released) and ``not_exported`` (not released for
    export) orders never reach WAIR; once the site places / releases one, the next poll captures it."""
    from integration_hub.orders.models import Order

    sf, _ = setup(pair)
    created = flows.place_order(pair, sf, "inv_web", status="created")
    failed = flows.place_order(pair, sf, "inv_web", status="failed")
    held_back = flows.place_order(pair, sf, "inv_web", export_status="not_exported")
    polled, _ = pair.orders_out(sf)
    assert polled["created"] == 0 and not Order.objects.exists()
    assert pair.control("wair", "state")["order_receipts"] == {}
    pair.control("sfcc", "set_order", {"order_no": created, "status": "new"})  # payment authorised: placed
    pair.control("sfcc", "set_order", {"order_no": held_back, "export_status": "ready"})
    polled, _ = pair.orders_out(sf)
    assert polled["created"] == 2
    assert set(Order.objects.values_list("external_id", flat=True)) == {created, held_back}
    assert not Order.objects.filter(external_id=failed).exists()


def test_acknowledged_orders_are_marked_exported_and_given_up_ones_failed(pair):
    from integration_hub.orders.models import Order

    sf, wh = setup(pair)
    order = flows.order_out(pair, sf, wh, "inv_web")  # captured, sent, acknowledged by WAIR
    assert flows.storefront_order(pair, sf, order)["export_status"] == "exported"
    pair.control("wair", "faults", {"fail_next": [403, 403, 403]})  # WAIR refuses the next order outright
    refused = flows.place_order(pair, sf, "inv_web")
    pair.orders_out(sf)
    assert Order.objects.get(external_id=refused).state == "failed"
    assert pair.control("sfcc", "state")["orders"][refused]["export_status"] == "failed"


def test_a_lost_export_mark_is_repaired_when_the_order_is_read_again(pair):
    """SFCC is down when WAIR acknowledges: the export mark is lost (a warning record says so); the hub's own
    shipped update later bumps the order, the poll reads it still ``ready`` and marks it exported."""
    from exceptions_app.models import ExceptionRecord
    from integration_hub.orders import polls, processing
    from integration_hub.orders.models import Order

    sf, wh = setup(pair)
    no = flows.place_order(pair, sf, "inv_web")
    polls.poll_orders(sf)
    pair.control("sfcc", "faults", {"fail_next": [503, 503, 503]})
    processing.process_due()
    order = Order.objects.get(external_id=no)
    assert order.state == "acknowledged" and flows.storefront_order(pair, sf, order)["export_status"] == "ready"
    rec = ExceptionRecord.objects.get(dedupe_key=f"sync_timeout:{sf.name}:mark_exported")
    assert rec.status == "open"
    flows.dispatch_back(pair, sf, wh, order, "shipped")  # the hub's shipped update bumps last_modified
    pair.orders_out(sf)
    assert flows.storefront_order(pair, sf, order)["export_status"] == "exported"
    rec.refresh_from_db()
    assert rec.status == "resolved"
