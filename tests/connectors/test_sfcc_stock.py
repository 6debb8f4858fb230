"""SFCC stock on OCAPI product inventory records: the sellable figure is ``ats`` = allocation + pre-order /
back-order allocation + the turnover (the site's own order decrements) since ``allocation.reset_date``; the hub
writes only the allocation, reset at the instant its figure was computed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import requests

from connectors import errors
from connectors.base import InventoryTarget

from .conftest import control


def _order(sandbox, sku, qty, channel="inv_uk"):
    return control(
        sandbox, "create_orders", {"orders": [{"channel": channel, "lines": [{"sku": sku, "quantity": qty}]}]}
    )["ids"][0]


def _record(sandbox, sku, list_id="inv_uk"):
    return control(sandbox, "record", {"list": list_id, "sku": sku})


def _data(sf, method, list_id, sku, body=None):
    return sf.client.request(method, f"{sf._records_path(list_id)}/{sku}", json=body, ok=range(200, 600), retries=0)


def test_order_placed_while_the_figure_is_on_its_way_is_still_subtracted(sf, sandbox):
    """The oversell race: the hub computes 10 for SF-001, a shopper buys 2 before the write lands. SFCC must
    end up selling 8 — the write resets the turnover at the instant the hub's figure holds, not at its arrival."""
    computed_at = datetime.now(UTC)
    _order(sandbox, "SF-001", 2)  # placed after the hub's snapshot, before its write
    [res] = sf.set_stock([InventoryTarget("SF-001", "inv_uk", 10, as_of=computed_at)])
    assert res.ok and res.quantity == 10
    rec = _record(sandbox, "SF-001")
    assert rec["allocation"]["amount"] == 10 and rec["inventory_turnover"] == -2 and rec["ats"] == 8
    assert [s.quantity for s in sf.get_stock(["SF-001"], "inv_uk")] == [8]  # drift reads what the site sells
    # the hub then captures the order and pushes its new figure (10 − 2), computed after the order: no double count
    [res] = sf.set_stock([InventoryTarget("SF-001", "inv_uk", 8, as_of=datetime.now(UTC))])
    assert _record(sandbox, "SF-001")["ats"] == 8


def test_orders_placed_before_the_snapshot_are_not_subtracted_twice(sf, sandbox):
    _order(sandbox, "SF-002", 1)  # the hub has seen it: its figure already carries it
    time.sleep(0.002)  # reset_date has milliseconds: an order in the same millisecond counts (never oversell)
    sf.set_stock([InventoryTarget("SF-002", "inv_uk", 5, as_of=datetime.now(UTC))])
    assert _record(sandbox, "SF-002")["ats"] == 5
    assert control(sandbox, "state", {})["inventory"]["inv_uk"]["SF-002"] == 5


def test_a_write_keeps_the_records_other_settings(sf, sandbox):
    """Only the allocation is the hub's: pre-order / back-order settings and the perpetual flag set in
    Business Manager survive every push (a PUT would replace them)."""
    r = _data(
        sf,
        "PATCH",
        "inv_uk",
        "SF-003",
        {
            "pre_order_back_order_handling": "backorder",
            "pre_order_back_order_allocation": 4,
            "in_stock_date": "2027-01-01T00:00:00Z",
        },
    )
    assert r.status_code == 200, r.text
    sf.set_stock([InventoryTarget("SF-003", "inv_uk", 6, as_of=datetime.now(UTC))])
    rec = _record(sandbox, "SF-003")
    assert rec["pre_order_back_order_handling"] == "backorder" and rec["pre_order_back_order_allocation"] == 4
    assert rec["in_stock_date"] == "2027-01-01T00:00:00Z" and rec["allocation"]["amount"] == 6 and rec["ats"] == 10


def test_a_missing_record_is_created(sf, sandbox):
    control(sandbox, "seed_catalog", {"channels": ["inv_new"], "skus": [], "quantity": 0})
    before = datetime.now(UTC) - timedelta(seconds=5)
    [res] = sf.set_stock([InventoryTarget("SF-010", "inv_new", 3, as_of=before)])
    assert res.ok
    rec = _record(sandbox, "SF-010", "inv_new")
    assert rec["ats"] == 3 and rec["allocation"]["reset_date"].startswith(before.strftime("%Y-%m-%dT%H:%M:%S"))


def test_the_sandbox_accepts_only_what_ocapi_accepts(sf, sandbox):
    bad = [
        ({"allocation": {"amount": 1, "reset_date": "yesterday"}}, "InvalidDocumentException"),
        ({"ats": 5}, "PropertyConstraintViolationException"),
        ({"allocation": {"amount": -1}}, "InvalidDocumentException"),
        ({"pre_order_back_order_handling": "sometimes"}, "InvalidEnumValueException"),
    ]
    for body, fault in bad:
        r = _data(sf, "PATCH", "inv_uk", "SF-004", body)
        assert r.status_code == 400 and r.json()["fault"]["type"] == fault, (body, r.text)
    control(sandbox, "seed_catalog", {"channels": ["inv_new"], "skus": [], "quantity": 0})
    r = _data(sf, "PATCH", "inv_new", "SF-004", {"allocation": {"amount": 1}})
    assert r.status_code == 404 and r.json()["fault"]["type"] == "ProductInventoryRecordNotFoundException"
    # PUT replaces: the settings not in the body go back to their defaults
    assert _data(sf, "PATCH", "inv_uk", "SF-004", {"perpetual_flag": True}).status_code == 200
    assert _data(sf, "PUT", "inv_uk", "SF-004", {"allocation": {"amount": 2}}).status_code == 200
    assert _record(sandbox, "SF-004")["perpetual_flag"] is False


def test_cancelled_order_gives_its_units_back(sf, sandbox):
    sf.set_stock([InventoryTarget("SF-005", "inv_uk", 4, as_of=datetime.now(UTC))])
    no = _order(sandbox, "SF-005", 3)
    assert _record(sandbox, "SF-005")["ats"] == 1
    control(sandbox, "cancel_order", {"order_no": no})
    assert _record(sandbox, "SF-005")["ats"] == 4


def test_bad_quantity_is_a_bad_data_result(sf, sandbox):
    [res] = sf.set_stock([InventoryTarget("SF-006", "inv_uk", -1)])
    assert not res.ok and isinstance(res.error, errors.BadDataError)
    assert requests.get(f"{sandbox.url}/_sandbox/health", timeout=5).status_code == 200
