"""The order flow over real HTTP: hub webhooks (live server) ↔ commercetools and WAIR emulators."""

from __future__ import annotations

import json

import pytest
import requests

from integration_hub.orders import actions, capture, checks, claims, fulfilments, notify, polls, processing, remote
from integration_hub.orders.models import Order, OrderState as S

from .conftest import make_so
from tests.support.factories import sandbox_order_world
from tests.support.sandbox import control


@pytest.fixture
def no_kick(monkeypatch):
    """No worker runs in these tests: the test drives processing itself."""
    monkeypatch.setattr(claims, "kick", lambda delay=0: None)


def drain():
    for _ in range(20):
        if not any(processing.process_due().values()):
            return
    raise AssertionError("orders still due after 20 passes")


def spec(i, **kw):
    return {
        "channel": "uk-web",
        "order_number": f"FS{i}",
        "lines": [{"sku": "SKU-1", "quantity": 1}, {"sku": "SKU-2", "quantity": 2}],
        "shipping_method": "standard",
        **kw,
    }


# --- webhook edges ------------------------------------------------------------------------------------
def test_order_webhook_rejects_bad_auth_and_bad_bodies(world, client):
    url = "/hooks/orders/ct/"
    assert client.post(url, data=b"{}", content_type="application/json").status_code == 401
    assert client.post(url, data=b"{}", content_type="application/json", HTTP_AUTHORIZATION="wrong").status_code == 401
    good = "ct-hook-secret"
    r = client.post(url, data=b"{not json", content_type="application/json", HTTP_AUTHORIZATION=good)
    assert r.status_code == 400 and "malformed" in r.json()["error"]
    r = client.post(url, data=json.dumps({"hello": 1}), content_type="application/json", HTTP_AUTHORIZATION=good)
    assert r.status_code == 400
    from exceptions_app.models import ExceptionRecord

    assert ExceptionRecord.objects.filter(dedupe_key="bad_payload:ct:order-webhook:unparseable").exists()
    assert client.post("/hooks/orders/nope/", data=b"{}", content_type="application/json").status_code == 404
    assert client.get(url).status_code == 405


def test_dispatch_webhook_needs_hmac(world, fakes, client):
    from connectors.signatures import sign

    o, _ = capture.capture(world.channel, make_so("ct-w"))
    for _ in range(3):
        processing.process_due()
    body = json.dumps(
        {
            "type": "dispatch.confirmed",
            "dispatches": [
                {
                    "id": 5,
                    "orderRef": o.idempotency_key,
                    "orderId": "WO-1",
                    "dispatchedAt": "2026-11-22T10:00:00Z",
                    "complete": True,
                    "parcels": [
                        {"carrier": "dhl", "trackingNumber": "JD01", "lines": [{"skuId": "SKU-1", "quantity": 1}]}
                    ],
                },
                {"id": 6, "parcels": []},
            ],
        }
    ).encode()
    url = "/hooks/dispatch/wair/"
    assert client.post(url, data=body, content_type="application/json").status_code == 401
    sig = sign("wair-hook-secret", body)
    r = client.post(url, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE=sig)
    assert r.status_code == 200, r.content
    assert r.json()["dispatched"] == 1 and r.json()["rejected"] == 1
    o.refresh_from_db()
    assert o.state == S.DISPATCHED and o.tracking[0]["tracking_number"] == "JD01"


def test_dispatch_webhook_replay_is_refused_and_a_future_dispatch_time_is_clamped(world, fakes, client):
    from django.utils import timezone

    from connectors.signatures import sign

    o, _ = capture.capture(world.channel, make_so("ct-future"))
    for _ in range(3):
        processing.process_due()
    body = json.dumps(
        {
            "type": "dispatch.confirmed",
            "dispatches": [
                {
                    "id": 7,
                    "orderRef": o.idempotency_key,
                    "orderId": "WO-7",
                    "dispatchedAt": "2102-01-01T00:00:00Z",
                    "complete": True,
                    "parcels": [
                        {"carrier": "dhl", "trackingNumber": "JD07", "lines": [{"skuId": "SKU-1", "quantity": 1}]}
                    ],
                }
            ],
        }
    ).encode()
    sig = sign("wair-hook-secret", body)
    before = timezone.now()
    r = client.post("/hooks/dispatch/wair/", data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE=sig)
    assert r.status_code == 200 and r.json()["dispatched"] == 1, r.content
    o.refresh_from_db()
    assert o.state == S.DISPATCHED and before <= o.dispatched_at <= timezone.now()  # not 2102
    r = client.post("/hooks/dispatch/wair/", data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE=sig)
    assert r.status_code == 401


# --- end to end over HTTP --------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_webhook_twice_plus_poll_overlap_gives_one_order_and_one_warehouse_receipt(
    sandbox, live_server, no_kick, eager_celery
):
    ct, wh, channel = sandbox_order_world(sandbox)
    hook = f"{live_server.url}/hooks/orders/{ct.name}/"
    control(sandbox, "commercetools", "configure_webhooks", {"order_url": hook, "secret": "ct-hook-secret"})
    control(
        sandbox,
        "wair",
        "configure_webhooks",
        {"dispatch_url": f"{live_server.url}/hooks/dispatch/{wh.name}/", "secret": "wair-hook-secret"},
    )
    created = control(
        sandbox,
        "commercetools",
        "create_orders",
        {"orders": [spec(i, gift_message="For you", delivery_notes="Ring twice") for i in range(25)]},
    )
    stats = control(sandbox, "commercetools", "wait_webhooks", {"timeout": 30})
    assert stats["pending"] == 0
    assert Order.objects.count() == 25
    # the subscription delivers the same message again (at-least-once)
    emu = sandbox.emulators["commercetools"]
    msg = emu._message(emu.orders[created["ids"][0]], "demo")
    r = requests.post(
        hook, data=json.dumps(msg), headers={"Authorization": "ct-hook-secret", "Content-Type": "application/json"}
    )
    assert r.status_code == 200 and r.json() == {"to_fetch": 1, "to_refresh": 0}  # a hint: the order is read, not taken
    assert Order.objects.count() == 25
    # and the catch-up poll overlaps everything
    res = polls.poll_orders(ct)
    assert res["created"] == 0 and res["existing"] == 25
    drain()
    assert set(Order.objects.values_list("state", flat=True)) == {S.ACKNOWLEDGED}
    state = control(sandbox, "wair", "state")
    keys = set(Order.objects.values_list("idempotency_key", flat=True))
    assert set(state["orders"]) == keys
    assert all(state["order_receipts"][k] == 1 for k in keys)
    o = Order.objects.get(external_id=created["ids"][0])
    req = state["orders"][o.idempotency_key]["request"]
    assert req["giftMessage"] == "For you" and req["deliveryNotes"] == "Ring twice"
    assert req["serviceCode"] == "STD48" and req["carrier"] == "royal_mail"
    assert sorted((ln["skuId"], ln["quantity"]) for ln in req["lines"]) == [("SKU-1", 1), ("SKU-2", 2)]

    # nothing shipped in the storefront before the warehouse confirms
    assert not any(
        x["shipment_state"] == "Shipped" for x in control(sandbox, "commercetools", "state")["orders"].values()
    )
    for k in sorted(keys)[:10]:
        control(sandbox, "wair", "dispatch", {"order_ref": k, "parcels": [{"carrier": "dhl"}]})
    assert control(sandbox, "wair", "wait_webhooks", {"timeout": 30})["pending"] == 0
    assert Order.objects.filter(state=S.DISPATCHED).count() == 10
    assert polls.poll_dispatches(wh)["duplicate"] == 10  # poll overlapping the webhook changes nothing
    drain()
    ct_orders = control(sandbox, "commercetools", "state")["orders"]
    shipped = {oid for oid, x in ct_orders.items() if x["shipment_state"] == "Shipped"}
    notified = set(Order.objects.filter(state=S.STOREFRONT_NOTIFIED).values_list("external_id", flat=True))
    assert shipped == notified and len(shipped) == 10
    for oid in shipped:
        hub = Order.objects.get(external_id=oid)
        assert ct_orders[oid]["tracking"] == [t["tracking_number"] for t in hub.tracking]
        assert ct_orders[oid]["deliveries"] == 1
    # notifying again (e.g. a retried task) adds no second delivery
    hub = Order.objects.get(external_id=next(iter(shipped)))
    remote.connector(ct).mark_shipped(hub.external_id, notify._parcels(hub))
    assert control(sandbox, "commercetools", "state")["orders"][hub.external_id]["deliveries"] == 1


@pytest.mark.django_db(transaction=True)
def test_unacknowledged_order_is_resent_until_acknowledged_never_duplicated(sandbox, no_kick, settings):
    from datetime import timedelta

    from django.utils import timezone

    from exceptions_app.models import ExceptionRecord

    ct, wh, channel = sandbox_order_world(sandbox)
    control(sandbox, "wair", "set_auto_ack", {"enabled": False})
    order, _ = capture.capture(channel, make_so("ct-ack"))
    drain()
    order.refresh_from_db()
    assert order.state == S.SENT and "not acknowledged" in order.last_error
    Order.objects.filter(pk=order.pk).update(
        sent_at=timezone.now() - timedelta(minutes=settings.HUB["ACK_TIMEOUT_MINUTES"] + 5)
    )
    assert checks.resend_unacknowledged()["stuck"] == 1
    assert ExceptionRecord.objects.get(dedupe_key=f"stuck_order:{order.idempotency_key}").status == "open"
    control(sandbox, "wair", "set_auto_ack", {"enabled": True})
    control(sandbox, "wair", "acknowledge", {})
    checks.resend_unacknowledged()
    order.refresh_from_db()
    assert order.state == S.ACKNOWLEDGED and order.warehouse_ref.startswith("WO-")
    assert ExceptionRecord.objects.get(dedupe_key=f"stuck_order:{order.idempotency_key}").status == "resolved"
    state = control(sandbox, "wair", "state")
    assert list(state["orders"]) == [order.idempotency_key] and state["order_receipts"][order.idempotency_key] == 3


@pytest.mark.django_db(transaction=True)
def test_warehouse_validation_error_holds_order_naming_the_field(sandbox, no_kick):
    from exceptions_app.models import ExceptionRecord

    ct, wh, channel = sandbox_order_world(sandbox)
    control(sandbox, "wair", "set_service_codes", {"codes": ["EXP24"]})
    order, _ = capture.capture(channel, make_so("ct-422"))
    drain()
    order.refresh_from_db()
    assert order.state == S.HELD and "serviceCode" in order.hold_reason
    rec = ExceptionRecord.objects.get(dedupe_key=f"bad_payload:{wh.name}:order:{order.idempotency_key}")
    assert "serviceCode" in rec.context["fields"]
    order = actions.update_field_and_resend(order, "shipping_method", "express")
    assert order.state == S.ACKNOWLEDGED
    assert control(sandbox, "wair", "state")["orders"][order.idempotency_key]["request"]["serviceCode"] == "EXP24"


def test_poll_page_sizes_start_small_and_double_up_to_the_page_size():
    take = lambda gen, n: [next(gen) for _ in range(n)]  # noqa: E731
    assert take(polls.page_sizes(500), 6) == [50, 100, 200, 400, 500, 500]
    assert take(polls.page_sizes(60), 3) == [50, 60, 60]
    assert take(polls.page_sizes(10), 2) == [10, 10]


@pytest.mark.django_db(transaction=True)
def test_a_backlog_poll_captures_a_small_first_page_then_bigger_ones(sandbox, no_kick, monkeypatch):
    """A catch-up poll over a backlog commits its first FIRST_PAGE orders (kicking the worker) before reading the
    rest in pages twice as big, up to the page size; every order is captured once."""
    ct, wh, channel = sandbox_order_world(sandbox)
    control(sandbox, "commercetools", "create_orders", {"orders": [spec(i) for i in range(130)]})
    pages, real = [], polls.capture_many

    def recording(connection, storefront_orders, source="poll"):
        pages.append(len(storefront_orders))
        return real(connection, storefront_orders, source=source)

    monkeypatch.setattr(polls, "capture_many", recording)
    res = polls.poll_orders(ct)
    assert pages == [polls.FIRST_PAGE, 130 - polls.FIRST_PAGE] and res["pages"] == 2
    assert res["created"] == 130 and Order.objects.count() == 130
    pages.clear()
    assert polls.poll_orders(ct)["created"] == 0 and pages == [0]


@pytest.mark.django_db(transaction=True)
def test_a_dispatch_backlog_poll_records_a_small_first_page_then_bigger_ones(sandbox, no_kick, monkeypatch):
    """The dispatch poll pages like the order poll: FIRST_PAGE dispatches recorded (and committed, so the notify phase
    can start) before the rest is read; every order dispatched once."""
    ct, wh, channel = sandbox_order_world(sandbox)
    control(sandbox, "commercetools", "create_orders", {"orders": [spec(i) for i in range(70)]})
    polls.poll_orders(ct)
    drain()
    for key in Order.objects.values_list("idempotency_key", flat=True):
        control(sandbox, "wair", "dispatch", {"order_ref": key, "parcels": [{"carrier": "dhl"}]})
    pages, real = [], polls.record_dispatches

    def recording(connection, dispatches, source="dispatch"):
        pages.append(len(dispatches))
        return real(connection, dispatches, source=source)

    monkeypatch.setattr(polls, "record_dispatches", recording)
    res = polls.poll_dispatches(wh)
    assert pages == [polls.FIRST_PAGE, 70 - polls.FIRST_PAGE] and res["pages"] == 2 and res["dispatched"] == 70
    assert set(Order.objects.values_list("state", flat=True)) == {S.DISPATCHED}


@pytest.mark.django_db(transaction=True)
def test_storefront_side_fulfilment_reported_to_master_until_acknowledged(sandbox, no_kick):
    from integration_hub.orders.models import StorefrontFulfilment

    ct, wh, channel = sandbox_order_world(sandbox)
    created = control(sandbox, "commercetools", "create_orders", {"orders": [spec(1)]})
    polls.poll_orders(ct)
    drain()
    control(
        sandbox,
        "commercetools",
        "store_fulfil",
        {"order": created["ids"][0], "lines": [["SKU-2", 2]], "tracking": "STORE-1"},
    )
    polls.poll_orders(ct)
    polls.poll_orders(ct)  # seen again: still one row
    f = StorefrontFulfilment.objects.get()
    assert f.lines == [["SKU-2", 2]] and f.ack_id == ""
    control(sandbox, "wair", "faults", {"fail_next": [503, 503, 503, 503, 503]})
    assert fulfilments.send_fulfilments()["retrying"] == 1
    StorefrontFulfilment.objects.update(next_attempt_at=None)
    assert fulfilments.send_fulfilments()["acknowledged"] == 1
    f.refresh_from_db()
    assert f.ack_id.startswith("FF-") and f.attempts == 2
    wair = control(sandbox, "wair", "state")["fulfilments"]
    assert len(wair) == 1 and wair[0]["orderRef"] == Order.objects.get().idempotency_key


@pytest.mark.django_db(transaction=True)
def test_change_notification_ids_are_fetched_and_captured_once(sandbox, no_kick):
    ct, wh, channel = sandbox_order_world(sandbox)
    created = control(sandbox, "commercetools", "create_orders", {"orders": [spec(1), spec(2)]})
    r = polls.fetch_and_capture(ct, created["ids"] + created["ids"][:1])
    assert len(r.created) == 2
    assert len(polls.fetch_and_capture(ct, created["ids"]).created) == 0
    o = Order.objects.get(external_id=created["ids"][0])
    assert o.order_number == "FS1" and o.lines.count() == 2


@pytest.mark.django_db(transaction=True)
def test_webhook_burst_with_concurrent_duplicates_gives_each_order_once(sandbox, live_server, no_kick, eager_celery):
    from concurrent.futures import ThreadPoolExecutor

    ct, wh, channel = sandbox_order_world(sandbox)
    hook = f"{live_server.url}/hooks/orders/{ct.name}/"
    emu = sandbox.emulators["commercetools"]
    created = control(
        sandbox, "commercetools", "create_orders", {"orders": [spec(i) for i in range(300)]}
    )  # no subscription yet
    messages = [json.dumps(emu._message(emu.orders[oid], "demo")) for oid in created["ids"]]

    def post(body):
        r = requests.post(
            hook, data=body, headers={"Authorization": "ct-hook-secret", "Content-Type": "application/json"}, timeout=60
        )
        return r.status_code, r.json()

    with ThreadPoolExecutor(8) as pool:  # every message twice, concurrently, in a shuffled order
        results = list(pool.map(post, messages + messages[::-1]))
    assert {code for code, _ in results} == {200}
    assert all(
        body == {"to_fetch": 1, "to_refresh": 0} for _, body in results
    )  # each a hint, read from ct after commit
    assert Order.objects.count() == 300
    assert polls.poll_orders(ct)["created"] == 0
    drain()
    state = control(sandbox, "wair", "state")
    assert Order.objects.count() == len(state["orders"]) == 300
    assert set(state["order_receipts"].values()) == {1}


# --- return and cancellation messages about orders the hub already has -------------------------------------
@pytest.fixture
def eager_celery():
    """The webhook's queued fetch runs in the request as it commits (a worker would run it just after)."""
    from integration_hub.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


def ct_message(sandbox, order_id, message_type, **fields):
    """A commercetools Order Message in the Platform payload format, about the sandbox order as it is now."""
    import uuid

    order = sandbox.emulators["commercetools"].orders[order_id]
    return {
        "notificationType": "Message",
        "projectKey": "demo",
        "id": str(uuid.uuid4()),
        "version": 1,
        "sequenceNumber": order["version"],
        "resource": {"typeId": "order", "id": order_id},
        "resourceVersion": order["version"],
        "resourceUserProvidedIdentifiers": {"orderNumber": order["orderNumber"]},
        "type": message_type,
        "createdAt": order["lastModifiedAt"],
        "lastModifiedAt": order["lastModifiedAt"],
        **fields,
    }


def hook_post(url, message, secret="ct-hook-secret"):
    headers = {"Content-Type": "application/json", **({"Authorization": secret} if secret else {})}
    return requests.post(url, data=json.dumps(message), headers=headers, timeout=30)


@pytest.mark.django_db(transaction=True)
def test_return_messages_re_read_a_known_order_and_record_its_returns_once(sandbox, live_server, no_kick, eager_celery):
    from integration_hub.planning.models import ReturnLine

    ct, wh, channel = sandbox_order_world(sandbox)
    hook = f"{live_server.url}/hooks/orders/{ct.name}/"
    [oid] = control(sandbox, "commercetools", "create_orders", {"orders": [spec(1)]})["ids"]
    assert polls.poll_orders(ct)["created"] == 1  # the hub has the order
    order = Order.objects.get(external_id=oid)
    [item_id] = control(
        sandbox, "commercetools", "add_return", {"order": oid, "items": [{"sku": "SKU-2", "quantity": 1}]}
    )["return_item_ids"]
    emu = sandbox.emulators["commercetools"]
    added = ct_message(sandbox, oid, "ReturnInfoAdded", returnInfo=emu.orders[oid]["returnInfo"][-1])

    # a bad signature records nothing
    assert hook_post(hook, added, secret="wrong").status_code == 401
    assert hook_post(hook, added, secret=None).status_code == 401
    assert not ReturnLine.objects.exists()

    r = hook_post(hook, added)
    assert r.status_code == 200, r.text
    ret = ReturnLine.objects.get()
    assert (ret.external_ref, ret.condition, ret.quantity) == (f"{order.idempotency_key}/{item_id}", "advised", 1)
    assert ret.order_line.storefront_sku == "SKU-2"
    assert r.json() == {"to_fetch": 0, "to_refresh": 1}
    first_change = ret.updated_at

    # at-least-once delivery: the same message again changes nothing
    assert hook_post(hook, added).status_code == 200
    assert ReturnLine.objects.count() == 1 and ReturnLine.objects.get().updated_at == first_change
    assert polls.fetch_and_capture(ct, [], refresh_ids=[oid, oid]).returns == 0

    # the item moves on in the storefront (setReturnShipmentState), the message says so
    _ct_update(ct, oid, {"action": "setReturnShipmentState", "returnItemId": item_id, "shipmentState": "Returned"})
    changed = ct_message(
        sandbox, oid, "OrderReturnShipmentStateChanged", returnItemId=item_id, returnShipmentState="Returned"
    )
    assert hook_post(hook, changed).status_code == 200
    assert ReturnLine.objects.get().condition == "inspection"
    control(sandbox, "commercetools", "return_state", {"order": oid, "return_item_id": item_id, "state": "BackInStock"})
    older_name = ct_message(sandbox, oid, "OrderReturnInfoAdded")  # tolerated spelling: re-read all the same
    assert hook_post(hook, older_name).json()["to_refresh"] == 1
    assert ReturnLine.objects.get().condition == "available"

    # the scheduled poll reads the same order afterwards: nothing counted twice
    res = polls.poll_orders(ct)
    assert res["returns"] == 0 and res["created"] == 0, res
    assert ReturnLine.objects.count() == 1 and Order.objects.count() == 1


def _ct_update(ct_conn, order_id, *actions):
    """The real commercetools update action over HTTP, at the order's current version."""
    from connectors.registry import get_connector

    ct = get_connector(ct_conn)
    version = ct.get_order(order_id).version
    return ct.client.post(ct.path(f"orders/{order_id}"), json={"version": version, "actions": list(actions)}).json()


@pytest.mark.django_db(transaction=True)
def test_return_message_about_an_order_the_hub_lacks_captures_it_with_its_returns(
    sandbox, live_server, no_kick, eager_celery
):
    from integration_hub.planning.models import ReturnLine

    ct, wh, channel = sandbox_order_world(sandbox)
    [oid] = control(sandbox, "commercetools", "create_orders", {"orders": [spec(1)]})["ids"]  # OrderCreated was lost
    control(
        sandbox,
        "commercetools",
        "add_return",
        {"order": oid, "items": [{"sku": "SKU-1", "quantity": 1, "state": "Returned"}]},
    )
    r = hook_post(f"{live_server.url}/hooks/orders/{ct.name}/", ct_message(sandbox, oid, "ReturnInfoAdded"))
    assert r.status_code == 200
    assert Order.objects.get().external_id == oid and ReturnLine.objects.get().condition == "inspection"
    assert r.json()["to_refresh"] == 1


@pytest.mark.django_db(transaction=True)
def test_cancelled_in_the_storefront_message_cancels_a_known_order(sandbox, live_server, no_kick, eager_celery):
    ct, wh, channel = sandbox_order_world(sandbox)
    hook = f"{live_server.url}/hooks/orders/{ct.name}/"
    [oid] = control(sandbox, "commercetools", "create_orders", {"orders": [spec(1)]})["ids"]
    polls.poll_orders(ct)
    # another state change names the known order: not re-read (one task, no storefront call)
    r = hook_post(hook, ct_message(sandbox, oid, "OrderStateChanged", orderState="Confirmed", oldOrderState="Open"))
    assert r.status_code == 200 and (r.json()["to_fetch"], r.json()["to_refresh"]) == (1, 0)
    assert Order.objects.get().state == S.CAPTURED
    _ct_update(ct, oid, {"action": "changeOrderState", "orderState": "Cancelled"})
    r = hook_post(hook, ct_message(sandbox, oid, "OrderStateChanged", orderState="Cancelled", oldOrderState="Open"))
    assert r.status_code == 200
    assert Order.objects.get().state == S.CANCELLED
    assert r.json()["to_refresh"] == 1


def test_order_webhook_query_count_is_fixed_and_unknown_messages_are_acknowledged(world, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from integration_hub.planning.models import ReturnLine

    url, good = "/hooks/orders/ct/", "ct-hook-secret"

    def msgs(n, kind="ReturnInfoAdded"):
        return [
            {"notificationType": "Message", "type": kind, "resource": {"typeId": "order", "id": f"o-{i}"}}
            for i in range(n)
        ]

    counts = []
    for batch in (msgs(1), msgs(5) + msgs(5, "OrderReturnShipmentStateChanged")):
        with CaptureQueriesContext(connection) as ctx:
            r = client.post(url, data=json.dumps(batch), content_type="application/json", HTTP_AUTHORIZATION=good)
        assert r.status_code == 200, r.content
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]
    # hints only: the connection lookup and the request's transaction — no capture, no order lookup in the request
    assert counts[0] <= 3, [q["sql"] for q in ctx.captured_queries]
    assert r.json()["to_refresh"] == 5 and r.json()["to_fetch"] == 0  # five orders, each re-read once
    assert not ReturnLine.objects.exists()

    for unknown in (
        {"notificationType": "Message", "type": "CustomerCreated", "resource": {"typeId": "customer", "id": "c-1"}},
        {"notificationType": "ResourceUpdated", "resource": {"typeId": "product", "id": "p-1"}},
    ):
        r = client.post(url, data=json.dumps(unknown), content_type="application/json", HTTP_AUTHORIZATION=good)
        assert r.status_code == 200 and r.json()["to_fetch"] == r.json()["to_refresh"] == 0
    bad = {"notificationType": "Message", "type": "ReturnInfoAdded", "resource": {"typeId": "customer", "id": "c-1"}}
    r = client.post(url, data=json.dumps(bad), content_type="application/json", HTTP_AUTHORIZATION=good)
    assert r.status_code == 400 and "without an order resource" in r.json()["error"]
