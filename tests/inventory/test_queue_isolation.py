"""Orders keep moving while a long stock drain runs (issue 20, item 1), with a real Celery worker.

The worker has two slots and consumes every queue (as the test fixture and a one-worker install do).
Six drain requests arrive for one storefront connection (a burst of captures on several processes) while
each pushed SKU takes 0.5 s at the storefront: one drain runs, the others return at once, and an order
captured meanwhile reaches the warehouse while stock is still being pushed."""

from __future__ import annotations

import time

import pytest

from integration_hub.inventory.models import PendingPush

from .test_worker_e2e import hub, storefront_qty, wait_for  # noqa: F401 — the fixture

pytestmark = pytest.mark.worker


def test_order_reaches_the_warehouse_while_a_long_stock_drain_runs(hub, celery_worker_process, settings):  # noqa: F811
    from django.db import transaction

    from integration_hub.inventory import outbox
    from integration_hub.inventory.models import StockLevel
    from integration_hub.inventory.tasks import push_pending
    from integration_hub.orders import capture
    from integration_hub.orders.models import Order, ShippingMethodMap
    from integration_hub.orders.models import OrderState as S
    from tests.orders.conftest import make_so

    settings.HUB = {**settings.HUB, "STOCK_PUSH_ON_COMMIT": False}  # the drains below are the burst
    web = hub.channels["web"]
    web.warehouse = hub.master
    web.save()
    ShippingMethodMap.objects.create(storefront_method="standard", warehouse_method="STD48", carrier="royal_mail")
    dc1 = hub.location("dc1")
    StockLevel.objects.bulk_create(
        [StockLevel(item=hub.items[f"M{n:02d}"], location=dc1, quantity=100 + n) for n in range(30)]
    )
    with transaction.atomic():
        outbox.enqueue([i.pk for i in hub.items.values()])
    hub.ct("faults", {"latency_ms": 1000})  # 30 SKUs pushed in batches of 2: a drain of 15 s or more
    for _ in range(6):
        push_pending.apply_async(kwargs={"batch_size": 2, "time_budget": 60})
    assert wait_for(lambda: PendingPush.objects.filter(claimed_until__isnull=False).exists(), timeout=30, interval=0.05)
    started = time.time()
    with transaction.atomic():
        order, _ = capture.capture(web, make_so("iso-1", lines=(("SKU-05", 1),), channel_ref="sc-web"))
    at_warehouse = (S.SENT, S.ACKNOWLEDGED, S.DISPATCHED, S.STOREFRONT_NOTIFIED)
    assert wait_for(lambda: Order.objects.get(pk=order.pk).state in at_warehouse, timeout=10, interval=0.1), (
        Order.objects.get(pk=order.pk).state
    )
    took = time.time() - started
    print("order at the warehouse after", round(took, 2), "s")
    assert PendingPush.objects.filter(priority__gt=PendingPush.Priority.ORDER).exists(), (
        "the stock drain was still running"
    )
    assert took < 10
    hub.ct("faults", {"latency_ms": 0})
    assert wait_for(lambda: not PendingPush.objects.exists(), timeout=90)
    qty = storefront_qty(hub)
    assert qty["SKU-05"] == 104 and qty["SKU-06"] == 106  # the order's one unit is held on SKU-05
