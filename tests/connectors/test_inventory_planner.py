"""Inventory Planner connector on its published shapes: the Reports / Stock Orders APIs against the emulator
over real HTTP, and the Advanced CSV connector's SFTP upload against a real SFTP server the test starts."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from connectors import errors
from connectors.base import DemandLine, PlannerVariant, PlannerWarehouse
from connectors.inventory_planner import (
    SALES_ORDER_COLUMNS,
    InventoryPlannerConnector,
    csv_text,
    line_id,
    parse_csv,
    sales_order_row,
)
from connectors.registry import api_notice, get_connector
from tests.support.sandbox import controller
from tests.support.sandbox import faults


control = controller("inventory_planner")


@pytest.fixture
def ip_conn(db, sandbox):
    from integration_hub.core.models import Connection

    conn = Connection(
        name="ip-test",
        system_type="inventory_planner",
        base_url=f"{sandbox.url}/inventory_planner",
        client_id="demo-account",
        options={"page_size": 2, "currency": "GBP"},
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
        max_retries=4,
    )
    conn.set_secret("ip-demo-key")
    conn.save()
    return conn


@pytest.fixture
def ip(ip_conn):
    c = InventoryPlannerConnector(ip_conn)
    c.client.backoff_base = 0.01
    return c


def sftp_conn(ip_conn, server, monkeypatch, **extra):
    monkeypatch.setenv("HUB_CONN_IP_SFTP_PASSWORD", server.password)
    ip_conn.options = {
        **ip_conn.options,
        "delivery": "sftp",
        "sftp_host": server.host,
        "sftp_port": server.port,
        "sftp_username": server.username,
        "sftp_password_env": "HUB_CONN_IP_SFTP_PASSWORD",
        "sftp_host_key": server.host_key_line,
        **extra,
    }
    ip_conn.save()
    c = InventoryPlannerConnector(ip_conn)
    c.client.backoff_base = 0.01
    return c


def when(day=1):
    return datetime(2026, 11, day, 9, 30, tzinfo=timezone.utc)


def test_registry_builds_planner_and_the_admin_names_its_documents(ip_conn):
    assert isinstance(get_connector(ip_conn, fresh=True), InventoryPlannerConnector)
    modelled, text = api_notice("inventory_planner")
    assert not modelled and "help.inventory-planner.com" in text


def test_sales_orders_cannot_be_posted_the_emulator_refuses(ip, sandbox):
    r = ip.client.session.post(
        f"{sandbox.url}/inventory_planner/api/v1/sales-orders",
        json={"sales-orders": []},
        headers={"Authorization": "ip-demo-key", "Account": "demo-account"},
        timeout=5,
    )
    assert r.status_code == 404 and control(sandbox, "state")["refused_posts"] == 1
    ip.push_demand([DemandLine("O1", "A", 1, "web", "DC1", currency="GBP")])  # url delivery: nothing posted
    assert control(sandbox, "state")["refused_posts"] == 1


def test_sales_order_rows_follow_the_published_columns():
    sale = DemandLine(
        "uk:O1",
        "A",
        2,
        "uk-web",
        "DC1",
        ordered_at=when(),
        unit_price_cents=1250,
        currency="gbp",
        bundle_sku="KIT",
        promotion_codes=["P1"],
    )
    ret = DemandLine("uk:O1", "A", 1, "uk-web", "DC1", ordered_at=when(2), is_return=True, currency="GBP")
    cancelled = DemandLine("uk:O2", "B", 0, "uk-web", "DC1", ordered_at=when(), currency="GBP")
    rows = parse_csv(csv_text(SALES_ORDER_COLUMNS, [sales_order_row(x, when(3)) for x in (sale, ret, cancelled)]))
    assert list(rows[0]) == list(SALES_ORDER_COLUMNS)
    assert rows[0] == {
        "ORDER_ID": "uk:O1|A|KIT|sale",
        "ID": "uk:O1",
        "VARIANT_ID": "A",
        "WAREHOUSE": "DC1",
        "CURRENCY": "GBP",
        "QUANTITY": "2",
        "PRICE": "12.50",
        "CREATED_AT": "2026-11-01 09:30:00",
        "REMOVED": "false",
        "UPDATED_AT": "2026-11-03 09:30:00",
        "REFERENCE": "uk:O1",
        "REFERENCE2": "uk-web",
    }
    assert rows[1]["QUANTITY"] == "-1" and rows[1]["ORDER_ID"] == line_id(ret) == "uk:O1|A||return"
    assert rows[2]["REMOVED"] == "true"  # a cancelled line is soft-removed, not sent as a sale of 0


def test_lines_without_currency_or_warehouse_are_refused(ip_conn):
    ip_conn.options = {}
    c = InventoryPlannerConnector(ip_conn)
    with pytest.raises(errors.BadDataError, match="currency"):
        c.push_demand([DemandLine("O1", "A", 1, "web", "DC1")])
    with pytest.raises(errors.BadDataError):
        c.push_demand([DemandLine("O1", "A", 1, "web", "", currency="GBP")])
    ip_conn.options = {"delivery": "ftp"}
    with pytest.raises(errors.PermanentError, match="delivery"):
        InventoryPlannerConnector(ip_conn)


def test_variants_warehouse_blocks_and_vendor_id(ip, sandbox):
    """``warehouse`` is a list of per-warehouse blocks (one recommendation each); the supplier is the
    vendor's ``vendor_id``, not ``vendor_name`` (the vendor's title for the variant)."""
    control(
        sandbox,
        "seed_variants",
        {
            "variants": [
                {"sku": "A", "warehouse": "DC1", "stock": 0, "vendor": "Acme"},
                {"sku": "A", "warehouse": "DC2", "stock": 0, "vendor": "Acme"},
                {"sku": "B", "warehouse": "DC1", "stock": 5},
            ]
        },
    )
    emu = sandbox.emulators["inventory_planner"]
    with emu.lock:
        emu.lines = {
            "x1": {"sku": "A", "warehouse": "DC1", "quantity": 3},
            "x2": {"sku": "A", "warehouse": "DC2", "quantity": 4},
            "x3": {"sku": "B", "warehouse": "DC1", "quantity": 9},
        }
    recs = {(r.sku, r.location): r for r in ip.recommendations()}  # page_size 2: paged
    assert {k: r.recommended_quantity for k, r in recs.items()} == {("A", "DC1"): 3, ("A", "DC2"): 4, ("B", "DC1"): 4}
    assert recs[("A", "DC1")].supplier == "acme" and recs[("B", "DC1")].supplier == ""
    assert recs[("A", "DC1")].raw["vendors"][0]["vendor_name"] == "Acme item A"  # kept, but not the supplier


def test_a_variant_without_per_warehouse_numbers():
    c = InventoryPlannerConnector.__new__(InventoryPlannerConnector)
    [one] = c.recommendations_from_variant({"sku": "A", "replenishment": 7, "warehouse": [{"id": "W9"}], "vendors": []})
    assert (one.location, one.recommended_quantity) == ("W9", 7)
    assert c.recommendations_from_variant({"sku": "A", "replenishment": 0}) == []
    assert c.recommendations_from_variant({"replenishment": 3}) == []


def test_stock_orders_from_the_stock_orders_api(ip, sandbox):
    control(
        sandbox,
        "seed_purchase_orders",
        {
            "orders": [
                {
                    "id": "po1",
                    "reference": "PO-1001",
                    "status": "open",
                    "type": "po",
                    "vendor": "Acme",
                    "warehouse": "DC1",
                    "expected_date": "2026-12-10T00:00:00Z",
                    "items": [{"sku": "A", "replenishment": 10, "received_qty": 4}],
                },
                {
                    "id": "tr1",
                    "reference": "TR-7",
                    "status": "sent",
                    "type": "transfer",
                    "source_warehouse": "DC2",
                    "warehouse": "DC1",
                    "items": [{"sku": "B", "replenishment": 3}],
                },
                {"id": "as1", "type": "assembly", "expected_date": "soon"},
            ]
        },
    )
    orders = {o.ref: o for o in ip.stock_orders()}
    assert (
        orders["po1"].lines == [("A", 10, 4)] and orders["po1"].vendor == "Acme" and orders["po1"].expected_at.day == 10
    )
    assert orders["tr1"].kind == "transfer" and orders["tr1"].source_warehouse == "DC2"
    assert orders["as1"].expected_at is None and orders["as1"].kind == "assembly"


def test_auth_headers_and_errors(ip_conn, ip, sandbox):
    faults(sandbox, "inventory_planner", fail_next=[503])
    assert ip.recommendations() == []  # retried through the 503
    ip_conn.client_id = "other-account"
    with pytest.raises(errors.PermanentError):
        InventoryPlannerConnector(ip_conn).recommendations()


# --- Advanced CSV connector: SFTP ---------------------------------------------------------------------------
def test_sftp_upload_files_in_order_and_the_planner_ingests_them(ip_conn, sandbox, sftp_server, monkeypatch):
    c = sftp_conn(ip_conn, sftp_server, monkeypatch)
    assert c.demand_delivery == "push"
    lines = [
        DemandLine("O1", "A", 3, "web", "DC1", ordered_at=when(), unit_price_cents=500, currency="GBP"),
        DemandLine("O1", "A", 1, "web", "DC1", ordered_at=when(), is_return=True, currency="GBP"),
    ]
    variants = [PlannerVariant("A", title="Mug", stock={"DC1": 1})]
    assert c.push_demand(lines, variants, [PlannerWarehouse("DC1", "Leeds DC", "GBP")]) == 2
    order = [p.parent.name for p in sorted(sftp_server.root.rglob("*.csv"), key=lambda p: p.stat().st_mtime_ns)]
    assert order == ["warehouses", "variants", "variant_warehouses", "sales_orders"]  # reference data first
    assert not list(sftp_server.root.rglob("*.part"))  # written under a temporary name, then renamed
    for kind in order:  # the planner's nightly sync, oldest file first
        for f in sftp_server.files(kind):
            assert control(sandbox, "ingest", {"kind": kind, "text": f.read_text()})["processed"], f
    state = control(sandbox, "state")
    assert state["lines"]["O1|A||sale"]["quantity"] == 3 and state["lines"]["O1|A||return"]["quantity"] == -1
    assert state["lines"]["O1|A||sale"]["currency"] == "GBP" and state["warehouses"] == ["DC1"]
    assert {(r.sku, r.location): r.recommended_quantity for r in c.recommendations()} == {
        ("A", "DC1"): 1
    }  # 3 − 1 − 1 in stock

    # a second upload never reuses a file name; a cancelled line goes as REMOVED and leaves the planner
    c.push_demand(
        [DemandLine("O1", "A", 0, "web", "DC1", ordered_at=when(), currency="GBP")], variants, [PlannerWarehouse("DC1")]
    )
    newest = sftp_server.files("sales_orders")[-1]
    assert len(sftp_server.files("sales_orders")) == 2 and parse_csv(newest.read_text())[0]["REMOVED"] == "true"
    assert control(sandbox, "ingest", {"kind": "sales_orders", "text": newest.read_text()})["processed"]
    assert "O1|A||sale" not in control(sandbox, "state")["lines"]


def test_sales_orders_before_their_variants_are_not_processed(sandbox):
    text = csv_text(SALES_ORDER_COLUMNS, [sales_order_row(DemandLine("O1", "Z", 1, "web", "DC9", currency="GBP"))])
    res = control(sandbox, "ingest", {"kind": "sales_orders", "text": text})
    assert not res["processed"] and "loaded first" in res["reason"]
    res = control(sandbox, "ingest", {"kind": "sales_orders", "text": text.replace("REFERENCE2", "CHANNEL")})
    assert not res["processed"] and "unsupported ['CHANNEL']" in res["reason"]


def test_sftp_refuses_a_host_with_another_key_and_a_wrong_password(ip_conn, sftp_server, monkeypatch):
    import paramiko

    other = paramiko.ECDSAKey.generate()
    lines = [DemandLine("O1", "A", 1, "web", "DC1", currency="GBP")]
    with pytest.raises(errors.PermanentError, match="host key"):
        sftp_conn(
            ip_conn, sftp_server, monkeypatch, sftp_host_key=f"{other.get_name()} {other.get_base64()}"
        ).push_demand(lines)
    c = sftp_conn(ip_conn, sftp_server, monkeypatch)
    monkeypatch.setenv("HUB_CONN_IP_SFTP_PASSWORD", "wrong")
    with pytest.raises(errors.PermanentError, match="refused"):
        c.push_demand(lines)
    assert not list(sftp_server.root.rglob("*.csv"))
    ip_conn.options = {k: v for k, v in ip_conn.options.items() if k != "sftp_host_key"}
    with pytest.raises(errors.PermanentError, match="sftp_host_key"):
        InventoryPlannerConnector(ip_conn).push_demand(lines)


def test_sftp_server_down_is_retryable(ip_conn, sftp_server, monkeypatch):
    c = sftp_conn(ip_conn, sftp_server, monkeypatch, sftp_timeout=2)
    sftp_server.stop()
    with pytest.raises(errors.RetryableError, match="SFTP upload"):
        c.push_demand([DemandLine("O1", "A", 1, "web", "DC1", currency="GBP")])
