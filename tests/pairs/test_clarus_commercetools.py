"""Pair: Clarus WMS (warehouse + inventory master) ↔ commercetools (storefront)."""
from . import flows


def setup(pair):
    sf, wh = pair.connection("commercetools"), pair.connection("clarus")
    pair.topology(sf, wh, list_id="sc-web")
    return sf, wh


def test_stock_push(pair):
    sf, wh = setup(pair)
    flows.stock_push(pair, sf, wh, "sc-web")


def test_order_out_and_dispatch_back_only_on_manifest_close(pair):
    sf, wh = setup(pair)
    order = flows.order_out(pair, sf, wh, "sc-web")
    # packed on a manifest that is still open: not a confirmed dispatch, the storefront stays unshipped
    opened = pair.control("clarus", "dispatch", {"order_ref": order.idempotency_key, "close_manifest": False,
                                                 "parcels": [{"carrier": "DPD", "tracking_number": "TRK-0001"}]})
    pair.dispatch_back(wh)
    order.refresh_from_db()
    assert order.state == "acknowledged"
    assert flows.storefront_order(pair, sf, order)["shipment_state"] != "Shipped"
    pair.control("clarus", "close_manifest", {"manifest_id": opened["manifest_id"]})
    pair.dispatch_back(wh)
    order.refresh_from_db()
    assert order.state == "storefront_notified"
    got = flows.storefront_order(pair, sf, order)
    assert got["shipment_state"] == "Shipped" and got["tracking"] == ["TRK-0001"]


def test_dispatch_back(pair):
    sf, wh = setup(pair)
    order = flows.order_out(pair, sf, wh, "sc-web")
    flows.dispatch_back(pair, sf, wh, order, "Shipped")


def test_stock_stays_held_from_capture_to_dispatch(pair):
    sf, wh = setup(pair)
    flows.stock_held_until_dispatch(pair, sf, wh, "sc-web")
