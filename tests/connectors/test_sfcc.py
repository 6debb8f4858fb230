"""SFCC connector against the SFCC emulator, over real HTTP."""

from __future__ import annotations

import pytest

from connectors import errors
from connectors.base import InventoryTarget, Parcel
from connectors.registry import get_connector
from connectors.sfcc import SFCCConnector

from .conftest import SKUS, control, faults
from tests.support.sandbox import SandboxClient


def test_registry_builds_sfcc(sf_conn):
    assert isinstance(get_connector(sf_conn, fresh=True), SFCCConnector)


def test_set_stock_batches_per_inventory_list_and_is_absolute(sf, sandbox):
    sb = SandboxClient.of(sandbox)
    targets = [InventoryTarget(sku=s, channel_ref="inv_uk", quantity=i) for i, s in enumerate(SKUS)]
    targets.append(InventoryTarget(sku="SF-001", channel_ref="inv_eu", quantity=42))
    before = sb.stats("sfcc").by_route.copy()
    results = sf.set_stock(targets)
    assert all(r.ok for r in results) and len(results) == 121
    state = control(sandbox, "state", {})["inventory"]
    assert state["inv_uk"]["SF-120"] == 119 and state["inv_eu"]["SF-001"] == 42
    batch_calls = sum(v for k, v in sb.stats("sfcc").by_route.items() if "batch" in k) - sum(
        v for k, v in before.items() if "batch" in k
    )
    assert batch_calls == 4  # 120 records in 3 batches of ≤ 50 for inv_uk, 1 for inv_eu
    # replaying the same absolute targets changes nothing
    sf.set_stock(targets)
    assert control(sandbox, "state", {})["inventory"]["inv_uk"]["SF-120"] == 119


def test_set_stock_per_record_errors(sf, sandbox):
    results = sf.set_stock(
        [
            InventoryTarget("SF-001", "inv_uk", 5),
            InventoryTarget("NOPE", "inv_uk", 1),
            InventoryTarget("SF-002", "inv_uk", -1),
            InventoryTarget("SF-003", "no_list", 1),
        ]
    )
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
    ids = control(
        sandbox,
        "create_orders",
        {
            "orders": [
                {
                    "channel": "inv_uk",
                    "lines": [{"sku": "SF-001", "quantity": 2, "price": 10.5}],
                    "shipping_method": "express",
                    "gift_message": "Happy birthday",
                    "delivery_notes": "Leave with neighbour",
                    "custom_fields": {"giftWrap": True},
                    "promotion_codes": ["SUMMER10"],
                    "email": "a@example.com",
                    "address": {
                        "first_name": "Ann",
                        "last_name": "Lee",
                        "street": "2 Low Rd",
                        "postal_code": "M1 1AA",
                        "city": "Manchester",
                        "country": "GB",
                    },
                },
            ]
            + [{"channel": "inv_eu", "lines": [{"sku": "SF-002", "quantity": 1}]} for _ in range(6)]
        },
    )["ids"]
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
    no = control(
        sandbox, "create_orders", {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 1}]}]}
    )["ids"][0]
    parcels = [Parcel("DPD", "TRK-1", "https://t/1"), Parcel("DPD", "TRK-2")]
    assert sf.mark_shipped(no, parcels) is None
    sf.mark_shipped(no, parcels)
    state = control(sandbox, "state", {})["orders"][no]
    assert (
        state["shipment_state"] == "shipped" and state["tracking"] == ["TRK-1", "TRK-2"] and state["carrier"] == "DPD"
    )
    assert sf.get_order(no).shipment_state == "shipped"


def test_mark_shipped_unknown_or_cancelled(sf, sandbox):
    with pytest.raises(errors.NotFoundError):
        sf.mark_shipped("99999999", [Parcel("DPD", "X")])
    no = control(
        sandbox, "create_orders", {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 1}]}]}
    )["ids"][0]
    control(sandbox, "cancel_order", {"order_no": no})
    with pytest.raises(errors.BadDataError):
        sf.mark_shipped(no, [Parcel("DPD", "X")])


def test_order_webhook_is_signed_and_parsed(sf, sandbox):
    from connectors.signatures import sign

    body = b'{"type": "order.created", "order_no": "00001001"}'
    header = {"X-Hub-Signature": sign("sfcc-hook-secret", body)}
    assert sf.verify_webhook(body, header)
    assert not sf.verify_webhook(body, header)  # accepted once: the same signed request again is a replay
    assert not sf.verify_webhook(body, {"X-Hub-Signature": sign("other", body)})
    assert sf.parse_order_webhook({"order_no": "00001001"}) == ["00001001"]
    assert sf.parse_order_webhook({"orders": [{"order_no": "1"}, {"order_no": 2}]}) == ["1", "2"]
    for bad in (
        {"nothing": 1},
        {"order_no": "../../customers/x"},
        {"orders": [{"order_no": "a b"}]},
        ["not", "an object"],
    ):
        with pytest.raises(errors.BadDataError):
            sf.parse_order_webhook(bad)


def test_orders_start_bounds_the_first_poll(sf_conn, sandbox):
    old = control(
        sandbox, "create_orders", {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 1}]}]}
    )["ids"]
    state = control(sandbox, "state", {})["orders"]
    from datetime import datetime, timedelta

    after_old = datetime.fromisoformat(state[old[0]]["last_modified"].replace("Z", "+00:00")) + timedelta(
        microseconds=1
    )
    sf_conn.options = {
        **sf_conn.options,
        "orders_start": after_old.isoformat(timespec="microseconds").replace("+00:00", "Z"),
    }
    new = control(
        sandbox, "create_orders", {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 1}]}]}
    )["ids"]
    page = SFCCConnector(sf_conn).orders_since("")
    assert [o.external_id for o in page.items] == new


def test_a_malformed_order_is_a_rejected_row_and_does_not_block_the_stream(sf, sandbox):
    """One order SFCC answers with an unreadable line: the page still carries the orders around it and the cursor
    moves past it; the bad one is a rejected row naming the order and the reason (the connector files nothing), and
    the hub's capture files it as a ``bad_payload`` record per order."""
    from exceptions_app.models import ExceptionRecord
    from exceptions_app.services import raise_many
    from integration_hub.orders.rejected import order_problems

    emu = sandbox.emulators["sfcc"]
    ids = control(
        sandbox, "create_orders", {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 1}]}] * 3}
    )["ids"]
    with emu.lock:
        emu.orders[ids[1]]["product_items"][0]["quantity"] = "two"
    page = sf.orders_since("")
    assert [o.external_id for o in page.items] == [ids[0], ids[2]]
    assert page.cursor.endswith(ids[2])
    [row] = page.items.rejected
    assert (row.ref, row.name, row.field) == (ids[1], ids[1], "order") and row.raw["order_no"] == ids[1]
    assert "ValueError" in row.message and "'two'" in row.message
    assert not ExceptionRecord.objects.exists()
    raise_many(order_problems(sf.connection, page.items.rejected))
    rec = ExceptionRecord.objects.get(kind="bad_payload")
    assert rec.dedupe_key == f"bad_payload:{sf.connection.name}:order:{ids[1]}" and rec.order_ref == ids[1]
    assert (
        rec.title == f"Order {ids[1]} from {sf.connection.name} cannot be read"
        and rec.context["action"] == "check_order"
    )
    with emu.lock:
        emu.orders[ids[1]]["product_items"][0]["quantity"] = 1
    assert [o.external_id for o in sf.read_orders([sf.get_order(ids[1]).raw])] == [ids[1]]  # fixed: it reads


def test_expired_token_is_renewed_once(sf, sandbox):
    sf.get_stock(["SF-001"], "inv_uk")
    control(sandbox, "revoke_tokens")
    assert [s.quantity for s in sf.get_stock(["SF-001"], "inv_uk")] == [3]  # 401 → new token → same call succeeds


# --- storefront-side fulfilments (ship-from-store) ------------------------------------------------------
def _order(sandbox, lines=(("SF-001", 2), ("SF-002", 1))):
    return control(
        sandbox,
        "create_orders",
        {"orders": [{"channel": "inv_uk", "lines": [{"sku": s, "quantity": q} for s, q in lines]}]},
    )["ids"][0]


def test_store_shipped_order_is_a_storefront_fulfilment_and_comes_back_in_the_poll(sf, sandbox):
    no = _order(sandbox)
    cursor = sf.orders_since("").cursor
    assert sf.storefront_fulfilments(sf.get_order(no)) == []  # nothing has left yet
    control(
        sandbox, "store_ship", {"order_no": no, "tracking": "STORE-TRK-1", "carrier": "Royal Mail", "store": "STORE1"}
    )
    [polled] = sf.orders_since(cursor).items  # the store's update bumps last_modified
    assert polled.external_id == no and polled.shipment_state == "shipped"
    batch = sf.storefront_fulfilments(polled)
    assert batch.rejected == []
    [f] = batch
    assert f.fulfilment_ref == f"{no}/me" and f.order_ref == no and sorted(f.lines) == [("SF-001", 2), ("SF-002", 1)]
    assert f.location == "STORE1" and f.fulfilled_at is not None
    assert sf.storefront_fulfilments(sf.get_order(no)) == [f]  # stable across reads: same ref, same lines


def test_partial_store_shipments_are_one_fulfilment_each(sf, sandbox):
    no = _order(sandbox, lines=(("SF-001", 3), ("SF-002", 1)))
    first = control(
        sandbox, "store_ship", {"order_no": no, "tracking": "S-1", "store": "STORE1", "lines": [["SF-001", 1]]}
    )
    order = sf.get_order(no)
    assert order.shipment_state == "part_shipped"
    [f1] = sf.storefront_fulfilments(order)
    assert (
        f1.fulfilment_ref == f"{no}/{first['shipment_id']}" and f1.lines == [("SF-001", 1)] and f1.location == "STORE1"
    )
    control(sandbox, "store_ship", {"order_no": no, "tracking": "S-2", "store": "STORE2"})  # the rest, order-level
    batch = sf.storefront_fulfilments(sf.get_order(no))
    assert batch.rejected == [] and len(batch) == 2
    by_ref = {f.fulfilment_ref: f for f in batch}
    assert by_ref[f1.fulfilment_ref].lines == [("SF-001", 1)]  # unchanged by the later shipment
    assert (
        sorted(by_ref[f"{no}/me"].lines) == [("SF-001", 2), ("SF-002", 1)] and by_ref[f"{no}/me"].location == "STORE2"
    )


def test_hub_shipped_order_is_not_a_storefront_fulfilment(sf, sandbox):
    no = _order(sandbox)
    sf.mark_shipped(no, [Parcel("DPD", "TRK-HUB-1")])
    order = sf.get_order(no)
    assert order.shipment_state == "shipped" and order.raw["c_hubDispatchRef"].startswith("hub-")
    assert "hubDispatchRef" not in order.custom_fields  # the hub's own bookkeeping is not sent to a warehouse
    assert sf.storefront_fulfilments(order) == [] and sf.storefront_fulfilments(order).rejected == []
    # a store shipment on another order of the same site is still seen; the hub's own is not
    other = _order(sandbox)
    control(sandbox, "store_ship", {"order_no": other, "tracking": "STORE-9"})
    assert [f.fulfilment_ref for f in sf.storefront_fulfilments(sf.get_order(other))] == [f"{other}/me"]
    # a store shipment made before the hub's dispatch stays the store's after the hub marks the order shipped
    third = _order(sandbox)
    made = control(sandbox, "store_ship", {"order_no": third, "tracking": "S-3", "lines": [["SF-002", 1]]})
    sf.mark_shipped(third, [Parcel("DPD", "TRK-HUB-3")])
    [f] = sf.storefront_fulfilments(sf.get_order(third))
    assert f.fulfilment_ref == f"{third}/{made['shipment_id']}" and f.lines == [("SF-002", 1)]


def test_unreadable_store_shipments_are_rejected_rows_naming_the_field(sf, sandbox):
    no = _order(sandbox)
    # part_shipped set through the Data API, but no shipment says which lines left
    sf.set_order_status(no, "shipping_status", "part_shipped")
    batch = sf.storefront_fulfilments(sf.get_order(no))
    assert list(batch) == [] and [(r.ref, r.field) for r in batch.rejected] == [(no, "shipping_status")]
    assert "which lines" in batch.rejected[0].message
    # a store shipment with an unusable line is rejected whole (never a partial report); the other still counts
    control(sandbox, "store_ship", {"order_no": no, "tracking": "S-1", "lines": [["SF-002", 1]]})
    control(sandbox, "store_ship", {"order_no": no, "tracking": "S-2"})
    raw = sf.get_order(no).raw
    for item in raw["product_items"]:
        if item["shipment_id"] == "me":
            item["quantity"] = "two"
    batch = sf.storefront_fulfilments(raw)
    assert [f.lines for f in batch] == [[("SF-002", 1)]]
    [r] = batch.rejected
    assert r.ref == f"{no}/me" and r.field == "shipments[0].product_items.quantity" and "'two'" in r.message
    raw["shipping_status"] = "SENT"
    assert [r.field for r in sf.storefront_fulfilments(raw).rejected] == ["shipping_status"]
    with pytest.raises(errors.BadDataError):
        sf.storefront_fulfilments({"no": "order"})


def test_storefront_fulfilments_options(sf_conn, sandbox):
    no = _order(sandbox)
    control(sandbox, "store_ship", {"order_no": no, "tracking": "S-1"})
    sf_conn.options = {**sf_conn.options, "storefront_fulfilments": False}
    assert SFCCConnector(sf_conn).storefront_fulfilments(SFCCConnector(sf_conn).get_order(no)) == []
    sf_conn.options = {
        **sf_conn.options,
        "storefront_fulfilments": True,
        "storefront_fulfilments_from": "2999-01-01T00:00:00Z",
    }
    c = SFCCConnector(sf_conn)
    assert c.storefront_fulfilments(c.get_order(no)) == []  # created before the cut-over: never read as store-shipped
    sf_conn.options = {**sf_conn.options, "storefront_fulfilments_from": "2000-01-01T00:00:00Z"}
    c = SFCCConnector(sf_conn)
    assert len(c.storefront_fulfilments(c.get_order(no))) == 1


def test_shipped_lands_through_the_data_api_not_the_shop_patch(sf, sandbox):
    """The Shop API PATCH considers only status and custom attributes: a shipping_status in it is ignored.
    mark_shipped writes the attributes there and shipping_status with the Data API status resource."""
    no = _order(sandbox)
    sf.client.request("PATCH", sf._shop(f"/orders/{no}"), json={"shipping_status": "shipped", "c_note": "x"})
    state = control(sandbox, "state", {})["orders"][no]
    assert state["shipping_status"] == "not_shipped"  # ignored, as OCAPI does
    sf.mark_shipped(no, [Parcel("DPD", "TRK-9")])
    state = control(sandbox, "state", {})["orders"][no]
    assert (
        state["shipping_status"] == "shipped"
        and state["tracking"] == ["TRK-9"]
        and state["hub_marker"].startswith("hub-")
    )
    assert state["shipments"] == {"me": "not_shipped"}  # order level only: shipments stay the store's to mark
    with pytest.raises(errors.BadDataError):
        sf.set_order_status(no, "shipping_status", "delivered")


def test_orders_are_capturable_only_when_placed_and_ready_for_export(sf, sandbox):
    specs = [
        {},
        {"status": "created"},
        {"status": "failed"},
        {"export_status": "not_exported"},
        {"export_status": "exported"},
    ]
    ids = control(
        sandbox,
        "create_orders",
        {"orders": [{"channel": "inv_uk", "lines": [{"sku": "SF-001", "quantity": 1}], **x} for x in specs]},
    )["ids"]
    by = {o.external_id: o for o in sf.orders_since("").items}
    assert [by[i].capturable for i in ids] == [True, False, False, False, False]
    assert [by[i].awaiting_export for i in ids] == [True, True, True, False, False]
    control(sandbox, "cancel_order", {"order_no": ids[0]})
    assert not sf.get_order(ids[0]).capturable  # cancelled: the cancel path, never a capture


def test_mark_exported_sets_the_export_status(sf, sandbox):
    a, b = (_order(sandbox) for _ in range(2))
    sf.mark_exported(a, True)
    sf.mark_exported(b, False)
    state = control(sandbox, "state", {})["orders"]
    assert (state[a]["export_status"], state[b]["export_status"]) == ("exported", "failed")
    assert not sf.get_order(a).awaiting_export
    with pytest.raises(errors.NotFoundError):
        sf.mark_exported("99999999", True)
