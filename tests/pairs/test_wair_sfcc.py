"""Pair: WAIR for Retail (inventory master + warehouse) ↔ Salesforce Commerce Cloud (storefront)."""
from . import flows


def setup(pair):
    sf, wh = pair.connection("sfcc"), pair.connection("wair")
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
