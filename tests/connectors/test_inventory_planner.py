"""Inventory Planner connector against the Inventory Planner emulator, over real HTTP."""
from __future__ import annotations

import pytest
import requests

from connectors import errors
from connectors.base import DemandLine
from connectors.inventory_planner import InventoryPlannerConnector, line_id
from connectors.registry import get_connector


def control(sandbox, action, payload=None):
    r = requests.post(f"{sandbox.url}/_sandbox/inventory_planner/{action}", json=payload or {}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def ip_conn(db, sandbox):
    from integration_hub.core.models import Connection

    conn = Connection(name="ip-test", system_type="inventory_planner", base_url=f"{sandbox.url}/inventory_planner",
                      client_id="demo-account", options={"batch_size": 100, "page_size": 2},
                      rate_limit_per_second=1000, rate_limit_burst=1000, timeout_seconds=5, max_retries=4)
    conn.set_secret("ip-demo-key")
    conn.save()
    return conn


@pytest.fixture
def ip(ip_conn):
    c = InventoryPlannerConnector(ip_conn)
    c.client.backoff_base = 0.01
    return c


def test_registry_builds_planner(ip_conn):
    assert isinstance(get_connector(ip_conn, fresh=True), InventoryPlannerConnector)


def test_push_demand_batches_and_upserts_by_line(ip, sandbox):
    lines = [DemandLine(order_ref=f"O{i}", sku="A", quantity=1, channel="uk-web", location="DC1", promotion_codes=["P1"])
             for i in range(250)]
    assert ip.push_demand(lines) == 250
    state = control(sandbox, "state")
    assert state["demand_lines"] == 250 and state["posts"] == 3
    one = state["lines"][line_id(lines[0])]
    assert one["channel"] == "uk-web" and one["warehouse"] == "DC1" and one["promotion_codes"] == ["P1"] and one["type"] == "sale"
    assert ip.push_demand(lines[:10]) == 10  # replay: updated, not duplicated
    assert control(sandbox, "state")["demand_lines"] == 250


def test_return_lines_are_negative_and_reduce_demand(ip, sandbox):
    control(sandbox, "seed_variants", {"variants": [{"sku": "A", "warehouse": "DC1", "stock": 1, "vendor": "Acme"}]})
    ip.push_demand([DemandLine("O1", "A", 5, "uk-web", "DC1"), DemandLine("O1", "A", 2, "uk-web", "DC1", is_return=True),
                    DemandLine("O2", "KIT-C", 1, "uk-web", "DC1", bundle_sku="KIT")])
    lines = control(sandbox, "state")["lines"]
    ret = lines["O1|A||return"]
    assert ret["quantity"] == -2 and ret["type"] == "return"
    assert lines["O2|KIT-C|KIT|sale"]["bundle_sku"] == "KIT"
    recs = {(r.sku, r.location): r for r in ip.recommendations()}
    assert recs[("A", "DC1")].recommended_quantity == 2  # 5 sold − 2 returned − 1 in stock
    assert recs[("A", "DC1")].supplier == "Acme" and recs[("A", "DC1")].kind == "purchase"
    assert recs[("KIT-C", "DC1")].recommended_quantity == 1


def test_recommendations_page(ip, sandbox):
    ip.push_demand([DemandLine(f"O{i}", f"S{i}", 3, "uk-web", "DC1") for i in range(5)])
    assert sorted(r.sku for r in ip.recommendations()) == [f"S{i}" for i in range(5)]


def test_auth_headers_and_errors(ip_conn, ip, sandbox):
    requests.post(f"{sandbox.url}/_sandbox/inventory_planner/faults", json={"fail_next": [503]}, timeout=5)
    assert ip.push_demand([DemandLine("O1", "A", 1, "c")]) == 1
    bad = DemandLine("O1", "", 1, "c")
    with pytest.raises(errors.BadDataError):
        ip.push_demand([bad])
    ip_conn.client_id = "other-account"
    with pytest.raises(errors.PermanentError):
        InventoryPlannerConnector(ip_conn).recommendations()
