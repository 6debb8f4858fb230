"""The push paths of the pairs: emulators post signed webhooks to a live hub (stock, orders, dispatches),
the hub's webhook views hand them to these connectors, and the engines move the data on."""

from __future__ import annotations

import pytest

from . import flows


@pytest.fixture
def eager_celery():
    from integration_hub.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


def hooked(pair, conn, secret):
    conn.set_webhook_secret(secret)
    conn.save()
    import connectors.registry as registry

    registry.clear_cache()
    return conn


def test_clarus_stock_and_manifest_webhooks_with_commercetools(pair, live_server):
    sf, wh = pair.connection("commercetools"), hooked(pair, pair.connection("clarus"), "clarus-hook")
    pair.topology(sf, wh, list_id="sc-web")
    pair.control(
        "clarus",
        "configure_webhooks",
        {
            "stock_url": f"{live_server.url}/hooks/stock/clarus/",
            "dispatch_url": f"{live_server.url}/hooks/dispatch/clarus/",
            "secret": "clarus-hook",
        },
    )
    pair.control("clarus", "set_stock", {"rows": flows.STOCK_ROWS})
    assert all(status == 200 for _, status in pair.control("clarus", "state")["webhooks"])
    from integration_hub.inventory import push

    push.drain(time_budget=20)
    assert flows.storefront_inventory(pair, sf, "sc-web")["SF-A"] == 7

    order = flows.order_out(pair, sf, wh, "sc-web")
    pair.control(
        "clarus",
        "dispatch",
        {"order_ref": order.idempotency_key, "parcels": [{"carrier": "DPD", "tracking_number": "TRK-9"}]},
    )
    order.refresh_from_db()
    assert order.state == "dispatched"  # the "sales order completed (dispatched)" event confirmed it
    from integration_hub.orders import processing

    processing.process_due()
    assert flows.storefront_order(pair, sf, order)["tracking"] == ["TRK-9"]


def test_clarus_webhooks_are_validated_by_their_identification_headers(pair, live_server):
    """documentation.claruswms.com "Validate a webhook request": domain, API domain, subdomain and automation id
    must be the expected ones; anything else is refused, and nothing is refused for lack of a signature."""
    import json

    import requests

    sf, wh = pair.connection("commercetools"), pair.connection("clarus")
    pair.topology(sf, wh, list_id="sc-web")
    pair.control("clarus", "configure_webhooks", {"stock_url": f"{live_server.url}/hooks/stock/clarus/"})
    pair.control("clarus", "set_stock", {"rows": flows.STOCK_ROWS[:1]})
    assert pair.control("clarus", "state")["webhooks"] == [["stock", 200]]
    good = {
        "Content-Type": "application/json",
        "X-ClarusWMS-Domain": "https://demo.claruswms.co.uk",
        "X-ClarusWMS-API-Domain": "https://clarus-api.com",
        "X-ClarusWMS-Subdomain": "demo",
        "X-ClarusWMS-Automation-ID": "41",
    }
    body = json.dumps(
        {"data": {"type": "stocks", "id": "x", "attributes": {"product": {"code": "A"}, "warehouse": {"id": "DC1"}}}}
    )
    url = f"{live_server.url}/hooks/stock/clarus/"
    assert requests.post(url, data=body, headers=good, timeout=10).status_code == 200
    for name, value in (
        ("X-ClarusWMS-Subdomain", "other"),
        ("X-ClarusWMS-Automation-ID", "99"),
        ("X-ClarusWMS-Domain", "https://evil.test"),
    ):
        assert requests.post(url, data=body, headers={**good, name: value}, timeout=10).status_code == 401, name
    assert (
        requests.post(
            url, data=body, headers={k: v for k, v in good.items() if k != "X-ClarusWMS-API-Domain"}, timeout=10
        ).status_code
        == 401
    )
    wh.options = {k: v for k, v in wh.options.items() if k != "webhook_automation_ids"}  # not configured: fail closed
    wh.save()
    import connectors.registry as registry

    registry.clear_cache()
    assert requests.post(url, data=body, headers=good, timeout=10).status_code == 401


def test_archean_stock_push_and_bad_signature(pair, live_server):
    sf, wh = pair.connection("commercetools"), hooked(pair, pair.connection("archean"), "r247-hook")
    pair.topology(sf, wh, list_id="sc-web")
    pair.control(
        "archean", "configure_webhooks", {"stock_url": f"{live_server.url}/hooks/stock/archean/", "secret": "wrong"}
    )
    pair.control("archean", "set_stock", {"rows": flows.STOCK_ROWS[:1]})
    assert pair.control("archean", "state")["webhooks"] == [["stock", 401]]
    pair.control(
        "archean", "configure_webhooks", {"stock_url": f"{live_server.url}/hooks/stock/archean/", "secret": "r247-hook"}
    )
    pair.control("archean", "set_stock", {"rows": flows.STOCK_ROWS[:1]})
    assert pair.control("archean", "state")["webhooks"][-1] == ["stock", 200]
    from integration_hub.inventory.models import StockLevel

    assert StockLevel.objects.get(item=pair.items["A"], state="available").quantity == 7


def test_sfcc_order_webhook_captures_the_order(pair, live_server, eager_celery):
    sf, wh = hooked(pair, pair.connection("sfcc"), "sfcc-hook"), pair.connection("wair")
    pair.topology(sf, wh, list_id="inv_web")
    pair.control(
        "sfcc", "configure_webhooks", {"order_url": f"{live_server.url}/hooks/orders/sfcc/", "secret": "sfcc-hook"}
    )
    no = flows.place_order(pair, sf, "inv_web")
    from integration_hub.orders.models import Order

    order = Order.objects.get(external_id=no)  # captured by the webhook → fetch task, no poll
    assert order.channel.key == "web" and order.gift_message == "Happy birthday"


def test_archean_item_fulfilment_webhook_ships_status_push_does_not(pair, live_server):
    import json

    import requests

    from exceptions_app.models import ExceptionRecord
    from connectors.signatures import HEADER, sign

    sf, wh = pair.connection("commercetools"), hooked(pair, pair.connection("archean"), "r247-hook")
    pair.topology(sf, wh, list_id="sc-web")
    pair.control(
        "archean",
        "configure_webhooks",
        {"dispatch_url": f"{live_server.url}/hooks/dispatch/archean/", "secret": "r247-hook"},
    )
    order = flows.order_out(pair, sf, wh, "sc-web")
    body = json.dumps(
        {
            "type": "sales_order.status_changed",
            "data": [{"sales_order_reference": order.idempotency_key, "status": "SHIPPED"}],
        }
    ).encode()
    r = requests.post(
        f"{live_server.url}/hooks/dispatch/archean/", data=body, headers={HEADER: sign("r247-hook", body)}, timeout=10
    )
    assert r.status_code == 200
    order.refresh_from_db()
    assert order.state == "acknowledged" and not ExceptionRecord.objects.filter(kind="bad_payload").exists()
    pair.control(
        "archean",
        "dispatch",
        {"order_ref": order.idempotency_key, "parcels": [{"carrier": "RM", "tracking_number": "RM-7"}]},
    )
    order.refresh_from_db()
    assert order.state == "dispatched" and order.tracking[0]["tracking_number"] == "RM-7"
