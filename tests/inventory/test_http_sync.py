"""The push path over real HTTP against the commercetools sandbox: 409 conflicts, 429 with
Retry-After, the per-connection rate limit, drift read-back and the catalogue audit."""

from __future__ import annotations

import time

import pytest

from exceptions_app.models import ExceptionRecord
from integration_hub.inventory import drift, outbox, push
from integration_hub.inventory.models import ChannelStock, PendingPush


@pytest.fixture
def shop(ct_world):
    w = ct_world
    w.channel("web", locations=["dc1"], external_id="sc-web")
    w.channel("app", locations=["dc1", "dc2"], external_id="sc-app", buffer=2)
    for n in range(12):
        w.item(f"I{n:02d}", storefront_sku=f"SKU-{n:02d}")
        w.stock(f"I{n:02d}", "dc1", n)
        w.stock(f"I{n:02d}", "dc2", 5)
    w.control(
        "seed_catalog", {"channels": ["sc-web", "sc-app"], "skus": [f"SKU-{n:02d}" for n in range(12)], "quantity": 0}
    )
    outbox.enqueue([i.pk for i in w.items.values()])
    return w


def storefront(w, skus=None):
    return w.control("state", {"skus": skus or []})["inventory"]


def expected(n):
    return {"sc-web": n, "sc-app": max(0, n + 5 - 2)}


def test_push_over_http_sets_absolute_quantities(shop):
    res = push.push_batch()
    assert (res.pushed, res.failed) == (24, 0)
    inv = storefront(shop)
    for n in range(12):
        for ch, qty in expected(n).items():
            assert inv[ch][f"SKU-{n:02d}"] == qty
    cs = ChannelStock.objects.get(channel=shop.channels["web"], item=shop.items["I03"])
    assert cs.confirmed_quantity == 3 and cs.storefront_version and cs.storefront_ref


def test_conflicts_409_are_resolved_by_reread(shop):
    shop.control("faults", {"conflict_rate": 0.5})
    res = push.push_batch()
    stats = shop.control("stats", method="GET")
    assert stats["conflicts"] > 0  # the sandbox really answered 409s
    assert res.pushed + res.failed == 24
    for _ in range(5):  # anything still conflicting after the connector's retries is retried by the outbox
        if not PendingPush.objects.exists():
            break
        PendingPush.objects.update(not_before=None)
        push.push_batch()
    assert not PendingPush.objects.exists()
    inv = storefront(shop)
    assert all(inv[ch][f"SKU-{n:02d}"] == q for n in range(12) for ch, q in expected(n).items())


def test_storefront_edit_between_pushes_is_overwritten(shop):
    push.push_batch()
    shop.control("set_inventory", {"rows": [{"channel": "sc-web", "sku": "SKU-04", "quantity": 99}]})  # bumps version
    shop.stock("I04", "dc1", 1)
    outbox.enqueue([shop.items["I04"].pk])
    res = push.push_batch()
    assert res.pushed == 2 and storefront(shop, ["SKU-04"])["sc-web"]["SKU-04"] == 1


def test_429_backs_off_honouring_retry_after_then_recovers(shop):
    shop.storefront.max_retries = 0  # let the 429 reach the outbox instead of the client's own retry
    shop.storefront.save()
    for attempt in range(1, push.FAILURES_BEFORE_EXCEPTION + 1):
        shop.control("faults", {"fail_next": [429]})  # sandbox answers 429 with Retry-After: 1
        before = time.time()
        res = push.push_batch()
        assert res.failed == 24 and res.pushed == 0
        rows = list(PendingPush.objects.all())
        assert all(r.attempts == attempt and "RateLimitedError" in r.last_error for r in rows)
        assert all(r.not_before.timestamp() >= before + 1 for r in rows)
        assert push.push_batch().claimed == 0  # nothing is claimable while backing off
        PendingPush.objects.update(not_before=None)
    rec = ExceptionRecord.objects.get(dedupe_key="rate_limited:shop:set_stock")
    assert rec.status == "open" and rec.context["retry_after"] == 1
    res = push.push_batch()
    assert res.pushed == 24 and not PendingPush.objects.exists()
    rec.refresh_from_db()
    assert rec.status == "resolved"


def test_client_retries_429_transparently(shop):
    shop.control("faults", {"fail_next": [429, 503]})
    started = time.time()
    res = push.push_batch()
    assert res.pushed == 24 and res.failed == 0
    assert time.time() - started >= 1.0  # waited out Retry-After: 1
    assert shop.control("stats", method="GET")["injected_errors"] == 2


def test_burst_stays_within_the_configured_rate_limit(shop):
    rate = 20.0
    shop.storefront.rate_limit_per_second, shop.storefront.rate_limit_burst = rate, 2
    shop.storefront.save()
    shop.control("faults", {"rate_limit_per_second": rate, "rate_limit_burst": 4})
    shop.control("stats")  # reset counters
    started = time.time()
    res = push.push_batch()
    elapsed = time.time() - started
    stats = shop.control("stats", method="GET")
    assert res.pushed == 24
    assert stats["rate_limited"] == 0, stats  # the client paced itself: the storefront never had to refuse
    assert stats["requests"] / elapsed <= rate * 1.15 + 2 / max(elapsed, 0.1)


def test_drift_over_http(shop):
    push.push_batch()
    # a Merchant Center edit puts units on sale the hub never left there: drift, taken back out by the repair
    shop.control("set_inventory", {"rows": [{"channel": "sc-app", "sku": "SKU-07", "quantity": 50}]})
    res = drift.check_channel(shop.channels["app"])
    assert res.drifted == 1 and res.agreed == 11
    rec = ExceptionRecord.objects.get(dedupe_key="stock_drift:app:SKU-07")
    assert rec.context["master_ats"] == 10 and rec.context["storefront_quantity"] == 50
    assert rec.context["unexplained_increase"] == 40
    push.push_batch()
    assert storefront(shop, ["SKU-07"])["sc-app"]["SKU-07"] == 10
    assert drift.check_channel(shop.channels["app"]).drifted == 0
    rec.refresh_from_db()
    assert rec.status == "resolved"


def test_drift_keeps_the_storefronts_own_decrease(shop):
    """ct decrements on its own orders: showing less than ATS with the ledger in step is its orders the hub has not
    captured yet (or cart reservations) — never overwritten by a repair, so no drift."""
    push.push_batch()
    shop.control("set_inventory", {"rows": [{"channel": "sc-app", "sku": "SKU-07", "quantity": 7}]})
    res = drift.check_channel(shop.channels["app"])
    assert res.drifted == 0 and res.agreed == 12
    assert not PendingPush.objects.exists()
    shop.stock("I07", "dc1", 8)  # ATS 10 -> 11: the change is applied on top of the storefront's own figure
    outbox.enqueue([shop.items["I07"].pk])
    push.push_batch()
    assert storefront(shop, ["SKU-07"])["sc-app"]["SKU-07"] == 8


def test_catalogue_audit_over_http(shop):
    from integration_hub.catalog.audit import audit_connection

    shop.item("77", mapped=False)
    shop.control("seed_catalog", {"channels": [], "skus": ["00000077", "GHOST-1"], "quantity": None})
    res = audit_connection(shop.storefront)
    assert res.mapped == 24
    rec = ExceptionRecord.objects.get(dedupe_key="sku_mismatch:web:00000077")
    assert rec.context["suggested_item_sku"] == "77" and rec.context["transform"]["pad_to_length"] == 8
    assert ExceptionRecord.objects.filter(dedupe_key="unknown_sku:app:GHOST-1").exists()


def test_unknown_storefront_sku_becomes_exception(shop):
    shop.item("lost", storefront_sku="NOT-IN-CT")
    outbox.enqueue([shop.items["lost"].pk])
    res = push.push_batch()
    assert res.failed == 2 and res.pushed == 24
    assert ExceptionRecord.objects.get(dedupe_key="unknown_sku:web:NOT-IN-CT").kind == "unknown_sku"


def test_push_keeps_the_storefronts_own_order_decrement_until_captured(shop):
    """push.py hands ct the ledger (ATS + the channel's captured units): an order ct took off itself stays off
    while the hub has not captured it, and capturing it writes nothing."""
    from integration_hub.inventory.models import Reservation
    from integration_hub.orders.models import Order, OrderLine

    push.push_batch()
    web, item = shop.channels["web"], shop.items["I03"]
    shop.control("create_orders", {"orders": [{"channel": "sc-web", "lines": [{"sku": "SKU-03", "quantity": 1}]}]})
    assert storefront(shop, ["SKU-03"])["sc-web"]["SKU-03"] == 2
    shop.stock("I03", "dc1", 7)  # restock before the hub has seen the order: ATS 3 -> 7
    outbox.enqueue([item.pk])
    push.push_batch()
    assert storefront(shop, ["SKU-03"])["sc-web"]["SKU-03"] == 6  # 7 less the order ct already took off (not 7)
    order = Order.objects.create(channel=web, external_id="ct-1", idempotency_key="CT-1")  # the hub captures it
    OrderLine.objects.create(order=order, line_id="li-1", storefront_sku="SKU-03", item=item, quantity=1)
    Reservation.objects.create(item=item, channel=web, order_ref="CT-1", quantity=1)
    outbox.enqueue([item.pk])
    before = shop.control("state", {"skus": ["SKU-03"]})["versions"]["sc-web"]["SKU-03"]
    push.push_batch()
    assert storefront(shop, ["SKU-03"])["sc-web"]["SKU-03"] == 6
    assert shop.control("state", {"skus": ["SKU-03"]})["versions"]["sc-web"]["SKU-03"] == before  # nothing written
    assert ChannelStock.objects.get(channel=web, item=item).confirmed_quantity == 6
    assert drift.check_channel(web).drifted == 0
