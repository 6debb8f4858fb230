"""Pair: Archean R247 Stock (inventory master + fulfilment) ↔ commercetools (storefront)."""

from . import flows


def setup(pair):
    sf, wh = pair.connection("commercetools"), pair.connection("archean")
    pair.topology(sf, wh, list_id="sc-web")
    return sf, wh


def test_stock_push(pair):
    sf, wh = setup(pair)
    flows.stock_push(pair, sf, wh, "sc-web")


def test_order_out_and_only_item_fulfilments_ship(pair):
    sf, wh = setup(pair)
    order = flows.order_out(pair, sf, wh, "sc-web")
    pair.control("archean", "set_order_status", {"order_ref": order.idempotency_key, "status": "SHIPPED"})
    pair.dispatch_back(wh)
    order.refresh_from_db()
    assert order.state == "acknowledged"  # a status is not an item fulfilment
    assert flows.storefront_order(pair, sf, order)["shipment_state"] != "Shipped"
    flows.dispatch_back(pair, sf, wh, order, "Shipped")


def test_stock_stays_held_from_capture_to_dispatch(pair):
    sf, wh = setup(pair)
    flows.stock_held_until_dispatch(pair, sf, wh, "sc-web")
