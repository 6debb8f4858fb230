"""WAIR connector against the WAIR emulator, over real HTTP."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connectors import errors
from connectors.base import Address, Fulfilment, WarehouseOrder, WarehouseOrderLine
from connectors.http import HeaderAuth, HttpClient
from connectors.wair import NotAcknowledged, ParsedBatch, WairConnector, WairValidationError
from tests.support.sandbox import controller, faulter

KEY = "wair-demo-key"


control = controller("wair")
faults = faulter("wair")


@pytest.fixture
def wair_conn(db, sandbox):
    from integration_hub.core.models import Connection

    conn = Connection(
        name="wair-test",
        system_type="wair",
        base_url=f"{sandbox.url}/wair",
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
        max_retries=3,
        options={"page_size": 2},
    )
    conn.set_secret(KEY)
    conn.set_webhook_secret("wair-hook-secret")
    conn.save()
    return conn


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def wair(wair_conn, sleeps):
    """Connector whose client records back-off sleeps instead of sleeping (the suite stays fast)."""
    client = HttpClient.for_connection(wair_conn, auth=HeaderAuth("X-Api-Key", wair_conn.get_secret()), sleep=sleeps)
    return WairConnector(wair_conn, client=client)


def order(ref="HUB-1", **kw) -> WarehouseOrder:
    fields = dict(
        order_ref=ref,
        order_number="10001",
        channel="web",
        lines=[
            WarehouseOrderLine("l1", "SKU-A", 2, unit_price_cents=1999, custom_fields={"engraving": "AB"}),
            WarehouseOrderLine("l2", "KIT-1", 1),
            WarehouseOrderLine("l2.1", "SKU-B", 1, parent_line_id="l2"),
            WarehouseOrderLine("l2.2", "SKU-C", 2, parent_line_id="l2"),
        ],
        shipping_address=Address(
            first_name="Ada",
            last_name="Lovelace",
            street="1 Analytical Way",
            postal_code="EC1A 1AA",
            city="London",
            country="GB",
            phone="+44 20 0000",
            email="ada@example.com",
        ),
        billing_address=Address(
            first_name="Ada",
            last_name="Lovelace",
            street="2 Bill St",
            postal_code="EC1A 1AB",
            city="London",
            country="GB",
        ),
        shipping_method="DHL-EXP",
        carrier="dhl",
        customer_email="ada@example.com",
        gift_message="Happy birthday!",
        delivery_notes="Leave with neighbour",
        custom_fields={"giftWrap": True, "source": "app"},
        placed_at=datetime(2026, 11, 1, 12, 30, tzinfo=timezone.utc),
        currency="GBP",
        total_cents=5997,
    )
    fields.update(kw)
    return WarehouseOrder(**fields)


# --- auth ----------------------------------------------------------------------------------------------
def test_auth_refused_then_accepted(wair_conn, wair, sandbox):
    control(
        sandbox, "seed_locations", {"locations": [{"id": "DC1", "name": "Main DC"}, {"id": "SHOP1", "name": "Shop"}]}
    )
    bad = WairConnector(wair_conn, client=HttpClient.for_connection(wair_conn, auth=HeaderAuth("X-Api-Key", "wrong")))
    with pytest.raises(errors.PermanentError) as exc:
        bad.locations()
    assert exc.value.status == 401 and exc.value.body["code"] == "Unauthorized"
    assert [l["id"] for l in wair.locations()] == ["DC1", "SHOP1"]
    control(sandbox, "set_api_key", {"key": "rotated"})
    with pytest.raises(errors.PermanentError):
        wair.locations()


def test_build_client_uses_connection_secret(wair_conn, sandbox):
    c = WairConnector(wair_conn)
    assert c.client.auth.header == "X-Api-Key" and c.client.auth.value == KEY
    assert c.locations() == []


# --- stock -----------------------------------------------------------------------------------------------
def test_stock_change_feed_pages_with_cursor(wair, sandbox):
    rows = [{"sku": f"S{i}", "location": "DC1", "state": "available", "quantity": i} for i in range(5)]
    rows[4]["state"] = "in_transit"
    control(sandbox, "set_stock", {"rows": rows})
    seen, cursor, pages = [], "", 0
    while True:
        page = wair.stock_changes(cursor)
        pages += 1
        seen += page.items
        assert page.cursor != cursor or not page.items
        cursor = page.cursor
        if not page.has_more:
            break
    assert pages == 3 and [c.sku for c in seen] == ["S0", "S1", "S2", "S3", "S4"]
    assert seen[4].state == "in_transit" and seen[3].quantity == 3 and seen[0].location == "DC1"
    assert all(c.changed_at and c.changed_at.tzinfo for c in seen) and seen[0].ref == "1"
    stamps = [c.changed_at for c in seen]
    assert all(a < b for a, b in zip(stamps, stamps[1:]))  # strictly increasing, even within one burst
    # nothing new: same cursor, empty page; a later change continues from there
    empty = wair.stock_changes(cursor)
    assert (empty.items, empty.cursor, empty.has_more) == ([], cursor, False)
    control(sandbox, "set_stock", {"rows": [{"sku": "S0", "location": "DC1", "quantity": 42}]})
    nxt = wair.stock_changes(cursor)
    assert [(c.sku, c.quantity) for c in nxt.items] == [("S0", 42)] and nxt.cursor == "6"


def test_cursor_from_before_a_restart_replays_from_the_start(wair, sandbox):
    control(sandbox, "set_stock", {"rows": [{"sku": "S", "location": "DC1", "quantity": 1}]})
    page = wair.stock_changes("500")  # the hub's cursor is past the end of a freshly restarted WAIR
    assert [(c.sku, c.quantity) for c in page.items] == [("S", 1)] and page.cursor == "1"
    assert wair.dispatches_since("9").items == [] and wair.dispatches_since("9").cursor == "0"


def test_invalid_cursor_is_bad_data(wair):
    with pytest.raises(errors.BadDataError):
        wair.stock_changes("not-a-cursor")


def test_stock_snapshot_pages_and_filters(wair, sandbox):
    rows = [
        {"sku": f"S{i}", "location": loc, "state": "available", "quantity": i}
        for i in range(4)
        for loc in ("DC1", "SHOP1")
    ] + [{"sku": "S1", "location": "DC1", "state": "damaged", "quantity": 9}]
    control(sandbox, "seed_stock", {"rows": rows})
    everything = list(wair.stock_snapshot())
    assert len(everything) == 9
    assert {(c.sku, c.location, c.state, c.quantity) for c in everything} == {
        (r["sku"], r["location"], r["state"], r["quantity"]) for r in rows
    }
    some = list(wair.stock_snapshot(["S1", "S3"]))
    assert sorted((c.sku, c.location, c.state) for c in some) == [
        ("S1", "DC1", "available"),
        ("S1", "DC1", "damaged"),
        ("S1", "SHOP1", "available"),
        ("S3", "DC1", "available"),
        ("S3", "SHOP1", "available"),
    ]
    shop = list(wair.stock_snapshot(["S1", "S2"], location="SHOP1"))
    assert sorted((c.sku, c.quantity) for c in shop) == [("S1", 1), ("S2", 2)] and {c.location for c in shop} == {
        "SHOP1"
    }
    assert control(sandbox, "state")["changes"] == 0  # seeding is not a change


def test_seed_stock_bulk_is_fast(sandbox):
    import time

    rows = [
        {"sku": f"SKU-{i:06d}", "location": "DC1", "state": "available", "quantity": i % 50} for i in range(100_000)
    ]
    t = time.monotonic()
    out = control(sandbox, "seed_stock", {"rows": rows})
    assert out["stock_rows"] == 100_000 and time.monotonic() - t < 10


class Receiver:
    """A local HTTP endpoint standing in for the hub's webhook views."""

    def __init__(self):
        self.received: list[tuple[str, dict, bytes]] = []
        self.fail_first = 0
        self.event = threading.Event()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if outer.fail_first:
                    outer.fail_first -= 1
                    self.send_response(503)
                else:
                    outer.received.append((self.path, dict(self.headers.items()), body))
                    outer.event.set()
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_stock_webhook_signed_batched_and_parsed(wair, sandbox, receiver):
    control(
        sandbox,
        "configure_webhooks",
        {
            "stock_url": f"{receiver.url}/stock",
            "dispatch_url": f"{receiver.url}/dispatch",
            "secret": "wair-hook-secret",
        },
    )
    receiver.fail_first = 1  # first delivery fails: the emulator retries
    control(
        sandbox,
        "set_stock",
        {
            "rows": [
                {"sku": "A", "location": "DC1", "quantity": 3},
                {"sku": "B", "location": "DC1", "state": "reserved", "quantity": 1},
            ]
        },
    )
    stats = control(sandbox, "wait_webhooks", {"timeout": 10})
    assert stats["delivered"] == 1 and stats["retried"] == 1
    path, headers, body = receiver.received[0]
    assert path == "/stock"
    assert wair.verify_webhook(body, headers)
    assert not wair.verify_webhook(body + b" ", headers)
    changes = wair.parse_stock_webhook(json.loads(body))
    assert [(c.sku, c.location, c.state, c.quantity, c.ref) for c in changes] == [
        ("A", "DC1", "available", 3, "1"),
        ("B", "DC1", "reserved", 1, "2"),
    ]


def test_malformed_stock_row_loses_nothing_else(wair, wair_conn):
    from exceptions_app.models import ExceptionRecord
    from integration_hub.catalog.models import Item
    from integration_hub.core.models import Location
    from integration_hub.inventory.models import StockLevel
    from integration_hub.inventory.services import apply_stock_changes

    Item.objects.bulk_create([Item(sku="A"), Item(sku="B"), Item(sku="C")])
    Location.objects.create(code="dc1", name="DC1", connection=wair_conn, external_id="DC1")
    payload = {
        "type": "stock.changed",
        "batchId": "b-1",
        "changes": [
            {
                "id": 10,
                "skuId": "A",
                "locationId": "DC1",
                "state": "available",
                "quantity": 5,
                "changedAt": "2026-11-22T10:00:00.000Z",
            },
            {
                "id": 11,
                "skuId": "B",
                "locationId": "DC1",
                "state": "available",
                "quantity": "lots",
                "changedAt": "2026-11-22T10:00:00Z",
            },
            "garbage",
            {"id": 13, "skuId": "C", "locationId": "DC1", "state": "on-fire", "quantity": 1},
            {"id": 14, "skuId": "C", "locationId": "DC1", "state": "inTransit", "quantity": "7"},
            {"id": 15, "skuId": 42, "locationId": "DC1", "state": ["available"], "quantity": 1},
            {"id": 16, "skuId": "A", "locationId": "DC1", "state": "damaged", "quantity": 2, "changedAt": 1700000000},
        ],
    }
    changes = wair.parse_stock_webhook(payload)
    assert len(changes) == 7  # every row comes through; the hub's validator decides
    assert (changes[0].quantity, changes[4].quantity, changes[4].state, changes[5].sku) == (5, 7, "in_transit", "42")
    res = apply_stock_changes(wair_conn, changes, source="stock-webhook")
    assert (res.received, res.applied, res.rejected) == (7, 2, 5)
    levels = dict(((s.item.sku, s.state), s.quantity) for s in StockLevel.objects.select_related("item"))
    assert levels == {("A", "available"): 5, ("C", "in_transit"): 7}
    bad = {(r.sku, r.message) for r in ExceptionRecord.objects.filter(kind="bad_payload")}
    assert len(bad) == 5  # each names what is wrong
    assert any(sku == "B" and "quantity" in m for sku, m in bad) and any(sku == "C" and "state" in m for sku, m in bad)
    assert any(sku == "A" and "changed_at" in m for sku, m in bad)


def test_unusable_stock_envelope_raises_bad_data(wair):
    with pytest.raises(errors.BadDataError):
        wair.parse_stock_webhook({"rows": []})
    with pytest.raises(errors.BadDataError):
        wair.parse_stock_webhook({"type": "dispatch.confirmed", "changes": []})


# --- orders ----------------------------------------------------------------------------------------------
def test_send_order_acknowledged_and_replay_is_idempotent(wair, sandbox):
    ack = wair.send_order(order())
    assert ack.order_ref == "HUB-1" and ack.warehouse_ref.startswith("WO-") and not ack.duplicate
    again = wair.send_order(order())
    assert again.warehouse_ref == ack.warehouse_ref and again.duplicate
    state = control(sandbox, "state")
    assert state["order_receipts"] == {"HUB-1": 2} and list(state["orders"]) == ["HUB-1"]
    assert wair.order_status("HUB-1") == "accepted"
    assert wair.order_status("NOPE") is None


def test_every_order_field_reaches_wair(wair, sandbox):
    wair.send_order(order())
    sent = control(sandbox, "state")["orders"]["HUB-1"]["request"]
    assert sent["giftMessage"] == "Happy birthday!" and sent["deliveryNotes"] == "Leave with neighbour"
    assert sent["customFields"] == {"giftWrap": True, "source": "app"}
    assert sent["serviceCode"] == "DHL-EXP" and sent["carrier"] == "dhl"
    assert sent["orderNumber"] == "10001" and sent["channel"] == "web" and sent["customerEmail"] == "ada@example.com"
    assert sent["placedAt"] == "2026-11-01T12:30:00Z" and sent["currency"] == "GBP" and sent["totalCents"] == 5997
    assert sent["shippingAddress"]["postalCode"] == "EC1A 1AA" and sent["shippingAddress"]["phone"] == "+44 20 0000"
    assert sent["billingAddress"]["street"] == "2 Bill St"
    lines = {l["lineId"]: l for l in sent["lines"]}
    assert lines["l1"]["customFields"] == {"engraving": "AB"} and lines["l1"]["unitPriceCents"] == 1999
    assert (
        lines["l2.1"]["parentLineId"] == "l2" and lines["l2.2"]["quantity"] == 2 and lines["l1"]["parentLineId"] is None
    )


def test_pending_order_raises_not_acknowledged_until_acked(wair, sandbox):
    control(sandbox, "set_auto_ack", {"enabled": False})
    with pytest.raises(NotAcknowledged) as exc:
        wair.send_order(order("HUB-2"))
    assert exc.value.retryable and exc.value.order_ref == "HUB-2" and exc.value.status == 202
    assert isinstance(exc.value, errors.RetryableError)
    with pytest.raises(NotAcknowledged):
        wair.send_order(order("HUB-2"))
    assert wair.order_status("HUB-2") == "pending"
    assert wair.acknowledgement("HUB-2") is None
    with pytest.raises(errors.NotFoundError):
        wair.acknowledgement("NEVER-SENT")
    acked = control(sandbox, "acknowledge", {})["acknowledged"]
    assert wair.acknowledgement("HUB-2").warehouse_ref == acked["HUB-2"]
    ack = wair.send_order(order("HUB-2"))
    assert ack.warehouse_ref == acked["HUB-2"] and ack.duplicate
    state = control(sandbox, "state")
    assert state["order_receipts"] == {"HUB-2": 3} and len(state["orders"]) == 1


def test_invalid_order_is_bad_data_with_fields(wair, sandbox):
    bad = order(
        "HUB-3",
        shipping_address=Address(first_name="Ada", street="", city="London", country="GBR"),
        shipping_method="",
        lines=[WarehouseOrderLine("l1", "SKU-A", 0), WarehouseOrderLine("l2", "SKU-B", 1, parent_line_id="zz")],
    )
    with pytest.raises(WairValidationError) as exc:
        wair.send_order(bad)
    err = exc.value
    assert isinstance(err, errors.BadDataError) and not err.retryable and err.status == 422
    assert {
        "shippingAddress.street",
        "shippingAddress.postalCode",
        "shippingAddress.country",
        "serviceCode",
        "lines[0].quantity",
        "lines[1].parentLineId",
    } <= set(err.fields)
    assert "serviceCode" in str(err)
    assert control(sandbox, "state")["orders"] == {}


def test_unknown_service_code_and_key_reuse_rejected(wair, sandbox):
    control(sandbox, "set_service_codes", {"codes": ["STD"]})
    with pytest.raises(WairValidationError) as exc:
        wair.send_order(order("HUB-4"))
    assert exc.value.fields.keys() == {"serviceCode"}
    wair.send_order(order("HUB-4", shipping_method="STD"))
    with pytest.raises(WairValidationError) as exc:
        wair.send_order(order("HUB-4", shipping_method="STD", gift_message="changed"))
    assert exc.value.code == "IdempotencyKeyReused"


# --- dispatch / fulfilment ------------------------------------------------------------------------------------
def test_dispatch_feed_and_webhook(wair, sandbox, receiver):
    control(sandbox, "configure_webhooks", {"dispatch_url": f"{receiver.url}/dispatch", "secret": "wair-hook-secret"})
    ack = wair.send_order(order("HUB-5"))
    control(
        sandbox,
        "dispatch",
        {"order_ref": "HUB-5", "parcels": [{"carrier": "dhl", "tracking_number": "JD1", "lines": [["SKU-A", 2]]}]},
    )
    control(sandbox, "dispatch", {"order_ref": "HUB-5", "parcels": [{"carrier": "ups", "tracking_number": "1Z9"}]})
    control(sandbox, "dispatch", {"order_ref": "NOPE"}, expect=400)
    page = wair.dispatches_since("")
    assert isinstance(page.items, ParsedBatch) and page.items.rejected == []
    first, second = page.items
    assert (first.order_ref, first.warehouse_ref, first.complete, first.ref) == ("HUB-5", ack.warehouse_ref, False, "1")
    assert first.parcels[0].tracking_number == "JD1" and first.parcels[0].lines == [("SKU-A", 2)]
    assert "JD1" in first.parcels[0].tracking_url and first.dispatched_at.tzinfo
    assert second.complete and second.parcels[0].carrier == "ups"
    assert sorted(second.parcels[0].lines) == [("SKU-B", 1), ("SKU-C", 2)]  # the kit line itself is not picked
    assert page.cursor == "2" and not page.has_more
    assert wair.dispatches_since(page.cursor).items == []
    assert wair.order_status("HUB-5") == "dispatched"
    control(sandbox, "wait_webhooks", {"timeout": 10})
    bodies = [json.loads(b) for p, h, b in receiver.received if p == "/dispatch"]
    assert len(bodies) == 2 and all(wair.verify_webhook(b, h) for p, h, b in receiver.received)
    parsed = wair.parse_dispatch_webhook(bodies[1])
    assert [d.parcels[0].tracking_number for d in parsed] == ["1Z9"]


def test_dispatch_webhook_bad_row_is_reported_not_dropped(wair):
    good = {
        "id": 7,
        "orderRef": "HUB-9",
        "orderId": "WO-1",
        "dispatchedAt": "2026-11-22T10:00:00Z",
        "complete": True,
        "parcels": [{"carrier": "dhl", "trackingNumber": "T1", "lines": [{"skuId": "A", "quantity": 1}]}],
    }
    bad = {**good, "id": 8, "parcels": [{"carrier": "dhl", "trackingNumber": ""}]}
    parsed = wair.parse_dispatch_webhook({"type": "dispatch.confirmed", "dispatches": [bad, good, 5]})
    assert [d.ref for d in parsed] == ["7"]
    assert [(r.index, r.ref, r.field) for r in parsed.rejected] == [
        (0, "8", "parcels[0].trackingNumber"),
        (2, "row-2", ""),
    ]
    with pytest.raises(errors.BadDataError):
        wair.parse_dispatch_webhook({"nope": 1})


def test_fulfilment_is_idempotent(wair, sandbox):
    control(sandbox, "seed_locations", {"locations": [{"id": "SHOP1"}]})
    control(sandbox, "seed_stock", {"rows": [{"sku": "SKU-A", "location": "SHOP1", "quantity": 5}]})
    f = Fulfilment(
        order_ref="HUB-6",
        fulfilment_ref="F1",
        lines=[("SKU-A", 1)],
        location="SHOP1",
        fulfilled_at=datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc),
    )
    fid = wair.send_fulfilment(f)
    assert fid.startswith("FF-") and wair.send_fulfilment(f) == fid
    fulfilments = control(sandbox, "state")["fulfilments"]
    assert (
        len(fulfilments) == 1
        and fulfilments[0]["locationId"] == "SHOP1"
        and fulfilments[0]["lines"] == [{"skuId": "SKU-A", "quantity": 1}]
    )
    (change,) = wair.stock_changes("").items  # the shipped unit left the shop's on-hand once, not per replay
    assert (change.sku, change.location, change.state, change.quantity) == ("SKU-A", "SHOP1", "available", 4)
    with pytest.raises(WairValidationError) as exc:
        wair.send_fulfilment(Fulfilment(order_ref="HUB-6", fulfilment_ref="F2", lines=[("SKU-A", 1)], location="MARS"))
    assert "locationId" in exc.value.fields


# --- client behaviour against WAIR faults ---------------------------------------------------------------------
def test_429_and_5xx_are_retried_honouring_retry_after(wair, sandbox, sleeps):
    faults(sandbox, fail_next=[429, 503])
    ack = wair.send_order(order("HUB-7"))
    assert ack.warehouse_ref and wair.client.stats.retries == 2
    assert sleeps[0] >= 1.0  # Retry-After: 1 on the 429
    assert control(sandbox, "state")["order_receipts"] == {"HUB-7": 1}


def test_retries_end_with_a_typed_error(wair, sandbox):
    faults(sandbox, fail_next=[503, 503, 503, 503])
    with pytest.raises(errors.RetryableError) as exc:
        wair.stock_changes("")
    assert exc.value.status == 503 and not isinstance(exc.value, NotAcknowledged)
    faults(sandbox, rate_limit_per_second=1, rate_limit_burst=1)
    wair.client.max_retries = 0
    wair.stock_changes("")
    with pytest.raises(errors.RateLimitedError) as exc:
        wair.stock_changes("")
    assert exc.value.retry_after >= 1


def test_registry_builds_wair_connector(wair_conn):
    from connectors.registry import get_connector

    assert isinstance(get_connector(wair_conn, fresh=True), WairConnector)


# --- hardening: lost answers, in-flight conflicts, cancel, pending fulfilments, raw webhooks ---------------------
def test_lost_response_is_retried_as_a_replay_never_a_second_order(wair_conn, sandbox, sleeps):
    wair_conn.timeout_seconds = 0.3
    client = HttpClient.for_connection(wair_conn, auth=HeaderAuth("X-Api-Key", KEY), sleep=sleeps)
    wair = WairConnector(wair_conn, client=client)
    control(sandbox, "lose_responses", {"count": 2, "hang_seconds": 0.6})  # beyond the client's read timeout
    ack = wair.send_order(order("HUB-10"))
    assert ack.duplicate and client.stats.timeouts == 2
    state = control(sandbox, "state", {"brief": True})
    assert state["order_receipts"] == {"HUB-10": 3} and list(state["orders"]) == ["HUB-10"]
    assert state["orders"]["HUB-10"]["orderId"] == ack.warehouse_ref and "request" not in state["orders"]["HUB-10"]
    assert state["lost_responses"] == 2


def test_in_flight_conflict_on_order_intake_is_retried(wair, sandbox):
    faults(sandbox, conflict_rate=1.0)
    with pytest.raises(errors.ConflictError):
        wair.send_order(order("HUB-11"))  # every attempt conflicts: retries end with the typed error
    assert wair.client.stats.conflicts == 4  # first try + max_retries=3
    faults(sandbox, conflict_rate=0.0)
    assert wair.send_order(order("HUB-11")).warehouse_ref
    assert control(sandbox, "state")["order_receipts"] == {"HUB-11": 1}


def test_cancel_order(wair, sandbox):
    from connectors.wair import AlreadyDispatched

    wair.send_order(order("HUB-12"))
    wair.send_order(order("HUB-13"))
    assert wair.cancel_order("HUB-12") == "cancelled" and wair.cancel_order("HUB-12") == "cancelled"
    assert wair.order_status("HUB-12") == "cancelled"
    control(sandbox, "dispatch", {"order_ref": "HUB-12"}, expect=400)
    control(sandbox, "dispatch", {"order_ref": "HUB-13"})
    with pytest.raises(AlreadyDispatched):
        wair.cancel_order("HUB-13")
    with pytest.raises(errors.NotFoundError):
        wair.cancel_order("NOPE")
    from connectors.wair import OrderCancelled

    with pytest.raises(OrderCancelled):
        wair.send_order(order("HUB-12"))  # a late retry never revives a cancelled order
    assert wair.send_order(order("HUB-13")).duplicate  # replay of a dispatched order still acknowledges


def test_pending_fulfilment_raises_not_acknowledged(wair, sandbox):
    control(sandbox, "set_auto_ack", {"fulfilments": False})
    f = Fulfilment(order_ref="HUB-14", fulfilment_ref="F1", lines=[("SKU-A", 2)])
    with pytest.raises(NotAcknowledged) as exc:
        wair.send_fulfilment(f)
    assert exc.value.kind == "not_acknowledged"
    acked = control(sandbox, "acknowledge", {"order_refs": ["HUB-14"]})["fulfilments"]
    assert wair.send_fulfilment(f) == acked["HUB-14:F1"]
    assert len(control(sandbox, "state")["fulfilments"]) == 1


def test_raw_webhook_and_negative_stock_reach_the_hub_as_sent(wair, sandbox, receiver):
    control(sandbox, "configure_webhooks", {"stock_url": f"{receiver.url}/stock", "secret": "wair-hook-secret"})
    control(sandbox, "set_stock", {"rows": [{"sku": "A", "location": "DC1", "quantity": -3}]})
    control(
        sandbox,
        "send_raw_webhook",
        {"kind": "stock", "payload": {"type": "stock.changed", "changes": [{"skuId": "B"}]}},
    )
    control(sandbox, "wait_webhooks", {"timeout": 10})
    parsed = [wair.parse_stock_webhook(json.loads(b)) for _, _, b in receiver.received]
    assert [(c.sku, c.quantity) for batch in parsed for c in batch] == [("A", -3), ("B", None)]
    assert all(wair.verify_webhook(b, h) for _, h, b in receiver.received)
    control(sandbox, "send_raw_webhook", {"kind": "dispatch", "payload": {}}, expect=400)  # no dispatch_url


def test_allocation_moves_stock_through_the_change_feed(wair, sandbox):
    control(
        sandbox,
        "seed_stock",
        {"rows": [{"sku": s, "location": "DC1", "quantity": 10} for s in ("SKU-A", "SKU-B", "SKU-C")]},
    )
    control(sandbox, "set_allocation", {"enabled": True, "location": "DC1"})
    wair.send_order(order("HUB-20"))  # A×2, kit (B×1 + C×2)
    wair.send_order(order("HUB-21"))
    state = control(sandbox, "state", {"skus": ["SKU-A", "SKU-B", "SKU-C", "KIT-1"]})["stock"]
    assert state["SKU-A"]["DC1"] == {"available": 10, "reserved": 4} and state["SKU-C"]["DC1"]["reserved"] == 4
    assert "KIT-1" not in state
    control(sandbox, "dispatch", {"order_ref": "HUB-20"})
    wair.cancel_order("HUB-21")
    state = control(sandbox, "state", {"skus": ["SKU-A", "SKU-C"]})["stock"]
    assert state["SKU-A"]["DC1"] == {"available": 8, "reserved": 0} and state["SKU-C"]["DC1"] == {
        "available": 8,
        "reserved": 0,
    }
    control(sandbox, "dispatch", {"order_ref": "HUB-20"}, expect=400)  # nothing left to ship
    feed, cursor = [], ""
    while True:
        page = wair.stock_changes(cursor)
        feed += page.items
        cursor = page.cursor
        if not page.has_more:
            break
    last = {(c.sku, c.state): c.quantity for c in feed}  # the feed replays to the same end state
    assert last == {
        ("SKU-A", "reserved"): 0,
        ("SKU-B", "reserved"): 0,
        ("SKU-C", "reserved"): 0,
        ("SKU-A", "available"): 8,
        ("SKU-B", "available"): 9,
        ("SKU-C", "available"): 8,
    }


def test_allocation_is_on_by_default_where_most_is_free_and_dispatches_are_found_per_order(wair, sandbox):
    control(
        sandbox,
        "seed_stock",
        {
            "rows": [
                {"sku": "SKU-A", "location": "DC1", "quantity": 3},
                {"sku": "SKU-A", "location": "DC2", "quantity": 10},
                {"sku": "SKU-B", "location": "DC1", "quantity": 5},
            ]
        },
    )
    ack = wair.send_order(order("HUB-30"))  # A×2, kit (B×1 + C×2); WAIR holds no C: back-ordered, not allocated
    assert ack.received_at is not None
    changes = wair.stock_changes("").items
    assert {(c.sku, c.location, c.state, c.quantity) for c in changes} == {
        ("SKU-A", "DC2", "reserved", 2),
        ("SKU-B", "DC1", "reserved", 1),
    }
    assert all(c.changed_at >= ack.received_at for c in changes)
    assert wair.dispatches_for("HUB-30") == []
    control(
        sandbox,
        "dispatch",
        {"order_ref": "HUB-30", "parcels": [{"carrier": "dhl", "tracking_number": "D30", "lines": [["SKU-A", 2]]}]},
    )
    control(sandbox, "dispatch", {"order_ref": "HUB-30", "parcels": [{"carrier": "dhl", "tracking_number": "D31"}]})
    found = wair.dispatches_for("HUB-30")
    assert [p.tracking_number for d in found for p in d.parcels] == ["D30", "D31"] and found[-1].complete
    with pytest.raises(errors.NotFoundError):
        wair.dispatches_for("NOPE")


def test_end_to_end_into_the_hub_webhook_view_and_poll(wair_conn, sandbox, receiver, client, settings):
    """Emulator → signed webhook → the hub's real stock view; and the cursor poll through the registry."""
    from connectors.registry import clear_cache
    from integration_hub.catalog.models import Item
    from integration_hub.core.models import Location, SyncCursor
    from integration_hub.inventory.models import StockLevel
    from integration_hub.inventory.services import poll_master

    settings.HUB = {**settings.HUB, "STOCK_PUSH_ON_COMMIT": False}
    clear_cache()
    Item.objects.bulk_create([Item(sku="A"), Item(sku="B")])
    Location.objects.create(code="dc1", name="DC1", connection=wair_conn, external_id="DC1")
    control(sandbox, "configure_webhooks", {"stock_url": f"{receiver.url}/stock", "secret": "wair-hook-secret"})
    control(
        sandbox,
        "set_stock",
        {
            "rows": [
                {"sku": "A", "location": "DC1", "quantity": 6},
                {"sku": "B", "location": "DC1", "state": "in_transit", "quantity": 2},
            ]
        },
    )
    control(sandbox, "wait_webhooks", {"timeout": 10})
    _, headers, body = receiver.received[0]
    r = client.post(
        f"/hooks/stock/{wair_conn.name}/",
        data=body,
        content_type="application/json",
        headers={"X-Hub-Signature": headers["X-Hub-Signature"]},
    )
    assert r.status_code == 200, r.content
    assert r.json()["applied"] == 2
    got = {(s.item.sku, s.state): s.quantity for s in StockLevel.objects.select_related("item")}
    assert got == {("A", "available"): 6, ("B", "in_transit"): 2}
    forged = client.post(
        f"/hooks/stock/{wair_conn.name}/",
        data=body.replace(b"6", b"9"),
        content_type="application/json",
        headers={"X-Hub-Signature": headers["X-Hub-Signature"]},
    )
    assert forged.status_code == 401

    control(sandbox, "set_stock", {"rows": [{"sku": "A", "location": "DC1", "quantity": 1}]})
    out = poll_master(wair_conn)
    assert out.changes == 3 and SyncCursor.objects.get(connection=wair_conn).value == "3"
    assert StockLevel.objects.get(item__sku="A", state="available").quantity == 1
    clear_cache()


# --- WAIR's published token flow -------------------------------------------------------------------------------
@pytest.fixture
def token_conn(db, sandbox):
    from django.core.cache import cache

    from integration_hub.core.models import Connection

    cache.clear()
    conn = Connection(
        name="wair-token",
        system_type="wair",
        base_url=f"{sandbox.url}/wair",
        client_id="hub",
        options={"tenant": "DEMO"},
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        timeout_seconds=5,
    )
    conn.set_secret("wair-demo-password")
    conn.save()
    yield conn
    cache.clear()


def test_token_auth_is_cached_and_refreshed_on_401(token_conn, sandbox):
    from connectors.wair import WairTokenAuth

    wair = WairConnector(token_conn)
    assert isinstance(wair.client.auth, WairTokenAuth)
    control(sandbox, "seed_locations", {"locations": [{"id": "DC1"}]})
    assert [l["id"] for l in wair.locations()] == ["DC1"] and wair.stock_changes("").items == []
    assert control(sandbox, "state")["tokens_issued"] == 1  # one token for both calls
    control(sandbox, "revoke_tokens")
    assert wair.locations()  # 401 → new token → same call succeeds
    assert control(sandbox, "state")["tokens_issued"] == 2


def test_token_auth_refused(token_conn, sandbox):
    from django.core.cache import cache

    token_conn.options = {"tenant": "OTHER"}
    with pytest.raises(errors.PermanentError) as exc:
        WairConnector(token_conn).locations()
    assert exc.value.status == 401
    cache.clear()
    token_conn.options = {"tenant": "DEMO"}
    token_conn.set_secret("wrong")
    with pytest.raises(errors.PermanentError):
        WairConnector(token_conn).locations()
    assert control(sandbox, "state")["tokens_issued"] == 0


def test_non_json_answer_is_bad_data(wair_conn):
    class Html(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>proxy says hi</html>" if "changes" in self.path else b"[1, 2]"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        wair_conn.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        wair = WairConnector(wair_conn)
        with pytest.raises(errors.BadDataError) as exc:
            wair.stock_changes("")
        assert "non-JSON" in str(exc.value)
        with pytest.raises(errors.BadDataError):
            wair.locations()
    finally:
        server.shutdown()
        server.server_close()


def test_dispatch_complete_flag_parsing(wair):
    row = {"id": 1, "orderRef": "R", "parcels": [{"trackingNumber": "T"}]}
    parsed = wair.parse_dispatch_webhook(
        {"dispatches": [{**row, "complete": "false"}, {**row, "id": 2}, {**row, "id": 3, "complete": "maybe"}]}
    )
    assert [(d.ref, d.complete) for d in parsed] == [("1", False), ("2", True)]
    assert [(r.ref, r.field) for r in parsed.rejected] == [("3", "complete")]


def test_auto_dispatch_ships_accepted_orders(wair, sandbox):
    import time

    control(sandbox, "set_auto_dispatch", {"after_seconds": 0.1, "carrier": "dpd"})
    wair.send_order(order("HUB-30"))
    control(sandbox, "set_auto_ack", {"enabled": False})
    with pytest.raises(NotAcknowledged):
        wair.send_order(order("HUB-31"))  # pending orders are not shipped
    deadline = time.time() + 5
    while time.time() < deadline and not wair.dispatches_since("").items:
        time.sleep(0.05)
    time.sleep(0.2)
    (d,) = wair.dispatches_since("").items
    assert d.order_ref == "HUB-30" and d.complete and d.parcels[0].carrier == "dpd"
    assert "track.dpd" in d.parcels[0].tracking_url
    assert wair.order_status("HUB-31") == "pending"
    control(sandbox, "dispatch", {"order_ref": "HUB-30", "parcels": [{"lines": [["SKU-A"]]}]}, expect=400)  # bad parcel
    assert control(sandbox, "state")["orders"]["HUB-30"]["dispatched"] == {"SKU-A": 2, "SKU-B": 1, "SKU-C": 2}


def test_concurrent_sends_of_one_order_create_it_once(wair, sandbox):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        acks = list(pool.map(lambda _: wair.send_order(order("HUB-40")), range(16)))
    assert len({a.warehouse_ref for a in acks}) == 1 and sum(not a.duplicate for a in acks) == 1
    state = control(sandbox, "state", {"brief": True})
    assert list(state["orders"]) == ["HUB-40"] and state["order_receipts"] == {"HUB-40": 16}


def test_order_refs_with_reserved_characters(wair, sandbox):
    ref = "web/10 01#a?b"
    ack = wair.send_order(order(ref))
    assert wair.order_status(ref) == "accepted" and wair.acknowledgement(ref).warehouse_ref == ack.warehouse_ref
    assert wair.cancel_order(ref) == "cancelled"


def test_the_acknowledgement_names_where_wair_allocated_each_line(wair, sandbox):
    """Issue 20, item 5: WAIR allocates each picked line where it has the most free stock (a uk-web order may land at
    EU1); the answer (and a replay) lists those allocations, and a line WAIR holds no stock of has none."""
    control(sandbox, "seed_locations", {"locations": [{"id": "DC1"}, {"id": "EU1"}]})
    control(
        sandbox,
        "set_stock",
        {
            "rows": [
                {"sku": "SKU-A", "location": "DC1", "quantity": 3},
                {"sku": "SKU-A", "location": "EU1", "quantity": 9},
                {"sku": "SKU-B", "location": "DC1", "quantity": 4},
            ]
        },
    )
    ack = wair.send_order(order("HUB-AL"))
    assert ack.allocations == {"SKU-A": "EU1", "SKU-B": "DC1"}  # SKU-C: no stock anywhere, back-ordered
    assert wair.send_order(order("HUB-AL")).allocations == ack.allocations
    assert wair.get_order("HUB-AL")["allocations"] == [
        {"skuId": "SKU-A", "locationId": "EU1", "quantity": 2},
        {"skuId": "SKU-B", "locationId": "DC1", "quantity": 1},
    ]
