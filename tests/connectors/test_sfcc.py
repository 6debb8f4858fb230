"""SFCC connector against the SFCC emulator, over real HTTP."""
from __future__ import annotations

import pytest
import requests

from connectors import errors
from connectors.base import InventoryTarget, Parcel
from connectors.registry import get_connector
from connectors.sfcc import SFCCConnector

LISTS = ["inv_uk", "inv_eu"]
SKUS = [f"SF-{i:03d}" for i in range(1, 121)]


def control(sandbox, action, payload=None, prefix="sfcc"):
    r = requests.post(f"{sandbox.url}/_sandbox/{prefix}/{action}", json=payload or {}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def faults(sandbox, **switches):
    assert requests.post(f"{sandbox.url}/_sandbox/sfcc/faults", json=switches, timeout=5).status_code == 200


@pytest.fixture
def sf_conn(db, sandbox):
    from django.core.cache import cache

    from integration_hub.core.models import Connection

    cache.clear()
    conn = Connection(name="sfcc-test", system_type="sfcc", base_url=f"{sandbox.url}/sfcc",
                      auth_url=f"{sandbox.url}/sfcc/dwsso/oauth2/access_token", client_id="am-client",
                      options={"site_id": "RefArch", "default_inventory_list": "inv_uk"},
                      rate_limit_per_second=1000, rate_limit_burst=1000, timeout_seconds=5, max_retries=4)
    conn.set_secret("am-secret")
    conn.save()
    control(sandbox, "configure_client", {"client_id": "am-client", "client_secret": "am-secret"})
    control(sandbox, "seed_catalog", {"channels": LISTS, "skus": SKUS, "quantity": 3})
    return conn


@pytest.fixture
def sf(sf_conn):
    c = SFCCConnector(sf_conn)
    c.client.backoff_base = 0.01
    return c


def test_registry_builds_sfcc(sf_conn):
    assert isinstance(get_connector(sf_conn, fresh=True), SFCCConnector)


def test_set_stock_batches_per_inventory_list_and_is_absolute(sf, sandbox):
    emu = sandbox.emulators["sfcc"]
    targets = [InventoryTarget(sku=s, channel_ref="inv_uk", quantity=i) for i, s in enumerate(SKUS)]
    targets.append(InventoryTarget(sku="SF-001", channel_ref="inv_eu", quantity=42))
    before = emu.stats.by_route.copy()
    results = sf.set_stock(targets)
    assert all(r.ok for r in results) and len(results) == 121
    state = control(sandbox, "state", {})["inventory"]
    assert state["inv_uk"]["SF-120"] == 119 and state["inv_eu"]["SF-001"] == 42
    batch_calls = sum(v for k, v in emu.stats.by_route.items() if "batch" in k) - sum(v for k, v in before.items() if "batch" in k)
    assert batch_calls == 4  # 120 records in 3 batches of ≤ 50 for inv_uk, 1 for inv_eu
    # replaying the same absolute targets changes nothing
    sf.set_stock(targets)
    assert control(sandbox, "state", {})["inventory"]["inv_uk"]["SF-120"] == 119


def test_set_stock_per_record_errors(sf, sandbox):
    results = sf.set_stock([InventoryTarget("SF-001", "inv_uk", 5), InventoryTarget("NOPE", "inv_uk", 1),
                            InventoryTarget("SF-002", "inv_uk", -1), InventoryTarget("SF-003", "no_list", 1)])
    by = {(r.sku, r.channel_ref): r for r in results}
    assert by[("SF-001", "inv_uk")].ok
    assert isinstance(by[("NOPE", "inv_uk")].error, errors.NotFoundError)
    assert isinstance(by[("SF-002", "inv_uk")].error, errors.BadDataError)
    assert isinstance(by[("SF-003", "no_list")].error, errors.NotFoundError)


def test_set_stock_conflicts_are_resent(sf, sandbox):
    faults(sandbox, conflict_rate=0.3)
    results = sf.set_stock([InventoryTarget(s, "inv_uk", 7) for s in SKUS[:40]])
    faults(sandbox, conflict_rate=0.0)
    ok = [r for r in results if r.ok]
    inv = control(sandbox, "state", {})["inventory"]["inv_uk"]
    assert all(inv[r.sku] == 7 for r in ok)
    assert all(isinstance(r.error, errors.ConflictError) for r in results if not r.ok)
    assert len(ok) >= 30  # three rounds at 30 % conflicts: ~3 % of records fail all rounds


def test_429_and_5xx_are_retried(sf, sandbox):
    faults(sandbox, fail_next=[429, 503])
    assert sf.set_stock([InventoryTarget("SF-001", "inv_uk", 9)])[0].ok
    assert sf.client.stats.rate_limited == 1 and sf.client.stats.retries >= 2


def test_bad_credentials_are_permanent(sf_conn, sandbox):
    from django.core.cache import cache

    cache.clear()
    sf_conn.set_secret("wrong")
    c = SFCCConnector(sf_conn)
    with pytest.raises(errors.PermanentError):
        c.get_stock(["SF-001"], "inv_uk")


def test_get_stock_omits_missing(sf, sandbox):
    sf.set_stock([InventoryTarget("SF-001", "inv_eu", 11)])
    got = {s.sku: s.quantity for s in sf.get_stock(["SF-001", "SF-002", "NOPE"], "inv_eu")}
    assert got == {"SF-001": 11, "SF-002": 3}


def test_list_skus_pages(sf):
    assert sorted(sf.list_skus()) == sorted(SKUS)


def test_orders_since_pages_with_cursor_and_maps_fields(sf, sandbox):
    ids = control(sandbox, "create_orders", {"orders": [
        {"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 2, "price": 10.5}], "shipping_method": "express",
         "gift_message": "Happy birthday", "delivery_notes": "Leave with neighbour", "custom_fields": {"giftWrap": True},
         "promotion_codes": ["SUMMER10"], "email": "a@example.com",
         "address": {"first_name": "Ann", "last_name": "Lee", "street": "2 Low Rd", "postal_code": "M1 1AA", "city": "Manchester",
                     "country": "GB"}},
    ] + [{"channel": "inv_eu", "lines": [{"sku": "SF-002", "quantity": 1}]} for _ in range(6)]})["ids"]
    seen, cursor = [], ""
    while True:
        page = sf.orders_since(cursor, limit=3)
        seen += page.items
        cursor = page.cursor
        if not page.has_more:
            break
    assert [o.external_id for o in seen] == ids
    first = seen[0]
    assert first.channel_ref == "inv_uk" and first.lines[0].sku == "SF-001" and first.lines[0].quantity == 2
    assert first.lines[0].unit_price_cents == 1050 and first.shipping_method == "express"
    assert first.gift_message == "Happy birthday" and first.delivery_notes == "Leave with neighbour"
    assert first.custom_fields == {"giftWrap": True} and first.promotion_codes == ["SUMMER10"]
    assert first.shipping_address.city == "Manchester" and first.customer_email == "a@example.com"
    assert seen[1].channel_ref == "inv_eu"
    # nothing new: same cursor, no items
    again = sf.orders_since(cursor, limit=3)
    assert again.items == [] and again.cursor == cursor
    # a modification brings the order back once
    sf.mark_shipped(ids[2], [Parcel("DPD", "TRK1")])
    page = sf.orders_since(cursor, limit=50)
    assert [o.external_id for o in page.items] == [ids[2]] and page.items[0].shipment_state == "shipped"


def test_mark_shipped_sets_status_and_tracking_idempotently(sf, sandbox):
    no = control(sandbox, "create_orders", {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 1}]}]})["ids"][0]
    parcels = [Parcel("DPD", "TRK-1", "https://t/1"), Parcel("DPD", "TRK-2")]
    assert sf.mark_shipped(no, parcels) is None
    sf.mark_shipped(no, parcels)
    state = control(sandbox, "state", {})["orders"][no]
    assert state["shipment_state"] == "shipped" and state["tracking"] == ["TRK-1", "TRK-2"] and state["carrier"] == "DPD"
    assert sf.get_order(no).shipment_state == "shipped"


def test_mark_shipped_unknown_or_cancelled(sf, sandbox):
    with pytest.raises(errors.NotFoundError):
        sf.mark_shipped("99999999", [Parcel("DPD", "X")])
    no = control(sandbox, "create_orders", {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 1}]}]})["ids"][0]
    control(sandbox, "cancel_order", {"order_no": no})
    with pytest.raises(errors.BadDataError):
        sf.mark_shipped(no, [Parcel("DPD", "X")])


def test_order_webhook_is_signed_and_parsed(sf, sandbox):
    from integration_hub.core.webhooks import sign

    body = b'{"type": "order.created", "order_no": "00001001"}'
    assert sf.verify_webhook(body, {"X-Hub-Signature": sign(sf.connection.get_webhook_secret(), body)})
    assert not sf.verify_webhook(body, {"X-Hub-Signature": sign("other", body)})
    assert sf.parse_order_webhook({"order_no": "00001001"}) == ["00001001"]
    with pytest.raises(errors.BadDataError):
        sf.parse_order_webhook({"nothing": 1})


def test_orders_start_bounds_the_first_poll(sf_conn, sandbox):
    old = control(sandbox, "create_orders", {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 1}]}]})["ids"]
    state = control(sandbox, "state", {})["orders"]
    from datetime import datetime, timedelta

    after_old = datetime.fromisoformat(state[old[0]]["last_modified"].replace("Z", "+00:00")) + timedelta(microseconds=1)
    sf_conn.options = {**sf_conn.options, "orders_start": after_old.isoformat(timespec="microseconds").replace("+00:00", "Z")}
    new = control(sandbox, "create_orders", {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 1}]}]})["ids"]
    page = SFCCConnector(sf_conn).orders_since("")
    assert [o.external_id for o in page.items] == new


def test_expired_token_is_renewed_once(sf, sandbox):
    sf.get_stock(["SF-001"], "inv_uk")
    control(sandbox, "revoke_tokens")
    assert [s.quantity for s in sf.get_stock(["SF-001"], "inv_uk")] == [3]  # 401 → new token → same call succeeds
