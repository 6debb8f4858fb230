"""The demand files Inventory Planner's Starter CSV connector pulls from the hub: token-protected, complete,
streamed, in the published columns; and the planner's stock orders on the ops page."""

from __future__ import annotations

import base64

import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone

from connectors.inventory_planner import PRODUCT_COLUMNS, SALES_ORDER_COLUMNS, parse_csv
from integration_hub.planning import feeds, services
from integration_hub.planning.models import FeedToken

from .test_demand_feed import make_order, world  # noqa: F401  (fixtures)
from tests.support.sandbox import control


def basic(password, user="planner"):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def fed(world):  # noqa: F811
    make_order(world, "O1", "acknowledged", [("1", "A", 2, None), ("2", "KIT", 1, None)])
    make_order(world, "O2", "cancelled", [("1", "B", 1, None)])
    assert not services.push_demand_feed(world["ip"]).error
    return world


URL = "/planning/feeds/planner/clarus-dc/"


def test_files_need_the_feed_token(fed, client):
    token = feeds.issue_token(fed["ip"])
    assert (
        FeedToken.objects.get().token_sha256 != token and len(FeedToken.objects.get().token_sha256) == 64
    )  # only a hash is kept
    for headers, q in (
        ({}, ""),
        (basic("nope"), ""),
        ({}, "?token=nope"),
        (basic(""), ""),
        ({"HTTP_AUTHORIZATION": "Basic !!"}, ""),
    ):
        r = client.get(URL + "sales-orders.csv" + q, **headers)
        assert r.status_code == 401 and r["WWW-Authenticate"].startswith("Basic"), (headers, q)
    assert (
        client.get("/planning/feeds/ct/clarus-dc/sales-orders.csv", **basic(token)).status_code == 401
    )  # not a planner
    assert client.get("/planning/feeds/ghost/clarus-dc/sales-orders.csv", **basic(token)).status_code == 401
    ok = client.get(URL + "sales-orders.csv", **basic(token))
    assert ok.status_code == 200 and isinstance(ok, StreamingHttpResponse) and ok["Cache-Control"] == "no-store"
    assert client.get(URL + "sales-orders.csv?token=" + token).status_code == 200
    assert client.head(URL + "products.csv", **basic(token)).status_code == 200  # the planner's HEAD check
    assert client.get(URL + "other.csv", **basic(token)).status_code == 404
    assert client.post(URL + "sales-orders.csv", **basic(token)).status_code == 405
    new = feeds.issue_token(fed["ip"])  # rotated: the old token stops working
    assert client.get(URL + "sales-orders.csv", **basic(token)).status_code == 401
    assert client.get(URL + "sales-orders.csv", **basic(new)).status_code == 200


def test_sales_orders_file_is_complete_in_the_published_columns(fed, client):
    from integration_hub.orders.models import Order

    token = feeds.issue_token(fed["ip"])
    body = b"".join(client.get(URL + "sales-orders.csv", **basic(token)).streaming_content).decode()
    assert body.splitlines()[0] == ",".join(SALES_ORDER_COLUMNS)
    rows = {r["ORDER_ID"]: r for r in parse_csv(body)}
    assert set(rows) == {"uk-web:O1|A||sale", "uk-web:O1|A|KIT|sale", "uk-web:O1|B|KIT|sale"}  # O2 was never sold
    plain = rows["uk-web:O1|A||sale"]
    assert (
        plain["ID"],
        plain["QUANTITY"],
        plain["PRICE"],
        plain["CURRENCY"],
        plain["WAREHOUSE"],
        plain["REMOVED"],
    ) == ("uk-web:O1", "2", "9.99", "GBP", "clarus-dc", "false")
    Order.objects.filter(idempotency_key="uk-web:O1").update(state="cancelled", updated_at=timezone.now())
    services.push_demand_feed(fed["ip"])
    body = b"".join(client.get(URL + "sales-orders.csv", **basic(token)).streaming_content).decode()
    assert parse_csv(body) == []  # complete files: a cancelled order's lines leave the file
    assert client.get("/planning/feeds/planner/elsewhere/sales-orders.csv", **basic(token)).status_code == 200


def test_products_file_carries_available_stock_of_the_warehouse(fed, client):
    from integration_hub.core.models import Location
    from integration_hub.inventory.models import StockLevel

    loc = Location.objects.create(code="dc1", name="DC1", connection=fed["wh"], external_id="DC1")
    StockLevel.objects.create(item=fed["A"], location=loc, state="available", quantity=7)
    StockLevel.objects.create(item=fed["A"], location=loc, state="damaged", quantity=3)
    token = feeds.issue_token(fed["ip"])
    rows = {
        r["SKU"]: r
        for r in parse_csv(b"".join(client.get(URL + "products.csv", **basic(token)).streaming_content).decode())
    }
    assert list(next(iter(rows.values()))) == list(PRODUCT_COLUMNS)
    assert set(rows) == {"A", "B"}  # bundles are not variants the sales lines name
    assert rows["A"]["stock_quantity"] == "7" and rows["A"]["title"] == "Mug" and rows["B"]["stock_quantity"] == "0"


def test_an_sftp_planner_serves_no_files(fed, client):
    import connectors.registry as registry

    token = feeds.issue_token(fed["ip"])
    fed["ip"].options = {"delivery": "sftp"}
    fed["ip"].save()
    registry.clear_cache()
    assert client.get(URL + "sales-orders.csv", **basic(token)).status_code == 404


def test_planner_feed_token_command_prints_the_urls(fed):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = StringIO()
    call_command(
        "planner_feed_token", "planner", "--base-url", "https://hub.test", "--warehouse", "clarus-dc", stdout=out
    )
    text = out.getvalue()
    token = text.split("any user name): ")[1].split()[0]
    assert feeds.authorised_connection("planner", token) == fed["ip"]
    assert "https://hub.test/planning/feeds/planner/clarus-dc/sales-orders.csv" in text
    with pytest.raises(CommandError):
        call_command("planner_feed_token", "ct", stdout=StringIO())


def test_stock_orders_reach_the_ops_page(fed, sandbox, role_client):

    control(
        sandbox,
        "inventory_planner",
        "seed_purchase_orders",
        {
            "orders": [
                {
                    "id": "po1",
                    "reference": "PO-1001",
                    "status": "open",
                    "type": "po",
                    "vendor": "Acme",
                    "warehouse": "clarus-dc",
                    "expected_date": "2026-12-10T00:00:00Z",
                    "items": [{"sku": "A", "replenishment": 10, "received_qty": 4}],
                },
                {
                    "id": "tr1",
                    "reference": "TR-7",
                    "status": "sent",
                    "type": "transfer",
                    "source_warehouse": "DC2",
                    "warehouse": "clarus-dc",
                    "items": [{"sku": "B", "replenishment": 3}],
                },
            ]
        },
    )
    res = services.refresh_stock_orders(fed["ip"])
    assert not res.error and res.stored == 2
    body = role_client("ops").get("/planning/").content.decode()
    assert "PO-1001" in body and "Acme" in body and "TR-7" in body and "DC2" in body
    from integration_hub.planning.models import StockOrder

    assert StockOrder.objects.get(external_id="po1").units_open == 6
    control(sandbox, "inventory_planner", "seed_purchase_orders", {"orders": []})
    assert services.refresh_stock_orders(fed["ip"]).removed == 2
