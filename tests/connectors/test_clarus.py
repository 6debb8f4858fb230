"""Clarus WMS connector on its published API, against the Clarus emulator over real HTTP: OAuth client
credentials + X-Clarus-Subdomain, products before goods outs, goods outs idempotent on the hub's reference
(looked up first), GraphQL stock mapped to the hub's states, completed goods outs as dispatches (event and
poll), cancellation as Clarus allows it, and webhook identification headers."""

from __future__ import annotations

import pytest
import requests

from connectors import errors
from connectors.base import Address, WarehouseOrder, WarehouseOrderLine, WarehouseProduct
from connectors.clarus import ClarusConnector
from connectors.registry import api_notice, get_connector
from tests.support.sandbox import controller
from tests.support.sandbox import SandboxClient

OPTIONS = {
    "subdomain": "demo",
    "account_id": "1",
    "warehouse_id": "DC1",
    "webhook_domain": "https://demo.claruswms.co.uk",
    "webhook_api_domain": "https://clarus-api.com",
    "webhook_automation_ids": ["41", "42", "43"],
}
HEADERS = {
    "X-ClarusWMS-Domain": "https://demo.claruswms.co.uk",
    "X-ClarusWMS-API-Domain": "https://clarus-api.com",
    "X-ClarusWMS-Subdomain": "demo",
    "X-ClarusWMS-Automation-ID": "43",
}


control = controller("clarus")


@pytest.fixture
def cl_conn(db, sandbox):
    from integration_hub.core.models import Connection

    conn = Connection(
        name="clarus-test",
        system_type="clarus",
        base_url=f"{sandbox.url}/clarus",
        client_id="hub-demo",
        options=dict(OPTIONS),
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
        max_retries=2,
    )
    conn.set_secret("clarus-demo-key")
    conn.save()
    control(sandbox, "seed_locations", {"locations": [{"id": "DC1"}, {"id": "DC2"}]})
    return conn


@pytest.fixture
def cl(cl_conn):
    c = ClarusConnector(cl_conn)
    c.client.backoff_base = 0.01
    return c


def order(ref="ORD-1", **kw) -> WarehouseOrder:
    return WarehouseOrder(
        order_ref=ref,
        order_number="1001",
        channel="uk-web",
        shipping_method="STD48",
        carrier="DPD",
        lines=[
            WarehouseOrderLine("1", "KIT", 1, pickable=False),
            WarehouseOrderLine("1a", "SKU-A", 2, parent_line_id="1"),
            WarehouseOrderLine("2", "SKU-B", 1),
        ],
        shipping_address=Address(
            first_name="Ann", last_name="Lee", street="1 High St", postal_code="LS1 1AA", city="Leeds", country="GB"
        ),
        gift_message="Happy birthday",
        delivery_notes="Side door",
        **kw,
    )


def test_registry_document_and_required_subdomain(cl_conn):
    assert isinstance(get_connector(cl_conn, fresh=True), ClarusConnector)
    assert api_notice("clarus") == (
        False,
        "ClarusConnector follows the published API: https://documentation.claruswms.com/api-reference/introduction",
    )
    cl_conn.options = {}
    with pytest.raises(errors.PermanentError, match="subdomain"):
        ClarusConnector(cl_conn)


def test_oauth_client_credentials_and_the_subdomain_header(cl_conn, cl, sandbox):
    assert cl.stock_changes("").items == []  # a token was fetched, the subdomain sent
    bearer = f"Bearer {cl.client.auth.token(cl.client.session)}"
    for tenant in (
        {},
        {"X-Clarus-Subdomain": "someone-else"},
    ):  # a valid token without the tenant subdomain is not enough
        r = requests.post(
            f"{sandbox.url}/clarus/graphql",
            json={"query": "{ products { all { edges { node { id } } } } }"},
            headers={"Authorization": bearer, **tenant},
            timeout=5,
        )
        assert r.status_code == 401 and r.json()["errors"][0]["code"] == "unknown_subdomain", r.text
    r = requests.post(
        f"{sandbox.url}/clarus/graphql",
        json={"query": "{ products { all { edges { node { id } } } } }"},
        headers={"Authorization": bearer, "X-Clarus-Subdomain": "demo"},
        timeout=5,
    )
    assert r.status_code == 200 and "errors" not in r.json()
    cl_conn.set_secret("wrong")
    other = ClarusConnector(cl_conn)
    other.client.auth.invalidate()
    with pytest.raises(errors.PermanentError, match="refused the credentials"):
        other.stock_changes("")


def test_products_first_then_an_idempotent_goods_out(cl, sandbox):
    ids = cl.sync_products([WarehouseProduct("SKU-A", "Mug"), WarehouseProduct("SKU-B", "Spoon")])
    assert set(ids) == {"SKU-A", "SKU-B"} and cl.sync_products([WarehouseProduct("SKU-A")]) == {"SKU-A": ids["SKU-A"]}
    assert control(sandbox, "state")["products"] == ids  # found by code the second time, not created twice
    control(
        sandbox,
        "seed_stock",
        {
            "rows": [
                {"sku": "SKU-A", "location": "DC1", "quantity": 5},
                {"sku": "SKU-B", "location": "DC1", "quantity": 5},
            ]
        },
    )
    ack = cl.send_order(order())
    again = cl.send_order(order())
    assert not ack.duplicate and again.duplicate and again.warehouse_ref == ack.warehouse_ref
    st = control(sandbox, "state")
    assert st["goods_outs"] == 1 and st["order_receipts"] == {"ORD-1": 1}  # the repeat was looked up, never re-posted
    g = st["orders"]["ORD-1"]
    assert g["status"] == "ALLOCATED" and {ln["code"]: ln["order_quantity"] for ln in g["lines"]} == {
        "SKU-A": 2,
        "SKU-B": 1,
    }
    kit_line = next(ln for ln in g["lines"] if ln["code"] == "SKU-A")
    assert kit_line["attributes"]["string1"] == "KIT" and kit_line["attributes"]["alt_line_reference"] == "1a"
    a = g["attributes"]
    assert (a["string1"], a["string2"], a["string3"], a["delivery_notes"], a["external_system_reference1"]) == (
        "STD48",
        "DPD",
        "Happy birthday",
        "Side door",
        "ORD-1",
    )
    assert g["address"]["country_code"] == "GB" and g["address"]["name"] == "Ann Lee"
    assert cl.order_status("ORD-1") == "ALLOCATED" and cl.order_status("NOPE") is None


def test_unknown_products_are_created_at_send_time_and_stored_ids_are_used(cl, sandbox):
    ack = cl.send_order(order("ORD-2"))  # never synced: found-or-created on the way
    assert ack.warehouse_ref and set(control(sandbox, "state")["products"]) == {"SKU-A", "SKU-B"}
    stored = control(sandbox, "state")["products"]
    fresh = ClarusConnector(cl.connection)
    wo = order("ORD-3")
    for ln in wo.lines:
        ln.warehouse_product_id = stored.get(ln.sku, "")
    before = SandboxClient.of(sandbox).stats("clarus").requests
    fresh.send_order(wo)
    assert (
        SandboxClient.of(sandbox).stats("clarus").requests - before <= 3
    )  # token + look-up + POST: no product look-up


def test_a_lost_answer_is_looked_up_not_posted_again(cl, sandbox, monkeypatch):
    cl.sync_products([WarehouseProduct("SKU-A"), WarehouseProduct("SKU-B")])
    real = cl.client.post

    def lose(path, **kw):
        resp = real(path, **kw)
        if path == "/api/goods_outs":
            raise errors.TimeoutError_("read timed out", system="clarus")
        return resp

    monkeypatch.setattr(cl.client, "post", lose)
    ack = cl.send_order(order("ORD-4"))
    assert ack.duplicate and control(sandbox, "state")["order_receipts"]["ORD-4"] == 1


def test_the_goods_out_carries_the_required_fields_and_the_emulator_refuses_without_them(cl, sandbox):
    """Goods Out core resource: goods_out_type, account_id (an integer), reference (≤ 50 characters) and
    expected_date_of_dispatch are required; the emulator answers 422 without them, the connector sends them all."""
    ids = cl.sync_products([WarehouseProduct("SKU-A"), WarehouseProduct("SKU-B")])
    body = cl.goods_out_body(order("ORD-6"), ids)
    a = body["data"]["attributes"]
    assert (a["goods_out_type"], a["account_id"], a["reference"]) == ("sales_order", 1, "ORD-6")
    assert a["expected_date_of_dispatch"].endswith("Z")
    token = {"Authorization": f"Bearer {cl.client.auth.token(cl.client.session)}", "X-Clarus-Subdomain": "demo"}
    for broken, why in (
        ({"expected_date_of_dispatch": None}, "expected_date_of_dispatch"),
        ({"goods_out_type": "sale"}, "goods_out_type"),
        ({"reference": "R" * 51}, "at most 50"),
    ):
        doc = {"data": {**body["data"], "attributes": {**a, **broken}}}
        r = requests.post(f"{sandbox.url}/clarus/api/goods_outs", json=doc, headers=token, timeout=5)
        assert r.status_code == 422 and why in r.text, (broken, r.text)
    assert control(sandbox, "state")["goods_outs"] == 0


def test_an_order_ref_longer_than_clarus_takes_is_shortened_stably_and_mapped_back(cl, sandbox):
    ref = "marketplace-channel-with-a-long-key-" + "9" * 40  # 76 characters; Clarus takes 50
    control(sandbox, "seed_stock", {"rows": [{"sku": s, "location": "DC1", "quantity": 5} for s in ("SKU-A", "SKU-B")]})
    ack = cl.send_order(order(ref))
    assert cl.send_order(order(ref)).duplicate and cl.send_order(order(ref)).warehouse_ref == ack.warehouse_ref
    [wire] = [r for r in control(sandbox, "state")["orders"]]
    assert len(wire) == 50 and wire.startswith(ref[:33]) and cl.order_status(ref) == "ALLOCATED"
    control(sandbox, "dispatch", {"order_ref": wire, "parcels": [{"carrier": "DPD", "tracking_number": "T1"}]})
    [d] = cl.dispatches_for(ref)
    assert d.order_ref == ref and d.warehouse_ref == ack.warehouse_ref
    assert [x.order_ref for x in cl.dispatches_since("").items] == [ref]


def test_a_rejected_goods_out_says_why(cl, cl_conn):
    cl_conn.options = {**OPTIONS, "warehouse_id": "NOWHERE"}
    with pytest.raises(errors.BadDataError, match="warehouse_id"):
        ClarusConnector(cl_conn).send_order(order("ORD-5"))


def test_cancellation_as_clarus_allows_it(cl, sandbox):
    cl.sync_products([WarehouseProduct("SKU-A"), WarehouseProduct("SKU-B")])
    cl.send_order(order("PEND"))  # nothing in stock: PENDING → deleted on cancel
    assert cl.cancel_order("PEND") == "DELETED" and cl.order_status("PEND") is None
    control(
        sandbox,
        "seed_stock",
        {
            "rows": [
                {"sku": "SKU-A", "location": "DC1", "quantity": 9},
                {"sku": "SKU-B", "location": "DC1", "quantity": 9},
            ]
        },
    )
    cl.send_order(order("ALLOC"))
    assert control(sandbox, "state")["allocated"] == {"SKU-A@DC1": 2, "SKU-B@DC1": 1}
    assert cl.cancel_order("ALLOC") == "CANCELLED" and control(sandbox, "state")["allocated"] == {}
    cl.send_order(order("SHIPPED"))
    control(sandbox, "dispatch", {"order_ref": "SHIPPED"})
    with pytest.raises(errors.PermanentError, match="already dispatched"):
        cl.cancel_order("SHIPPED")
    with pytest.raises(errors.NotFoundError):
        cl.cancel_order("NOPE")
    assert cl.send_order(order("ALLOC")).duplicate is False  # a cancelled goods out is not a duplicate


def test_completed_goods_outs_are_the_dispatches_event_and_poll(cl, sandbox):
    cl.sync_products([WarehouseProduct("SKU-A"), WarehouseProduct("SKU-B")])
    control(
        sandbox,
        "seed_stock",
        {
            "rows": [
                {"sku": "SKU-A", "location": "DC1", "quantity": 9},
                {"sku": "SKU-B", "location": "DC1", "quantity": 9},
            ]
        },
    )
    ack = cl.send_order(order("D-1"))
    picked = control(
        sandbox,
        "dispatch",
        {"order_ref": "D-1", "close_manifest": False, "parcels": [{"carrier": "DPD", "tracking_number": "T1"}]},
    )
    assert list(cl.dispatches_since("").items) == [] and cl.dispatches_for("D-1") == []  # picked is not dispatched
    emu = sandbox.emulators["clarus"]
    with emu.lock:
        picked_record = emu._goods_out_record(emu.goods_outs[str(picked["manifest_id"])])
    assert list(cl.parse_dispatch_webhook(picked_record)) == []  # an event about a not-completed order: no dispatch
    control(sandbox, "close_manifest", {"manifest_id": picked["manifest_id"]})
    with emu.lock:
        record = emu._goods_out_record(emu.goods_outs[str(picked["manifest_id"])])
    [d] = cl.parse_dispatch_webhook(record)
    assert (d.order_ref, d.warehouse_ref, d.complete, d.parcels[0].tracking_number) == (
        "D-1",
        ack.warehouse_ref,
        True,
        "T1",
    )
    assert sorted(d.parcels[0].lines) == [("SKU-A", 2), ("SKU-B", 1)] and d.dispatched_at is not None
    page = cl.dispatches_since("")  # the poll fallback finds the same dispatch
    assert [x.ref for x in page.items] == [d.ref] and page.cursor
    assert list(cl.dispatches_since(page.cursor).items)[0].ref == d.ref  # at the cursor: again (the hub deduplicates)
    assert [x.ref for x in cl.dispatches_for("D-1")] == [d.ref]
    broken = {
        "data": {
            "type": "goods_outs",
            "id": 9,
            "attributes": {
                "reference": "D-9",
                "goods_out_status_code": "COMPLETED",
                "actual_date_of_dispatch": "soon",
                "lines": [],
            },
        }
    }
    assert list(cl.parse_dispatch_webhook(broken)) == [] and cl.parse_dispatch_webhook(broken).rejected
    with pytest.raises(errors.BadDataError):
        cl.parse_dispatch_webhook({"data": {"type": "stocks"}})


def test_stock_from_graphql_in_the_hubs_states(cl, sandbox):
    control(
        sandbox,
        "seed_stock",
        {
            "rows": [
                {"sku": "A", "location": "DC1", "state": "available", "quantity": 7},
                {"sku": "A", "location": "DC1", "state": "inspection", "quantity": 2},
                {"sku": "B", "location": "DC2", "state": "damaged", "quantity": 3},
                {"sku": "B", "location": "DC2", "state": "available", "quantity": 1},
            ]
        },
    )
    got = {(c.sku, c.location, c.state): c.quantity for c in cl.stock_changes("").items}
    assert got == {
        ("A", "DC1", "available"): 7,
        ("A", "DC1", "inspection"): 2,
        ("B", "DC2", "damaged"): 3,
        ("B", "DC2", "available"): 1,
    }
    cl.sync_products([WarehouseProduct("A"), WarehouseProduct("B")])
    wo = WarehouseOrder(
        "S-1",
        "1",
        "web",
        [WarehouseOrderLine("1", "A", 3)],
        Address(first_name="X", street="1", postal_code="P", country="GB"),
        "STD",
    )
    cl.send_order(wo)
    assert {(c.sku, c.state): c.quantity for c in cl.stock_changes("").items}[
        ("A", "available")
    ] == 4  # allocation excluded
    # a hold released: the stock event names the record, the re-read reports 0 in inspection
    control(sandbox, "seed_stock", {"rows": [{"sku": "A", "location": "DC1", "state": "inspection", "quantity": 0}]})
    changes = {
        (c.sku, c.state): c.quantity
        for c in cl.parse_stock_webhook(
            {
                "data": {
                    "type": "stocks",
                    "id": "x",
                    "attributes": {"product": {"code": "A"}, "warehouse": {"id": "DC1"}},
                }
            }
        )
    }
    assert changes == {("A", "available"): 4, ("A", "inspection"): 0, ("A", "damaged"): 0}
    assert {(c.sku, c.location, c.state) for c in cl.stock_snapshot(["B"])} == {
        ("B", "DC2", s) for s in ("available", "inspection", "damaged")
    }
    emu = sandbox.emulators["clarus"]
    with emu.lock:
        emu.stock[("C", "DC1", "lost")] = 1
    assert ("C", "lost") in {
        (c.sku, c.state) for c in cl.stock_changes("").items
    }  # unknown status carried raw: the hub rejects it
    with pytest.raises(errors.BadDataError):
        cl.parse_stock_webhook({"data": {"type": "goods_outs"}})


def test_webhook_identification_headers(cl, cl_conn):
    assert cl.verify_webhook(b"{}", HEADERS)
    assert cl.verify_webhook(
        b"{}", {**HEADERS, "X-ClarusWMS-Domain": "https://demo.claruswms.co.uk/"}
    )  # trailing slash
    for name, value in (
        ("X-ClarusWMS-Subdomain", "acme"),
        ("X-ClarusWMS-Automation-ID", "7"),
        ("X-ClarusWMS-API-Domain", ""),
    ):
        assert not cl.verify_webhook(b"{}", {**HEADERS, name: value}), name
    cl_conn.options = {**OPTIONS, "webhook_integration_id": "723"}
    strict = ClarusConnector(cl_conn)
    assert not strict.verify_webhook(b"{}", HEADERS) and strict.verify_webhook(
        b"{}", {**HEADERS, "X-ClarusWMS-Integration-ID": "723"}
    )
    cl_conn.options = {"subdomain": "demo"}
    assert not ClarusConnector(cl_conn).verify_webhook(b"{}", HEADERS)  # nothing configured: refused


def test_a_store_fulfilment_is_refused_plainly(cl):
    from connectors.base import Fulfilment

    with pytest.raises(errors.PermanentError, match="no published API"):
        cl.send_fulfilment(Fulfilment(order_ref="ORD-1", fulfilment_ref="f1", lines=[("SKU-A", 1)]))


def test_the_acknowledgement_names_where_the_goods_out_is_allocated(cl, sandbox):
    """Issue 20, item 5: the hub releases an order's holds on a moved figure where the master allocated it; a goods out
    is allocated at its own warehouse, so the acknowledgement (new, and the look-up of an existing one) names it for
    every picked line — never the bundle's paperwork line."""
    control(
        sandbox,
        "seed_stock",
        {
            "rows": [
                {"sku": "SKU-A", "location": "DC1", "quantity": 5},
                {"sku": "SKU-B", "location": "DC1", "quantity": 5},
            ]
        },
    )
    ack = cl.send_order(order("ORD-AL"))
    wh = str(OPTIONS["warehouse_id"])
    assert ack.allocations == {"SKU-A": wh, "SKU-B": wh}
    assert cl.send_order(order("ORD-AL")).allocations == {"SKU-A": wh, "SKU-B": wh}  # the duplicate, looked up
