"""Clarus WMS connector against the Clarus emulator, over real HTTP."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import requests

from connectors import errors
from connectors.base import Address, WarehouseOrder, WarehouseOrderLine
from connectors.clarus import ClarusConnector
from connectors.registry import get_connector


def control(sandbox, action, payload=None):
    r = requests.post(f"{sandbox.url}/_sandbox/clarus/{action}", json=payload or {}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def cl_conn(db, sandbox):
    from integration_hub.core.models import Connection

    conn = Connection(name="clarus-test", system_type="clarus", base_url=f"{sandbox.url}/clarus",
                      options={"page_size": 3}, rate_limit_per_second=1000, rate_limit_burst=1000, timeout_seconds=5, max_retries=4)
    conn.set_secret("clarus-demo-key")
    conn.save()
    return conn


@pytest.fixture
def cl(cl_conn):
    c = ClarusConnector(cl_conn)
    c.client.backoff_base = 0.01
    return c


def order(ref="ORD-1", **kw) -> WarehouseOrder:
    return WarehouseOrder(
        order_ref=ref, order_number="1001", channel="uk-web",
        lines=[WarehouseOrderLine("1", "SKU-A", 2), WarehouseOrderLine("2", "BUNDLE-1", 1),
               WarehouseOrderLine("2.1", "SKU-B", 1, parent_line_id="2")],
        shipping_address=Address(first_name="Ann", last_name="Lee", street="1 High St", postal_code="SW1A 1AA", city="London",
                                 country="GB"),
        shipping_method="DPD-NEXT", carrier="DPD", gift_message="For you", delivery_notes="Side door",
        custom_fields={"vip": True}, placed_at=datetime(2026, 11, 1, tzinfo=timezone.utc), **kw)


def test_registry_builds_clarus(cl_conn):
    assert isinstance(get_connector(cl_conn, fresh=True), ClarusConnector)


def test_send_order_is_idempotent_on_ref(cl, sandbox):
    ack = cl.send_order(order())
    assert ack.warehouse_ref.startswith("PI-") and not ack.duplicate
    again = cl.send_order(order())
    assert again.duplicate and again.warehouse_ref == ack.warehouse_ref
    state = control(sandbox, "state")
    assert len(state["orders"]) == 1 and state["order_receipts"]["ORD-1"] == 2
    req = state["orders"]["ORD-1"]["request"]
    assert req["gift_message"] == "For you" and req["delivery_instructions"] == "Side door" and req["attributes"] == {"vip": True}
    assert req["lines"][2]["parent_line_no"] == "2" and req["ship_to"]["name"] == "Ann Lee"
    assert cl.order_status("ORD-1") == "RECEIVED" and cl.order_status("NOPE") is None


def test_send_order_validation_error_names_fields(cl):
    bad = order("ORD-2")
    bad.shipping_address = Address()
    with pytest.raises(errors.BadDataError) as exc:
        cl.send_order(bad)
    assert "ship_to.postcode" in str(exc.value)


def test_send_order_retries_5xx(cl, sandbox):
    requests.post(f"{sandbox.url}/_sandbox/clarus/faults", json={"fail_next": [503, 429]}, timeout=5)
    assert not cl.send_order(order("ORD-3")).duplicate
    assert cl.client.stats.retries == 2


def test_dispatch_is_confirmed_only_when_manifest_closes(cl, sandbox):
    cl.send_order(order())
    opened = control(sandbox, "dispatch", {"order_ref": "ORD-1", "close_manifest": False,
                                           "parcels": [{"carrier": "DPD", "tracking_number": "DPD123"}]})
    page = cl.dispatches_since("")
    assert list(page.items) == [] and page.cursor in ("", "0")
    control(sandbox, "close_manifest", {"manifest_id": opened["manifest_id"]})
    page = cl.dispatches_since(page.cursor)
    assert len(page.items) == 1 and not page.items.rejected
    d = page.items[0]
    assert d.order_ref == "ORD-1" and d.warehouse_ref.startswith("PI-") and d.complete
    # the kit header line is paperwork: only the goods are picked and shipped
    assert d.parcels[0].tracking_number == "DPD123" and sorted(d.parcels[0].lines) == [("SKU-A", 2), ("SKU-B", 1)]
    assert d.dispatched_at is not None
    assert cl.dispatches_since(page.cursor).items == []
    assert cl.order_status("ORD-1") == "DISPATCHED"


def test_dispatch_webhook_parsing_and_rejects(cl):
    batch = cl.parse_dispatch_webhook({"event": "manifest.closed", "dispatches": [
        {"client_reference": "A", "dispatch_id": "DS1", "manifest_closed_at": "2026-11-01T10:00:00Z", "complete": False,
         "parcels": [{"carrier": "DPD", "tracking_number": "T1", "lines": [{"sku": "X", "quantity": 1}]}]},
        {"client_reference": "B", "dispatch_id": "DS2", "parcels": [{"tracking_number": "T2"}]},  # open manifest
        {"dispatch_id": "DS3"}]})
    assert [d.order_ref for d in batch] == ["A"] and not batch[0].complete
    assert [(r.ref, r.field) for r in batch.rejected] == [("DS2", "manifest_closed_at"), ("DS3", "client_reference")]
    with pytest.raises(errors.BadDataError):
        cl.parse_dispatch_webhook({"event": "stock.moved", "dispatches": []})


def test_stock_feed_by_location_and_state(cl, sandbox):
    control(sandbox, "seed_locations", {"locations": [{"id": "DC1", "name": "Main DC"}]})
    control(sandbox, "set_stock", {"rows": [
        {"sku": "SKU-A", "location": "DC1", "state": "available", "quantity": 10},
        {"sku": "SKU-A", "location": "DC1", "state": "inspection", "quantity": 2},
        {"sku": "SKU-A", "location": "DC1", "state": "damaged", "quantity": 1},
        {"sku": "SKU-B", "location": "DC1", "state": "in_transit", "quantity": 5},
        {"sku": "SKU-B", "location": "DC1", "state": "available", "quantity": 0}]})
    first = cl.stock_changes("")
    assert first.has_more and len(first.items) == 3 and first.cursor == "3"
    rest = cl.stock_changes(first.cursor)
    assert not rest.has_more and rest.cursor == "5"
    got = [(c.sku, c.location, c.state, c.quantity) for c in first.items + rest.items]
    assert got == [("SKU-A", "DC1", "available", 10), ("SKU-A", "DC1", "inspection", 2), ("SKU-A", "DC1", "damaged", 1),
                   ("SKU-B", "DC1", "in_transit", 5), ("SKU-B", "DC1", "available", 0)]
    assert all(c.changed_at is not None and c.ref for c in got and first.items)
    assert cl.stock_changes(rest.cursor).items == []
    snap = sorted((c.sku, c.state, c.quantity) for c in cl.stock_snapshot())
    assert len(snap) == 5 and ("SKU-A", "inspection", 2) in snap
    assert sorted(c.state for c in cl.stock_snapshot(["SKU-B"])) == ["available", "in_transit"]


def test_stock_webhook_carries_bad_rows_raw(cl):
    changes = cl.parse_stock_webhook({"event": "stock.moved", "movements": [
        {"sku": "A", "location": "DC1", "state": "AVAILABLE", "quantity": 4, "occurred_at": "2026-11-01T10:00:00Z", "movement_id": "M1"},
        {"sku": "B", "location": "DC1", "state": "ON_FIRE", "quantity": "lots"}]})
    assert (changes[0].state, changes[0].quantity, changes[0].ref) == ("available", 4, "M1")
    assert (changes[1].state, changes[1].quantity) == ("ON_FIRE", "lots")  # the hub's validator rejects this row


def test_wrong_key_is_permanent(cl_conn):
    cl_conn.set_secret("nope")
    with pytest.raises(errors.PermanentError):
        ClarusConnector(cl_conn).stock_changes("")


def test_send_fulfilment_idempotent(cl, sandbox):
    from connectors.base import Fulfilment

    cl.send_order(order())
    f = Fulfilment(order_ref="ORD-1", fulfilment_ref="store-9", lines=[("SKU-A", 2)], location="STORE9")
    fid = cl.send_fulfilment(f)
    assert fid.startswith("EF-") and cl.send_fulfilment(f) == fid
    state = control(sandbox, "state")
    assert len(state["fulfilments"]) == 1 and state["orders"]["ORD-1"]["dispatched"] == {"SKU-A": 2}
    with pytest.raises(errors.NotFoundError):
        cl.send_fulfilment(Fulfilment(order_ref="NOPE", fulfilment_ref="x", lines=[("SKU-A", 1)]))


def test_intake_allocates_picked_lines_on_the_feed_and_cancel_returns_them(cl, sandbox):
    control(sandbox, "seed_locations", {"locations": [{"id": "DC1"}, {"id": "DC2"}]})
    control(sandbox, "set_stock", {"rows": [{"sku": "SKU-A", "location": "DC1", "quantity": 1},
                                            {"sku": "SKU-A", "location": "DC2", "quantity": 5},
                                            {"sku": "SKU-B", "location": "DC1", "quantity": 3},
                                            {"sku": "BUNDLE-1", "location": "DC1", "quantity": 9}]})
    cursor = _drain(cl, "")[1]
    ack = cl.send_order(order())
    assert ack.received_at is not None
    assert cl.send_order(order()).received_at == ack.received_at  # a replay names the original intake time
    moved = _Page(*_drain(cl, cursor))
    assert {(c.sku, c.location, c.quantity) for c in moved.items} == {("SKU-A", "DC2", 3), ("SKU-B", "DC1", 2)}
    assert all(c.changed_at >= ack.received_at for c in moved.items)  # what releases the hub's reservation
    assert cl.dispatches_for("ORD-1") == []
    assert cl.cancel_order("ORD-1") == "CANCELLED" and cl.cancel_order("ORD-1") == "CANCELLED"
    back = _Page(*_drain(cl, moved.cursor))
    assert {(c.sku, c.location, c.quantity) for c in back.items} == {("SKU-A", "DC2", 5), ("SKU-B", "DC1", 3)}
    with pytest.raises(errors.NotFoundError):
        cl.cancel_order("NOPE")


def test_pickable_false_is_never_allocated_and_cancel_refused_once_packed(cl, sandbox):
    control(sandbox, "set_stock", {"rows": [{"sku": "KIT-X", "location": "DC1", "quantity": 4}]})
    wo = order("ORD-K")
    wo.lines = [WarehouseOrderLine("1", "KIT-X", 1, pickable=False), WarehouseOrderLine("2", "SKU-A", 1)]
    cl.send_order(wo)
    assert control(sandbox, "state")["stock"]["KIT-X@DC1:AVAILABLE"] == 4
    control(sandbox, "dispatch", {"order_ref": "ORD-K", "parcels": [{"carrier": "DPD", "tracking_number": "K1"}]})
    with pytest.raises(errors.PermanentError):
        cl.cancel_order("ORD-K")
    (d,) = cl.dispatches_for("ORD-K")
    assert d.parcels[0].lines == [("SKU-A", 1)] and d.parcels[0].tracking_number == "K1"


class _Page:
    def __init__(self, items, cursor):
        self.items, self.cursor = items, cursor


def _drain(conn, cursor):
    """Every change after ``cursor`` (all pages) → (changes, the cursor at the end)."""
    items = []
    while True:
        page = conn.stock_changes(cursor)
        items += page.items
        cursor = page.cursor
        if not page.has_more:
            return items, cursor
