"""Order lifecycle edges: retries that end (failed), reservations released by the master's own feed,
late dispatch confirmations, lost confirmations found in the warehouse, the walking orphan scan."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from connectors import errors
from connectors.base import Dispatch, Parcel, StockChange
from exceptions_app.models import ExceptionRecord
from integration_hub.inventory.models import Reservation
from integration_hub.orders import actions, capture, checks, dispatch, processing, send, validate
from integration_hub.orders.models import Order, OrderState as S

from .conftest import make_so
from tests.support.factories import sandbox_order_world
from tests.support.sandbox import control
from tests.support import factories


def exc(key):
    return ExceptionRecord.objects.filter(dedupe_key=key).first()


def run_all():
    for _ in range(5):
        if not any(processing.process_due().values()):
            break


def due_now(o):
    Order.objects.filter(pk=o.pk).update(next_attempt_at=None)


# --- failed: retries end ------------------------------------------------------------------------------
def test_permanent_refusal_fails_the_order_with_a_record_and_retry_brings_it_back(world, fakes):
    wh, _ = fakes
    o, _ = capture.capture(world.channel, make_so("ct-401"))
    wh.script[o.idempotency_key] = [errors.PermanentError("401 unauthorised")]
    run_all()
    o.refresh_from_db()
    assert o.state == S.FAILED and o.next_attempt_at is None and "401" in o.last_error
    assert len(wh.sent) == 1  # not resent
    run_all()
    assert len(wh.sent) == 1
    rec = exc(f"stuck_order:{o.idempotency_key}")
    assert rec.status == "open" and "401" in rec.message and rec.context["state"] == S.FAILED
    assert o.transitions.last().cause.startswith("failed: the warehouse refuses the order (PermanentError)")
    o = actions.retry_send(o)  # the console's retry: failed → validated → sent → acknowledged
    assert o.state == S.ACKNOWLEDGED and len(wh.sent) == 2
    assert exc(f"stuck_order:{o.idempotency_key}").status == "resolved"


def test_retryable_failures_end_after_the_attempt_budget(world, fakes, monkeypatch):
    wh, _ = fakes
    monkeypatch.setattr(send, "MAX_SEND_ATTEMPTS", 3)
    o, _ = capture.capture(world.channel, make_so("ct-503"))
    wh.script[o.idempotency_key] = [errors.RetryableError("503")] * 5
    for _ in range(5):
        run_all()
        due_now(o)
    o.refresh_from_db()
    assert o.state == S.FAILED and o.send_attempts == 3 and len(wh.sent) == 3
    assert "3 sends without an acknowledgement" in exc(f"stuck_order:{o.idempotency_key}").message


@pytest.mark.django_db(transaction=True)
def test_wair_cancelled_order_fails_instead_of_being_resent_forever(sandbox):
    ct, wh, channel = sandbox_order_world(sandbox)
    o, _ = capture.capture(channel, make_so("ct-wc"))
    validate.validate(o)
    # WAIR has the order as cancelled (someone cancelled it there after a lost answer): a permanent refusal
    from connectors.wair import WairConnector

    body = WairConnector.order_body(
        __import__("integration_hub.orders.mapping", fromlist=["x"]).build_warehouse_order(o)
    )
    import requests

    r = requests.post(
        f"{sandbox.url}/wair/api/v1/orders",
        json=body,
        headers={"X-Api-Key": "wair-demo-key", "Idempotency-Key": o.idempotency_key},
        timeout=5,
    )
    assert r.status_code == 201
    r = requests.post(
        f"{sandbox.url}/wair/api/v1/orders/{o.idempotency_key}/cancel",
        headers={"X-Api-Key": "wair-demo-key"},
        timeout=5,
    )
    assert r.status_code == 200
    actions.send(o)
    o.refresh_from_db()
    assert o.state == S.FAILED and "OrderCancelled" in o.last_error
    assert exc(f"stuck_order:{o.idempotency_key}").status == "open"


# --- reservations: held after ack until the master's feed carries the order -----------------------------
def test_reservation_released_only_by_a_feed_update_at_or_after_the_acknowledgement(world, fakes):
    from integration_hub.core.models import Location
    from integration_hub.inventory.services import apply_stock_changes

    o, _ = capture.capture(world.channel, make_so("ct-r", lines=[("SKU-1", 2), ("SKU-2", 1)]))
    run_all()
    o.refresh_from_db()
    held = Reservation.objects.filter(order_ref=o.idempotency_key, released_at__isnull=True)
    assert o.state == S.ACKNOWLEDGED and held.count() == 2
    acked = held.first().acknowledged_at
    before = acked - timedelta(seconds=5)
    # an older change (the master had not taken the order yet), another master, another state: no release
    other = factories.connection("clarus", "other", base_url="http://127.0.0.1:9/clarus")
    Location.objects.create(code="x1", name="X1", connection=other, external_id="DC1")
    Location.objects.create(code="dc9", name="DC9", connection=world.wh, external_id="DC9")  # not on the channel
    apply_stock_changes(world.wh, [StockChange("SKU-1", "DC1", 8, changed_at=before)])
    apply_stock_changes(other, [StockChange("SKU-1", "DC1", 8, changed_at=timezone.now())])
    apply_stock_changes(world.wh, [StockChange("SKU-1", "DC1", 8, state="damaged", changed_at=timezone.now())])
    assert held.count() == 2
    # the same figure repeated after the acknowledgement does not carry the order: no release
    res = apply_stock_changes(world.wh, [StockChange("SKU-1", "DC1", 8, changed_at=acked + timedelta(milliseconds=1))])
    assert res.released == 0 and held.count() == 2
    # the master reports a moved SKU-1 figure after it took the order — wherever it allocated it, here DC9, which
    # the channel does not sell from (issue 20: WAIR allocated a uk-web order at EU1): that hold goes, SKU-2's stays
    res = apply_stock_changes(world.wh, [StockChange("SKU-1", "DC9", 8, changed_at=acked + timedelta(milliseconds=2))])
    assert res.released == 1
    assert list(held.values_list("item__sku", flat=True)) == ["SKU-2"]
    assert Reservation.objects.get(order_ref=o.idempotency_key, item__sku="SKU-1").release_reason == "master stock feed"
    # dispatch releases the rest
    dispatch.record_dispatch(
        world.wh,
        Dispatch(order_ref=o.idempotency_key, warehouse_ref="", dispatched_at=None, parcels=[Parcel("dhl", "R1")]),
    )
    assert not held.exists()
    assert Reservation.objects.get(order_ref=o.idempotency_key, item__sku="SKU-2").release_reason == "dispatched"


def test_every_hold_is_bounded_and_an_expired_one_is_recorded(world, fakes, settings):
    """Issue 20, item 5: a hold the master's feed never carries (it allocated elsewhere, the race was lost)
    must not stay forever: older than the feed lag it is released, with a record — not silently."""
    from exceptions_app.models import ExceptionRecord
    from integration_hub.inventory.models import PendingPush
    from integration_hub.inventory.reservations import expire_holds

    settings.HUB = {**settings.HUB, "HOLD_MAX_SECONDS": 600}
    o, _ = capture.capture(world.channel, make_so("ct-exp", lines=[("SKU-1", 2)]))
    run_all()
    held = Reservation.objects.filter(order_ref=o.idempotency_key, released_at__isnull=True)
    assert held.count() == 1
    assert expire_holds() == 0  # young: kept
    held.update(acknowledged_at=timezone.now() - timedelta(seconds=601))
    PendingPush.objects.all().delete()
    assert expire_holds() == 1 and not held.exists()
    assert Reservation.objects.get(order_ref=o.idempotency_key).release_reason == "hold expired"
    rec = ExceptionRecord.objects.get(dedupe_key=f"stock_drift:{world.wh.name}:holds-expired")
    assert rec.status == "open" and o.idempotency_key in rec.context["orders"] and rec.context["units"] == 2
    assert PendingPush.objects.filter(priority=PendingPush.Priority.ORDER).exists()  # ATS goes back up, pushed first


# --- dispatch timing -----------------------------------------------------------------------------------
def test_an_old_confirmation_received_now_is_not_overdue(world, fakes, settings):
    _, sf = fakes
    o, _ = capture.capture(world.channel, make_so("ct-old"))
    run_all()
    sf.fail = [errors.TimeoutError_("slow")]  # the storefront is not told on the first try
    long_ago = timezone.now() - timedelta(minutes=settings.HUB["DISPATCH_NOTIFY_MINUTES"] * 3)
    dispatch.record_dispatch(
        world.wh,
        Dispatch(
            order_ref=o.idempotency_key, warehouse_ref="", dispatched_at=long_ago, parcels=[Parcel("dhl", "OLD1")]
        ),
    )
    run_all()
    o.refresh_from_db()
    assert o.state == S.DISPATCHED and o.dispatched_at == long_ago  # the warehouse's time is kept
    assert o.dispatch_received_at > long_ago
    assert checks.find_missing_dispatches()["late"] == 0
    assert exc(f"missing_dispatch:{o.idempotency_key}") is None


def test_lost_dispatch_confirmation_is_found_in_the_warehouse_and_processed(world, fakes, settings):
    wh, _ = fakes
    lost, _ = capture.capture(world.channel, make_so("ct-lost-d"))
    waiting, _ = capture.capture(world.channel, make_so("ct-wait-d"))
    gone, _ = capture.capture(world.channel, make_so("ct-gone-d"))
    recent, _ = capture.capture(world.channel, make_so("ct-recent-d"))
    run_all()
    old = timezone.now() - timedelta(days=3)
    Order.objects.filter(pk__in=[lost.pk, waiting.pk, gone.pk]).update(acknowledged_at=old)
    wh.ids.pop(gone.idempotency_key)  # the warehouse lost it
    wh.dispatches = {
        lost.idempotency_key: [
            Dispatch(
                order_ref=lost.idempotency_key,
                warehouse_ref="WO-1",
                dispatched_at=old,
                parcels=[Parcel("dhl", "LOST1")],
            )
        ]
    }
    out = checks.find_missing_dispatches(warehouse_check_limit=10)
    assert out["audited"] == 3 and out["recovered"] == 1 and out["undispatched"] == 2
    lost.refresh_from_db()
    assert lost.state == S.STOREFRONT_NOTIFIED and lost.tracking[0]["tracking_number"] == "LOST1"
    assert exc(f"missing_dispatch:{waiting.idempotency_key}").status == "open"
    assert "does not have the order" in exc(f"missing_dispatch:{gone.idempotency_key}").message
    assert exc(f"missing_dispatch:{recent.idempotency_key}") is None


def test_dispatch_audit_is_bounded_per_run_and_walks_every_order(world, fakes):
    orders = [capture.capture(world.channel, make_so(f"ct-walk-{i}"))[0] for i in range(5)]
    run_all()
    Order.objects.filter(pk__in=[o.pk for o in orders]).update(acknowledged_at=timezone.now() - timedelta(days=3))
    seen = []
    for _ in range(3):
        checks.find_missing_dispatches(warehouse_check_limit=2)
        seen.append(set(ExceptionRecord.objects.filter(kind="missing_dispatch").values_list("order_ref", flat=True)))
    assert [len(s) for s in seen] == [2, 4, 5]


# --- orphans: the scan walks on ------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_orphan_scan_walks_past_the_first_pages_on_a_busy_day(sandbox):
    from integration_hub.core.models import SyncCursor

    ct, wh, channel = sandbox_order_world(sandbox)
    ids = control(
        sandbox,
        "commercetools",
        "create_orders",
        {
            "orders": [
                {
                    "channel": "uk-web",
                    "order_number": f"OR{i}",
                    "lines": [{"sku": "SKU-1", "quantity": 1}],
                    "shipping_method": "standard",
                }
                for i in range(12)
            ]
        },
    )["ids"]
    time.sleep(0.5)  # the emulator stamps a burst a millisecond apart: let the clock pass the last one
    found = []
    for _ in range(4):  # one page of 5 per run: the cursor carries on where the last run stopped
        found.append(checks.find_orphans(grace_minutes=0, max_pages=1, page_size=5)["storefront_missing"])
    assert found == [5, 5, 2, 0]
    assert set(Order.objects.values_list("external_id", flat=True)) == set(ids)
    assert SyncCursor.objects.get(connection=ct, stream="orphan-scan").value


@pytest.mark.django_db(transaction=True)
def test_orphan_scan_covers_sfcc(sandbox):
    from django.core.cache import cache

    from connectors.registry import clear_cache
    from integration_hub.core.models import Channel, Connection

    cache.clear()
    clear_cache()
    control(sandbox, "sfcc", "configure_client", {"client_id": "am-client", "client_secret": "am-secret"})
    sf = Connection(
        name="sfcc",
        system_type="sfcc",
        base_url=f"{sandbox.url}/sfcc",
        auth_url=f"{sandbox.url}/sfcc",
        client_id="am-client",
        options={"site_id": "RefArch"},
        rate_limit_per_second=500,
        rate_limit_burst=100,
    )
    sf.set_secret("am-secret")
    sf.save()
    Channel.objects.create(key="sf-web", name="SF web", connection=sf, external_id="inv_web")
    ids = control(
        sandbox,
        "sfcc",
        "create_orders",
        {
            "orders": [
                {"channel": "inv_web", "lines": [{"sku": "SKU-1", "quantity": 1}], "shipping_method": "standard"}
                for _ in range(3)
            ]
        },
    )["ids"]
    time.sleep(0.5)
    out = checks.find_orphans(grace_minutes=0)
    assert out["storefront_missing"] == 3
    assert set(Order.objects.filter(channel__connection=sf).values_list("external_id", flat=True)) == set(ids)


# --- parcels in the storefront's terms -------------------------------------------------------------------
def test_parcels_reach_the_storefront_with_its_own_skus_and_bundle_lines(world, fakes):
    from integration_hub.catalog.models import IdentifierTransform

    _, sf = fakes
    IdentifierTransform.objects.create(name="strip zeros", connection=world.ct, strip_leading_zeros=True)
    o, _ = capture.capture(world.channel, make_so("ct-parcels", lines=[("123", 4), ("BUNDLE-1", 1)]))
    run_all()
    o.refresh_from_db()
    assert o.state == S.ACKNOWLEDGED, o.hold_reason
    # first parcel: the transformed SKU only (partial); second: the bundle's components (master SKUs)
    dispatch.record_dispatch(
        world.wh,
        Dispatch(
            order_ref=o.idempotency_key,
            warehouse_ref="",
            dispatched_at=None,
            complete=False,
            parcels=[Parcel("dhl", "PT1", lines=[("000123", 4)])],
        ),
    )
    dispatch.record_dispatch(
        world.wh,
        Dispatch(
            order_ref=o.idempotency_key,
            warehouse_ref="",
            dispatched_at=None,
            parcels=[Parcel("dhl", "PT2", lines=[("SKU-1", 2), ("SKU-2", 1)])],
        ),
    )
    run_all()
    o.refresh_from_db()
    assert o.state == S.STOREFRONT_NOTIFIED
    ((_, parcels),) = sf.shipped
    assert [(p.tracking_number, p.lines) for p in parcels] == [("PT1", [("123", 4)]), ("PT2", [("BUNDLE-1", 1)])]
    assert [t["lines"] for t in o.tracking] == [
        [["000123", 4]],
        [["SKU-1", 2], ["SKU-2", 1]],
    ]  # the warehouse's terms kept


# --- batched polls ------------------------------------------------------------------------------------------
def _cancel_queries(world, n, tag):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    sos = [make_so(f"ct-{tag}-{i}", lines=[("NOPE", 1), ("SKU-1", 1)]) for i in range(n)]  # held: not at the warehouse
    capture.capture_many(world.ct, sos)
    run_all()
    for so in sos:
        so.status = "Cancelled"
    with CaptureQueriesContext(connection) as ctx:
        capture.capture_many(world.ct, sos)
    assert Order.objects.filter(external_id__startswith=f"ct-{tag}-", state=S.CANCELLED).count() == n
    return len(ctx.captured_queries)


def test_storefront_cancellations_run_a_fixed_number_of_queries(world, fakes):
    assert _cancel_queries(world, 2, "q2") == _cancel_queries(world, 8, "q8")
