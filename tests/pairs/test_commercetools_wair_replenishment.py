"""Pair: commercetools (storefront) + Clarus (stock master / warehouse) → WAIR in its published role
(replenishment engine): the hub feeds WAIR items, locations, the master's on-hand stock, sales with their
channel location and the open web-order allocations, in Batch/start … Batch/stop cycles; stock targets and
transfers come back to the replenishment page."""

from integration_hub.planning import services as planning
from integration_hub.planning.models import Recommendation

from . import flows


def test_storefront_sales_and_master_stock_feed_wair_and_targets_come_back(pair, role_client):
    sf, wh, wr = pair.connection("commercetools"), pair.connection("clarus"), pair.connection("wair_replenishment")
    pair.topology(sf, wh, list_id="sc-web")
    pair.control("clarus", "set_stock", {"rows": flows.STOCK_ROWS})
    pair.stock_sync(wh)
    order = flows.order_out(pair, sf, wh, "sc-web")  # acknowledged, not dispatched: its units are allocated
    key = order.idempotency_key

    res = planning.push_demand_feed(wr)
    assert not res.error and res.sent == 3, res
    st = pair.control("wair_replenishment", "state")
    assert st["batches"] == {"started": 1, "stopped": 1}
    assert [e for e, _ in st["calls"]] == ["Items", "Locations", "Stock", "Sales", "StockNotForReplenishment"]
    assert {loc["locationId"]: loc["locationType"] for loc in st["locations"].values()} == {
        "clarus": "warehouse",
        "web": "webshop",
    }
    sales = st["sales"]
    assert sales[f"{key}|A||sale"]["locationId"] == "web" and sales[f"{key}|B|KIT|sale"]["quantity"] == 2
    assert sales[f"{key}|A||sale"]["currency"] == order.currency
    on_hand = {s["skuId"]: s["quantity"] for s in st["stock"].values()}
    from integration_hub.inventory.models import StockLevel

    hub_on_hand = {}
    for sku, qty in (
        StockLevel.objects.filter(location__connection=wh)
        .exclude(state="in_transit")
        .values_list("item__sku", "quantity")
    ):
        hub_on_hand[sku] = hub_on_hand.get(sku, 0) + qty
    assert on_hand == hub_on_hand and set(on_hand) == {"A", "B", "C"}  # every item's stock, not only the ones sold
    assert on_hand["C"] == 5 + 2  # quarantined units are on hand too (not sellable, but there)
    assert set(st["items"]) == {"A", "B", "C"}  # the bundle is not an item WAIR replenishes
    held = {a["skuId"]: a["quantity"] for a in st["stocknotforreplenishment"].values()}
    assert held == {"A": 2, "B": 2}  # the open order: A + a kit of A and 2×B

    # the next run has no new demand, but stock moved: WAIR still gets a cycle with the stock on hand
    pair.control(
        "clarus", "set_stock", {"rows": [{"sku": "C", "location": "DC1", "state": "inspection", "quantity": 1}]}
    )
    pair.stock_sync(wh)
    assert planning.push_demand_feed(wr).sent == 0
    st = pair.control("wair_replenishment", "state")
    assert st["batches"] == {"started": 2, "stopped": 2} and st["stock"]["clarus|C"]["quantity"] == 1 + 2
    assert len(st["sales"]) == 3  # no sale sent twice

    pair.control(
        "wair_replenishment",
        "seed_transfers",
        {
            "transfers": [
                {
                    "fromLocationId": "clarus",
                    "toLocationId": "store-1",
                    "skuId": "A",
                    "quantity": 2,
                    "referenceId": "RD_9",
                    "transferType": "Replenishment",
                }
            ]
        },
    )
    out = planning.refresh_recommendations(wr)
    assert not out.error and out.unknown_skus == 0, out
    target = Recommendation.objects.get(kind="target", sku="A", location="clarus")
    assert target.recommended_quantity == 2 + 2 and target.item == pair.items["A"]  # 2 sold + 2 held
    assert Recommendation.objects.get(kind="transfer", sku="A").supplier == "clarus"
    page = role_client("ops").get("/planning/?kind=target").content.decode()
    assert "stock target" in page and "store-1" not in page
