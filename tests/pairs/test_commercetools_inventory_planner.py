"""Pair: commercetools (storefront) → Inventory Planner (planner): storefront orders become demand lines
(channel, location, currency, bundle components) in the files the planner pulls (Starter CSV connector),
returns offset demand, recommendations come back to the ops page. Orders are fulfilled by Clarus here (the
planner is not a warehouse)."""

import pytest

from integration_hub.planning import services as planning
from integration_hub.planning.models import DemandFeedEntry, Recommendation

from . import flows


@pytest.fixture
def pull(pair, live_server):
    """Inventory Planner's daily pull of the hub's complete files for one warehouse, over real HTTP."""
    from integration_hub.planning import feeds

    tokens = {}

    def run(ip, warehouse="clarus"):
        if ip.pk not in tokens:
            tokens[ip.pk] = feeds.issue_token(ip)
        root = f"{live_server.url}/planning/feeds/{ip.name}/{warehouse}"
        res = pair.control(
            "inventory_planner",
            "pull",
            {
                "products_url": f"{root}/products.csv",
                "sales_orders_url": f"{root}/sales-orders.csv",
                "warehouse": warehouse,
                "username": "ip",
                "password": tokens[ip.pk],
            },
        )
        assert res["ok"], res
        return pair.control("inventory_planner", "state")["lines"]

    return run


def test_orders_feed_demand_and_recommendations_come_back(pair, role_client, pull):
    sf, wh, ip = pair.connection("commercetools"), pair.connection("clarus"), pair.connection("inventory_planner")
    pair.topology(sf, wh, list_id="sc-web")
    order = flows.order_out(pair, sf, wh, "sc-web")  # captured, validated, sent, acknowledged
    ext = flows.place_order(pair, sf, "sc-web", discount_codes=["SPRING5"])
    pair.orders_out(sf)

    res = planning.push_demand_feed(ip)
    assert not res.error, res
    lines = pull(ip)
    key = order.idempotency_key
    assert lines[f"{key}|A||sale"]["quantity"] == 1
    kit_b = lines[f"{key}|B|KIT|sale"]
    assert kit_b["quantity"] == 2 and kit_b["channel"] == "web" and kit_b["warehouse"] == "clarus"
    assert kit_b["currency"] == order.currency and len(order.currency) == 3 and kit_b["order_id"] == key
    assert lines[f"{key}|A|KIT|sale"]["quantity"] == 1
    assert len([k for k in lines if k.startswith(key)]) == 3
    second = [v for v in lines.values() if v["order_id"].endswith(ext)]
    assert second, lines  # promotion codes have no column in the published file: kept in the hub only
    assert DemandFeedEntry.objects.filter(order__external_id=ext).exists()
    sent_at = set(DemandFeedEntry.objects.values_list("sent_at", flat=True))
    assert planning.push_demand_feed(ip).sent == 0
    assert set(DemandFeedEntry.objects.values_list("sent_at", flat=True)) == sent_at  # each line goes once

    planning.record_returns(
        [
            {
                "external_ref": "RMA-1",
                "order_ref": key,
                "line_id": order.lines.filter(parent=None).first().line_id,
                "quantity": 1,
                "condition": "available",
            }
        ]
    )
    assert planning.push_demand_feed(ip).returns_sent == 1
    pull(ip)

    pair.control(
        "inventory_planner",
        "seed_variants",
        {"variants": [{"sku": "B", "warehouse": "clarus", "stock": 0, "vendor": "Acme"}]},
    )
    assert planning.refresh_recommendations(ip).stored >= 1
    rec = Recommendation.objects.get(sku="B", location="clarus")
    assert (
        rec.recommended_quantity == 4 and rec.supplier == "acme" and rec.item == pair.items["B"]
    )  # vendor_id, lower case
    page = role_client("ops").get("/planning/")
    assert page.status_code == 200 and "acme" in page.content.decode()


# --- returns: read from the storefront with the order poll, fed to the planner ---------------------------
def _ct_update(sf, order_id, *actions):
    """The real commercetools update action over HTTP, at the order's current version."""
    from connectors.registry import get_connector

    ct = get_connector(sf)
    version = ct.get_order(order_id).version
    return ct.client.post(ct.path(f"orders/{order_id}"), json={"version": version, "actions": list(actions)}).json()


def _return_lines(pull, ip):
    return {k: v["quantity"] for k, v in pull(ip).items() if v["type"] == "return"}


def test_return_advised_then_back_in_stock_offsets_demand_once(pair, pull):
    from integration_hub.core.models import SyncCursor
    from integration_hub.planning.models import ReturnLine

    sf, wh, ip = pair.connection("commercetools"), pair.connection("clarus"), pair.connection("inventory_planner")
    pair.topology(sf, wh, list_id="sc-web")
    order = flows.order_out(pair, sf, wh, "sc-web")
    key = order.idempotency_key
    assert not planning.push_demand_feed(ip).error

    made = pair.control(
        "commercetools",
        "add_return",
        {
            "order": order.external_id,
            "tracking": "RET-1",
            "items": [{"sku": "SF-A", "quantity": 1, "state": "Advised"}],
        },
    )
    [item_id] = made["return_item_ids"]
    polled, _ = pair.orders_out(sf)  # the scheduled order poll sees the modified order
    assert polled["returns"] == 1 and polled["created"] == 0, polled
    ret = ReturnLine.objects.get()
    assert (ret.condition, ret.quantity, ret.external_ref) == ("advised", 1, f"{key}/{item_id}")
    assert ret.order_line.item.sku == "A" and ret.returned_at is not None
    assert planning.push_demand_feed(ip).returns_sent == 0  # announced is not back in stock
    assert _return_lines(pull, ip) == {}

    _ct_update(
        sf,
        order.external_id,
        {"action": "setReturnShipmentState", "returnItemId": item_id, "shipmentState": "Returned"},
    )
    pair.orders_out(sf)
    assert ReturnLine.objects.get().condition == "inspection"
    assert planning.push_demand_feed(ip).returns_sent == 0  # received, not inspected yet
    _ct_update(
        sf,
        order.external_id,
        {"action": "setReturnShipmentState", "returnItemId": item_id, "shipmentState": "BackInStock"},
    )
    from integration_hub.orders.beat import SCHEDULE
    from integration_hub.orders.tasks import poll_orders

    assert any(j.task == "orders.poll_orders" and j.every_seconds for j in SCHEDULE)  # the beat job that reads returns
    assert poll_orders(connection_id=sf.pk)[sf.name]["returns"] == 1
    assert ReturnLine.objects.get().condition == "available"
    assert planning.push_demand_feed(ip).returns_sent == 1
    assert _return_lines(pull, ip) == {f"{key}|A||return": -1}
    assert pull(ip)[f"{key}|A||sale"]["quantity"] == 1  # the sale stays as it was

    # the same return read again (a re-read from an older cursor, and the order coming back for another change)
    changed_at = ReturnLine.objects.get().updated_at
    sent_at = set(DemandFeedEntry.objects.values_list("sent_at", flat=True))
    SyncCursor.objects.filter(connection=sf, stream="orders").update(value="")
    assert pair.orders_out(sf)[0]["returns"] == 0
    pair.control(
        "commercetools", "add_return", {"order": order.external_id, "items": [{"sku": "SF-KIT", "quantity": 1}]}
    )
    assert pair.orders_out(sf)[0]["returns"] == 1  # only the new (advised) kit return
    assert planning.push_demand_feed(ip).sent == 0 and planning.push_demand_feed(ip, full=True).sent == 0
    assert set(DemandFeedEntry.objects.values_list("sent_at", flat=True)) == sent_at
    assert (
        ReturnLine.objects.count() == 2
        and ReturnLine.objects.get(external_ref=f"{key}/{item_id}").updated_at == changed_at
    )
    assert _return_lines(pull, ip) == {f"{key}|A||return": -1}


def test_unusable_return_never_offsets_demand(pair, role_client, pull):
    from integration_hub.planning.models import ReturnLine

    sf, wh, ip = pair.connection("commercetools"), pair.connection("clarus"), pair.connection("inventory_planner")
    pair.topology(sf, wh, list_id="sc-web")
    order = flows.order_out(pair, sf, wh, "sc-web")
    planning.push_demand_feed(ip)
    [item_id] = pair.control(
        "commercetools",
        "add_return",
        {"order": order.external_id, "items": [{"sku": "SF-KIT", "quantity": 1, "state": "Returned"}]},
    )["return_item_ids"]
    pair.orders_out(sf)
    pair.control(
        "commercetools", "return_state", {"order": order.external_id, "return_item_id": item_id, "state": "Unusable"}
    )
    assert pair.orders_out(sf)[0]["returns"] == 1
    ret = ReturnLine.objects.get()
    assert ret.condition == "damaged" and ret.order_line.item.sku == "KIT"
    res = planning.push_demand_feed(ip)
    assert not res.error and res.returns_sent == 0
    assert _return_lines(pull, ip) == {}  # neither the kit nor its components come back as saleable
    page = role_client("ops").get("/planning/")
    body = page.content.decode()
    assert page.status_code == 200 and "Latest returns" in body and order.order_number in body and "damaged" in body


def test_malformed_return_info_is_an_exception_and_nothing_else_is_lost(pair):
    from exceptions_app.models import ExceptionRecord
    from integration_hub.core.models import SyncCursor
    from integration_hub.orders.models import Order
    from integration_hub.planning.models import ReturnLine

    sf, wh, ip = pair.connection("commercetools"), pair.connection("clarus"), pair.connection("inventory_planner")
    pair.topology(sf, wh, list_id="sc-web")
    order = flows.order_out(pair, sf, wh, "sc-web")
    [good] = pair.control(
        "commercetools",
        "add_return",
        {"order": order.external_id, "items": [{"sku": "SF-A", "quantity": 1, "state": "BackInStock"}]},
    )["return_item_ids"]
    emu = pair.sandbox.emulators["commercetools"]
    with emu.lock:  # what a broken returns app could leave behind
        o = emu.orders[order.external_id]
        kit_line = next(li["id"] for li in o["lineItems"] if li["variant"]["sku"] == "SF-KIT")
        o["returnInfo"].append(
            {
                "items": [
                    {
                        "type": "LineItemReturnItem",
                        "id": "bad-state",
                        "quantity": 1,
                        "lineItemId": kit_line,
                        "shipmentState": "Lost",
                    },
                    {
                        "type": "LineItemReturnItem",
                        "id": "bad-line",
                        "quantity": 1,
                        "lineItemId": "nope",
                        "shipmentState": "BackInStock",
                    },
                ]
            }
        )
        o["returnInfo"].append("not a return info")
        o["lastModifiedAt"] = emu._tick()
    other = flows.place_order(pair, sf, "sc-web")  # a new order in the same poll
    pair.control(
        "commercetools",
        "add_return",
        {"order": other, "items": [{"sku": "SF-A", "quantity": 1, "state": "BackInStock"}]},
    )

    polled, _ = pair.orders_out(sf)
    assert polled["created"] == 1 and polled["returns"] == 2, polled
    assert Order.objects.get(external_id=other).state == "acknowledged"
    assert set(ReturnLine.objects.values_list("external_ref", flat=True)) == {
        f"{order.idempotency_key}/{good}",
        f"{Order.objects.get(external_id=other).idempotency_key}/"
        + emu.orders[other]["returnInfo"][0]["items"][0]["id"],
    }
    rec = ExceptionRecord.objects.get(kind="bad_payload")
    assert rec.dedupe_key == f"bad_payload:commercetools:returns:{order.idempotency_key}" and rec.status == "open"
    assert "shipmentState" in rec.message and "lineItemId" in rec.message and "returnInfo[2]" in rec.message
    assert {r["ref"] for r in rec.context["rejected"]} >= {
        f"{order.external_id}/bad-state",
        f"{order.external_id}/bad-line",
    }
    assert planning.push_demand_feed(ip).returns_sent == 2  # the readable returns reach the planner

    SyncCursor.objects.filter(connection=sf, stream="orders").update(value="")
    pair.orders_out(sf)
    assert ExceptionRecord.objects.filter(kind="bad_payload").count() == 1 and ReturnLine.objects.count() == 2

    with emu.lock:  # fixed in the storefront: the order comes back and reads cleanly
        o = emu.orders[order.external_id]
        o["returnInfo"] = o["returnInfo"][:1]
        o["lastModifiedAt"] = emu._tick()
    pair.orders_out(sf)
    rec.refresh_from_db()
    assert rec.status == "resolved"


# --- returns pushed by the subscription: the same rows as the poll's, counted once ---------------------------
def test_return_messages_from_the_subscription_reach_the_planner_once(pair, live_server, pull):
    import json
    import uuid

    import requests

    from integration_hub.celery import app
    from integration_hub.planning.models import ReturnLine

    sf, wh, ip = pair.connection("commercetools"), pair.connection("clarus"), pair.connection("inventory_planner")
    sf.set_webhook_secret("ct-hook")
    sf.save()
    import connectors.registry as registry

    registry.clear_cache()
    pair.topology(sf, wh, list_id="sc-web")
    order = flows.order_out(pair, sf, wh, "sc-web")  # the hub has the order
    key = order.idempotency_key
    assert not planning.push_demand_feed(ip).error
    emu = pair.sandbox.emulators["commercetools"]

    def message(kind, **fields):
        o = emu.orders[order.external_id]
        return {
            "notificationType": "Message",
            "projectKey": "hubtest",
            "id": str(uuid.uuid4()),
            "version": 1,
            "sequenceNumber": o["version"],
            "resource": {"typeId": "order", "id": o["id"]},
            "resourceVersion": o["version"],
            "type": kind,
            "createdAt": o["lastModifiedAt"],
            "lastModifiedAt": o["lastModifiedAt"],
            **fields,
        }

    def deliver(m, secret="ct-hook"):
        return requests.post(
            f"{live_server.url}/hooks/orders/{sf.name}/",
            data=json.dumps(m),
            timeout=30,
            headers={"Content-Type": "application/json", "Authorization": secret},
        ).status_code

    old, app.conf.task_always_eager = app.conf.task_always_eager, True  # the queued re-read runs as the request commits
    try:
        [item_id] = pair.control(
            "commercetools",
            "add_return",
            {"order": order.external_id, "items": [{"sku": "SF-A", "quantity": 1, "state": "Returned"}]},
        )["return_item_ids"]
        added = message("ReturnInfoAdded", returnInfo=emu.orders[order.external_id]["returnInfo"][-1])
        assert deliver(added, secret="not-it") == 401 and not ReturnLine.objects.exists()
        assert deliver(added) == 200 and deliver(added) == 200  # at-least-once: twice
        assert ReturnLine.objects.get().condition == "inspection"
        assert planning.push_demand_feed(ip).returns_sent == 0  # received, not yet back in stock

        _ct_update(
            sf,
            order.external_id,
            {"action": "setReturnShipmentState", "returnItemId": item_id, "shipmentState": "BackInStock"},
        )
        assert (
            deliver(message("OrderReturnShipmentStateChanged", returnItemId=item_id, returnShipmentState="BackInStock"))
            == 200
        )
    finally:
        app.conf.task_always_eager = old
    assert ReturnLine.objects.get().condition == "available"
    assert planning.push_demand_feed(ip).returns_sent == 1
    assert _return_lines(pull, ip) == {f"{key}|A||return": -1}

    sent_at = set(DemandFeedEntry.objects.values_list("sent_at", flat=True))
    assert pair.orders_out(sf)[0]["returns"] == 0  # the scheduled poll reads the same order: nothing new
    assert planning.push_demand_feed(ip).sent == 0
    assert set(DemandFeedEntry.objects.values_list("sent_at", flat=True)) == sent_at
    assert ReturnLine.objects.count() == 1 and _return_lines(pull, ip) == {f"{key}|A||return": -1}
