"""Pair: Clarus WMS (warehouse + inventory master, on its published API) ↔ commercetools (storefront)."""

from . import flows


def setup(pair):
    sf, wh = pair.connection("commercetools"), pair.connection("clarus")
    pair.topology(sf, wh, list_id="sc-web")
    return sf, wh


def test_stock_push(pair):
    sf, wh = setup(pair)
    flows.stock_push(pair, sf, wh, "sc-web")


def test_order_out_and_dispatch_back_only_when_the_goods_out_completes(pair):
    sf, wh = setup(pair)
    order = flows.order_out(pair, sf, wh, "sc-web")
    state = pair.control("clarus", "state")
    assert set(state["products"]) == {
        "A",
        "B",
    }  # created in Clarus before the goods out named them (the kit is paperwork)
    [line_b] = [ln for ln in state["orders"][order.idempotency_key]["lines"] if ln["code"] == "B"]
    assert line_b["attributes"]["string1"] == "KIT" and line_b["order_quantity"] == 2
    # picked but not completed (dispatched): not a confirmed dispatch, the storefront stays unshipped
    opened = pair.control(
        "clarus",
        "dispatch",
        {
            "order_ref": order.idempotency_key,
            "close_manifest": False,
            "parcels": [{"carrier": "DPD", "tracking_number": "TRK-0001"}],
        },
    )
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
