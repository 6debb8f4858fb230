"""commercetools connector against the commercetools emulator, over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from connectors import errors
from connectors.base import InventoryTarget, Parcel
from connectors.commercetools import CommercetoolsConnector
from tests.support.sandbox import SandboxClient, controller, faulter

SKUS = [f"SKU-{i:03d}" for i in range(1, 6)]


control = controller("commercetools")
faults = faulter("commercetools")


@pytest.fixture
def ct_conn(db, sandbox):
    from integration_hub.core.models import Connection

    conn = Connection(
        name="ct-test",
        system_type="commercetools",
        base_url=f"{sandbox.url}/commercetools",
        auth_url=f"{sandbox.url}/commercetools",
        client_id="hub-demo",
        options={"project_key": "demo"},
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
        max_retries=4,
    )
    conn.set_secret("hub-demo-secret")
    conn.set_webhook_secret("ct-hook-secret")
    conn.save()
    # the token cache is keyed by URL and client: never reuse a token issued by an earlier test's emulator
    CommercetoolsConnector.auth_for(conn).invalidate()
    return conn


@pytest.fixture
def ct(ct_conn):
    """A connector whose client backs off fast (tests stay quick)."""
    c = CommercetoolsConnector(ct_conn)
    c.client = c.build_client(backoff_base=0.01)
    return c


@pytest.fixture
def emu(sandbox):
    return sandbox.emulators["commercetools"]


@pytest.fixture
def catalog(sandbox):
    return control(sandbox, "seed_catalog", {"channels": ["uk-web", "eu-web"], "skus": SKUS, "quantity": 0})


# --- auth ------------------------------------------------------------------------------------------
def test_token_fetched_once_and_cached(ct, sandbox, catalog):
    for _ in range(3):
        ct.get_stock(SKUS, "uk-web")
    assert control(sandbox, "state")["tokens_issued"] == 1
    by_route = SandboxClient.of(sandbox).stats("commercetools").by_route
    token_calls = [k for k in by_route if "oauth" in k]
    assert by_route[token_calls[0]] == 1


def test_revoked_token_is_refreshed_once(ct, sandbox, catalog):
    ct.get_stock(SKUS, "uk-web")
    control(sandbox, "revoke_tokens")
    stock = ct.get_stock(SKUS, "uk-web")
    assert len(stock) == len(SKUS)
    assert control(sandbox, "state")["tokens_issued"] == 2


def test_bad_credentials_are_a_permanent_error(ct_conn, sandbox, catalog):
    ct_conn.set_secret("wrong")
    ct_conn.save()
    c = CommercetoolsConnector(ct_conn)
    with pytest.raises(errors.PermanentError) as exc:
        c.get_stock(SKUS, "uk-web")
    assert exc.value.status == 401


def test_api_refuses_requests_without_token(sandbox, catalog):
    r = requests.get(f"{sandbox.url}/commercetools/demo/inventory", timeout=5)
    assert r.status_code == 401 and r.json()["errors"][0]["code"] == "invalid_token"


def test_token_scoped_to_another_project_is_refused(ct_conn, sandbox, catalog):
    ct_conn.options = {"project_key": "demo", "scopes": "manage_project:other"}
    ct_conn.save()
    with pytest.raises(errors.PermanentError) as exc:
        CommercetoolsConnector(ct_conn).get_stock(SKUS, "uk-web")
    assert exc.value.status == 403


# --- stock ---------------------------------------------------------------------------------------
def test_set_stock_updates_existing_and_creates_missing(ct, sandbox, catalog):
    control(sandbox, "seed_catalog", {"channels": [], "skus": ["NEW-1"], "quantity": None})  # product, no entry
    targets = [InventoryTarget(s, "uk-web", i + 1) for i, s in enumerate(SKUS)] + [
        InventoryTarget("NEW-1", "eu-web", 9)
    ]
    results = ct.set_stock(targets)
    assert [r.ok for r in results] == [True] * 6
    assert [(r.sku, r.quantity) for r in results] == [(t.sku, t.quantity) for t in targets]
    assert all(r.version and r.ref for r in results)
    state = control(sandbox, "state")["inventory"]
    assert state["uk-web"] == {s: i + 1 for i, s in enumerate(SKUS)}
    assert state["eu-web"]["NEW-1"] == 9 and state["eu-web"]["SKU-001"] == 0
    # unchanged targets are not written again
    before = control(sandbox, "state")["versions"]["uk-web"]
    again = ct.set_stock(targets[:5])
    assert all(r.ok for r in again) and control(sandbox, "state")["versions"]["uk-web"] == before


def test_set_stock_reads_in_batches_of_100(ct, sandbox):
    skus = [f"B-{i:04d}" for i in range(250)]
    control(sandbox, "seed_catalog", {"channels": ["uk-web"], "skus": skus, "quantity": 0})
    sb = SandboxClient.of(sandbox)
    sb.reset_stats("commercetools")
    results = ct.set_stock([InventoryTarget(s, "uk-web", 3) for s in skus])
    assert all(r.ok for r in results)
    by_route = sb.stats("commercetools").by_route
    reads = sum(v for k, v in by_route.items() if k.startswith("GET") and k.endswith("/inventory$"))
    writes = sum(v for k, v in by_route.items() if k.startswith("POST") and "inventory/" in k)
    assert reads == 3 and writes == 250


def test_unknown_sku_and_channel_are_per_item_failures(ct, sandbox, catalog):
    results = ct.set_stock(
        [
            InventoryTarget("SKU-001", "uk-web", 4),
            InventoryTarget("NOPE", "uk-web", 1),
            InventoryTarget("SKU-002", "no-such-channel", 1),
        ]
    )
    assert results[0].ok
    assert not results[1].ok and isinstance(results[1].error, errors.NotFoundError)
    assert not results[2].ok and isinstance(results[2].error, errors.PermanentError)
    assert "no-such-channel" not in control(sandbox, "state")["inventory"]


def test_stale_version_conflict_is_recovered(ct, emu, sandbox, catalog):
    ct.set_stock([InventoryTarget("SKU-001", "uk-web", 5)])
    # someone else changes the entry between our read and our write
    original = ct._entries

    def read_then_race(channel_id, skus):
        entries = original(channel_id, skus)
        control(sandbox, "set_inventory", {"channel": "uk-web", "sku": "SKU-001", "quantity": 42})
        return entries

    ct._entries = read_then_race
    [res] = ct.set_stock([InventoryTarget("SKU-001", "uk-web", 7)])
    assert res.ok and res.quantity == 7
    assert ct.client.stats.conflicts == 1
    assert control(sandbox, "state")["inventory"]["uk-web"]["SKU-001"] == 7
    assert res.version == control(sandbox, "state")["versions"]["uk-web"]["SKU-001"]


def test_injected_conflicts_are_retried(ct, sandbox):
    skus = [f"C-{i:02d}" for i in range(20)]
    control(sandbox, "seed_catalog", {"channels": ["uk-web"], "skus": skus, "quantity": 0})
    faults(sandbox, conflict_rate=0.3)
    results = ct.set_stock([InventoryTarget(s, "uk-web", 11) for s in skus])
    assert all(r.ok for r in results)
    assert set(control(sandbox, "state")["inventory"]["uk-web"].values()) == {11}
    assert ct.client.stats.conflicts > 0


def test_raw_409_body_carries_current_version(ct, sandbox, catalog):
    [entry] = ct._entries(ct.channel_ids(["uk-web"])["uk-web"], ["SKU-001"]).values()
    with pytest.raises(errors.ConflictError) as exc:
        ct.client.post(
            ct.path(f"inventory/{entry['id']}"),
            json={"version": entry["version"] + 5, "actions": [{"action": "changeQuantity", "quantity": 1}]},
        )
    assert exc.value.current_version == entry["version"]
    assert exc.value.body["errors"][0]["code"] == "ConcurrentModification"


def test_duplicate_inventory_entry_is_refused(ct, catalog):
    with pytest.raises(errors.BadDataError) as exc:
        ct.client.post(
            ct.path("inventory"),
            json={"sku": "SKU-001", "supplyChannel": {"typeId": "channel", "key": "uk-web"}, "quantityOnStock": 1},
        )
    assert exc.value.body["errors"][0]["code"] == "DuplicateField"


def test_429_retry_after_is_honoured(ct, sandbox, catalog):
    faults(sandbox, fail_next=[429])  # the emulator answers Retry-After: 1
    start = time.monotonic()
    stock = ct.get_stock(SKUS, "uk-web")
    elapsed = time.monotonic() - start
    assert len(stock) == 5
    assert ct.client.stats.rate_limited == 1
    assert elapsed >= 1.0


def test_rate_limit_past_configured_rate(ct, sandbox, catalog):
    ct.get_stock(SKUS, "uk-web")  # token + channel lookups out of the way
    faults(sandbox, rate_limit_per_second=20, rate_limit_burst=2)
    sleeps = []
    ct.client.sleep = lambda s: (sleeps.append(s), time.sleep(min(s, 0.3)))  # shortened: keeps the suite fast
    ct.write_concurrency = 1  # sequential, so no request can be starved past its retries
    results = ct.set_stock([InventoryTarget(s, "uk-web", 2) for s in SKUS])
    assert all(r.ok for r in results)
    assert ct.client.stats.rate_limited > 0
    assert any(s >= 1.0 for s in sleeps)  # waited at least Retry-After


def test_5xx_is_retried(ct, sandbox, catalog):
    faults(sandbox, fail_next=[503, 502])
    ct.client.sleep = lambda s: None
    assert len(ct.get_stock(SKUS, "uk-web")) == 5
    assert ct.client.stats.server_errors == 2 and ct.client.stats.retries == 2


def test_persistent_outage_fails_items_without_hammering(ct, sandbox, catalog):
    ct.get_stock(SKUS, "uk-web")
    faults(sandbox, error_rate=1.0)
    ct.client.sleep = lambda s: None
    sb = SandboxClient.of(sandbox)
    sb.reset_stats("commercetools")
    results = ct.set_stock([InventoryTarget(s, "uk-web", 8) for s in SKUS])
    assert not any(r.ok for r in results)
    assert all(isinstance(r.error, errors.RetryableError) for r in results)
    assert (
        sum(sb.stats("commercetools").by_route.values()) == ct.client.max_retries + 1
    )  # one failed read, not one per SKU


# --- orders --------------------------------------------------------------------------------------
ORDER = {
    "channel": "uk-web",
    "lines": [{"sku": "SKU-001", "quantity": 2}, {"sku": "SKU-002", "quantity": 1, "price": 1250}],
    "shipping_method": "express",
    "gift_message": "Happy birthday!",
    "delivery_notes": "Leave with neighbour",
    "custom_fields": {"loyaltyTier": "gold"},
    "email": "ann@example.com",
    "discount_codes": ["SPRING10"],
    "address": {
        "firstName": "Ann",
        "lastName": "Lee",
        "streetName": "Station Road",
        "streetNumber": "4",
        "postalCode": "M1 1AA",
        "city": "Manchester",
        "country": "GB",
    },
}


def test_get_order_has_everything_fulfilment_needs(ct, sandbox, catalog):
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    o = ct.get_order(oid)
    assert o.external_id == oid and o.order_number.startswith("CT") and o.channel_ref == "uk-web"
    assert [(l.sku, l.quantity) for l in o.lines] == [("SKU-001", 2), ("SKU-002", 1)]
    assert o.lines[1].unit_price_cents == 1250
    assert o.shipping_method == "express"
    assert o.gift_message == "Happy birthday!" and o.delivery_notes == "Leave with neighbour"
    assert o.custom_fields == {"loyaltyTier": "gold"}
    assert o.promotion_codes == ["SPRING10"]
    assert o.shipping_address.street == "4 Station Road" and o.shipping_address.city == "Manchester"
    assert o.customer_email == "ann@example.com" and o.currency == "GBP" and o.total_cents > 0
    assert o.version == 1 and o.placed_at is not None and o.status == "Open"


def test_get_missing_order_is_not_found(ct, catalog):
    with pytest.raises(errors.NotFoundError):
        ct.get_order("00000000-0000-0000-0000-000000000000")


def test_order_decrements_storefront_stock(ct, sandbox, catalog):
    ct.set_stock([InventoryTarget("SKU-001", "uk-web", 10)])
    control(sandbox, "create_orders", {"orders": [ORDER]})
    assert control(sandbox, "state")["inventory"]["uk-web"]["SKU-001"] == 8


def test_orders_since_paginates_with_cursor(ct, emu, sandbox, catalog):
    ids = control(sandbox, "create_orders", {"orders": [dict(ORDER, email=f"c{i}@example.com") for i in range(7)]})[
        "ids"
    ]
    seen, cursor, pages = [], "", 0
    while True:
        page = ct.orders_since(cursor, limit=3)
        pages += 1
        seen += [o.external_id for o in page.items]
        cursor = page.cursor
        if not page.has_more:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 7 and pages == 3
    assert ct.orders_since(cursor, limit=3).items == []
    # a modified order comes back after the cursor; nothing else does
    ct.mark_shipped(ids[2], [Parcel("DPD", "TRK-1")])
    page = ct.orders_since(cursor, limit=3)
    assert [o.external_id for o in page.items] == [ids[2]] and page.items[0].shipment_state == "Shipped"


def test_orders_with_equal_timestamps_are_not_skipped(ct, emu, sandbox, catalog):
    ts = "2026-01-01T10:00:00.000Z"
    ids = control(sandbox, "create_orders", {"orders": [dict(ORDER, created_at=ts) for _ in range(5)]})["ids"]
    seen, cursor = [], ""
    for _ in range(10):
        page = ct.orders_since(cursor, limit=2)
        seen += [o.external_id for o in page.items]
        cursor = page.cursor
        if not page.has_more:
            break
    assert sorted(seen) == sorted(ids)


# --- webhooks ------------------------------------------------------------------------------------
class _Receiver:
    def __init__(self, fail_first=0):
        self.bodies, self.headers, self.fail_first = [], [], fail_first
        receiver = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                else:
                    receiver.bodies.append(body)
                    receiver.headers.append(dict(self.headers.items()))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/orders/ct/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = _Receiver()
    yield r
    r.close()


def test_order_created_message_is_parsed_and_verified(ct, sandbox, catalog, receiver):
    control(sandbox, "configure_webhooks", {"order_url": receiver.url, "secret": "ct-hook-secret"})
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    stats = control(sandbox, "wait_webhooks", {"timeout": 10})
    assert stats["delivered"] == 1 and len(receiver.bodies) == 1
    body, headers = receiver.bodies[0], receiver.headers[0]
    assert ct.verify_webhook(body, headers)
    assert not ct.verify_webhook(body, {**headers, "Authorization": "wrong"})
    assert not ct.verify_webhook(body, {k: v for k, v in headers.items() if k.lower() != "authorization"})
    payload = json.loads(body)
    assert payload["notificationType"] == "Message" and payload["type"] == "OrderCreated"
    assert payload["resource"] == {"typeId": "order", "id": oid} and payload["sequenceNumber"] == 1
    # the message is a hint: only the order id is taken, the order itself is read from the API
    assert ct.parse_order_webhook(payload) == [oid]
    order = ct.get_order(oid)
    assert order.external_id == oid and order.channel_ref == "uk-web" and order.shipping_method == "express"
    assert order.promotion_codes == ["SPRING10"] and order.gift_message == "Happy birthday!"


def test_failed_deliveries_are_retried_then_dropped(ct, sandbox, catalog):
    flaky = _Receiver(fail_first=2)
    try:
        control(
            sandbox, "configure_webhooks", {"order_url": flaky.url, "secret": "s", "retry_delays": [0.05, 0.05, 0.05]}
        )
        control(sandbox, "create_orders", {"orders": [ORDER]})
        stats = control(sandbox, "wait_webhooks", {"timeout": 10})
        assert stats["delivered"] == 1 and stats["retried"] == 2 and len(flaky.bodies) == 1
    finally:
        flaky.close()
    control(
        sandbox,
        "configure_webhooks",
        {"order_url": "http://127.0.0.1:9/nothing", "secret": "s", "retry_delays": [0.05] * 3, "concurrency": 8},
    )
    control(sandbox, "create_orders", {"orders": [ORDER]})
    stats = control(sandbox, "wait_webhooks", {"timeout": 15})
    assert stats["dropped"] == 1 and stats["attempts"] == 3 + 4  # cumulative: 3 above, then 1 + 3 retries


def test_other_messages_and_bad_payloads(ct, catalog):
    assert ct.parse_order_webhook(
        {"notificationType": "Message", "type": "OrderStateChanged", "resource": {"typeId": "order", "id": "o-1"}}
    ) == ["o-1"]
    assert (
        ct.parse_order_webhook(
            {"notificationType": "Message", "type": "CustomerCreated", "resource": {"typeId": "customer", "id": "c-1"}}
        )
        == []
    )
    # OrderCreated: the id only, from the resource or the embedded order (whatever else the order says)
    assert ct.parse_order_webhook(
        {"notificationType": "Message", "type": "OrderCreated", "resource": {"typeId": "order", "id": "x"}}
    ) == ["x"]
    assert ct.parse_order_webhook(
        {"notificationType": "Message", "type": "OrderCreated", "order": {"id": "x", "lineItems": [{"quantity": 1}]}}
    ) == ["x"]
    for bad in (
        {"hello": "world"},
        "not json object",
        {"notificationType": "Message", "type": "OrderCreated"},
        {
            "notificationType": "Message",
            "type": "OrderCreated",
            "resource": {"typeId": "order", "id": "x"},
            "order": {"id": "y"},
        },
        {"notificationType": "Message", "type": "OrderCreated", "resource": {"typeId": "order", "id": "../carts/x"}},
        {"notificationType": "Message", "type": "OrderStateChanged", "resource": {"typeId": "order", "id": "a/b"}},
        {"notificationType": "Message", "type": "OrderCreated", "resource": "order"},
        {"notificationType": "Carrier pigeon"},
    ):
        with pytest.raises(errors.BadDataError):
            ct.parse_order_webhook(bad)


# --- fulfilment ------------------------------------------------------------------------------------
def test_mark_shipped_with_tracking_is_idempotent(ct, sandbox, catalog):
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    parcels = [Parcel("DPD", "TRK-100", lines=[("SKU-001", 2)]), Parcel("DPD", "TRK-101", lines=[("SKU-002", 1)])]
    v1 = ct.mark_shipped(oid, parcels)
    state = control(sandbox, "state")["orders"][oid]
    assert (
        state["shipment_state"] == "Shipped"
        and state["tracking"] == ["TRK-100", "TRK-101"]
        and state["carriers"] == ["DPD", "DPD"]
    )
    assert state["deliveries"] == 1 and v1 == state["version"] == 2
    assert ct.mark_shipped(oid, parcels) == v1  # replay: nothing added, no write
    state = control(sandbox, "state")["orders"][oid]
    assert state["deliveries"] == 1 and state["version"] == 2
    order = ct.get_order(oid)
    delivery = order.raw["shippingInfo"]["deliveries"][0]
    assert sorted((i["quantity"]) for i in delivery["items"]) == [1, 2]


def test_mark_shipped_survives_concurrent_modification(ct, emu, sandbox, catalog):
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    real_get, reads = ct.client.get, []

    def get_then_someone_edits(path, **kw):
        resp = real_get(path, **kw)
        reads.append(path)
        if len(reads) == 1:  # another integration touches the order between our read and our write
            with emu.lock:
                emu.orders[oid]["version"] += 1
        return resp

    ct.client.get = get_then_someone_edits
    version = ct.mark_shipped(oid, [Parcel("Royal Mail", "RM-1")])
    state = control(sandbox, "state")["orders"][oid]
    assert state["shipment_state"] == "Shipped" and state["tracking"] == ["RM-1"] and version == state["version"] == 3
    assert ct.client.stats.conflicts == 1 and len(reads) == 2


def test_mark_shipped_from_the_captured_order_is_one_request_and_a_stale_one_is_refused(ct, emu, sandbox, catalog):
    """Issue 19 (requests per shipped order, floor 1): the order as captured, at its version, is enough to build
    the update — no read. A snapshot that is stale (the order changed since, or our own earlier write landed) is
    refused by ct's version check and the order is read and recomputed: never a second delivery."""
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    captured = ct.get_order(oid)
    reads, writes = [], []
    real_get, real_post = ct.client.get, ct.client.post
    ct.client.get = lambda path, **kw: (reads.append(path), real_get(path, **kw))[1]
    ct.client.post = lambda path, **kw: (writes.append(path), real_post(path, **kw))[1]
    parcels = [Parcel("DPD", "TRK-1")]
    v1 = ct.mark_shipped(oid, parcels, known_version=captured.version, known_order=captured.raw)
    assert reads == [] and len(writes) == 1 and v1 == captured.version + 1
    # the same stale snapshot again (a retry after a lost answer): 409, read, nothing left to do
    writes.clear()
    assert ct.mark_shipped(oid, parcels, known_version=captured.version, known_order=captured.raw) == v1
    assert len(reads) == 1 and len(writes) == 1 and ct.client.stats.conflicts == 1
    state = control(sandbox, "state")["orders"][oid]
    assert state["deliveries"] == 1 and state["tracking"] == ["TRK-1"] and state["shipment_state"] == "Shipped"
    # a snapshot whose version is not the one the hub knows is never trusted
    reads.clear()
    ct.mark_shipped(oid, [Parcel("DPD", "TRK-2")], known_version=v1, known_order=captured.raw)
    assert len(reads) == 1 and control(sandbox, "state")["orders"][oid]["tracking"] == ["TRK-1", "TRK-2"]


def test_list_skus_pages_through_the_catalogue(ct, sandbox):
    products = [{"key": f"P-{i}", "skus": [f"V-{i}-{s}" for s in "SML"]} for i in range(400)]
    control(sandbox, "seed_catalog", {"channels": [], "products": products, "quantity": None})
    skus = list(ct.list_skus())
    assert len(skus) == 1200 and len(set(skus)) == 1200


def test_flash_sale_order_volume_is_fast(sandbox, catalog):
    start = time.monotonic()
    out = control(sandbox, "create_orders", {"orders": [dict(ORDER, email=f"f{i}@example.com") for i in range(5000)]})
    assert len(out["ids"]) == 5000 and time.monotonic() - start < 10


# --- emulator details -----------------------------------------------------------------------------
def test_query_predicates():
    from connectors.sandbox.commercetools.predicates import compile_where, compile_where_hints

    o = {
        "sku": "A",
        "supplyChannel": {"typeId": "channel", "id": "c1"},
        "lastModifiedAt": "2026-01-01T10:00:00.000Z",
        "quantityOnStock": 5,
        "variants": [{"sku": "X"}, {"sku": "Y"}],
        "id": "m",
    }
    assert compile_where(['sku in ("A", "B") and supplyChannel(id="c1")'])(o)
    assert not compile_where(['sku in ("B") and supplyChannel(id="c1")'])(o)
    assert compile_where(['lastModifiedAt > "2026-01-01T09:59:59Z"'])(o)  # instants, not strings
    assert not compile_where(['lastModifiedAt > "2026-01-01T10:00:00Z"'])(o)
    assert compile_where(
        ['lastModifiedAt > "2026-01-01T10:00:00Z" or (lastModifiedAt = "2026-01-01T10:00:00Z" and id > "a")']
    )(o)
    assert compile_where(["quantityOnStock >= 5 and quantityOnStock < 6", 'variants(sku = "Y")'])(o)
    assert compile_where(['not(sku = "B") and key is not defined and sku not in ("C")'])(o)
    assert not compile_where(['variants(sku = "Z")'])(o)
    assert compile_where_hints(['sku in ("A", "B") and supplyChannel(id="c1")'])[1] == {"sku": {"A", "B"}}
    assert compile_where_hints(['sku = "A" or sku = "B"'])[1] == {}


@pytest.mark.parametrize("params", [{"where": 'sku in ("A"'}, {"where": "sku ~ 1"}, {"limit": "501"}, {"offset": "-1"}])
def test_malformed_queries_are_bad_data(ct, catalog, params):
    with pytest.raises(errors.BadDataError) as exc:
        ct.client.get(ct.path("inventory"), params=params)
    assert exc.value.body["errors"][0]["code"] == "InvalidInput"


def test_paged_query_response_shape(ct, catalog):
    body = ct.client.get(ct.path("inventory"), params={"limit": 3, "offset": 2, "sort": "sku desc"}).json()
    assert (body["limit"], body["offset"], body["count"], body["total"]) == (3, 2, 3, 10)
    assert [e["sku"] for e in body["results"]] == ["SKU-004", "SKU-004", "SKU-003"]
    assert {
        "id",
        "version",
        "sku",
        "supplyChannel",
        "quantityOnStock",
        "availableQuantity",
        "createdAt",
        "lastModifiedAt",
    } <= set(body["results"][0])


def test_duplicate_targets_last_one_wins(ct, sandbox, catalog):
    results = ct.set_stock([InventoryTarget("SKU-001", "uk-web", 1), InventoryTarget("SKU-001", "uk-web", 6)])
    assert [(r.sku, r.quantity, r.ok) for r in results] == [("SKU-001", 6, True)]
    assert control(sandbox, "state")["inventory"]["uk-web"]["SKU-001"] == 6


def test_entry_created_concurrently_is_updated_not_duplicated(ct, sandbox, catalog):
    control(sandbox, "seed_catalog", {"channels": [], "skus": ["RACE-1"], "quantity": None})
    original = ct._entries
    calls = []

    def stale_read(channel_id, skus):
        entries = original(channel_id, skus)
        if not calls:  # another worker creates the entry right after our read
            control(sandbox, "set_inventory", {"channel": "uk-web", "sku": "RACE-1", "quantity": 50})
        calls.append(skus)
        return entries

    ct._entries = stale_read
    [res] = ct.set_stock([InventoryTarget("RACE-1", "uk-web", 4)])
    assert res.ok and res.quantity == 4 and len(calls) == 2
    assert control(sandbox, "state")["inventory"]["uk-web"]["RACE-1"] == 4


def test_concurrent_writers_never_lose_an_update(ct_conn, sandbox, catalog):
    def writer(q):
        c = CommercetoolsConnector(ct_conn)
        c.client.sleep = lambda s: None
        for _ in range(5):
            assert all(r.ok for r in c.set_stock([InventoryTarget(s, "uk-web", q) for s in SKUS]))

    threads = [threading.Thread(target=writer, args=(q,)) for q in (3, 4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    final = control(sandbox, "state")["inventory"]["uk-web"]
    assert set(final.values()) <= {3, 4}
    c = CommercetoolsConnector(ct_conn)
    assert all(r.ok for r in c.set_stock([InventoryTarget(s, "uk-web", 9) for s in SKUS]))
    assert set(control(sandbox, "state")["inventory"]["uk-web"].values()) == {9}


def test_get_stock_reports_storefront_side_changes(ct, sandbox, catalog):
    control(sandbox, "set_inventory", {"rows": [{"channel": "eu-web", "sku": "SKU-003", "quantity": 17}]})
    stock = {s.sku: s for s in ct.get_stock(SKUS + ["ABSENT"], "eu-web")}
    assert set(stock) == set(SKUS) and stock["SKU-003"].quantity == 17 and stock["SKU-003"].version == 2
    with pytest.raises(errors.NotFoundError):
        ct.get_stock(SKUS, "no-such-channel")


def test_connection_without_project_key_is_refused(ct_conn):
    ct_conn.options = {}
    with pytest.raises(errors.PermanentError):
        CommercetoolsConnector(ct_conn)


def test_registry_builds_the_connector(ct_conn):
    from connectors.registry import get_connector

    assert isinstance(get_connector(ct_conn, fresh=True), CommercetoolsConnector)


def test_timeouts_are_retried_then_reported(ct_conn, sandbox, catalog):
    ct_conn.timeout_seconds, ct_conn.max_retries = 0.5, 1
    c = CommercetoolsConnector(ct_conn)
    c.client.sleep = lambda s: None
    c.get_stock(SKUS, "uk-web")  # token and channel cached
    faults(sandbox, timeout_rate=1.0, hang_seconds=1.0)
    results = c.set_stock([InventoryTarget(s, "uk-web", 1) for s in SKUS])
    assert all(isinstance(r.error, errors.TimeoutError_) for r in results)
    assert c.client.stats.timeouts == 2


def test_webhook_auth_with_django_headers_and_bearer_value(ct, rf):
    body = b"{}"
    ok = rf.post("/hooks/orders/ct/", data=body, content_type="application/json", HTTP_AUTHORIZATION="ct-hook-secret")
    bearer = rf.post(
        "/hooks/orders/ct/", data=body, content_type="application/json", HTTP_AUTHORIZATION="Bearer ct-hook-secret"
    )
    bad = rf.post("/hooks/orders/ct/", data=body, content_type="application/json", HTTP_AUTHORIZATION="Bearer nope")
    assert ct.verify_webhook(body, ok.headers) and ct.verify_webhook(body, bearer.headers)
    assert not ct.verify_webhook(body, bad.headers)


def test_first_poll_can_start_from_a_configured_instant(ct_conn, sandbox, catalog):
    old = control(sandbox, "create_orders", {"orders": [dict(ORDER, created_at="2020-05-01T00:00:00Z")]})["ids"]
    new = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    ct_conn.options = {"project_key": "demo", "orders_start": "2025-01-01T00:00:00.000Z"}
    page = CommercetoolsConnector(ct_conn).orders_since("")
    assert [o.external_id for o in page.items] == new and old[0] not in page.cursor


def test_subscriptions_have_no_http_destination_the_harness_relay_is_not_one(
    ct, ct_conn, emu, sandbox, catalog, receiver
):
    """ct Subscriptions have no HTTP Destination (see tests/orders/test_relays.py for Pub/Sub and SQS): the API
    refuses it. The sandbox's configure_webhooks harness (an operator relay forwarding bare Messages) is not a
    Subscription and never shows in the API."""
    with pytest.raises(errors.BadDataError):
        ct.client.post(
            ct.path("subscriptions"), json={"destination": {"type": "HTTP", "url": receiver.url}, "messages": []}
        )
    control(sandbox, "configure_webhooks", {"order_url": receiver.url, "secret": "ct-hook-secret"})
    assert ct.client.get(ct.path("subscriptions")).json()["results"] == []
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    assert control(sandbox, "wait_webhooks", {"timeout": 10})["delivered"] == 1
    assert ct.verify_webhook(receiver.bodies[0], receiver.headers[0])
    assert json.loads(receiver.bodies[0])["resource"]["id"] == oid


def test_malformed_order_does_not_block_the_stream(ct, emu, sandbox, catalog):
    ids = control(sandbox, "create_orders", {"orders": [ORDER, ORDER, ORDER]})["ids"]
    with emu.lock:
        emu.orders[ids[1]]["lineItems"][0].pop("quantity")
    page = ct.orders_since("", limit=10)
    assert [o.external_id for o in page.items] == [ids[0], ids[2]]
    assert page.cursor.endswith(ids[2])
    assert [(r.ref, r.field) for r in page.items.rejected] == [(ids[1], "order")]  # the connector files nothing itself
    from exceptions_app.models import ExceptionRecord
    from exceptions_app.services import raise_many
    from integration_hub.orders.rejected import order_problems

    assert not ExceptionRecord.objects.exists()
    raise_many(order_problems(ct.connection, page.items.rejected))  # what the capture of the page files
    rec = ExceptionRecord.objects.get(kind="bad_payload")
    assert rec.dedupe_key == f"bad_payload:ct-test:order:{ids[1]}" and rec.order_ref == ids[1]
    assert "quantity" in rec.message and rec.context["action"] == "check_order"
    with pytest.raises(errors.BadDataError):
        ct.get_order(ids[1])


def test_second_dispatch_adds_only_the_new_parcel(ct, sandbox, catalog):
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    ct.mark_shipped(oid, [Parcel("DPD", "TRK-A", lines=[("SKU-001", 2)])])
    version = ct.mark_shipped(
        oid, [Parcel("DPD", "TRK-A", lines=[("SKU-001", 2)]), Parcel("DHL", "TRK-B", lines=[("SKU-002", 1)])]
    )
    state = control(sandbox, "state")["orders"][oid]
    assert state["tracking"] == ["TRK-A", "TRK-B"] and state["deliveries"] == 2 and state["version"] == version == 3
    deliveries = ct.get_order(oid).raw["shippingInfo"]["deliveries"]
    assert [[i["quantity"] for i in d["items"]] for d in deliveries] == [[2], [1]]


def test_unmatched_parcel_lines_ship_the_whole_order(ct, sandbox, catalog):
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    ct.mark_shipped(oid, [Parcel("Royal Mail", "RM-9", lines=[("MASTER-ONLY-SKU", 1)])])
    [delivery] = ct.get_order(oid).raw["shippingInfo"]["deliveries"]
    assert sorted(i["quantity"] for i in delivery["items"]) == [1, 2]
    assert delivery["parcels"][0]["trackingData"] == {
        "trackingId": "RM-9",
        "carrier": "Royal Mail",
        "provider": "Royal Mail",
    }


def test_poll_lag_leaves_the_newest_orders_for_the_next_poll(ct_conn, sandbox, catalog):
    old = control(sandbox, "create_orders", {"orders": [dict(ORDER, created_at="2026-01-01T00:00:00Z")]})["ids"]
    control(sandbox, "create_orders", {"orders": [ORDER]})
    ct_conn.options = {"project_key": "demo", "orders_poll_lag_seconds": 60}
    page = CommercetoolsConnector(ct_conn).orders_since("")
    assert [o.external_id for o in page.items] == old


def test_ping_checks_credentials_and_project(ct, ct_conn, sandbox):
    assert ct.ping()["key"] == "demo"
    control(sandbox, "set_credentials", {"projects": ["other"]})
    with pytest.raises(errors.NotFoundError):
        ct.ping()


def test_storefront_side_fulfilments_exclude_the_hubs_own_deliveries(ct, sandbox, catalog):
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    ct.mark_shipped(oid, [Parcel("DPD", "TRK-1", lines=[("SKU-002", 1)])])
    made = control(sandbox, "store_fulfil", {"order": oid, "lines": [["SKU-001", 2]], "tracking": "STORE-1"})
    order = ct.get_order(oid)
    [f] = ct.storefront_fulfilments(order)
    assert f.fulfilment_ref == made["delivery_id"] and f.lines == [("SKU-001", 2)] and f.order_ref == oid
    assert f.location == "uk-web" and f.fulfilled_at is not None
    assert order.raw["shippingInfo"]["deliveries"][0]["key"].startswith("hub-")
    assert ct.mark_shipped(oid, [Parcel("DPD", "TRK-1", lines=[("SKU-002", 1)])]) == made["version"]  # still idempotent


def test_a_409_on_a_read_is_retried(ct, sandbox, catalog):
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    ct.get_stock(SKUS, "uk-web")
    faults(sandbox, fail_next=[409])
    ct.client.sleep = lambda s: None
    assert ct.mark_shipped(oid, [Parcel("DPD", "T-409")]) == 2


def test_unpublished_products_take_stock_but_are_not_listed_as_sold(ct, sandbox, catalog):
    control(
        sandbox,
        "seed_catalog",
        {"channels": [], "products": [{"key": "LAUNCH", "skus": ["NEXT-1"], "published": False}], "quantity": None},
    )
    [res] = ct.set_stock([InventoryTarget("NEXT-1", "uk-web", 12)])
    assert res.ok and res.quantity == 12
    skus = set(ct.list_skus())
    assert "NEXT-1" not in skus and set(SKUS) <= skus


# --- returns ---------------------------------------------------------------------------------------------
def _update(ct, oid, version, *actions):
    return ct.client.post(ct.path(f"orders/{oid}"), json={"version": version, "actions": list(actions)}).json()


def test_returns_are_added_and_moved_with_the_real_update_actions(ct, sandbox, catalog):
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    first = ct.orders_since("")
    order = ct.get_order(oid)
    assert ct.storefront_returns(order) == [] and not ct.storefront_returns(order).rejected
    lines = {ln.sku: ln.line_id for ln in order.lines}
    body = _update(
        ct,
        oid,
        order.version,
        {
            "action": "addReturnInfo",
            "returnTrackingId": "RET-9",
            "returnDate": "2026-11-20T10:00:00.000Z",
            "items": [
                {"lineItemId": lines["SKU-001"], "quantity": 2, "shipmentState": "Advised"},
                {"lineItemId": lines["SKU-002"], "quantity": 1, "shipmentState": "Returned"},
            ],
        },
    )
    assert body["version"] == order.version + 1 and body["lastModifiedAt"] > order.raw["lastModifiedAt"]
    [info] = body["returnInfo"]
    assert info["returnTrackingId"] == "RET-9" and [i["type"] for i in info["items"]] == ["LineItemReturnItem"] * 2
    assert all(i["paymentState"] == "Initial" and i["createdAt"] for i in info["items"])
    # the order poll brings the modified order back
    again = ct.orders_since(first.cursor)
    assert [o.external_id for o in again.items] == [oid]
    rets = ct.storefront_returns(again.items[0])
    assert [(r.line_id, r.quantity, r.state, r.condition) for r in rets] == [
        (lines["SKU-001"], 2, "Advised", "advised"),
        (lines["SKU-002"], 1, "Returned", "inspection"),
    ]
    assert rets[0].return_ref == info["items"][0]["id"] and rets[0].order_ref == oid
    assert rets[0].returned_at.isoformat().startswith("2026-11-20T10:00")

    body = _update(
        ct,
        oid,
        body["version"],
        {"action": "setReturnShipmentState", "returnItemId": info["items"][0]["id"], "shipmentState": "BackInStock"},
        {"action": "setReturnShipmentState", "returnItemId": info["items"][1]["id"], "shipmentState": "Unusable"},
        {"action": "setReturnPaymentState", "returnItemId": info["items"][1]["id"], "paymentState": "Refunded"},
    )
    rets = ct.storefront_returns(ct.get_order(oid))
    assert [(r.return_ref, r.condition) for r in rets] == [
        (info["items"][0]["id"], "available"),
        (info["items"][1]["id"], "damaged"),
    ]
    state = control(sandbox, "state")["orders"][oid]["returns"]
    assert state[info["items"][1]["id"]] == {
        "line_item_id": lines["SKU-002"],
        "quantity": 1,
        "shipment_state": "Unusable",
    }


def test_return_update_actions_are_validated(ct, sandbox, catalog):
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    order = ct.get_order(oid)
    line = order.lines[1].line_id  # 1 unit ordered
    with pytest.raises(errors.BadDataError):  # more returned than ordered
        _update(
            ct,
            oid,
            order.version,
            {"action": "addReturnInfo", "items": [{"lineItemId": line, "quantity": 2, "shipmentState": "Advised"}]},
        )
    with pytest.raises(errors.BadDataError):
        _update(
            ct,
            oid,
            order.version,
            {"action": "addReturnInfo", "items": [{"lineItemId": "nope", "quantity": 1, "shipmentState": "Advised"}]},
        )
    with pytest.raises(errors.BadDataError):
        _update(
            ct,
            oid,
            order.version,
            {"action": "addReturnInfo", "items": [{"lineItemId": line, "quantity": 1, "shipmentState": "Lost"}]},
        )
    with pytest.raises(errors.BadDataError):
        _update(
            ct,
            oid,
            order.version,
            {"action": "setReturnShipmentState", "returnItemId": "nope", "shipmentState": "Returned"},
        )
    made = control(sandbox, "add_return", {"order": order.order_number, "items": [{"sku": "SKU-002", "quantity": 1}]})
    assert made["version"] == order.version + 1
    with pytest.raises(errors.ConflictError):  # stale version
        _update(
            ct,
            oid,
            order.version,
            {
                "action": "setReturnShipmentState",
                "returnItemId": made["return_item_ids"][0],
                "shipmentState": "Returned",
            },
        )
    assert (
        control(sandbox, "state")["orders"][oid]["returns"][made["return_item_ids"][0]]["shipment_state"] == "Advised"
    )


def test_unreadable_return_entries_are_rejected_and_the_rest_kept(ct, emu, sandbox, catalog):
    [oid] = control(sandbox, "create_orders", {"orders": [ORDER]})["ids"]
    [good] = control(
        sandbox, "add_return", {"order": oid, "items": [{"sku": "SKU-001", "quantity": 1, "state": "BackInStock"}]}
    )["return_item_ids"]
    with emu.lock:
        o = emu.orders[oid]
        line = o["lineItems"][0]["id"]
        o["returnInfo"] += [
            {
                "items": [
                    {"id": "q0", "quantity": 0, "lineItemId": line, "shipmentState": "Returned"},
                    {"id": "st", "quantity": 1, "lineItemId": line, "shipmentState": "Lost"},
                    {"quantity": 1, "lineItemId": line, "shipmentState": "Returned"},
                    {
                        "type": "CustomLineItemReturnItem",
                        "id": "fee",
                        "quantity": 1,
                        "customLineItemId": "gift-wrap",
                        "shipmentState": "Returned",
                    },
                    "junk",
                ]
            },
            {"no": "items"},
        ]
    rets = ct.storefront_returns(ct.get_order(oid))
    assert [r.return_ref for r in rets] == [good]  # the custom line item return (no SKU) is skipped, not rejected
    assert [(r.ref, r.field) for r in rets.rejected] == [
        (f"{oid}/q0", "returnInfo[1].items[0].quantity"),
        (f"{oid}/st", "returnInfo[1].items[1].shipmentState"),
        (f"{oid}/returnInfo[1].items[2]", "returnInfo[1].items[2].id"),
        (f"{oid}/returnInfo[1].items[4]", "returnInfo[1].items[4]"),
        (f"{oid}/returnInfo[2]", "returnInfo[2].items"),
    ]
    with emu.lock:
        emu.orders[oid]["returnInfo"] = {"items": []}
    rets = ct.storefront_returns(ct.get_order(oid))
    assert list(rets) == [] and [r.field for r in rets.rejected] == ["returnInfo"]
