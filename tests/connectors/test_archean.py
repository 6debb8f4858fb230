"""Archean R247 Stock connector against the Archean emulator, over real HTTP."""

from __future__ import annotations

import pytest

from connectors import errors
from connectors.archean import ArcheanConnector
from connectors.base import Address, Fulfilment, WarehouseOrder, WarehouseOrderLine
from connectors.registry import get_connector
from tests.support.sandbox import controller
from tests.support.sandbox import faults
from tests.support import factories


control = controller("archean")


@pytest.fixture
def ar_conn(db, sandbox):
    from integration_hub.core.models import Connection

    conn = Connection(
        name="archean-test",
        system_type="archean",
        base_url=f"{sandbox.url}/archean",
        options={"page_size": 2},
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
        max_retries=4,
    )
    conn.set_secret("archean-demo-key")
    conn.save()
    return conn


@pytest.fixture
def ar(ar_conn):
    c = ArcheanConnector(ar_conn)
    c.client.backoff_base = 0.01
    return c


def order(ref="R-1") -> WarehouseOrder:
    return WarehouseOrder(
        order_ref=ref,
        order_number="5001",
        channel="uk-web",
        lines=[WarehouseOrderLine("1", "ITEM-A", 2), WarehouseOrderLine("2", "ITEM-B", 1)],
        shipping_address=Address(
            first_name="Bo", street="3 Mill Ln", postal_code="LS1 1AA", city="Leeds", country="GB"
        ),
        shipping_method="RM48",
        gift_message="Cheers",
        delivery_notes="Porch",
    )


def test_registry_builds_archean(ar_conn):
    assert isinstance(get_connector(ar_conn, fresh=True), ArcheanConnector)


def test_send_order_idempotency_key(ar, sandbox):
    ack = ar.send_order(order())
    assert ack.warehouse_ref.startswith("SO") and not ack.duplicate
    again = ar.send_order(order())
    assert again.duplicate and again.warehouse_ref == ack.warehouse_ref
    state = control(sandbox, "state")
    assert len(state["orders"]) == 1 and state["order_receipts"]["R-1"] == 2
    assert state["orders"]["R-1"]["request"]["gift_message"] == "Cheers"
    assert ar.order_status("R-1") == "OPEN" and ar.order_status("nope") is None


def test_send_order_rejected_with_detail(ar):
    bad = order("R-2")
    bad.shipping_address = Address()
    with pytest.raises(errors.BadDataError, match="invalid_delivery"):
        ar.send_order(bad)


def test_item_fulfilments_are_the_only_dispatch_trigger(ar, sandbox):
    ar.send_order(order())
    control(sandbox, "set_order_status", {"order_ref": "R-1", "status": "SHIPPED"})
    assert list(ar.dispatches_since("").items) == []  # a status alone is no evidence of shipment
    control(
        sandbox,
        "dispatch",
        {"order_ref": "R-1", "parcels": [{"carrier": "RM", "tracking_number": "RM1", "lines": [["ITEM-A", 2]]}]},
    )
    control(sandbox, "dispatch", {"order_ref": "R-1", "parcels": [{"carrier": "RM", "tracking_number": "RM2"}]})
    page = ar.dispatches_since("")
    assert [d.ref for d in page.items] == ["IF0000001", "IF0000002"]
    first, second = page.items
    assert first.order_ref == "R-1" and not first.complete and first.parcels[0].lines == [("ITEM-A", 2)]
    assert second.complete and second.parcels[0].tracking_number == "RM2" and second.parcels[0].lines == [("ITEM-B", 1)]
    assert ar.dispatches_since(page.cursor).items == []


def test_status_push_is_not_a_dispatch(ar):
    status = ar.parse_dispatch_webhook(
        {"type": "sales_order.status_changed", "data": [{"sales_order_reference": "R-1", "status": "SHIPPED"}]}
    )
    assert list(status) == [] and status.rejected == []  # acknowledged, never a Dispatch
    with pytest.raises(errors.BadDataError):
        ar.parse_dispatch_webhook({"type": "something.else", "data": []})
    batch = ar.parse_dispatch_webhook(
        {
            "type": "item_fulfilment.created",
            "data": [
                {
                    "id": "IF1",
                    "sales_order_reference": "R-1",
                    "lines": [{"item_code": "A", "quantity": 1}],
                    "tracking_number": "T",
                },
                {"id": "IF2", "sales_order_reference": "R-1", "lines": []},
            ],
        }
    )
    assert [d.ref for d in batch] == ["IF1"] and [r.ref for r in batch.rejected] == ["IF2"]


def test_stock_changes_pages_and_buckets(ar, sandbox):
    control(
        sandbox,
        "set_stock",
        {
            "rows": [
                {"sku": "ITEM-A", "location": "S01", "state": "available", "quantity": 7},
                {"sku": "ITEM-A", "location": "S01", "state": "inspection", "quantity": 1},
                {"sku": "ITEM-B", "location": "S02", "state": "damaged", "quantity": 2},
            ]
        },
    )
    p1 = ar.stock_changes("")
    p2 = ar.stock_changes(p1.cursor)
    assert p1.has_more and not p2.has_more
    got = [(c.sku, c.location, c.state, c.quantity) for c in p1.items + p2.items]
    assert got == [
        ("ITEM-A", "S01", "available", 7),
        ("ITEM-A", "S01", "inspection", 1),
        ("ITEM-B", "S02", "damaged", 2),
    ]
    assert ar.stock_changes(p2.cursor).items == []
    assert sorted((c.sku, c.quantity) for c in ar.stock_snapshot(["ITEM-A"])) == [("ITEM-A", 1), ("ITEM-A", 7)]


def test_stock_push_parse(ar):
    changes = ar.parse_stock_webhook(
        {
            "type": "stock.changed",
            "data": [
                {
                    "change_id": "C1",
                    "item_code": "A",
                    "store_code": "S01",
                    "bucket": "TRANSIT",
                    "on_hand": 3,
                    "changed_at": "2026-11-01T00:00:00Z",
                }
            ],
        }
    )
    assert (changes[0].state, changes[0].quantity, changes[0].ref) == ("in_transit", 3, "C1")
    with pytest.raises(errors.BadDataError):
        ar.parse_stock_webhook({"type": "stock.changed"})


def test_send_fulfilment_idempotent_and_not_on_the_dispatch_feed(ar, sandbox):
    ar.send_order(order())
    f = Fulfilment(order_ref="R-1", fulfilment_ref="store-7", lines=[("ITEM-A", 1)], location="S01")
    fid = ar.send_fulfilment(f)
    assert ar.send_fulfilment(f) == fid
    assert len(control(sandbox, "state")["external_fulfilments"]) == 1
    assert list(ar.dispatches_since("").items) == []


def test_bad_token_and_rate_limit(ar_conn, ar, sandbox):
    faults(sandbox, "archean", fail_next=[429])
    ar.stock_changes("")
    assert ar.client.stats.rate_limited == 1
    ar_conn.set_secret("bad")
    with pytest.raises(errors.PermanentError):
        ArcheanConnector(ar_conn).stock_changes("")


def test_intake_allocates_on_the_feed_cancel_returns_and_fulfilled_orders_refuse(ar, sandbox):
    control(sandbox, "seed_locations", {"locations": [{"id": "S1"}]})
    control(
        sandbox,
        "set_stock",
        {
            "rows": [
                {"sku": "ITEM-A", "location": "S1", "quantity": 5},
                {"sku": "ITEM-B", "location": "S1", "quantity": 2},
                {"sku": "KIT", "location": "S1", "quantity": 7},
            ]
        },
    )
    cursor = _drain(ar, "")[1]
    wo = order("R-A")
    wo.lines = [
        WarehouseOrderLine("1", "ITEM-A", 2),
        WarehouseOrderLine("2", "KIT", 1, pickable=False),
        WarehouseOrderLine("2.1", "ITEM-B", 1, parent_line_id="2"),
    ]
    ack = ar.send_order(wo)
    assert ack.received_at is not None
    assert [l["pickable"] for l in ar.order_body(wo)["lines"]] == [True, False, True]
    moved = _Page(*_drain(ar, cursor))
    assert {(c.sku, c.quantity) for c in moved.items} == {("ITEM-A", 3), ("ITEM-B", 1)}  # never the KIT header
    assert ar.cancel_order("R-A") == "CANCELLED"
    assert {(c.sku, c.quantity) for c in _drain(ar, moved.cursor)[0]} == {("ITEM-A", 5), ("ITEM-B", 2)}
    ar.send_order(order("R-B"))
    control(sandbox, "dispatch", {"order_ref": "R-B", "parcels": [{"tracking_number": "RM1"}]})
    with pytest.raises(errors.PermanentError):
        ar.cancel_order("R-B")
    (d,) = ar.dispatches_for("R-B")
    assert d.parcels[0].tracking_number == "RM1" and sorted(d.parcels[0].lines) == [("ITEM-A", 2), ("ITEM-B", 1)]
    with pytest.raises(errors.NotFoundError):
        ar.dispatches_for("nope")


class _Page:
    def __init__(self, items, cursor):
        self.items, self.cursor = items, cursor


def _drain(conn, cursor):
    """Every change after ``cursor`` (all pages) → (changes, the cursor at the end)."""
    items = []
    while True:
        page = conn.stock_changes(cursor)
        items += page.items
        cursor = page.cursor
        if not page.has_more:
            return items, cursor


# --- the modelled shape lives in one place -------------------------------------------------------------
def _shape_values(shape) -> set[str]:
    import dataclasses

    out = set()
    for f in dataclasses.fields(shape):
        v = getattr(shape, f.name)
        vals = v.values() if isinstance(v, dict) else v if isinstance(v, tuple) else [v]
        out.update(x for x in vals if isinstance(x, str))
        if isinstance(v, dict) and f.name == "states":
            out.update(v)  # the wire bucket names are the keys
    return out


def test_every_archean_wire_name_is_in_the_shape_block():
    import ast
    import inspect

    import connectors.archean as mod

    tree = ast.parse(inspect.getsource(mod))
    shape_cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ArcheanShape")
    inside = {id(n) for n in ast.walk(shape_cls)}
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body and isinstance(n.body[0], ast.Expr)
    }
    lookups = {
        id(n.slice) for n in ast.walk(tree) if isinstance(n, ast.Subscript)
    }  # shape["concept"]: the hub's own names
    wire = _shape_values(mod.SHAPE) - set(mod.SHAPE.states.values())  # hub inventory states are the hub's, too
    stray = sorted(
        {
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant)
            and isinstance(n.value, str)
            and id(n) not in inside | docstrings | lookups
            and n.value in wire
        }
    )
    assert stray == [], f"Archean wire names spelled outside ArcheanShape: {stray}"
    assert {"item_code", "/sales-orders", "SALEABLE", "Idempotency-Key", "on_hand"} <= wire


def test_a_tenant_shape_is_one_change(db, sandbox):
    from integration_hub.core.models import Connection

    conn = Connection(
        name="archean-tenant",
        system_type="archean",
        base_url=f"{sandbox.url}/archean",
        options={"shape": {"stock_row": {"quantity": "qty", "sku": "sku_code"}, "states": {"OK": "available"}}},
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
        max_retries=1,
    )
    conn.set_secret("archean-demo-key")
    conn.save()
    c = ArcheanConnector(conn)
    [change] = c.parse_stock_webhook(
        {"type": "stock.changed", "data": [{"sku_code": "X", "qty": 3, "store_code": "S1", "bucket": "OK"}]}
    )
    assert (change.sku, change.quantity, change.location, change.state) == ("X", 3, "S1", "available")
    assert c.shape.stock_row["location"] == "store_code"  # untouched fields keep the modelled names
    conn.options = {"shape": {"api": "/not-here"}}
    with pytest.raises(errors.NotFoundError):
        ArcheanConnector(conn).stock_changes("")
    conn.options = {"shape": {"no_such_field": 1}}
    with pytest.raises(errors.PermanentError, match="no_such_field"):
        ArcheanConnector(conn)


def test_admin_says_archean_is_modelled(role_client):

    ar = factories.connection("archean", "r247", base_url="http://127.0.0.1:1/archean")
    ct = factories.connection("commercetools", "shop", base_url="http://127.0.0.1:1/ct")
    admin = role_client("admin")
    page = admin.get(f"/admin/core/connection/{ar.pk}/change/").content.decode()
    assert "modelled on no published API" in page and "Archean R247 Stock" in page  # notice + system type help
    assert "ArcheanConnector is modelled" in page
    other = admin.get(f"/admin/core/connection/{ct.pk}/change/").content.decode()
    assert "CommercetoolsConnector is modelled" not in other
    assert "Modelled on no published API" in admin.get("/admin/core/connection/add/").content.decode()
