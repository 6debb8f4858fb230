"""The three flows every pair runs (stock push, order out, dispatch back), written once and driven through
the control contract every emulator implements, so each pair test reads as its system-specific bits."""

from __future__ import annotations

STOCK_ROWS = [
    {"sku": "A", "location": "DC1", "state": "available", "quantity": 7},
    {"sku": "B", "location": "DC1", "state": "available", "quantity": 4},
    {"sku": "B", "location": "DC1", "state": "damaged", "quantity": 3},  # never sellable
    {"sku": "C", "location": "DC1", "state": "inspection", "quantity": 5},  # quarantined: not sellable
    {"sku": "C", "location": "DC1", "state": "available", "quantity": 2},
]


def storefront_inventory(pair, storefront, list_id):
    return pair.control(storefront.system_type, "state", {})["inventory"].get(list_id, {})


def stock_push(pair, storefront, master, list_id):
    """Master change → storefront quantity: only available stock, absolute, and a second change wins."""
    pair.control(master.system_type, "set_stock", {"rows": STOCK_ROWS})
    polled, pushed = pair.stock_sync(master)
    assert polled.changes == len(STOCK_ROWS) and pushed.failed == 0, (polled, pushed)
    inv = storefront_inventory(pair, storefront, list_id)
    assert (inv["SF-A"], inv["SF-B"], inv["SF-C"]) == (7, 4, 2), inv
    assert inv["SF-KIT"] == 2, inv  # bundle ATS: min(A 7, B 4 // 2)
    pair.control(
        master.system_type,
        "set_stock",
        {"rows": [{"sku": "A", "location": "DC1", "state": "available", "quantity": 1}]},
    )
    pair.stock_sync(master)
    inv = storefront_inventory(pair, storefront, list_id)
    assert (inv["SF-A"], inv["SF-KIT"]) == (1, 1), inv
    _, again = pair.stock_sync(master)
    assert again.pushed == 0  # nothing changed: nothing re-sent


def place_order(pair, storefront, list_id, **extra):
    spec = {
        "channel": list_id,
        "lines": [{"sku": "SF-A", "quantity": 1}, {"sku": "SF-KIT", "quantity": 1}],
        "shipping_method": "standard",
        "gift_message": "Happy birthday",
        "delivery_notes": "Leave at the side door",
        "email": "ann@example.com",
        **extra,
    }
    return pair.control(storefront.system_type, "create_orders", {"orders": [spec]})["ids"][0]


def order_out(pair, storefront, master, list_id):
    """Storefront order → warehouse receipt (every field, bundle exploded) → acknowledged; re-polls and
    re-sends never create a second warehouse order. Returns the hub Order."""
    from integration_hub.orders.models import Order

    external_id = place_order(pair, storefront, list_id)
    polled, processed = pair.orders_out(storefront)
    assert polled["created"] == 1, polled
    order = Order.objects.get(external_id=external_id)
    assert order.state == "acknowledged", (order.state, order.hold_reason, processed)
    assert order.warehouse_id == master.pk and order.warehouse_ref
    state = pair.control(master.system_type, "state", {})
    assert state["order_receipts"][order.idempotency_key] == 1
    body = str(state["orders"][order.idempotency_key]).lower()
    assert "happy birthday" in body and "side door" in body and "std48" in body
    for sku in ("'a'", "'kit'", "'b'"):  # the bundle goes with its components
        assert sku in body, body
    pair.orders_out(storefront)  # catch-up poll again: nothing new, nothing re-sent
    assert pair.control(master.system_type, "state", {})["order_receipts"][order.idempotency_key] == 1
    return order


def storefront_order(pair, storefront, order):
    return pair.control(storefront.system_type, "state", {})["orders"][order.external_id]


def dispatch_back(pair, storefront, master, order, shipped_state, **dispatch_extra):
    """Warehouse confirmation → order dispatched → storefront shipped with the tracking number."""
    pair.control(
        master.system_type,
        "dispatch",
        {
            "order_ref": order.idempotency_key,
            "parcels": [{"carrier": "DPD", "tracking_number": "TRK-0001"}],
            **dispatch_extra,
        },
    )
    polled, processed = pair.dispatch_back(master)
    order.refresh_from_db()
    assert order.state == "storefront_notified", (order.state, polled, processed)
    assert [t["tracking_number"] for t in order.tracking] == ["TRK-0001"]
    sf = storefront_order(pair, storefront, order)
    assert sf["shipment_state"] == shipped_state and "TRK-0001" in sf["tracking"], sf


def stock_held_until_dispatch(pair, storefront, master, list_id):
    """The oversell window: an order's units stay off the storefront from capture through acknowledgement
    (the master has not reported its allocation yet) and once the master's feed carries them, until and
    after dispatch — the storefront ATS never bounces back up. The master allocates on intake, only the
    picked lines (A 1 + the kit's A 1, B 2 — never the KIT header line), and ships only those."""
    from integration_hub.inventory.models import Reservation

    pair.control(master.system_type, "set_stock", {"rows": STOCK_ROWS})
    pair.stock_sync(master)
    inv = storefront_inventory(pair, storefront, list_id)
    assert (inv["SF-A"], inv["SF-B"], inv["SF-KIT"]) == (7, 4, 2), inv
    order = order_out(pair, storefront, master, list_id)  # captured, sent, acknowledged
    seen = []
    pair.push()  # the hub's own view, before the master's feed says anything
    seen.append(storefront_inventory(pair, storefront, list_id))
    assert Reservation.objects.filter(order_ref=order.idempotency_key, released_at__isnull=True).count() == 2
    pair.stock_sync(master)  # the master's allocation arrives: it carries the order, the hold goes
    seen.append(storefront_inventory(pair, storefront, list_id))
    assert not Reservation.objects.filter(order_ref=order.idempotency_key, released_at__isnull=True).exists()
    assert set(
        Reservation.objects.filter(order_ref=order.idempotency_key).values_list("release_reason", flat=True)
    ) == {"master stock feed"}
    pair.stock_sync(master)
    seen.append(storefront_inventory(pair, storefront, list_id))
    for inv in seen:  # A 7 − 2, B 4 − 2, KIT min(5, 2 // 2): reduced at every step, never back up
        assert (inv["SF-A"], inv["SF-B"], inv["SF-KIT"]) == (5, 2, 1), seen
    dispatch_back(pair, storefront, master, order, SHIPPED[storefront.system_type])
    shipped = {sku for t in order.tracking for sku, _ in t["lines"]}
    assert shipped == {"A", "B"}, order.tracking  # the kit header is paperwork, not goods
    pair.stock_sync(master)
    inv = storefront_inventory(pair, storefront, list_id)
    assert (inv["SF-A"], inv["SF-B"], inv["SF-KIT"]) == (5, 2, 1), inv


SHIPPED = {"commercetools": "Shipped", "sfcc": "shipped"}
