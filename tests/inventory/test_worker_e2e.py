"""End to end with real processes: WAIR sandbox → hub (webhook over HTTP, or poll) → outbox → a real
Celery worker → commercetools sandbox; and a worker killed mid-drain, recovered by the sweep."""

from __future__ import annotations

import time

import pytest

from integration_hub.inventory.models import ChannelStock, PendingPush

from tests.support.factories import World, connection
from tests.support.sandbox import control

pytestmark = pytest.mark.worker


def wait_for(predicate, timeout=60, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


@pytest.fixture
def hub(transactional_db, sandbox):
    """Connections to both sandboxes, one channel on two WAIR locations, 30 mapped items."""
    import connectors.registry as registry

    registry.clear_cache()
    w = World()
    w.storefront = connection(
        "commercetools",
        "shop",
        base_url=f"{sandbox.url}/commercetools",
        auth_url=f"{sandbox.url}/commercetools",
        client_id="hub-demo",
        options={"project_key": "hubtest"},
        rate_limit_per_second=200,
        rate_limit_burst=20,
        max_retries=3,
        secret="hub-demo-secret",
    )
    w.master = connection(
        "wair", base_url=f"{sandbox.url}/wair", secret="wair-demo-key", webhook_secret="wair-hook-secret"
    )
    w.channel("web", locations=["dc1", "dc2"], external_id="sc-web")
    skus = [f"SKU-{n:02d}" for n in range(30)]
    for n, sku in enumerate(skus):
        w.item(f"M{n:02d}", storefront_sku=sku)
    w.ct = lambda action, payload=None, method="POST": control(sandbox, "commercetools", action, payload, method=method)
    w.wair = lambda action, payload=None, method="POST": control(sandbox, "wair", action, payload, method=method)
    w.ct("seed_catalog", {"channels": ["sc-web"], "skus": skus, "quantity": 0})
    w.wair("seed_locations", {"locations": [{"id": "DC1", "name": "dc1"}, {"id": "DC2", "name": "dc2"}]})
    w.skus = skus
    yield w
    registry.clear_cache()


def storefront_qty(w, skus=None):
    return w.ct("state", {"skus": skus or []})["inventory"].get("sc-web", {})


def test_wair_webhook_reaches_commercetools_via_real_worker(hub, live_server, celery_worker_process):
    hub.wair("configure_webhooks", {"stock_url": f"{live_server.url}/hooks/stock/wair/", "secret": "wair-hook-secret"})
    hub.wair(
        "set_stock",
        {
            "rows": [{"sku": f"M{n:02d}", "location": "DC1", "state": "available", "quantity": n} for n in range(30)]
            + [
                {"sku": "M05", "location": "DC2", "state": "available", "quantity": 4},
                {"sku": "M06", "location": "DC2", "state": "damaged", "quantity": 50},
                {"sku": "M07", "location": "DC1", "state": "available", "quantity": -2},
            ]
        },
    )
    assert hub.wair("wait_webhooks", {"timeout": 20})["pending"] == 0
    want = {f"SKU-{n:02d}": n for n in range(30)}
    want.update({"SKU-05": 9, "SKU-07": 0})  # DC2 adds 4 to M05; damaged never counts; -2 (oversold) sells nothing
    assert wait_for(lambda: storefront_qty(hub) == want, timeout=60), storefront_qty(hub)
    assert wait_for(lambda: not PendingPush.objects.exists())
    from exceptions_app.models import ExceptionRecord

    assert ExceptionRecord.objects.filter(dedupe_key="stock_drift:wair:negative:M07@DC1").exists()

    # an order-priority decrement goes through the "priority" queue
    from django.db import transaction

    from integration_hub.inventory import outbox
    from integration_hub.inventory.models import Reservation

    with transaction.atomic():
        Reservation.objects.create(item=hub.items["M20"], channel=hub.channels["web"], order_ref="o-1", quantity=3)
        outbox.enqueue(
            [hub.items["M20"].pk],
            location_ids=outbox.locations_for_channel(hub.channels["web"].pk),
            priority=PendingPush.Priority.ORDER,
            reason="order o-1",
        )
    assert wait_for(lambda: storefront_qty(hub, ["SKU-20"]).get("SKU-20") == 17, timeout=30)


def test_poll_path_via_real_worker(hub, celery_worker_process):
    from integration_hub.inventory.tasks import poll_masters

    hub.wair(
        "set_stock",
        {"rows": [{"sku": "M01", "location": "DC2", "quantity": 12}, {"sku": "M02", "location": "DC1", "quantity": 3}]},
    )
    poll_masters.apply_async()  # what beat does every minute
    assert wait_for(lambda: storefront_qty(hub, ["SKU-01", "SKU-02"]) == {"SKU-01": 12, "SKU-02": 3}, timeout=60)
    from integration_hub.core.models import SyncCursor

    assert SyncCursor.objects.get(connection=hub.master, stream="stock").value


def test_worker_killed_mid_drain_then_sweep_recovers(hub, celery_worker_process, settings):
    from django.db import transaction

    from integration_hub.inventory import outbox
    from integration_hub.inventory.models import StockLevel
    from integration_hub.inventory.tasks import push_pending, sweep_pending

    settings.HUB = {**settings.HUB, "STOCK_PUSH_ON_COMMIT": False}  # this test dispatches by hand
    dc1 = hub.location("dc1")
    StockLevel.objects.bulk_create(
        [StockLevel(item=hub.items[f"M{n:02d}"], location=dc1, quantity=100 + n) for n in range(30)]
    )
    with transaction.atomic():
        outbox.enqueue([i.pk for i in hub.items.values()])
    hub.ct("faults", {"latency_ms": 120})  # ~0.15 s per pushed SKU: the drain takes several seconds
    push_pending.apply_async(kwargs={"batch_size": 5, "lease_seconds": 3})
    assert wait_for(lambda: ChannelStock.objects.exists(), timeout=60, interval=0.05)
    celery_worker_process.kill()  # SIGKILL mid-drain: acks_late, but the broker message is gone with the worker
    done_before = ChannelStock.objects.count()
    left = PendingPush.objects.count()
    assert 0 < done_before < 30 and left > 0
    time.sleep(4)  # the dead worker's lease runs out
    assert PendingPush.objects.count() == left  # nothing moved on its own: no worker
    hub.ct("faults", {"latency_ms": 0})
    celery_worker_process.start()
    out = sweep_pending()  # what beat runs every 30 s
    assert out["other"] >= left - 5
    assert wait_for(lambda: not PendingPush.objects.exists(), timeout=60)
    want = {f"SKU-{n:02d}": 100 + n for n in range(30)}
    assert storefront_qty(hub) == want
    assert ChannelStock.objects.filter(confirmed_quantity__gte=100).count() == 30
