"""Pair: commercetools (storefront) → Inventory Planner (planner): storefront orders become demand lines
(channel, location, promotion codes, bundle components), returns offset demand, recommendations come back
to the ops page. Orders are fulfilled by Clarus here (the planner is not a warehouse)."""
from integration_hub.planning import services as planning
from integration_hub.planning.models import Recommendation

from . import flows


def test_orders_feed_demand_and_recommendations_come_back(pair, role_client):
    sf, wh, ip = pair.connection("commercetools"), pair.connection("clarus"), pair.connection("inventory_planner")
    pair.topology(sf, wh, list_id="sc-web")
    order = flows.order_out(pair, sf, wh, "sc-web")  # captured, validated, sent, acknowledged
    ext = flows.place_order(pair, sf, "sc-web", discount_codes=["SPRING5"])
    pair.orders_out(sf)

    res = planning.push_demand_feed(ip)
    assert not res.error, res
    lines = pair.control("inventory_planner", "state")["lines"]
    key = order.idempotency_key
    assert lines[f"{key}|A||sale"]["quantity"] == 1
    kit_b = lines[f"{key}|B|KIT|sale"]
    assert kit_b["quantity"] == 2 and kit_b["channel"] == "web" and kit_b["warehouse"] == "clarus"
    assert lines[f"{key}|A|KIT|sale"]["quantity"] == 1
    assert len([k for k in lines if k.startswith(key)]) == 3
    second = [v for v in lines.values() if v["order_id"].endswith(ext)]
    assert second and all(v["promotion_codes"] == ["SPRING5"] for v in second), second
    posts = pair.control("inventory_planner", "state")["posts"]
    planning.push_demand_feed(ip)
    assert pair.control("inventory_planner", "state")["posts"] == posts  # each line goes once

    planning.record_returns([{"external_ref": "RMA-1", "order_ref": key, "line_id": order.lines.filter(parent=None).first().line_id,
                              "quantity": 1, "condition": "available"}])
    assert planning.push_demand_feed(ip).returns_sent == 1

    pair.control("inventory_planner", "seed_variants", {"variants": [{"sku": "B", "warehouse": "clarus", "stock": 0, "vendor": "Acme"}]})
    assert planning.refresh_recommendations(ip).stored >= 1
    rec = Recommendation.objects.get(sku="B", location="clarus")
    assert rec.recommended_quantity == 4 and rec.supplier == "Acme" and rec.item == pair.items["B"]
    page = role_client("ops").get("/planning/")
    assert page.status_code == 200 and "Acme" in page.content.decode()
